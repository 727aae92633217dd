//! Hook values: the ways a config can say *how* a lifecycle stage, a health check or
//! a legacy-process match is done. The plugin registry turns a [`HookSpec`] into
//! something it can run.

use serde_json::{Map, Value};
use std::path::PathBuf;

/// One hook value from the config.
#[derive(Debug, Clone, PartialEq)]
pub enum HookSpec {
    /// A string: a shell command run by the built-in `command` plugin.
    Command(String),
    /// A Lua function defined in a Lua config. `id` identifies it inside the
    /// config's Lua runtime (see `config::LoadedConfig`).
    LuaFunction {
        id: u64,
        options: Map<String, Value>,
    },
    /// `{plugin = "<name>", ...options}`: a built-in or native plugin by name.
    Plugin {
        name: String,
        options: Map<String, Value>,
    },
    /// `{lua = "<file.lua>", fn = "<name>", ...options}`: a function from a Lua
    /// script. `file` is resolved against the config's folder.
    LuaFile {
        file: PathBuf,
        function: String,
        options: Map<String, Value>,
    },
}

impl HookSpec {
    /// The plugin name reported in `hook failed` events and metrics.
    pub fn plugin_name(&self) -> String {
        match self {
            HookSpec::Command(_) => "command".to_string(),
            HookSpec::LuaFunction { .. } => "lua".to_string(),
            HookSpec::Plugin { name, .. } => name.clone(),
            HookSpec::LuaFile { file, function, .. } => {
                format!("lua:{}#{}", file.display(), function)
            }
        }
    }

    /// Extra keys of the hook value, passed to the plugin as `options`.
    pub fn options(&self) -> Map<String, Value> {
        match self {
            HookSpec::Command(_) => Map::new(),
            HookSpec::LuaFunction { options, .. }
            | HookSpec::Plugin { options, .. }
            | HookSpec::LuaFile { options, .. } => options.clone(),
        }
    }
}
