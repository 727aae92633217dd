//! The plugin registry: the core never hard-codes how a health check, a lifecycle
//! stage or a legacy-process match is done. It hands a [`HookSpec`] to the
//! [`Registry`] and gets back something it can await with a deadline.
//!
//! Providers plug in without touching the core: the built-in plugins, the Lua
//! engine (functions and `{lua=…, fn=…}` scripts) and native libraries each
//! implement [`PluginProvider`].

pub mod builtin;
pub mod native;

use crate::config::hook::HookSpec;
use crate::config::model::Policy;
use crate::events::EventSink;
use crate::observability::metrics::hooks;
use serde_json::{Map, Value};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::Instant;

crate::util::names::wire_names! {
    /// The stage a hook runs for (`ctx.stage` in Lua), also the hook kinds a native
    /// plugin declares in its manifest.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Stage {
        Quiet = "quiet",
        Drain = "drain",
        Stop = "stop",
        Health = "health",
        Match = "match",
    }
}

impl Stage {
    /// Quiet, drain and stop: the stages of the `lifecycle` extension point
    /// (health and match have their own).
    pub fn is_lifecycle(self) -> bool {
        matches!(self, Stage::Quiet | Stage::Drain | Stage::Stop)
    }
}

/// What a hook knows about the managed process it acts on (`ctx.process`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessInfo {
    /// Base process id (no `#n`).
    pub id: String,
    /// `id#n` for replicas, else the id.
    pub instance_id: String,
    /// Current wrapper pid, if the wrapper is alive.
    pub pid: Option<i32>,
    /// The retained process-group id (the first wrapper pid), kept after the
    /// wrapper exits so stragglers in the group can still be signalled.
    pub pgid: Option<i32>,
    pub release_id: String,
    pub release_path: String,
    pub revision: String,
    pub port: Option<u16>,
    pub policy: Policy,
    /// 0-based, like `ROLLBRIDGE_REPLICA_INDEX`.
    pub replica_index: u32,
    pub replica_count: u32,
    /// The full environment the process was started with.
    pub env: Vec<(String, String)>,
    /// The process's working directory.
    pub cwd: PathBuf,
}

/// One invocation of a lifecycle or health hook.
#[derive(Debug, Clone)]
pub struct HookCall {
    pub stage: Stage,
    pub process: ProcessInfo,
    /// The stage's bound; the hook must finish (or be abandoned) by then.
    pub deadline: Instant,
    /// Extra keys of the hook value (`ctx.options`), without `lua`/`fn`/`plugin`.
    pub options: Map<String, Value>,
    pub events: EventSink,
}

/// The verdict of one health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthVerdict {
    Healthy,
    /// Not ready yet; the detail becomes the deploy error if the deadline passes.
    NotYet(String),
}

/// A process as legacy-takeover matchers see it (read from `/proc`).
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyProcess {
    pub pid: i32,
    pub ppid: i32,
    pub cmdline: String,
    pub cwd: Option<String>,
    pub user: Option<String>,
}

/// Why a hook did not complete.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HookError {
    /// The hook ran past its stage bound and was abandoned/interrupted.
    #[error("timed out after {0} ms")]
    TimedOut(u64),
    /// The hook raised an error or returned something it must not.
    #[error("{0}")]
    Failed(String),
    /// The hook failed and has already recorded its own event (the built-in
    /// `command` plugin reports `quiet command exited non-zero` and friends), so the
    /// caller must not add a generic `hook failed` event.
    #[error("{0}")]
    Reported(String),
}

pub type HookFuture<T> = Pin<Box<dyn Future<Output = Result<T, HookError>> + Send + 'static>>;

/// A quiet, drain or stop hook. Returning `Ok` means the stage is done.
pub trait LifecyclePlugin: Send + Sync {
    fn name(&self) -> &str;
    fn run(&self, call: HookCall) -> HookFuture<()>;
}

/// A readiness probe for a new proxied process.
pub trait HealthPlugin: Send + Sync {
    fn name(&self) -> &str;
    fn probe(&self, call: HookCall) -> HookFuture<HealthVerdict>;
}

