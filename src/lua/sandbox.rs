//! A restricted Lua state for configs and hooks.
//!
//! What a script can reach: the `string`, `table`, `math`, `utf8` and `coroutine`
//! libraries; `os.getenv`, `os.time`, `os.clock`, `os.date` and `os.difftime`;
//! `require` of modules in the config's folder and of the embedded library; `load`
//! for text chunks only. What it cannot: `io`, the rest of `os` (no execute, exit,
//! remove, rename, tmpname), `loadfile`, `dofile`, binary chunks, C modules,
//! `string.dump`, `debug`. `print` goes to the debug log.
//!
//! Limits: an instruction-count hook stops code that runs past its time budget (also
//! through `pcall` and coroutines, which re-raise once the budget is spent), and a
//! memory limit stops large allocations.

use super::library;
use crate::util::errno::plain_io_reason;
use mlua::chunk::ChunkMode;
use mlua::{
    Function, HookTriggers, IntoLuaMulti, Lua, LuaOptions, MultiValue, StdLib, Table, Value,
    VmState,
};
use std::cell::Cell;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The largest Lua source file rollbridge reads.
pub const MAX_SOURCE_BYTES: u64 = 16 * 1024 * 1024;

/// The error message raised inside Lua when the time budget is spent.
pub const TIME_LIMIT_MESSAGE: &str = "rollbridge: Lua time limit reached";

/// Time and memory bounds of a Lua state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long one evaluation (a config, a script, a hook call) may run.
    pub time: Duration,
    /// The most memory the whole Lua state may use.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: Duration::from_secs(2),
            memory_bytes: 64 * 1024 * 1024,
        }
    }
}

thread_local! {
    /// The deadline of the hook call this OS thread is currently running Lua for
    /// (see [`Budget::run_on_thread`]). A Lua state runs on one OS thread at a time
    /// (mlua locks it), so a per-thread deadline lets hooks with different stage
    /// bounds share one state without racing on a shared deadline.
    static THREAD_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Set when the instruction hook stopped code for passing the thread deadline.
    static THREAD_TRIPPED: Cell<bool> = const { Cell::new(false) };
}

/// The deadline of the Lua code currently running in a state. The instruction
/// hook checks it; one budget belongs to one state, so callers that run Lua
/// concurrently on the same state must share one deadline — or use
/// [`Budget::run_on_thread`], whose deadline belongs to the calling OS thread.
#[derive(Debug)]
pub struct Budget {
    base: Instant,
    /// Nanoseconds after `base`, plus one; 0 means "no deadline".
    deadline: AtomicU64,
    /// Set when the hook stopped code for running past the deadline.
    tripped: AtomicBool,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            base: Instant::now(),
            deadline: AtomicU64::new(0),
            tripped: AtomicBool::new(false),
        }
    }
}

impl Budget {
    /// Sets the deadline `limit` from now and clears the tripped flag.
    pub fn start(&self, limit: Duration) {
        let at = (Instant::now() + limit).saturating_duration_since(self.base);
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX - 1);
        self.tripped.store(false, Ordering::SeqCst);
        self.deadline.store(nanos + 1, Ordering::SeqCst);
    }

    /// Removes the deadline.
    pub fn clear(&self) {
        self.deadline.store(0, Ordering::SeqCst);
    }

    /// Whether a deadline (the state's or the calling thread's) is set and has
    /// passed.
    pub fn expired(&self) -> bool {
        thread_deadline_passed() || self.state_deadline_passed()
    }

    fn state_deadline_passed(&self) -> bool {
        match self.deadline.load(Ordering::SeqCst) {
            0 => false,
            deadline => {
                Instant::now()
                    .saturating_duration_since(self.base)
                    .as_nanos()
                    >= u128::from(deadline - 1)
            }
        }
    }

    /// Whether the hook stopped code since the last `start`.
    pub fn tripped(&self) -> bool {
        self.tripped.load(Ordering::SeqCst)
    }

    /// Runs `f` under a deadline `limit` from now. Returns its result and whether
    /// the time limit stopped it.
    pub fn run<R>(&self, limit: Duration, f: impl FnOnce() -> R) -> (R, bool) {
        self.start(limit);
        let result = f();
        let tripped = self.tripped();
        self.clear();
        (result, tripped)
    }

    /// Runs `f` (which polls or calls Lua) with a deadline that applies only to
    /// Lua code run by this OS thread during `f`. Returns its result and whether
    /// the deadline stopped Lua code. Nested calls keep the outer deadline
    /// afterwards.
    pub fn run_on_thread<R>(deadline: Instant, f: impl FnOnce() -> R) -> (R, bool) {
        let outer = THREAD_DEADLINE.replace(Some(deadline));
        let outer_tripped = THREAD_TRIPPED.replace(false);
        let result = f();
        let tripped = THREAD_TRIPPED.replace(outer_tripped);
        THREAD_DEADLINE.set(outer);
        (result, tripped)
    }

    /// The check the instruction hook runs: an error once a deadline has passed.
    pub fn check(&self) -> mlua::Result<VmState> {
        if thread_deadline_passed() {
            THREAD_TRIPPED.set(true);
            Err(mlua::Error::runtime(TIME_LIMIT_MESSAGE))
        } else if self.state_deadline_passed() {
            self.tripped.store(true, Ordering::SeqCst);
            Err(mlua::Error::runtime(TIME_LIMIT_MESSAGE))
        } else {
            Ok(VmState::Continue)
        }
    }
}

