//! Live upgrade (docs/upgrade.md): the daemon re-executes itself in place —
//! same pid, so every managed process stays its child — and hands the new image
//! its listeners, processes, releases and history.
//!
//! - `check.rs`: the new binary is checked (and its handshake run) first;
//! - this file: the old image's side — drain in-flight requests, write the
//!   handover document ([`handover`]), exec ([`exec`]), or resume serving when
//!   anything fails;
//! - `restore.rs`: the new image's side — validate everything, then take over,
//!   or give the daemon back to the previous binary.

pub mod check;
pub mod exec;
pub mod handover;
pub mod restore;

use super::errors::StartError;
use super::release::Release;
use super::state::{Daemon, OperationsGuard};
use crate::control::server::ConnectionId;
use crate::process::handover::duplicate;
use crate::proxy::{FrozenTunnel, IdleConnection, ProxyOptions, ProxyServer};
use crate::util::sync::Unpoisoned;
use check::BinaryProblem;
use handover::{
    Handover, ImageIdentity, Listeners, NamedProcessHandover, ReleaseHandover, TunnelHandover,
    UnreadBytes,
};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long an upgrade waits for the HTTP requests in flight to finish once the
/// proxy stopped reading new ones. Past it the upgrade is refused and the
/// daemon goes on serving.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Why an upgrade did not happen. Every variant leaves the daemon serving.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("Upgrade refused: {0}")]
    Binary(#[from] BinaryProblem),
    #[error(
        "Upgrade refused: the daemon was started without a config file, so a new image could not load one; restart it instead"
    )]
    NoConfigPath,
    #[error(
        "Upgrade refused: the config file {} cannot be loaded ({reason}); the new image would load it, so fix it first",
        path.display()
    )]
    Config { path: PathBuf, reason: String },
    #[error(
        "Upgrade refused: process \"{0}\" is running but no longer in the config file; deploy the current config first, then upgrade"
    )]
    MissingProcess(String),
    #[error(
        "Upgrade refused: release \"{0}\" was deployed again while its previous processes still drain; upgrade once the drain finished"
    )]
    Detached(String),
    #[error(
        "Upgrade refused: traffic is paused and held requests cannot cross an upgrade; run \"rollbridge resume\" first"
    )]
    Paused,
    #[error(
        "Upgrade refused: the rollout of release \"{0}\" is still watching or open as a canary; upgrade after it passed, or after \"rollbridge rollout promote\" or \"rollout abort\""
    )]
    Rollout(String),
    #[error(
        "Upgrade refused: {count} HTTP request(s) were still in flight {limit} s after the proxy stopped reading new ones; the daemon keeps serving, try again when they are done",
        limit = DRAIN_LIMIT.as_secs()
    )]
    Busy { count: usize },
    #[error("Upgrade refused: cannot prepare the handover ({0}); the daemon keeps serving")]
    Prepare(#[source] std::io::Error),
    #[error(
        "Upgrade failed: cannot execute {}: {source}; the daemon keeps serving on the current binary",
        path.display()
    )]
    Exec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How long tunnels get to stop relaying and hand over their sockets.
const TUNNEL_FREEZE_LIMIT: Duration = Duration::from_secs(1);

/// The proxy while an upgrade has it paused.
#[derive(Default)]
struct Paused {
    /// The listening socket's copy for the new image.
    handed: Option<RawFd>,
    /// The daemon's own copy, to serve again if the upgrade does not happen.
    own: Option<OwnedFd>,
    /// The paused server (its in-flight requests and tunnels).
    server: Option<ProxyServer>,
}

/// The frozen tunnels as handover records, their sockets kept.
fn tunnel_records(
    kept: &mut Kept,
    tunnels: &[FrozenTunnel],
) -> std::io::Result<Vec<TunnelHandover>> {
    tunnels
        .iter()
        .map(|tunnel| {
            Ok(TunnelHandover {
                release_id: tunnel.release_id.clone(),
                client_fd: kept.keep(tunnel.client.as_raw_fd())?,
                upstream_fd: kept.keep(tunnel.upstream.as_raw_fd())?,
                to_upstream: tunnel.to_upstream.clone(),
                to_client: tunnel.to_client.clone(),
                client_finished: tunnel.client_finished,
                upstream_finished: tunnel.upstream_finished,
            })
        })
        .collect()
}

