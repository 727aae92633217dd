//! Starting and running a daemon: listener-only, known-release
//! bootstrap, or takeover of a running owner. Returns the process exit code.

use super::bootstrap::{BootstrapRequest, StartMode};
use super::deploy::DeployRequest;
use super::errors::{ShutdownError, StartError};
use super::runtime::RuntimeIdentity;
use super::signals;
use super::state::Daemon;
use crate::control::client::ClientError;
use crate::control::protocol::Request;
use crate::control::server::{ControlHandler, ControlServer};
use crate::control::socket;
use crate::events::Event;
use crate::observability::DaemonObservability;
use crate::observability::metrics::{ProcessSample, ProcessSource};
use crate::proxy::{ProxyOptions, ProxyServer};
use crate::util::sync::Unpoisoned;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a takeover candidate keeps retrying the proxy port while the old
/// owner releases it.
const TAKEOVER_BIND_PATIENCE: Duration = Duration::from_secs(10);

/// Runs a daemon until it is shut down. `Err` is a startup failure to print.
/// `observability` carries the logging pipeline (whose event sink the daemon
/// uses), systemd's notify socket and passed listeners, and the metrics.
pub async fn run(
    mode: StartMode,
    observability: Arc<DaemonObservability>,
) -> Result<i32, StartError> {
    let (config_arg, bootstrap) = match mode {
        StartMode::ListenerOnly { config } => (config, None),
        StartMode::Bootstrap(request) => (Some(request.config.clone()), Some(request)),
    };
    prepare_supervision();
    let cwd = std::env::current_dir()?;
    let config_path = crate::config::resolve_config_path(config_arg.as_deref(), &cwd)?;
    let loaded = crate::config::load(&config_path)?;
    let registry = super::setup::registry_for(&loaded)?;
    let runtime = tokio::task::spawn_blocking(RuntimeIdentity::current)
        .await?
        .map_err(StartError::Identity)?;
    let daemon = Daemon::new(
        loaded.config,
        registry,
        Some(config_path),
        Some(runtime),
        observability.events(),
    );
    let _ = daemon.observability.set(observability.clone());
    report_non_utf8_environment(&daemon);
    observability.set_process_source(process_source(&daemon));
    observability
        .spawn_reopen_on_sighup()
        .map_err(StartError::Sighup)?;
    let takeover = bootstrap.as_ref().is_some_and(|b| b.takeover_owner);
    if !takeover {
        // Find a running daemon on the socket path before taking the proxy port
        // (which it would hold too): its message says what to do. A socket systemd
        // passed is ours already.
        let control_path = PathBuf::from(daemon.config().control.path.clone());
        if !daemon.control_socket_activated() {
            socket::check_free(&control_path).await?;
        }
        daemon.report_orphans();
        bind_proxy(&daemon, Duration::ZERO).await?;
    }
    let mut signal_outcome = signals::install(&daemon)?;

    if let Some(request) = bootstrap {
        let activation = activate(&daemon, &request);
        tokio::select! {
            outcome = &mut signal_outcome => return Ok(signal_exit_code(outcome)),
            activated = activation => {
                if let Err(error) = activated {
                    if daemon.is_stopping() {
                        // A signal started the shutdown; it decides the exit code.
                        return Ok(signal_exit_code(signal_outcome.await));
                    }
                    eprintln!("Error: {error}");
                    daemon.events.emit(Event::BootstrapActivationFailed {
                        release_id: request.release_id.clone(),
                    });
                    if let Err(cleanup) = daemon.shutdown(None).await {
                        eprintln!("Error: {cleanup}");
                    }
                    return Ok(1);
                }
            }
        }
    } else if let Err(error) = expose_control(&daemon).await {
        let _ = daemon.shutdown(None).await;
        return Err(error);
    }
    // Proxy and control serve (after the bootstrap release took traffic, when
    // there is one): tell systemd.
    let active = daemon.state().active.as_ref().map(|r| r.id.clone());
    observability.ready(active.as_deref());
    daemon.store_listeners();
    Ok(serve_until_exit(&daemon, signal_outcome).await)
}

/// Serves until a signal, a control-driven shutdown or a retirement ends the
/// daemon; the exit code.
pub(super) async fn serve_until_exit(
    daemon: &Arc<Daemon>,
    signal_outcome: oneshot::Receiver<Result<(), ShutdownError>>,
) -> i32 {
    let control = daemon.endpoints().control.clone();
    let control_exit = async {
        match control {
            Some(control) => control.exit_requested().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        outcome = signal_outcome => signal_exit_code(outcome),
        _ = control_exit => 0,
        _ = daemon.retired.notified() => 0,
    }
}

/// One warning per environment variable that is not UTF-8: processes still get
/// it byte for byte, but `{{env.NAME}}` templates and hooks cannot see it.
fn report_non_utf8_environment(daemon: &Daemon) {
    for name in crate::util::env::non_utf8_names() {
        daemon.events.emit(Event::EnvironmentNotUtf8 { name });
    }
}

/// Makes the daemon a child subreaper (orphans of its processes are reparented
/// to it, so stops still find them) and decides whether each managed process gets
/// a cgroup of its own (docs/processes.md, "Whole-tree stops").
pub(super) fn prepare_supervision() {
    if let Err(error) = crate::process::sampler::become_subreaper() {
        tracing::warn!(
            "cannot become a child subreaper ({error}); processes that leave their group are found only while their parent lives"
        );
    }
    match crate::process::cgroup::enable() {
        Ok(parent) => tracing::debug!("managed processes get cgroups under {}", parent.display()),
        Err(reason) => tracing::debug!("managed processes get no cgroups of their own: {reason}"),
    }
}

fn signal_exit_code(outcome: Result<Result<(), ShutdownError>, oneshot::error::RecvError>) -> i32 {
    match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(error)) => {
            eprintln!("Error: {error}");
            1
        }
        Err(_) => 1,
    }
}

