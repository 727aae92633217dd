//! Supervision and hooks below the daemon: managed processes, the Lua engine and library, the editor annotations and native plugins, each on real process groups.
//!
//! One test binary per part (see docs/testing.md); the shared harness is `tests/support/`.

#[path = "../support/mod.rs"]
mod support;

mod lua_hooks;
mod lua_library;
mod lua_types;
mod native_plugins;
mod process;
