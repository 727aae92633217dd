//! What the proxy records per request when metrics or the access log are on.
//!
//! The proxy calls [`ProxyObserver::begin`] when a request arrives, tells the
//! observation which release it went to and which status it answered, and drops
//! it when the response body is finished (or abandoned). The drop records the
//! request: atomics for metrics, a non-blocking queue for the access log.

use super::access_log::{AccessLog, AccessRecord};
use super::metrics::{ProxyMetrics, ReleaseStats};
use crate::proxy::ReleaseTarget;
use http::header::{REFERER, USER_AGENT};
use http::{HeaderValue, Request, StatusCode};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The proxy's optional per-request recording.
#[derive(Debug, Default)]
pub struct ProxyObserver {
    metrics: Option<Arc<ProxyMetrics>>,
    access_log: Option<AccessLog>,
}

impl ProxyObserver {
    pub fn new(metrics: Option<Arc<ProxyMetrics>>, access_log: Option<AccessLog>) -> ProxyObserver {
        ProxyObserver {
            metrics,
            access_log,
        }
    }

    /// True when there is nothing to record (the proxy can skip observing).
    pub fn is_empty(&self) -> bool {
        self.metrics.is_none() && self.access_log.is_none()
    }

    /// Starts observing a request that just arrived from `client`.
    pub fn begin<B>(
        self: &Arc<Self>,
        request: &Request<B>,
        client: &HeaderValue,
    ) -> RequestObservation {
        let access = self.access_log.as_ref().map(|log| {
            let headers = request.headers();
            let mut record = log.blank_record();
            record.at = SystemTime::now();
            record.client = client.clone();
            record.method = request.method().clone();
            copy_target(&mut record.target, request.uri());
            record.version = request.version();
            copy_value(&mut record.referer, headers.get(REFERER));
            copy_value(&mut record.user_agent, headers.get(USER_AGENT));
            record.release = None;
            record
        });
        RequestObservation {
            observer: self.clone(),
            started: Instant::now(),
            stats: None,
            status: StatusCode::OK,
            bytes: 0,
            access,
        }
    }
}

/// One request being observed; recorded when dropped.
#[derive(Debug)]
pub struct RequestObservation {
    observer: Arc<ProxyObserver>,
    started: Instant,
    stats: Option<Arc<ReleaseStats>>,
    status: StatusCode,
    bytes: u64,
    access: Option<Box<AccessRecord>>,
}

impl RequestObservation {
    /// The request was routed to `target`.
    pub fn routed(&mut self, target: &Arc<ReleaseTarget>) {
        if let Some(metrics) = &self.observer.metrics {
            self.stats = Some(metrics.stats_for(target));
        }
        if let Some(access) = &mut self.access {
            access.release = Some(match &self.stats {
                Some(stats) => stats.release_id().clone(),
                None => Arc::from(target.release_id()),
            });
        }
    }

    pub fn responded(&mut self, status: StatusCode) {
        self.status = status;
    }

    /// Body bytes sent to the client.
    pub fn add_bytes(&mut self, bytes: u64) {
        self.bytes += bytes;
    }
}

impl Drop for RequestObservation {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        match &self.stats {
            Some(stats) => stats.record(self.status, duration),
            None => {
                if let Some(metrics) = &self.observer.metrics {
                    metrics.record_unrouted();
                }
            }
        }
        if let (Some(mut access), Some(log)) = (self.access.take(), &self.observer.access_log) {
            access.status = self.status.as_u16();
            access.bytes = self.bytes;
            access.duration = duration;
            log.record(access);
        }
    }
}

/// The request target as the client sent it, into `into` (reusing its capacity);
/// origin-form (the usual case) is copied without going through `Display`.
fn copy_target(into: &mut String, uri: &http::Uri) {
    into.clear();
    match (uri.scheme(), uri.authority(), uri.path_and_query()) {
        (None, None, Some(path)) => into.push_str(path.as_str()),
        _ => {
            use std::fmt::Write;
            let _ = write!(into, "{uri}");
        }
    }
}

/// A header value copied into `into` (see [`AccessRecord`] for why a copy).
fn copy_value(into: &mut Option<Vec<u8>>, value: Option<&HeaderValue>) {
    match value {
        None => *into = None,
        Some(value) => {
            let mut bytes = into.take().unwrap_or_default();
            bytes.clear();
            bytes.extend_from_slice(value.as_bytes());
            *into = Some(bytes);
        }
    }
}
