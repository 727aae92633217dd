//! Deploy: reload the config, start the new release next to the
//! running one, health-check it, switch traffic, refresh services, replace
//! singletons, and retire the previous release in the background.

use super::definition::{self, ReleaseIdentity};
use super::errors::{DeployError, ShuttingDown, SwitchProblem};
use super::release::{Release, ReleaseState};
use super::startup_exits::StartupExits;
use super::state::{Daemon, DeployingInfo, OperationsGuard};
use super::{ports, reload};
use crate::config::hook::HookSpec;
use crate::config::model::{Config, Policy, ProcessConfig};
use crate::control::reply::{CanaryReply, DeployPayload, DeployReply};
use crate::events::{Event, StartupProcessStatus};
use crate::observability::ProcessLogFiles;
use crate::plugins::{HookCall, Registry, Stage};
use crate::process::{ManagedProcess, StartReason, Supervision, health_deadline, wait_healthy};
use crate::util::panic::catch_panic;
use crate::util::time::{iso_now, timestamp_release_id};
use futures_util::future::join_all;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// A deploy as requested over the control socket (or by a bootstrap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRequest {
    pub release_path: String,
    /// `None` or empty: use the revision, else a timestamp.
    pub release_id: Option<String>,
    pub revision: Option<String>,
    /// `deploy --watch-ms`: this deploy's watch instead of `rollout.watchMs`.
    pub watch_ms: Option<u64>,
    /// `deploy --canary`: open a canary with this share instead of switching.
    pub canary_percent: Option<u8>,
}

/// Who the release being deployed is.
#[derive(Debug, Clone, Copy)]
struct NewRelease<'a> {
    id: &'a str,
    path: &'a str,
    revision: &'a str,
}

/// What a deploy has started so far, so a failure can undo exactly that.
#[derive(Default)]
struct StartProgress {
    release: Option<Arc<Release>>,
    /// Persistent services this deploy started (not ones that already ran).
    started_services: Vec<String>,
}

/// What a deploy or rollback leaves serving: a switch, or for `--canary` the
/// canary opened beside the active release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployOutcome {
    pub active_release_id: String,
    pub previous_release_id: Option<String>,
    /// The canary opened instead of a switch, and its share.
    pub canary: Option<(String, u8)>,
}

impl DeployOutcome {
    /// The reply payload: `{activeReleaseId, previousReleaseId}`, or for a
    /// canary `{activeReleaseId, canaryReleaseId, percent}`.
    pub fn to_payload(&self) -> DeployPayload {
        match &self.canary {
            None => DeployPayload::Switched(DeployReply {
                active_release_id: self.active_release_id.clone(),
                previous_release_id: self.previous_release_id.clone(),
            }),
            Some((canary, percent)) => DeployPayload::Canary(CanaryReply {
                active_release_id: Some(self.active_release_id.clone()),
                canary_release_id: canary.clone(),
                percent: *percent,
            }),
        }
    }
}

impl Daemon {
    /// Runs a deploy while the operations lock is held.
    pub async fn deploy_locked(
        self: &Arc<Self>,
        _operations: &OperationsGuard<'_>,
        request: DeployRequest,
    ) -> Result<DeployOutcome, DeployError> {
        self.ensure_running()?;
        let (config, registry) = self.reload_config()?;
        if request.canary_percent.is_some() && self.state().active.is_none() {
            return Err(DeployError::CanaryWithoutActive);
        }
        let revision_given = request.revision.clone().filter(|r| !r.is_empty());
        let release_id = request
            .release_id
            .clone()
            .filter(|id| !id.is_empty())
            .or_else(|| revision_given.clone())
            .unwrap_or_else(timestamp_release_id);
        let revision = revision_given.clone().unwrap_or_else(|| release_id.clone());

        self.events.emit(Event::DeployStarting {
            release_id: release_id.clone(),
            release_path: request.release_path.clone(),
            revision: revision_given.clone(),
        });
        {
            let mut state = self.state();
            state.deploying = Some(DeployingInfo {
                release_id: release_id.clone(),
                release_path: request.release_path.clone(),
                started_at: iso_now(),
            });
            state.failed_release = None;
        }

        let mut progress = StartProgress::default();
        let identity = NewRelease {
            id: &release_id,
            path: &request.release_path,
            revision: &revision,
        };
        // A panic (a bug) fails the deploy like any error, so what it started is
        // cleaned up below and the client gets an answer.
        let started = catch_panic(self.start_guarded(&config, &registry, identity, &mut progress))
            .await
            .unwrap_or_else(|panic| Err(DeployError::Internal(panic)));
        let StartProgress {
            release: release_slot,
            started_services,
        } = progress;
        let release = match started {
            Ok(release) => release,
            Err(error) => {
                let error = explain_interruption(error, &release_id);
                self.events.emit(Event::DeployFailed {
                    error: error.to_string(),
                    release_id: release_id.clone(),
                });
                if let Some(release) = &release_slot {
                    release.stop_now().await;
                }
                self.stop_started_services(&started_services).await;
                let mut state = self.state();
                if let Some(release) = &release_slot {
                    state.starting.retain(|r| !Arc::ptr_eq(r, release));
                }
                state.failed_release = release_slot;
                state.deploying = None;
                return Err(error);
            }
        };
        if let Some(percent) = request.canary_percent {
            let outcome = self.open_canary(release, config, registry, percent);
            self.state().deploying = None;
            return Ok(outcome);
        }
        let outcome =
            catch_panic(self.switch_and_finish(release, config, registry, request.watch_ms))
                .await
                .unwrap_or_else(|panic| Err(DeployError::Internal(panic)));
        self.state().deploying = None;
        outcome
    }

