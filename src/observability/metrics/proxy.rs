//! Request metrics per release, recorded on the proxy's hot path with atomics only.

use super::histogram::{self, Histogram, REQUEST_BUCKETS};
use super::snapshot::{Count, ReleaseRequests};
use super::text::{Kind, TextWriter};
use crate::proxy::{ConnectionCounters, ReleaseTarget};
use crate::util::sync::Unpoisoned;
use arc_swap::{ArcSwap, ArcSwapOption};
use http::StatusCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Releases whose series are kept; beyond this the oldest idle release's series
/// are dropped, so a long-lived daemon does not grow one set per deploy forever.
pub const MAX_RELEASE_SERIES: usize = 24;

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// One release's request counters.
#[derive(Debug)]
pub struct ReleaseStats {
    release_id: Arc<str>,
    by_class: [AtomicU64; 6],
    duration: Histogram,
    /// The release's drain counters: in-flight requests and open WebSockets are
    /// read from them, so the gauges and `status` never disagree.
    connections: ArcSwap<ConnectionCounters>,
}

impl ReleaseStats {
    fn new(release_id: &str, connections: Arc<ConnectionCounters>) -> ReleaseStats {
        ReleaseStats {
            release_id: Arc::from(release_id),
            by_class: Default::default(),
            duration: Histogram::new(REQUEST_BUCKETS),
            connections: ArcSwap::new(connections),
        }
    }

    pub fn release_id(&self) -> &Arc<str> {
        &self.release_id
    }

    /// Counts one finished request.
    pub fn record(&self, status: StatusCode, duration: Duration) {
        let class = match status.as_u16() {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        };
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(duration);
    }

    pub fn requests(&self, class: &str) -> u64 {
        CLASSES
            .iter()
            .position(|c| *c == class)
            .map_or(0, |i| self.by_class[i].load(Ordering::Relaxed))
    }
}

/// The target most requests go to, remembered so finding its stats is one atomic
/// load. Holding a `Weak` keeps the target's allocation (not the target) alive,
/// so no other target can appear at the same address while it is cached.
struct Cached {
    target: Weak<ReleaseTarget>,
    stats: Arc<ReleaseStats>,
}

/// Request metrics for one proxy.
#[derive(Default)]
pub struct ProxyMetrics {
    releases: Mutex<Vec<Arc<ReleaseStats>>>,
    last: ArcSwapOption<Cached>,
    /// Requests answered 503 because no release was active.
    unrouted: AtomicU64,
}

impl std::fmt::Debug for ProxyMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyMetrics").finish_non_exhaustive()
    }
}

impl ProxyMetrics {
    pub fn new() -> Arc<ProxyMetrics> {
        Arc::new(ProxyMetrics::default())
    }

    /// The stats of the release `target` serves.
    pub fn stats_for(&self, target: &Arc<ReleaseTarget>) -> Arc<ReleaseStats> {
        if let Some(cached) = &*self.last.load() {
            if std::ptr::eq(cached.target.as_ptr(), Arc::as_ptr(target)) {
                return cached.stats.clone();
            }
        }
        let stats = self.register(target.release_id(), target.counters());
        self.last.store(Some(Arc::new(Cached {
            target: Arc::downgrade(target),
            stats: stats.clone(),
        })));
        stats
    }

    /// Makes a release's series exist (with zero counts) before its first request,
    /// e.g. when it becomes active.
    pub fn register(
        &self,
        release_id: &str,
        connections: &Arc<ConnectionCounters>,
    ) -> Arc<ReleaseStats> {
        let mut releases = self.releases.lock().unpoisoned();
        if let Some(existing) = releases.iter().find(|s| &*s.release_id == release_id) {
            // A redeploy of the same id brings new drain counters.
            if !Arc::ptr_eq(&existing.connections.load(), connections) {
                existing.connections.store(connections.clone());
            }
            return existing.clone();
        }
        let stats = Arc::new(ReleaseStats::new(release_id, connections.clone()));
        releases.push(stats.clone());
        while releases.len() > MAX_RELEASE_SERIES {
            let idle = releases[..releases.len() - 1]
                .iter()
                .position(|s| s.connections.load().total() == 0);
            match idle {
                Some(index) => {
                    releases.remove(index);
                }
                None => break,
            }
        }
        stats
    }

    /// Request counts and durations so far, per release, for the next image of
    /// the daemon (live upgrade).
    pub(super) fn snapshot(&self) -> (Vec<ReleaseRequests>, u64) {
        let releases = self.releases.lock().unpoisoned().clone();
        let requests = releases
            .iter()
            .map(|stats| ReleaseRequests {
                release_id: stats.release_id.to_string(),
                by_class: CLASSES
                    .iter()
                    .zip(&stats.by_class)
                    .map(|(class, count)| Count::new([*class], count.load(Ordering::Relaxed)))
                    .collect(),
                duration: stats.duration.snapshot(),
            })
            .collect();
        (requests, self.unrouted())
    }

