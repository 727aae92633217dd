//! Rollback: redeploy a retained release from its path, with a
//! fresh set of processes and ports, through the normal deploy flow.

use super::deploy::{DeployOutcome, DeployRequest};
use super::errors::RollbackError;
use super::release::ReleaseState;
use super::state::{Daemon, OperationsGuard};
use crate::events::Event;
use std::sync::Arc;
use std::time::Duration;

impl Daemon {
    /// Runs a rollback while `operations` is held.
    pub async fn rollback_locked(
        self: &Arc<Self>,
        operations: &OperationsGuard<'_>,
        release_id: Option<String>,
    ) -> Result<DeployOutcome, RollbackError> {
        let (target, is_active) = {
            let state = self.state();
            let active = state.active.clone();
            let target = match &release_id {
                Some(id) => state
                    .release(id)
                    .ok_or_else(|| RollbackError::NotRetained(id.clone()))?,
                None => {
                    let mut best = None;
                    let mut best_at = i64::MIN;
                    for release in &state.releases {
                        if active.as_ref().is_some_and(|a| Arc::ptr_eq(a, release)) {
                            continue;
                        }
                        let activated = release.meta().activated_at.clone();
                        let Some(at) = activated
                            .as_deref()
                            .and_then(crate::util::time::parse_iso_ms)
                        else {
                            continue;
                        };
                        // On equal times the later entry in map order wins.
                        if at >= best_at {
                            best_at = at;
                            best = Some(release.clone());
                        }
                    }
                    best.ok_or(RollbackError::NoPrevious)?
                }
            };
            let is_active = active.as_ref().is_some_and(|a| Arc::ptr_eq(a, &target));
            (target, is_active)
        };
        if is_active {
            return Err(RollbackError::AlreadyActive(target.id.clone()));
        }
        if !matches!(target.state(), ReleaseState::Stopped | ReleaseState::Failed) {
            // Still draining: stop the old instance now so it is not orphaned once
            // its id is reused by the new one. HTTP requests it is still answering
            // finish first (bounded by the drain timeout); its WebSockets end.
            let timeout = Duration::from_millis(self.config().proxy.drain_timeout_ms);
            super::drain::wait_http_requests(&target, timeout).await;
            target.stop_now().await;
        }
        self.events.emit(Event::RollbackStarting {
            release_id: target.id.clone(),
            release_path: target.path.clone(),
        });
        self.deploy_locked(
            operations,
            DeployRequest {
                release_path: target.path.clone(),
                release_id: Some(target.id.clone()),
                revision: Some(target.revision.clone()),
                watch_ms: None,
                canary_percent: None,
            },
        )
        .await
        .map_err(RollbackError::from)
    }
}
