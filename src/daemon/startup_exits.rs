//! Watching a new proxied process while its health check runs: a process that
//! keeps exiting before it ever became healthy fails the deploy after
//! [`MAX_EXITS_BEFORE_HEALTHY`] exits (or as soon as it may not restart any
//! more), with how it exited and the last lines it wrote to stderr — instead of
//! being restarted until `healthTimeoutMs` runs out and reported by the probe's
//! last error ("connection refused").
//!
//! It reads the process's own `process exited` / `restart limit reached` /
//! `process restart failed` events, so the supervisor needs no hook for it.

use crate::events::{Event, EventRecord, EventSink, ListenerGuard, ProcessEvent};
use crate::process::{ManagedProcess, Stream};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Exits of the new proxied process, before it became healthy, that fail the
/// deploy.
pub const MAX_EXITS_BEFORE_HEALTHY: usize = 3;

/// How many of the last stderr lines the failure quotes.
pub const STDERR_LINES_QUOTED: usize = 5;

/// How long the output of the last run may take to arrive after its exit was
/// seen (the pipes are read by their own tasks).
const OUTPUT_SETTLE: Duration = Duration::from_millis(300);

/// Something the process's events said.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Exited {
        code: Option<i64>,
        signal: Option<String>,
    },
    /// The restart budget is used up, or a restart could not spawn.
    NoMoreRestarts(String),
}

/// Collects the exits of one process instance from the daemon's events.
pub struct StartupExits {
    seen: mpsc::UnboundedReceiver<Seen>,
    _listener: ListenerGuard,
}

impl StartupExits {
    /// Starts watching; call it before the process is spawned so that an
    /// immediate exit is not missed.
    pub fn watch(events: &EventSink, instance_id: &str, release_id: &str) -> StartupExits {
        let (sender, seen) = mpsc::unbounded_channel();
        let (instance_id, release_id) = (instance_id.to_string(), release_id.to_string());
        let listener = events.listen(Arc::new(move |event: &Event, _: &EventRecord| {
            let Event::Process { scope, event } = event else {
                return;
            };
            if scope.process_id != instance_id || scope.release_id != release_id {
                return;
            }
            let seen = match event {
                ProcessEvent::Exited { code, signal, .. } => Seen::Exited {
                    code: code.map(i64::from),
                    signal: signal.clone(),
                },
                ProcessEvent::RestartLimitReached {
                    max_restarts,
                    window_ms,
                    ..
                } => Seen::NoMoreRestarts(format!(
                    "its restart limit was reached (maxRestarts {} within {} ms)",
                    max_restarts.map_or("null".to_string(), |n| n.to_string()),
                    window_ms,
                )),
                ProcessEvent::RestartFailed { error, .. } => {
                    Seen::NoMoreRestarts(format!("it could not be restarted: {error}"))
                }
                _ => return,
            };
            let _ = sender.send(seen);
        }));
        StartupExits {
            seen,
            _listener: listener,
        }
    }

    /// Resolves with the failure detail once the process exited
    /// [`MAX_EXITS_BEFORE_HEALTHY`] times or cannot restart any more; never
    /// resolves otherwise.
    pub async fn gave_up(&mut self, process: &ManagedProcess) -> String {
        let mut exits = 0usize;
        let mut last_exit: Option<String> = None;
        loop {
            let Some(seen) = self.seen.recv().await else {
                return std::future::pending().await;
            };
            let verdict = match seen {
                Seen::Exited { code, signal } => {
                    exits += 1;
                    last_exit = Some(describe_exit(code, signal.as_deref()));
                    if exits < MAX_EXITS_BEFORE_HEALTHY {
                        continue;
                    }
                    format!(
                        "the process exited {exits} times before it became healthy (last: {})",
                        last_exit.as_deref().unwrap_or("unknown")
                    )
                }
                Seen::NoMoreRestarts(why) => format!(
                    "the process exited {exits} time{} before it became healthy (last: {}) and {why}",
                    if exits == 1 { "" } else { "s" },
                    last_exit.as_deref().unwrap_or("unknown")
                ),
            };
            return format!("{verdict}{}", stderr_tail(process).await);
        }
    }
}

/// `exit code 1`, `exit code 127 (command not found)`, `killed by SIGKILL`.
pub fn describe_exit(code: Option<i64>, signal: Option<&str>) -> String {
    match (code, signal) {
        (_, Some(signal)) => format!("killed by {signal}"),
        (Some(127), None) => "exit code 127 (command not found)".to_string(),
        (Some(126), None) => "exit code 126 (command not executable)".to_string(),
        (Some(code), None) => format!("exit code {code}"),
        (None, None) => "exit status unknown".to_string(),
    }
}

/// `\nlast lines of its stderr:\n  <line>…`, or a note that there were none.
async fn stderr_tail(process: &ManagedProcess) -> String {
    let lines = settled_stderr(process).await;
    if lines.is_empty() {
        return "\nit wrote nothing to stderr".to_string();
    }
    let mut text = String::from("\nlast lines of its stderr:");
    for line in lines {
        text.push_str("\n  ");
        text.push_str(&line);
    }
    text
}

/// The last stderr lines, once the captured output stopped growing (or after
/// [`OUTPUT_SETTLE`]).
async fn settled_stderr(process: &ManagedProcess) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + OUTPUT_SETTLE;
    let mut previous = process.logs().len();
    loop {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let now = process.logs().len();
        if now == previous || tokio::time::Instant::now() >= deadline {
            break;
        }
        previous = now;
    }
    let stderr: Vec<String> = process
        .logs()
        .into_iter()
        .filter(|line| line.stream == Stream::Stderr)
        .map(|line| line.line)
        .collect();
    stderr[stderr.len().saturating_sub(STDERR_LINES_QUOTED)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_read_plainly() {
        assert_eq!(
            describe_exit(Some(127), None),
            "exit code 127 (command not found)"
        );
        assert_eq!(describe_exit(Some(1), None), "exit code 1");
        assert_eq!(describe_exit(None, Some("SIGKILL")), "killed by SIGKILL");
        assert_eq!(describe_exit(None, None), "exit status unknown");
    }
}
