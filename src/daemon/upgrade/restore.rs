//! The new image's side of a live upgrade: validate the whole handover first
//! (descriptors, config, every process still the one handed over), then take
//! over. A handover that does not validate is never half-restored: the daemon is
//! given back to the previous binary (re-executed from the descriptor it left,
//! so a replaced file does not matter), which answers the upgrade with why.

use super::exec::{self, set_inheritable};
use super::handover::{DescriptorKind, FALLBACK_ENV, Handover, NamedProcessHandover, PREVIOUS_ENV};
use crate::config::model::Config;
use crate::control::server::{ControlHandler, ControlServer};
use crate::daemon::errors::StartError;
use crate::daemon::release::{Release, ReleaseState};
use crate::daemon::runtime::RuntimeIdentity;
use crate::daemon::state::Daemon;
use crate::events::Event;
use crate::observability::DaemonObservability;
use crate::plugins::Registry;
use crate::process::{ManagedProcess, ProcessHandover, Supervision};
use crate::proxy::IdleConnection;
use crate::util::sync::Unpoisoned;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// A handover read from the environment, with what came with it.
pub struct Inherited {
    pub document: Handover,
    /// The memfd holding the document (passed on again on a fallback).
    pub memfd: OwnedFd,
    /// Set when this image is the previous binary taking the daemon back.
    pub fallback: Option<String>,
}

impl Inherited {
    /// Reads the handover left by the previous image, if there is one. Every
    /// handed descriptor is made close-on-exec at once, so no process this image
    /// starts inherits it.
    ///
    /// # Safety
    /// Changes the environment: call while the process has a single thread.
    pub unsafe fn take() -> Option<Result<Inherited, TakeoverError>> {
        let fd = std::env::var(super::handover::HANDOVER_FD_ENV).ok()?;
        let fallback = std::env::var(FALLBACK_ENV).ok();
        let previous = std::env::var(PREVIOUS_ENV).ok();
        // SAFETY: forwarded to the caller.
        unsafe {
            std::env::remove_var(super::handover::HANDOVER_FD_ENV);
            std::env::remove_var(FALLBACK_ENV);
            std::env::remove_var(PREVIOUS_ENV);
        }
        let read = Inherited::read(&fd, fallback.clone());
        if let (Err(reason), None, Some(previous)) = (&read, &fallback, previous) {
            // Not even the document could be read: the previous binary, which
            // wrote it, takes the daemon back (every descriptor is still open).
            if let (Ok(previous), Ok(document)) = (previous.parse::<RawFd>(), fd.parse::<RawFd>()) {
                eprintln!(
                    "rollbridge upgrade: cannot read the handover ({reason}); going back to the previous binary"
                );
                let error = exec::replace_image(
                    exec::Target::Descriptor(previous),
                    &[previous],
                    document,
                    &[(FALLBACK_ENV.to_string(), reason.to_string().into())],
                );
                return Some(Err(TakeoverError::NoWayBack {
                    reason: Box::new(read.err().expect("matched an error above")),
                    error,
                }));
            }
        }
        Some(read)
    }

    fn read(fd: &str, fallback: Option<String>) -> Result<Inherited, TakeoverError> {
        let number: RawFd = fd
            .parse()
            .map_err(|_| TakeoverError::NoDescriptor(fd.to_string()))?;
        if !DescriptorKind::Memfd.matches(number) {
            return Err(TakeoverError::NotADocument(number));
        }
        set_inheritable(number, false);
        // SAFETY: the previous image passed this descriptor for this image alone.
        let memfd = unsafe { OwnedFd::from_raw_fd(number) };
        let document = super::handover::read_document(&memfd)?;
        for (fd, _, _) in document.descriptors() {
            set_inheritable(fd, false);
        }
        if let Some(fd) = document.previous_executable_fd {
            set_inheritable(fd, false);
        }
        Ok(Inherited {
            document,
            memfd,
            fallback,
        })
    }
}

