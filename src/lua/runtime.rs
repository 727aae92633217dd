//! [`LuaRuntime`]: the Lua state of a loaded config, kept alive with the functions
//! its hook values refer to.
//!
//! A Lua config's functions in hook positions become `HookSpec::LuaFunction { id }`;
//! `{lua = "file.lua", fn = "name"}` hooks become `HookSpec::LuaFile`, whose scripts
//! are run once at load time. Both are looked up here by the hook engine. The
//! runtime is cheap to clone and can be shared across threads (mlua's `send`
//! feature serialises access to the state).
//!
//! Calling into Lua: wrap every call in [`Budget::run`] (via
//! `runtime.budget().run(limit, || ...)`). Outside of it no deadline is set and a
//! runaway function would only be stopped by the memory limit. The budget belongs
//! to the state, so calls that overlap must not each set it: the hook engine
//! (`lua::engine`) gives every overlapping hook call its own deadline with
//! [`Budget::run_on_thread`] instead.

use super::sandbox::{self, Budget, Limits};
use crate::config::hook::HookSpec;
use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, Table, Value};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A sandboxed Lua state plus the functions found in a config.
#[derive(Clone)]
pub struct LuaRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    lua: Lua,
    budget: Arc<Budget>,
    limits: Limits,
    config_dir: PathBuf,
    functions: HashMap<u64, Function>,
    script_functions: HashMap<(PathBuf, String), Function>,
}

impl fmt::Debug for LuaRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LuaRuntime")
            .field("config_dir", &self.inner.config_dir)
            .field("limits", &self.inner.limits)
            .field("functions", &self.inner.functions.len())
            .field("script_functions", &self.inner.script_functions.len())
            .finish()
    }
}

impl LuaRuntime {
    /// A runtime with no functions, for running Lua outside a config.
    pub fn new(config_dir: &Path, limits: Limits) -> mlua::Result<LuaRuntime> {
        Ok(RuntimeBuilder::new(config_dir, limits)?.finish(&BTreeSet::new()))
    }

    /// The Lua state (sandboxed, with the time hook and memory limit installed).
    pub fn lua(&self) -> &Lua {
        &self.inner.lua
    }

    /// The deadline checked by the instruction hook; see [`Budget::run`].
    pub fn budget(&self) -> &Budget {
        &self.inner.budget
    }

    /// A shared handle to the budget, for hooks installed on the state (which must
    /// not hold the runtime itself: the state would then keep itself alive).
    pub fn budget_handle(&self) -> Arc<Budget> {
        self.inner.budget.clone()
    }

    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// The folder `require` and `{lua = ...}` paths are resolved against.
    pub fn config_dir(&self) -> &Path {
        &self.inner.config_dir
    }

    /// The function a `HookSpec::LuaFunction { id }` refers to.
    pub fn function(&self, id: u64) -> Option<Function> {
        self.inner.functions.get(&id).cloned()
    }

    /// The function `name` of the script `file` (as stored in `HookSpec::LuaFile`).
    pub fn script_function(&self, file: &Path, name: &str) -> Option<Function> {
        self.inner
            .script_functions
            .get(&(file.to_path_buf(), name.to_string()))
            .cloned()
    }

    /// The Lua function behind a hook value, if it is a Lua hook of this config.
    pub fn hook_function(&self, spec: &HookSpec) -> Option<Function> {
        match spec {
            HookSpec::LuaFunction { id, .. } => self.function(*id),
            HookSpec::LuaFile { file, function, .. } => self.script_function(file, function),
            HookSpec::Command(_) | HookSpec::Plugin { .. } => None,
        }
    }

    /// How many hook functions (inline and from scripts) this runtime holds.
    pub fn function_count(&self) -> usize {
        self.inner.functions.len() + self.inner.script_functions.len()
    }
}

/// Assembles a [`LuaRuntime`] while a config is being loaded.
pub struct RuntimeBuilder {
    lua: Lua,
    budget: Arc<Budget>,
    limits: Limits,
    config_dir: PathBuf,
    functions: HashMap<u64, Function>,
    next_id: u64,
    /// Scripts already run: the table they returned (if any) and their globals.
    scripts: HashMap<PathBuf, Result<(Option<Table>, Table), String>>,
    script_functions: HashMap<(PathBuf, String), Function>,
}

