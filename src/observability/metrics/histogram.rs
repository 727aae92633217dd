//! A lock-free histogram: one atomic counter per bucket and an atomic sum.

use super::snapshot::HistogramSnapshot;
use super::text::{Kind, TextWriter, bound_label};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Request durations: from fast local answers to slow uploads, in seconds.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Hook calls: a signal is instant, a drain hook may take minutes.
pub const HOOK_BUCKETS: &[f64] = &[0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0];
/// Deploys: start, health check and switch.
pub const DEPLOY_BUCKETS: &[f64] = &[0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// Durations counted into fixed buckets. Bounds are kept in microseconds so an
/// observation is integer compares and two atomic adds.
#[derive(Debug)]
pub struct Histogram {
    bounds_seconds: &'static [f64],
    bounds_micros: Vec<u64>,
    /// Per bucket (not cumulative); the extra last slot is above every bound.
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds_seconds: &'static [f64]) -> Histogram {
        Histogram {
            bounds_seconds,
            bounds_micros: bounds_seconds
                .iter()
                .map(|s| (s * 1_000_000.0).round() as u64)
                .collect(),
            counts: (0..=bounds_seconds.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.counts[self.slot(micros)].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The bucket a duration of `micros` falls in (the last one: above every bound).
    fn slot(&self, micros: u64) -> usize {
        self.bounds_micros
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(self.bounds_micros.len())
    }

    /// The counts so far, for the next image of the daemon (live upgrade).
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds_seconds.to_vec(),
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }

    /// Adds an earlier image's counts. Each earlier bucket goes into the first
    /// bucket here whose bound is not below its own, so with other bounds every
    /// cumulative count stays a count of observations at or below its `le`.
    pub fn add(&self, earlier: &HistogramSnapshot) {
        for (index, count) in earlier.counts.iter().enumerate() {
            let micros = match earlier.bounds.get(index) {
                Some(bound) if bound.is_finite() => (bound * 1_000_000.0).round() as u64,
                _ => u64::MAX,
            };
            self.counts[self.slot(micros)].fetch_add(*count, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add(earlier.sum_micros, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes `<name>_bucket`, `<name>_sum` and `<name>_count` samples. The
    /// family itself must already be declared.
    pub fn write(&self, writer: &mut TextWriter, name: &str, labels: &[(&str, &str)]) {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (index, count) in counts.iter().enumerate() {
            cumulative += count;
            let bound = self
                .bounds_seconds
                .get(index)
                .copied()
                .unwrap_or(f64::INFINITY);
            let le = bound_label(bound);
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            writer.sample(&bucket, &with_le, cumulative as f64);
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0;
        writer.sample(&format!("{name}_sum"), labels, sum);
        writer.sample(&format!("{name}_count"), labels, cumulative as f64);
    }
}

/// Declares a histogram family.
pub fn declare(writer: &mut TextWriter, name: &str, help: &str) {
    writer.family(name, Kind::Histogram, help);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_end_with_inf() {
        let histogram = Histogram::new(&[0.01, 0.1]);
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_millis(10));
        histogram.observe(Duration::from_millis(50));
        histogram.observe(Duration::from_secs(3));
        let mut writer = TextWriter::new();
        declare(&mut writer, "d_seconds", "D.");
        histogram.write(&mut writer, "d_seconds", &[("release", "v1")]);
        let text = writer.finish();
        assert!(
            text.contains("d_seconds_bucket{release=\"v1\",le=\"0.01\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{release=\"v1\",le=\"0.1\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{release=\"v1\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_sum{release=\"v1\"} 3.065\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_count{release=\"v1\"} 4\n"),
            "{text}"
        );
        assert_eq!(histogram.count(), 4);
    }

    #[test]
    fn an_earlier_snapshot_is_added_bucket_by_bucket() {
        let earlier = Histogram::new(&[0.01, 0.1, 1.0]);
        for millis in [5, 50, 500, 5000] {
            earlier.observe(Duration::from_millis(millis));
        }
        let same = Histogram::new(&[0.01, 0.1, 1.0]);
        same.observe(Duration::from_millis(1));
        same.add(&earlier.snapshot());
        assert_eq!(same.snapshot().counts, [2, 1, 1, 1]);
        assert_eq!(same.snapshot().sum_micros, 5_556_000);
        // Other bounds: each earlier bucket lands at or above its own bound.
        let coarser = Histogram::new(&[0.1, 2.0]);
        coarser.add(&earlier.snapshot());
        assert_eq!(coarser.snapshot().counts, [2, 1, 1]);
        assert_eq!(coarser.count(), 4);
    }
}
