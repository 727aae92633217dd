//! The plugins compiled into rollbridge.
//!
//! | extension point | names |
//! | --- | --- |
//! | lifecycle (quiet, drain, stop) | `command` (also every plain string hook), `signal`, `wait-exit` |
//! | health | `http`, `tcp`, `command` (also a plain string `health.check`) |
//! | legacy-takeover matchers | `cmdline`, `screen` |
//!
//! docs/processes.md describes every plugin and its options.

pub mod health;
pub mod lifecycle;
pub mod matchers;
pub mod shell;

use super::{HealthPlugin, LifecyclePlugin, MatcherPlugin, PluginProvider, Stage};
use crate::config::hook::HookSpec;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Every name the built-in provider answers to in `{plugin = "<name>"}`.
pub const BUILTIN_PLUGIN_NAMES: &[&str] = &[
    "command",
    "signal",
    "wait-exit",
    "http",
    "tcp",
    "cmdline",
    "screen",
];

/// The provider of the built-in plugins.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinPlugins;

fn command_option(options: &Map<String, Value>) -> Option<String> {
    options
        .get("command")
        .and_then(Value::as_str)
        .map(str::to_string)
}

impl PluginProvider for BuiltinPlugins {
    fn lifecycle(&self, spec: &HookSpec, _stage: Stage) -> Option<Arc<dyn LifecyclePlugin>> {
        match spec {
            HookSpec::Command(command) => Some(Arc::new(lifecycle::CommandHook {
                command: Some(command.clone()),
            })),
            HookSpec::Plugin { name, options } => match name.as_str() {
                "command" => Some(Arc::new(lifecycle::CommandHook {
                    command: command_option(options),
                })),
                "signal" => Some(Arc::new(lifecycle::SignalHook)),
                "wait-exit" => Some(Arc::new(lifecycle::WaitExitHook)),
                _ => None,
            },
            _ => None,
        }
    }

    fn health(&self, spec: &HookSpec) -> Option<Arc<dyn HealthPlugin>> {
        match spec {
            HookSpec::Command(command) => Some(Arc::new(health::CommandHealth {
                command: Some(command.clone()),
            })),
            HookSpec::Plugin { name, options } => match name.as_str() {
                "http" => Some(Arc::new(health::HttpHealth)),
                "tcp" => Some(Arc::new(health::TcpHealth)),
                "command" => Some(Arc::new(health::CommandHealth {
                    command: command_option(options),
                })),
                _ => None,
            },
            _ => None,
        }
    }

    fn matcher(&self, spec: &HookSpec) -> Option<Arc<dyn MatcherPlugin>> {
        match spec {
            HookSpec::Plugin { name, options } => match name.as_str() {
                "cmdline" => Some(Arc::new(matchers::CmdlineMatcher::from_options(options))),
                "screen" => Some(Arc::new(matchers::ScreenMatcher::from_options(options))),
                _ => None,
            },
            _ => None,
        }
    }

    fn plugin_names(&self) -> Vec<String> {
        BUILTIN_PLUGIN_NAMES.iter().map(|s| s.to_string()).collect()
    }
}