    /// Loads the config file again and checks that it can be applied live. Without
    /// a config file (embedded use), the current config stays.
    fn reload_config(&self) -> Result<(Arc<Config>, Registry), DeployError> {
        let Some(path) = &self.config_path else {
            let state = self.state();
            return Ok((state.config.clone(), state.registry.clone()));
        };
        // systemd sees RELOADING=1 … READY=1 around the reload, whatever its outcome.
        let observability = self.observability();
        if let Some(observability) = observability {
            observability.reloading();
        }
        let loaded = crate::config::load(path);
        if let Some(observability) = observability {
            let active = self.state().active.as_ref().map(|r| r.id.clone());
            observability.reloaded(active.as_deref());
        }
        let loaded = loaded?;
        let current = self.config();
        reload::check_compatible(&current, &loaded.config)?;
        let registry = super::setup::registry_for(&loaded)?;
        Ok((Arc::new(loaded.config), registry))
    }

    /// Steps 5–7 of the deploy: everything whose failure leaves the previous
    /// release in charge. `progress` records what was started, for the cleanup.
    async fn start_guarded(
        self: &Arc<Self>,
        config: &Arc<Config>,
        registry: &Registry,
        identity: NewRelease<'_>,
        progress: &mut StartProgress,
    ) -> Result<Arc<Release>, DeployError> {
        check_release_path(config, identity.path)?;
        let (service_ports, held) = {
            let state = self.state();
            let live = state
                .releases
                .iter()
                .chain(state.detached.iter())
                .chain(state.starting.iter())
                .filter(|release| release.state() != ReleaseState::Stopped);
            let held: HashSet<u16> = live
                .flat_map(|release| release.ports.iter().map(|(_, port)| *port))
                .collect();
            (state.service_ports.clone(), held)
        };
        let ports = ports::allocate(config, &service_ports, &held)?;
        let proxied = config.proxied();
        let proxied_port = ports
            .iter()
            .find(|(id, _)| *id == proxied.id)
            .map(|(_, port)| *port)
            .ok_or_else(|| DeployError::ProxiedWithoutPorts(proxied.id.clone()))?;
        let release = Release::new(
            identity.id.to_string(),
            identity.path.to_string(),
            identity.revision.to_string(),
            ports,
            &config.proxy.upstream_host,
            proxied_port,
        );
        progress.release = Some(release.clone());
        self.state().starting.push(release.clone());

        self.ensure_persistent_services(config, registry, &release, &mut progress.started_services)
            .await?;
        self.start_release(config, registry, &release).await?;
        self.ensure_running()?;
        Ok(release)
    }

    /// Starts every persistent service that does not exist yet.
    async fn ensure_persistent_services(
        self: &Arc<Self>,
        config: &Arc<Config>,
        registry: &Registry,
        release: &Arc<Release>,
        started_services: &mut Vec<String>,
    ) -> Result<(), DeployError> {
        for process in config
            .processes
            .iter()
            .filter(|p| p.is_persistent_service())
        {
            self.ensure_running()?;
            if self.state().service(&process.id).is_some() {
                continue;
            }
            let def = definition::build(config, process, &ReleaseIdentity::of(release), 0)?;
            let managed = ManagedProcess::new(def, self.service_supervision(registry));
            {
                let mut state = self.state();
                state.services.push((process.id.clone(), managed.clone()));
                if let Some(port) = release.port(&process.id) {
                    state.service_ports.insert(process.id.clone(), port);
                }
            }
            if let Err(error) = managed.start(StartReason::Deploy).await {
                let mut state = self.state();
                state.services.retain(|(id, _)| *id != process.id);
                state.service_ports.remove(&process.id);
                return Err(error.into());
            }
            started_services.push(process.id.clone());
        }
        Ok(())
    }

