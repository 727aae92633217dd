//! `stop`: stop one release's processes right away. Stopping the
//! active release leaves the proxy without a target (503) until the next deploy.

use super::errors::StopError;
use super::state::{Daemon, OperationsGuard};
use crate::control::status::Status;
use crate::events::Event;
use std::sync::Arc;

impl Daemon {
    /// Runs a stop, while the operations lock is held, and returns the status
    /// afterwards.
    pub async fn stop_locked(
        self: &Arc<Self>,
        _operations: &OperationsGuard<'_>,
        release_id: Option<String>,
    ) -> Result<Status, StopError> {
        let release = {
            let mut state = self.state();
            let release = match &release_id {
                Some(id) => state.release(id),
                None => state.active.clone(),
            }
            .ok_or_else(|| StopError(release_id.as_deref().unwrap_or("active").to_string()))?;
            if state
                .active
                .as_ref()
                .is_some_and(|a| Arc::ptr_eq(a, &release))
            {
                state.active = None;
                self.router.set_active(None);
            }
            release
        };
        release.stop_now().await;
        self.events.emit(Event::ReleaseStopped {
            release_id: release.id.clone(),
        });
        self.prune_releases();
        self.persist().await;
        self.recheck_orphans();
        Ok(self.status())
    }
}
