//! One release: a deploy of a release path with its own ports, its own
//! release-scoped processes (handoff services, companions, the proxied process)
//! and its own connection counters.

use crate::control::status::{ConnectionsStatus, ReleaseStatus};
use crate::process::ManagedProcess;
use crate::proxy::{ConnectionCounters, ReleaseTarget};
use crate::util::sync::Unpoisoned;
use crate::util::time::iso_now;
use futures_util::future::join_all;
use std::sync::{Arc, Mutex, MutexGuard};

crate::util::names::wire_names! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ReleaseState {
        Starting = "starting",
        Active = "active",
        Draining = "draining",
        Stopped = "stopped",
        Failed = "failed",
    }
}

impl ReleaseState {
    /// Release processes restart after a crash only while their release is live.
    pub fn allows_restart(self) -> bool {
        matches!(self, ReleaseState::Active | ReleaseState::Starting)
    }
}

/// Timestamps and state of a release; changes over its life.
#[derive(Debug, Clone)]
pub struct ReleaseMeta {
    pub state: ReleaseState,
    pub activated_at: Option<String>,
    pub drain_started_at: Option<String>,
    pub stopped_at: Option<String>,
}

/// One release-scoped process instance and the config entry it came from.
#[derive(Clone)]
pub struct ReleaseProcess {
    pub base_id: String,
    pub process: Arc<ManagedProcess>,
}

pub struct Release {
    pub id: String,
    /// Exactly as given in the deploy request.
    pub path: String,
    pub revision: String,
    /// Allocated ports keyed by base process id, in config order.
    pub ports: Vec<(String, u16)>,
    pub counters: Arc<ConnectionCounters>,
    /// Where the proxy sends this release's traffic.
    pub target: Arc<ReleaseTarget>,
    meta: Mutex<ReleaseMeta>,
    processes: Mutex<Vec<ReleaseProcess>>,
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release")
            .field("id", &self.id)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Release {
    pub fn new(
        id: String,
        path: String,
        revision: String,
        ports: Vec<(String, u16)>,
        upstream_host: &str,
        proxied_port: u16,
    ) -> Arc<Release> {
        let counters = ConnectionCounters::new();
        let target = ReleaseTarget::new(id.clone(), upstream_host, proxied_port, counters.clone());
        Arc::new(Release {
            id,
            path,
            revision,
            ports,
            counters,
            target,
            meta: Mutex::new(ReleaseMeta {
                state: ReleaseState::Starting,
                activated_at: None,
                drain_started_at: None,
                stopped_at: None,
            }),
            processes: Mutex::new(Vec::new()),
        })
    }

    pub fn meta(&self) -> MutexGuard<'_, ReleaseMeta> {
        self.meta.lock().unpoisoned()
    }

    pub fn state(&self) -> ReleaseState {
        self.meta().state
    }

    pub fn set_state(&self, state: ReleaseState) {
        self.meta().state = state;
    }

    pub fn mark_active(&self) {
        let mut meta = self.meta();
        meta.state = ReleaseState::Active;
        meta.activated_at = Some(iso_now());
    }

    /// Marks the release stopped; a release already stopped keeps its first
    /// `stoppedAt`.
    pub fn mark_stopped(&self) {
        let mut meta = self.meta();
        if meta.state == ReleaseState::Stopped && meta.stopped_at.is_some() {
            return;
        }
        meta.state = ReleaseState::Stopped;
        meta.stopped_at = Some(iso_now());
    }

    pub fn port(&self, base_id: &str) -> Option<u16> {
        self.ports
            .iter()
            .find(|(id, _)| id == base_id)
            .map(|(_, port)| *port)
    }

    /// Records an instance; called before it is spawned so a failed start can
    /// still be reported and cleaned up.
    pub fn add_process(&self, base_id: &str, process: Arc<ManagedProcess>) {
        self.processes.lock().unpoisoned().push(ReleaseProcess {
            base_id: base_id.to_string(),
            process,
        });
    }

    /// Instances in start order.
    pub fn processes(&self) -> Vec<ReleaseProcess> {
        self.processes.lock().unpoisoned().clone()
    }

    /// The instances of one config entry, in replica order.
    pub fn instances_of(&self, base_id: &str) -> Vec<Arc<ManagedProcess>> {
        self.processes()
            .into_iter()
            .filter(|p| p.base_id == base_id)
            .map(|p| p.process)
            .collect()
    }

    /// Stops every process in parallel with the graceful sequence, without
    /// waiting for connections, then marks the release stopped.
    pub async fn stop_now(&self) {
        let processes = self.processes();
        join_all(processes.iter().map(|p| p.process.stop())).await;
        self.target.retire();
        self.mark_stopped();
    }

    /// This release as `status` shows it.
    pub fn status(&self) -> ReleaseStatus {
        let meta = self.meta().clone();
        let http = self.counters.http() as u64;
        let websocket = self.counters.websocket() as u64;
        ReleaseStatus {
            activated_at: meta.activated_at,
            connection_count: http + websocket,
            connections: ConnectionsStatus { http, websocket },
            drain_started_at: meta.drain_started_at,
            ports: self.ports.clone(),
            processes: self
                .processes()
                .iter()
                .map(|p| p.process.status())
                .collect(),
            release_id: self.id.clone(),
            release_path: self.path.clone(),
            revision: self.revision.clone(),
            state: meta.state.as_str().to_string(),
            stopped_at: meta.stopped_at,
        }
    }
}
