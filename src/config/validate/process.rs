//! One entry of `processes[]`: field rules in the documented order.

use super::hooks::{self, LifecycleHooks};
use super::{Section, Validator, child, millis, process_log};
use crate::config::hook::HookSpec;
use crate::config::model::{
    DeployStrategy, GracefulStop, HealthConfig, MemoryConfig, Policy, PortRange, ProcessConfig,
    ProxyConfig, RestartPolicy,
};
use crate::util::signals::SIGNAL_NAMES;
use serde_json::{Value, json};

const PROCESS_KEYS: &[&str] = &[
    "command",
    "cwd",
    "deployStrategy",
    "env",
    "gracefulStopMs",
    "health",
    "id",
    "lifecycle",
    "logFile",
    "memory",
    "nonBlockingDrain",
    "outputLines",
    "policy",
    "port",
    "replicas",
    "restart",
    "restartDelayMs",
    "stopSignal",
];
const HEALTH_KEYS: &[&str] = &["check", "intervalMs", "path", "startDelayMs", "timeoutMs"];
const MEMORY_KEYS: &[&str] = &["checkIntervalMs", "limitBytes", "warnBytes"];
const RESTART_KEYS: &[&str] = &["backoffFactor", "maxDelayMs", "maxRestarts", "windowMs"];
const PORT_KEYS: &[&str] = &["from", "to"];

/// A process that was an object, with what the cross-process rules need to know.
pub(super) struct CheckedProcess {
    pub config: ProcessConfig,
    /// The key that set the stop hook (`stop` or `stopCommand`), if any.
    pub stop_key: Option<&'static str>,
    /// `port` was set but invalid (already reported).
    pub port_rejected: bool,
}

pub(super) fn validate_process(
    v: &mut Validator,
    value: &Value,
    index: usize,
    proxy: &ProxyConfig,
) -> Option<CheckedProcess> {
    let p = format!("processes[{index}]");
    let Some(map) = v.as_object(value) else {
        v.wrong_type(
            Some(value),
            format!("{p} must be an object"),
            format!(
                "Write {p} as a table (a JSON object) with at least an id and a command; policy defaults to companion."
            ),
        );
        return None;
    };
    v.known_keys(map, &p, PROCESS_KEYS);
    let key = |name: &str| child(&p, name);

    let command = v
        .required_string(map.get("command"), &key("command"))
        .unwrap_or_default();
    let cwd = v.optional_string(map.get("cwd"), &key("cwd"));
    let deploy_strategy = match map.get("deployStrategy") {
        None => DeployStrategy::Persistent,
        Some(Value::String(text)) if text == "persistent" => DeployStrategy::Persistent,
        Some(Value::String(text)) if text == "handoff" => DeployStrategy::Handoff,
        Some(other) => {
            v.wrong_type(
                Some(other),
                format!("{} must be one of: persistent, handoff", key("deployStrategy")),
                "Use \"persistent\" (one instance that outlives deploys) or \"handoff\" (a fresh instance per release, for services only).".to_string(),
            );
            DeployStrategy::Persistent
        }
    };
    let env = validate_env(v, map.get("env"), &key("env"));
    let graceful_stop =
        validate_graceful_stop(v, map.get("gracefulStopMs"), &key("gracefulStopMs"), proxy);
    let health = validate_health(v, map.get("health"), &key("health"), proxy);
    let id = match v.required_string(map.get("id"), &key("id")) {
        Some(id) if id.is_empty() => {
            v.issue(
                format!("{} must not be empty", key("id")),
                "Give the process a short name such as \"web\" or \"worker\"; it names the process in status, logs and events.",
            );
            id
        }
        other => other.unwrap_or_default(),
    };
    let LifecycleHooks {
        lifecycle,
        stop_key,
    } = hooks::validate_lifecycle(v, map.get("lifecycle"), &key("lifecycle"));
    let log_file = process_log::validate_log_file(v, map.get("logFile"), &key("logFile"));
    let memory = validate_memory(v, map.get("memory"), &key("memory"));
    let non_blocking_drain = match map.get("nonBlockingDrain") {
        None => false,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => {
            v.wrong_type(
                Some(other),
                format!("{} must be a boolean", key("nonBlockingDrain")),
                "Use true or false, without quotes.".to_string(),
            );
            false
        }
    };
    let output_lines = v
        .integer_where(
            map.get("outputLines"),
            |n| n >= 1.0,
            format!("{} must be a positive integer", key("outputLines")),
            "Use a positive integer: how many recent output lines to keep for the process, e.g. 50."
                .to_string(),
        )
        .map_or(50, |n| n.min(usize::MAX as f64) as usize);
    let policy = match map.get("policy") {
        None => Policy::Companion,
        Some(value) => match value.as_str().and_then(Policy::parse) {
            Some(policy) => policy,
            None => {
                v.wrong_type(
                    Some(value),
                    format!(
                        "{} must be one of: proxied, companion, singleton, service",
                        key("policy")
                    ),
                    "Choose proxied (receives the proxy's traffic), companion (runs beside each release), singleton (one per host, replaced after the switch) or service (outlives deploys).".to_string(),
                );
                Policy::Companion
            }
        },
    };
    let port = validate_port(v, map.get("port"), &key("port"));
    // A port was given but rejected: its issue says so, and "must define a port
    // range" would only repeat it wrongly.
    let port_rejected = port.is_none() && map.get("port").is_some_and(|value| !value.is_null());
    let replicas = v
        .integer_where(
            map.get("replicas"),
            |n| (1.0..=f64::from(u32::MAX)).contains(&n),
            format!("{} must be a positive integer", key("replicas")),
            "Use a positive integer number of copies to run, e.g. 1 or 4.".to_string(),
        )
        .map_or(1, |n| n as u32);
    let restart = validate_restart(v, map.get("restart"), &key("restart"));
    let restart_delay_ms = v
        .non_negative_number(map.get("restartDelayMs"), &key("restartDelayMs"), 1000)
        .map_or(1000, millis);
    let stop_signal = validate_stop_signal(v, map.get("stopSignal"), &key("stopSignal"));

    Some(CheckedProcess {
        config: ProcessConfig {
            id,
            command,
            policy,
            deploy_strategy,
            cwd,
            env,
            port,
            health,
            stop_signal,
            graceful_stop,
            lifecycle,
            non_blocking_drain,
            restart_delay_ms,
            restart,
            memory,
            replicas,
            output_lines,
            log_file,
        },
        stop_key,
        port_rejected,
    })
}

