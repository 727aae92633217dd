//! Hook call metrics: the plugin registry wraps every plugin it hands out so each
//! call reports its plugin, stage, outcome and duration as a `rollbridge::hooks`
//! tracing event at `debug`. [`HookCallLayer`] counts those events into the
//! registry; the diagnostics filter decides separately whether they are also
//! written as lines (`--log-level rollbridge::hooks=debug`).

use super::Metrics;
use crate::plugins::{
    HealthPlugin, HealthVerdict, HookCall, HookError, HookFuture, LegacyProcess, LifecyclePlugin,
    MatcherPlugin,
};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// The tracing target of hook call reports.
pub const HOOK_TARGET: &str = "rollbridge::hooks";

/// How one hook call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    /// A lifecycle hook completed, a probe said healthy.
    Ok,
    /// A health probe answered "not yet".
    NotReady,
    /// A matcher matched / did not match.
    Matched,
    NotMatched,
    Failed,
    TimedOut,
    /// The caller stopped waiting (its own deadline) before the hook finished.
    Abandoned,
}

impl HookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            HookOutcome::Ok => "ok",
            HookOutcome::NotReady => "not_ready",
            HookOutcome::Matched => "matched",
            HookOutcome::NotMatched => "not_matched",
            HookOutcome::Failed => "failed",
            HookOutcome::TimedOut => "timed_out",
            HookOutcome::Abandoned => "abandoned",
        }
    }

    pub(super) fn parse(text: &str) -> Option<HookOutcome> {
        [
            HookOutcome::Ok,
            HookOutcome::NotReady,
            HookOutcome::Matched,
            HookOutcome::NotMatched,
            HookOutcome::Failed,
            HookOutcome::TimedOut,
            HookOutcome::Abandoned,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }

    fn of_error(error: &HookError) -> HookOutcome {
        match error {
            HookError::TimedOut(_) => HookOutcome::TimedOut,
            HookError::Failed(_) | HookError::Reported(_) => HookOutcome::Failed,
        }
    }
}

/// Reports the call when it finishes, or as abandoned when dropped before.
struct CallReport {
    plugin: String,
    stage: &'static str,
    started: Instant,
    outcome: Option<HookOutcome>,
}

impl Drop for CallReport {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or(HookOutcome::Abandoned);
        let duration_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tracing::debug!(
            target: HOOK_TARGET,
            plugin = %self.plugin,
            stage = self.stage,
            result = outcome.as_str(),
            duration_us,
            "hook call finished"
        );
    }
}

/// Wraps a hook future so its end is reported.
pub fn observe_hook<T: Send + 'static>(
    plugin: &str,
    stage: &'static str,
    call: HookFuture<T>,
    classify: fn(&Result<T, HookError>) -> HookOutcome,
) -> HookFuture<T> {
    let mut report = CallReport {
        plugin: plugin.to_string(),
        stage,
        started: Instant::now(),
        outcome: None,
    };
    Box::pin(async move {
        let result = call.await;
        report.outcome = Some(classify(&result));
        drop(report);
        result
    })
}

/// A lifecycle plugin whose calls are reported.
pub struct ObservedLifecycle(pub Arc<dyn LifecyclePlugin>);
/// A health plugin whose probes are reported.
pub struct ObservedHealth(pub Arc<dyn HealthPlugin>);
/// A matcher plugin whose calls are reported.
pub struct ObservedMatcher(pub Arc<dyn MatcherPlugin>);

impl LifecyclePlugin for ObservedLifecycle {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn run(&self, call: HookCall) -> HookFuture<()> {
        let stage = call.stage.as_str();
        observe_hook(
            self.0.name(),
            stage,
            self.0.run(call),
            |result| match result {
                Ok(()) => HookOutcome::Ok,
                Err(error) => HookOutcome::of_error(error),
            },
        )
    }
}

