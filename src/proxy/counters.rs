//! Per-release connection counting for drain.
//!
//! Both counts live in one atomic word (HTTP in the low half, WebSocket in the high
//! half) so "the total just reached zero" is decided by a single atomic operation and
//! drain waiters are woken exactly when it happens, without a lock on the hot path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

const HTTP_UNIT: u64 = 1;
const WEBSOCKET_UNIT: u64 = 1 << 32;
const HALF_MASK: u64 = 0xFFFF_FFFF;

/// Live HTTP requests and WebSocket (upgraded) connections of one release.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    packed: AtomicU64,
    drained: Notify,
}

impl ConnectionCounters {
    pub fn new() -> Arc<ConnectionCounters> {
        Arc::new(ConnectionCounters::default())
    }

    /// HTTP requests in flight (arrived, response not yet finished).
    pub fn http(&self) -> usize {
        (self.packed.load(Ordering::Acquire) & HALF_MASK) as usize
    }

    /// Upgraded connections (WebSocket or other protocols) still open.
    pub fn websocket(&self) -> usize {
        (self.packed.load(Ordering::Acquire) >> 32) as usize
    }

    /// `http() + websocket()`, read from one snapshot.
    pub fn total(&self) -> usize {
        let packed = self.packed.load(Ordering::Acquire);
        ((packed & HALF_MASK) + (packed >> 32)) as usize
    }

    /// Resolves `true` as soon as the total is 0 (at once if it already is), or `false`
    /// when `deadline` passes first. Dropping the future removes its waiter.
    pub async fn wait_drained(&self, deadline: tokio::time::Instant) -> bool {
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        loop {
            // Register interest before reading the count so a decrement that lands in
            // between still wakes us.
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.total() == 0 {
                return true;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = &mut sleep => return self.total() == 0,
            }
        }
    }

    /// Counts one HTTP request until the guard is dropped.
    pub fn track_http(self: &Arc<Self>) -> ConnectionGuard {
        self.add(HTTP_UNIT);
        ConnectionGuard {
            counters: Arc::clone(self),
            unit: HTTP_UNIT,
        }
    }

    /// Counts one upgraded connection until the guard is dropped.
    pub fn track_websocket(self: &Arc<Self>) -> ConnectionGuard {
        self.add(WEBSOCKET_UNIT);
        ConnectionGuard {
            counters: Arc::clone(self),
            unit: WEBSOCKET_UNIT,
        }
    }

    fn add(&self, unit: u64) {
        self.packed.fetch_add(unit, Ordering::AcqRel);
    }

    fn release(&self, unit: u64) {
        let before = self.packed.fetch_sub(unit, Ordering::AcqRel);
        debug_assert!(
            (unit == HTTP_UNIT && before & HALF_MASK != 0)
                || (unit == WEBSOCKET_UNIT && before >> 32 != 0),
            "connection counter released more often than taken"
        );
        if before == unit {
            self.drained.notify_waiters();
        }
    }
}

/// Holds one count; releases it exactly once when dropped (also on cancellation,
/// client disconnect or panic unwinding).
#[derive(Debug)]
#[must_use = "the count is released as soon as the guard is dropped"]
pub struct ConnectionGuard {
    counters: Arc<ConnectionCounters>,
    unit: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.counters.release(self.unit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_each_kind_separately() {
        let counters = ConnectionCounters::new();
        let a = counters.track_http();
        let b = counters.track_http();
        let w = counters.track_websocket();
        assert_eq!(
            (counters.http(), counters.websocket(), counters.total()),
            (2, 1, 3)
        );
        drop(a);
        drop(w);
        assert_eq!(
            (counters.http(), counters.websocket(), counters.total()),
            (1, 0, 1)
        );
        drop(b);
        assert_eq!(counters.total(), 0);
    }

    #[tokio::test]
    async fn waiter_wakes_at_zero_and_times_out_otherwise() {
        let counters = ConnectionCounters::new();
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        assert!(counters.wait_drained(soon).await, "already drained");

        let guard = counters.track_websocket();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(30);
        assert!(!counters.wait_drained(deadline).await, "deadline wins");

        let waiter = {
            let counters = Arc::clone(&counters);
            tokio::spawn(async move {
                let far = tokio::time::Instant::now() + Duration::from_secs(30);
                counters.wait_drained(far).await
            })
        };
        tokio::task::yield_now().await;
        drop(guard);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn count_released_when_the_holder_panics_or_is_cancelled() {
        let counters = ConnectionCounters::new();
        let guard = counters.track_http();
        let panicking = tokio::spawn(async move {
            let _held = guard;
            panic!("handler bug");
        });
        assert!(panicking.await.unwrap_err().is_panic());

        let guard = counters.track_websocket();
        let pending = tokio::spawn(async move {
            let _held = guard;
            std::future::pending::<()>().await;
        });
        pending.abort();
        assert!(pending.await.unwrap_err().is_cancelled());
        assert_eq!(counters.total(), 0);
    }
}
