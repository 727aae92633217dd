//! Building what a loaded config needs at run time: the plugin registry that
//! resolves its hooks.

use crate::config::LoadedConfig;
use crate::plugins::Registry;
use crate::plugins::builtin::BuiltinPlugins;
use crate::plugins::native::NativePlugins;
use std::sync::Arc;

/// The registry for `loaded`: the built-in plugins, then the native libraries
/// listed under `plugins.native`. Lua hooks join here once a Lua provider exists.
pub fn registry_for(loaded: &LoadedConfig) -> Result<Registry, String> {
    let mut registry = Registry::new(vec![Arc::new(BuiltinPlugins)]);
    let native = &loaded.config.plugins.native;
    if !native.is_empty() {
        let plugins = NativePlugins::load(native).map_err(|error| error.to_string())?;
        registry.add_provider(Arc::new(plugins));
    }
    Ok(registry)
}
