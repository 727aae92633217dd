//! rollbridge: a zero-downtime deploy supervisor for one host.
//!
//! The crate is split by responsibility; each folder is one part of the system:
//! - [`cli`]: the `rollbridge` command line (one file per command);
//! - [`config`]: loading (Lua / JSON / legacy JS), the typed model, validation, templates;
//! - [`control`]: the control-socket protocol types, server and client;
//! - [`daemon`]: the single owner of daemon state (releases, flows, persistence);
//! - [`events`]: the event record, ring and sink every part reports through (a leaf);
//! - [`process`]: spawning and supervising managed processes;
//! - [`proxy`]: the HTTP/WebSocket proxy with per-request routing and drain tracking;
//! - [`plugins`]: the hook/plugin registry and its built-in plugins;
//! - [`lua`]: the embedded Lua engine (sandbox, hook API);
//! - [`observability`]: event and diagnostic logging, systemd integration, metrics;
//! - [`util`]: small shared helpers (time formatting, signals, `/proc`).

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod events;
pub mod lua;
pub mod observability;
pub mod plugins;
pub mod process;
pub mod proxy;
pub mod util;
