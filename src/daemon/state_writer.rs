//! When and how the daemon writes its state file: switched on
//! once the control socket is exposed, then every 5 s, after every deploy, drain
//! and stop, and — so that a daemon killed at any moment leaves every live
//! process recorded — within [`PERSIST_COALESCE`] of any process starting or
//! exiting and of any release changing state. Never while stopping. Writes are
//! serialized; a burst of changes becomes one write.

use super::errors::StateCleanupError;
use super::orphans::{self, Orphan};
use super::state::Daemon;
use super::state_file::{OrphanEntry, StateFile, StateSnapshot};
use crate::control::status::{ReleaseStatus, Status};
use crate::events::{Event, EventRecord, ProcessEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How often the state is written even when nothing happened.
pub const PERSIST_INTERVAL: Duration = Duration::from_millis(5000);

/// How long a change waits for more changes before the state is written: the
/// processes of a deploy start within a few milliseconds of each other, and one
/// write records them all.
pub const PERSIST_COALESCE: Duration = Duration::from_millis(50);

/// Whether the state file is rewritten soon after `event`: a process started or
/// exited, or a release changed state.
fn changes_state(event: &Event) -> bool {
    matches!(
        event,
        Event::Process {
            event: ProcessEvent::Started { .. } | ProcessEvent::Exited { .. },
            ..
        } | Event::TrafficSwitched { .. }
            | Event::ReleaseStartupFailed { .. }
            | Event::ReleaseStopped { .. }
            | Event::ReleaseDrained { .. }
            | Event::DeployFailed { .. }
    )
}

impl Daemon {
    /// Writes the state file now (when configured and switched on).
    pub async fn persist(&self) {
        let Some(file) = &self.state_file else {
            return;
        };
        let enabled = self.persistence.lock().await;
        if !*enabled || self.is_stopping() {
            return;
        }
        let snapshot = StateSnapshot::of_status(self.persisted_status(), self.events.recent(None));
        let path = file.path().to_path_buf();
        let write = tokio::task::spawn_blocking(move || StateFile::new(path).write(&snapshot));
        let result = match write.await {
            Ok(result) => result.map_err(|e| crate::util::errno::describe_io_error(&e)),
            Err(error) => Err(error.to_string()),
        };
        drop(enabled);
        if let Err(error) = result {
            self.events.emit(Event::StatePersistFailed { error });
        }
    }

    /// The status object the state file is built from: like `status`, plus the
    /// releases `status` does not list but whose processes run — one still
    /// starting (deploying or health-checking) and one that left the map because
    /// its id was deployed again — so none of them is forgotten after a crash.
    fn persisted_status(&self) -> Status {
        let mut status = self.status();
        let unlisted: Vec<ReleaseStatus> = {
            let state = self.state();
            state
                .starting
                .iter()
                .chain(state.detached.iter())
                .filter(|release| !state.releases.iter().any(|r| Arc::ptr_eq(r, release)))
                .map(|release| release.status())
                .collect()
        };
        status.releases.extend(unlisted);
        status
    }

    /// Switches persistence on, writes once, and then writes every 5 s and soon
    /// after every process or release change.
    pub async fn start_persistence(self: &Arc<Self>) {
        if self.state_file.is_none() {
            return;
        }
        *self.persistence.lock().await = true;
        self.persist().await;
        let changed = Arc::new(Notify::new());
        let listener = self.events.listen({
            let changed = changed.clone();
            Arc::new(move |event: &Event, _: &EventRecord| {
                if changes_state(event) {
                    // Stores a permit when the writer is busy: one write follows.
                    changed.notify_one();
                }
            })
        });
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let _listener = listener;
            let mut ticker = tokio::time::interval(PERSIST_INTERVAL);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = changed.notified() => tokio::time::sleep(PERSIST_COALESCE).await,
                }
                let Some(daemon) = weak.upgrade() else { return };
                if daemon.is_stopping() {
                    return;
                }
                daemon.persist().await;
            }
        });
    }

    /// Switches persistence off and waits for a write in flight.
    pub async fn stop_persistence(&self) {
        *self.persistence.lock().await = false;
    }

    /// The final state file at shutdown: kept (with only the previous daemon's
    /// live processes) when some are still alive, so `recover` can find them;
    /// otherwise deleted.
    pub async fn finalize_state_file(&self) -> Result<(), StateCleanupError> {
        let Some(file) = &self.state_file else {
            return Ok(());
        };
        self.stop_persistence().await;
        let orphans: Vec<Orphan> = {
            let mut state = self.state();
            state.orphans.retain(|orphan| orphan.is_live());
            state.orphans.clone()
        };
        let path = file.path().to_path_buf();
        let result = tokio::task::spawn_blocking(move || {
            let file = StateFile::new(path);
            if orphans.is_empty() {
                file.clear()
            } else {
                file.write(&StateSnapshot::orphans_only(
                    orphans.iter().map(OrphanEntry::from).collect(),
                ))
            }
        })
        .await?;
        Ok(result?)
    }

    /// Reads the previous daemon's state file and reports its live processes
    ///. Nothing is signalled or adopted.
    pub fn report_orphans(&self) {
        let Some(file) = &self.state_file else {
            return;
        };
        let orphans = file
            .read()
            .map(|state| orphans::live_processes(&state))
            .unwrap_or_default();
        for orphan in &orphans {
            self.events.emit(Event::OrphanDetected {
                pid: orphan.pid,
                process_id: orphan.id.clone(),
                release_id: orphan.release_id.clone(),
            });
        }
        if !orphans.is_empty() {
            self.events.emit(Event::OrphansFromPreviousDaemon {
                count: orphans.len(),
            });
        }
        self.state().orphans = orphans;
    }
}
