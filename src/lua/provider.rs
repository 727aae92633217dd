//! [`LuaPlugins`]: the plugin provider for Lua hook values — functions of a Lua
//! config (`HookSpec::LuaFunction`) and functions of `{lua = …, fn = …}` scripts
//! (`HookSpec::LuaFile`) — on every extension point: lifecycle stages, health
//! checks and legacy-takeover matchers.
//!
//! Calling conventions (docs/lua.md):
//! - lifecycle hooks: `fn(ctx)`; returning means the stage is done (the values
//!   are ignored), raising means it failed;
//! - health checks: `fn(ctx)` returns `true`, or `false, "detail"`;
//! - matchers: `fn(proc, ctx)` returns `true` or `false`.

use super::ctx::{CallScope, build_ctx, proc_table};
use super::engine::{EngineError, Finish, LuaEngine, Setup};
use super::runtime::LuaRuntime;
use crate::config::LoadedConfig;
use crate::config::hook::HookSpec;
use crate::plugins::{
    HealthPlugin, HealthVerdict, HookCall, HookError, HookFuture, LegacyProcess, LifecyclePlugin,
    MatcherPlugin, PluginProvider, Stage,
};
use mlua::{Function, IntoLuaMulti, MultiValue, Value};
use serde_json::Map;
use std::sync::Arc;
use tokio::time::Instant;

/// Runs the Lua hooks of one loaded config. Build a new one for every newly
/// loaded config: its hooks are the functions of that config's Lua state.
#[derive(Debug, Clone)]
pub struct LuaPlugins {
    engine: LuaEngine,
}

impl LuaPlugins {
    /// Starts the hook engine for `runtime`.
    pub fn new(runtime: &LuaRuntime) -> Result<LuaPlugins, EngineError> {
        Ok(LuaPlugins {
            engine: LuaEngine::start(runtime)?,
        })
    }

    /// The provider for a loaded config, or `None` when it has no Lua hooks.
    pub fn for_config(loaded: &LoadedConfig) -> Result<Option<LuaPlugins>, EngineError> {
        loaded.lua.as_ref().map(LuaPlugins::new).transpose()
    }

    pub fn engine(&self) -> &LuaEngine {
        &self.engine
    }

    fn hook(&self, spec: &HookSpec) -> Option<LuaHook> {
        let function = self.engine.runtime().hook_function(spec)?;
        Some(LuaHook {
            engine: self.engine.clone(),
            function,
            name: spec.plugin_name(),
            options: spec.options(),
        })
    }
}

impl PluginProvider for LuaPlugins {
    fn lifecycle(&self, spec: &HookSpec, _stage: Stage) -> Option<Arc<dyn LifecyclePlugin>> {
        self.hook(spec)
            .map(|hook| Arc::new(hook) as Arc<dyn LifecyclePlugin>)
    }

    fn health(&self, spec: &HookSpec) -> Option<Arc<dyn HealthPlugin>> {
        self.hook(spec)
            .map(|hook| Arc::new(hook) as Arc<dyn HealthPlugin>)
    }

    fn matcher(&self, spec: &HookSpec) -> Option<Arc<dyn MatcherPlugin>> {
        self.hook(spec)
            .map(|hook| Arc::new(hook) as Arc<dyn MatcherPlugin>)
    }

    /// Lua hooks are never named in `{plugin = …}`.
    fn plugin_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// One Lua hook value, ready to be called on any extension point.
struct LuaHook {
    engine: LuaEngine,
    function: Function,
    name: String,
    /// The hook value's extra keys; used for matchers, whose calls carry none.
    options: Map<String, serde_json::Value>,
}

impl LuaHook {
    /// Calls the hook as `fn(ctx)` for a lifecycle stage or health check.
    fn call_with_ctx<T: Send + 'static>(&self, call: HookCall, finish: Finish<T>) -> HookFuture<T> {
        let engine = self.engine.clone();
        let function = self.function.clone();
        let (scope, options) = CallScope::for_hook(call);
        let ctx_scope = scope.clone();
        let setup: Setup = Box::new(move |lua| {
            let ctx = build_ctx(lua, ctx_scope, &options)?;
            ctx.into_lua_multi(lua)
        });
        Box::pin(async move { engine.call(function, scope, setup, finish).await })
    }
}

impl LifecyclePlugin for LuaHook {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, call: HookCall) -> HookFuture<()> {
        self.call_with_ctx(call, Box::new(|_| Ok(())))
    }
}

impl HealthPlugin for LuaHook {
    fn name(&self) -> &str {
        &self.name
    }

    fn probe(&self, call: HookCall) -> HookFuture<HealthVerdict> {
        self.call_with_ctx(call, Box::new(health_verdict))
    }
}

impl MatcherPlugin for LuaHook {
    fn name(&self) -> &str {
        &self.name
    }

    fn matches(&self, process: LegacyProcess, deadline: Instant) -> HookFuture<bool> {
        let engine = self.engine.clone();
        let function = self.function.clone();
        let scope = CallScope::for_match(deadline, engine.runtime().config_dir().to_path_buf());
        let ctx_scope = scope.clone();
        let options = self.options.clone();
        let setup: Setup = Box::new(move |lua| {
            let proc = proc_table(lua, &process)?;
            let ctx = build_ctx(lua, ctx_scope, &options)?;
            (proc, ctx).into_lua_multi(lua)
        });
        Box::pin(async move {
            engine
                .call(function, scope, setup, Box::new(match_verdict))
                .await
        })
    }
}

/// What a Lua value is, for messages about wrong return values.
fn describe(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Nil) => "nothing".to_string(),
        Some(value) => format!("a {}", value.type_name()),
    }
}

fn health_verdict(values: MultiValue) -> Result<HealthVerdict, HookError> {
    let mut values = values.into_iter();
    let first = values.next();
    match first {
        Some(Value::Boolean(true)) => Ok(HealthVerdict::Healthy),
        Some(Value::Boolean(false)) => {
            let detail = match values.next() {
                Some(Value::String(text)) => text.to_string_lossy(),
                Some(Value::Integer(n)) => n.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "the health hook returned false".to_string(),
            };
            Ok(HealthVerdict::NotYet(detail))
        }
        other => Err(HookError::Failed(format!(
            "the health hook returned {}; it must return true, or false and a detail",
            describe(other.as_ref())
        ))),
    }
}

fn match_verdict(values: MultiValue) -> Result<bool, HookError> {
    match values.into_iter().next() {
        Some(Value::Boolean(matched)) => Ok(matched),
        other => Err(HookError::Failed(format!(
            "the matcher returned {}; it must return true or false",
            describe(other.as_ref())
        ))),
    }
}