/// The kept client connections into the document, their sockets kept.
fn connection_records(
    kept: &mut Kept,
    idle: &[IdleConnection],
    mut document: Handover,
) -> std::io::Result<Handover> {
    for connection in idle {
        let fd = kept.keep(connection.socket.as_raw_fd())?;
        document.connections.push(fd);
        if !connection.unread.is_empty() {
            document.connections_unread.push(UnreadBytes {
                fd,
                bytes: connection.unread.to_vec(),
            });
        }
    }
    Ok(document)
}

/// Relays frozen tunnels again on the daemon's proxy, each counted as a
/// WebSocket of its release.
pub(crate) fn adopt_tunnels(daemon: &Arc<Daemon>, tunnels: Vec<FrozenTunnel>) {
    let releases = daemon.state().releases.clone();
    let endpoints = daemon.endpoints();
    let Some(proxy) = &endpoints.proxy else {
        return;
    };
    for tunnel in tunnels {
        let count = releases
            .iter()
            .find(|release| release.id == tunnel.release_id)
            .map(|release| release.counters.track_websocket());
        if let Err(error) = proxy.adopt_tunnel(tunnel, count) {
            tracing::warn!("upgrade: a WebSocket could not be resumed: {error}");
        }
    }
}

/// Serves kept client connections again on the daemon's proxy.
pub(crate) fn adopt_connections(daemon: &Arc<Daemon>, connections: Vec<IdleConnection>) {
    if let Some(proxy) = &daemon.endpoints().proxy {
        for connection in connections {
            proxy.adopt_connection(connection);
        }
    }
}

/// Descriptors the old image keeps open for the new one.
#[derive(Default)]
struct Kept {
    fds: Vec<OwnedFd>,
}

impl Kept {
    fn keep(&mut self, fd: RawFd) -> std::io::Result<RawFd> {
        let copy = duplicate(fd)?;
        let number = copy.as_raw_fd();
        self.fds.push(copy);
        Ok(number)
    }

    fn numbers(&self) -> Vec<RawFd> {
        self.fds.iter().map(AsRawFd::as_raw_fd).collect()
    }
}

impl Daemon {
    /// Runs an upgrade. Returns only when it did not happen (on success the
    /// process is the new image, which answers the requester itself).
    pub async fn upgrade_locked(
        self: &Arc<Self>,
        _operations: &OperationsGuard<'_>,
        binary: Option<String>,
        origin: ConnectionId,
    ) -> UpgradeError {
        match self.try_upgrade(binary, origin).await {
            Ok(never) => match never {},
            Err(error) => error,
        }
    }

