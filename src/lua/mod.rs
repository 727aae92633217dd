//! The embedded Lua engine (Lua 5.4 through mlua).
//!
//! - [`sandbox`]: builds a restricted Lua state (no `io`, no process control, no
//!   file loading outside the config's folder) with time and memory limits;
//! - [`library`]: the Lua library compiled into the binary (`require("rollbridge")`);
//! - [`runtime`]: [`LuaRuntime`], a config's Lua state kept alive together with the
//!   functions its hook values point at, shareable across threads;
//! - [`engine`]: where hooks run (a thread per config's Lua state, deadlines,
//!   time slices); [`ctx`] and `api`: the `ctx` value hooks receive;
//! - [`provider`]: [`LuaPlugins`], the plugin provider the daemon registers;
//! - [`types`]: the editor annotations (`lua/types/`) `rollbridge lua-types` writes.

mod api;
pub mod ctx;
pub mod engine;
pub mod library;
pub mod provider;
pub mod runtime;
pub mod sandbox;
pub mod types;

pub use engine::{EngineError, LuaEngine};
pub use provider::LuaPlugins;
pub use runtime::{LuaRuntime, RuntimeBuilder};
pub use sandbox::{Budget, Limits};

/// One line describing a Lua error: the innermost message without the traceback,
/// e.g. `rollbridge.lua:3: attempt to index a nil value (global 'x')`.
pub fn error_line(error: &mlua::Error) -> String {
    let text = match error {
        mlua::Error::CallbackError { cause, traceback } => {
            return dot_call(cause, traceback).unwrap_or_else(|| error_line(cause));
        }
        mlua::Error::WithContext { cause, .. } => return error_line(cause),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(message) | mlua::Error::MemoryError(message) => message.clone(),
        mlua::Error::ExternalError(inner) => inner.to_string(),
        other => other.to_string(),
    };
    // Lua's own continuation lines (e.g. the places `require` looked in) are kept,
    // joined into one line; the traceback is dropped.
    let message = text.split("stack traceback:").next().unwrap_or_default();
    let line = message
        .lines()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        "unknown Lua error".to_string()
    } else {
        line
    }
}

/// `ctx.signal("TSTP")` instead of `ctx:signal("TSTP")`: the helper received the
/// string where `ctx` belongs. Said plainly, with the place of the call taken
/// from the traceback (mlua's own message has neither).
fn dot_call(cause: &mlua::Error, traceback: &str) -> Option<String> {
    let mlua::Error::BadArgument {
        to: Some(to),
        pos: 1,
        ..
    } = cause
    else {
        return None;
    };
    let helper = to.strip_prefix("HookCtx.")?;
    let place = traceback
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("[C]") && !line.contains("__mlua"))
        .find_map(|line| {
            let (file, rest) = line.split_once(':')?;
            let (number, _) = rest.split_once(':')?;
            number.parse::<u32>().ok()?;
            Some(format!("{file}:{number}: "))
        })
        .unwrap_or_default();
    Some(format!(
        "{place}ctx.{helper}(...) was called with a dot; call ctx's helpers with a colon, ctx:{helper}(...), so ctx itself is passed along"
    ))
}

/// Whether a Lua error is (or wraps) a memory limit error.
pub fn is_memory_error(error: &mlua::Error) -> bool {
    match error {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
            is_memory_error(cause)
        }
        _ => false,
    }
}
