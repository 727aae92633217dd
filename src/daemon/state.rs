//! The daemon object and the one place its state lives.
//!
//! Ownership model (kept deliberately simple):
//! - [`State`] sits behind one `std::sync::Mutex`. It is only ever locked for short,
//!   synchronous sections (read or swap a few fields, clone some `Arc`s) and never
//!   across an `.await`, so `status`, `events` and the background drains never wait
//!   on a slow operation.
//! - Deploy-class commands (`deploy`, `rollback`, `stop`, `restart`, `shutdown`,
//!   `retire-owner`) additionally hold the operations lock, an async mutex, for
//!   their whole run: they happen one at a time, so two deploys can never pick the
//!   same port or both replace the singletons. The `*_locked` flows take its
//!   [`OperationsGuard`], so none can run without holding it.
//! - The proxy reads the active release through the lock-free [`Router`] and never
//!   touches either lock.

use super::bootstrap::BootstrapRequest;
use super::errors::{ShutdownError, ShuttingDown};
use super::orphans::Orphan;
use super::release::Release;
use super::runtime::RuntimeIdentity;
use super::state_file::StateFile;
use crate::config::model::Config;
use crate::control::server::ControlServer;
use crate::events::EventSink;
use crate::observability::DaemonObservability;
use crate::plugins::Registry;
use crate::process::ManagedProcess;
use crate::proxy::{ProxyServer, Router};
use crate::util::sync::Unpoisoned;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::Notify;

/// The deploy in progress, shown as `status.deploying`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployingInfo {
    pub release_id: String,
    pub release_path: String,
    pub started_at: String,
}

/// Everything the daemon owns that changes over time.
pub struct State {
    /// The current config; replaced by the reloaded one when a deploy succeeds.
    pub config: Arc<Config>,
    /// Resolves hooks for `config` (its Lua runtime and native plugins).
    pub registry: Registry,
    /// Retained releases in first-insertion order. Replacing an id keeps its slot.
    pub releases: Vec<Arc<Release>>,
    /// The release receiving new traffic.
    pub active: Option<Arc<Release>>,
    /// Persistent services, in the order they were first started.
    pub services: Vec<(String, Arc<ManagedProcess>)>,
    /// A persistent service's port, fixed for the daemon's life.
    pub service_ports: HashMap<String, u16>,
    /// The current instance of each singleton, in first-start order.
    pub singletons: Vec<(String, Arc<ManagedProcess>)>,
    /// Releases whose deploy is in progress.
    pub starting: Vec<Arc<Release>>,
    /// The release of the latest failed deploy, stopped, kept until the next
    /// deploy starts so its processes' output stays readable (`logs --release`).
    pub failed_release: Option<Arc<Release>>,
    /// Releases that left the map (their id was deployed again) while still
    /// running; kept so shutdown stops them too.
    pub detached: Vec<Arc<Release>>,
    /// Live processes a previous daemon left behind (reported, never managed).
    pub orphans: Vec<Orphan>,
    pub deploying: Option<DeployingInfo>,
    /// `status.bootstrap`, once a known-release bootstrap has activated.
    pub bootstrap: Option<BootstrapRequest>,
    /// The canary or post-switch watch in progress (`status.rollout`).
    pub rollout: Option<Arc<super::rollout::RolloutRun>>,
}

impl State {
    pub fn release(&self, id: &str) -> Option<Arc<Release>> {
        self.releases.iter().find(|r| r.id == id).cloned()
    }

    /// Puts `release` into the map, replacing an entry with the same id in place.
    /// Returns the replaced entry.
    pub fn insert_release(&mut self, release: Arc<Release>) -> Option<Arc<Release>> {
        match self.releases.iter_mut().find(|r| r.id == release.id) {
            Some(slot) => Some(std::mem::replace(slot, release)),
            None => {
                self.releases.push(release);
                None
            }
        }
    }

    pub fn service(&self, id: &str) -> Option<Arc<ManagedProcess>> {
        self.services
            .iter()
            .find(|(sid, _)| sid == id)
            .map(|(_, p)| p.clone())
    }

    pub fn singleton(&self, id: &str) -> Option<Arc<ManagedProcess>> {
        self.singletons
            .iter()
            .find(|(sid, _)| sid == id)
            .map(|(_, p)| p.clone())
    }

    pub fn set_singleton(&mut self, id: &str, process: Arc<ManagedProcess>) {
        match self.singletons.iter_mut().find(|(sid, _)| sid == id) {
            Some(slot) => slot.1 = process,
            None => self.singletons.push((id.to_string(), process)),
        }
    }
}

/// The listeners the daemon holds.
#[derive(Default)]
pub struct Endpoints {
    pub proxy: Option<ProxyServer>,
    pub control: Option<ControlServer>,
}

