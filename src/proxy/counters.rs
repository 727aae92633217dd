//! Per-release connection counting for drain.
//!
//! Both counts and a "closed" flag live in one atomic word (HTTP in the low 32 bits,
//! upgraded connections in the next 31, the flag in the top bit), so admitting a
//! request and closing the release to new ones are ordered by that one word: once
//! [`ConnectionCounters::close`] has run, no request can be counted any more, and
//! the count the drain then waits on can only go down. Drain waiters are woken
//! when the total reaches zero and, once closed, when the HTTP count does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

const HTTP_UNIT: u64 = 1;
const WEBSOCKET_UNIT: u64 = 1 << 32;
const HTTP_MASK: u64 = 0xFFFF_FFFF;
const WEBSOCKET_MASK: u64 = 0x7FFF_FFFF;
const CLOSED: u64 = 1 << 63;

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
        http_of(self.packed.load(Ordering::Acquire))
    }

    /// Upgraded connections (WebSocket or other protocols) still open.
    pub fn websocket(&self) -> usize {
        websocket_of(self.packed.load(Ordering::Acquire))
    }

    /// `http() + websocket()`, read from one snapshot.
    pub fn total(&self) -> usize {
        let packed = self.packed.load(Ordering::Acquire);
        http_of(packed) + websocket_of(packed)
    }

    /// Whether [`close`](Self::close) has run.
    pub fn is_closed(&self) -> bool {
        self.packed.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Admits no more requests: every later [`try_track_http`](Self::try_track_http)
    /// fails. The router calls it right after it stopped pointing here. Returns the
    /// HTTP requests admitted until then and still in flight.
    pub fn close(&self) -> usize {
        http_of(self.packed.fetch_or(CLOSED, Ordering::AcqRel))
    }

    /// Resolves `true` as soon as the total is 0 (at once if it already is), or `false`
    /// when `deadline` passes first. Dropping the future removes its waiter.
    pub async fn wait_drained(&self, deadline: tokio::time::Instant) -> bool {
        self.wait_until(deadline, |counters| counters.total() == 0)
            .await
    }

    /// Like [`wait_drained`](Self::wait_drained), for the HTTP requests only; for a
    /// closed release (on an open one, only the total reaching zero wakes it early).
    pub async fn wait_http_drained(&self, deadline: tokio::time::Instant) -> bool {
        self.wait_until(deadline, |counters| counters.http() == 0)
            .await
    }

    async fn wait_until(
        &self,
        deadline: tokio::time::Instant,
        done: impl Fn(&ConnectionCounters) -> bool,
    ) -> bool {
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        loop {
            // Register interest before reading the count so a decrement that lands in
            // between still wakes us.
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(self) {
                return true;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = &mut sleep => return done(self),
            }
        }
    }

    /// Counts one HTTP request until the guard is dropped, unless the counters are
    /// closed (`None`: the request must be routed elsewhere).
    pub fn try_track_http(self: &Arc<Self>) -> Option<ConnectionGuard> {
        let before = self.packed.fetch_add(HTTP_UNIT, Ordering::AcqRel);
        let guard = ConnectionGuard {
            counters: Arc::clone(self),
            unit: HTTP_UNIT,
        };
        if before & CLOSED != 0 {
            // Dropping the guard takes the count back (and wakes a drain at zero).
            return None;
        }
        Some(guard)
    }

    /// Counts an upgraded connection handed over by an earlier image of the
    /// daemon (live upgrade), closed or not: it was admitted back then.
    pub fn track_websocket(self: &Arc<Self>) -> ConnectionGuard {
        self.packed.fetch_add(WEBSOCKET_UNIT, Ordering::AcqRel);
        ConnectionGuard {
            counters: Arc::clone(self),
            unit: WEBSOCKET_UNIT,
        }
    }

    fn release(&self, unit: u64) {
        let before = self.packed.fetch_sub(unit, Ordering::AcqRel);
        debug_assert!(
            (unit == HTTP_UNIT && http_of(before) != 0)
                || (unit == WEBSOCKET_UNIT && websocket_of(before) != 0),
            "connection counter released more often than taken"
        );
        let after = before - unit;
        let drained = http_of(after) + websocket_of(after) == 0;
        // HTTP-only waiters wait on closed (retired) releases only, so an open
        // release's hot path pays for the waiter list just when it empties.
        let http_drained = unit == HTTP_UNIT && http_of(after) == 0 && before & CLOSED != 0;
        if drained || http_drained {
            self.drained.notify_waiters();
        }
    }
}

fn http_of(packed: u64) -> usize {
    (packed & HTTP_MASK) as usize
}

