//! Stand-ins for values JSON cannot hold. Every config format is turned into a
//! `serde_json::Value` before validation; a Lua function or a NaN/infinite number
//! becomes a one-key object with a reserved key, which the validator recognises.
//! The keys start with a NUL character so no real config key can collide with
//! them, and a function marker is only honoured when its id is one the Lua runtime
//! actually registered.

use serde_json::{Map, Value};

/// `{MARKER: <id>}`: a Lua function registered in the config's `LuaRuntime`.
pub const LUA_FUNCTION_MARKER: &str = "\u{0}rollbridge:lua-function";
/// `{MARKER: "<text>"}`: a NaN or infinite number.
pub const NON_FINITE_MARKER: &str = "\u{0}rollbridge:non-finite";

pub fn lua_function(id: u64) -> Value {
    let mut map = Map::new();
    map.insert(LUA_FUNCTION_MARKER.to_string(), Value::from(id));
    Value::Object(map)
}

pub fn non_finite(text: &str) -> Value {
    let mut map = Map::new();
    map.insert(NON_FINITE_MARKER.to_string(), Value::from(text));
    Value::Object(map)
}

fn single_entry<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) if map.len() == 1 => map.get(key),
        _ => None,
    }
}

/// The function id when `value` is a Lua function marker.
pub fn as_lua_function(value: &Value) -> Option<u64> {
    single_entry(value, LUA_FUNCTION_MARKER).and_then(Value::as_u64)
}

pub fn is_non_finite(value: &Value) -> bool {
    single_entry(value, NON_FINITE_MARKER).is_some()
}