/// One rollbridge daemon.
pub struct Daemon {
    pub events: EventSink,
    pub router: Arc<Router>,
    /// The config file, reloaded before every deploy.
    pub config_path: Option<PathBuf>,
    pub runtime: Option<RuntimeIdentity>,
    state: Mutex<State>,
    /// Held for the whole run of a deploy-class command; taken only through
    /// [`Daemon::lock_operations`], whose guard the `*_locked` flows require.
    operations: tokio::sync::Mutex<()>,
    /// Set once shutdown or retirement begins; never cleared.
    stopping: Arc<AtomicBool>,
    /// Wakes long waits (health checks) when `stopping` is set.
    pub stopping_notify: Arc<Notify>,
    pub endpoints: Mutex<Endpoints>,
    /// The proxy address actually bound (`status.proxy`).
    pub proxy_bound: Mutex<Option<(String, u16)>>,
    pub state_file: Option<StateFile>,
    /// Serializes state file writes; the flag says whether writing is switched on.
    pub persistence: tokio::sync::Mutex<bool>,
    /// The shutdown outcome, shared by every caller (shutdown is memoised).
    pub shutdown_outcome: tokio::sync::OnceCell<Result<(), ShutdownError>>,
    /// Set when a retirement has finished its background stops.
    pub retired: Arc<Notify>,
    /// Logging, systemd notifications, socket activation and metrics; set once
    /// by `run` (absent for a daemon built without it).
    pub observability: OnceLock<Arc<DaemonObservability>>,
}

impl Daemon {
    pub fn new(
        config: Config,
        registry: Registry,
        config_path: Option<PathBuf>,
        runtime: Option<RuntimeIdentity>,
        events: EventSink,
    ) -> Arc<Daemon> {
        let state_file = config.state_path.as_ref().map(StateFile::new);
        let daemon = Arc::new(Daemon {
            events,
            router: Router::new(),
            config_path,
            runtime,
            state: Mutex::new(State {
                config: Arc::new(config),
                registry,
                releases: Vec::new(),
                active: None,
                services: Vec::new(),
                service_ports: HashMap::new(),
                singletons: Vec::new(),
                starting: Vec::new(),
                failed_release: None,
                detached: Vec::new(),
                orphans: Vec::new(),
                deploying: None,
                bootstrap: None,
                rollout: None,
            }),
            operations: tokio::sync::Mutex::new(()),
            stopping: Arc::new(AtomicBool::new(false)),
            stopping_notify: Arc::new(Notify::new()),
            endpoints: Mutex::new(Endpoints::default()),
            proxy_bound: Mutex::new(None),
            state_file,
            persistence: tokio::sync::Mutex::new(false),
            shutdown_outcome: tokio::sync::OnceCell::new(),
            retired: Arc::new(Notify::new()),
            observability: OnceLock::new(),
        });
        // The config's part of the routing table (the readiness path), set the
        // same way every deploy sets it after a config reload.
        daemon.apply_traffic_config(&daemon.config());
        daemon
    }

    /// Waits for the operation in progress, then holds the operations lock.
    pub async fn lock_operations(&self) -> OperationsGuard<'_> {
        OperationsGuard {
            _held: self.operations.lock().await,
        }
    }

    /// The operations lock when no operation is in progress.
    pub fn try_lock_operations(&self) -> Option<OperationsGuard<'_>> {
        self.operations
            .try_lock()
            .ok()
            .map(|held| OperationsGuard { _held: held })
    }

    /// Locks the state for a short, synchronous section.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unpoisoned()
    }

    pub fn config(&self) -> Arc<Config> {
        self.state().config.clone()
    }

    pub fn registry(&self) -> Registry {
        self.state().registry.clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A shared view of the stopping flag, for restart rules.
    pub fn stopping_flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    /// Marks the daemon as stopping and wakes every wait that watches it.
    /// Returns false when it was already stopping.
    pub fn begin_stopping(&self) -> bool {
        let first = !self.stopping.swap(true, Ordering::SeqCst);
        self.traffic_stopping();
        self.stopping_notify.notify_waiters();
        if first {
            if let Some(observability) = self.observability() {
                observability.stopping();
            }
        }
        first
    }

    /// Fails with `Rollbridge is shutting down` once shutdown has begun.
    pub fn ensure_running(&self) -> Result<(), ShuttingDown> {
        if self.is_stopping() {
            Err(ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Resolves once `stopping` is set (at once if it already is).
    pub async fn stopped_signal(&self) {
        loop {
            let notified = self.stopping_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_stopping() {
                return;
            }
            notified.await;
        }
    }

    pub fn observability(&self) -> Option<&Arc<DaemonObservability>> {
        self.observability.get()
    }

    /// True when systemd passed the control socket: its file is systemd's to keep.
    pub fn control_socket_activated(&self) -> bool {
        self.observability()
            .is_some_and(|observability| observability.control_activated())
    }

    /// Every managed process: releases', services', singletons'.
    pub fn every_process(&self) -> Vec<Arc<ManagedProcess>> {
        let state = self.state();
        let mut processes: Vec<_> = state
            .releases
            .iter()
            .flat_map(|release| release.processes().into_iter().map(|p| p.process))
            .collect();
        processes.extend(state.services.iter().map(|(_, p)| p.clone()));
        processes.extend(state.singletons.iter().map(|(_, p)| p.clone()));
        processes
    }

    pub fn endpoints(&self) -> MutexGuard<'_, Endpoints> {
        self.endpoints.lock().unpoisoned()
    }
}

/// Proof that the operations lock is held: deploy-class flows (`*_locked`) take
/// one, so none can run next to another or next to shutdown's cleanup.
pub struct OperationsGuard<'a> {
    _held: tokio::sync::MutexGuard<'a, ()>,
}
