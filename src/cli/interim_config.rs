//! TEMPORARY: a minimal JSON config reader so the daemon-talking commands can be
//! built and tested before the real loader (`crate::config::load`) is on main.
//! It reads only what the CLI needs (application, control, proxy, statePath,
//! legacyTakeover) and validates nothing else. Delete this file when the config
//! module lands; `common::load_config` is the only caller.

use super::common::CliConfig;
use crate::config::model::{
    Config, ControlConfig, LegacyProcessMatcher, LegacyTakeover, PluginsConfig, ProxyConfig,
    ReleaseRetention,
};
use anyhow::{Context, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub fn load(explicit: Option<&Path>) -> anyhow::Result<CliConfig> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let cwd = std::env::current_dir().context("cannot read the working directory")?;
            ["rollbridge.lua", "rollbridge.json", "rollbridge.js"]
                .iter()
                .map(PathBuf::from)
                .find(|candidate| candidate.is_file())
                .with_context(|| {
                    format!(
                        "No config file found in {}. Pass --config <path> or add one of: rollbridge.lua, rollbridge.json, rollbridge.js.",
                        cwd.display()
                    )
                })?
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let root: Value = serde_json::from_str(&text)
        .with_context(|| format!("config {} is not valid JSON", path.display()))?;
    let Some(root) = root.as_object() else {
        bail!("Invalid Rollbridge config:\n  - Config must be an object");
    };
    let application = match root.get("application").and_then(Value::as_str) {
        Some(name) => name.to_string(),
        None => std::path::absolute(&path)?
            .parent()
            .and_then(Path::file_name)
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let get = |object: Option<&Value>, key: &str| object.and_then(|o| o.get(key)).cloned();
    let control = root.get("control");
    let proxy = root.get("proxy");
    let host = get(proxy, "host")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "127.0.0.1".into());
    let upstream_host = get(proxy, "upstreamHost")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| {
            if host == "0.0.0.0" || host == "::" {
                "127.0.0.1".into()
            } else {
                host.clone()
            }
        });
    let number = |object: Option<&Value>, key: &str, default: u64| {
        get(object, key).and_then(|v| v.as_u64()).unwrap_or(default)
    };
    let force_stop_timeout_ms = number(proxy, "forceStopTimeoutMs", 10_000);
    let legacy_takeover = root.get("legacyTakeover").map(|legacy| {
        let strings = |value: Option<&Value>| -> Vec<String> {
            value
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        LegacyTakeover {
            force_stop_timeout_ms: number(
                Some(legacy),
                "forceStopTimeoutMs",
                force_stop_timeout_ms,
            ),
            screens: strings(legacy.get("screens")),
            processes: legacy
                .get("processes")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .enumerate()
                        .map(|(index, item)| LegacyProcessMatcher {
                            includes: strings(item.get("includes")),
                            name: item
                                .get("name")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                                .unwrap_or_else(|| format!("legacy process {}", index + 1)),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            matchers: Vec::new(),
        }
    });
    let config = Config {
        control: ControlConfig {
            path: get(control, "path")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("/tmp/rollbridge-{application}.sock")),
            mode: None,
            owner: None,
            group: None,
        },
        proxy: ProxyConfig {
            host,
            port: number(proxy, "port", 8182) as u16,
            upstream_host,
            health_path: "/ping".into(),
            health_timeout_ms: number(proxy, "healthTimeoutMs", 30_000),
            drain_timeout_ms: number(proxy, "drainTimeoutMs", 60_000),
            force_stop_timeout_ms,
        },
        application,
        processes: Vec::new(),
        legacy_takeover,
        release_retention: ReleaseRetention::default(),
        state_path: root
            .get("statePath")
            .and_then(Value::as_str)
            .map(str::to_string),
        plugins: PluginsConfig::default(),
    };
    Ok(CliConfig { path, config })
}
