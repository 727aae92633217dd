//! Canary rollouts: `deploy --canary N` starts the release and gives it N % of
//! new requests next to the active one; `rollout set|promote|abort` move it on.
//! The watch thresholds apply the whole time: a failing canary is aborted.

use super::watch::WatchEnd;
use super::{Phase, RolloutRun};
use crate::config::model::Config;
use crate::control::protocol::RolloutAction;
use crate::control::reply::{AbortReply, CanaryReply, RolloutReply};
use crate::daemon::deploy::DeployOutcome;
use crate::daemon::errors::DeployError;
use crate::daemon::release::Release;
use crate::daemon::state::{Daemon, OperationsGuard};
use crate::events::{Event, TrafficEvent};
use crate::plugins::Registry;
use crate::proxy::{Canary, StickyBy};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A `rollout` command that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("No canary is open; start one with \"rollbridge deploy --canary <percent>\".")]
    NoCanary,
    #[error("rollout set needs a percent from 0 to 100")]
    NoPercent,
    #[error(transparent)]
    Deploy(#[from] DeployError),
}

impl Daemon {
    /// Opens a canary for a started, healthy `release` (the deploy's last step).
    pub(in crate::daemon) fn open_canary(
        self: &Arc<Self>,
        release: Arc<Release>,
        config: Arc<Config>,
        registry: Registry,
        percent: u8,
    ) -> DeployOutcome {
        let active = self.state().active.clone();
        let active_id = active.as_ref().map(|a| a.id.clone()).unwrap_or_default();
        let sticky = config
            .rollout
            .sticky_by
            .as_deref()
            .and_then(StickyBy::parse);
        let run = RolloutRun::new(
            release.clone(),
            active,
            Phase::Canary,
            percent,
            config,
            registry,
        );
        self.state().rollout = Some(run.clone());
        self.router.set_canary(Some(Canary {
            target: release.target.clone(),
            percent,
            sticky,
        }));
        self.events
            .emit(Event::Traffic(TrafficEvent::RolloutStarted {
                release_id: release.id.clone(),
                phase: Phase::Canary.as_str(),
                percent,
            }));
        self.report_rollout(&run);
        let daemon = self.clone();
        tokio::spawn(async move { daemon.monitor_canary(run).await });
        DeployOutcome {
            active_release_id: active_id,
            previous_release_id: None,
            canary: Some((release.id.clone(), percent)),
        }
    }

    /// Watches the canary until it is promoted or aborted; aborts it when it fails.
    async fn monitor_canary(self: Arc<Self>, run: Arc<RolloutRun>) {
        let WatchEnd::Failed { reason, automatic } = self.watch_rollout(&run, None).await else {
            return;
        };
        if !automatic {
            return;
        }
        let operations = self.lock_operations().await;
        let current = self.rollout();
        if current.is_some_and(|current| Arc::ptr_eq(&current, &run)) {
            self.abort_canary(&operations, &run, &reason, true).await;
        }
    }

    /// Ends the canary: no new request reaches it, and it is drained and stopped
    /// gracefully in the background (WebSockets get `proxy.drainTimeoutMs`).
    pub(super) async fn abort_canary(
        self: &Arc<Self>,
        _operations: &OperationsGuard<'_>,
        run: &Arc<RolloutRun>,
        reason: &str,
        automatic: bool,
    ) {
        run.stop.cancel();
        self.router.set_canary(None);
        let release = run.release.clone();
        self.report_rollout_failure(run, reason, automatic);
        {
            let mut state = self.state();
            state.starting.retain(|r| !Arc::ptr_eq(r, &release));
            // Kept reachable until drained so shutdown stops it too.
            state.detached.push(release.clone());
        }
        self.end_rollout(run);
        self.retire_in_background(release, run.config.clone(), run.registry.clone());
    }

    /// `rollout set|promote|abort`.
    pub async fn rollout_command(
        self: &Arc<Self>,
        action: RolloutAction,
        percent: Option<u8>,
    ) -> Result<RolloutReply, RolloutError> {
        let operations = self.lock_operations().await;
        self.ensure_running().map_err(DeployError::from)?;
        let run = self
            .rollout()
            .filter(|run| run.phase() == Phase::Canary)
            .ok_or(RolloutError::NoCanary)?;
        let active_id = run.previous.as_ref().map(|p| p.id.clone());
        match action {
            RolloutAction::Set => {
                let percent = percent.ok_or(RolloutError::NoPercent)?.min(100);
                run.percent.store(percent, Ordering::Relaxed);
                let sticky = run
                    .config
                    .rollout
                    .sticky_by
                    .as_deref()
                    .and_then(StickyBy::parse);
                self.router.set_canary(Some(Canary {
                    target: run.release.target.clone(),
                    percent,
                    sticky,
                }));
                self.events
                    .emit(Event::Traffic(TrafficEvent::RolloutUpdated {
                        release_id: run.release.id.clone(),
                        percent,
                    }));
                self.report_rollout(&run);
                Ok(RolloutReply::Set(CanaryReply {
                    active_release_id: active_id,
                    canary_release_id: run.release.id.clone(),
                    percent,
                }))
            }
            RolloutAction::Abort => {
                self.abort_canary(&operations, &run, "aborted by rollout abort", false)
                    .await;
                Ok(RolloutReply::Aborted(AbortReply {
                    active_release_id: active_id,
                    aborted_release_id: run.release.id.clone(),
                }))
            }
            RolloutAction::Promote => {
                // The canary's watch ends; the switch runs the post-switch watch
                // (if configured) like any deploy.
                run.stop.cancel();
                self.end_rollout(&run);
                self.state()
                    .starting
                    .retain(|r| !Arc::ptr_eq(r, &run.release));
                let outcome = self
                    .switch_and_finish(
                        run.release.clone(),
                        run.config.clone(),
                        run.registry.clone(),
                        None,
                    )
                    .await?;
                Ok(RolloutReply::Promoted(outcome.to_payload()))
            }
        }
    }
}
