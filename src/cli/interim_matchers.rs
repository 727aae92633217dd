//! TEMPORARY: the `cmdline` and `screen` legacy matchers, only until the built-in
//! plugins (`crate::plugins::builtin::BuiltinPlugins`) are on main. Same option
//! shapes: `cmdline {includes = {...}}`, `screen {name = "..." | {...}}`.
//! Delete this file and use `BuiltinPlugins` in `legacy::matcher_registry`.

use crate::config::hook::HookSpec;
use crate::plugins::{
    HealthPlugin, HookError, HookFuture, LegacyProcess, LifecyclePlugin, MatcherPlugin,
    PluginProvider, Stage,
};
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio::time::Instant;

fn strings(options: &Map<String, Value>, key: &str) -> Vec<String> {
    match options.get(key) {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

struct Cmdline(Vec<String>);
struct Screen(Vec<String>);

impl MatcherPlugin for Cmdline {
    fn name(&self) -> &str {
        "cmdline"
    }
    fn matches(&self, process: LegacyProcess, _deadline: Instant) -> HookFuture<bool> {
        let hit = !self.0.is_empty() && self.0.iter().all(|s| process.cmdline.contains(s));
        Box::pin(async move { Ok::<bool, HookError>(hit) })
    }
}

impl MatcherPlugin for Screen {
    fn name(&self) -> &str {
        "screen"
    }
    fn matches(&self, process: LegacyProcess, _deadline: Instant) -> HookFuture<bool> {
        let hit = self.0.iter().any(|name| {
            let marker = format!("SCREEN -dmS {name}");
            process.cmdline.match_indices(&marker).any(|(at, _)| {
                process.cmdline[at + marker.len()..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace)
            })
        });
        Box::pin(async move { Ok::<bool, HookError>(hit) })
    }
}

pub struct InterimMatchers;

impl PluginProvider for InterimMatchers {
    fn lifecycle(&self, _: &HookSpec, _: Stage) -> Option<Arc<dyn LifecyclePlugin>> {
        None
    }
    fn health(&self, _: &HookSpec) -> Option<Arc<dyn HealthPlugin>> {
        None
    }
    fn matcher(&self, spec: &HookSpec) -> Option<Arc<dyn MatcherPlugin>> {
        match spec {
            HookSpec::Plugin { name, options } if name == "cmdline" => {
                Some(Arc::new(Cmdline(strings(options, "includes"))))
            }
            HookSpec::Plugin { name, options } if name == "screen" => {
                Some(Arc::new(Screen(strings(options, "name"))))
            }
            _ => None,
        }
    }
    fn plugin_names(&self) -> Vec<String> {
        vec!["cmdline".into(), "screen".into()]
    }
}
