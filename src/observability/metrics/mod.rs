//! The metrics registry and its Prometheus rendering.
//!
//! Request metrics (`proxy`) are plain atomics reached without a lock. Everything
//! else changes a few times a minute at most and sits behind one mutex:
//! - deploys and process restarts are derived from the daemon's events (the
//!   registry observes the event layer), so no flow needs to report them twice;
//! - hook calls arrive as `rollbridge::hooks` tracing events from the plugin
//!   registry (see [`HookCallLayer`]);
//! - RSS per process, dropped log lines and the active release are read when
//!   scraped, from sources the daemon hands over.

mod histogram;
pub mod hooks;
mod proxy;
mod rollout;
mod server;
mod snapshot;
mod text;

pub use histogram::Histogram;
pub use hooks::{HOOK_TARGET, HookCallLayer, HookOutcome, observe_hook};
pub use proxy::{MAX_RELEASE_SERIES, ProxyMetrics, ReleaseStats};
pub use server::{MetricsServer, MetricsServerError};
pub use snapshot::{Count, CounterSnapshot, HistogramSnapshot, LabelledHistogram, ReleaseRequests};
pub use text::CONTENT_TYPE;

use super::events_layer::EventObserver;
use crate::events::{Event, ProcessEvent, StartReason};
use crate::proxy::Router;
use crate::util::sync::Unpoisoned;
use histogram::{DEPLOY_BUCKETS, HOOK_BUCKETS};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use text::{Kind, TextWriter};

/// A managed process whose memory is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSample {
    /// Instance id (`worker#0`).
    pub process: String,
    /// The release it belongs to (a service: the release its template came from).
    pub release: String,
    /// Its process group: every member's RSS is summed, like memory supervision.
    pub pgid: i32,
}

/// Lists the processes to sample at scrape time.
pub type ProcessSource = Arc<dyn Fn() -> Vec<ProcessSample> + Send + Sync>;
/// Reads a count at scrape time.
pub type CountSource = Arc<dyn Fn() -> u64 + Send + Sync>;

#[derive(Default)]
struct Lifecycle {
    /// The deploy in progress (deploys run one at a time) and whether it is a
    /// rollback.
    pending_deploy: Option<(Instant, &'static str)>,
    rollback_announced: bool,
    deploys: BTreeMap<(&'static str, &'static str), u64>,
    deploy_durations: BTreeMap<&'static str, Histogram>,
    restarts: BTreeMap<(String, String), u64>,
    hook_calls: BTreeMap<(String, String, &'static str), u64>,
    hook_durations: BTreeMap<(String, String), Histogram>,
}

/// Every metric the daemon exposes.
pub struct Metrics {
    proxy: Arc<ProxyMetrics>,
    lifecycle: Mutex<Lifecycle>,
    processes: RwLock<Option<ProcessSource>>,
    dropped_lines: RwLock<Vec<(&'static str, CountSource)>>,
    router: RwLock<Option<Arc<Router>>>,
    rollout: rollout::RolloutGauges,
    /// Counts an earlier image of this daemon left (live upgrade), added to
    /// the ones read from their sources.
    carried_proc_scans: AtomicU64,
    carried_dropped_lines: Mutex<BTreeMap<String, u64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics {
            proxy: ProxyMetrics::new(),
            lifecycle: Mutex::default(),
            processes: RwLock::default(),
            dropped_lines: RwLock::default(),
            router: RwLock::default(),
            rollout: rollout::RolloutGauges::default(),
            carried_proc_scans: AtomicU64::new(0),
            carried_dropped_lines: Mutex::default(),
        })
    }

    /// The request metrics the proxy records into.
    pub fn proxy(&self) -> &Arc<ProxyMetrics> {
        &self.proxy
    }

    pub fn set_process_source(&self, source: ProcessSource) {
        *self.processes.write().unpoisoned() = Some(source);
    }

    /// Adds a dropped-lines count under `log` (`daemon`, `access`, `process`).
    pub fn add_dropped_lines_source(&self, log: &'static str, source: CountSource) {
        self.dropped_lines.write().unpoisoned().push((log, source));
    }

    /// The router whose active release is reported.
    pub fn set_router(&self, router: Arc<Router>) {
        *self.router.write().unpoisoned() = Some(router);
    }

    /// The rollout in progress (`None`: none), for the rollout gauges.
    pub fn set_rollout(&self, phase: Option<&'static str>, percent: u8) {
        self.rollout.set(phase, percent);
    }

    fn lifecycle(&self) -> std::sync::MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().unpoisoned()
    }