fn validate_env(v: &mut Validator, value: Option<&Value>, key: &str) -> Vec<(String, String)> {
    let map = match v.section(
        value,
        key,
        &format!("Make {key} a table that maps variable names to string values."),
    ) {
        Section::Present(map) => map,
        _ => return Vec::new(),
    };
    let mut env = Vec::with_capacity(map.len());
    for (name, value) in map {
        let entry = child(key, name);
        match value {
            Value::String(text) => env.push((name.clone(), text.clone())),
            Value::Null => v.issue(
                format!("{entry} is required"),
                format!("Give {entry} a string value, or remove the variable."),
            ),
            other => v.wrong_type(
                Some(other),
                format!("{entry} must be a string"),
                format!("Quote the value of {entry}: environment values are strings, e.g. \"8080\" rather than 8080."),
            ),
        }
    }
    env
}

fn validate_graceful_stop(
    v: &mut Validator,
    value: Option<&Value>,
    key: &str,
    proxy: &ProxyConfig,
) -> GracefulStop {
    let default = GracefulStop::Millis(proxy.force_stop_timeout_ms);
    match value {
        None => default,
        Some(Value::String(text)) if text == "indefinite" => GracefulStop::Indefinite,
        Some(Value::Number(number)) => match number.as_f64() {
            Some(ms) if ms >= 0.0 => GracefulStop::Millis(millis(ms)),
            _ => {
                v.issue(
                    format!("{key} must be a non-negative number"),
                    format!(
                        "Use 0 or a positive number of milliseconds for {key}, for example {}.",
                        proxy.force_stop_timeout_ms
                    ),
                );
                default
            }
        },
        Some(other) => {
            v.wrong_type(
                Some(other),
                format!("{key} must be a number"),
                "Use a number of milliseconds, or the string \"indefinite\" to wait for the process to exit without ever killing it.".to_string(),
            );
            default
        }
    }
}