/// Decides whether a running process is a legacy process to stop.
pub trait MatcherPlugin: Send + Sync {
    fn name(&self) -> &str;
    fn matches(&self, process: LegacyProcess, deadline: Instant) -> HookFuture<bool>;
}

/// A source of plugins. Each method returns `None` when the provider does not
/// handle that hook value, so the registry can ask the next provider.
pub trait PluginProvider: Send + Sync {
    fn lifecycle(&self, spec: &HookSpec, stage: Stage) -> Option<Arc<dyn LifecyclePlugin>>;
    fn health(&self, spec: &HookSpec) -> Option<Arc<dyn HealthPlugin>>;
    fn matcher(&self, spec: &HookSpec) -> Option<Arc<dyn MatcherPlugin>>;
    /// Plugin names this provider answers to in `{plugin = "<name>"}`.
    fn plugin_names(&self) -> Vec<String>;
}

/// A hook value no provider could resolve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("no plugin can run {kind} hook \"{plugin}\"")]
pub struct UnresolvedHook {
    pub kind: &'static str,
    pub plugin: String,
}

/// Resolves hook values to runnable plugins by asking each provider in order.
/// Every plugin it hands out reports each call (plugin, stage, outcome, duration)
/// for metrics and `debug` diagnostics; see `observability::metrics`.
#[derive(Clone, Default)]
pub struct Registry {
    providers: Vec<Arc<dyn PluginProvider>>,
}

impl Registry {
    pub fn new(providers: Vec<Arc<dyn PluginProvider>>) -> Registry {
        Registry { providers }
    }

    /// The plugins every config can name: the built-in ones, then the native
    /// libraries listed under `plugins.native` (loaded here). The config's Lua
    /// hooks come on top (`lua::LuaPlugins`, added by whoever holds the Lua state).
    pub fn with_native_plugins(native: &[PathBuf]) -> Result<Registry, native::NativePluginError> {
        let mut registry = Registry::new(vec![Arc::new(builtin::BuiltinPlugins)]);
        if !native.is_empty() {
            registry.add_provider(Arc::new(native::NativePlugins::load(native)?));
        }
        Ok(registry)
    }

    pub fn add_provider(&mut self, provider: Arc<dyn PluginProvider>) {
        self.providers.push(provider);
    }

    pub fn lifecycle(
        &self,
        spec: &HookSpec,
        stage: Stage,
    ) -> Result<Arc<dyn LifecyclePlugin>, UnresolvedHook> {
        self.providers
            .iter()
            .find_map(|p| p.lifecycle(spec, stage))
            .map(|plugin| Arc::new(hooks::ObservedLifecycle(plugin)) as Arc<dyn LifecyclePlugin>)
            .ok_or_else(|| UnresolvedHook {
                kind: "lifecycle",
                plugin: spec.plugin_name(),
            })
    }

    pub fn health(&self, spec: &HookSpec) -> Result<Arc<dyn HealthPlugin>, UnresolvedHook> {
        self.providers
            .iter()
            .find_map(|p| p.health(spec))
            .map(|plugin| Arc::new(hooks::ObservedHealth(plugin)) as Arc<dyn HealthPlugin>)
            .ok_or_else(|| UnresolvedHook {
                kind: "health",
                plugin: spec.plugin_name(),
            })
    }

    pub fn matcher(&self, spec: &HookSpec) -> Result<Arc<dyn MatcherPlugin>, UnresolvedHook> {
        self.providers
            .iter()
            .find_map(|p| p.matcher(spec))
            .map(|plugin| Arc::new(hooks::ObservedMatcher(plugin)) as Arc<dyn MatcherPlugin>)
            .ok_or_else(|| UnresolvedHook {
                kind: "matcher",
                plugin: spec.plugin_name(),
            })
    }

    /// Every name usable in `{plugin = "<name>"}`.
    pub fn plugin_names(&self) -> Vec<String> {
        self.providers
            .iter()
            .flat_map(|p| p.plugin_names())
            .collect()
    }
}
