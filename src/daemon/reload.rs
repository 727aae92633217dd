//! Deploy-time config reload: which changes a running daemon can
//! take on, and which need a daemon restart.

use super::errors::IncompatibleConfig;
use crate::config::model::{Config, ProcessConfig};

/// Checks that `next` can replace `current` in a running daemon. The error is the
/// message the deploy fails with.
pub fn check_compatible(current: &Config, next: &Config) -> Result<(), IncompatibleConfig> {
    let proxy = (&current.proxy, &next.proxy);
    // The proxy threads read trustedProxies, bodyTimeoutMs and allowedUpgrades
    // once, when the proxy starts, like its address.
    let changes = [
        (current.application != next.application, "application"),
        (current.control != next.control, "control"),
        (current.state_path != next.state_path, "statePath"),
        (proxy.0.host != proxy.1.host, "proxy.host"),
        (proxy.0.port != proxy.1.port, "proxy.port"),
        (
            proxy.0.upstream_host != proxy.1.upstream_host,
            "proxy.upstreamHost",
        ),
        (proxy.0.access_log != proxy.1.access_log, "proxy.accessLog"),
        (
            proxy.0.trusted_proxies != proxy.1.trusted_proxies,
            "proxy.trustedProxies",
        ),
        (
            proxy.0.body_timeout_ms != proxy.1.body_timeout_ms,
            "proxy.bodyTimeoutMs",
        ),
        (
            proxy.0.allowed_upgrades != proxy.1.allowed_upgrades,
            "proxy.allowedUpgrades",
        ),
        (current.metrics != next.metrics, "metrics"),
        (
            processes_changed(&current.processes, &next.processes),
            "processes",
        ),
    ];
    let blocked: Vec<&'static str> = changes
        .iter()
        .filter(|(changed, _)| *changed)
        .map(|(_, key)| *key)
        .collect();
    if blocked.is_empty() {
        Ok(())
    } else {
        Err(IncompatibleConfig { keys: blocked })
    }
}

/// The process set is fixed for a daemon's life: same ids, and for each the same
/// policy, deploy strategy, replica count and port range. Order may change.
fn processes_changed(current: &[ProcessConfig], next: &[ProcessConfig]) -> bool {
    current.len() != next.len()
        || current.iter().any(|process| {
            match next.iter().find(|candidate| candidate.id == process.id) {
                None => true,
                Some(candidate) => {
                    candidate.policy != process.policy
                        || candidate.deploy_strategy != process.deploy_strategy
                        || candidate.replicas != process.replicas
                        || candidate.port != process.port
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn base() -> Value {
        json!({
            "application": "app",
            "proxy": {"port": 8182},
            "processes": [
                {"id": "web", "policy": "proxied", "command": "run web", "port": {"from": 18000, "to": 18099}},
                {"id": "worker", "policy": "companion", "command": "run worker", "replicas": 2}
            ]
        })
    }

    fn load(value: &Value) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollbridge.json");
        std::fs::write(&path, value.to_string()).unwrap();
        crate::config::load(&path).unwrap().config
    }

    fn check(edit: impl FnOnce(&mut Value)) -> Result<(), IncompatibleConfig> {
        let current = load(&base());
        let mut next = base();
        edit(&mut next);
        check_compatible(&current, &load(&next))
    }

    #[test]
    fn live_changes_are_accepted() {
        assert_eq!(check(|_| {}), Ok(()));
        assert_eq!(
            check(|c| {
                c["processes"][0]["command"] = json!("run web --fast");
                c["processes"][1]["env"] = json!({"A": "b"});
                c["proxy"]["drainTimeoutMs"] = json!(5);
                c["releaseRetention"] = json!({"keep": 2});
                c["processes"].as_array_mut().unwrap().reverse();
            }),
            Ok(())
        );
    }

    #[test]
    fn restart_only_changes_are_listed_in_order() {
        assert_eq!(
            check(|c| {
                c["proxy"]["port"] = json!(9000);
                c["processes"][1]["replicas"] = json!(3);
                c["application"] = json!("other");
            })
            .unwrap_err()
            .to_string(),
            // The default control path follows the application name.
            "Config changes to application, control, proxy.port, processes cannot be applied live; restart the Rollbridge daemon before deploying."
        );
        assert!(
            check(|c| c["control"] = json!({"mode": "600"}))
                .unwrap_err()
                .to_string()
                .starts_with("Config changes to control cannot")
        );
        assert!(
            check(|c| c["statePath"] = json!("/tmp/x.json"))
                .unwrap_err()
                .to_string()
                .starts_with("Config changes to statePath cannot")
        );
        assert!(
            check(|c| c["proxy"]["upstreamHost"] = json!("localhost"))
                .unwrap_err()
                .to_string()
                .starts_with("Config changes to proxy.upstreamHost cannot")
        );
        assert!(
            check(|c| c["processes"][0]["port"] = json!({"from": 18000, "to": 18100}))
                .unwrap_err()
                .to_string()
                .starts_with("Config changes to processes cannot")
        );
        assert!(
            check(|c| c["processes"][1]["id"] = json!("jobs"))
                .unwrap_err()
                .to_string()
                .starts_with("Config changes to processes cannot")
        );
        assert!(
            check(|c| {
                c["processes"][1]["policy"] = json!("singleton");
                c["processes"][1]["replicas"] = json!(1);
            })
            .is_err()
        );
    }
}
