//! The readiness loop for a new proxied process: probe until healthy or until the
//! deadline, with each probe bounded by the time that is left.

use crate::config::model::HealthConfig;
use crate::events::{Event, EventSink, ProcessEvent, ProcessScope};
use crate::plugins::{HealthPlugin, HealthVerdict, HookCall};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep, timeout};

/// The first probe always runs, and gets at least this long even when the
/// deadline is closer (`timeoutMs: 0` still means "probe once").
pub const FIRST_PROBE_MIN: Duration = Duration::from_millis(1000);
/// The shortest pause between probes, so `intervalMs: 0` cannot spin a core.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// Time a probe gets past its own deadline to report its own detail before it is
/// abandoned.
const PROBE_GRACE: Duration = Duration::from_millis(25);

/// The readiness check did not pass before its deadline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Health check failed for {target}: {detail}")]
pub struct HealthError {
    /// What was probed, e.g. the URL.
    pub target: String,
    /// The last probe's detail (`no attempts` if none ran).
    pub detail: String,
}

/// Reports a readiness check's progress as events (for deploy progress
/// lines): the first failed probe, then at most one a second, and the pass.
struct ProbeProgress {
    events: EventSink,
    scope: ProcessScope,
    attempts: u64,
    last_report: Option<Instant>,
}

impl ProbeProgress {
    const EVERY: Duration = Duration::from_secs(1);

    fn new(call: &HookCall) -> ProbeProgress {
        ProbeProgress {
            events: call.events.clone(),
            scope: ProcessScope {
                process_id: call.process.instance_id.clone(),
                release_id: call.process.release_id.clone(),
            },
            attempts: 0,
            last_report: None,
        }
    }

    fn failed(&mut self, detail: &str) {
        self.attempts += 1;
        let now = Instant::now();
        if self.last_report.is_some_and(|at| now < at + Self::EVERY) {
            return;
        }
        self.last_report = Some(now);
        self.emit(ProcessEvent::HealthCheckWaiting {
            attempt: self.attempts,
            detail: detail.to_string(),
        });
    }

    fn passed(&mut self) {
        self.attempts += 1;
        self.emit(ProcessEvent::HealthCheckPassed {
            attempts: self.attempts,
        });
    }

    fn emit(&self, event: ProcessEvent) {
        self.events.emit(Event::Process {
            scope: self.scope.clone(),
            event,
        });
    }
}

/// The latest instant a readiness check started now may run until: the start
/// delay plus the timeout. Callers without a tighter bound of their own pass this
/// as `HookCall::deadline`.
pub fn health_deadline(health: &HealthConfig) -> Instant {
    Instant::now()
        + Duration::from_millis(health.start_delay_ms)
        + Duration::from_millis(health.timeout_ms)
}

/// Waits for `startDelayMs`, then probes every `intervalMs` until a probe says
/// healthy or `timeoutMs` has passed (and never past `call.deadline`). At least one
/// probe runs. Each probe gets the time left as its deadline.
pub async fn wait_healthy(
    plugin: Arc<dyn HealthPlugin>,
    call: HookCall,
    health: &HealthConfig,
    describe: &str,
) -> Result<(), HealthError> {
    if health.start_delay_ms > 0 {
        sleep(Duration::from_millis(health.start_delay_ms)).await;
    }
    let deadline = (Instant::now() + Duration::from_millis(health.timeout_ms)).min(call.deadline);
    let interval = Duration::from_millis(health.interval_ms).max(MIN_PROBE_INTERVAL);
    let mut detail = "no attempts".to_string();
    let mut last_was_answer = false;
    let mut first = true;
    let mut progress = ProbeProgress::new(&call);
    loop {
        let now = Instant::now();
        if !first && now >= deadline {
            break;
        }
        let probe_deadline = if first {
            deadline.max(now + FIRST_PROBE_MIN)
        } else {
            deadline
        };
        first = false;
        let mut probe_call = call.clone();
        probe_call.deadline = probe_deadline;
        let bound = probe_deadline.saturating_duration_since(now);
        let outcome = match timeout(bound + PROBE_GRACE, plugin.probe(probe_call)).await {
            Ok(Ok(HealthVerdict::Healthy)) => {
                progress.passed();
                return Ok(());
            }
            Ok(Ok(HealthVerdict::NotYet(why))) => why,
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {} ms", bound.as_millis()),
        };
        // A probe cut short by the deadline says less than a real answer before
        // it ("HTTP 503", "connection refused"), so it only fills an empty detail
        // or replaces another cut-short one. A probe that had a full
        // `FIRST_PROBE_MIN` and still got no answer was not cut short: that the
        // endpoint does not answer in time is the answer ("timed out after N ms").
        let cut_short = Instant::now() >= probe_deadline && bound < FIRST_PROBE_MIN;
        if !cut_short || !last_was_answer {
            detail = outcome;
            last_was_answer = !cut_short;
        }
        progress.failed(&detail);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sleep(interval.min(left)).await;
    }
    Err(HealthError {
        target: describe.to_string(),
        detail,
    })
}