    /// Counts one finished hook call.
    pub fn record_hook_call(
        &self,
        plugin: &str,
        stage: &str,
        outcome: HookOutcome,
        duration: Duration,
    ) {
        let mut lifecycle = self.lifecycle();
        *lifecycle
            .hook_calls
            .entry((plugin.to_string(), stage.to_string(), outcome.as_str()))
            .or_default() += 1;
        lifecycle
            .hook_durations
            .entry((plugin.to_string(), stage.to_string()))
            .or_insert_with(|| Histogram::new(HOOK_BUCKETS))
            .observe(duration);
    }

    /// Deploys that finished with `result` (`success`, `failure`) so far.
    pub fn deploys(&self, kind: &str, result: &str) -> u64 {
        self.lifecycle()
            .deploys
            .iter()
            .filter(|((k, r), _)| *k == kind && *r == result)
            .map(|(_, n)| *n)
            .sum()
    }

    fn finish_deploy(&self, result: &'static str) {
        let mut lifecycle = self.lifecycle();
        let Some((started, kind)) = lifecycle.pending_deploy.take() else {
            return;
        };
        *lifecycle.deploys.entry((kind, result)).or_default() += 1;
        lifecycle
            .deploy_durations
            .entry(result)
            .or_insert_with(|| Histogram::new(DEPLOY_BUCKETS))
            .observe(started.elapsed());
    }

    /// The scrape answer. Reads `/proc` for RSS: call it off the async threads.
    pub fn render(&self) -> String {
        let mut writer = TextWriter::new();
        self.proxy.write(&mut writer);
        self.write_active_release(&mut writer);
        self.rollout.write(&mut writer);
        self.write_lifecycle(&mut writer);
        self.write_memory(&mut writer);
        self.write_proc_scans(&mut writer);
        self.write_dropped_lines(&mut writer);
        writer.finish()
    }

    fn write_active_release(&self, writer: &mut TextWriter) {
        writer.family(
            "rollbridge_active_release",
            Kind::Gauge,
            "1 for the release receiving new traffic.",
        );
        let router = self.router.read().unpoisoned().clone();
        if let Some(active) = router.and_then(|r| r.active()) {
            writer.sample(
                "rollbridge_active_release",
                &[("release", active.release_id())],
                1.0,
            );
        }
    }

    fn write_lifecycle(&self, writer: &mut TextWriter) {
        let lifecycle = self.lifecycle();
        writer.family(
            "rollbridge_deploys_total",
            Kind::Counter,
            "Finished deploys by kind (deploy, rollback) and result (success, failure).",
        );
        for kind in ["deploy", "rollback"] {
            for result in ["success", "failure"] {
                let count = lifecycle.deploys.get(&(kind, result)).copied().unwrap_or(0);
                writer.sample(
                    "rollbridge_deploys_total",
                    &[("kind", kind), ("result", result)],
                    count as f64,
                );
            }
        }
        histogram::declare(
            writer,
            "rollbridge_deploy_duration_seconds",
            "Time from \"deploy starting\" to the traffic switch or the failure.",
        );
        for (result, histogram) in &lifecycle.deploy_durations {
            histogram.write(
                writer,
                "rollbridge_deploy_duration_seconds",
                &[("result", result)],
            );
        }

        writer.family(
            "rollbridge_process_restarts_total",
            Kind::Counter,
            "Process restarts by instance id and reason (crash, memory, manual).",
        );
        for ((process, reason), count) in &lifecycle.restarts {
            writer.sample(
                "rollbridge_process_restarts_total",
                &[("process", process), ("reason", reason)],
                *count as f64,
            );
        }

        writer.family(
            "rollbridge_hook_calls_total",
            Kind::Counter,
            "Hook and plugin calls by plugin, stage and result.",
        );
        for ((plugin, stage, result), count) in &lifecycle.hook_calls {
            writer.sample(
                "rollbridge_hook_calls_total",
                &[("plugin", plugin), ("stage", stage), ("result", result)],
                *count as f64,
            );
        }
        histogram::declare(
            writer,
            "rollbridge_hook_duration_seconds",
            "Hook and plugin call durations by plugin and stage.",
        );
        for ((plugin, stage), histogram) in &lifecycle.hook_durations {
            histogram.write(
                writer,
                "rollbridge_hook_duration_seconds",
                &[("plugin", plugin), ("stage", stage)],
            );
        }
    }

