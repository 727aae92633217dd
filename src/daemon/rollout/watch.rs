//! Watching a release under a rollout: about once a second its window of
//! responses is judged against the thresholds, its proxied process is probed,
//! and the `rollout.check` hook is asked — all off the request path, each hook
//! call bounded so a hung hook cannot wedge the watch.

use super::{RolloutRun, verdict};
use crate::config::model::Config;
use crate::daemon::deploy::health_spec;
use crate::daemon::state::Daemon;
use crate::plugins::{HealthPlugin, HealthVerdict, HookCall, ProcessInfo, Registry, Stage};
use crate::proxy::StatsSnapshot;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often the watch looks.
pub const WATCH_TICK: Duration = Duration::from_secs(1);
/// The longest one `rollout.check` call may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How a watch ended.
#[derive(Debug)]
pub enum WatchEnd {
    /// The window passed (or the canary watch was stopped without a reason).
    Passed(StatsSnapshot),
    /// A threshold, the health probes or the check failed; or a rollback asked.
    Failed { reason: String, automatic: bool },
    /// The daemon is shutting down.
    Stopping,
}

/// One probe-able hook with the process it is about.
struct Probe {
    plugin: Arc<dyn HealthPlugin>,
    options: Map<String, Value>,
    process: ProcessInfo,
}

impl Probe {
    /// `None` when healthy / ok, else why not (a verdict, not an error: the
    /// reason goes into the rollout's failure message).
    async fn ask(&self, options: Map<String, Value>, bound: Duration) -> Option<String> {
        let call = HookCall {
            stage: Stage::Health,
            process: self.process.clone(),
            deadline: Instant::now() + bound,
            options,
            events: crate::events::EventSink::silent(),
        };
        match tokio::time::timeout(bound + Duration::from_millis(25), self.plugin.probe(call)).await
        {
            Ok(Ok(HealthVerdict::Healthy)) => None,
            Ok(Ok(HealthVerdict::NotYet(detail))) => Some(detail),
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!("no answer within {} ms", bound.as_millis())),
        }
    }
}

/// The proxied process of `run`'s release and its health hook and check hook.
fn probes(
    run: &RolloutRun,
    config: &Config,
    registry: &Registry,
) -> (Option<Probe>, Option<Probe>) {
    let proxied = config.proxied();
    let Some(entry) = run
        .release
        .processes()
        .into_iter()
        .find(|entry| entry.base_id == proxied.id)
    else {
        return (None, None);
    };
    let process = entry.process.process_info();
    let health = proxied
        .health
        .as_ref()
        .zip(run.release.port(&proxied.id))
        .and_then(|(health, port)| {
            let (spec, _) = health_spec(config, health, port);
            let plugin = registry.health(&spec).ok()?;
            Some(Probe {
                plugin,
                options: spec.options(),
                process: process.clone(),
            })
        });
    let check = config.rollout.check.as_ref().and_then(|spec| {
        Some(Probe {
            plugin: registry.health(spec).ok()?,
            options: spec.options(),
            process,
        })
    });
    (health, check)
}

/// `{requests, errors, errorRate, p50Ms, p99Ms, elapsedMs}` for the check hook.
fn stats_value(window: &StatsSnapshot, elapsed: Duration) -> Value {
    let mut map = Map::new();
    map.insert("requests".into(), Value::from(window.responses));
    map.insert("errors".into(), Value::from(window.server_errors));
    map.insert("errorRate".into(), Value::from(window.error_rate()));
    map.insert(
        "p50Ms".into(),
        window.percentile_ms(0.5).map_or(Value::Null, Value::from),
    );
    map.insert(
        "p99Ms".into(),
        window.percentile_ms(0.99).map_or(Value::Null, Value::from),
    );
    map.insert("elapsedMs".into(), Value::from(elapsed.as_millis() as u64));
    Value::Object(map)
}

impl Daemon {
    /// Watches `run` until `window` has passed (`None`: until stopped), judging
    /// once per [`WATCH_TICK`] and once more at the end.
    pub(super) async fn watch_rollout(
        &self,
        run: &RolloutRun,
        window: Option<Duration>,
    ) -> WatchEnd {
        let config = &run.config;
        let rules = &config.rollout;
        let (health, check) = probes(run, config, &run.registry);
        let started = Instant::now();
        let until = window.map(|window| started + window);
        let mut health_failures = 0u32;
        let mut last_probe: Option<Instant> = None;
        let probe_interval = config
            .proxied()
            .health
            .as_ref()
            .map_or(WATCH_TICK, |health| {
                Duration::from_millis(health.interval_ms)
            });
        let mut ticker = tokio::time::interval_at(started + WATCH_TICK, WATCH_TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                _ = ticker.tick() => false,
                _ = sleep_until(until) => true,
                _ = run.stop.cancelled() => {
                    return match run.stop_reason() {
                        Some(reason) => WatchEnd::Failed { reason, automatic: false },
                        None => WatchEnd::Passed(run.window()),
                    };
                }
                _ = self.stopped_signal() => return WatchEnd::Stopping,
            };
            let window = run.window();
            if let Some(reason) = verdict::judge(&window, rules) {
                return WatchEnd::Failed {
                    reason,
                    automatic: true,
                };
            }
            // At the process's health interval, but at most once per tick.
            if let Some(probe) = &health
                && rules.health_failures > 0
                && last_probe.is_none_or(|at: Instant| at.elapsed() >= probe_interval)
            {
                last_probe = Some(Instant::now());
                match probe.ask(probe.options.clone(), WATCH_TICK).await {
                    None => health_failures = 0,
                    Some(detail) => {
                        health_failures += 1;
                        if health_failures >= rules.health_failures {
                            return WatchEnd::Failed {
                                reason: format!(
                                    "{health_failures} consecutive health probes failed (healthFailures {}): {detail}",
                                    rules.health_failures
                                ),
                                automatic: true,
                            };
                        }
                    }
                }
            }
            if let Some(probe) = &check {
                let mut options = probe.options.clone();
                options.insert("stats".into(), stats_value(&window, started.elapsed()));
                if let Some(reason) = probe.ask(options, CHECK_TIMEOUT).await {
                    return WatchEnd::Failed {
                        reason: format!("rollout.check: {reason}"),
                        automatic: true,
                    };
                }
            }
            if last {
                return WatchEnd::Passed(run.window());
            }
        }
    }
}

async fn sleep_until(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}
