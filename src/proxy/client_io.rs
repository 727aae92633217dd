//! The client socket as hyper sees it. Besides reading and writing the socket it
//! serves a live upgrade: a keep-alive connection can leave hyper at a request
//! boundary with its socket still open (no `shutdown`), together with the bytes
//! hyper had already read, and the next image replays those bytes first.
//!
//! hyper's HTTP/1 connection does not say whether it sits between requests, so
//! [`HandoverState`] records the facts that do: a request in progress (see
//! `idle`), a request body not read to its end, and response bytes the socket
//! has not taken yet. With none of them, a graceful shutdown closes the
//! connection at once, at a boundary (see `worker::serve_client`).

use super::forward::ConnectionContext;
use bytes::Bytes;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// What a live upgrade must know about one client connection before it can
/// take the connection away from hyper. Written on the proxy thread that serves
/// the connection, read by the same thread between polls.
#[derive(Debug, Default)]
pub(crate) struct HandoverState {
    /// A request body is still being passed on: the socket may still hold
    /// some of it, so this connection is not at a request boundary yet.
    body_unfinished: AtomicBool,
    /// A request body was given up before its end (the app answered without
    /// reading it all, or it failed): whether hyper found the boundary again is
    /// not known, so this connection closes as usual instead of being handed
    /// over.
    body_abandoned: AtomicBool,
    /// The socket refused response bytes the last time hyper wrote.
    write_blocked: AtomicBool,
    /// The connection is being handed over: hyper's final `shutdown` must not
    /// end the socket the next image goes on with.
    keep_socket: AtomicBool,
    /// The connection is being handed over: no new request is read (the
    /// request in progress still reads its body).
    hold_reads: AtomicBool,
}

impl HandoverState {
    pub(crate) fn body_started(&self) {
        self.body_abandoned.store(false, Ordering::Relaxed);
        self.body_unfinished.store(true, Ordering::Relaxed);
    }

    pub(crate) fn body_finished(&self) {
        self.body_unfinished.store(false, Ordering::Relaxed);
    }

    pub(crate) fn body_abandoned(&self) {
        self.body_abandoned.store(true, Ordering::Relaxed);
        self.body_unfinished.store(false, Ordering::Relaxed);
    }

    /// No body left unread and nothing of a response waiting for the socket
    /// (the caller checks that no request is in progress).
    pub(crate) fn at_boundary(&self) -> bool {
        !self.body_unfinished.load(Ordering::Relaxed) && !self.write_blocked.load(Ordering::Relaxed)
    }

    /// See `body_abandoned`.
    pub(crate) fn may_be_mid_body(&self) -> bool {
        self.body_abandoned.load(Ordering::Relaxed)
    }

    pub(crate) fn keep_socket(&self) {
        self.keep_socket.store(true, Ordering::Relaxed);
    }

    pub(crate) fn hold_reads(&self, hold: bool) {
        self.hold_reads.store(hold, Ordering::Relaxed);
    }

    /// The connection closes after all: its final `shutdown` is a real one.
    pub(crate) fn release_socket(&self) {
        self.keep_socket.store(false, Ordering::Relaxed);
    }
}

/// A client connection's socket, with the bytes an earlier image read from it.
pub(crate) struct ClientIo {
    socket: TokioIo<TcpStream>,
    /// Read by an earlier image and not yet parsed: served before the socket's.
    unread: Bytes,
    /// The connection's context (its `handover` state).
    context: Arc<ConnectionContext>,
    /// The last value stored in `state.write_blocked` (stores only on change).
    write_blocked: bool,
}

impl ClientIo {
    pub(crate) fn new(
        socket: TcpStream,
        unread: Bytes,
        context: Arc<ConnectionContext>,
    ) -> ClientIo {
        ClientIo {
            socket: TokioIo::new(socket),
            unread,
            context,
            write_blocked: false,
        }
    }

    /// The socket and what was read from it but not used: `read_before` (what
    /// hyper had buffered, read earlier) followed by what was never replayed.
    pub(crate) fn into_socket(self, read_before: Bytes) -> (TcpStream, Bytes) {
        let unread = if self.unread.is_empty() {
            read_before
        } else if read_before.is_empty() {
            self.unread
        } else {
            let mut both = Vec::with_capacity(read_before.len() + self.unread.len());
            both.extend_from_slice(&read_before);
            both.extend_from_slice(&self.unread);
            Bytes::from(both)
        };
        (self.socket.into_inner(), unread)
    }

    fn note_write(&mut self, poll: &Poll<io::Result<usize>>) {
        let blocked = poll.is_pending();
        if blocked != self.write_blocked {
            self.write_blocked = blocked;
            let state = &self.context.handover;
            state.write_blocked.store(blocked, Ordering::Relaxed);
        }
    }
}

impl Read for ClientIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let context = &self.context;
        if context.handover.hold_reads.load(Ordering::Relaxed)
            && !context.activity.has_request_in_progress()
        {
            // No waker is kept: the handover polls this connection itself, and
            // reading resumes as soon as hyper is polled after `hold_reads(false)`.
            return Poll::Pending;
        }
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            let replayed = self.unread.split_to(n);
            buf.put_slice(&replayed);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl Write for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.socket).poll_write(cx, buf);
        self.note_write(&poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.socket).poll_write_vectored(cx, bufs);
        self.note_write(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.context.handover.keep_socket.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::idle::IdleSweeper;
    use crate::proxy::idle::tests::connection;
    use tokio::io::AsyncWriteExt;

    fn context() -> Arc<ConnectionContext> {
        connection(&IdleSweeper::new(std::time::Duration::from_secs(30)))
    }

    #[tokio::test]
    async fn replays_the_unread_bytes_before_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(b" world").await.unwrap();
        let io = ClientIo::new(server, Bytes::from_static(b"hello"), context());
        let mut io = TokioIo::new(io);
        let mut read = Vec::new();
        while read.len() < 11 {
            let mut chunk = [0u8; 3];
            let n = tokio::io::AsyncReadExt::read(&mut io, &mut chunk)
                .await
                .unwrap();
            read.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(read, b"hello world");
    }

    #[tokio::test]
    async fn gives_back_what_was_read_before_what_was_never_replayed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let io = ClientIo::new(server, Bytes::from_static(b"tail"), context());
        let (_, unread) = io.into_socket(Bytes::from_static(b"head "));
        assert_eq!(&unread[..], b"head tail");
    }
}
