//! Traffic control after (and instead of) a plain switch: the post-switch watch
//! with automatic rollback (`watch.rs`), canary rollouts (`canary.rs`), and the
//! thresholds both apply (`verdict.rs`). See docs/rollouts.md.
//!
//! A rollout is one [`RolloutRun`] in `State::rollout`. The proxy side is the
//! routing table (`proxy::Router`) and the per-release stats every
//! `ReleaseTarget` keeps; the daemon reads those stats as windows (snapshot
//! differences) off the request path.

mod after_switch;
mod canary;
mod verdict;
mod watch;

use super::release::Release;
use super::state::{Daemon, OperationsGuard};
use crate::config::model::Config;
use crate::control::status::RolloutStatus;
use crate::events::{Event, TrafficEvent};
use crate::plugins::Registry;
use crate::proxy::StatsSnapshot;
use crate::util::sync::Unpoisoned;
use crate::util::time::iso_now;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

pub use canary::RolloutError;

/// What a rollout is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The new release gets a share of new requests next to the active one.
    Canary,
    /// The new release is active; the previous one still runs for a fast way back.
    Watching,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Canary => "canary",
            Phase::Watching => "watching",
        }
    }
}

/// One rollout in progress.
pub struct RolloutRun {
    pub release: Arc<Release>,
    /// The active release when the rollout began (where a failure goes back to).
    pub previous: Option<Arc<Release>>,
    phase: Mutex<Phase>,
    percent: AtomicU8,
    pub started_at: String,
    /// The release's stats when the rollout began; windows are measured from here.
    baseline: StatsSnapshot,
    /// The config and registry the release was started with (for promote).
    pub config: Arc<Config>,
    pub registry: Registry,
    /// Ends the rollout's watch early (promote, abort, rollback, shutdown).
    pub stop: CancellationToken,
    /// Why the watch was stopped, when that means going back (`rollback`).
    stop_reason: Mutex<Option<String>>,
    /// Cancelled once the rollout is over, whichever way.
    pub closed: CancellationToken,
}

impl RolloutRun {
    fn new(
        release: Arc<Release>,
        previous: Option<Arc<Release>>,
        phase: Phase,
        percent: u8,
        config: Arc<Config>,
        registry: Registry,
    ) -> Arc<RolloutRun> {
        let baseline = release.target.stats().snapshot();
        Arc::new(RolloutRun {
            release,
            previous,
            phase: Mutex::new(phase),
            percent: AtomicU8::new(percent),
            started_at: iso_now(),
            baseline,
            config,
            registry,
            stop: CancellationToken::new(),
            stop_reason: Mutex::new(None),
            closed: CancellationToken::new(),
        })
    }

    pub fn phase(&self) -> Phase {
        *self.phase.lock().unpoisoned()
    }

    pub fn percent(&self) -> u8 {
        self.percent.load(Ordering::Relaxed)
    }

    /// The new release's responses since the rollout began.
    pub fn window(&self) -> StatsSnapshot {
        self.release.target.stats().snapshot().since(&self.baseline)
    }

    /// Stops the watch; with a reason, the rollout goes back to the previous release.
    pub fn interrupt(&self, reason: Option<String>) {
        *self.stop_reason.lock().unpoisoned() = reason;
        self.stop.cancel();
    }

    fn stop_reason(&self) -> Option<String> {
        self.stop_reason.lock().unpoisoned().clone()
    }

    /// `status.rollout`.
    pub fn status(&self) -> RolloutStatus {
        let window = self.window();
        RolloutStatus {
            release_id: self.release.id.clone(),
            previous_release_id: self.previous.as_ref().map(|p| p.id.clone()),
            phase: self.phase().as_str().to_string(),
            percent: self.percent(),
            started_at: self.started_at.clone(),
            requests: window.responses,
            errors: window.server_errors,
            error_rate: window.error_rate(),
            p99_ms: window.percentile_ms(0.99),
        }
    }
}

/// The watch window of a deploy: its `--watch-ms`, else `rollout.watchMs`; `None`
/// when that is 0 (no watch, today's switch).
pub fn watch_window(config: &Config, override_ms: Option<u64>) -> Option<std::time::Duration> {
    let ms = override_ms.unwrap_or(config.rollout.watch_ms);
    (ms > 0).then(|| std::time::Duration::from_millis(ms))
}

impl Daemon {
    /// The rollout in progress, if any.
    pub fn rollout(&self) -> Option<Arc<RolloutRun>> {
        self.state().rollout.clone()
    }

    /// `status.rollout` while a rollout runs.
    pub fn rollout_status(&self) -> Option<RolloutStatus> {
        self.rollout().map(|run| run.status())
    }

    /// Takes the operations lock for a deploy-class command, after any open
    /// canary has been promoted or aborted (such commands wait for it the way
    /// they wait for a deploy).
    pub async fn lock_operations_after_canary(&self, command: &str) -> OperationsGuard<'_> {
        loop {
            let open = self.rollout().filter(|run| run.phase() == Phase::Canary);
            if let Some(run) = open {
                tracing::debug!(
                    command,
                    "waiting for the open canary to be promoted or aborted"
                );
                run.closed.cancelled().await;
                continue;
            }
            let guard = match self.try_lock_operations() {
                Some(guard) => guard,
                None => {
                    tracing::debug!(command, "waiting for the operation in progress");
                    self.lock_operations().await
                }
            };
            if self
                .rollout()
                .is_none_or(|run| run.phase() != Phase::Canary)
            {
                return guard;
            }
        }
    }

    /// Ends the rollout record `run` (if it is still the current one).
    fn end_rollout(&self, run: &Arc<RolloutRun>) {
        let mut state = self.state();
        if state
            .rollout
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, run))
        {
            state.rollout = None;
        }
        drop(state);
        run.stop.cancel();
        run.closed.cancel();
        if let Some(observability) = self.observability() {
            observability.rollout_changed(None, 0);
        }
    }

    /// `rollout failed`, plus `automatic rollback` when the thresholds (not an
    /// operator) ended it and there is a release to go back to.
    fn report_rollout_failure(&self, run: &RolloutRun, reason: &str, automatic: bool) {
        let release_id = run.release.id.clone();
        self.events
            .emit(Event::Traffic(TrafficEvent::RolloutFailed {
                release_id: release_id.clone(),
                reason: reason.to_string(),
            }));
        if automatic && let Some(previous) = &run.previous {
            self.events
                .emit(Event::Traffic(TrafficEvent::AutomaticRollback {
                    release_id,
                    previous_release_id: previous.id.clone(),
                    reason: reason.to_string(),
                }));
        }
    }

    fn report_rollout(&self, run: &RolloutRun) {
        if let Some(observability) = self.observability() {
            observability.rollout_changed(Some(run.phase().as_str()), run.percent());
        }
    }
}
