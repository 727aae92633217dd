//! Acknowledging upstream data at once on pooled connections (`TCP_QUICKACK`).
//!
//! A pooled connection is in request/response rhythm, so Linux delays the ACK of
//! an answer's first segment by up to 40 ms, hoping to piggyback it on the next
//! request. An app that writes its head and body separately with Nagle on
//! (Python's `http.server`, …) holds the body back until that ACK comes: 40 ms a
//! response. Setting `TCP_QUICKACK` sends the pending ACK right away and keeps
//! ACKs prompt until this side sends again; the kernel does not keep the flag, so
//! it is set again for every response that has to wait.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Sends the ACK for what arrived now, and ACKs promptly until the next write.
pub(crate) fn ack_now(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket2::SockRef::from(stream).set_quickack(true);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = stream;
}

/// The socket of a pooled connection driven by hyper's client: once a read has
/// returned data and the next one has to wait, [`ack_now`] is called (once per
/// request: a write re-arms it). That includes the wait for the next response
/// after a complete one, a system call the direct path (`relay.rs`) avoids
/// because it knows where a response ends.
#[derive(Debug)]
pub(crate) struct QuickAckStream {
    stream: TcpStream,
    /// Data arrived since the last write, and no ACK was forced for it yet.
    owes_ack: bool,
}

impl QuickAckStream {
    pub(crate) fn new(stream: TcpStream) -> QuickAckStream {
        QuickAckStream {
            stream,
            owes_ack: false,
        }
    }

    pub(crate) fn into_inner(self) -> TcpStream {
        self.stream
    }
}

impl AsyncRead for QuickAckStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.owes_ack = true,
            Poll::Pending if this.owes_ack => {
                this.owes_ack = false;
                ack_now(&this.stream);
            }
            _ => {}
        }
        polled
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.owes_ack = false;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.owes_ack = false;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
