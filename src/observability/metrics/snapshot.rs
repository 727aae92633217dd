//! The counts a live upgrade carries to the next image of the daemon
//! (docs/upgrade.md): every counter and histogram of `/metrics` — requests and
//! their durations per release, unrouted requests, deploys, process restarts,
//! hook calls, `/proc` passes — and the dropped log lines behind
//! `status.logging`. The next image adds them to its own before it serves, so a
//! counter never goes back. Gauges are not carried: they are read from live
//! state.
//!
//! Labels are kept as text in the order the metric lists them, so a build with
//! other label values still reads the document (values it does not know are
//! skipped).

use super::Metrics;
use super::histogram::{DEPLOY_BUCKETS, HOOK_BUCKETS, Histogram};
use super::hooks::HookOutcome;
use crate::proxy::ConnectionCounters;
use crate::util::sync::Unpoisoned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Every count that only grows, as one image leaves it to the next.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CounterSnapshot {
    /// `rollbridge_http_requests_total` and `..._request_duration_seconds`.
    pub requests: Vec<ReleaseRequests>,
    /// `rollbridge_http_unrouted_requests_total`.
    pub unrouted_requests: u64,
    /// `rollbridge_deploys_total`: labels `kind`, `result`.
    pub deploys: Vec<Count>,
    /// `rollbridge_deploy_duration_seconds`: label `result`.
    pub deploy_durations: Vec<LabelledHistogram>,
    /// `rollbridge_process_restarts_total`: labels `process`, `reason`.
    pub restarts: Vec<Count>,
    /// `rollbridge_hook_calls_total`: labels `plugin`, `stage`, `result`.
    pub hook_calls: Vec<Count>,
    /// `rollbridge_hook_duration_seconds`: labels `plugin`, `stage`.
    pub hook_durations: Vec<LabelledHistogram>,
    /// `rollbridge_proc_scans_total`.
    pub proc_scans: u64,
    /// `rollbridge_log_lines_dropped_total` and `status.logging`: label `log`.
    pub dropped_lines: Vec<Count>,
}

/// One sample of a counter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Count {
    pub labels: Vec<String>,
    pub value: u64,
}

impl Count {
    pub fn new<const N: usize>(labels: [&str; N], value: u64) -> Count {
        Count {
            labels: labels.iter().map(|l| l.to_string()).collect(),
            value,
        }
    }

    fn label(&self, index: usize) -> &str {
        self.labels.get(index).map_or("", String::as_str)
    }
}

/// A histogram's buckets as counted (not cumulative); the last one is above
/// every bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HistogramSnapshot {
    /// Upper bounds in seconds.
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum_micros: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelledHistogram {
    pub labels: Vec<String>,
    pub histogram: HistogramSnapshot,
}

/// One release's request counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReleaseRequests {
    pub release_id: String,
    /// Label `class` (`1xx` … `5xx`, `other`).
    pub by_class: Vec<Count>,
    pub duration: HistogramSnapshot,
}

/// The label values a deploy count may have: the registry keys them statically.
const DEPLOY_KINDS: [&str; 2] = ["deploy", "rollback"];
const DEPLOY_RESULTS: [&str; 2] = ["success", "failure"];

