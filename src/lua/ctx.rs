//! The `ctx` value every Lua hook receives: what it acts on (`ctx.process`,
//! `ctx.options`, `ctx.stage`) and the helpers it may call (in [`super::api`]).
//!
//! `ctx` is a userdata, not a table, so a hook cannot replace the helpers or the
//! facts rollbridge gave it; the tables behind `ctx.process` and `ctx.options` are
//! fresh for every call, so a hook may scribble on them without affecting others.

use super::api;
use crate::events::EventSink;
use crate::plugins::builtin::shell::millis_until;
use crate::plugins::{HookCall, LegacyProcess, ProcessInfo, Stage};
use crate::process::ProcessGroup;
use mlua::serde::SerializeOptions;
use mlua::{
    AnyUserData, Lua, LuaSerdeExt, MetaMethod, Table, UserData, UserDataFields, UserDataMethods,
    Value,
};
use serde_json::Map;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Everything one hook call's helpers need, shared by the call and the tasks its
/// helpers start.
#[derive(Debug)]
pub(crate) struct CallScope {
    pub stage: Stage,
    /// The managed process the hook acts on; `None` for matchers.
    pub process: Option<ProcessInfo>,
    pub deadline: Instant,
    /// The stage's bound as the caller gave it (rounded up to whole
    /// milliseconds), for "timed out after … ms".
    pub bound_ms: u64,
    /// Where `ctx:event` records; `None` for matchers (they log instead).
    pub events: Option<EventSink>,
    /// The folder relative paths and `ctx:exec` use.
    pub cwd: PathBuf,
    /// Cancelled when the call ends, so helpers it started end too.
    ended: CancellationToken,
    group: OnceLock<Option<Arc<ProcessGroup>>>,
}

impl CallScope {
    /// The scope of a lifecycle or health call, and the call's options.
    pub fn for_hook(call: HookCall) -> (Arc<CallScope>, Map<String, serde_json::Value>) {
        let scope = Arc::new(CallScope {
            stage: call.stage,
            cwd: call.process.cwd.clone(),
            process: Some(call.process),
            deadline: call.deadline,
            bound_ms: millis_until(call.deadline),
            events: Some(call.events),
            ended: CancellationToken::new(),
            group: OnceLock::new(),
        });
        (scope, call.options)
    }

    pub fn for_match(deadline: Instant, cwd: PathBuf) -> Arc<CallScope> {
        Arc::new(CallScope {
            stage: Stage::Match,
            process: None,
            deadline,
            bound_ms: millis_until(deadline),
            events: None,
            cwd,
            ended: CancellationToken::new(),
            group: OnceLock::new(),
        })
    }

    /// Ends the call: helpers still running (commands, requests) are stopped.
    pub fn end(&self) {
        self.ended.cancel();
    }

    /// Time left until the stage's bound.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The process group the hook acts on, if the process was ever started.
    pub fn group(&self) -> Option<Arc<ProcessGroup>> {
        self.group
            .get_or_init(|| {
                let process = self.process.as_ref()?;
                let pgid = process.pgid.or(process.pid)?;
                Some(Arc::new(ProcessGroup::new(pgid)))
            })
            .clone()
    }

    /// The instance id and release id events of this call are reported under.
    pub fn event_prefix(&self) -> Option<(&str, &str)> {
        let process = self.process.as_ref()?;
        Some((&process.instance_id, &process.release_id))
    }

    /// Runs `work` as a task of its own that is dropped when the call ends, so a
    /// command or request a hook started never outlives the hook (even when the
    /// hook's Lua thread is only collected later). `None` when the call ended
    /// first.
    pub async fn run_bound<F>(&self, work: F) -> Option<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let ended = self.ended.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                biased;
                () = ended.cancelled() => None,
                output = work => Some(output),
            }
        });
        task.await.ok().flatten()
    }
}

/// The `ctx` userdata.
pub(crate) struct HookCtx {
    pub scope: Arc<CallScope>,
    process: Value,
    options: Table,
}

impl UserData for HookCtx {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("process", |_, this| Ok(this.process.clone()));
        fields.add_field_method_get("options", |_, this| Ok(this.options.clone()));
        fields.add_field_method_get("stage", |_, this| Ok(this.scope.stage.as_str()));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(match &this.scope.process {
                Some(process) => format!(
                    "rollbridge hook context ({} of {})",
                    this.scope.stage.as_str(),
                    process.instance_id
                ),
                None => format!("rollbridge hook context ({})", this.scope.stage.as_str()),
            })
        });
        methods.add_meta_method(MetaMethod::Index, |lua, _this, key: Value| {
            let name = key
                .to_string()
                .unwrap_or_else(|_| key.type_name().to_string());
            Err::<Value, _>(mlua::Error::runtime(unknown_member(lua, &name)))
        });
        api::add_methods(methods);
    }
}

/// The helpers of `ctx` (its methods), sorted. A unit test checks this list
/// against what [`api::add_methods`] registers; messages and tools read it.
pub const METHODS: &[&str] = &[
    "alive",
    "children",
    "event",
    "exec",
    "file_exists",
    "http",
    "read_file",
    "remaining_ms",
    "signal",
    "sleep",
    "wait_exit",
];

/// The fields of `ctx`, sorted.
pub const FIELDS: &[&str] = &["options", "process", "stage"];

