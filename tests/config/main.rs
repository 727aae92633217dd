//! The configuration layer: validation rules and messages, defaults, loading of every format, the Lua sandbox, and the `validate` / `completion` commands driven through the real binary.
//!
//! One test binary per part (see docs/testing.md); the shared harness is `tests/support/`.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod defaults;
mod javascript;
mod loading;
mod lua;
mod messages;
mod new_user;
mod process_log;
mod proxy_edge;
