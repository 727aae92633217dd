//! Examples in fixes, written in the config's own syntax: a Lua config is shown
//! `port = { from = 18000, to = 18099 }`, a JSON config
//! `"port": {"from": 18000, "to": 18099}`, a JavaScript module
//! `port: {from: 18000, to: 18099}`.

use super::context::Syntax;
use serde_json::Value;

/// `key = value` (Lua), `"key": value` (JSON) or `key: value` (JavaScript).
pub(crate) fn assign(syntax: Syntax, key: &str, value: &Value) -> String {
    let value = literal(syntax, value);
    match syntax {
        Syntax::Lua => format!("{} = {value}", lua_key(key)),
        Syntax::Json => format!("{}: {value}", Value::from(key)),
        Syntax::JavaScript => format!("{key}: {value}"),
    }
}

/// A value as the config's syntax writes it.
pub(crate) fn literal(syntax: Syntax, value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(key, value)| assign(syntax, key, value))
                .collect();
            match syntax {
                Syntax::Lua => format!("{{ {} }}", entries.join(", ")),
                _ => format!("{{{}}}", entries.join(", ")),
            }
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|item| literal(syntax, item)).collect();
            match syntax {
                Syntax::Lua => format!("{{ {} }}", items.join(", ")),
                _ => format!("[{}]", items.join(", ")),
            }
        }
        Value::Null if syntax == Syntax::Lua => "nil".to_string(),
        other => other.to_string(),
    }
}

fn lua_key(key: &str) -> String {
    let identifier = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        key.to_string()
    } else {
        format!("[{}]", Value::from(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_syntax_writes_its_own_literals() {
        let port = json!({"from": 18000, "to": 18099});
        let plugins = json!({"native": ["./lib.so"]});
        for (syntax, key, value, expected) in [
            (
                Syntax::Lua,
                "port",
                &port,
                "port = { from = 18000, to = 18099 }",
            ),
            (
                Syntax::Json,
                "port",
                &port,
                "\"port\": {\"from\": 18000, \"to\": 18099}",
            ),
            (
                Syntax::JavaScript,
                "port",
                &port,
                "port: {from: 18000, to: 18099}",
            ),
            (
                Syntax::Lua,
                "plugins",
                &plugins,
                "plugins = { native = { \"./lib.so\" } }",
            ),
            (
                Syntax::Json,
                "plugins",
                &plugins,
                "\"plugins\": {\"native\": [\"./lib.so\"]}",
            ),
            (Syntax::Lua, "x-y", &json!(1), "[\"x-y\"] = 1"),
        ] {
            assert_eq!(assign(syntax, key, value), expected);
        }
    }
}