fn websocket_of(packed: u64) -> usize {
    ((packed >> 32) & WEBSOCKET_MASK) as usize
}

/// Holds one count; releases it exactly once when dropped (also on cancellation,
/// client disconnect or panic unwinding).
#[derive(Debug)]
#[must_use = "the count is released as soon as the guard is dropped"]
pub struct ConnectionGuard {
    counters: Arc<ConnectionCounters>,
    unit: u64,
}

impl ConnectionGuard {
    /// Turns a counted HTTP request into a counted upgraded connection in one
    /// atomic step, so the total never passes through zero (a closed release's
    /// drain cannot end between the two) and closing does not refuse it.
    pub fn into_websocket(mut self) -> ConnectionGuard {
        if self.unit == HTTP_UNIT {
            // Adding 2^32 - 1 moves one unit from the low half to the high half.
            let before = self
                .counters
                .packed
                .fetch_add(WEBSOCKET_UNIT - HTTP_UNIT, Ordering::AcqRel);
            self.unit = WEBSOCKET_UNIT;
            if before & CLOSED != 0 && http_of(before) == 1 {
                // The last HTTP request became a tunnel: wake HTTP-only waiters.
                self.counters.drained.notify_waiters();
            }
        }
        self
    }
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

    fn http(counters: &Arc<ConnectionCounters>) -> ConnectionGuard {
        counters.try_track_http().expect("open counters admit")
    }

    #[test]
    fn counts_each_kind_separately() {
        let counters = ConnectionCounters::new();
        let a = http(&counters);
        let b = http(&counters);
        let w = http(&counters).into_websocket();
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

    #[test]
    fn closed_counters_refuse_new_requests_but_keep_counting_the_admitted_ones() {
        let counters = ConnectionCounters::new();
        let admitted = http(&counters);
        let upgrading = http(&counters);
        counters.close();
        assert!(counters.is_closed());
        assert!(counters.try_track_http().is_none());
        assert_eq!((counters.http(), counters.websocket()), (2, 0));
        let tunnel = upgrading.into_websocket();
        assert_eq!((counters.http(), counters.websocket()), (1, 1));
        drop(admitted);
        drop(tunnel);
        assert_eq!(counters.total(), 0);
        assert!(counters.is_closed(), "closing is for good");
    }

    #[tokio::test]
    async fn waiter_wakes_at_zero_and_times_out_otherwise() {
        let counters = ConnectionCounters::new();
        let soon = tokio::time::Instant::now() + Duration::from_millis(50);
        assert!(counters.wait_drained(soon).await, "already drained");

        let guard = http(&counters).into_websocket();
        counters.close();
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
    async fn an_http_waiter_wakes_when_the_last_request_becomes_a_tunnel() {
        let counters = ConnectionCounters::new();
        let request = http(&counters);
        counters.close();
        let waiter = {
            let counters = Arc::clone(&counters);
            tokio::spawn(async move {
                let far = tokio::time::Instant::now() + Duration::from_secs(30);
                counters.wait_http_drained(far).await
            })
        };
        tokio::task::yield_now().await;
        let tunnel = request.into_websocket();
        assert!(waiter.await.unwrap());
        assert_eq!(counters.total(), 1);
        drop(tunnel);
    }

    #[test]
    fn a_request_admitted_on_many_threads_is_either_counted_before_closing_or_refused() {
        // After close, the count read once can only go down: every admission
        // either happened before (and is in that count) or was refused.
        for _ in 0..50 {
            let counters = ConnectionCounters::new();
            let admitted = std::sync::Mutex::new(Vec::new());
            let seen_at_close = std::thread::scope(|scope| {
                for _ in 0..2 {
                    scope.spawn(|| {
                        for _ in 0..200 {
                            if let Some(guard) = counters.try_track_http() {
                                admitted.lock().unwrap().push(guard);
                            }
                        }
                    });
                }
                std::thread::yield_now();
                counters.close()
            });
            assert_eq!(admitted.lock().unwrap().len(), seen_at_close);
        }
    }

    #[tokio::test]
    async fn count_released_when_the_holder_panics_or_is_cancelled() {
        let counters = ConnectionCounters::new();
        let guard = http(&counters);
        let panicking = tokio::spawn(async move {
            let _held = guard;
            panic!("handler bug");
        });
        assert!(panicking.await.unwrap_err().is_panic());

        let guard = http(&counters).into_websocket();
        let pending = tokio::spawn(async move {
            let _held = guard;
            std::future::pending::<()>().await;
        });
        pending.abort();
        assert!(pending.await.unwrap_err().is_cancelled());
        assert_eq!(counters.total(), 0);
    }
}
