//! The root object and the top-level sections: proxy (with its access log),
//! control, release retention, statePath, plugins and metrics.

use super::{Section, Validator, cross, legacy, millis, process, proxy_edge, rollout};
use crate::config::model::{
    AccessLogConfig, AccessLogFormat, Config, ControlConfig, IdOrName, MetricsConfig,
    PluginsConfig, ProxyConfig, ReleaseRetention,
};
use serde_json::{Map, Value};

const ROOT_KEYS: &[&str] = &[
    "application",
    "control",
    "legacyTakeover",
    "metrics",
    "plugins",
    "processes",
    "proxy",
    "releaseRetention",
    "rollout",
    "statePath",
];
const PROXY_KEYS: &[&str] = &[
    "accessLog",
    "allowedUpgrades",
    "bodyTimeoutMs",
    "drainTimeoutMs",
    "forceStopTimeoutMs",
    "healthPath",
    "healthTimeoutMs",
    "host",
    "port",
    "readinessPath",
    "trustedProxies",
    "upstreamHost",
];
const CONTROL_KEYS: &[&str] = &["group", "mode", "owner", "path"];
const RETENTION_KEYS: &[&str] = &["keep", "maxAgeMs"];
const PLUGINS_KEYS: &[&str] = &["native"];
const METRICS_KEYS: &[&str] = &["host", "port"];
const ACCESS_LOG_KEYS: &[&str] = &["format", "path"];

pub(super) fn validate_root(v: &mut Validator, root: &Value) -> Option<Config> {
    let Some(root) = v.as_object(root) else {
        v.wrong_type(
            Some(root),
            "Config must be an object".to_string(),
            "Make the config evaluate to one table (a JSON object) with at least proxy and processes."
                .to_string(),
        );
        return None;
    };
    v.known_keys(root, "", ROOT_KEYS);

    let application = v
        .optional_string(root.get("application"), "application")
        .unwrap_or_else(|| v.ctx.default_application.clone());

    let proxy = match root.get("proxy") {
        None => {
            let example = v.example("proxy", serde_json::json!({"port": 8182}));
            v.issue(
                "proxy is required",
                format!("Add a proxy section, e.g. {example}."),
            );
            None
        }
        Some(value) => match v.section(
            Some(value),
            "proxy",
            "Make proxy a table of named settings (host, port, healthPath, ...), not a list or a plain value.",
        ) {
            Section::Present(map) => Some(map),
            _ => None,
        },
    };
    let control = match v.section(
        root.get("control"),
        "control",
        "Make control a table of named settings (path, mode, owner, group), or leave it out to use the defaults.",
    ) {
        Section::Present(map) => Some(map),
        _ => None,
    };
    let processes = match root.get("processes").and_then(|p| v.as_array(p)) {
        Some(items) => items,
        None => {
            v.wrong_type(
                root.get("processes"),
                "processes must be an array".to_string(),
                "Make processes a list with one entry per process, each with at least an id and a command."
                    .to_string(),
            );
            &[]
        }
    };

    let proxy = validate_proxy(v, proxy.unwrap_or(&super::EMPTY_MAP));
    let control = validate_control(v, control.unwrap_or(&super::EMPTY_MAP), &application);

    // Plugins are read before the processes because native libraries add plugin
    // names that hook values may use; their issues are reported in their own place.
    let before = std::mem::take(&mut v.issues);
    let plugins = validate_plugins(v, root.get("plugins"));
    let plugin_issues = std::mem::replace(&mut v.issues, before);

    let mut checked = Vec::new();
    for (index, value) in processes.iter().enumerate() {
        if let Some(entry) = process::validate_process(v, value, index, &proxy) {
            checked.push(entry);
        }
    }

    let legacy_takeover = legacy::validate_legacy_takeover(v, root.get("legacyTakeover"), &proxy);
    let release_retention = validate_retention(v, root.get("releaseRetention"));
    let state_path = match root.get("statePath") {
        None | Some(Value::Null) => None,
        Some(Value::String(path)) => Some(path.clone()),
        Some(other) => {
            v.wrong_type(
                Some(other),
                "statePath must be a string".to_string(),
                "Set statePath to the path of the state file, or remove it to keep no state file."
                    .to_string(),
            );
            None
        }
    };
    let metrics = validate_metrics(v, root.get("metrics"));
    if let Some(metrics) = &metrics {
        if metrics.port != 0 && metrics.port == proxy.port {
            v.issue(
                format!("metrics.port {} is also the proxy port", metrics.port),
                "Give the metrics listener a port of its own, e.g. 9464.",
            );
        }
    }
    let rollout = rollout::validate_rollout(v, root.get("rollout"));
    v.issues.extend(plugin_issues);

    cross::validate_cross_process(v, &checked, proxy.port);

    Some(Config {
        application,
        control,
        proxy,
        processes: checked.into_iter().map(|entry| entry.config).collect(),
        legacy_takeover,
        release_retention,
        state_path,
        plugins,
        metrics,
        rollout,
    })
}

