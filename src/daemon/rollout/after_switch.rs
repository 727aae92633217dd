//! The post-switch watch of a deploy (or a promoted canary): the previous release
//! keeps running without new requests while the new one is watched; a failure
//! switches straight back and stops the new release gracefully.

use super::watch::WatchEnd;
use super::{Phase, RolloutRun};
use crate::config::model::Config;
use crate::daemon::deploy::DeployOutcome;
use crate::daemon::drain::drain_and_stop;
use crate::daemon::errors::{DeployError, RollbackError, ShuttingDown};
use crate::daemon::release::Release;
use crate::daemon::state::Daemon;
use crate::events::{Event, TrafficEvent};
use crate::plugins::Registry;
use std::sync::Arc;
use std::time::Duration;

impl Daemon {
    /// Runs the watch of a release that just became active. `Ok` when it passed
    /// (the caller retires `previous`); on failure traffic is back on `previous`,
    /// `release` is stopped, and the error says why.
    pub(in crate::daemon) async fn watch_switched(
        self: &Arc<Self>,
        release: &Arc<Release>,
        previous: &Arc<Release>,
        config: &Arc<Config>,
        registry: &Registry,
        window: Duration,
    ) -> Result<(), DeployError> {
        let run = RolloutRun::new(
            release.clone(),
            Some(previous.clone()),
            Phase::Watching,
            100,
            config.clone(),
            registry.clone(),
        );
        self.state().rollout = Some(run.clone());
        self.events
            .emit(Event::Traffic(TrafficEvent::RolloutStarted {
                release_id: release.id.clone(),
                phase: Phase::Watching.as_str(),
                percent: 100,
            }));
        self.report_rollout(&run);
        let end = self.watch_rollout(&run, Some(window)).await;
        let result = match end {
            WatchEnd::Passed(window) => {
                self.events
                    .emit(Event::Traffic(TrafficEvent::RolloutPassed {
                        release_id: release.id.clone(),
                        requests: window.responses,
                        errors: window.server_errors,
                    }));
                // From here the previous release is retired like after any switch.
                previous.target.counters().close();
                Ok(())
            }
            WatchEnd::Failed { reason, automatic } => {
                self.switch_back(&run, &reason, automatic).await;
                Err(DeployError::RolledBack {
                    release_id: release.id.clone(),
                    reason,
                })
            }
            WatchEnd::Stopping => Err(ShuttingDown.into()),
        };
        self.end_rollout(&run);
        result
    }

    /// Sends new requests back to the rollout's previous release, lets the new
    /// release's requests in flight finish and stops it gracefully.
    async fn switch_back(self: &Arc<Self>, run: &RolloutRun, reason: &str, automatic: bool) {
        let release = &run.release;
        self.report_rollout_failure(run, reason, automatic);
        let Some(previous) = &run.previous else {
            return;
        };
        {
            let mut state = self.state();
            previous.mark_active();
            state.active = Some(previous.clone());
        }
        // Closes the new release's counters: its drain count is final.
        self.router.set_active(Some(previous.target.clone()));
        self.events.emit(Event::TrafficSwitched {
            previous_release_id: Some(release.id.clone()),
            release_id: previous.id.clone(),
        });
        drain_and_stop(release.clone(), run.config.clone(), run.registry.clone()).await;
        self.persist().await;
    }

    /// `rollback` while a rollout runs: ends it and goes back to the release that
    /// was active before it. Returns `{activeReleaseId, previousReleaseId}`. When
    /// the rollout ended on its own first, this is an ordinary rollback.
    pub async fn rollback_rollout(
        self: &Arc<Self>,
        run: Arc<RolloutRun>,
    ) -> Result<DeployOutcome, RollbackError> {
        if run.phase() == Phase::Watching {
            run.interrupt(Some("rollback requested".to_string()));
        }
        // The deploy that runs a watch switches back and then releases the lock.
        let operations = self.lock_operations().await;
        let current = self.rollout().is_some_and(|r| Arc::ptr_eq(&r, &run));
        if current && run.phase() == Phase::Canary {
            self.abort_canary(&operations, &run, "rollback requested", false)
                .await;
        }
        let active = self.state().active.clone();
        let went_back = match (&active, &run.previous) {
            (Some(active), Some(previous)) => Arc::ptr_eq(active, previous),
            _ => false,
        };
        if !went_back {
            self.ensure_running().map_err(DeployError::from)?;
            return self.rollback_locked(&operations, None).await;
        }
        Ok(DeployOutcome {
            active_release_id: active.map(|a| a.id.clone()).unwrap_or_default(),
            previous_release_id: Some(run.release.id.clone()),
            canary: None,
        })
    }
}