fn validate_health(
    v: &mut Validator,
    value: Option<&Value>,
    key: &str,
    proxy: &ProxyConfig,
) -> Option<HealthConfig> {
    let defaults = HealthConfig {
        path: proxy.health_path.clone(),
        timeout_ms: proxy.health_timeout_ms,
        interval_ms: 250,
        start_delay_ms: 0,
        check: None,
    };
    let map = match value {
        None => return Some(defaults),
        Some(Value::Null) | Some(Value::Bool(false)) => return None,
        Some(value) => match v.as_object(value) {
            Some(map) => map,
            None => {
                v.wrong_type(
                    Some(value),
                    format!("{key} must be an object"),
                    format!("Make {key} a table with any of path, timeoutMs, intervalMs, startDelayMs and check, or set it to false to turn health checks off."),
                );
                return Some(defaults);
            }
        },
    };
    v.known_keys(map, key, HEALTH_KEYS);
    let check: Option<HookSpec> = map.get("check").and_then(|hook| {
        hooks::validate_hook(v, hook, &child(key, "check"), super::HookKind::Health)
    });
    let interval_ms = v
        .non_negative_number(map.get("intervalMs"), &child(key, "intervalMs"), 250)
        .map_or(250, millis);
    let path = v
        .optional_string(map.get("path"), &child(key, "path"))
        .unwrap_or(defaults.path);
    let start_key = child(key, "startDelayMs");
    let start_delay_ms = match v.optional_number(map.get("startDelayMs"), &start_key) {
        Some(ms) if ms >= 0.0 => millis(ms),
        Some(_) => {
            v.issue(
                format!("{start_key} must be a non-negative number"),
                "Use 0 to probe right away, or a positive number of milliseconds to wait before the first probe, e.g. 2000.",
            );
            0
        }
        None => 0,
    };
    let timeout_ms = v
        .non_negative_number(
            map.get("timeoutMs"),
            &child(key, "timeoutMs"),
            proxy.health_timeout_ms,
        )
        .map_or(proxy.health_timeout_ms, millis);
    Some(HealthConfig {
        path,
        timeout_ms,
        interval_ms,
        start_delay_ms,
        check,
    })
}

fn validate_memory(v: &mut Validator, value: Option<&Value>, key: &str) -> Option<MemoryConfig> {
    let map = match v.section(
        value,
        key,
        &format!("Make {key} a table with limitBytes (and optionally warnBytes and checkIntervalMs), or remove it to turn memory supervision off."),
    ) {
        Section::Present(map) => map,
        _ => return None,
    };
    v.known_keys(map, key, MEMORY_KEYS);
    let interval_key = child(key, "checkIntervalMs");
    let check_interval_ms = match map.get("checkIntervalMs") {
        None => 5000,
        Some(value) => match value.as_f64() {
            Some(ms) if ms > 0.0 => millis(ms),
            _ => {
                v.wrong_type(
                    Some(value),
                    format!("{interval_key} must be a positive number"),
                    "Use a positive number of milliseconds between memory checks, e.g. 5000."
                        .to_string(),
                );
                5000
            }
        },
    };
    let limit_key = child(key, "limitBytes");
    let limit_fix = "Set it to the resident memory, in bytes, at which the process is restarted, e.g. 536870912 for 512 MiB.";
    let limit_bytes = match map.get("limitBytes") {
        None => {
            v.issue(format!("{limit_key} must be a positive integer"), limit_fix);
            None
        }
        value => v.integer_where(
            value,
            |n| n >= 1.0,
            format!("{limit_key} must be a positive integer"),
            limit_fix.to_string(),
        ),
    }
    .map(|n| n as u64);
    let warn_key = child(key, "warnBytes");
    let warn_bytes = v
        .integer_where(
            map.get("warnBytes"),
            |n| n >= 0.0,
            format!("{warn_key} must be a non-negative integer"),
            "Use 0 to turn warnings off, or a whole number of bytes below limitBytes, e.g. 402653184 for 384 MiB.".to_string(),
        )
        .map_or(0, |n| n as u64);
    if let Some(limit) = limit_bytes
        && warn_bytes > 0
        && warn_bytes >= limit
    {
        v.issue(
            format!("{warn_key} must be less than {limit_key}"),
            "Lower warnBytes below limitBytes so the warning comes before the restart, or set it to 0 to turn warnings off.",
        );
    }
    Some(MemoryConfig {
        limit_bytes: limit_bytes.unwrap_or(0),
        warn_bytes,
        check_interval_ms,
    })
}

const PORT_MESSAGE: &str = "must be a positive port or valid {from, to} range";

