//! Configuration: loading (Lua, JSON, legacy JavaScript), the typed model,
//! validation and templates.

pub mod hook;
pub mod model;