    /// Continues an earlier image's counts. `connections` gives each release's
    /// drain counters (the gauges read them).
    pub(super) fn continue_from(
        &self,
        requests: &[ReleaseRequests],
        unrouted: u64,
        connections: &dyn Fn(&str) -> Arc<ConnectionCounters>,
    ) {
        for earlier in requests {
            let stats = self.register(&earlier.release_id, &connections(&earlier.release_id));
            for count in &earlier.by_class {
                let class = count.labels.first().map(String::as_str);
                if let Some(index) = CLASSES.iter().position(|c| Some(*c) == class) {
                    stats.by_class[index].fetch_add(count.value, Ordering::Relaxed);
                }
            }
            stats.duration.add(&earlier.duration);
        }
        self.unrouted.fetch_add(unrouted, Ordering::Relaxed);
    }

    pub fn record_unrouted(&self) {
        self.unrouted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn unrouted(&self) -> u64 {
        self.unrouted.load(Ordering::Relaxed)
    }

    pub(super) fn write(&self, writer: &mut TextWriter) {
        let releases = self.releases.lock().unpoisoned().clone();

        writer.family(
            "rollbridge_http_requests_total",
            Kind::Counter,
            "Proxied HTTP requests by release and status class (101 for WebSocket handshakes).",
        );
        for stats in &releases {
            for (index, class) in CLASSES.iter().enumerate() {
                let count = stats.by_class[index].load(Ordering::Relaxed);
                writer.sample(
                    "rollbridge_http_requests_total",
                    &[("release", &stats.release_id), ("class", class)],
                    count as f64,
                );
            }
        }

        writer.family(
            "rollbridge_http_unrouted_requests_total",
            Kind::Counter,
            "Requests answered 503 because no release was active.",
        );
        writer.sample(
            "rollbridge_http_unrouted_requests_total",
            &[],
            self.unrouted() as f64,
        );

        histogram::declare(
            writer,
            "rollbridge_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response body.",
        );
        for stats in &releases {
            stats.duration.write(
                writer,
                "rollbridge_http_request_duration_seconds",
                &[("release", &stats.release_id)],
            );
        }

        writer.family(
            "rollbridge_http_in_flight_requests",
            Kind::Gauge,
            "HTTP requests in progress per release (the drain count).",
        );
        for stats in &releases {
            writer.sample(
                "rollbridge_http_in_flight_requests",
                &[("release", &stats.release_id)],
                stats.connections.load().http() as f64,
            );
        }

        writer.family(
            "rollbridge_websocket_connections",
            Kind::Gauge,
            "Open WebSocket (upgraded) connections per release.",
        );
        for stats in &releases {
            writer.sample(
                "rollbridge_websocket_connections",
                &[("release", &stats.release_id)],
                stats.connections.load().websocket() as f64,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str) -> Arc<ReleaseTarget> {
        ReleaseTarget::new(id.into(), "127.0.0.1", 9, ConnectionCounters::new())
    }

    #[test]
    fn stats_follow_the_target_and_survive_a_redeploy_of_the_same_id() {
        let metrics = ProxyMetrics::new();
        let v1 = target("v1");
        let first = metrics.stats_for(&v1);
        first.record(StatusCode::OK, Duration::from_millis(3));
        assert!(Arc::ptr_eq(&first, &metrics.stats_for(&v1)));
        let v2 = target("v2");
        metrics
            .stats_for(&v2)
            .record(StatusCode::BAD_GATEWAY, Duration::ZERO);
        let again = target("v1");
        let _busy = again.counters().try_track_http().unwrap();
        let same = metrics.stats_for(&again);
        assert!(Arc::ptr_eq(&first, &same));
        assert_eq!(same.requests("2xx"), 1);
        assert_eq!(same.connections.load().http(), 1);
        assert_eq!(metrics.stats_for(&v2).requests("5xx"), 1);
    }

    #[test]
    fn old_idle_releases_are_forgotten() {
        let metrics = ProxyMetrics::new();
        let busy = target("busy");
        let _guard = busy.counters().try_track_http().unwrap().into_websocket();
        metrics.stats_for(&busy);
        for i in 0..MAX_RELEASE_SERIES + 5 {
            metrics.stats_for(&target(&format!("r{i}")));
        }
        let releases = metrics.releases.lock().unwrap();
        assert_eq!(releases.len(), MAX_RELEASE_SERIES);
        assert_eq!(&*releases[0].release_id, "busy");
        assert_eq!(
            &*releases.last().unwrap().release_id,
            &format!("r{}", MAX_RELEASE_SERIES + 4)
        );
    }
}