fn validate_proxy(v: &mut Validator, proxy: &Map<String, Value>) -> ProxyConfig {
    v.known_keys(proxy, "proxy", PROXY_KEYS);
    let host = v
        .optional_string(proxy.get("host"), "proxy.host")
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let drain_timeout_ms = v
        .non_negative_number(proxy.get("drainTimeoutMs"), "proxy.drainTimeoutMs", 60000)
        .map_or(60_000, millis);
    let force_stop_timeout_ms = v
        .non_negative_number(
            proxy.get("forceStopTimeoutMs"),
            "proxy.forceStopTimeoutMs",
            10000,
        )
        .map_or(10_000, millis);
    let health_path = v
        .optional_string(proxy.get("healthPath"), "proxy.healthPath")
        .unwrap_or_else(|| "/ping".to_string());
    let health_timeout_ms = v
        .non_negative_number(proxy.get("healthTimeoutMs"), "proxy.healthTimeoutMs", 30000)
        .map_or(30_000, millis);
    let port = match v.optional_number(proxy.get("port"), "proxy.port") {
        None => 8182,
        Some(port) if port.fract() == 0.0 && (0.0..=65535.0).contains(&port) => port as u16,
        Some(_) => {
            v.issue(
                "proxy.port must be a port number between 0 and 65535",
                "Use a whole number from 1 to 65535 for the port the proxy listens on, or 0 to let the system pick a free one.",
            );
            8182
        }
    };
    let access_log = validate_access_log(v, proxy.get("accessLog"));
    let upstream_host = v
        .optional_string(proxy.get("upstreamHost"), "proxy.upstreamHost")
        .unwrap_or_else(|| match host.as_str() {
            // A wildcard listen address is not something to connect to.
            "0.0.0.0" | "::" => "127.0.0.1".to_string(),
            _ => host.clone(),
        });
    ProxyConfig {
        host,
        port,
        upstream_host,
        health_path,
        health_timeout_ms,
        drain_timeout_ms,
        force_stop_timeout_ms,
        access_log,
        trusted_proxies: proxy_edge::validate_trusted_proxies(v, proxy.get("trustedProxies")),
        body_timeout_ms: proxy_edge::validate_body_timeout(v, proxy.get("bodyTimeoutMs")),
        allowed_upgrades: proxy_edge::validate_allowed_upgrades(v, proxy.get("allowedUpgrades")),
        readiness_path: rollout::validate_readiness_path(v, proxy.get("readinessPath")),
    }
}

fn validate_access_log(v: &mut Validator, value: Option<&Value>) -> Option<AccessLogConfig> {
    let map = match v.section(
        value,
        "proxy.accessLog",
        "Make proxy.accessLog a table such as { path = \"/var/log/app/access.log\", format = \"combined\" }, or remove it to log no requests.",
    ) {
        Section::Present(map) => map,
        _ => return None,
    };
    v.known_keys(map, "proxy.accessLog", ACCESS_LOG_KEYS);
    let path = v.required_string(map.get("path"), "proxy.accessLog.path");
    if path.as_deref() == Some("") {
        v.issue(
            "proxy.accessLog.path must not be empty",
            "Set proxy.accessLog.path to the file to append request lines to; a relative path is resolved against the config's folder.",
        );
    }
    let format = match v.optional_string(map.get("format"), "proxy.accessLog.format") {
        None => Some(AccessLogFormat::default()),
        Some(text) => {
            let format = AccessLogFormat::parse(&text);
            if format.is_none() {
                v.issue(
                    format!("proxy.accessLog.format \"{text}\" is not a known format"),
                    format!(
                        "Use one of: {} (the default is json).",
                        AccessLogFormat::NAMES.join(", ")
                    ),
                );
            }
            format
        }
    };
    let path = path.filter(|p| !p.is_empty())?;
    Some(AccessLogConfig {
        path: v.ctx.config_dir.join(path),
        format: format?,
    })
}

