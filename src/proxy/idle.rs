//! Closing client connections that go too long without a request in progress:
//! clients that trickle a request head (slowloris) or never send one, and idle
//! keep-alive connections.
//!
//! hyper's own header timeout arms a timer for every request head, which costs an
//! extra wake-up system call per keep-alive request (measured). Instead each
//! connection keeps two atomics (requests in progress, coarse time it became idle)
//! and one sweeper task per proxy thread checks that thread's connections once per
//! tick.

use super::forward::ConnectionContext;
use crate::util::sync::Unpoisoned;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the sweeper looks at the connections (the granularity of the limit).
const SWEEP_TICK: Duration = Duration::from_secs(1);

/// Per-connection activity, updated on the hot path with plain atomics.
#[derive(Debug, Default)]
pub(crate) struct ConnectionActivity {
    in_progress: AtomicU32,
    idle_since_tick: AtomicU64,
    expired: Notify,
}

impl ConnectionActivity {
    /// Resolves when the sweeper found this connection idle for too long.
    pub(crate) async fn expired(&self) {
        self.expired.notified().await;
    }

    pub(crate) fn has_request_in_progress(&self) -> bool {
        self.in_progress.load(Ordering::Acquire) > 0
    }
}

/// "A request is in progress on this connection", until dropped. It also carries
/// the connection context so request handling needs no further reference counting.
#[derive(Debug)]
pub(crate) struct ActiveRequest {
    context: Arc<ConnectionContext>,
}

impl ActiveRequest {
    pub(crate) fn begin(context: Arc<ConnectionContext>) -> ActiveRequest {
        context.activity.in_progress.fetch_add(1, Ordering::AcqRel);
        ActiveRequest { context }
    }

    pub(crate) fn context(&self) -> &ConnectionContext {
        &self.context
    }

