//! Native plugins: shared libraries listed under `plugins.native`, loaded with
//! libloading and served to the registry like any other provider.
//!
//! The boundary is deliberately narrow. A library exports one function,
//! `rollbridge_plugin_entry`, returning a small versioned descriptor (ABI version,
//! name, JSON manifest, a `call` function and a `free_response` function). Requests
//! and responses are JSON text, so the only layout both sides must agree on is the
//! descriptor. docs/plugins.md is the author-facing contract.
//!
//! Native code runs inside the daemon with its privileges and cannot be
//! interrupted: the host stops *waiting* at the stage deadline, but a call that
//! overruns keeps its thread until the plugin returns.

mod abi;
mod call;
mod error;
mod library;
mod manifest;
mod provider;
mod wire;

/// The hook kinds of a manifest are the hook [`Stage`](crate::plugins::Stage)s;
/// this name stays for code written against it.
pub use crate::plugins::Stage as HookKind;
pub use abi::{ABI_VERSION, ENTRY_SYMBOL};
pub use call::MAX_ABANDONED_CALLS;
pub use error::NativePluginError;
pub use provider::{NativePluginInfo, NativePlugins, check_native_plugins, config_inspector};