fn validate_metrics(v: &mut Validator, value: Option<&Value>) -> Option<MetricsConfig> {
    let fix = format!(
        "Make metrics a table such as {} (host defaults to 127.0.0.1), or remove it to serve no metrics.",
        v.example("metrics", serde_json::json!({"port": 9464}))
    );
    let map = match v.section(value, "metrics", &fix) {
        Section::Present(map) => map,
        _ => return None,
    };
    v.known_keys(map, "metrics", METRICS_KEYS);
    let host = v
        .optional_string(map.get("host"), "metrics.host")
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let port = match map.get("port") {
        None => {
            v.issue(
                "metrics.port is required",
                "Add metrics.port: the port Prometheus scrapes, e.g. 9464 (0 picks a free port).",
            );
            None
        }
        Some(value) => match v.optional_number(Some(value), "metrics.port") {
            Some(port) if port.fract() == 0.0 && (0.0..=65535.0).contains(&port) => {
                Some(port as u16)
            }
            Some(_) => {
                v.issue(
                    "metrics.port must be a port number between 0 and 65535",
                    "Use a whole number from 1 to 65535 for the metrics listener, or 0 to let the system pick a free one.",
                );
                None
            }
            None => None,
        },
    };
    Some(MetricsConfig { host, port: port? })
}

fn validate_control(
    v: &mut Validator,
    control: &Map<String, Value>,
    application: &str,
) -> ControlConfig {
    v.known_keys(control, "control", CONTROL_KEYS);
    let group = id_or_name(
        v,
        control.get("group"),
        "control.group",
        "Use a group name such as \"www-data\", or a numeric group id of 0 or more.",
    );
    let mode = control.get("mode").and_then(|value| {
        let mode = parse_mode(value);
        if mode.is_none() {
            v.wrong_type(
                Some(value),
                "control.mode must be an octal file mode between 0 and 0o777".to_string(),
                "Write the mode as an octal string such as \"660\" or \"0o660\", or as its decimal value (432); the largest allowed mode is 0o777."
                    .to_string(),
            );
        }
        mode
    });
    let owner = id_or_name(
        v,
        control.get("owner"),
        "control.owner",
        "Use a user name such as \"deploy\", or a numeric user id of 0 or more.",
    );
    let path = v
        .optional_string(control.get("path"), "control.path")
        .unwrap_or_else(|| format!("/tmp/rollbridge-{application}.sock"));
    ControlConfig {
        path,
        mode,
        owner,
        group,
    }
}

/// `"660"`, `"0o660"`, `"0"` or an integer up to 511.
fn parse_mode(value: &Value) -> Option<u32> {
    match value {
        Value::Number(number) => {
            let number = number.as_f64()?;
            (number.fract() == 0.0 && (0.0..=511.0).contains(&number)).then_some(number as u32)
        }
        Value::String(text) => {
            let digits = text.strip_prefix("0o").unwrap_or(text);
            if digits.is_empty()
                || digits.len() > 4
                || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
            {
                return None;
            }
            let mode = u32::from_str_radix(digits, 8).ok()?;
            (mode <= 0o777).then_some(mode)
        }
        _ => None,
    }
}

fn id_or_name(v: &mut Validator, value: Option<&Value>, key: &str, fix: &str) -> Option<IdOrName> {
    let value = value?;
    let parsed = match value {
        Value::Number(number) => number
            .as_f64()
            .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n <= f64::from(u32::MAX))
            .map(|n| IdOrName::Id(n as u32)),
        Value::String(text) if !text.is_empty() => Some(match text.parse::<u32>() {
            Ok(id) if text.bytes().all(|b| b.is_ascii_digit()) => IdOrName::Id(id),
            _ => IdOrName::Name(text.clone()),
        }),
        _ => None,
    };
    if parsed.is_none() {
        v.wrong_type(
            Some(value),
            format!("{key} must be a non-negative integer id or a name"),
            fix.to_string(),
        );
    }
    parsed
}

fn validate_retention(v: &mut Validator, value: Option<&Value>) -> ReleaseRetention {
    let map = match v.section(
        value,
        "releaseRetention",
        "Make releaseRetention a table with keep and/or maxAgeMs, or remove it to use the defaults.",
    ) {
        Section::Present(map) => map,
        _ => return ReleaseRetention::default(),
    };
    v.known_keys(map, "releaseRetention", RETENTION_KEYS);
    let keep = v
        .integer_where(
            map.get("keep"),
            |n| n >= 0.0,
            "releaseRetention.keep must be a non-negative integer".to_string(),
            "Use 0 or a positive whole number: how many stopped releases to remember, e.g. 10."
                .to_string(),
        )
        .map_or(10, |n| n as u64);
    let max_age_ms = v
        .non_negative_number(map.get("maxAgeMs"), "releaseRetention.maxAgeMs", 0)
        .map_or(0, millis);
    ReleaseRetention { keep, max_age_ms }
}

