//! The `rollout` section (post-switch watch, canary stickiness, the `check` hook)
//! and `proxy.readinessPath`. See docs/rollouts.md.

use super::{HookKind, Section, Validator, child, hooks, millis};
use crate::config::model::RolloutConfig;
use serde_json::Value;

const ROLLOUT_KEYS: &[&str] = &[
    "check",
    "healthFailures",
    "maxErrorRate",
    "maxP99Ms",
    "minRequests",
    "stickyBy",
    "watchMs",
];

pub(super) fn validate_rollout(v: &mut Validator, value: Option<&Value>) -> RolloutConfig {
    let defaults = RolloutConfig::default();
    let fix = format!(
        "Make rollout a table such as {}, or remove it to switch without a watch.",
        v.example("rollout", serde_json::json!({"watchMs": 60000}))
    );
    let map = match v.section(value, "rollout", &fix) {
        Section::Present(map) => map,
        _ => return defaults,
    };
    v.known_keys(map, "rollout", ROLLOUT_KEYS);
    let watch_ms = v
        .non_negative_number(map.get("watchMs"), "rollout.watchMs", 60000)
        .map_or(defaults.watch_ms, millis);
    let max_error_rate = match v.optional_number(map.get("maxErrorRate"), "rollout.maxErrorRate") {
        None => defaults.max_error_rate,
        Some(rate) if (0.0..=1.0).contains(&rate) => rate,
        Some(_) => {
            v.issue(
                "rollout.maxErrorRate must be a number between 0 and 1",
                "Give the share of 5xx responses that fails a rollout as a fraction, e.g. 0.05 for 5 %.",
            );
            defaults.max_error_rate
        }
    };
    let min_requests = whole(v, map.get("minRequests"), "rollout.minRequests", 20)
        .unwrap_or(defaults.min_requests);
    let max_p99_ms = match v.optional_number(map.get("maxP99Ms"), "rollout.maxP99Ms") {
        None => None,
        Some(ms) if ms > 0.0 => Some(millis(ms)),
        Some(_) => {
            v.issue(
                "rollout.maxP99Ms must be a positive number",
                "Give the p99 latency bound in milliseconds, e.g. 500, or remove it for no latency bound.",
            );
            None
        }
    };
    let health_failures = whole(v, map.get("healthFailures"), "rollout.healthFailures", 3)
        .map_or(defaults.health_failures, |n| {
            n.min(u64::from(u32::MAX)) as u32
        });
    let check = map.get("check").and_then(|hook| {
        hooks::validate_hook(v, hook, &child("rollout", "check"), HookKind::Health)
    });
    let sticky_by = match v.optional_string(map.get("stickyBy"), "rollout.stickyBy") {
        Some(rule) if is_sticky_rule(&rule) => Some(rule),
        Some(rule) => {
            v.issue(
                format!("rollout.stickyBy \"{rule}\" is not header:<Name> or cookie:<name>"),
                "Name the request header or cookie whose value keeps a client on one release, e.g. \"header:X-User-Id\" or \"cookie:session\".",
            );
            None
        }
        None => None,
    };
    RolloutConfig {
        watch_ms,
        max_error_rate,
        min_requests,
        max_p99_ms,
        health_failures,
        check,
        sticky_by,
    }
}

/// A whole number ≥ 0 (`example` goes in the fix).
fn whole(v: &mut Validator, value: Option<&Value>, key: &str, example: u64) -> Option<u64> {
    v.integer_where(
        value,
        |n| n >= 0.0,
        format!("{key} must be a whole number of 0 or more"),
        format!("Use a whole number for {key}, e.g. {example}."),
    )
    .map(|n| n as u64)
}

