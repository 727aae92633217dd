//! Tests of the configuration layer: validation rules and messages, defaults,
//! loading of every format, the Lua sandbox, and the `validate` / `completion`
//! commands driven through the real binary.

#[path = "config/support.rs"]
mod support;

#[path = "config/cli.rs"]
mod cli;
#[path = "config/defaults.rs"]
mod defaults;
#[path = "config/javascript.rs"]
mod javascript;
#[path = "config/loading.rs"]
mod loading;
#[path = "config/lua.rs"]
mod lua;
#[path = "config/messages.rs"]
mod messages;
#[path = "config/new_user.rs"]
mod new_user;
#[path = "config/process_log.rs"]
mod process_log;
#[path = "config/proxy_edge.rs"]
mod proxy_edge;
