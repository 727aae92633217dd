//! Configuration: loading (Lua, JSON, legacy JavaScript), the typed model,
//! validation and templates.
//!
//! Every format is first turned into a `serde_json::Value`, then one validator
//! produces the typed [`model::Config`], so messages are the same for every format.

pub mod error;
pub mod hook;
mod js;
pub mod load;
mod lua_paths;
mod lua_source;
pub mod markers;
pub mod model;
pub mod template;
pub mod validate;

pub use error::{ConfigError, Issue};
pub use load::{
    LoadOptions, LoadedConfig, MAX_CONFIG_BYTES, check, check_strictly, check_with, load,
    load_source, load_with, resolve_config_path,
};
pub use validate::{
    HookKind, KnownPlugins, NativeInspector, Syntax, ValidationContext, ValidationReport,
    validate_value,
};