    /// Stops and forgets the persistent services a failed deploy started.
    async fn stop_started_services(&self, ids: &[String]) {
        let removed: Vec<Arc<ManagedProcess>> = {
            let mut state = self.state();
            let mut removed = Vec::new();
            for id in ids {
                if let Some(index) = state.services.iter().position(|(sid, _)| sid == id) {
                    removed.push(state.services.remove(index).1);
                }
                state.service_ports.remove(id);
            }
            removed
        };
        join_all(removed.iter().map(|p| p.stop())).await;
    }

    /// Starts the release's own processes; on failure reports
    /// their state, stops them all, and reports again.
    async fn start_release(
        self: &Arc<Self>,
        config: &Arc<Config>,
        registry: &Registry,
        release: &Arc<Release>,
    ) -> Result<(), DeployError> {
        let result = self
            .spawn_release_processes(config, registry, release)
            .await;
        let Err(error) = result else {
            return Ok(());
        };
        release.set_state(ReleaseState::Failed);
        let message = error.to_string();
        self.report_startup_failure(release, &message, "before cleanup");
        join_all(release.processes().iter().map(|p| p.process.stop())).await;
        release.mark_stopped();
        self.report_startup_failure(release, &message, "after cleanup");
        Err(error)
    }

    async fn spawn_release_processes(
        self: &Arc<Self>,
        config: &Arc<Config>,
        registry: &Registry,
        release: &Arc<Release>,
    ) -> Result<(), DeployError> {
        let handoff = config.processes.iter().filter(|p| p.is_handoff_service());
        let companions = config
            .processes
            .iter()
            .filter(|p| p.policy == Policy::Companion);
        let proxied = config
            .processes
            .iter()
            .filter(|p| p.policy == Policy::Proxied);
        for process in handoff.chain(companions).chain(proxied) {
            for index in 0..process.replicas.max(1) {
                self.ensure_running()?;
                let def = definition::build(config, process, &ReleaseIdentity::of(release), index)?;
                // Watched from before the spawn, so an immediate exit counts.
                let exits = (process.policy == Policy::Proxied)
                    .then(|| StartupExits::watch(&self.events, &def.instance_id, &release.id));
                let managed = ManagedProcess::new(def, self.release_supervision(registry, release));
                release.add_process(&process.id, managed.clone());
                managed.start(StartReason::Deploy).await?;
                if let Some(exits) = exits {
                    self.wait_release_healthy(config, registry, release, process, &managed, exits)
                        .await?;
                    self.ensure_running()?;
                }
            }
        }
        Ok(())
    }

    /// Runs the readiness check of the new proxied process; shutdown cuts it
    /// short, and so does a process that keeps exiting before it is healthy.
    async fn wait_release_healthy(
        &self,
        config: &Config,
        registry: &Registry,
        release: &Release,
        process: &ProcessConfig,
        managed: &Arc<ManagedProcess>,
        mut exits: StartupExits,
    ) -> Result<(), DeployError> {
        let (Some(health), Some(port)) = (&process.health, release.port(&process.id)) else {
            return Ok(());
        };
        let (spec, url) = health_spec(config, health, port);
        let plugin = registry.health(&spec)?;
        let call = HookCall {
            stage: Stage::Health,
            process: managed.process_info(),
            deadline: health_deadline(health),
            options: spec.options(),
            events: self.events.clone(),
        };
        tokio::select! {
            result = wait_healthy(plugin, call, health, &url) => Ok(result?),
            detail = exits.gave_up(managed) => Err(DeployError::GaveUp { url, detail }),
            _ = self.stopped_signal() => Err(ShuttingDown.into()),
        }
    }

