//! Running one plugin call under a deadline without blocking the async runtime.
//!
//! Native code cannot be interrupted. Each call therefore runs on its own OS
//! thread, and the awaiting side simply stops waiting at the deadline. A dedicated
//! thread (rather than tokio's blocking pool) matters here: the pool makes runtime
//! shutdown wait for every blocking task, so one plugin that never returns would
//! hang the daemon's exit.

use super::library::PluginLibrary;
use crate::plugins::HookError;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::time::Instant;

/// How many calls may still be running inside one plugin after their deadline
/// before the host stops sending that plugin new work. Each such call holds a
/// thread, so a plugin that ignores `deadlineMs` must not be able to pile them up.
pub const MAX_ABANDONED_CALLS: usize = 8;

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

/// Calls `plugin` with the request built by `build_request(deadline_ms)` and
/// returns its response text, or the reason there is none.
pub(crate) async fn call_with_deadline(
    plugin: &Arc<PluginLibrary>,
    deadline: Instant,
    build_request: impl FnOnce(u64) -> String,
) -> Result<String, HookError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(HookError::TimedOut(0));
    }
    let bound_ms = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
    let stuck = plugin.abandoned_calls.load(Ordering::SeqCst);
    if stuck >= MAX_ABANDONED_CALLS {
        return Err(HookError::Failed(format!(
            "native plugin {} still has {stuck} calls running past their deadline, so it \
             gets no new work; the plugin must return by deadlineMs",
            plugin.name
        )));
    }
    let request = build_request(bound_ms);

    let state = Arc::new(AtomicU8::new(RUNNING));
    let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
    let thread_plugin = Arc::clone(plugin);
    let thread_state = Arc::clone(&state);
    let spawned = std::thread::Builder::new()
        .name(format!("plugin {}", plugin.name))
        .spawn(move || {
            let answer = thread_plugin.call_blocking(&request);
            if thread_state.swap(FINISHED, Ordering::SeqCst) == ABANDONED {
                thread_plugin.abandoned_calls.fetch_sub(1, Ordering::SeqCst);
            }
            // The receiver is gone when the caller stopped waiting; nothing to do.
            let _ = answer_tx.send(answer);
        });
    if let Err(error) = spawned {
        return Err(HookError::Failed(format!(
            "cannot start a thread for native plugin {}: {error}",
            plugin.name
        )));
    }

    match tokio::time::timeout_at(deadline, answer_rx).await {
        Ok(Ok(Ok(response))) => Ok(response),
        Ok(Ok(Err(reason))) => Err(HookError::Failed(format!(
            "native plugin {}: {reason}",
            plugin.name
        ))),
        Ok(Err(_)) => Err(HookError::Failed(format!(
            "native plugin {}: the call ended without an answer",
            plugin.name
        ))),
        Err(_) => {
            // Count first, then claim: the thread may finish in between, and it only
            // decrements for a call it sees as abandoned.
            plugin.abandoned_calls.fetch_add(1, Ordering::SeqCst);
            if state
                .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                plugin.abandoned_calls.fetch_sub(1, Ordering::SeqCst);
            }
            Err(HookError::TimedOut(bound_ms))
        }
    }
}
