//! Options of the built-in plugins, checked at load time so a typo shows up in
//! `validate` rather than when a stop or a health check runs. Native plugins check
//! their own options.

use super::{HookKind, Validator, child};
use crate::util::signals::parse_signal;
use serde_json::{Map, Value};

/// The option keys each built-in plugin reads.
fn known_options(kind: HookKind, name: &str) -> Option<&'static [&'static str]> {
    Some(match (kind, name) {
        (HookKind::Lifecycle, "command") | (HookKind::Health, "command") => &["command"],
        (HookKind::Lifecycle, "signal") => &["signal"],
        (HookKind::Lifecycle, "wait-exit") => &[],
        (HookKind::Health, "http") => &["host", "path", "port"],
        (HookKind::Health, "tcp") => &["host", "port"],
        (HookKind::Matcher, "cmdline") => &["includes"],
        (HookKind::Matcher, "screen") => &["name"],
        _ => return None,
    })
}

pub(super) fn check(
    v: &mut Validator,
    key: &str,
    kind: HookKind,
    name: &str,
    options: &Map<String, Value>,
) {
    let Some(known) = known_options(kind, name) else {
        return;
    };
    v.known_keys(options, key, known);
    match name {
        "command" => {
            let command_key = child(key, "command");
            match options.get("command") {
                Some(Value::String(command)) if !command.is_empty() => {}
                other => v.wrong_type(
                    other,
                    format!("{command_key} must be a non-empty string"),
                    "Set command to the shell command the plugin runs, or write the hook as a plain command string.".to_string(),
                ),
            }
        }
        "signal" => {
            if let Some(value) = options.get("signal")
                && value.as_str().and_then(parse_signal).is_none()
            {
                v.wrong_type(
                    Some(value),
                    format!("{} must be a valid signal name", child(key, "signal")),
                    "Use a signal name such as \"SIGUSR1\", \"TSTP\" or \"SIGTERM\" (the SIG prefix and case do not matter).".to_string(),
                );
            }
        }
        "http" | "tcp" => {
            if let Some(value) = options.get("host")
                && !value.is_string()
            {
                v.wrong_type(
                    Some(value),
                    format!("{} must be a string", child(key, "host")),
                    "Set host to the address to probe, e.g. \"127.0.0.1\" or \"::1\".".to_string(),
                );
            }
            if let Some(value) = options.get("path")
                && !value.is_string()
            {
                v.wrong_type(
                    Some(value),
                    format!("{} must be a string", child(key, "path")),
                    "Set path to the URL path to request, e.g. \"/ping\".".to_string(),
                );
            }
            if let Some(value) = options.get("port")
                && !value
                    .as_f64()
                    .is_some_and(|p| p.fract() == 0.0 && (1.0..=65535.0).contains(&p))
            {
                v.wrong_type(
                    Some(value),
                    format!("{} must be a port number between 1 and 65535", child(key, "port")),
                    "Set port to the port to probe, or leave it out to probe the process's own port.".to_string(),
                );
            }
        }
        "cmdline" => string_list(
            v,
            key,
            options,
            "includes",
            "pieces of the legacy process's command line",
        ),
        "screen" => string_list(v, key, options, "name", "screen session names"),
        _ => {}
    }
}

/// A required option holding a string or a list of strings, at least one of them
/// non-empty.
fn string_list(
    v: &mut Validator,
    key: &str,
    options: &Map<String, Value>,
    option: &str,
    what: &str,
) {
    let option_key = child(key, option);
    let strings: Option<Vec<&str>> = match options.get(option) {
        Some(Value::String(text)) => Some(vec![text.as_str()]),
        Some(Value::Array(items)) => items.iter().map(Value::as_str).collect(),
        _ => None,
    };
    match strings {
        Some(strings) if strings.iter().any(|s| !s.is_empty()) => {}
        _ => v.wrong_type(
            options.get(option),
            format!("{option_key} must be a non-empty string or list of strings"),
            format!("Set {option} to one or more {what}."),
        ),
    }
}
