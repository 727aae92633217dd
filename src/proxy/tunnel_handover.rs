//! Upgraded connections (WebSockets, other `101` tunnels) handed from one
//! daemon image to the next in a live upgrade. On [`TunnelFreezer::freeze`]
//! every spliced tunnel stops relaying at a poll boundary and deposits both
//! sockets and the bytes it had read but not yet written; the new image resumes
//! each with [`ProxyServer::adopt_tunnel`](super::ProxyServer::adopt_tunnel).

use super::forward::ServerShared;
use super::splice::Relay;
use crate::util::sync::Unpoisoned;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Relays until the tunnel ends, the server stops hard, or a live upgrade
/// freezes it (then its sockets and unsent bytes are deposited).
pub(crate) async fn relay_until_frozen(
    shared: &ServerShared,
    mut relay: Box<Relay>,
    release_id: String,
) {
    tokio::select! {
        // A reset on either side simply ends the session.
        _ = &mut *relay => {}
        _ = shared.hard_stop.cancelled() => {}
        _ = shared.tunnels.frozen() => match relay.freeze(release_id) {
            Ok(frozen) => shared.tunnels.deposit(frozen),
            Err(error) => tracing::debug!("a tunnel could not be handed over: {error}"),
        },
    }
}

/// One tunnel between two relays.
#[derive(Debug)]
pub struct FrozenTunnel {
    pub release_id: String,
    pub client: std::net::TcpStream,
    pub upstream: std::net::TcpStream,
    /// Read from the client, not yet written to the upstream.
    pub to_upstream: Vec<u8>,
    /// Read from the upstream, not yet written to the client.
    pub to_client: Vec<u8>,
    /// The client ended its side (the upstream's write side is shut down).
    pub client_finished: bool,
    /// The upstream ended its side.
    pub upstream_finished: bool,
}

/// A keep-alive client connection between two requests, handed from one image
/// to the next.
#[derive(Debug)]
pub struct IdleConnection {
    pub socket: std::net::TcpStream,
    /// Read from the client and not yet parsed (the start of its next request),
    /// to be served before what the socket delivers.
    pub unread: bytes::Bytes,
}

/// The tunnels of one proxy server, as a freeze sees them.
#[derive(Debug, Default)]
pub(crate) struct TunnelFreezer {
    freeze: CancellationToken,
    /// Tunnel tasks running (relaying, or still switching protocols).
    live: AtomicUsize,
    changed: Notify,
    frozen: Mutex<Vec<FrozenTunnel>>,
    /// Set by a live upgrade before the proxy pauses: idle client connections
    /// are handed over instead of closed.
    handing_over: std::sync::atomic::AtomicBool,
    idle: Mutex<Vec<IdleConnection>>,
    /// Client connections an earlier image handed over, for the listening
    /// thread to serve.
    adopted: Mutex<Vec<IdleConnection>>,
    adopted_ready: Notify,
}

/// Counts one tunnel task while it lives.
pub(crate) struct LiveTunnel<'a>(&'a TunnelFreezer);

impl Drop for LiveTunnel<'_> {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

impl TunnelFreezer {
    pub(crate) fn enter(&self) -> LiveTunnel<'_> {
        self.live.fetch_add(1, Ordering::AcqRel);
        LiveTunnel(self)
    }

    /// Resolves when a freeze was asked for.
    pub(crate) async fn frozen(&self) {
        self.freeze.cancelled().await;
    }

    pub(crate) fn deposit(&self, tunnel: FrozenTunnel) {
        self.frozen.lock().unpoisoned().push(tunnel);
    }

    pub(crate) fn hand_over_idle_connections(&self) {
        self.handing_over.store(true, Ordering::Release);
    }

    pub(crate) fn handing_over(&self) -> bool {
        self.handing_over.load(Ordering::Acquire)
    }

    /// Keeps a client connection taken from hyper between two requests for the
    /// next image. After [`TunnelFreezer::take_idle`] (an upgrade that is over)
    /// the connection is simply closed, as any idle keep-alive connection may be.
    pub(crate) fn deposit_idle(&self, connection: IdleConnection) {
        let mut idle = self.idle.lock().unpoisoned();
        if self.handing_over() {
            idle.push(connection);
        }
    }

    /// The connections kept so far; from now on connections close as usual.
    pub(crate) fn take_idle(&self) -> Vec<IdleConnection> {
        let mut idle = self.idle.lock().unpoisoned();
        self.handing_over.store(false, Ordering::Release);
        std::mem::take(&mut *idle)
    }

    pub(crate) fn adopt(&self, connection: IdleConnection) {
        self.adopted.lock().unpoisoned().push(connection);
        self.adopted_ready.notify_one();
    }

    /// The next batch of handed-over client connections (waits for one).
    pub(crate) async fn adopted(&self) -> Vec<IdleConnection> {
        loop {
            let batch = std::mem::take(&mut *self.adopted.lock().unpoisoned());
            if !batch.is_empty() {
                return batch;
            }
            self.adopted_ready.notified().await;
        }
    }

    /// Stops every tunnel and collects them (at most `limit` for the tasks to
    /// answer; a tunnel still switching protocols ends instead).
    pub(crate) async fn freeze(&self, limit: Duration) -> Vec<FrozenTunnel> {
        self.freeze.cancel();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.live.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
        std::mem::take(&mut *self.frozen.lock().unpoisoned())
    }
}
