//! Copying bytes both ways between the two TCP sockets of an upgraded connection.
//!
//! Most WebSockets sit idle most of the time, so an idle one must cost next to
//! nothing. `tokio::io::copy_bidirectional` keeps an 8 KiB buffer per direction for
//! the whole life of the connection (16 KiB of touched heap per WebSocket), and a
//! relay written as nested `async fn`s makes the task itself several KiB. [`Relay`]
//! is a small hand-written future instead: each direction waits for its socket to
//! become readable without holding a buffer (readiness is kept by tokio in the
//! socket's registration), and only holds one while bytes are actually moving.
//!
//! Semantics are those of `copy_bidirectional`: bytes already read past the
//! handshake go first, an end of stream on one side shuts down writing on the
//! other, the relay ends when both directions are done, and the first error ends it.

use bytes::{Buf, Bytes};
use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::net::TcpStream;

/// Bytes moved per read while data flows (the size tokio's own copy uses).
const CHUNK: usize = 8 * 1024;

/// One side of the relay: its socket and the bytes hyper had already read from it
/// past the HTTP handshake (they belong to the other side first).
pub(crate) struct Side {
    pub(crate) socket: TcpStream,
    pub(crate) early_bytes: Bytes,
}

/// Relays until both directions reached end of stream, or either failed.
pub(crate) struct Relay {
    client: TcpStream,
    upstream: TcpStream,
    to_upstream: Direction,
    to_client: Direction,
}

impl Relay {
    pub(crate) fn new(client: Side, upstream: Side) -> Relay {
        Relay {
            to_upstream: Direction::new(client.early_bytes),
            to_client: Direction::new(upstream.early_bytes),
            client: client.socket,
            upstream: upstream.socket,
        }
    }
}

impl Relay {
    /// Stops relaying (between two polls) and gives both sockets back with what
    /// each direction had read but not yet written (live upgrade).
    pub(crate) fn freeze(self, release_id: String) -> io::Result<super::FrozenTunnel> {
        let Relay {
            client,
            upstream,
            to_upstream,
            to_client,
        } = self;
        Ok(super::FrozenTunnel {
            release_id,
            client_finished: to_upstream.finished,
            upstream_finished: to_client.finished,
            to_upstream: to_upstream.unsent(),
            to_client: to_client.unsent(),
            client: client.into_std()?,
            upstream: upstream.into_std()?,
        })
    }

    /// A frozen tunnel relaying again (on the current runtime).
    pub(crate) fn resume(tunnel: super::FrozenTunnel) -> io::Result<Relay> {
        tunnel.client.set_nonblocking(true)?;
        tunnel.upstream.set_nonblocking(true)?;
        let mut to_upstream = Direction::new(Bytes::from(tunnel.to_upstream));
        to_upstream.finished = tunnel.client_finished;
        let mut to_client = Direction::new(Bytes::from(tunnel.to_client));
        to_client.finished = tunnel.upstream_finished;
        Ok(Relay {
            client: TcpStream::from_std(tunnel.client)?,
            upstream: TcpStream::from_std(tunnel.upstream)?,
            to_upstream,
            to_client,
        })
    }
}

impl Future for Relay {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let to_upstream = this.to_upstream.poll(cx, &this.client, &this.upstream)?;
        let to_client = this.to_client.poll(cx, &this.upstream, &this.client)?;
        if to_upstream.is_ready() && to_client.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

/// One direction: read from one socket, write to the other.
struct Direction {
    /// Bytes to write before anything read from the socket.
    early: Bytes,
    /// Present only while bytes are on their way; `pending` is the unwritten part.
    buffer: Option<Box<[u8]>>,
    pending: std::ops::Range<usize>,
    finished: bool,
}

impl Direction {
    fn new(early: Bytes) -> Direction {
        Direction {
            // An empty `Bytes` from hyper can still pin its whole read buffer.
            early: if early.is_empty() {
                Bytes::new()
            } else {
                early
            },
            buffer: None,
            pending: 0..0,
            finished: false,
        }
    }

    /// The bytes read and not yet written, in order.
    fn unsent(&self) -> Vec<u8> {
        let mut unsent = self.early.to_vec();
        if let Some(buffer) = &self.buffer {
            unsent.extend_from_slice(&buffer[self.pending.clone()]);
        }
        unsent
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &TcpStream,
        to: &TcpStream,
    ) -> Poll<io::Result<()>> {
        if self.finished {
            return Poll::Ready(Ok(()));
        }
        while !self.early.is_empty() {
            let written = ready!(write_some(cx, to, &self.early))?;
            self.early.advance(written);
        }
        loop {
            if let Some(buffer) = &self.buffer
                && !self.pending.is_empty()
            {
                let written = ready!(write_some(cx, to, &buffer[self.pending.clone()]))?;
                self.pending.start += written;
                continue;
            }
            if from.poll_read_ready(cx)?.is_pending() {
                // Idle: the buffer goes back to the allocator until bytes arrive.
                self.buffer = None;
                return Poll::Pending;
            }
            let buffer = self
                .buffer
                .get_or_insert_with(|| vec![0; CHUNK].into_boxed_slice());
            match from.try_read(buffer) {
                Ok(0) => {
                    self.finished = true;
                    self.buffer = None;
                    // Half-close: the peer on `to` learns that no more data will
                    // come, and may still answer through the other direction.
                    return Poll::Ready(shutdown_write(to));
                }
                Ok(read) => self.pending = 0..read,
                Err(error) if retry(&error) => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

/// Writes what the socket takes right now; pending until it takes something.
fn write_some(cx: &mut Context<'_>, to: &TcpStream, bytes: &[u8]) -> Poll<io::Result<usize>> {
    loop {
        ready!(to.poll_write_ready(cx))?;
        match to.try_write(bytes) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(written) => return Poll::Ready(Ok(written)),
            Err(error) if retry(&error) => {}
            Err(error) => return Poll::Ready(Err(error)),
        }
    }
}

/// `WouldBlock` (readiness was stale; tokio has cleared it) or `Interrupted`.
fn retry(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

fn shutdown_write(socket: &TcpStream) -> io::Result<()> {
    match socket2::SockRef::from(socket).shutdown(Shutdown::Write) {
        // The peer is already gone entirely; the other direction will find out.
        Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(()),
        result => result,
    }
}