    fn write_memory(&self, writer: &mut TextWriter) {
        writer.family(
            "rollbridge_process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory of each managed process's whole process group.",
        );
        let source = self.processes.read().unpoisoned().clone();
        let Some(source) = source else { return };
        let samples = source();
        if samples.is_empty() {
            return;
        }
        for (sample, rss) in samples.iter().zip(group_rss(&samples)) {
            if let Some(rss) = rss {
                writer.sample(
                    "rollbridge_process_resident_memory_bytes",
                    &[("process", &sample.process), ("release", &sample.release)],
                    rss as f64,
                );
            }
        }
    }

    fn write_dropped_lines(&self, writer: &mut TextWriter) {
        writer.family(
            "rollbridge_log_lines_dropped_total",
            Kind::Counter,
            "Log lines lost instead of blocking: queue full or write failed (log = daemon, access, process).",
        );
        for (log, count) in self.dropped_lines_by_log() {
            writer.sample(
                "rollbridge_log_lines_dropped_total",
                &[("log", &log)],
                count as f64,
            );
        }
    }

    /// Dropped lines per log (`daemon`, `process`, `access`), an earlier
    /// image's included, in the order the logs were added.
    fn dropped_lines_by_log(&self) -> Vec<(String, u64)> {
        let mut carried = self.carried_dropped_lines.lock().unpoisoned().clone();
        let sources = self.dropped_lines.read().unpoisoned().clone();
        let mut counts: Vec<(String, u64)> = Vec::new();
        for (log, source) in sources {
            let earlier = carried.remove(log).unwrap_or(0);
            match counts.iter_mut().find(|(name, _)| name == log) {
                Some((_, count)) => *count += source(),
                None => counts.push((log.to_string(), earlier + source())),
            }
        }
        // A log this image does not write (the config dropped it) keeps its count.
        counts.extend(carried);
        counts
    }

    /// Lines `log` dropped since the daemon started (across live upgrades).
    pub fn dropped_lines(&self, log: &str) -> u64 {
        self.dropped_lines_by_log()
            .into_iter()
            .find(|(name, _)| name == log)
            .map_or(0, |(_, count)| count)
    }

    /// Full `/proc` directory passes since the daemon started (across live
    /// upgrades).
    fn proc_scans(&self) -> u64 {
        crate::process::snapshot::passes_total() + self.carried_proc_scans.load(Ordering::Relaxed)
    }

    /// Full `/proc` directory passes so far, counted before this scrape's own.
    fn write_proc_scans(&self, writer: &mut TextWriter) {
        writer.family(
            "rollbridge_proc_scans_total",
            Kind::Counter,
            "Full /proc directory passes made by the daemon (the supervision sampler makes one per tick for every process).",
        );
        writer.sample("rollbridge_proc_scans_total", &[], self.proc_scans() as f64);
    }
}

/// The summed RSS of each sample's process group, from one `/proc` scan.
fn group_rss(samples: &[ProcessSample]) -> Vec<Option<u64>> {
    let Ok(stats) = crate::process::proc_table::scan_stats() else {
        return vec![None; samples.len()];
    };
    let mut by_group: BTreeMap<i32, Option<u64>> = samples.iter().map(|s| (s.pgid, None)).collect();
    for stat in stats {
        if let Some(total) = by_group.get_mut(&stat.pgrp) {
            if let Some(rss) = crate::process::proc_table::read_rss_bytes(stat.pid) {
                *total = Some(total.unwrap_or(0).saturating_add(rss));
            }
        }
    }
    samples.iter().map(|s| by_group[&s.pgid]).collect()
}

