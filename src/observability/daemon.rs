//! Everything observability the daemon holds for its life, in one place, so the
//! daemon's own code only calls it at a few clearly named moments:
//!
//! 1. [`SystemdHandoff::take`] first thing in `rollbridge daemon`, while the
//!    process has one thread: systemd's variables and passed sockets are taken
//!    and removed from the environment;
//! 2. [`DaemonObservability::start`]: the logging pipeline (its event sink is the
//!    daemon's);
//! 3. [`DaemonObservability::configure`] once the config is loaded: access log,
//!    metrics listener;
//! 4. [`DaemonObservability::ready`] once proxy and control serve;
//!    `reloading`/`ready` around config reloads, `stopping` when shutdown begins;
//! 5. [`DaemonObservability::close`] after shutdown, then
//!    [`DaemonObservability::finish`] to flush the log before exiting.

use super::access_log::{AccessLog, AccessLogWriter};
use super::activation::{ActivatedSockets, ActivationError};
use super::events_layer::EventObserver;
use super::log_file::LogFileError;
use super::logging::{Logging, LoggingError, LoggingOptions};
use super::metrics::{Metrics, MetricsServer, MetricsServerError, ProcessSource};
use super::process_logs::ProcessLogFiles;
use super::request_observer::ProxyObserver;
use super::systemd::{SystemdNotifier, clear_systemd_env};
use crate::config::model::Config;
use crate::events::{Event, EventSink};
use crate::proxy::Router;
use crate::util::sync::Unpoisoned;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Why the access log or the metrics listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("proxy.accessLog: {0}")]
    AccessLog(#[source] LogFileError),
    #[error(transparent)]
    Metrics(#[from] MetricsServerError),
    /// After a live upgrade: the metrics listener the previous image handed over.
    #[error("metrics: cannot serve the inherited listener: {0}")]
    InheritedMetrics(#[source] std::io::Error),
}

/// What systemd passed to this process.
#[derive(Debug, Default)]
pub struct SystemdHandoff {
    pub notifier: SystemdNotifier,
    pub sockets: ActivatedSockets,
}

impl SystemdHandoff {
    /// Reads the notify socket, watchdog and passed sockets, then removes every
    /// systemd variable from the environment so managed processes inherit none.
    ///
    /// # Safety
    /// It changes the environment: call it while the process has a single thread.
    pub unsafe fn take() -> Result<SystemdHandoff, ActivationError> {
        let notifier = SystemdNotifier::from_env();
        let sockets = ActivatedSockets::from_env();
        // SAFETY: forwarded to the caller.
        unsafe { clear_systemd_env() };
        Ok(SystemdHandoff {
            notifier,
            sockets: sockets?,
        })
    }
}

/// The daemon's logging, systemd and metrics state.
pub struct DaemonObservability {
    logging: Mutex<Option<Logging>>,
    events: EventSink,
    reopen_log: Option<super::log_file::LogFile>,
    notifier: SystemdNotifier,
    sockets: Mutex<ActivatedSockets>,
    control_activated: std::sync::atomic::AtomicBool,
    metrics: Arc<Metrics>,
    metrics_server: Mutex<Option<MetricsServer>>,
    /// The metrics listener an earlier image of this daemon handed over (live
    /// upgrade): served instead of binding one.
    inherited_metrics: Mutex<Option<TcpListener>>,
    access_log: Mutex<Option<(AccessLog, AccessLogWriter)>>,
    observer: OnceLock<Arc<ProxyObserver>>,
    process_logs: ProcessLogFiles,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for DaemonObservability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonObservability")
            .finish_non_exhaustive()
    }
}

impl DaemonObservability {
    /// Starts logging and makes it the process-wide tracing default.
    pub fn start(
        options: &LoggingOptions,
        handoff: SystemdHandoff,
    ) -> Result<Arc<DaemonObservability>, LoggingError> {
        let logging = Logging::start(options)?;
        logging.install_global();
        let metrics = Metrics::new();
        logging.attach_metrics(&metrics);
        let notifier = handoff.notifier;
        logging.observe_events(Arc::new(SystemdStatus {
            notifier: notifier.clone(),
        }));
        let control_activated = handoff.sockets.control.is_some();
        // Process log files rotate like the daemon's own file unless a process
        // says otherwise.
        let process_logs = ProcessLogFiles::new(options.rotation, options.keep);
        let process_stats = process_logs.clone();
        metrics
            .add_dropped_lines_source("process", Arc::new(move || process_stats.dropped_lines()));
        Ok(Arc::new(DaemonObservability {
            events: logging.events(),
            reopen_log: logging.reopener(),
            logging: Mutex::new(Some(logging)),
            notifier,
            sockets: Mutex::new(handoff.sockets),
            control_activated: control_activated.into(),
            metrics,
            metrics_server: Mutex::default(),
            inherited_metrics: Mutex::default(),
            access_log: Mutex::default(),
            observer: OnceLock::new(),
            process_logs,
            background: Mutex::default(),
        }))
    }

    /// The daemon's event sink.
    pub fn events(&self) -> EventSink {
        self.events.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn notifier(&self) -> &SystemdNotifier {
        &self.notifier
    }

    /// The proxy listener systemd passed, once (later calls get `None`).
    pub fn take_activated_proxy(&self) -> Option<TcpListener> {
        self.sockets.lock().unpoisoned().proxy.take()
    }

    /// The control listener systemd passed, once.
    pub fn take_activated_control(&self) -> Option<UnixListener> {
        self.sockets.lock().unpoisoned().control.take()
    }

    /// True when systemd owns the control socket: the daemon must neither probe
    /// nor create nor remove the socket file.
    pub fn control_activated(&self) -> bool {
        self.control_activated
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The control socket came from systemd to an earlier image of this daemon
    /// (live upgrade): still systemd's file.
    pub fn mark_control_activated(&self) {
        self.control_activated
            .store(true, std::sync::atomic::Ordering::Relaxed)
    }

    /// Opens the access log and starts the metrics listener the config asks for.
    /// Both errors already say which key to fix.
    /// The `metrics listening` event reports the bound address. With `patience`
    /// a metrics port still held by a retiring owner is retried until it frees up.
    pub async fn configure(
        &self,
        config: &Config,
        router: Arc<Router>,
        patience: Duration,
    ) -> Result<(), ConfigureError> {
        self.metrics.set_router(router);
        let access = match &config.proxy.access_log {
            Some(settings) => {
                let (log, writer) = AccessLog::open(&settings.path, settings.format)
                    .map_err(ConfigureError::AccessLog)?;
                let stats = log.stats();
                self.metrics
                    .add_dropped_lines_source("access", Arc::new(move || stats.dropped_lines()));
                let handle = log.clone();
                *self.access_log.lock().unpoisoned() = Some((log, writer));
                Some(handle)
            }
            None => None,
        };
        let metrics = config
            .metrics
            .is_some()
            .then(|| self.metrics.proxy().clone());
        let _ = self
            .observer
            .set(Arc::new(ProxyObserver::new(metrics, access)));
        let inherited = self.inherited_metrics.lock().unpoisoned().take();
        if let (Some(listener), Some(_)) = (inherited, &config.metrics) {
            // Already listening since the earlier image: no new event.
            let server = listener
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(listener))
                .and_then(|listener| MetricsServer::serve_listener(listener, self.metrics.clone()))
                .map_err(ConfigureError::InheritedMetrics)?;
            *self.metrics_server.lock().unpoisoned() = Some(server);
        } else if let Some(settings) = &config.metrics {
            let deadline = tokio::time::Instant::now() + patience;
            let server = loop {
                match MetricsServer::bind(&settings.host, settings.port, self.metrics.clone()).await
                {
                    Ok(server) => break server,
                    Err(error)
                        if error.source.kind() == std::io::ErrorKind::AddrInUse
                            && tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(error) => return Err(ConfigureError::Metrics(error)),
                }
            };
            self.events.emit(crate::events::Event::MetricsListening {
                host: settings.host.clone(),
                port: server.local_addr().port(),
            });
            *self.metrics_server.lock().unpoisoned() = Some(server);
        }
        Ok(())
    }

    /// Serves this listener for `/metrics` instead of binding one (live upgrade);
    /// call before [`DaemonObservability::configure`].
    pub fn inherit_metrics_listener(&self, listener: TcpListener) {
        *self.inherited_metrics.lock().unpoisoned() = Some(listener);
    }

    /// The metrics listener's descriptor while it serves.
    pub fn metrics_listener_fd(&self) -> Option<std::os::fd::RawFd> {
        self.metrics_server
            .lock()
            .unpoisoned()
            .as_ref()
            .map(MetricsServer::listener_fd)
    }

    /// What the proxy records per request; `None` when neither metrics nor the
    /// access log is configured.
    pub fn proxy_observer(&self) -> Option<Arc<ProxyObserver>> {
        self.observer.get().filter(|o| !o.is_empty()).cloned()
    }

    /// Where the metrics listener reads the managed processes from.
    pub fn set_process_source(&self, source: ProcessSource) {
        self.metrics.set_process_source(source);
    }

    /// The managed processes' log files (`processes[].logFile`).
    pub fn process_logs(&self) -> &ProcessLogFiles {
        &self.process_logs
    }

    /// Reopens the log file, the access log and the process log files on
    /// every SIGHUP (logrotate).
    pub fn spawn_reopen_on_sighup(self: &Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        let this = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let Some(this) = this.upgrade() else { return };
                this.reopen_logs().await;
            }
        });
        self.background.lock().unpoisoned().push(task);
        Ok(())
    }

    /// Closes and reopens the log file, the access log and the process log
    /// files.
    pub async fn reopen_logs(&self) {
        // Queued for the process log writer thread, after the lines before it.
        self.process_logs.reopen();
        if let Some(log) = self.reopen_log.clone() {
            let reopened = tokio::task::spawn_blocking(move || log.reopen()).await;
            if let Ok(Err(error)) = reopened {
                tracing::warn!(
                    target: "rollbridge::logging",
                    error = %error,
                    "could not reopen the log file; lines are counted as dropped until it can be opened"
                );
            }
        }
        let access = self
            .access_log
            .lock()
            .unpoisoned()
            .as_ref()
            .map(|(log, _)| log.clone());
        if let Some(access) = access {
            access.reopen();
        }
    }

    /// Proxy and control serve: `READY=1` and the watchdog starts.
    pub fn ready(&self, active_release: Option<&str>) {
        self.notifier.ready(&status_line(active_release));
        if let Some(task) = self.notifier.spawn_watchdog() {
            self.background.lock().unpoisoned().push(task);
        }
    }

    /// The config is about to be reloaded (`RELOADING=1`).
    pub fn reloading(&self) {
        self.notifier.reloading();
    }

    /// The reload finished, whatever its outcome (`READY=1`).
    pub fn reloaded(&self, active_release: Option<&str>) {
        self.notifier.ready(&status_line(active_release));
    }

    /// A rollout began, changed its share, or ended (`phase: None`).
    pub fn rollout_changed(&self, phase: Option<&'static str>, percent: u8) {
        self.metrics.set_rollout(phase, percent);
    }

    /// Shutdown began (`STOPPING=1`).
    pub fn stopping(&self) {
        self.notifier.stopping();
    }

    /// `status.logging`: lines the daemon log and the process log files dropped
    /// (the same counts as `rollbridge_log_lines_dropped_total`, earlier images
    /// of this daemon included).
    pub fn logging_status(&self) -> crate::control::status::LoggingStatus {
        crate::control::status::LoggingStatus {
            dropped_lines: self.metrics.dropped_lines("daemon"),
            process_dropped_lines: self.metrics.dropped_lines("process"),
        }
    }

    /// Closes the metrics listener (a replacement daemon takes its port).
    pub async fn close_metrics_listener(&self) {
        let server = self.metrics_server.lock().unpoisoned().take();
        if let Some(server) = server {
            server.shutdown().await;
        }
    }

    /// Stops the metrics listener and writes out the access log and the
    /// process log files, waiting at most [`LOG_FLUSH_LIMIT`] for each: a disk
    /// that stopped answering (a dead network mount) must not keep the daemon
    /// from exiting.
    pub async fn close(&self) {
        self.close_metrics_listener().await;
        let process_logs = self.process_logs.clone();
        flush_within_limit("process log files", move || process_logs.finish()).await;
        let access = self.access_log.lock().unpoisoned().take();
        if let Some((_, writer)) = access {
            flush_within_limit("access log", move || writer.finish()).await;
        }
        for task in self.background.lock().unpoisoned().drain(..) {
            task.abort();
        }
    }

    /// Writes out every queued log line. Call it last, before the process exits.
    pub fn finish(&self) {
        let logging = self.logging.lock().unpoisoned().take();
        if let Some(logging) = logging {
            logging.finish();
        }
    }
}

fn status_line(active_release: Option<&str>) -> String {
    match active_release {
        Some(release) => format!("active release {release}"),
        None => "no active release".to_string(),
    }
}

/// Keeps `STATUS=` current: the release receiving traffic.
struct SystemdStatus {
    notifier: SystemdNotifier,
}

impl EventObserver for SystemdStatus {
    fn observe(&self, event: &Event) {
        if !self.notifier.is_enabled() {
            return;
        }
        if let Event::TrafficSwitched { release_id, .. } = event {
            self.notifier.status(&status_line(Some(release_id)));
        }
    }
}

/// How long shutdown waits for one log writer to write out its queue.
pub const LOG_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn flush_within_limit(what: &str, finish: impl FnOnce() + Send + 'static) {
    let flushed = tokio::time::timeout(LOG_FLUSH_LIMIT, tokio::task::spawn_blocking(finish)).await;
    if flushed.is_err() {
        tracing::warn!(
            "the {what} did not finish writing within {} s; exiting without the rest",
            LOG_FLUSH_LIMIT.as_secs()
        );
    }
}
