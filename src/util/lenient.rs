//! Reading JSON written by someone else (an earlier release, another daemon, a
//! hand-edited file) field by field: a field with an unexpected shape falls back
//! to its default instead of failing the whole object, and a list keeps the
//! entries that have the expected shape. Use with `#[serde(default,
//! deserialize_with = "lenient")]`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Reads a field, falling back to its default when it has another shape.
pub fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    deserializer: D,
) -> Result<T, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

/// Reads a list, keeping the entries that have the expected shape (none when the
/// field is not a list).
pub fn lenient_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    Ok(lenient_entries(Value::deserialize(deserializer)?))
}

/// The object entries of `value` that read as `T` (none when it is not a list).
pub fn lenient_entries<T: DeserializeOwned>(value: Value) -> Vec<T> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .filter(Value::is_object)
            .filter_map(|item| serde_json::from_value(item).ok())
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads a key that may be present with `null`: missing is `None` (with
/// `#[serde(default)]`), `null` is `Some(None)`, so writing it back keeps the key.
pub fn present<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(Some(serde_json::from_value(value).unwrap_or_default()))
}

/// Reads any JSON value as `T` when it is an object; anything else (serde would
/// read an array as a struct) is the default.
pub fn object_or_default<T: DeserializeOwned + Default>(value: Value) -> T {
    match value {
        Value::Object(_) => serde_json::from_value(value).unwrap_or_default(),
        _ => T::default(),
    }
}
