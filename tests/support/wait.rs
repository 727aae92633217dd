//! Waiting in tests: one polling rule for every suite.
//!
//! A test never sleeps for a fixed time to let something happen; it polls an
//! observable condition until a deadline. [`poll`] is that rule (check, then
//! sleep [`INTERVAL`], until the deadline; the check always runs once more at
//! the deadline) and [`poll_async`] is the same rule for tests on a tokio
//! runtime. [`wait_until`] and [`eventually`] are the asserting forms: reaching
//! the deadline fails the test with what it was waiting for.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

/// The bound for anything a test waits for. It is far above the expected time
/// on a loaded 2-core machine, so reaching it means a hang, not slowness.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The bound for waits that cover whole deploys of many processes or a soak.
pub const LONG_PATIENCE: Duration = Duration::from_secs(60);

/// How often a condition is checked.
pub const INTERVAL: Duration = Duration::from_millis(10);

/// Checks `check` every [`INTERVAL`] until it returns `Some` or `limit` passes.
pub fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(INTERVAL);
    }
}

/// [`poll`] for tests on a tokio runtime: sleeps without blocking a worker.
pub async fn poll_async<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Polls until `check` holds; fails the test after `limit`, naming `what`.
#[track_caller]
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    if poll(limit, || check().then_some(())).is_none() {
        panic!("timed out after {limit:?} waiting for {what}");
    }
}

/// [`wait_until`] with [`PATIENCE`] for tests on a tokio runtime.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    if poll_async(PATIENCE, || check().then_some(()))
        .await
        .is_none()
    {
        panic!("timed out after {PATIENCE:?} waiting for {what}");
    }
}

/// Awaits `future`; fails the test after [`PATIENCE`], naming `what`. (A bound
/// on one future, not a poll: for replies and joins that must arrive.)
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {PATIENCE:?} waiting for {what}"))
}
