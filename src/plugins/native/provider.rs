//! The loaded set of native plugins and its place in the plugin registry.

use super::call::call_with_deadline;
use super::error::NativePluginError;
use super::library::PluginLibrary;
use super::wire;
use crate::config::hook::HookSpec;
use crate::plugins::{
    HealthPlugin, HealthVerdict, HookCall, HookFuture, LegacyProcess, LifecyclePlugin,
    MatcherPlugin, PluginProvider, Stage,
};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::time::Instant;

/// The native plugin libraries listed under `plugins.native`, loaded once.
#[derive(Debug, Clone, Default)]
pub struct NativePlugins {
    /// In config order; names are unique.
    plugins: Vec<Arc<PluginLibrary>>,
}

/// What one loaded library provides (for `doctor`, `validate` and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativePluginInfo {
    pub name: String,
    pub path: PathBuf,
    pub hooks: Vec<Stage>,
}

impl NativePlugins {
    /// Loads every library in order. The first library that cannot be used, or a
    /// second library reusing a plugin name, stops loading with that error.
    pub fn load(paths: &[PathBuf]) -> Result<NativePlugins, NativePluginError> {
        let mut plugins: Vec<Arc<PluginLibrary>> = Vec::with_capacity(paths.len());
        for path in paths {
            let plugin = PluginLibrary::open(path)?;
            if let Some(earlier) = plugins.iter().find(|p| p.name == plugin.name) {
                return Err(NativePluginError::DuplicateName {
                    name: plugin.name.clone(),
                    first: earlier.path.clone(),
                    second: plugin.path.clone(),
                });
            }
            plugins.push(Arc::new(plugin));
        }
        Ok(NativePlugins { plugins })
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Name, file and hooks of each loaded plugin, in config order.
    pub fn describe(&self) -> Vec<NativePluginInfo> {
        self.plugins
            .iter()
            .map(|plugin| NativePluginInfo {
                name: plugin.name.clone(),
                path: plugin.path.clone(),
                hooks: plugin.hooks.clone(),
            })
            .collect()
    }

    /// The plugin a hook value names, if it is one of ours and provides `kind`.
    fn resolve(&self, spec: &HookSpec, kind: Stage) -> Option<&Arc<PluginLibrary>> {
        let HookSpec::Plugin { name, .. } = spec else {
            return None;
        };
        self.plugins
            .iter()
            .find(|plugin| &plugin.name == name && plugin.provides(kind))
    }
}

/// Loads each library on its own and reports, per path, the plugin name or why it
/// cannot be used. Meant for `validate`/`doctor`, which want every problem at once
/// rather than the first. A later library reusing an earlier plugin name is
/// reported as [`NativePluginError::DuplicateName`].
pub fn check_native_plugins(
    paths: &[PathBuf],
) -> Vec<(PathBuf, Result<String, NativePluginError>)> {
    let mut seen: Vec<(String, PathBuf)> = Vec::new();
    paths
        .iter()
        .map(|path| {
            let outcome = PluginLibrary::open(path).and_then(|plugin| {
                if let Some((_, first)) = seen.iter().find(|(name, _)| *name == plugin.name) {
                    return Err(NativePluginError::DuplicateName {
                        name: plugin.name.clone(),
                        first: first.clone(),
                        second: plugin.path.clone(),
                    });
                }
                seen.push((plugin.name.clone(), plugin.path.clone()));
                Ok(plugin.name.clone())
            });
            (path.clone(), outcome)
        })
        .collect()
}

impl PluginProvider for NativePlugins {
    fn lifecycle(&self, spec: &HookSpec, stage: Stage) -> Option<Arc<dyn LifecyclePlugin>> {
        let kind = Some(stage).filter(|stage| stage.is_lifecycle())?;
        let plugin = self.resolve(spec, kind)?;
        Some(Arc::new(NativeLifecycle {
            plugin: Arc::clone(plugin),
            kind,
        }))
    }

    fn health(&self, spec: &HookSpec) -> Option<Arc<dyn HealthPlugin>> {
        let plugin = self.resolve(spec, Stage::Health)?;
        Some(Arc::new(NativeHealth {
            plugin: Arc::clone(plugin),
        }))
    }

    fn matcher(&self, spec: &HookSpec) -> Option<Arc<dyn MatcherPlugin>> {
        let plugin = self.resolve(spec, Stage::Match)?;
        Some(Arc::new(NativeMatcher {
            plugin: Arc::clone(plugin),
            options: spec.options(),
        }))
    }

    fn plugin_names(&self) -> Vec<String> {
        self.plugins.iter().map(|p| p.name.clone()).collect()
    }
}

/// A quiet, drain or stop hook served by a native plugin.
struct NativeLifecycle {
    plugin: Arc<PluginLibrary>,
    kind: Stage,
}

impl LifecyclePlugin for NativeLifecycle {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    fn run(&self, call: HookCall) -> HookFuture<()> {
        let plugin = Arc::clone(&self.plugin);
        let kind = self.kind;
        Box::pin(async move {
            let response = call_with_deadline(&plugin, call.deadline, |deadline_ms| {
                wire::hook_request(kind, &call, deadline_ms)
            })
            .await?;
            wire::lifecycle_response(&plugin.name, kind, &response)
        })
    }
}

/// A readiness probe served by a native plugin.
struct NativeHealth {
    plugin: Arc<PluginLibrary>,
}

impl HealthPlugin for NativeHealth {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    fn probe(&self, call: HookCall) -> HookFuture<HealthVerdict> {
        let plugin = Arc::clone(&self.plugin);
        Box::pin(async move {
            let response = call_with_deadline(&plugin, call.deadline, |deadline_ms| {
                wire::hook_request(Stage::Health, &call, deadline_ms)
            })
            .await?;
            wire::health_response(&plugin.name, &response)
        })
    }
}

/// A legacy-takeover matcher served by a native plugin. Matchers get no
/// `HookCall`, so the hook value's options are captured when it is resolved.
struct NativeMatcher {
    plugin: Arc<PluginLibrary>,
    options: Map<String, Value>,
}

impl MatcherPlugin for NativeMatcher {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    fn matches(&self, process: LegacyProcess, deadline: Instant) -> HookFuture<bool> {
        let plugin = Arc::clone(&self.plugin);
        let options = self.options.clone();
        Box::pin(async move {
            let response = call_with_deadline(&plugin, deadline, |deadline_ms| {
                wire::match_request(&process, &options, deadline_ms)
            })
            .await?;
            wire::match_response(&plugin.name, &response)
        })
    }
}

/// The check `validate` and `load` run on each `plugins.native` entry: open the
/// library (then let it go) and report the plugin name under every extension point
/// its manifest declares.
pub fn config_inspector() -> crate::config::NativeInspector {
    use crate::config::HookKind as ConfigKind;
    std::sync::Arc::new(|path: &std::path::Path| {
        let library = PluginLibrary::open(path).map_err(|error| error.to_string())?;
        let mut provided = Vec::new();
        for (native, config) in [
            (Stage::Quiet, ConfigKind::Lifecycle),
            (Stage::Drain, ConfigKind::Lifecycle),
            (Stage::Stop, ConfigKind::Lifecycle),
            (Stage::Health, ConfigKind::Health),
            (Stage::Match, ConfigKind::Matcher),
        ] {
            let entry = (config, library.name.clone());
            if library.provides(native) && !provided.contains(&entry) {
                provided.push(entry);
            }
        }
        Ok(provided)
    })
}
