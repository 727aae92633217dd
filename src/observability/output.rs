//! Where log lines go: nowhere, a callback, or a non-blocking writer thread.

use std::io::Write;
use std::sync::Arc;
use tracing_appender::non_blocking::NonBlocking;

type LineFn = dyn Fn(&str) + Send + Sync;

/// A destination for whole log lines (given without their trailing newline).
/// Cloning shares the destination.
#[derive(Clone, Default)]
pub struct LineOutput {
    write: Option<Arc<LineFn>>,
}

impl std::fmt::Debug for LineOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineOutput")
            .field("enabled", &self.write.is_some())
            .finish()
    }
}

impl LineOutput {
    /// Lines are discarded.
    pub fn none() -> LineOutput {
        LineOutput::default()
    }

    /// Each line is handed to `callback` (a `None` discards them).
    pub fn from_callback(callback: Option<crate::events::LineWriter>) -> LineOutput {
        LineOutput {
            write: callback.map(Arc::from),
        }
    }

    /// Each line (plus a newline) is queued for the writer thread behind `writer`.
    /// Queuing never blocks: a full queue drops the line and counts it in the
    /// writer's error counter.
    pub fn non_blocking(writer: NonBlocking) -> LineOutput {
        LineOutput {
            write: Some(Arc::new(move |line: &str| {
                let mut buffer = Vec::with_capacity(line.len() + 1);
                buffer.extend_from_slice(line.as_bytes());
                buffer.push(b'\n');
                // One write call is one queued message, so a line is never split.
                let _ = writer.clone().write(&buffer);
            })),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.write.is_some()
    }

    pub fn write_line(&self, line: &str) {
        if let Some(write) = &self.write {
            write(line);
        }
    }
}