fn thread_deadline_passed() -> bool {
    THREAD_DEADLINE
        .get()
        .is_some_and(|deadline| Instant::now() >= deadline)
}

/// Trusted setup code: wraps the functions that could swallow the time-limit error
/// or load unsafe chunks. Receives `expired` (a Rust function) as its argument.
const PRELUDE: &str = r#"
local expired = ...
local raw_pcall, raw_xpcall, raw_resume, raw_load = pcall, xpcall, coroutine.resume, load
local raw_collect, error, select = collectgarbage, error, select

-- Once the time budget is spent, a caught error is raised again so a script
-- cannot catch the time limit and carry on.
local function pass(ok, ...)
  if not ok and expired() then error((...), 0) end
  return ok, ...
end
pcall = function(f, ...) return pass(raw_pcall(f, ...)) end
xpcall = function(f, handler, ...) return pass(raw_xpcall(f, handler, ...)) end
coroutine.resume = function(co, ...) return pass(raw_resume(co, ...)) end

-- Text chunks only: binary chunks can crash the interpreter.
load = function(chunk, name, mode, ...)
  if select('#', ...) > 0 then return raw_load(chunk, name, "t", ...) end
  return raw_load(chunk, name, "t")
end

local allowed_gc = { collect = true, count = true, step = true, isrunning = true }
collectgarbage = function(option, ...)
  if option ~= nil and not allowed_gc[option] then
    error("collectgarbage('" .. tostring(option) .. "') is not available in rollbridge's Lua sandbox", 2)
  end
  return raw_collect(option, ...)
end
"#;

/// Builds a sandboxed state whose `require` looks in `root` (the config's folder)
/// and in the embedded library.
pub fn new_state(root: &Path, limits: &Limits) -> mlua::Result<(Lua, Arc<Budget>)> {
    let libs = StdLib::COROUTINE
        | StdLib::TABLE
        | StdLib::STRING
        | StdLib::UTF8
        | StdLib::MATH
        | StdLib::OS
        | StdLib::PACKAGE;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    lua.set_memory_limit(limits.memory_bytes)?;

    let budget = Arc::new(Budget::default());
    let hook_budget = budget.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(1000),
        move |_, _| hook_budget.check(),
    )?;

    let globals = lua.globals();
    globals.raw_set("dofile", Value::Nil)?;
    globals.raw_set("loadfile", Value::Nil)?;
    let string: Table = globals.get("string")?;
    string.raw_set("dump", Value::Nil)?;

    let os = lua.create_table()?;
    let full_os: Table = globals.get("os")?;
    for name in ["getenv", "time", "clock", "date", "difftime"] {
        os.raw_set(name, full_os.get::<Function>(name)?)?;
    }
    globals.raw_set("os", os)?;

    globals.raw_set("print", lua.create_function(log_print)?)?;

    let package: Table = globals.get("package")?;
    for name in ["loadlib", "searchpath"] {
        package.raw_set(name, Value::Nil)?;
    }
    package.raw_set("path", "")?;
    package.raw_set("cpath", "")?;
    let searchers: Table = package.get("searchers")?;
    let preload: Function = searchers.get(1)?;
    let new_searchers =
        lua.create_sequence_from([preload, module_searcher(&lua, root.to_path_buf())?])?;
    package.raw_set("searchers", new_searchers)?;

    let expired_budget = budget.clone();
    let expired = lua.create_function(move |_, ()| Ok(expired_budget.expired()))?;
    lua.load(PRELUDE)
        .set_name("=[rollbridge sandbox]")
        .set_mode(ChunkMode::Text)
        .call::<()>(expired)?;

    Ok((lua, budget))
}