impl EventObserver for Metrics {
    fn observe(&self, event: &Event) {
        match event {
            Event::RollbackStarting { .. } => self.lifecycle().rollback_announced = true,
            Event::DeployStarting { .. } => {
                let mut lifecycle = self.lifecycle();
                let kind = if std::mem::take(&mut lifecycle.rollback_announced) {
                    "rollback"
                } else {
                    "deploy"
                };
                lifecycle.pending_deploy = Some((Instant::now(), kind));
            }
            Event::TrafficSwitched { .. } => self.finish_deploy("success"),
            Event::DeployFailed { .. } => self.finish_deploy("failure"),
            Event::Process {
                scope,
                event: ProcessEvent::Started { reason, .. },
            } if *reason != StartReason::Deploy => {
                *self
                    .lifecycle()
                    .restarts
                    .entry((scope.process_id.clone(), reason.as_str().to_string()))
                    .or_default() += 1;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ProcessScope;

    fn starting(release_id: &str) -> Event {
        Event::DeployStarting {
            release_id: release_id.into(),
            release_path: format!("/srv/{release_id}"),
            revision: None,
        }
    }

    fn switched(release_id: &str) -> Event {
        Event::TrafficSwitched {
            previous_release_id: None,
            release_id: release_id.into(),
        }
    }

    fn failed(release_id: &str) -> Event {
        Event::DeployFailed {
            error: "x".into(),
            release_id: release_id.into(),
        }
    }

    fn started(process: &str, reason: StartReason) -> Event {
        Event::Process {
            scope: ProcessScope {
                process_id: process.into(),
                release_id: "v1".into(),
            },
            event: ProcessEvent::Started {
                command: "node app.js".into(),
                id: process.into(),
                pid: Some(1),
                reason,
            },
        }
    }

    #[test]
    fn deploys_and_restarts_come_from_events() {
        let metrics = Metrics::new();
        metrics.observe(&starting("v1"));
        metrics.observe(&switched("v1"));
        metrics.observe(&Event::RollbackStarting {
            release_id: "v0".into(),
            release_path: "/srv/v0".into(),
        });
        metrics.observe(&starting("v0"));
        metrics.observe(&failed("v0"));
        // A stray end without a start is not a deploy.
        metrics.observe(&switched("v0"));
        for reason in [
            StartReason::Deploy,
            StartReason::Crash,
            StartReason::Crash,
            StartReason::Memory,
        ] {
            metrics.observe(&started("web", reason));
        }
        assert_eq!(metrics.deploys("deploy", "success"), 1);
        assert_eq!(metrics.deploys("rollback", "failure"), 1);
        let text = metrics.render();
        assert!(
            text.contains("rollbridge_deploys_total{kind=\"deploy\",result=\"success\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("rollbridge_deploys_total{kind=\"rollback\",result=\"failure\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("rollbridge_deploy_duration_seconds_count{result=\"success\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "rollbridge_process_restarts_total{process=\"web\",reason=\"crash\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "rollbridge_process_restarts_total{process=\"web\",reason=\"memory\"} 1\n"
            ),
            "{text}"
        );
        assert!(!text.contains("reason=\"deploy\""), "{text}");
    }

    #[test]
    fn events_reach_the_registry_through_the_event_layer() {
        let ring = crate::events::EventRing::new(8);
        let layer = crate::observability::EventLayer::new(ring.clone(), Default::default());
        let observers = Arc::new(crate::observability::EventObservers::default());
        let sink =
            crate::observability::traced_sink(ring, crate::observability::event_dispatch(layer));
        let _watching = observers.watch(&sink);
        let metrics = Metrics::new();
        observers.add(metrics.clone());
        sink.emit(starting("v1"));
        sink.emit(failed("v1"));
        assert_eq!(metrics.deploys("deploy", "failure"), 1);
    }

    #[test]
    fn a_hook_event_named_like_a_deploy_event_is_not_a_deploy() {
        let metrics = Metrics::new();
        for name in ["deploy starting", "traffic switched", "process started"] {
            metrics.observe(&Event::Hook {
                message: name.into(),
                data: crate::data! { "releaseId" => "v1", "processId" => "web", "reason" => "crash" },
            });
        }
        assert_eq!(metrics.deploys("deploy", "success"), 0);
        let text = metrics.render();
        assert!(
            !text.contains("rollbridge_process_restarts_total{"),
            "{text}"
        );
    }

    #[test]
    fn memory_of_a_live_group_and_dropped_lines_are_read_when_scraped() {
        let metrics = Metrics::new();
        let own_group = nix::unistd::getpgrp().as_raw();
        metrics.set_process_source(Arc::new(move || {
            vec![ProcessSample {
                process: "self".into(),
                release: "v1".into(),
                pgid: own_group,
            }]
        }));
        metrics.add_dropped_lines_source("daemon", Arc::new(|| 7));
        let text = metrics.render();
        let rss_line = text
            .lines()
            .find(|l| {
                l.starts_with(
                    "rollbridge_process_resident_memory_bytes{process=\"self\",release=\"v1\"} ",
                )
            })
            .unwrap_or_else(|| panic!("{text}"));
        let rss: f64 = rss_line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(rss > 1_000_000.0, "{rss_line}");
        assert!(
            text.contains("rollbridge_log_lines_dropped_total{log=\"daemon\"} 7\n"),
            "{text}"
        );
    }
}
