//! The plugin's self-description: its name (from the descriptor) and the JSON
//! manifest listing the hooks it provides.

use crate::plugins::Stage;
use serde_json::Value;

/// Longest plugin name accepted; names appear in configs, events and logs.
const MAX_NAME_LEN: usize = 64;

/// What a plugin says it provides, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub hooks: Vec<Stage>,
}

/// Checks a plugin name: the same characters a config author can type without
/// quoting trouble, so `{plugin = "<name>"}` is unambiguous.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the plugin name is empty".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "the plugin name is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "the plugin name \"{name}\" contains {bad:?}; use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// Parses and validates the manifest of the plugin called `name`. Unknown keys are
/// ignored so later ABI revisions can add them; unknown hook kinds are refused so a
/// typo fails at load time instead of silently never running.
pub fn parse(name: &str, text: &str) -> Result<Manifest, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("it is not valid JSON ({e})"))?;
    let Value::Object(fields) = value else {
        return Err("it must be a JSON object".to_string());
    };
    match fields.get("name") {
        None => {}
        Some(Value::String(declared)) if declared == name => {}
        Some(Value::String(declared)) => {
            return Err(format!(
                "its \"name\" is \"{declared}\" but the descriptor says \"{name}\"; they must agree"
            ));
        }
        Some(_) => return Err("\"name\" must be a string".to_string()),
    }
    let Some(Value::Array(entries)) = fields.get("hooks") else {
        return Err("\"hooks\" must be an array of hook kinds".to_string());
    };
    if entries.is_empty() {
        return Err("\"hooks\" is empty, so the plugin provides nothing".to_string());
    }
    let mut hooks = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::String(text) = entry else {
            return Err(format!("hook kind {entry} is not a string"));
        };
        let kind = Stage::parse(text).ok_or_else(|| {
            let known: Vec<&str> = Stage::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "unknown hook kind \"{text}\"; known kinds are {}",
                known.join(", ")
            )
        })?;
        if !hooks.contains(&kind) {
            hooks.push(kind);
        }
    }
    Ok(Manifest { hooks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_minimal_manifest_and_ignores_unknown_keys() {
        let manifest = parse("q", r#"{"hooks":["drain","health","drain"],"future":1}"#).unwrap();
        assert_eq!(manifest.hooks, vec![Stage::Drain, Stage::Health]);
    }

    #[test]
    fn refuses_bad_manifests_with_a_reason() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[]", "JSON object"),
            (r#"{"name":"other","hooks":["drain"]}"#, "must agree"),
            (r#"{"hooks":[]}"#, "empty"),
            (r#"{"hooks":["drian"]}"#, "unknown hook kind \"drian\""),
            (r#"{"hooks":[1]}"#, "not a string"),
            (r#"{"name":"q"}"#, "\"hooks\" must be"),
        ];
        for (text, expected) in cases {
            let error = parse("q", text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn names_are_restricted_to_config_friendly_characters() {
        assert!(check_name("queue-drain_2.x").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("has space").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }
}