    /// `release startup failed` plus one `release startup process status` per process.
    fn report_startup_failure(&self, release: &Release, error: &str, phase: &str) {
        self.events.emit(Event::ReleaseStartupFailed {
            error: error.to_string(),
            phase: phase.to_string(),
            release_id: release.id.clone(),
        });
        for entry in release.processes() {
            let status = entry.process.status();
            self.events
                .emit(Event::ReleaseStartupProcessStatus(Box::new(
                    StartupProcessStatus {
                        command: Value::from(status.command),
                        exit_code: Value::from(status.exit_code.flatten()),
                        exit_signal: Value::from(status.exit_signal.flatten()),
                        logs: serde_json::to_value(status.logs).unwrap_or_default(),
                        phase: phase.to_string(),
                        pid: Value::from(status.pid),
                        process_id: Value::from(status.id),
                        release_id: release.id.clone(),
                        state: Value::from(status.state),
                    },
                )));
        }
    }

    /// Steps 9–14: switch traffic, refresh services, replace singletons, retire
    /// the previous release (after the rollout watch, if one is on), persist.
    pub(super) async fn switch_and_finish(
        self: &Arc<Self>,
        release: Arc<Release>,
        config: Arc<Config>,
        registry: Registry,
        watch_ms: Option<u64>,
    ) -> Result<DeployOutcome, DeployError> {
        let previous = {
            let mut state = self.state();
            let previous = state.active.clone();
            state.config = config.clone();
            state.registry = registry.clone();
            if let Some(replaced) = state.insert_release(release.clone()) {
                // The same id was deployed again: the old object leaves the map but
                // may still run (or drain); keep it reachable so shutdown stops it.
                if replaced.state() != ReleaseState::Stopped {
                    state.detached.push(replaced);
                }
            }
            release.mark_active();
            state.active = Some(release.clone());
            state.starting.retain(|r| !Arc::ptr_eq(r, &release));
            previous
        };
        let watch = super::rollout::watch_window(&config, watch_ms)
            .filter(|_| previous.as_ref().is_some_and(|p| !Arc::ptr_eq(p, &release)));
        self.apply_traffic_config(&config);
        if watch.is_some() {
            // The previous release stays open during the watch so switching back
            // is instant; it is closed when the watch passes.
            self.router
                .set_active_keeping_previous(Some(release.target.clone()));
        } else {
            // Closes the previous release's counters: its drain count is final.
            self.router.set_active(Some(release.target.clone()));
        }
        // A promoted canary is now the active release: its share is moot.
        self.router.set_canary(None);
        let previous_id = previous.as_ref().map(|p| p.id.clone());
        self.events.emit(Event::TrafficSwitched {
            previous_release_id: previous_id.clone(),
            release_id: release.id.clone(),
        });

        let mut problems = self.refresh_service_templates(&config, &registry, &release);
        problems.extend(self.replace_singletons(&config, &registry, &release).await);

        if let Some(previous) = previous {
            if !Arc::ptr_eq(&previous, &release) {
                if let Some(window) = watch {
                    self.watch_switched(&release, &previous, &config, &registry, window)
                        .await?;
                }
                self.retire_in_background(previous, config.clone(), registry.clone());
            }
        }
        self.persist().await;
        if problems.is_empty() {
            Ok(DeployOutcome {
                active_release_id: release.id.clone(),
                previous_release_id: previous_id.clone(),
                canary: None,
            })
        } else {
            Err(DeployError::PartlySwitched {
                release_id: release.id.clone(),
                problems,
            })
        }
    }

    /// Points running persistent services at the new release's templates; they
    /// pick them up at their next (re)start.
    fn refresh_service_templates(
        &self,
        config: &Config,
        registry: &Registry,
        release: &Release,
    ) -> Vec<SwitchProblem> {
        let mut problems = Vec::new();
        for process in config
            .processes
            .iter()
            .filter(|p| p.is_persistent_service())
        {
            let Some(managed) = self.state().service(&process.id) else {
                continue;
            };
            match definition::build(config, process, &ReleaseIdentity::of(release), 0) {
                Ok(def) => managed.redefine_with(def, registry.clone()),
                Err(source) => problems.push(SwitchProblem::ServiceTemplate {
                    id: process.id.clone(),
                    source,
                }),
            }
        }
        problems
    }