impl HealthPlugin for ObservedHealth {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn probe(&self, call: HookCall) -> HookFuture<HealthVerdict> {
        observe_hook(
            self.0.name(),
            "health",
            self.0.probe(call),
            |result| match result {
                Ok(HealthVerdict::Healthy) => HookOutcome::Ok,
                Ok(HealthVerdict::NotYet(_)) => HookOutcome::NotReady,
                Err(error) => HookOutcome::of_error(error),
            },
        )
    }
}

impl MatcherPlugin for ObservedMatcher {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn matches(&self, process: LegacyProcess, deadline: tokio::time::Instant) -> HookFuture<bool> {
        observe_hook(
            self.0.name(),
            "match",
            self.0.matches(process, deadline),
            |result| match result {
                Ok(true) => HookOutcome::Matched,
                Ok(false) => HookOutcome::NotMatched,
                Err(error) => HookOutcome::of_error(error),
            },
        )
    }
}

/// Counts `rollbridge::hooks` events into a [`Metrics`] registry attached later.
#[derive(Clone, Default)]
pub struct HookCallLayer {
    metrics: Arc<OnceLock<Arc<Metrics>>>,
}

impl HookCallLayer {
    pub fn new() -> HookCallLayer {
        HookCallLayer::default()
    }

    /// Starts counting into `metrics` (the first attached registry stays).
    pub fn attach(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// The filter for this layer: hook reports only, whatever the log level.
    pub fn filter() -> tracing_subscriber::filter::Targets {
        tracing_subscriber::filter::Targets::new().with_target(HOOK_TARGET, tracing::Level::DEBUG)
    }
}

impl<S: Subscriber> Layer<S> for HookCallLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != HOOK_TARGET {
            return;
        }
        let Some(metrics) = self.metrics.get() else {
            return;
        };
        let mut fields = HookFields::default();
        event.record(&mut fields);
        if let Some(outcome) = HookOutcome::parse(&fields.result) {
            metrics.record_hook_call(
                &fields.plugin,
                &fields.stage,
                outcome,
                Duration::from_micros(fields.duration_us),
            );
        }
    }
}

#[derive(Default)]
struct HookFields {
    plugin: String,
    stage: String,
    result: String,
    duration_us: u64,
}

impl Visit for HookFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "duration_us" {
            self.duration_us = value;
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "plugin" => self.plugin = value.to_string(),
            "stage" => self.stage = value.to_string(),
            "result" => self.result = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%plugin` arrives formatted.
        if field.name() == "plugin" {
            self.plugin = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[tokio::test]
    async fn finished_and_abandoned_calls_are_counted() {
        let metrics = Metrics::new();
        let layer = HookCallLayer::new();
        layer.attach(metrics.clone());
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::registry().with(layer.with_filter(HookCallLayer::filter())),
        );
        let _default = tracing::dispatcher::set_default(&dispatch);

        let ok: HookFuture<()> = Box::pin(async { Ok(()) });
        observe_hook("signal", "stop", ok, |_| HookOutcome::Ok)
            .await
            .unwrap();
        let failing: HookFuture<bool> = Box::pin(async { Err(HookError::TimedOut(5)) });
        let _ = observe_hook("cmdline", "match", failing, |r| match r {
            Err(e) => HookOutcome::of_error(e),
            Ok(_) => HookOutcome::Matched,
        })
        .await;
        let never: HookFuture<()> = Box::pin(std::future::pending());
        let abandoned = observe_hook("lua", "drain", never, |_| HookOutcome::Ok);
        let _ = tokio::time::timeout(Duration::from_millis(10), abandoned).await;

        let text = metrics.render();
        for expected in [
            "rollbridge_hook_calls_total{plugin=\"signal\",stage=\"stop\",result=\"ok\"} 1\n",
            "rollbridge_hook_calls_total{plugin=\"cmdline\",stage=\"match\",result=\"timed_out\"} 1\n",
            "rollbridge_hook_calls_total{plugin=\"lua\",stage=\"drain\",result=\"abandoned\"} 1\n",
            "rollbridge_hook_duration_seconds_count{plugin=\"lua\",stage=\"drain\"} 1\n",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
    }
}