/// Why this image cannot take over the handover it was given. Its Display is
/// the reason the fallback and the upgrade's refusal report.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    #[error("the handover variable names no descriptor ({0})")]
    NoDescriptor(String),
    #[error("descriptor {0} is not a handover document")]
    NotADocument(RawFd),
    #[error(transparent)]
    Document(#[from] super::handover::ReadError),
    #[error("the {what} (descriptor {fd}) did not arrive")]
    MissingDescriptor { what: String, fd: RawFd },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Registry(#[from] crate::daemon::errors::SetupError),
    #[error("process \"{0}\" is not in the config")]
    UnknownProcess(String),
    #[error(transparent)]
    Process(#[from] crate::process::handover::AdoptError),
    #[error("release \"{id}\" has state \"{state}\"")]
    UnknownReleaseState { id: String, state: String },
    #[error("{reason}; the previous binary could not be executed again: {error}")]
    NoWayBack {
        reason: Box<TakeoverError>,
        error: std::io::Error,
    },
}

/// What validation built: everything needed to take over, with nothing started.
struct Plan {
    config: Config,
    registry: Registry,
}

/// Validates the handover; on success runs the daemon from it until it exits.
/// On failure gives the daemon back to the previous binary (this returns only
/// when even that is impossible).
pub async fn run(
    inherited: Inherited,
    observability: Arc<DaemonObservability>,
) -> Result<i32, StartError> {
    let plan = match validate(&inherited.document, inherited.fallback.is_some()) {
        Ok(plan) => plan,
        Err(reason) => {
            let notifier = observability.notifier();
            return Err(fall_back(&inherited, &reason.to_string(), notifier));
        }
    };
    let Inherited {
        document,
        memfd,
        fallback,
    } = inherited;
    drop(memfd);
    if let Some(fd) = document.previous_executable_fd {
        // SAFETY: handed to this image alone; nothing else closes it.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    take_over(document, plan, fallback, observability).await
}

/// Everything that can fail, checked before anything is started. (A process
/// that exited during the exec is not a failure: it is adopted as exited.)
/// The new image loads the config file; the previous binary taking the daemon
/// back loads the text the previous image checked, so a file that changed or
/// went away in between (the reason the new image gave up) does not stop it.
fn validate(document: &Handover, falling_back: bool) -> Result<Plan, TakeoverError> {
    for (fd, kind, what) in document.descriptors() {
        if !kind.matches(fd) {
            return Err(TakeoverError::MissingDescriptor { what, fd });
        }
    }
    let loaded = match (&document.config_source, falling_back) {
        (Some(source), true) => crate::config::load_source(&document.config_path, source.clone())?,
        _ => crate::config::load(&document.config_path)?,
    };
    let registry = crate::daemon::setup::registry_for(&loaded)?;
    let config = loaded.config;
    for process in document.processes() {
        let def = &process.definition;
        let entry = config
            .processes
            .iter()
            .find(|p| p.id == def.base_id)
            .ok_or_else(|| TakeoverError::UnknownProcess(def.base_id.clone()))?;
        def.rebuild(entry.clone())?;
        process.check()?;
    }
    for release in &document.releases {
        ReleaseState::parse(&release.state).ok_or_else(|| TakeoverError::UnknownReleaseState {
            id: release.id.clone(),
            state: release.state.clone(),
        })?;
    }
    Ok(Plan { config, registry })
}

/// Re-executes the previous binary with the same handover and says why. Returns
/// only when that failed too. Also called by `rollbridge daemon` when this
/// image fails even before it can read its config (logging, runtime). systemd's variables, which this image took out of
/// its environment at start, go along: the previous binary reports readiness
/// and keeps the watchdog going.
pub fn fall_back(
    inherited: &Inherited,
    reason: &str,
    notifier: &crate::observability::SystemdNotifier,
) -> StartError {
    let document = &inherited.document;
    let Some(previous) = document.previous_executable_fd else {
        return StartError::Takeover(format!(
            "the handover could not be taken over ({reason}) and names no previous binary"
        ));
    };
    if inherited.fallback.is_some() {
        return StartError::Takeover(format!(
            "the previous binary could not take the daemon back either: {reason}"
        ));
    }
    eprintln!("rollbridge upgrade: cannot take over ({reason}); going back to the previous binary");
    let _ = nix::unistd::lseek(&inherited.memfd, 0, nix::unistd::Whence::SeekSet);
    let handed: Vec<RawFd> = document
        .descriptors()
        .into_iter()
        .map(|(fd, _, _)| fd)
        .chain([previous])
        .collect();
    let mut environment = super::systemd_environment(Some(notifier));
    environment.push((FALLBACK_ENV.to_string(), reason.into()));
    let error = exec::replace_image(
        exec::Target::Descriptor(previous),
        &handed,
        inherited.memfd.as_raw_fd(),
        &environment,
    );
    StartError::Takeover(format!(
        "the handover could not be taken over ({reason}), and the previous binary could not be executed again: {error}"
    ))
}

/// Takes a descriptor the document names (validated open and of its kind).
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: validated open; handed to this image alone and taken once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Supervision, processes, listeners, then readiness and the reply.
async fn take_over(
    document: Handover,
    plan: Plan,
    fallback: Option<String>,
    observability: Arc<DaemonObservability>,
) -> Result<i32, StartError> {
    crate::daemon::run::prepare_supervision();
    // Hashed by the previous image before the exec, when it is still that file.
    let known = document
        .next
        .as_ref()
        .and_then(|next| next.digest_if_same(std::path::Path::new("/proc/self/exe")));
    let runtime = tokio::task::spawn_blocking(move || RuntimeIdentity::current_with_digest(known))
        .await?
        .map_err(StartError::Identity)?;
    let daemon = Daemon::new(
        plan.config,
        plan.registry,
        Some(document.config_path.clone()),
        Some(runtime.clone()),
        observability.events(),
    );
    let _ = daemon.observability.set(observability.clone());
    daemon.events.restore(document.events.clone());
    observability.set_process_source(crate::daemon::run::process_source(&daemon));
    observability
        .spawn_reopen_on_sighup()
        .map_err(StartError::Sighup)?;
    let drains = restore_state(&daemon, &document);
    let releases = daemon.state().releases.clone();
    let counters_of = move |id: &str| match releases.iter().find(|r| r.id == id) {
        Some(release) => release.counters.clone(),
        None => crate::proxy::ConnectionCounters::new(),
    };
    observability
        .metrics()
        .continue_from(&document.counters, &counters_of);
    if let Some(fd) = document.listeners.metrics {
        observability.inherit_metrics_listener(std::net::TcpListener::from(owned(fd)));
    }
    let config = daemon.config();
    observability
        .configure(&config, daemon.router.clone(), std::time::Duration::ZERO)
        .await
        .map_err(StartError::Observability)?;
    *daemon.proxy_bound.lock().unpoisoned() = document.proxy_bound.clone();
    if let Some(fd) = document.listeners.proxy {
        let proxy = super::serve_proxy(&daemon, std::net::TcpListener::from(owned(fd)))?;
        daemon.endpoints().proxy = Some(proxy);
    }
    if let Some(paused_at) = document.proxy_paused_at_ms {
        tracing::info!(
            target: "rollbridge::upgrade",
            "the proxy serves again after a pause of {} ms",
            crate::util::time::now_ms().saturating_sub(paused_at)
        );
    }
    super::adopt_tunnels(
        &daemon,
        document.tunnels.iter().map(frozen_tunnel).collect(),
    );
    let mut unread_by_fd: std::collections::HashMap<RawFd, Vec<u8>> = document
        .connections_unread
        .iter()
        .map(|unread| (unread.fd, unread.bytes.clone()))
        .collect();
    let connections = document.connections.iter().map(|&fd| {
        let unread = unread_by_fd
            .remove(&fd)
            .map(bytes::Bytes::from)
            .unwrap_or_default();
        IdleConnection {
            socket: std::net::TcpStream::from(owned(fd)),
            unread,
        }
    });
    super::adopt_connections(&daemon, connections.collect());
    let signal_outcome = crate::daemon::signals::install(&daemon)?;
    if document.listeners.control_activated {
        observability.mark_control_activated();
    }
    if let Some(fd) = document.listeners.control {
        let listener = std::os::unix::net::UnixListener::from(owned(fd));
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let handler: Arc<dyn ControlHandler> = daemon.clone();
        let path = std::path::PathBuf::from(config.control.path.clone());
        let server = ControlServer::start(listener, path, handler, daemon.events.clone());
        daemon.endpoints().control = Some(server);
    }
    daemon.start_persistence().await;
    let registry = daemon.registry();
    for release in drains {
        daemon.retire_in_background(release, config.clone(), registry.clone());
    }
    let active = daemon.state().active.as_ref().map(|r| r.id.clone());
    observability.ready(active.as_deref());
    daemon.store_listeners();
    let reply = match fallback {
        None => {
            daemon.events.emit(Event::DaemonUpgraded {
                previous_version: document.previous.version.clone(),
                version: runtime.version.clone(),
                digest: runtime.digest.clone(),
            });
            crate::control::protocol::success_reply(crate::data! {
                "previousVersion" => document.previous.version.clone(),
                "version" => runtime.version.clone(),
                "digest" => runtime.digest.clone(),
            })
        }
        Some(reason) => {
            let message = format!(
                "Upgrade refused: the new binary could not take over ({reason}); the daemon went back to rollbridge {}",
                runtime.version
            );
            daemon.events.emit(Event::CommandFailed {
                error: message.clone(),
            });
            crate::control::protocol::error_reply(&message)
        }
    };
    if let Some(fd) = document.requester_fd {
        tokio::spawn(answer_requester(owned(fd), reply));
    }
    Ok(crate::daemon::run::serve_until_exit(&daemon, signal_outcome).await)
}

/// Writes the upgrade's reply on the connection that asked for it, then closes it.
async fn answer_requester(fd: OwnedFd, reply: serde_json::Value) {
    let stream = std::os::unix::net::UnixStream::from(fd);
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(mut stream) = tokio::net::UnixStream::from_std(stream) else {
        return;
    };
    let line = crate::control::protocol::reply_line(&reply);
    let written = tokio::time::timeout(
        crate::control::server::REQUEST_TIMEOUT,
        stream.write_all(line.as_bytes()),
    )
    .await;
    if matches!(written, Ok(Ok(()))) {
        let _ = stream.shutdown().await;
    }
}

/// Rebuilds releases, services, singletons, orphans and the bootstrap record.
/// Returns the releases that were draining: their drain goes on.
fn restore_state(daemon: &Arc<Daemon>, document: &Handover) -> Vec<Arc<Release>> {
    if let Some(message) = &document.maintenance {
        let body = bytes::Bytes::from(message.clone());
        daemon.router.update(|table| table.maintenance = Some(body));
    }
    let config = daemon.config();
    let registry = daemon.registry();
    let proxied = config.proxied().id.clone();
    let mut releases = Vec::new();
    let mut drains = Vec::new();
    for record in &document.releases {
        let proxied_port = record
            .ports
            .iter()
            .find(|(id, _)| *id == proxied)
            .map(|(_, port)| *port)
            .unwrap_or(0);
        let release = Release::new(
            record.id.clone(),
            record.path.clone(),
            record.revision.clone(),
            record.ports.clone(),
            &config.proxy.upstream_host,
            proxied_port,
        );
        {
            let mut meta = release.meta();
            meta.state = ReleaseState::parse(&record.state).unwrap_or(ReleaseState::Stopped);
            meta.activated_at = record.activated_at.clone();
            meta.drain_started_at = record.drain_started_at.clone();
            meta.stopped_at = record.stopped_at.clone();
        }
        for (base_id, process) in &record.processes {
            let supervision = daemon.release_supervision(&registry, &release);
            if let Some(adopted) = adopt(&config, supervision, process) {
                release.add_process(base_id, adopted);
            }
        }
        if release.state() == ReleaseState::Draining {
            release.counters.close();
            release.target.retire();
            drains.push(release.clone());
        }
        releases.push(release);
    }
    let active = document
        .active_release_id
        .as_ref()
        .and_then(|id| releases.iter().find(|r| &r.id == id).cloned());
    if let Some(active) = &active {
        daemon.router.set_active(Some(active.target.clone()));
    }
    let services = named_processes(
        &document.services,
        |_| daemon.service_supervision(&registry),
        &config,
    );
    let singletons = named_processes(
        &document.singletons,
        |entry| {
            let builder = releases
                .iter()
                .find(|r| Some(&r.id) == entry.release_id.as_ref());
            match builder {
                Some(release) => daemon.singleton_supervision(&registry, release),
                // Its release is gone: like the Weak it held, it never restarts.
                None => Supervision {
                    should_restart: Arc::new(|| false),
                    ..daemon.service_supervision(&registry)
                },
            }
        },
        &config,
    );
    let mut state = daemon.state();
    state.releases = releases;
    state.active = active;
    state.services = services;
    state.service_ports = document.service_ports.iter().cloned().collect();
    state.singletons = singletons;
    state.orphans = document.orphans.clone();
    state.bootstrap = document.bootstrap.clone();
    drains
}

fn named_processes(
    entries: &[NamedProcessHandover],
    supervision: impl Fn(&NamedProcessHandover) -> Supervision,
    config: &Config,
) -> Vec<(String, Arc<ManagedProcess>)> {
    entries
        .iter()
        .filter_map(|entry| {
            let process = adopt(config, supervision(entry), &entry.process)?;
            Some((entry.id.clone(), process))
        })
        .collect()
}

/// One process, adopted (validation made sure it can be).
fn adopt(
    config: &Config,
    supervision: Supervision,
    record: &ProcessHandover,
) -> Option<Arc<ManagedProcess>> {
    let entry = config
        .processes
        .iter()
        .find(|p| p.id == record.definition.base_id)?;
    let def = record.definition.rebuild(entry.clone()).ok()?;
    let pipes = record.child.as_ref();
    let stdout = pipes.and_then(|c| c.stdout_fd).map(owned);
    let stderr = pipes.and_then(|c| c.stderr_fd).map(owned);
    match ManagedProcess::adopt(def, supervision, record, stdout, stderr) {
        Ok(process) => Some(process),
        Err(error) => {
            tracing::error!("upgrade: {error}");
            None
        }
    }
}

/// A handed-over tunnel, its sockets taken (validated open sockets).
fn frozen_tunnel(record: &super::handover::TunnelHandover) -> crate::proxy::FrozenTunnel {
    crate::proxy::FrozenTunnel {
        release_id: record.release_id.clone(),
        client: std::net::TcpStream::from(owned(record.client_fd)),
        upstream: std::net::TcpStream::from(owned(record.upstream_fd)),
        to_upstream: record.to_upstream.clone(),
        to_client: record.to_client.clone(),
        client_finished: record.client_finished,
        upstream_finished: record.upstream_finished,
    }
}
