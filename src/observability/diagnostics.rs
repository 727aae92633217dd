//! Diagnostic lines: every tracing event that is not a daemon event (hook and proxy
//! internals at `debug`, warnings), filtered by `--log-level` / `RUST_LOG`.
//!
//! They share the event line's leading shape (`at`, `data`, `message`) so a reader
//! that parses event lines also parses these, and add `level` and `target`, which
//! event lines never have: that is how the two are told apart.

use super::events_layer::EVENT_TARGET;
use super::output::LineOutput;
use serde_json::{Map, Value};
use std::fmt;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::Context;

/// The diagnostics shown when neither `--log-level` nor `RUST_LOG` says otherwise.
pub const DEFAULT_LOG_LEVEL: &str = "warn";

/// `--log-level` (or `RUST_LOG`) did not parse as a filter.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid log level \"{text}\": {reason}. Use a level (error, warn, info, debug, trace) or directives such as \"warn,rollbridge::proxy=debug\""
)]
pub struct InvalidLogLevel {
    pub text: String,
    pub reason: String,
}

const LEVEL_NAMES: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Parses a level, or a comma-separated list of levels and `target=level`
/// directives. Stricter than `EnvFilter` itself, which would take a misspelt level
/// such as `verbose` for a target name and silently show nothing.
pub fn parse_level(text: &str) -> Result<EnvFilter, InvalidLogLevel> {
    let invalid = |reason: String| InvalidLogLevel {
        text: text.to_string(),
        reason,
    };
    let is_level = |word: &str| LEVEL_NAMES.contains(&word.trim().to_ascii_lowercase().as_str());
    let directives: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    for directive in directives {
        let valid = match directive.rsplit_once('=') {
            Some((target, level)) => {
                !target.trim().is_empty() && !target.contains('[') && is_level(level)
            }
            None => is_level(directive),
        };
        if !valid {
            return Err(invalid(format!(
                "\"{directive}\" is neither a level nor target=level"
            )));
        }
    }
    EnvFilter::builder()
        .with_regex(false)
        .parse(text)
        .map_err(|error| invalid(error.to_string()))
}

/// The diagnostics filter: `explicit` (the `--log-level` flag) wins, then
/// `RUST_LOG`, then [`DEFAULT_LOG_LEVEL`]. Daemon events are never part of it.
pub fn diagnostics_filter<S: Subscriber>(
    explicit: Option<&str>,
) -> Result<impl tracing_subscriber::layer::Filter<S> + Send + Sync + 'static, InvalidLogLevel> {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let text = explicit
        .map(str::to_string)
        .or(from_env)
        .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
    let levels = parse_level(&text)?;
    Ok(filter_fn(|metadata| metadata.target() != EVENT_TARGET).and(levels))
}

/// Writes diagnostic lines.
pub struct DiagnosticLayer {
    output: LineOutput,
}

impl DiagnosticLayer {
    pub fn new(output: LineOutput) -> DiagnosticLayer {
        DiagnosticLayer { output }
    }
}

impl<S: Subscriber> Layer<S> for DiagnosticLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        if metadata.target() == EVENT_TARGET || !self.output.is_enabled() {
            return;
        }
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert("at".into(), Value::from(crate::util::time::iso_now()));
        line.insert("data".into(), Value::Object(fields.data));
        line.insert("message".into(), Value::from(fields.message));
        line.insert(
            "level".into(),
            Value::from(metadata.level().as_str().to_ascii_lowercase()),
        );
        line.insert("target".into(), Value::from(metadata.target()));
        if let Ok(text) = serde_json::to_string(&line) {
            self.output.write_line(&text);
        }
    }
}

/// Collects an event's fields as JSON values, keeping their order.
#[derive(Default)]
struct JsonFields {
    message: String,
    data: Map<String, Value>,
}

impl JsonFields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
        } else {
            self.data.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    fn capture(level: &str) -> (tracing::Dispatch, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let captured = lines.clone();
        let output = LineOutput::from_callback(Some(Box::new(move |line: &str| {
            captured.lock().unwrap().push(line.to_string())
        })));
        let filter = diagnostics_filter(Some(level)).unwrap();
        let subscriber =
            tracing_subscriber::registry().with(DiagnosticLayer::new(output).with_filter(filter));
        (tracing::Dispatch::new(subscriber), lines)
    }

    #[test]
    fn writes_fields_in_order_with_level_and_target() {
        let (dispatch, lines) = capture("debug");
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::debug!(target: "rollbridge::proxy", pooled = 3_u64, authority = "127.0.0.1:9", "upstream connection reused");
        });
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1);
        let value: Value = serde_json::from_str(&lines[0]).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["at", "data", "message", "level", "target"]);
        assert_eq!(value["data"]["pooled"], 3);
        assert_eq!(value["data"]["authority"], "127.0.0.1:9");
        assert_eq!(value["message"], "upstream connection reused");
        assert_eq!(value["level"], "debug");
        assert_eq!(value["target"], "rollbridge::proxy");
    }

    #[test]
    fn level_filters_diagnostics_but_never_sees_events() {
        let (dispatch, lines) = capture("warn");
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::debug!("hidden");
            tracing::warn!("shown");
            tracing::info!(target: EVENT_TARGET, "a daemon event is not a diagnostic");
        });
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("\"shown\""));
    }

    #[test]
    fn directives_select_targets() {
        let (dispatch, lines) = capture("error,rollbridge::plugins=debug");
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::debug!(target: "rollbridge::plugins", "hook call");
            tracing::debug!(target: "rollbridge::proxy", "not this one");
        });
        assert_eq!(lines.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_bad_level_says_what_is_accepted() {
        for bad in ["verbose", "loud=", "rollbridge=noisy", "", " , "] {
            let error = parse_level(bad).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("invalid log level \"{bad}\"")),
                "{error}"
            );
            assert!(error.contains("error, warn, info, debug, trace"), "{error}");
        }
        for good in ["DEBUG", "warn,rollbridge::proxy=debug", "rollbridge=trace"] {
            parse_level(good).unwrap();
        }
    }
}
