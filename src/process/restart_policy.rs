//! Crash auto-restart arithmetic, kept pure so it can be tested exactly.
//!
//! The budget follows the reference: a record of recent automatic restarts, pruned
//! only by `windowMs`. Neither a manual `restart` nor a long healthy run clears it
//! (see docs/processes.md for why we keep that).

use crate::config::model::RestartPolicy;
use std::time::Duration;

/// The longest delay we ever wait before a restart (about 24.8 days, the largest
/// timer the reference could express). Beyond that a backoff has stopped meaning
/// anything, and it keeps the arithmetic finite.
pub const MAX_RESTART_DELAY_MS: f64 = 2_147_483_647.0;

/// `restartDelayMs × backoffFactor^n`, capped by `maxDelayMs` when that is set.
pub fn delay_for(restart_delay_ms: u64, policy: &RestartPolicy, n: usize) -> f64 {
    let exponent = i32::try_from(n).unwrap_or(i32::MAX);
    let mut delay = restart_delay_ms as f64 * policy.backoff_factor.powi(exponent);
    if policy.max_delay_ms > 0 {
        delay = delay.min(policy.max_delay_ms as f64);
    }
    if delay.is_nan() {
        return 0.0;
    }
    delay.clamp(0.0, MAX_RESTART_DELAY_MS)
}

/// What to do after an unexpected exit.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartDecision {
    /// Restart after this many milliseconds.
    After(f64),
    /// The budget is used up: emit `restart limit reached` and leave it failed.
    LimitReached,
}

impl RestartDecision {
    pub fn delay(&self) -> Option<Duration> {
        match self {
            RestartDecision::After(ms) => Some(Duration::from_secs_f64(ms / 1000.0)),
            RestartDecision::LimitReached => None,
        }
    }
}

/// Times (in ms on a monotonic clock) of the automatic restarts still inside the
/// window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestartHistory {
    recent: Vec<u64>,
}

impl RestartHistory {
    /// A history carried over from an earlier daemon image (live upgrade), on
    /// the same clock.
    pub fn from_recent(recent: Vec<u64>) -> RestartHistory {
        RestartHistory { recent }
    }

    /// The restart times kept, oldest first.
    pub fn recent(&self) -> &[u64] {
        &self.recent
    }

    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// Decides the next step after a crash at `now_ms` and records the restart when
    /// one is scheduled.
    pub fn on_unexpected_exit(
        &mut self,
        restart_delay_ms: u64,
        policy: &RestartPolicy,
        now_ms: u64,
    ) -> RestartDecision {
        // Unlimited restarts at a constant delay need no bookkeeping at all.
        if policy.max_restarts.is_none() && policy.backoff_factor == 1.0 {
            return RestartDecision::After(delay_for(restart_delay_ms, policy, 0));
        }
        if policy.window_ms > 0 {
            let oldest_kept = now_ms.saturating_sub(policy.window_ms);
            self.recent.retain(|&at| at > oldest_kept);
        }
        if let Some(max) = policy.max_restarts
            && self.recent.len() >= max as usize
        {
            return RestartDecision::LimitReached;
        }
        let delay = delay_for(restart_delay_ms, policy, self.recent.len());
        self.recent.push(now_ms);
        RestartDecision::After(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: Option<u32>, window: u64, factor: f64, cap: u64) -> RestartPolicy {
        RestartPolicy {
            max_restarts: max,
            window_ms: window,
            backoff_factor: factor,
            max_delay_ms: cap,
        }
    }

    #[test]
    fn exponential_backoff_is_capped() {
        let p = policy(None, 0, 2.0, 500);
        let delays: Vec<f64> = (0..8).map(|n| delay_for(10, &p, n)).collect();
        assert_eq!(
            delays,
            vec![10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 500.0, 500.0]
        );
        assert_eq!(delay_for(10, &policy(None, 0, 3.0, 0), 2), 90.0);
    }

    #[test]
    fn fast_path_still_applies_the_cap() {
        let mut history = RestartHistory::default();
        let p = policy(None, 0, 1.0, 5);
        assert_eq!(
            history.on_unexpected_exit(10, &p, 0),
            RestartDecision::After(5.0)
        );
        assert!(history.is_empty(), "the fast path keeps no record");
    }

    #[test]
    fn huge_exponents_stay_finite() {
        let p = policy(None, 0, 10.0, 0);
        assert_eq!(delay_for(1000, &p, 10_000), MAX_RESTART_DELAY_MS);
        assert_eq!(delay_for(1000, &p, usize::MAX), MAX_RESTART_DELAY_MS);
    }

    #[test]
    fn zero_max_restarts_never_restarts() {
        let mut history = RestartHistory::default();
        let p = policy(Some(0), 60_000, 1.0, 0);
        assert_eq!(
            history.on_unexpected_exit(10, &p, 1),
            RestartDecision::LimitReached
        );
    }

    #[test]
    fn budget_counts_restarts_inside_the_window() {
        let mut history = RestartHistory::default();
        let p = policy(Some(2), 1_000, 2.0, 0);
        assert_eq!(
            history.on_unexpected_exit(10, &p, 100),
            RestartDecision::After(10.0)
        );
        assert_eq!(
            history.on_unexpected_exit(10, &p, 200),
            RestartDecision::After(20.0)
        );
        assert_eq!(
            history.on_unexpected_exit(10, &p, 300),
            RestartDecision::LimitReached
        );
        // At 1100 the restart at 100 has left the window (strictly older than
        // now - window), the one at 200 has not.
        assert_eq!(
            history.on_unexpected_exit(10, &p, 1_100),
            RestartDecision::After(20.0)
        );
        assert_eq!(history.len(), 2);
        assert_eq!(
            history.on_unexpected_exit(10, &p, 1_150),
            RestartDecision::LimitReached
        );
    }

    #[test]
    fn zero_window_covers_the_whole_lifetime() {
        let mut history = RestartHistory::default();
        let p = policy(Some(1), 0, 1.0, 0);
        assert_eq!(
            history.on_unexpected_exit(10, &p, 0),
            RestartDecision::After(10.0)
        );
        assert_eq!(
            history.on_unexpected_exit(10, &p, 10_000_000),
            RestartDecision::LimitReached
        );
    }

    #[test]
    fn decision_converts_to_a_duration() {
        assert_eq!(
            RestartDecision::After(15.5).delay(),
            Some(Duration::from_micros(15_500))
        );
        assert_eq!(RestartDecision::LimitReached.delay(), None);
    }
}