    /// The connection context, to keep beyond this request's handling.
    pub(crate) fn shared_context(&self) -> &Arc<ConnectionContext> {
        &self.context
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let now = self.context.sweeper.tick.load(Ordering::Relaxed);
        let activity = &self.context.activity;
        activity.idle_since_tick.store(now, Ordering::Relaxed);
        activity.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections of one proxy thread: slots reused through a free list,
/// so registering and leaving cost a push and a pop (no hashing per connection).
/// The slot table keeps the size of the busiest moment (8 bytes a connection).
#[derive(Debug, Default)]
struct Registry {
    slots: Vec<Option<Weak<ConnectionContext>>>,
    free: Vec<usize>,
}

impl Registry {
    fn insert(&mut self, connection: Weak<ConnectionContext>) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(connection);
                slot
            }
            None => {
                self.slots.push(Some(connection));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, slot: usize) {
        if self.slots.get_mut(slot).and_then(Option::take).is_some() {
            self.free.push(slot);
        }
    }

    fn connections(&self) -> impl Iterator<Item = &Weak<ConnectionContext>> {
        self.slots.iter().flatten()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// The client connections of one server, and its coarse clock.
#[derive(Debug)]
pub(crate) struct IdleSweeper {
    limit_ticks: u64,
    tick: AtomicU64,
    connections: Mutex<Registry>,
}

/// Removes the connection from the sweeper when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    sweeper: Arc<IdleSweeper>,
    slot: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sweeper.lock().remove(self.slot);
    }
}

impl IdleSweeper {
    pub(crate) fn new(limit: Duration) -> Arc<IdleSweeper> {
        let limit_ticks = limit.as_secs().div_ceil(SWEEP_TICK.as_secs()).max(1);
        Arc::new(IdleSweeper {
            limit_ticks,
            tick: AtomicU64::new(0),
            connections: Mutex::new(Registry::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.connections.lock().unpoisoned()
    }

    /// Starts watching a connection; it counts as idle from now on.
    pub(crate) fn register(self: &Arc<Self>, context: &Arc<ConnectionContext>) -> Registration {
        let now = self.tick.load(Ordering::Relaxed);
        context
            .activity
            .idle_since_tick
            .store(now, Ordering::Relaxed);
        let slot = self.lock().insert(Arc::downgrade(context));
        Registration {
            sweeper: Arc::clone(self),
            slot,
        }
    }

    /// Advances the clock and expires idle connections, until `stop` is cancelled.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(SWEEP_TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.sweep();
        }
    }

    fn sweep(&self) {
        let now = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
        let connections: Vec<Arc<ConnectionContext>> = self
            .lock()
            .connections()
            .filter_map(Weak::upgrade)
            .collect();
        for context in connections {
            let activity = &context.activity;
            let idle_for = now.saturating_sub(activity.idle_since_tick.load(Ordering::Relaxed));
            if !activity.has_request_in_progress() && idle_for > self.limit_ticks {
                activity.expired.notify_one();
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::events::EventSink;
    use crate::proxy::errors::ErrorReporter;
    use crate::proxy::forward::ServerShared;
    use crate::proxy::headers::ClientInfo;
    use futures_util::FutureExt;

    /// A client connection's context on a server of its own (no socket).
    pub(crate) fn connection(sweeper: &Arc<IdleSweeper>) -> Arc<ConnectionContext> {
        let server = Arc::new(ServerShared {
            router: crate::proxy::Router::new(),
            reporter: Arc::new(ErrorReporter::new(EventSink::silent())),
            tasks: tokio_util::task::TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            idle_timeout: Duration::from_secs(30),
            observer: None,
            trusted_proxies: Vec::new(),
            body_timeout: None,
            allowed_upgrades: Vec::new(),
            tunnels: Default::default(),
            connections: Default::default(),
        });
        Arc::new(ConnectionContext {
            server,
            sweeper: Arc::clone(sweeper),
            client: ClientInfo::new(
                "127.0.0.1".parse().unwrap(),
                http::HeaderValue::from_static("80"),
                true,
            ),
            client_socket: -1,
            activity: ConnectionActivity::default(),
            handover: Default::default(),
        })
    }

    fn is_expired(context: &ConnectionContext) -> bool {
        context.activity.expired().now_or_never().is_some()
    }

    #[test]
    fn idle_connection_expires_after_the_limit() {
        let sweeper = IdleSweeper::new(Duration::from_secs(3));
        let context = connection(&sweeper);
        let _registration = sweeper.register(&context);
        for _ in 0..3 {
            sweeper.sweep();
            assert!(!is_expired(&context), "not before the limit");
        }
        sweeper.sweep();
        assert!(is_expired(&context));
    }

    #[test]
    fn request_in_progress_keeps_the_connection_and_restarts_the_clock() {
        let sweeper = IdleSweeper::new(Duration::from_secs(2));
        let context = connection(&sweeper);
        let _registration = sweeper.register(&context);
        let request = ActiveRequest::begin(Arc::clone(&context));
        for _ in 0..10 {
            sweeper.sweep();
        }
        assert!(!is_expired(&context), "a long request is not idleness");
        drop(request);
        sweeper.sweep();
        sweeper.sweep();
        assert!(
            !is_expired(&context),
            "idle time counts from the request's end"
        );
        sweeper.sweep();
        assert!(is_expired(&context));
    }

    #[test]
    fn closed_connections_leave_the_registry() {
        let sweeper = IdleSweeper::new(Duration::from_secs(2));
        let context = connection(&sweeper);
        let registration = sweeper.register(&context);
        assert_eq!(sweeper.lock().len(), 1);
        drop(registration);
        assert_eq!(sweeper.lock().len(), 0);
    }

    #[test]
    fn slots_are_reused_and_only_open_connections_are_swept() {
        let sweeper = IdleSweeper::new(Duration::from_secs(1));
        let first = connection(&sweeper);
        let second = connection(&sweeper);
        let first_registration = sweeper.register(&first);
        let second_registration = sweeper.register(&second);
        drop(first_registration);
        let third = connection(&sweeper);
        let _third_registration = sweeper.register(&third);
        assert_eq!(sweeper.lock().slots.len(), 2, "the freed slot was reused");
        assert_eq!(sweeper.lock().len(), 2);
        sweeper.sweep();
        sweeper.sweep();
        assert!(!is_expired(&first), "no longer registered, never swept");
        assert!(is_expired(&second) && is_expired(&third));
        drop(second_registration);
    }
}