    /// Replaces each singleton with one built from the new release: the old
    /// instance is fully stopped before the new one starts, so they never overlap.
    async fn replace_singletons(
        self: &Arc<Self>,
        config: &Config,
        registry: &Registry,
        release: &Arc<Release>,
    ) -> Vec<SwitchProblem> {
        let mut problems = Vec::new();
        for process in config
            .processes
            .iter()
            .filter(|p| p.policy == Policy::Singleton)
        {
            if self.is_stopping() {
                problems.push(SwitchProblem::SingletonNotReplaced {
                    id: process.id.clone(),
                });
                break;
            }
            let old = self.state().singleton(&process.id);
            if let Some(old) = old {
                old.stop().await;
                if self.is_stopping() {
                    problems.push(SwitchProblem::SingletonNotReplaced {
                        id: process.id.clone(),
                    });
                    break;
                }
            }
            let def = match definition::build(config, process, &ReleaseIdentity::of(release), 0) {
                Ok(def) => def,
                Err(source) => {
                    problems.push(SwitchProblem::SingletonDefinition {
                        id: process.id.clone(),
                        source,
                    });
                    continue;
                }
            };
            let managed = ManagedProcess::new(def, self.singleton_supervision(registry, release));
            self.state().set_singleton(&process.id, managed.clone());
            if let Err(source) = managed.start(StartReason::Deploy).await {
                problems.push(SwitchProblem::SingletonStart {
                    id: process.id.clone(),
                    source,
                });
            }
        }
        problems
    }

    /// Release processes restart after a crash while their release is live.
    pub fn release_supervision(&self, registry: &Registry, release: &Arc<Release>) -> Supervision {
        let release: Weak<Release> = Arc::downgrade(release);
        Supervision {
            events: self.events.clone(),
            registry: registry.clone(),
            should_restart: Arc::new(move || {
                release
                    .upgrade()
                    .is_some_and(|release| release.state().allows_restart())
            }),
            log_files: self.process_log_files(),
        }
    }

    /// Singletons follow the release that built them.
    pub fn singleton_supervision(
        &self,
        registry: &Registry,
        release: &Arc<Release>,
    ) -> Supervision {
        self.release_supervision(registry, release)
    }

    /// Persistent services restart until the daemon stops.
    pub fn service_supervision(&self, registry: &Registry) -> Supervision {
        let stopping = self.stopping_flag();
        Supervision {
            events: self.events.clone(),
            registry: registry.clone(),
            should_restart: Arc::new(move || !stopping.load(Ordering::SeqCst)),
            log_files: self.process_log_files(),
        }
    }

    /// The daemon's process log files: every process shares this registry, so
    /// processes on one path share one file.
    fn process_log_files(&self) -> ProcessLogFiles {
        match self.observability() {
            Some(observability) => observability.process_logs().clone(),
            // Only a daemon built without observability (never by `run`): its
            // processes still get their files, one registry each.
            None => ProcessLogFiles::default(),
        }
    }
}

/// A deploy cut short by shutdown keeps the protocol's first line and says
/// what happened on the next.
fn explain_interruption(error: DeployError, release_id: &str) -> DeployError {
    match error {
        DeployError::ShuttingDown(_) => DeployError::Interrupted {
            release_id: release_id.to_string(),
        },
        error => error,
    }
}

/// The hook that checks a proxied process's health (its `health.check`, else the
/// built-in `http` probe of `health.path`) and the URL it is described by.
pub(super) fn health_spec(
    config: &Config,
    health: &crate::config::model::HealthConfig,
    port: u16,
) -> (HookSpec, String) {
    let host = &config.proxy.upstream_host;
    let url = format!("http://{}:{port}{}", bracket_host(host), health.path);
    let spec = health.check.clone().unwrap_or_else(|| {
        let mut options = Map::new();
        options.insert("host".into(), Value::from(host.clone()));
        options.insert("path".into(), Value::from(health.path.clone()));
        HookSpec::Plugin {
            name: "http".into(),
            options,
        }
    });
    (spec, url)
}

/// `::1` → `[::1]` so the host can sit in a URL.
pub fn bracket_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// A release directory that is missing is the deploy's mistake, not a process's:
/// say so before any process fails on it as its working directory. Only when a
/// process works there (no `cwd`, or one under `{{releasePath}}`).
fn check_release_path(config: &Config, release_path: &str) -> Result<(), DeployError> {
    let needed = config.processes.iter().any(|process| {
        process
            .cwd
            .as_deref()
            .is_none_or(|cwd| cwd.contains("releasePath"))
    });
    let problem = match std::fs::metadata(release_path) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => "is not a directory",
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => "does not exist",
        Err(_) => "cannot be read",
    };
    if !needed {
        return Ok(());
    }
    Err(DeployError::ReleasePath {
        path: release_path.to_string(),
        problem,
    })
}