    async fn try_upgrade(
        self: &Arc<Self>,
        binary: Option<String>,
        origin: ConnectionId,
    ) -> Result<std::convert::Infallible, UpgradeError> {
        let binary = match binary {
            Some(path) => PathBuf::from(path),
            None => check::default_binary().map_err(UpgradeError::Prepare)?,
        };
        let checked = binary.clone();
        let next = tokio::task::spawn_blocking(move || {
            check::verify(&checked)?;
            Ok::<_, BinaryProblem>(handover::FileIdentity::of(&checked).ok())
        })
        .await
        .map_err(|e| UpgradeError::Prepare(std::io::Error::other(e)))??;
        let config_source = self.check_config().await?;
        if let Some(release) = self.state().detached.first() {
            return Err(UpgradeError::Detached(release.id.clone()));
        }
        // Held requests and a rollout's window live in this image only.
        if self.router.table().hold.is_some() {
            return Err(UpgradeError::Paused);
        }
        if let Some(run) = self.rollout() {
            return Err(UpgradeError::Rollout(run.release.id.clone()));
        }
        // The previous executable, open: the new image falls back to it.
        let previous_executable =
            std::fs::File::open("/proc/self/exe").map_err(UpgradeError::Prepare)?;
        let notifier = self.observability().map(|o| o.notifier().clone());
        if let Some(notifier) = &notifier {
            notifier.reloading();
        }
        let mut kept = Kept::default();
        let listeners = self.keep_listeners(&mut kept, origin);
        let (listeners, requester) = match listeners {
            Ok(kept_listeners) => kept_listeners,
            Err(error) => {
                self.upgrade_abandoned();
                return Err(UpgradeError::Prepare(error));
            }
        };
        // Lines still queued for the log writer threads get a moment to land
        // (nothing the upgrade does logs after this point).
        tokio::time::sleep(Duration::from_millis(10)).await;
        let paused = match self.pause_proxy(&mut kept).await {
            Ok(paused) => paused,
            Err(error) => {
                self.upgrade_abandoned();
                return Err(UpgradeError::Prepare(error));
            }
        };
        let listeners = Listeners {
            proxy: paused.handed,
            ..listeners
        };
        let pause_started = std::time::Instant::now();
        let drain_deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
        if let Err(busy) = self.wait_requests_done(drain_deadline).await {
            let idle = match &paused.server {
                Some(server) => server.take_idle_connections(drain_deadline).await.0,
                None => Vec::new(),
            };
            self.resume_proxy(paused, Vec::new(), idle);
            self.upgrade_abandoned();
            return Err(busy);
        }
        let (tunnels, idle, still_serving) = match &paused.server {
            Some(server) => {
                let tunnels = server.freeze_tunnels(TUNNEL_FREEZE_LIMIT).await;
                let (idle, still_serving) = server.take_idle_connections(drain_deadline).await;
                (tunnels, idle, still_serving)
            }
            None => (Vec::new(), Vec::new(), 0),
        };
        // A response still being written (to a client reading slowly) would be
        // cut off by the exec.
        if still_serving > 0 {
            self.resume_proxy(paused, tunnels, idle);
            self.upgrade_abandoned();
            return Err(UpgradeError::Busy {
                count: still_serving,
            });
        }
        let document = self
            .handover_document(
                &mut kept,
                listeners,
                requester,
                previous_executable.as_raw_fd(),
            )
            .and_then(|document| {
                Ok(Handover {
                    next,
                    config_source: Some(config_source),
                    proxy_paused_at_ms: Some(
                        crate::util::time::now_ms() - pause_started.elapsed().as_millis() as i64,
                    ),
                    tunnels: tunnel_records(&mut kept, &tunnels)?,
                    ..connection_records(&mut kept, &idle, document)?
                })
            });
        let memfd = match document.and_then(|document| document.to_memfd()) {
            Ok(memfd) => memfd,
            Err(error) => {
                self.resume_proxy(paused, tunnels, idle);
                self.upgrade_abandoned();
                return Err(UpgradeError::Prepare(error));
            }
        };
        let mut handed = kept.numbers();
        handed.push(previous_executable.as_raw_fd());
        let mut environment = systemd_environment(notifier.as_ref());
        environment.push((
            handover::PREVIOUS_ENV.to_string(),
            previous_executable.as_raw_fd().to_string().into(),
        ));
        let error = exec::replace_image(
            exec::Target::Path(&binary),
            &handed,
            memfd.as_raw_fd(),
            &environment,
        );
        self.resume_proxy(paused, tunnels, idle);
        self.upgrade_abandoned();
        Err(UpgradeError::Exec {
            path: binary,
            source: error,
        })
    }