/// Activates the bootstrap release, then (for a takeover) retires the running
/// owner and takes its listeners, then exposes control.
async fn activate(daemon: &Arc<Daemon>, request: &BootstrapRequest) -> Result<(), StartError> {
    {
        let operations = daemon.lock_operations().await;
        daemon
            .deploy_locked(
                &operations,
                DeployRequest {
                    release_path: request.release_path.clone(),
                    release_id: Some(request.release_id.clone()),
                    revision: Some(request.revision.clone()),
                    watch_ms: None,
                    canary_percent: None,
                },
            )
            .await?;
        daemon.state().bootstrap = Some(request.clone());
    }
    if request.takeover_owner {
        let attestation = request.attestation.clone().unwrap_or_default();
        let control_path = PathBuf::from(daemon.config().control.path.clone());
        retire_current_owner(&control_path, &attestation).await?;
        bind_proxy(daemon, TAKEOVER_BIND_PATIENCE).await?;
    }
    expose_control(daemon).await
}

/// Binds the proxy listener and reports `proxy listening`. With `patience`, an
/// address still held by a retiring owner is retried until it frees up.
async fn bind_proxy(daemon: &Arc<Daemon>, patience: Duration) -> Result<(), StartError> {
    let config = daemon.config();
    let deadline = tokio::time::Instant::now() + patience;
    // Access log and metrics listener first: the proxy records into them.
    let observability = daemon.observability().cloned();
    if let Some(observability) = &observability {
        observability
            .configure(&config, daemon.router.clone(), patience)
            .await?;
    }
    if let Some(listener) = observability
        .as_ref()
        .and_then(|o| o.take_activated_proxy())
    {
        let proxy = super::upgrade::serve_proxy(daemon, listener)?;
        proxy_bound(daemon, &config, proxy);
        return Ok(());
    }
    let observer = observability.as_ref().and_then(|o| o.proxy_observer());
    let options = ProxyOptions::for_config(&config.proxy, observer);
    let proxy = loop {
        let bound = ProxyServer::bind_with_options(
            &config.proxy.host,
            config.proxy.port,
            daemon.router.clone(),
            daemon.events.clone(),
            options.clone(),
        )
        .await;
        match bound {
            Ok(proxy) => break proxy,
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    proxy_bound(daemon, &config, proxy);
    Ok(())
}

/// Records the bound proxy and reports `proxy listening` with its real port.
fn proxy_bound(daemon: &Arc<Daemon>, config: &crate::config::model::Config, proxy: ProxyServer) {
    let port = proxy.local_addr().port();
    daemon.events.emit(Event::ProxyListening {
        host: config.proxy.host.clone(),
        port,
    });
    *daemon.proxy_bound.lock().unpoisoned() = Some((config.proxy.host.clone(), port));
    daemon.endpoints().proxy = Some(proxy);
}

/// Claims the control socket path, starts serving it, reports readiness and
/// switches persistence on.
async fn expose_control(daemon: &Arc<Daemon>) -> Result<(), StartError> {
    let control = daemon.config().control.clone();
    let path = PathBuf::from(&control.path);
    // A socket systemd passed already exists with the unit's owner and mode.
    let activated = daemon
        .observability()
        .and_then(|observability| observability.take_activated_control());
    let listener = match activated {
        Some(listener) => listener,
        None => {
            socket::prepare_path(&path).await?;
            socket::bind(&control)?
        }
    };
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let handler: Arc<dyn ControlHandler> = daemon.clone();
    let server = ControlServer::start(listener, path, handler, daemon.events.clone());
    daemon.endpoints().control = Some(server);
    daemon.events.emit(Event::ControlSocketListening {
        path: control.path.clone(),
    });
    daemon.start_persistence().await;
    Ok(())
}

/// Sends `retire-owner` to the daemon on `path` and waits for its reply, with
/// the same client the CLI uses (on a blocking thread).
async fn retire_current_owner(path: &Path, attestation: &str) -> Result<(), StartError> {
    let request = Request::RetireOwner {
        attestation: attestation.to_string(),
    };
    let owner = path.to_path_buf();
    let reply =
        tokio::task::spawn_blocking(move || crate::control::client::send(&owner, &request, None))
            .await?;
    match reply {
        Ok(_) => Ok(()),
        Err(ClientError::Daemon(message)) => Err(StartError::OwnerRefused(message)),
        Err(source) => Err(StartError::OwnerUnreachable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The running managed processes, for the RSS gauge (read at scrape time).
pub(super) fn process_source(daemon: &Arc<Daemon>) -> ProcessSource {
    let daemon = Arc::downgrade(daemon);
    Arc::new(move || {
        let Some(daemon) = daemon.upgrade() else {
            return Vec::new();
        };
        daemon
            .every_process()
            .iter()
            .filter_map(|process| {
                // The wrapper leads its process group, so its pid is the group id.
                let pgid = process.pid()?;
                Some(ProcessSample {
                    process: process.instance_id(),
                    release: process.definition().release_id,
                    pgid,
                })
            })
            .collect()
    })
}