impl RuntimeBuilder {
    pub fn new(config_dir: &Path, limits: Limits) -> mlua::Result<RuntimeBuilder> {
        let (lua, budget) = sandbox::new_state(config_dir, &limits)?;
        Ok(RuntimeBuilder {
            lua,
            budget,
            limits,
            config_dir: config_dir.to_path_buf(),
            functions: HashMap::new(),
            next_id: 1,
            scripts: HashMap::new(),
            script_functions: HashMap::new(),
        })
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Runs `f` under the time limit; `Err(None)` means the limit stopped it.
    pub fn run_limited<R>(
        &self,
        f: impl FnOnce(&Lua) -> mlua::Result<R>,
    ) -> Result<R, Option<mlua::Error>> {
        let (result, tripped) = self.budget.run(self.limits.time, || f(&self.lua));
        match result {
            Ok(value) => Ok(value),
            Err(_) if tripped => Err(None),
            Err(error) => Err(Some(error)),
        }
    }

    /// Keeps a function and returns the id its hook value will carry.
    pub fn register_function(&mut self, function: Function) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.functions.insert(id, function);
        id
    }

    /// Ids of every registered function.
    pub fn function_ids(&self) -> BTreeSet<u64> {
        self.functions.keys().copied().collect()
    }

    /// Runs `file` (once; later calls reuse it) and finds its function `name`:
    /// a field of the table the script returns, or a global it defines. Each
    /// script gets its own globals, so scripts cannot clash.
    pub fn load_script_function(&mut self, file: &Path, name: &str) -> Result<(), String> {
        if !self.scripts.contains_key(file) {
            let outcome = self.run_script(file);
            self.scripts.insert(file.to_path_buf(), outcome);
        }
        let (returned, env) = match &self.scripts[file] {
            Ok(script) => script.clone(),
            Err(reason) => return Err(reason.clone()),
        };
        let lookup = |table: &Table| match table.raw_get::<Value>(name) {
            Ok(Value::Function(function)) => Some(function),
            _ => None,
        };
        let Some(function) = returned.as_ref().and_then(lookup).or_else(|| lookup(&env)) else {
            return Err(format!(
                "{} does not define a function named \"{name}\"",
                file.display()
            ));
        };
        self.script_functions
            .insert((file.to_path_buf(), name.to_string()), function);
        Ok(())
    }

    fn run_script(&self, file: &Path) -> Result<(Option<Table>, Table), String> {
        let source = sandbox::read_source(file)?;
        let chunk_name = sandbox::chunk_name(&self.config_dir, file);
        let outcome = self.run_limited(|lua| {
            let env = lua.create_table()?;
            let meta = lua.create_table()?;
            meta.raw_set("__index", lua.globals())?;
            env.set_metatable(Some(meta))?;
            let returned: Value = lua
                .load(source)
                .set_name(chunk_name)
                .set_mode(ChunkMode::Text)
                .set_environment(env.clone())
                .call(())?;
            let returned = match returned {
                Value::Table(table) => Some(table),
                _ => None,
            };
            Ok((returned, env))
        });
        outcome.map_err(|error| match error {
            None => format!(
                "{} did not finish within {} ms",
                file.display(),
                self.limits.time.as_millis()
            ),
            Some(error) if super::is_memory_error(&error) => format!(
                "{} used more than {} MiB of memory",
                file.display(),
                self.limits.memory_bytes / (1024 * 1024)
            ),
            Some(error) => super::error_line(&error),
        })
    }

    /// Freezes the runtime, keeping only the inline functions in `keep` (the ones
    /// the validated config refers to).
    pub fn finish(mut self, keep: &BTreeSet<u64>) -> LuaRuntime {
        self.functions.retain(|id, _| keep.contains(id));
        LuaRuntime {
            inner: Arc::new(Inner {
                lua: self.lua,
                budget: self.budget,
                limits: self.limits,
                config_dir: self.config_dir,
                functions: self.functions,
                script_functions: self.script_functions,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn runtime_can_be_shared_across_threads() {
        assert_send_sync::<LuaRuntime>();
    }
}
