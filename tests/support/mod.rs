//! The one support library of the integration tests.
//!
//! Every test binary (`tests/<part>/main.rs`) includes this module. What all
//! suites need sits at the top: the binary, free ports, `/proc` liveness,
//! process-group guards, a plain HTTP client (`host`) and the one polling rule
//! (`wait`) and one WebSocket client (`ws`). Each harness builds on them:
//!
//! | module | for |
//! | --- | --- |
//! | `daemon` | the real `rollbridge daemon` on a JSON config, its control socket, WebSockets through its proxy |
//! | `cli` | the real CLI against fake and real daemons in a sandbox |
//! | `proxy` | the proxy on its own, with upstreams written in Rust |
//! | `lua` | hooks and managed processes below the daemon |
//! | `config` | validation and loading of configs |
//! | `notify` | a fake systemd `NOTIFY_SOCKET` that records every notification |
//!
//! Liveness is read from `/proc` here rather than taken from the library, so a
//! bug in rollbridge's own process accounting cannot hide itself in the tests.
#![allow(dead_code, unused_imports)]

pub mod cli;
pub mod config;
pub mod daemon;
pub mod host;
pub mod lua;
pub mod notify;
pub mod proxy;
pub mod wait;
pub mod ws;

pub use host::*;
pub use wait::*;