fn known(values: &[&'static str], value: &str) -> Option<&'static str> {
    values.iter().copied().find(|v| *v == value)
}

fn labelled(labels: &[&str], histogram: &Histogram) -> LabelledHistogram {
    LabelledHistogram {
        labels: labels.iter().map(|l| l.to_string()).collect(),
        histogram: histogram.snapshot(),
    }
}

impl Metrics {
    /// Every count so far, for the next image of the daemon.
    pub fn snapshot(&self) -> CounterSnapshot {
        let (requests, unrouted_requests) = self.proxy.snapshot();
        let lifecycle = self.lifecycle();
        CounterSnapshot {
            requests,
            unrouted_requests,
            deploys: lifecycle
                .deploys
                .iter()
                .map(|((kind, result), n)| Count::new([kind, result], *n))
                .collect(),
            deploy_durations: lifecycle
                .deploy_durations
                .iter()
                .map(|(result, histogram)| labelled(&[result], histogram))
                .collect(),
            restarts: lifecycle
                .restarts
                .iter()
                .map(|((process, reason), n)| Count::new([process, reason], *n))
                .collect(),
            hook_calls: lifecycle
                .hook_calls
                .iter()
                .map(|((plugin, stage, result), n)| Count::new([plugin, stage, result], *n))
                .collect(),
            hook_durations: lifecycle
                .hook_durations
                .iter()
                .map(|((plugin, stage), histogram)| labelled(&[plugin, stage], histogram))
                .collect(),
            proc_scans: self.proc_scans(),
            dropped_lines: self
                .dropped_lines_by_log()
                .into_iter()
                .map(|(log, n)| Count::new([&log], n))
                .collect(),
        }
    }

    /// Adds an earlier image's counts to this registry's. Call before the proxy
    /// serves; `connections` gives each release's drain counters by id (the
    /// in-flight and WebSocket gauges read them).
    pub fn continue_from(
        &self,
        earlier: &CounterSnapshot,
        connections: &dyn Fn(&str) -> Arc<ConnectionCounters>,
    ) {
        self.proxy
            .continue_from(&earlier.requests, earlier.unrouted_requests, connections);
        let mut lifecycle = self.lifecycle();
        for count in &earlier.deploys {
            let kind = known(&DEPLOY_KINDS, count.label(0));
            let result = known(&DEPLOY_RESULTS, count.label(1));
            if let (Some(kind), Some(result)) = (kind, result) {
                *lifecycle.deploys.entry((kind, result)).or_default() += count.value;
            }
        }
        for earlier in &earlier.deploy_durations {
            let result = earlier.labels.first().map_or("", String::as_str);
            if let Some(result) = known(&DEPLOY_RESULTS, result) {
                lifecycle
                    .deploy_durations
                    .entry(result)
                    .or_insert_with(|| Histogram::new(DEPLOY_BUCKETS))
                    .add(&earlier.histogram);
            }
        }
        for count in &earlier.restarts {
            let key = (count.label(0).to_string(), count.label(1).to_string());
            *lifecycle.restarts.entry(key).or_default() += count.value;
        }
        for count in &earlier.hook_calls {
            if let Some(outcome) = HookOutcome::parse(count.label(2)) {
                let key = (
                    count.label(0).to_string(),
                    count.label(1).to_string(),
                    outcome.as_str(),
                );
                *lifecycle.hook_calls.entry(key).or_default() += count.value;
            }
        }
        for earlier in &earlier.hook_durations {
            let key = (
                earlier.labels.first().cloned().unwrap_or_default(),
                earlier.labels.get(1).cloned().unwrap_or_default(),
            );
            lifecycle
                .hook_durations
                .entry(key)
                .or_insert_with(|| Histogram::new(HOOK_BUCKETS))
                .add(&earlier.histogram);
        }
        drop(lifecycle);
        self.carried_proc_scans
            .fetch_add(earlier.proc_scans, Ordering::Relaxed);
        let mut carried = self.carried_dropped_lines.lock().unpoisoned();
        for count in &earlier.dropped_lines {
            *carried.entry(count.label(0).to_string()).or_default() += count.value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, ProcessEvent, ProcessScope, StartReason};
    use crate::observability::EventObserver;
    use crate::proxy::ReleaseTarget;
    use http::StatusCode;
    use std::time::Duration;

    /// Every metric line except the gauges, in order.
    fn counters(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                ![
                    "in_flight",
                    "websocket_connections",
                    "resident_memory",
                    "proc_scans",
                ]
                .iter()
                .any(|g| l.contains(g))
            })
            .map(str::to_string)
            .collect()
    }

    fn busy_registry() -> (Arc<Metrics>, Arc<ReleaseTarget>) {
        let metrics = Metrics::new();
        let target = ReleaseTarget::new("v1".into(), "127.0.0.1", 9, ConnectionCounters::new());
        let stats = metrics.proxy().stats_for(&target);
        stats.record(StatusCode::OK, Duration::from_millis(3));
        stats.record(StatusCode::NOT_FOUND, Duration::from_millis(30));
        metrics.proxy().record_unrouted();
        metrics.observe(&Event::DeployStarting {
            release_id: "v1".into(),
            release_path: "/srv/v1".into(),
            revision: None,
        });
        metrics.observe(&Event::TrafficSwitched {
            previous_release_id: None,
            release_id: "v1".into(),
        });
        metrics.observe(&Event::Process {
            scope: ProcessScope {
                process_id: "web".into(),
                release_id: "v1".into(),
            },
            event: ProcessEvent::Started {
                command: "app".into(),
                id: "web".into(),
                pid: Some(1),
                reason: StartReason::Crash,
            },
        });
        metrics.record_hook_call("http", "health", HookOutcome::NotReady, Duration::ZERO);
        metrics.add_dropped_lines_source("daemon", Arc::new(|| 4));
        (metrics, target)
    }

    #[test]
    fn a_new_registry_continues_every_counter_through_json() {
        let (old, target) = busy_registry();
        let snapshot = old.snapshot();
        let text = serde_json::to_string(&snapshot).unwrap();
        let carried: CounterSnapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(carried, snapshot);

        let new = Metrics::new();
        new.add_dropped_lines_source("daemon", Arc::new(|| 1));
        let counters_of = target.counters().clone();
        new.continue_from(&carried, &move |_| counters_of.clone());
        let mut expected = counters(&old.render());
        for line in &mut expected {
            if line.starts_with("rollbridge_log_lines_dropped_total") {
                *line = line.replace("} 4", "} 5");
            }
        }
        assert_eq!(counters(&new.render()), expected);
        assert!(new.proc_scans() >= snapshot.proc_scans);
        assert_eq!(new.dropped_lines("daemon"), 5);

        // The release's series read its live drain counters.
        let _request = target.counters().try_track_http().unwrap();
        assert!(
            new.render()
                .contains("rollbridge_http_in_flight_requests{release=\"v1\"} 1\n")
        );
        // And it goes on counting in the same series.
        new.proxy()
            .stats_for(&target)
            .record(StatusCode::OK, Duration::ZERO);
        assert_eq!(new.proxy().stats_for(&target).requests("2xx"), 2);
    }

    #[test]
    fn a_document_without_counters_continues_nothing() {
        let empty: CounterSnapshot = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, CounterSnapshot::default());
        let metrics = Metrics::new();
        metrics.continue_from(&empty, &|_| ConnectionCounters::new());
        assert_eq!(metrics.snapshot().requests, Vec::new());
        assert_eq!(metrics.deploys("deploy", "success"), 0);
    }
}
