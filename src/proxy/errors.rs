//! Upstream failures, their event messages, and the rate limit on `proxy error` events.

use crate::events::{Event, EventSink};
use crate::util::sync::Unpoisoned;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// After a `proxy error` event, further errors within this window are only counted;
/// the count goes into the next event as `suppressed`.
pub const ERROR_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Why a request could not be completed with the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{}", connect_message(authority, source))]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("connect ETIMEDOUT {authority} (no answer within the upstream connect timeout)")]
    ConnectTimeout { authority: String },
    #[error("cannot resolve upstream host {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("upstream {authority}: {}", error_chain(source))]
    Exchange {
        authority: String,
        source: hyper::Error,
    },
    /// A failure of the direct exchange (`relay.rs`).
    #[error("upstream {authority}: {detail}")]
    Relay { authority: String, detail: String },
}

impl UpstreamError {
    /// True when the failure came from the client side (its request body broke off),
    /// which is the client going away rather than a problem with the release.
    pub fn caused_by_client(&self) -> bool {
        matches!(self, UpstreamError::Exchange { source, .. } if source.is_user())
    }
}

/// `connect ECONNREFUSED 127.0.0.1:4000`: the shape operators know from the old tool.
fn connect_message(authority: &str, source: &std::io::Error) -> String {
    match crate::util::errno::errno_code(source) {
        Some(code) => format!("connect {code} {authority}"),
        None => format!("connect {authority}: {source}"),
    }
}

/// The error and its causes on one line (`a: b: c`).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[derive(Debug, Default)]
struct Burst {
    last_event: Option<Instant>,
    suppressed: u64,
}

/// Emits `proxy error` events, at most one per [`ERROR_REPORT_INTERVAL`], so an
/// outage cannot push the deploy history out of the event ring.
pub(crate) struct ErrorReporter {
    events: EventSink,
    burst: Mutex<Burst>,
}

impl fmt::Debug for ErrorReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorReporter").finish_non_exhaustive()
    }
}

impl ErrorReporter {
    pub(crate) fn new(events: EventSink) -> ErrorReporter {
        ErrorReporter {
            events,
            burst: Mutex::new(Burst::default()),
        }
    }

    pub(crate) fn report(&self, error: &dyn fmt::Display) {
        let now = Instant::now();
        let suppressed = {
            let mut burst = self.burst.lock().unpoisoned();
            if let Some(last) = burst.last_event {
                if now.duration_since(last) < ERROR_REPORT_INTERVAL {
                    burst.suppressed += 1;
                    return;
                }
            }
            burst.last_event = Some(now);
            std::mem::take(&mut burst.suppressed)
        };
        self.events.emit(Event::ProxyError {
            error: error.to_string(),
            suppressed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connect_reads_like_the_old_tool() {
        let error = UpstreamError::Connect {
            authority: "127.0.0.1:18571".into(),
            source: std::io::Error::from_raw_os_error(libc::ECONNREFUSED),
        };
        assert_eq!(error.to_string(), "connect ECONNREFUSED 127.0.0.1:18571");
    }

    #[test]
    fn burst_is_reported_once_then_counted() {
        let sink = EventSink::silent();
        let reporter = ErrorReporter::new(sink.clone());
        for _ in 0..50 {
            reporter.report(&"boom");
        }
        let events = sink.recent(None);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].message, "proxy error");
        assert_eq!(events[0].data["error"], "boom");
        assert!(events[0].data.get("suppressed").is_none());

        // Pretend the window has passed: the next event carries the count.
        reporter.burst.lock().unwrap().last_event =
            Some(Instant::now() - ERROR_REPORT_INTERVAL - Duration::from_millis(1));
        reporter.report(&"again");
        let events = sink.recent(None);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].data["error"], "again");
        assert_eq!(events[1].data["suppressed"], 49);
    }
}
