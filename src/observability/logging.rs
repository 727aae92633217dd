//! The daemon's logging pipeline: one tracing dispatcher whose event layer writes
//! event lines (and fills the event ring) and whose diagnostic layer writes the
//! filtered extra lines, both into one non-blocking output: stdout, or a log file
//! with rotation, retention and reopen-on-SIGHUP.
//!
//! Nothing here can stall the caller: lines are queued for a writer thread, a full
//! queue drops the line, and a failed write is skipped. Both are counted and shown
//! as `droppedLines`.

use super::diagnostics::{DiagnosticLayer, InvalidLogLevel, diagnostics_filter};
use super::events_layer::{EventLayer, EventObserver, EventObservers, only_events};
use super::log_file::{CountingWriter, LogFile, LogFileError, LogFileWriter, Rotation};
use super::metrics::{HookCallLayer, Metrics};
use super::output::LineOutput;
use crate::events::{EVENT_RING_CAPACITY, EventRing, EventSink, ListenerGuard};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Dispatch;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

/// How many lines may wait for the writer thread before new ones are dropped.
pub const LOG_QUEUE_LINES: usize = 16_384;

/// The daemon's `--log-*` options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoggingOptions {
    /// `--log-file`: write here instead of stdout.
    pub file: Option<PathBuf>,
    /// `--log-rotation` (only with a file).
    pub rotation: Rotation,
    /// `--log-keep`: rolled-over files to keep; `None` keeps all.
    pub keep: Option<usize>,
    /// `--log-level`: the diagnostics filter; `None` uses `RUST_LOG`, then `warn`.
    pub level: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error(transparent)]
    File(#[from] LogFileError),
    #[error(transparent)]
    Level(#[from] InvalidLogLevel),
    #[error(
        "--log-rotation and --log-keep need --log-file: without a file the daemon logs to stdout, which is never rotated"
    )]
    RotationWithoutFile,
}

/// Counts lines the pipeline lost. Cloning shares the counts.
#[derive(Debug, Clone)]
pub struct LoggingStats {
    queue_full: Option<ErrorCounter>,
    write_failed: Arc<AtomicU64>,
    file: Option<LogFile>,
}

impl LoggingStats {
    /// Lines dropped because the queue was full or writing them failed.
    pub fn dropped_lines(&self) -> u64 {
        let queued = self.queue_full.as_ref().map_or(0, |c| c.dropped_lines()) as u64;
        queued
            + self.write_failed.load(Ordering::Relaxed)
            + self.file.as_ref().map_or(0, LogFile::failed_lines)
    }
}

/// The running pipeline. Dropping it flushes the queued lines (waiting at most
/// about a second), so drop it before the process exits.
pub struct Logging {
    events: EventSink,
    dispatch: Dispatch,
    observers: Arc<EventObservers>,
    /// Keeps `observers` listening to `events`.
    _observing: ListenerGuard,
    hook_calls: HookCallLayer,
    stats: LoggingStats,
    file: Option<LogFile>,
    guard: Option<WorkerGuard>,
}

impl std::fmt::Debug for Logging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logging")
            .field("file", &self.file.as_ref().map(LogFile::path))
            .finish_non_exhaustive()
    }
}

