//! Building what a loaded config needs at run time: the plugin registry that
//! resolves its hooks.

use super::errors::SetupError;
use crate::config::LoadedConfig;
use crate::lua::LuaPlugins;
use crate::plugins::Registry;
use std::sync::Arc;

/// The registry for `loaded`: the built-in plugins, the native libraries listed
/// under `plugins.native`, then the config's Lua hooks (run by a hook engine of
/// their own, which ends once every process holding this registry is gone).
pub fn registry_for(loaded: &LoadedConfig) -> Result<Registry, SetupError> {
    let mut registry = Registry::with_native_plugins(&loaded.config.plugins.native)?;
    if let Some(lua) = LuaPlugins::for_config(loaded)? {
        registry.add_provider(Arc::new(lua));
    }
    Ok(registry)
}