fn validate_plugins(v: &mut Validator, value: Option<&Value>) -> PluginsConfig {
    let fix = format!(
        "Make plugins a table such as {}.",
        v.example(
            "plugins",
            serde_json::json!({"native": ["./libmyplugin.so"]})
        )
    );
    let map = match v.section(value, "plugins", &fix) {
        Section::Present(map) => map,
        _ => return PluginsConfig::default(),
    };
    v.known_keys(map, "plugins", PLUGINS_KEYS);
    let Some(native) = map.get("native") else {
        return PluginsConfig::default();
    };
    let Some(entries) = v.as_array(native) else {
        v.wrong_type(
            Some(native),
            "plugins.native must be an array".to_string(),
            "Make plugins.native a list of shared library paths.".to_string(),
        );
        return PluginsConfig::default();
    };
    let mut paths = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let key = format!("plugins.native[{index}]");
        let text = match entry {
            Value::String(text) if !text.is_empty() => text,
            other => {
                v.wrong_type(
                    Some(other),
                    format!("{key} must be a non-empty string"),
                    "Use the path of a shared library (.so), absolute or relative to the config's folder."
                        .to_string(),
                );
                continue;
            }
        };
        let path = v.ctx.config_dir.join(text);
        if !path.is_file() {
            v.issue(
                format!("{key} file {} does not exist", path.display()),
                "Check the path: a relative path is resolved against the folder that holds the config file.",
            );
            continue;
        }
        if let Some(inspect) = v.ctx.native_inspector.clone() {
            match inspect(&path) {
                Ok(names) => {
                    for (kind, name) in names {
                        v.plugins.add(kind, name);
                    }
                }
                Err(reason) => v.issue(
                    format!("{key} could not be loaded: {reason}"),
                    format!(
                        "Check that {} is a rollbridge native plugin built for this rollbridge version.",
                        path.display()
                    ),
                ),
            }
        }
        paths.push(path);
    }
    PluginsConfig { native: paths }
}

#[cfg(test)]
mod observability_keys_tests {
    use crate::config::model::AccessLogFormat;
    use crate::config::validate::{ValidationContext, validate_value};
    use serde_json::json;

    fn check(extra: serde_json::Value) -> Result<crate::config::model::Config, Vec<String>> {
        let mut root = json!({
            "application": "app",
            "proxy": { "port": 8182 },
            "processes": [{ "id": "web", "command": "run", "policy": "proxied", "port": { "from": 4000, "to": 4010 } }],
        });
        let object = root.as_object_mut().unwrap();
        for (key, value) in extra.as_object().unwrap() {
            if key == "proxy" {
                object["proxy"]
                    .as_object_mut()
                    .unwrap()
                    .extend(value.as_object().unwrap().clone());
            } else {
                object.insert(key.clone(), value.clone());
            }
        }
        let ctx = ValidationContext::for_dir(std::path::Path::new("/etc/app"));
        let report = validate_value(&root, &ctx);
        match report.config {
            Some(config) => Ok(config),
            None => Err(report.issues.iter().map(|i| i.message.clone()).collect()),
        }
    }

    #[test]
    fn metrics_and_access_log_are_optional_and_normalized() {
        let plain = check(json!({})).unwrap();
        assert_eq!(plain.metrics, None);
        assert_eq!(plain.proxy.access_log, None);

        let config = check(json!({
            "metrics": { "port": 9464 },
            "proxy": { "accessLog": { "path": "logs/access.log" } },
        }))
        .unwrap();
        let metrics = config.metrics.unwrap();
        assert_eq!((metrics.host.as_str(), metrics.port), ("127.0.0.1", 9464));
        let access = config.proxy.access_log.unwrap();
        assert_eq!(
            access.path,
            std::path::Path::new("/etc/app/logs/access.log")
        );
        assert_eq!(access.format, AccessLogFormat::Json);

        let combined = check(json!({
            "proxy": { "accessLog": { "path": "/var/log/a.log", "format": "combined" } },
        }))
        .unwrap();
        assert_eq!(
            combined.proxy.access_log.unwrap().format,
            AccessLogFormat::Combined
        );
    }

    #[test]
    fn bad_values_are_reported_at_their_key() {
        let issues = check(json!({
            "metrics": { "host": "0.0.0.0", "prot": 1 },
            "proxy": { "accessLog": { "format": "apache" } },
        }))
        .unwrap_err();
        for expected in [
            "metrics.prot is not a known key",
            "metrics.port is required",
            "proxy.accessLog.path is required",
            "proxy.accessLog.format \"apache\" is not a known format",
        ] {
            assert!(
                issues.iter().any(|i| i == expected),
                "{expected} in {issues:?}"
            );
        }
        let issues = check(json!({ "metrics": { "port": 8182 } })).unwrap_err();
        assert_eq!(issues, ["metrics.port 8182 is also the proxy port"]);
        let issues = check(json!({ "metrics": { "port": 70000 } })).unwrap_err();
        assert_eq!(
            issues,
            ["metrics.port must be a port number between 0 and 65535"]
        );
        let issues = check(json!({ "metrics": 9464 })).unwrap_err();
        assert_eq!(issues, ["metrics must be an object"]);
    }
}