fn log_print(_: &Lua, args: MultiValue) -> mlua::Result<()> {
    let parts: Vec<String> = args
        .iter()
        .map(|value| match value {
            Value::String(text) => text.to_string_lossy(),
            Value::Integer(n) => n.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Boolean(b) => b.to_string(),
            Value::Nil => "nil".to_string(),
            other => other.type_name().to_string(),
        })
        .collect();
    tracing::debug!(target: "rollbridge::lua", "{}", parts.join("\t"));
    Ok(())
}

/// The `require` searcher: the embedded library for `rollbridge` and
/// `rollbridge.*`, the config's folder for everything else.
fn module_searcher(lua: &Lua, root: PathBuf) -> mlua::Result<Function> {
    lua.create_function(move |lua, name: String| -> mlua::Result<MultiValue> {
        if library::is_reserved(&name) {
            return match library::find(&name) {
                Some((chunk_name, source)) => {
                    let loader = lua
                        .load(source)
                        .set_name(chunk_name.clone())
                        .set_mode(ChunkMode::Text)
                        .into_function()?;
                    (loader, chunk_name).into_lua_multi(lua)
                }
                None => format!(
                    "no built-in module '{name}' (built-in modules: {})",
                    library::module_names().collect::<Vec<_>>().join(", ")
                )
                .into_lua_multi(lua),
            };
        }
        match module_file(&root, &name) {
            Ok(path) => {
                let source = read_source(&path).map_err(mlua::Error::runtime)?;
                let loader = lua
                    .load(source)
                    .set_name(chunk_name(&root, &path))
                    .set_mode(ChunkMode::Text)
                    .into_function()?;
                (loader, path.display().to_string()).into_lua_multi(lua)
            }
            Err(reason) => reason.into_lua_multi(lua),
        }
    })
}

/// The file for module `name` inside `root`: `a.b` is `a/b.lua` or `a/b/init.lua`.
fn module_file(root: &Path, name: &str) -> Result<PathBuf, String> {
    let segments: Vec<&str> = name.split('.').collect();
    let valid = segments.iter().all(|segment| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if !valid {
        return Err(format!(
            "'{name}' is not a valid module name (use letters, digits, '_' and '-', separated by dots)"
        ));
    }
    let base = segments
        .iter()
        .fold(root.to_path_buf(), |path, s| path.join(s));
    let candidates = [base.with_extension("lua"), base.join("init.lua")];
    let Some(found) = candidates.iter().find(|candidate| candidate.is_file()) else {
        return Err(format!(
            "no file '{}' or '{}' in the config's folder",
            candidates[0].display(),
            candidates[1].display()
        ));
    };
    // A symlink must not lead out of the config's folder.
    let inside = match (found.canonicalize(), root.canonicalize()) {
        (Ok(file), Ok(root)) => file.starts_with(root),
        _ => false,
    };
    if !inside {
        return Err(format!(
            "'{}' resolves outside the config's folder",
            found.display()
        ));
    }
    Ok(found.clone())
}

/// `@<path relative to root>`: short names keep Lua's messages readable (Lua
/// truncates long chunk names).
pub fn chunk_name(root: &Path, path: &Path) -> String {
    let shown = path.strip_prefix(root).unwrap_or(path);
    format!("@{}", shown.display())
}

/// Reads a Lua source file, refusing files over [`MAX_SOURCE_BYTES`].
pub fn read_source(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read {}: {}", path.display(), plain_io_reason(&e)))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(format!("cannot read {}: it is a directory", path.display()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {}", path.display(), plain_io_reason(&e)))?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(format!(
            "{} is larger than {} MiB",
            path.display(),
            MAX_SOURCE_BYTES / (1024 * 1024)
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_trips_only_past_its_deadline() {
        let budget = Budget::default();
        assert!(!budget.expired(), "no deadline set");
        let (value, tripped) = budget.run(Duration::from_secs(60), || 7);
        assert_eq!((value, tripped), (7, false));
        budget.start(Duration::ZERO);
        assert!(budget.expired());
        assert!(budget.check().is_err());
        assert!(budget.tripped());
        budget.clear();
        assert!(!budget.expired());
    }

    #[test]
    fn hook_calls_are_bounded_by_the_budget() {
        let dir = std::env::temp_dir();
        let (lua, budget) = new_state(&dir, &Limits::default()).unwrap();
        let spin: Function = lua
            .load("return function() while true do end end")
            .eval()
            .unwrap();
        let (result, tripped) = budget.run(Duration::from_millis(50), || spin.call::<()>(()));
        assert!(result.is_err());
        assert!(tripped);
        // The state stays usable afterwards.
        let (sum, tripped) = budget.run(Duration::from_secs(5), || {
            lua.load("return 1 + 2").eval::<i64>()
        });
        assert_eq!((sum.unwrap(), tripped), (3, false));
    }
}