fn validate_port(v: &mut Validator, value: Option<&Value>, key: &str) -> Option<PortRange> {
    let value = value?;
    let is_port = |n: f64| n.fract() == 0.0 && (0.0..=65535.0).contains(&n);
    if let Value::Number(number) = value {
        return match number.as_f64() {
            Some(port) if is_port(port) => Some(PortRange {
                from: port as u16,
                to: port as u16,
            }),
            _ => {
                let example = v.example("port", json!({"from": 18000, "to": 18099}));
                v.issue(
                    format!("{key} {PORT_MESSAGE}"),
                    format!("Give {key} a whole port number from 1 to 65535 (0 for an ephemeral port), or a range such as {example}."),
                );
                None
            }
        };
    }
    let Some(map) = v.as_object(value) else {
        let example = v.example("port", json!({"from": 18000, "to": 18099}));
        v.wrong_type(
            Some(value),
            format!("{key} {PORT_MESSAGE}"),
            format!("Give {key} a port number or a range such as {example}."),
        );
        return None;
    };
    v.known_keys(map, key, PORT_KEYS);
    let from = match map.get("from") {
        None => Some(0.0),
        Some(value) => value.as_f64(),
    };
    let to = match map.get("to") {
        None => from,
        Some(value) => value.as_f64(),
    };
    match (from, to) {
        (Some(from), Some(to)) if is_port(from) && is_port(to) && to >= from => Some(PortRange {
            from: from as u16,
            to: to as u16,
        }),
        (Some(from), Some(to)) if is_port(from) && is_port(to) => {
            let example = v.example("port", json!({"from": to as u16, "to": from as u16}));
            v.issue(
                format!("{key} {PORT_MESSAGE}"),
                format!("Its from ({from}) is greater than its to ({to}); a range runs upwards, so swap them: {example}."),
            );
            None
        }
        _ => {
            let example = v.example("port", json!({"from": 18000, "to": 18099}));
            v.issue(
                format!("{key} {PORT_MESSAGE}"),
                format!("Give {key} whole-number from and to values between 0 and 65535 with from <= to, e.g. {example}."),
            );
            None
        }
    }
}

fn validate_restart(v: &mut Validator, value: Option<&Value>, key: &str) -> RestartPolicy {
    let map = match v.section(
        value,
        key,
        &format!(
            "Make {key} a table with any of maxRestarts, windowMs, backoffFactor and maxDelayMs."
        ),
    ) {
        Section::Present(map) => map,
        _ => return RestartPolicy::default(),
    };
    v.known_keys(map, key, RESTART_KEYS);
    let factor_key = child(key, "backoffFactor");
    let backoff_factor = match v.optional_number(map.get("backoffFactor"), &factor_key) {
        Some(factor) if factor >= 1.0 => factor,
        Some(_) => {
            v.issue(
                format!("{factor_key} must be a number greater than or equal to 1"),
                "Use 1 to wait the same delay before every restart, or a larger factor such as 2 to double the delay after each one.",
            );
            1.0
        }
        None => 1.0,
    };
    let max_delay_ms = v
        .non_negative_number(map.get("maxDelayMs"), &child(key, "maxDelayMs"), 0)
        .map_or(0, millis);
    let max_restarts = v
        .integer_where(
            map.get("maxRestarts"),
            |n| n >= 0.0,
            format!("{} must be a non-negative integer", child(key, "maxRestarts")),
            "Use a whole number of 0 or more (0 turns automatic restarts off), or remove it to restart without limit.".to_string(),
        )
        .map(|n| n.min(f64::from(u32::MAX)) as u32);
    let window_ms = v
        .non_negative_number(map.get("windowMs"), &child(key, "windowMs"), 0)
        .map_or(0, millis);
    RestartPolicy {
        max_restarts,
        window_ms,
        backoff_factor,
        max_delay_ms,
    }
}

fn validate_stop_signal(v: &mut Validator, value: Option<&Value>, key: &str) -> String {
    let Some(value) = value else {
        return "SIGTERM".to_string();
    };
    match value.as_str() {
        Some(name @ ("SIGKILL" | "SIGSTOP")) => {
            v.issue(
                format!("{key} must be a signal the process can handle, not {name}"),
                "A graceful stop needs a signal the process can catch, such as \"SIGTERM\", \"SIGINT\" or \"SIGQUIT\"; rollbridge sends SIGKILL by itself once gracefulStopMs runs out.",
            );
            "SIGTERM".to_string()
        }
        Some(name) if SIGNAL_NAMES.contains(&name) => name.to_string(),
        _ => {
            v.wrong_type(
                Some(value),
                format!("{key} must be a valid signal name"),
                "Use a signal name written like \"SIGTERM\", \"SIGINT\" or \"SIGQUIT\"."
                    .to_string(),
            );
            "SIGTERM".to_string()
        }
    }
}

/// The port of a process bound to one fixed, non-ephemeral port.
pub(super) fn port_is_fixed(port: Option<PortRange>) -> Option<u16> {
    port.filter(|range| range.from == range.to && range.from != 0)
        .map(|range| range.from)
}