/// `header:<token>` or `cookie:<name>`: a header name is an HTTP token, a cookie
/// name printable ASCII without `=`, `;` or spaces.
fn is_sticky_rule(rule: &str) -> bool {
    let Some((kind, name)) = rule.split_once(':') else {
        return false;
    };
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let cookie = |b: u8| b.is_ascii_graphic() && b != b'=' && b != b';' && b != b',';
    !name.is_empty()
        && match kind {
            "header" => name.bytes().all(token),
            "cookie" => name.bytes().all(cookie),
            _ => false,
        }
}

/// `proxy.readinessPath`: an absolute path, or absent.
pub(super) fn validate_readiness_path(v: &mut Validator, value: Option<&Value>) -> Option<String> {
    let path = v.optional_string(value, "proxy.readinessPath")?;
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        v.issue(
            format!("proxy.readinessPath \"{path}\" must be a path starting with /"),
            "Use a path the application does not serve, e.g. \"/_rollbridge/ready\" (no query string).",
        );
        return None;
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use crate::config::validate::{ValidationContext, validate_value};
    use serde_json::json;

    fn check(extra: serde_json::Value) -> Result<crate::config::model::Config, Vec<String>> {
        let mut config = json!({
            "proxy": {"port": 8182},
            "processes": [{"id": "web", "policy": "proxied", "command": "app",
                           "port": {"from": 18000, "to": 18099}}]
        });
        for (key, value) in extra.as_object().unwrap() {
            if key == "proxy" {
                config["proxy"]
                    .as_object_mut()
                    .unwrap()
                    .extend(value.as_object().unwrap().clone());
            } else {
                config[key] = value.clone();
            }
        }
        let report = validate_value(&config, &ValidationContext::for_dir("/srv/app"));
        report
            .config
            .ok_or_else(|| report.issues.iter().map(|i| i.message.clone()).collect())
    }

    #[test]
    fn defaults_and_values_are_read() {
        let plain = check(json!({})).unwrap();
        assert_eq!(plain.rollout, Default::default());
        assert_eq!(plain.proxy.readiness_path, None);
        let config = check(json!({
            "proxy": {"readinessPath": "/_rollbridge/ready"},
            "rollout": {"watchMs": 1500, "maxErrorRate": 0.1, "minRequests": 5, "maxP99Ms": 250,
                        "healthFailures": 2, "stickyBy": "cookie:sid",
                        "check": {"plugin": "http", "path": "/ok"}}
        }))
        .unwrap();
        let rollout = config.rollout;
        assert_eq!((rollout.watch_ms, rollout.min_requests), (1500, 5));
        assert_eq!(
            (rollout.max_p99_ms, rollout.health_failures),
            (Some(250), 2)
        );
        assert_eq!(rollout.max_error_rate, 0.1);
        assert_eq!(rollout.sticky_by.as_deref(), Some("cookie:sid"));
        assert!(rollout.check.is_some());
        assert_eq!(
            config.proxy.readiness_path.as_deref(),
            Some("/_rollbridge/ready")
        );
    }

    #[test]
    fn every_key_is_checked() {
        let issues = check(json!({
            "proxy": {"readinessPath": "ready"},
            "rollout": {"watchMs": -1, "maxErrorRate": 2, "minRequests": 1.5, "maxP99Ms": 0,
                        "healthFailures": "3", "stickyBy": "query:x", "check": 5, "watchMS": 1}
        }))
        .unwrap_err();
        assert_eq!(
            issues,
            [
                "proxy.readinessPath \"ready\" must be a path starting with /",
                "rollout.watchMS is not a known key",
                "rollout.watchMs must be a non-negative number",
                "rollout.maxErrorRate must be a number between 0 and 1",
                "rollout.minRequests must be a whole number of 0 or more",
                "rollout.maxP99Ms must be a positive number",
                "rollout.healthFailures must be a whole number of 0 or more",
                "rollout.check must be a command string, a Lua function, a plugin table or a Lua script table",
                "rollout.stickyBy \"query:x\" is not header:<Name> or cookie:<name>",
            ]
        );
        assert_eq!(
            check(json!({"rollout": 5})).unwrap_err(),
            ["rollout must be an object"]
        );
    }
}
