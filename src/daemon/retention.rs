//! Release retention: which stopped releases to forget.

use crate::config::model::ReleaseRetention;

/// What retention needs to know about one retained release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionEntry {
    pub release_id: String,
    /// Only stopped releases are ever pruned.
    pub stopped: bool,
    /// `stoppedAt` in ms since the epoch; 0 when unknown.
    pub stopped_at_ms: i64,
}

/// The ids of the releases to prune. `entries` are in the releases' map order
/// (first insertion), which breaks ties between equal stop times: the release
/// deployed later is kept.
pub fn releases_to_prune(
    entries: &[RetentionEntry],
    retention: &ReleaseRetention,
    now_ms: i64,
) -> Vec<String> {
    let mut stopped: Vec<(usize, &RetentionEntry)> = entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.stopped)
        .collect();
    stopped.sort_by(|(order_a, a), (order_b, b)| {
        b.stopped_at_ms
            .cmp(&a.stopped_at_ms)
            .then(order_b.cmp(order_a))
    });
    let max_age = retention.max_age_ms as i64;
    stopped
        .iter()
        .enumerate()
        .filter(|(rank, (_, entry))| {
            let beyond_keep = *rank as u64 >= retention.keep;
            let too_old =
                max_age > 0 && entry.stopped_at_ms > 0 && now_ms - entry.stopped_at_ms > max_age;
            beyond_keep || too_old
        })
        .map(|(_, (_, entry))| entry.release_id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, stopped: bool, at: i64) -> RetentionEntry {
        RetentionEntry {
            release_id: id.into(),
            stopped,
            stopped_at_ms: at,
        }
    }

    fn sorted(mut ids: Vec<String>) -> Vec<String> {
        ids.sort();
        ids
    }

    #[test]
    fn keeps_the_most_recent_stopped_and_never_live_ones() {
        let entries = [
            entry("v1", true, 1000),
            entry("v2", true, 2000),
            entry("v3", true, 3000),
            entry("draining", false, 0),
            entry("active", false, 0),
        ];
        let retention = ReleaseRetention {
            keep: 1,
            max_age_ms: 0,
        };
        assert_eq!(
            sorted(releases_to_prune(&entries, &retention, 5000)),
            ["v1", "v2"]
        );
    }

    #[test]
    fn ties_prune_the_earlier_deployed_release() {
        let entries = [entry("v1", true, 1000), entry("v2", true, 1000)];
        let retention = ReleaseRetention {
            keep: 1,
            max_age_ms: 0,
        };
        assert_eq!(releases_to_prune(&entries, &retention, 5000), ["v1"]);
    }

    #[test]
    fn prunes_by_age() {
        let now = 100_000;
        let entries = [
            entry("old", true, now - 60_000),
            entry("fresh", true, now - 1_000),
            entry("unknown-time", true, 0),
        ];
        let retention = ReleaseRetention {
            keep: 100,
            max_age_ms: 30_000,
        };
        assert_eq!(releases_to_prune(&entries, &retention, now), ["old"]);
    }

    #[test]
    fn keep_zero_prunes_every_stopped_release() {
        let entries = [entry("a", true, 1), entry("b", false, 0)];
        let retention = ReleaseRetention {
            keep: 0,
            max_age_ms: 0,
        };
        assert_eq!(releases_to_prune(&entries, &retention, 10), ["a"]);
    }
}
