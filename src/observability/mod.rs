//! Making a running daemon observable: logging, systemd integration and metrics.
//!
//! - `events_layer`: the tracing layer that writes daemon event lines and fills the
//!   event ring (the only writer of both);
//! - `diagnostics`: the extra lines `--log-level` / `RUST_LOG` select;
//! - `log_file`, `output`, `logging`: the non-blocking output (stdout or a file with
//!   rotation, retention and reopen on SIGHUP) and the pipeline that ties it up;
//! - `process_logs`: managed processes' output files (`processes[].logFile`),
//!   shared per path and written by one thread, with the same rotation;
//! - `systemd`, `activation`: `sd_notify` readiness/status/watchdog and socket
//!   activation;
//! - `metrics`: the registry (lock-free on the proxy's path), its Prometheus text
//!   and the optional `/metrics` listener;
//! - `access_log`, `access_format`, `request_observer`: what the proxy records per
//!   request and how a line is written;
//! - `daemon`: the daemon's handle on all of the above, called at a few moments of
//!   its life (start, configure, ready, reload, stopping, close).

mod access_format;
mod access_log;
mod activation;
mod daemon;
mod diagnostics;
mod events_layer;
mod log_file;
mod logging;
pub mod metrics;
mod output;
mod process_logs;
mod request_observer;
mod systemd;

pub use access_format::LineFormatter;
pub use access_log::{
    ACCESS_LOG_QUEUE, AccessLog, AccessLogFormat, AccessLogStats, AccessLogWriter, AccessRecord,
};
pub use activation::{ActivatedSockets, ActivationError};
pub use daemon::{ConfigureError, DaemonObservability, SystemdHandoff};
pub use diagnostics::{DEFAULT_LOG_LEVEL, DiagnosticLayer, InvalidLogLevel, parse_level};
pub use events_layer::{
    EVENT_TARGET, EventLayer, EventObserver, EventObservers, emit_event, event_dispatch,
    only_events, traced_sink,
};
pub use log_file::{LogFile, LogFileError, Rotation, rolled_files};
pub use logging::{LOG_QUEUE_LINES, Logging, LoggingError, LoggingOptions, LoggingStats};
pub use metrics::CounterSnapshot;
pub use output::LineOutput;
pub use process_logs::{
    OpenFailure, PROCESS_LOG_QUEUE_BYTES, ProcessLog, ProcessLogFiles, ProcessLogTarget,
};
pub use request_observer::{ProxyObserver, RequestObservation};
pub use systemd::{SYSTEMD_ENV, SystemdNotifier, clear_systemd_env};
