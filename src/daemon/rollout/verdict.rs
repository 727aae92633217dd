//! The rollout thresholds applied to one window of a release's responses.

use crate::config::model::RolloutConfig;
use crate::proxy::StatsSnapshot;

/// Why the window fails the rollout, naming the threshold and the measured
/// value, or `None` when it passes (so far).
pub fn judge(window: &StatsSnapshot, rules: &RolloutConfig) -> Option<String> {
    if window.responses < rules.min_requests.max(1) {
        return None;
    }
    let rate = window.error_rate();
    if rate > rules.max_error_rate {
        return Some(format!(
            "5xx rate {rate:.2} > {} over {} requests",
            rules.max_error_rate, window.responses
        ));
    }
    if let (Some(bound), Some(p99)) = (rules.max_p99_ms, window.percentile_ms(0.99)) {
        if p99 > bound {
            return Some(format!(
                "p99 {p99} ms > {bound} ms over {} requests",
                window.responses
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::TrafficStats;
    use http::StatusCode;
    use std::time::Duration;

    fn window(ok: u64, failed: u64, latency_ms: u64) -> StatsSnapshot {
        let stats = TrafficStats::default();
        for n in 0..ok + failed {
            let status = if n < failed {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::OK
            };
            stats.record(status, Duration::from_millis(latency_ms));
        }
        stats.snapshot()
    }

    #[test]
    fn thresholds_name_the_measured_value() {
        let rules = RolloutConfig::default();
        assert_eq!(judge(&window(10, 9, 1), &rules), None, "below minRequests");
        assert_eq!(
            judge(&window(146, 66, 1), &rules).unwrap(),
            "5xx rate 0.31 > 0.05 over 212 requests"
        );
        assert_eq!(judge(&window(99, 1, 1), &rules), None);
        let slow = RolloutConfig {
            max_p99_ms: Some(250),
            ..RolloutConfig::default()
        };
        assert_eq!(
            judge(&window(40, 0, 700), &slow).unwrap(),
            "p99 1000 ms > 250 ms over 40 requests"
        );
    }
}
