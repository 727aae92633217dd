//! Per-release response statistics for the rollout watch: how many responses a
//! release gave, how many were server errors (5xx, the proxy's own 502/504 for
//! that release included), and a latency histogram. All atomics, written once
//! per request with relaxed adds; the daemon reads [`TrafficStats::snapshot`]
//! about once a second and subtracts an earlier snapshot to get a window.

use http::StatusCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (ms) of the latency buckets; the last bucket holds the rest.
/// Percentiles are reported as the upper bound of the bucket they fall in.
pub const LATENCY_BOUNDS_MS: [u64; 15] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];
const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Counters of one release since it started receiving traffic.
#[derive(Debug, Default)]
pub struct TrafficStats {
    responses: AtomicU64,
    server_errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl TrafficStats {
    /// Counts one response with its status and the time to its head.
    pub fn record(&self, status: StatusCode, elapsed: Duration) {
        self.responses.fetch_add(1, Ordering::Relaxed);
        if status.is_server_error() {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        let ms = elapsed.as_millis() as u64;
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|bound| ms < *bound)
            .unwrap_or(BUCKETS - 1);
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            responses: self.responses.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
            latency: std::array::from_fn(|i| self.latency[i].load(Ordering::Relaxed)),
        }
    }
}

/// The counters at one moment, or the difference of two moments (a window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub responses: u64,
    pub server_errors: u64,
    latency: [u64; BUCKETS],
}

impl StatsSnapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            responses: self.responses.saturating_sub(earlier.responses),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            latency: std::array::from_fn(|i| self.latency[i].saturating_sub(earlier.latency[i])),
        }
    }

    /// Server errors per response (0 without responses).
    pub fn error_rate(&self) -> f64 {
        if self.responses == 0 {
            0.0
        } else {
            self.server_errors as f64 / self.responses as f64
        }
    }

    /// The latency below which `quantile` (0–1) of the responses fell, as the
    /// upper bound of its bucket in ms; `None` without responses. Responses slower
    /// than the last bound report twice that bound.
    pub fn percentile_ms(&self, quantile: f64) -> Option<u64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.latency.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(
                    LATENCY_BOUNDS_MS
                        .get(index)
                        .copied()
                        .unwrap_or(LATENCY_BOUNDS_MS[BUCKETS - 2] * 2),
                );
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_errors_and_latency_percentiles() {
        let stats = TrafficStats::default();
        stats.record(StatusCode::OK, Duration::from_millis(3));
        let before = stats.snapshot();
        for _ in 0..98 {
            stats.record(StatusCode::OK, Duration::from_millis(3));
        }
        stats.record(StatusCode::BAD_GATEWAY, Duration::from_millis(700));
        stats.record(StatusCode::NOT_FOUND, Duration::from_millis(700));
        let window = stats.snapshot().since(&before);
        assert_eq!((window.responses, window.server_errors), (100, 1));
        assert!((window.error_rate() - 0.01).abs() < 1e-9);
        assert_eq!(window.percentile_ms(0.5), Some(5));
        assert_eq!(window.percentile_ms(0.99), Some(1_000));
        assert_eq!(StatsSnapshot::default().percentile_ms(0.99), None);
    }
}
