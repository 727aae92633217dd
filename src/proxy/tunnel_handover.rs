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

/// The tunnels of one proxy server, as a freeze sees them.
#[derive(Debug, Default)]
pub(crate) struct TunnelFreezer {
    freeze: CancellationToken,
    /// Tunnel tasks running (relaying, or still switching protocols).
    live: AtomicUsize,
    changed: Notify,
    frozen: Mutex<Vec<FrozenTunnel>>,
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