impl Logging {
    /// Opens the output and builds the dispatcher. It is not yet the process-wide
    /// default; see [`Logging::install_global`].
    pub fn start(options: &LoggingOptions) -> Result<Logging, LoggingError> {
        if options.file.is_none() && (options.rotation != Rotation::Never || options.keep.is_some())
        {
            return Err(LoggingError::RotationWithoutFile);
        }
        let diagnostics = diagnostics_filter(options.level.as_deref())?;
        let write_failed = Arc::new(AtomicU64::new(0));
        let builder = NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(LOG_QUEUE_LINES)
            .thread_name("rollbridge-log");
        let (file, (writer, guard)) = match &options.file {
            Some(path) => {
                let file = LogFile::open(path, options.rotation, options.keep)?;
                let writer = builder.finish(LogFileWriter::new(file.clone()));
                (Some(file), writer)
            }
            None => (
                None,
                builder.finish(CountingWriter::new(std::io::stdout(), write_failed.clone())),
            ),
        };
        let stats = LoggingStats {
            queue_full: Some(writer.error_counter()),
            write_failed,
            file: file.clone(),
        };
        let output = LineOutput::non_blocking(writer);
        let ring = EventRing::new(EVENT_RING_CAPACITY);
        let event_layer = EventLayer::new(ring.clone(), output.clone());
        let hook_calls = HookCallLayer::new();
        let subscriber = tracing_subscriber::registry()
            .with(event_layer.with_filter(only_events()))
            .with(hook_calls.clone().with_filter(HookCallLayer::filter()))
            .with(DiagnosticLayer::new(output).with_filter(diagnostics));
        let dispatch = Dispatch::new(subscriber);
        let events = super::events_layer::traced_sink(ring, dispatch.clone());
        let observers = Arc::new(EventObservers::default());
        Ok(Logging {
            _observing: observers.watch(&events),
            events,
            dispatch,
            observers,
            hook_calls,
            stats,
            file,
            guard: Some(guard),
        })
    }

    /// The daemon's event sink: its events become lines in this pipeline.
    pub fn events(&self) -> EventSink {
        self.events.clone()
    }

    /// Makes this pipeline the process-wide tracing default, so diagnostics from
    /// any module (`tracing::debug!`) reach it. Returns false when another
    /// default was installed first.
    pub fn install_global(&self) -> bool {
        tracing::dispatcher::set_global_default(self.dispatch.clone()).is_ok()
    }

    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// Adds an observer of every recorded event (the metrics registry).
    pub fn observe_events(&self, observer: Arc<dyn EventObserver>) {
        self.observers.add(observer);
    }

    /// Feeds `metrics`: deploys and restarts from the events, hook calls from
    /// the hook reports, and this pipeline's dropped lines.
    pub fn attach_metrics(&self, metrics: &Arc<Metrics>) {
        self.observe_events(metrics.clone());
        self.hook_calls.attach(metrics.clone());
        let stats = self.stats.clone();
        metrics.add_dropped_lines_source("daemon", Arc::new(move || stats.dropped_lines()));
    }

    pub fn stats(&self) -> LoggingStats {
        self.stats.clone()
    }

    /// A handle that reopens the log file (for the SIGHUP handler); `None` when
    /// logging to stdout.
    pub fn reopener(&self) -> Option<LogFile> {
        self.file.clone()
    }

    /// Writes out every queued line, then stops the writer thread.
    pub fn finish(mut self) {
        drop(self.guard.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_needs_a_file() {
        let options = LoggingOptions {
            rotation: Rotation::Daily,
            ..LoggingOptions::default()
        };
        let error = Logging::start(&options).unwrap_err().to_string();
        assert!(error.contains("need --log-file"), "{error}");
    }

    #[test]
    fn events_and_diagnostics_reach_the_file_and_the_ring() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let logging = Logging::start(&LoggingOptions {
            file: Some(path.clone()),
            level: Some("debug".into()),
            ..LoggingOptions::default()
        })
        .unwrap();
        let events = logging.events();
        events.emit(crate::events::Event::ProxyListening {
            host: "127.0.0.1".into(),
            port: 1,
        });
        tracing::dispatcher::with_default(logging.dispatch(), || {
            tracing::debug!(target: "rollbridge::test", "a diagnostic");
        });
        let stats = logging.stats();
        logging.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            lines[0],
            serde_json::to_string(&events.recent(None)[0]).unwrap()
        );
        assert!(lines[1].contains(r#""level":"debug""#), "{}", lines[1]);
        assert_eq!(stats.dropped_lines(), 0);
    }
}