/// The error for `ctx.<name>` when `ctx` has no such member: where it happened,
/// the closest member, and the list of members.
fn unknown_member(lua: &Lua, name: &str) -> String {
    let members: Vec<&str> = METHODS.iter().chain(FIELDS).copied().collect();
    let suggestion = match crate::config::validate::closest(name, &members) {
        Some(field) if FIELDS.contains(&field) => format!(" Did you mean ctx.{field}?"),
        Some(method) => format!(" Did you mean ctx:{method}(...)?"),
        None => String::new(),
    };
    format!(
        "{}ctx has no method or field \"{name}\".{suggestion} Its methods (call them with a colon, e.g. ctx:signal(\"TSTP\")): {}; its fields: {}.",
        caller_location(lua)
            .map(|at| format!("{at}: "))
            .unwrap_or_default(),
        METHODS.join(", "),
        FIELDS.join(", "),
    )
}

/// `file:line` of the innermost Lua function on the stack (the hook code that
/// made the mistake), skipping rollbridge's own glue.
fn caller_location(lua: &Lua) -> Option<String> {
    (1..12).find_map(|level| {
        lua.inspect_stack(level, |frame| {
            let source = frame.source();
            let file = source.short_src?;
            let line = frame.current_line()?;
            let glue = source.what == "C" || file.contains("__mlua");
            (!glue).then(|| format!("{file}:{line}"))
        })
        .flatten()
    })
}

/// The fields and methods registered on a real `ctx`, read back from the Lua
/// state that holds it. For drift checks of [`METHODS`], [`FIELDS`] and the
/// editor annotations in `lua/types/ctx.lua`; not used while hooks run.
pub fn registered_members() -> mlua::Result<(Vec<String>, Vec<String>)> {
    // SAFETY: a private, short-lived state that runs only the fixed chunk below;
    // the debug library is needed to read the metatable's upvalues.
    let lua = unsafe { Lua::unsafe_new() };
    let scope = CallScope::for_match(Instant::now(), PathBuf::from("/"));
    let ctx = build_ctx(&lua, scope, &Map::new())?;
    let (fields, methods): (Table, Table) = lua
        .load(
            r#"
            local ctx = ...
            local index = debug.getmetatable(ctx).__index
            local fields, methods = {}, {}
            local function collect(into, source)
              if type(source) == "table" then
                for name in pairs(source) do into[#into + 1] = name end
              end
            end
            for i = 1, 64 do
              local name, value = debug.getupvalue(index, i)
              if name == nil then break end
              if name == "field_getters" then collect(fields, value) end
              if name == "methods" then collect(methods, value) end
            end
            table.sort(fields)
            table.sort(methods)
            return fields, methods
            "#,
        )
        .call(ctx)?;
    let names = |table: Table| {
        table
            .sequence_values::<String>()
            .collect::<mlua::Result<Vec<_>>>()
    };
    Ok((names(fields)?, names(methods)?))
}

/// Builds `ctx` for one call.
pub(crate) fn build_ctx(
    lua: &Lua,
    scope: Arc<CallScope>,
    options: &Map<String, serde_json::Value>,
) -> mlua::Result<AnyUserData> {
    let process = match &scope.process {
        Some(process) => Value::Table(process_table(lua, process, &scope)?),
        None => Value::Nil,
    };
    let options = match options_value(lua, options)? {
        Value::Table(table) => table,
        _ => lua.create_table()?,
    };
    lua.create_userdata(HookCtx {
        scope,
        process,
        options,
    })
}

/// JSON options as a Lua table; `null` becomes `nil`, as if the key were absent.
fn options_value(lua: &Lua, options: &Map<String, serde_json::Value>) -> mlua::Result<Value> {
    let settings = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    lua.to_value_with(options, settings)
}

/// `ctx.process`.
fn process_table(lua: &Lua, process: &ProcessInfo, scope: &Arc<CallScope>) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 13)?;
    table.raw_set("id", process.id.as_str())?;
    table.raw_set("instanceId", process.instance_id.as_str())?;
    table.raw_set("pid", process.pid)?;
    table.raw_set("pgid", process.pgid)?;
    table.raw_set("releaseId", process.release_id.as_str())?;
    table.raw_set("releasePath", process.release_path.as_str())?;
    table.raw_set("revision", process.revision.as_str())?;
    table.raw_set("port", process.port)?;
    table.raw_set("policy", process.policy.as_str())?;
    table.raw_set("replicaIndex", process.replica_index)?;
    table.raw_set("replicaCount", process.replica_count)?;
    table.raw_set("cwd", process.cwd.to_string_lossy().as_ref())?;
    // `env` is built on first use: most hooks never read it, and it is the
    // largest part of the table.
    let scope = scope.clone();
    let build_env = lua.create_function(move |lua, (table, key): (Table, Value)| {
        if !matches!(&key, Value::String(name) if name.as_bytes().as_ref() == b"env") {
            return Ok(Value::Nil);
        }
        let Some(process) = &scope.process else {
            return Ok(Value::Nil);
        };
        let env = lua.create_table_with_capacity(0, process.env.len())?;
        for (name, value) in &process.env {
            env.raw_set(name.as_str(), value.as_str())?;
        }
        table.raw_set("env", &env)?;
        Ok(Value::Table(env))
    })?;
    let meta = lua.create_table_with_capacity(0, 1)?;
    meta.raw_set("__index", build_env)?;
    table.set_metatable(Some(meta))?;
    Ok(table)
}

/// The `proc` table a matcher receives.
pub(crate) fn proc_table(lua: &Lua, process: &LegacyProcess) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 5)?;
    table.raw_set("pid", process.pid)?;
    table.raw_set("ppid", process.ppid)?;
    table.raw_set("cmdline", process.cmdline.as_str())?;
    table.raw_set("cwd", process.cwd.as_deref())?;
    table.raw_set("user", process.user.as_deref())?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_member_lists_match_what_is_registered() {
        let (fields, methods) = registered_members().unwrap();
        assert_eq!(fields, FIELDS);
        assert_eq!(methods, METHODS);
    }
}
