//! One release as seen by the proxy: its id, its drain counters and its upstream pool.

use super::counters::ConnectionCounters;
use super::pool::UpstreamPool;
use super::stats::TrafficStats;
use std::sync::Arc;

/// Where the proxy sends requests for one release.
#[derive(Debug)]
pub struct ReleaseTarget {
    release_id: String,
    counters: Arc<ConnectionCounters>,
    pool: UpstreamPool,
    stats: TrafficStats,
}

impl ReleaseTarget {
    /// `upstream_host` may be an IPv4 address, an IPv6 address (with or without
    /// brackets, e.g. `::1`) or a host name resolved on each new upstream connection.
    pub fn new(
        release_id: String,
        upstream_host: &str,
        port: u16,
        counters: Arc<ConnectionCounters>,
    ) -> Arc<ReleaseTarget> {
        Arc::new(ReleaseTarget {
            release_id,
            counters,
            pool: UpstreamPool::new(upstream_host, port),
            stats: TrafficStats::default(),
        })
    }

    pub fn release_id(&self) -> &str {
        &self.release_id
    }

    pub fn counters(&self) -> &Arc<ConnectionCounters> {
        &self.counters
    }

    /// Responses, server errors and latency of this release (for rollouts).
    pub fn stats(&self) -> &TrafficStats {
        &self.stats
    }

    /// `host:port` of the upstream (`[v6]:port` for IPv6), as used in error messages.
    pub fn upstream_authority(&self) -> &str {
        self.pool.authority()
    }

    /// Number of idle keep-alive connections currently pooled for this release.
    pub fn idle_upstream_connections(&self) -> usize {
        self.pool.idle_count()
    }

    /// The release no longer receives traffic: idle pooled upstream connections are
    /// closed now, and connections freed later by in-flight requests are closed
    /// instead of pooled. Requests that still reach this target open fresh connections.
    pub fn retire(&self) {
        self.pool.retire();
    }

    pub(crate) fn pool(&self) -> &UpstreamPool {
        &self.pool
    }
}
