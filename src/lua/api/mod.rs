//! The helpers of `ctx` (docs/lua.md describes each with an example).
//!
//! Every helper that waits is an async function: while it waits, the hook's Lua
//! thread is suspended and other hooks of the same config run. Work that touches
//! `/proc` or files runs on tokio's blocking pool, never on the Lua thread.

mod exec;
mod group;
mod http;
mod misc;

use super::ctx::HookCtx;
use mlua::UserDataMethods;
use std::time::Duration;

pub(crate) fn add_methods<M: UserDataMethods<HookCtx>>(methods: &mut M) {
    group::add_methods(methods);
    exec::add_methods(methods);
    http::add_methods(methods);
    misc::add_methods(methods);
}

/// A Lua error raised by a helper, prefixed with the helper's name.
fn raise(helper: &str, message: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("ctx:{helper}: {message}"))
}

/// A millisecond argument: `nil` stays `None`; anything else must be a finite
/// number ≥ 0.
fn millis(helper: &str, what: &str, value: Option<f64>) -> mlua::Result<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(ms) if ms.is_finite() && ms >= 0.0 => Ok(Some(Duration::from_secs_f64(ms / 1000.0))),
        Some(ms) => Err(raise(
            helper,
            format!("{what} must be a number of milliseconds (0 or more), not {ms}"),
        )),
    }
}
