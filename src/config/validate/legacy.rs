//! `legacyTakeover`: which processes of a pre-rollbridge supervisor
//! `predeploy-cleanup` may stop.

use super::{HookKind, Section, Validator, child, hooks, millis};
use crate::config::model::{LegacyProcessMatcher, LegacyTakeover, ProxyConfig};
use serde_json::Value;

const LEGACY_KEYS: &[&str] = &["forceStopTimeoutMs", "matchers", "processes", "screens"];
const MATCHER_KEYS: &[&str] = &["includes", "name"];

pub(super) fn validate_legacy_takeover(
    v: &mut Validator,
    value: Option<&Value>,
    proxy: &ProxyConfig,
) -> Option<LegacyTakeover> {
    let map = match v.section(
        value,
        "legacyTakeover",
        "Make legacyTakeover a table with screens, processes and/or matchers that describe the old processes to stop.",
    ) {
        Section::Present(map) => map,
        _ => return None,
    };
    v.known_keys(map, "legacyTakeover", LEGACY_KEYS);
    let force_stop_timeout_ms = v
        .non_negative_number(
            map.get("forceStopTimeoutMs"),
            "legacyTakeover.forceStopTimeoutMs",
            proxy.force_stop_timeout_ms,
        )
        .map_or(proxy.force_stop_timeout_ms, millis);

    let mut matchers = Vec::new();
    if let Some(value) = map.get("matchers") {
        match v.as_array(value) {
            Some(items) => {
                for (index, item) in items.iter().enumerate() {
                    let key = format!("legacyTakeover.matchers[{index}]");
                    if let Some(hook) = hooks::validate_hook(v, item, &key, HookKind::Matcher) {
                        matchers.push(hook);
                    }
                }
            }
            None => v.wrong_type(
                Some(value),
                "legacyTakeover.matchers must be an array".to_string(),
                "Make legacyTakeover.matchers a list of hook values: Lua functions, plugin tables or Lua script tables.".to_string(),
            ),
        }
    }

    let mut processes = Vec::new();
    if let Some(value) = map.get("processes") {
        match v.as_array(value) {
            Some(items) => {
                for (index, item) in items.iter().enumerate() {
                    if let Some(matcher) = process_matcher(v, item, index) {
                        processes.push(matcher);
                    }
                }
            }
            None => v.wrong_type(
                Some(value),
                "legacyTakeover.processes must be an array".to_string(),
                "Make legacyTakeover.processes a list of tables, each with an includes list."
                    .to_string(),
            ),
        }
    }

    let screens = match map.get("screens") {
        None => Vec::new(),
        Some(value) => match v.as_array(value) {
            Some(items) => non_empty_strings(
                v,
                items,
                "legacyTakeover.screens",
                "the name of a screen session to stop",
            ),
            None => {
                v.wrong_type(
                    Some(value),
                    "legacyTakeover.screens must be an array".to_string(),
                    "Make legacyTakeover.screens a list of screen session names.".to_string(),
                );
                Vec::new()
            }
        },
    };

    if screens.is_empty() && processes.is_empty() && matchers.is_empty() {
        v.issue(
            "legacyTakeover must define at least one screen or process matcher",
            "Add screens, processes or matchers to legacyTakeover so predeploy-cleanup knows which legacy processes it may stop, or remove legacyTakeover.",
        );
    }
    Some(LegacyTakeover {
        force_stop_timeout_ms,
        screens,
        processes,
        matchers,
    })
}

fn process_matcher(v: &mut Validator, value: &Value, index: usize) -> Option<LegacyProcessMatcher> {
    let key = format!("legacyTakeover.processes[{index}]");
    let Some(map) = v.as_object(value) else {
        v.wrong_type(
            Some(value),
            format!("{key} must be an object"),
            format!("Write {key} as a table with an includes list and an optional name."),
        );
        return None;
    };
    v.known_keys(map, &key, MATCHER_KEYS);
    let includes_key = child(&key, "includes");
    let includes = match map.get("includes").and_then(|value| v.as_array(value)) {
        Some(items) => {
            let includes =
                non_empty_strings(v, items, &includes_key, "a piece of the command line");
            if includes.is_empty() {
                v.issue(
                    format!("{includes_key} must contain at least one matcher"),
                    format!("List one or more pieces of the legacy process's command line in {includes_key}; a process matches when its command line contains all of them."),
                );
            }
            includes
        }
        None => {
            v.wrong_type(
                map.get("includes"),
                format!("{includes_key} must be an array"),
                format!("Make {includes_key} a list of strings that all appear in the legacy process's command line."),
            );
            Vec::new()
        }
    };
    let name = v
        .optional_string(map.get("name"), &child(&key, "name"))
        .unwrap_or_else(|| format!("legacy process {}", index + 1));
    (!includes.is_empty()).then_some(LegacyProcessMatcher { includes, name })
}

/// Keeps the non-empty strings of `items`, reporting every other entry.
fn non_empty_strings(v: &mut Validator, items: &[Value], key: &str, what: &str) -> Vec<String> {
    let mut strings = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(text) if !text.is_empty() => strings.push(text.clone()),
            other => v.wrong_type(
                Some(other),
                format!("{key}[{index}] must be a non-empty string"),
                format!("Replace {key}[{index}] with {what}; empty values are not allowed."),
            ),
        }
    }
    strings
}