    /// The config file must load, and name every process that is handed over.
    /// Returns the text that was checked: a fallback to this binary loads it.
    async fn check_config(&self) -> Result<String, UpgradeError> {
        let path = self.config_path.clone().ok_or(UpgradeError::NoConfigPath)?;
        let loading = path.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let source = crate::config::load::read_config(&loading)?;
            let loaded = crate::config::load_source(&loading, source.clone())?;
            Ok::<_, crate::config::ConfigError>((source, loaded))
        })
        .await
        .map_err(|e| UpgradeError::Prepare(std::io::Error::other(e)))?
        .map_err(|error| UpgradeError::Config {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        let (source, loaded) = loaded;
        let known = |base_id: &str| loaded.config.processes.iter().any(|p| p.id == base_id);
        for process in self.every_process() {
            let def = process.definition();
            if !known(&def.base_id) {
                return Err(UpgradeError::MissingProcess(def.instance_id));
            }
        }
        Ok(source)
    }

    /// Control and metrics listeners, and the requester's connection.
    fn keep_listeners(
        &self,
        kept: &mut Kept,
        origin: ConnectionId,
    ) -> std::io::Result<(Listeners, Option<RawFd>)> {
        let control = self.endpoints().control.clone();
        let mut listeners = Listeners {
            control_activated: self.control_socket_activated(),
            ..Listeners::default()
        };
        let mut requester = None;
        if let Some(control) = control {
            listeners.control = Some(kept.keep(control.listener_fd())?);
            if let Some(fd) = control.connection_fd(origin) {
                requester = Some(kept.keep(fd)?);
            }
        }
        if let Some(fd) = self.observability().and_then(|o| o.metrics_listener_fd()) {
            listeners.metrics = Some(kept.keep(fd)?);
        }
        Ok((listeners, requester))
    }

    /// Keeps the proxy's listening socket, then stops the proxy reading new
    /// requests.
    async fn pause_proxy(&self, kept: &mut Kept) -> std::io::Result<Paused> {
        let proxy = self.endpoints().proxy.take();
        let Some(mut proxy) = proxy else {
            return Ok(Paused::default());
        };
        let copies = kept
            .keep(proxy.listener_fd())
            .and_then(|handed| Ok((handed, duplicate(proxy.listener_fd())?)));
        let (handed, own) = match copies {
            Ok(copies) => copies,
            Err(error) => {
                self.endpoints().proxy = Some(proxy);
                return Err(error);
            }
        };
        proxy.hand_over_idle_connections();
        proxy.pause().await;
        Ok(Paused {
            handed: Some(handed),
            own: Some(own),
            server: Some(proxy),
        })
    }

    /// Waits until no HTTP request is in flight in any release (at most until
    /// `deadline`).
    async fn wait_requests_done(&self, deadline: tokio::time::Instant) -> Result<(), UpgradeError> {
        loop {
            let in_flight: usize = {
                let state = self.state();
                state
                    .releases
                    .iter()
                    .chain(state.detached.iter())
                    .map(|release| release.counters.http())
                    .sum()
            };
            if in_flight == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(UpgradeError::Busy { count: in_flight });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Serves the proxy again on the daemon's own copy of the listening socket,
    /// with the tunnels that were frozen and the connections that were kept;
    /// the paused server finishes what it still serves, and passes each of its
    /// keep-alive connections on to the new server once its request is done.
    fn resume_proxy(
        self: &Arc<Self>,
        paused: Paused,
        tunnels: Vec<FrozenTunnel>,
        idle: Vec<IdleConnection>,
    ) {
        let resumed = paused
            .own
            .map(|fd| serve_proxy(self, std::net::TcpListener::from(fd)));
        if let Some(server) = paused.server {
            if let Some(Ok(proxy)) = &resumed {
                server.pass_late_connections_to(proxy);
            }
            tokio::spawn(server.finish());
        }
        match resumed {
            Some(Ok(proxy)) => self.endpoints().proxy = Some(proxy),
            Some(Err(error)) => {
                tracing::error!("upgrade: could not serve the proxy again: {error}");
                return;
            }
            None => return,
        }
        adopt_tunnels(self, tunnels);
        adopt_connections(self, idle);
    }

    /// Back to normal after an upgrade that did not happen.
    fn upgrade_abandoned(&self) {
        // Supervision goes on here, with any restart that waited for the exec.
        for process in self.every_process() {
            process.handover_abandoned();
        }
        if let Some(observability) = self.observability() {
            let active = self.state().active.as_ref().map(|r| r.id.clone());
            observability.reloaded(active.as_deref());
        }
    }

    /// The handover document of this moment.
    fn handover_document(
        &self,
        kept: &mut Kept,
        listeners: Listeners,
        requester: Option<RawFd>,
        previous_executable: RawFd,
    ) -> std::io::Result<Handover> {
        let runtime = self.runtime.clone();
        let (releases, active, services, service_ports, singletons, orphans, bootstrap) = {
            let state = self.state();
            (
                state.releases.clone(),
                state.active.as_ref().map(|r| r.id.clone()),
                state.services.clone(),
                state.service_ports.clone(),
                state.singletons.clone(),
                state.orphans.clone(),
                state.bootstrap.clone(),
            )
        };
        let mut process_record = |process: &crate::process::ManagedProcess| {
            let (record, fds) = process.handover()?;
            kept.fds.extend(fds);
            Ok::<_, std::io::Error>(record)
        };
        let mut release_records = Vec::new();
        for release in &releases {
            release_records.push(release_handover(release, &mut process_record)?);
        }
        let mut named = |entries: &[(String, Arc<crate::process::ManagedProcess>)]| {
            entries
                .iter()
                .map(|(id, process)| {
                    Ok(NamedProcessHandover {
                        id: id.clone(),
                        release_id: Some(process.definition().release_id),
                        process: process_record(process)?,
                    })
                })
                .collect::<std::io::Result<Vec<_>>>()
        };
        let services = named(&services)?;
        let singletons = named(&singletons)?;
        Ok(Handover {
            format: handover::HANDOVER_FORMAT,
            previous: ImageIdentity {
                version: runtime
                    .as_ref()
                    .map(|r| r.version.clone())
                    .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
                digest: runtime.map(|r| r.digest).unwrap_or_default(),
            },
            previous_executable_fd: Some(previous_executable),
            config_path: self.config_path.clone().unwrap_or_default(),
            config_source: None,
            next: None,
            proxy_paused_at_ms: None,
            listeners,
            requester_fd: requester,
            proxy_bound: self.proxy_bound.lock().unpoisoned().clone(),
            releases: release_records,
            active_release_id: active,
            services,
            service_ports: service_ports.into_iter().collect(),
            singletons,
            orphans,
            bootstrap,
            events: self.events.recent(None),
            tunnels: Vec::new(),
            connections: Vec::new(),
            connections_unread: Vec::new(),
            maintenance: self
                .router
                .table()
                .maintenance
                .as_ref()
                .map(|body| String::from_utf8_lossy(body).into_owned()),
            counters: self
                .observability()
                .map(|o| o.metrics().snapshot())
                .unwrap_or_default(),
        })
    }
}

fn release_handover(
    release: &Release,
    process_record: &mut impl FnMut(
        &crate::process::ManagedProcess,
    ) -> std::io::Result<crate::process::ProcessHandover>,
) -> std::io::Result<ReleaseHandover> {
    let meta = release.meta().clone();
    let mut processes = Vec::new();
    for entry in release.processes() {
        processes.push((entry.base_id.clone(), process_record(&entry.process)?));
    }
    Ok(ReleaseHandover {
        id: release.id.clone(),
        path: release.path.clone(),
        revision: release.revision.clone(),
        ports: release.ports.clone(),
        state: meta.state.as_str().to_string(),
        activated_at: meta.activated_at,
        drain_started_at: meta.drain_started_at,
        stopped_at: meta.stopped_at,
        processes,
    })
}

/// `NOTIFY_SOCKET` and the watchdog settings, which the daemon removed from its
/// environment at startup, for the new image.
fn systemd_environment(
    notifier: Option<&crate::observability::SystemdNotifier>,
) -> Vec<(String, OsString)> {
    let Some(notifier) = notifier else {
        return Vec::new();
    };
    let Some(socket) = notifier.socket() else {
        return Vec::new();
    };
    let mut env = vec![("NOTIFY_SOCKET".to_string(), socket.clone())];
    if let Some(timeout) = notifier.watchdog_timeout() {
        env.push((
            "WATCHDOG_USEC".into(),
            timeout.as_micros().to_string().into(),
        ));
        env.push(("WATCHDOG_PID".into(), std::process::id().to_string().into()));
    }
    env
}

/// Starts the proxy on a listener the daemon already holds (passed by systemd,
/// or kept across an upgrade).
pub(crate) fn serve_proxy(
    daemon: &Arc<Daemon>,
    listener: std::net::TcpListener,
) -> Result<ProxyServer, StartError> {
    let config = daemon.config();
    let observer = daemon.observability().and_then(|o| o.proxy_observer());
    let options = ProxyOptions::for_config(&config.proxy, observer);
    let proxy = ProxyServer::serve_listener_with_options(
        listener,
        daemon.router.clone(),
        daemon.events.clone(),
        options,
    )
    .map_err(StartError::PassedProxy)?;
    Ok(proxy)
}
