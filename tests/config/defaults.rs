//! The normalized model: defaults and pass-through of valid values.

use crate::support::config::*;
use rollbridge::config::hook::HookSpec;
use rollbridge::config::model::*;
use serde_json::{Map, json};
use std::path::PathBuf;

#[test]
fn a_minimal_config_gets_every_default() {
    let config = assert_valid(&base());
    assert_eq!(config.application, "shop");
    assert_eq!(
        config.control,
        ControlConfig {
            path: "/tmp/rollbridge-shop.sock".to_string(),
            mode: None,
            owner: None,
            group: None,
        }
    );
    assert_eq!(
        config.proxy,
        ProxyConfig {
            host: "127.0.0.1".to_string(),
            port: 8182,
            upstream_host: "127.0.0.1".to_string(),
            health_path: "/ping".to_string(),
            health_timeout_ms: 30_000,
            drain_timeout_ms: 60_000,
            force_stop_timeout_ms: 10_000,
            access_log: None,
            trusted_proxies: IpRange::loopback(),
            body_timeout_ms: 30_000,
            allowed_upgrades: vec![],
            readiness_path: None,
        }
    );
    assert_eq!(config.metrics, None);
    assert_eq!(config.rollout, RolloutConfig::default());
    assert_eq!(config.rollout.watch_ms, 0, "no watch unless asked for");
    assert_eq!(config.legacy_takeover, None);
    assert_eq!(
        config.release_retention,
        ReleaseRetention {
            keep: 10,
            max_age_ms: 0
        }
    );
    assert_eq!(config.state_path, None);
    assert_eq!(config.plugins, PluginsConfig::default());
    let web = &config.processes[0];
    assert_eq!(
        web,
        &ProcessConfig {
            id: "web".to_string(),
            command: "python3 app.py".to_string(),
            policy: Policy::Proxied,
            deploy_strategy: DeployStrategy::Persistent,
            cwd: None,
            env: vec![],
            port: Some(PortRange {
                from: 18000,
                to: 18099
            }),
            health: Some(HealthConfig {
                path: "/ping".to_string(),
                timeout_ms: 30_000,
                interval_ms: 250,
                start_delay_ms: 0,
                check: None,
            }),
            stop_signal: "SIGTERM".to_string(),
            graceful_stop: GracefulStop::Millis(10_000),
            lifecycle: Lifecycle::default(),
            non_blocking_drain: false,
            restart_delay_ms: 1000,
            restart: RestartPolicy {
                max_restarts: None,
                window_ms: 0,
                backoff_factor: 1.0,
                max_delay_ms: 0,
            },
            memory: None,
            replicas: 1,
            output_lines: 50,
            log_file: None,
        }
    );
    assert_eq!(config.proxied().id, "web");
}

#[test]
fn process_defaults_follow_the_proxy_settings() {
    let config = assert_valid(&with_root(json!({
        "application": "billing",
        "proxy": {"host": "10.0.0.5", "port": 0, "healthPath": "/up", "healthTimeoutMs": 5000, "forceStopTimeoutMs": 2500}
    })));
    assert_eq!(config.control.path, "/tmp/rollbridge-billing.sock");
    assert_eq!(config.proxy.upstream_host, "10.0.0.5");
    assert_eq!(config.proxy.port, 0);
    let web = &config.processes[0];
    let health = web.health.as_ref().unwrap();
    assert_eq!(health.path, "/up");
    assert_eq!(health.timeout_ms, 5000);
    assert_eq!(web.graceful_stop, GracefulStop::Millis(2500));
}

#[test]
fn wildcard_proxy_hosts_default_the_upstream_to_loopback() {
    for host in ["0.0.0.0", "::"] {
        let config = assert_valid(&with_root(json!({"proxy": {"host": host}})));
        assert_eq!(config.proxy.upstream_host, "127.0.0.1", "{host}");
    }
    let config = assert_valid(&with_root(
        json!({"proxy": {"host": "0.0.0.0", "upstreamHost": "::1"}}),
    ));
    assert_eq!(config.proxy.upstream_host, "::1");
}

#[test]
fn control_mode_owner_and_group_are_normalized() {
    let cases = [
        (json!("660"), 0o660),
        (json!("0o660"), 0o660),
        (json!("0"), 0),
        (json!("0777"), 0o777),
        (json!(432), 432),
        (json!(0), 0),
    ];
    for (mode, expected) in cases {
        let config = assert_valid(&with_root(json!({"control": {"mode": mode}})));
        assert_eq!(config.control.mode, Some(expected), "{mode}");
    }
    let config = assert_valid(&with_root(json!({
        "control": {"owner": "deploy", "group": 33, "path": "/run/shop.sock"}
    })));
    assert_eq!(
        config.control.owner,
        Some(IdOrName::Name("deploy".to_string()))
    );
    assert_eq!(config.control.group, Some(IdOrName::Id(33)));
    assert_eq!(config.control.path, "/run/shop.sock");
    let config = assert_valid(&with_root(
        json!({"control": {"owner": "1000", "group": "0"}}),
    ));
    assert_eq!(config.control.owner, Some(IdOrName::Id(1000)));
    assert_eq!(config.control.group, Some(IdOrName::Id(0)));
}

#[test]
fn valid_values_pass_through() {
    let config = assert_valid(&with_web(json!({
        "cwd": "{{releasePath}}/web",
        "env": {"B": "2", "A": "{{port}}"},
        "health": {"path": "/healthz", "timeoutMs": 1500.5, "intervalMs": 100, "startDelayMs": 2000},
        "stopSignal": "SIGINT",
        "gracefulStopMs": "indefinite",
        "outputLines": 5,
        "restartDelayMs": 0,
        "restart": {"maxRestarts": 0, "windowMs": 60000, "backoffFactor": 2, "maxDelayMs": 30000},
        "memory": {"limitBytes": 536870912, "warnBytes": 402653184, "checkIntervalMs": 1000},
        "lifecycle": {"quietCommand": "q", "drainCommand": "d", "drainTimeoutMs": 1000}
    })));
    let web = &config.processes[0];
    assert_eq!(web.cwd.as_deref(), Some("{{releasePath}}/web"));
    // JSON keeps the file's key order.
    assert_eq!(
        web.env,
        vec![
            ("B".to_string(), "2".to_string()),
            ("A".to_string(), "{{port}}".to_string())
        ]
    );
    let health = web.health.as_ref().unwrap();
    assert_eq!(
        (
            health.path.as_str(),
            health.timeout_ms,
            health.interval_ms,
            health.start_delay_ms
        ),
        ("/healthz", 1501, 100, 2000)
    );
    assert_eq!(web.stop_signal, "SIGINT");
    assert_eq!(web.graceful_stop, GracefulStop::Indefinite);
    assert_eq!(web.output_lines, 5);
    assert_eq!(web.restart_delay_ms, 0);
    assert_eq!(
        web.restart,
        RestartPolicy {
            max_restarts: Some(0),
            window_ms: 60000,
            backoff_factor: 2.0,
            max_delay_ms: 30000
        }
    );
    assert_eq!(
        web.memory,
        Some(MemoryConfig {
            limit_bytes: 536870912,
            warn_bytes: 402653184,
            check_interval_ms: 1000
        })
    );
    assert_eq!(
        web.lifecycle,
        Lifecycle {
            quiet: Some(HookSpec::Command("q".to_string())),
            drain: Some(HookSpec::Command("d".to_string())),
            stop: None,
            drain_timeout_ms: 1000,
        }
    );
}

#[test]
fn memory_with_only_a_limit_gets_defaults() {
    let config = assert_valid(&with_web(json!({"memory": {"limitBytes": 1000}})));
    assert_eq!(
        config.processes[0].memory,
        Some(MemoryConfig {
            limit_bytes: 1000,
            warn_bytes: 0,
            check_interval_ms: 5000
        })
    );
}

#[test]
fn health_can_be_turned_off() {
    for off in [json!(false), json!(null)] {
        let mut config = base();
        config["processes"][0]["health"] = off;
        let config = assert_valid(&config);
        assert_eq!(config.processes[0].health, None);
    }
}

#[test]
fn ports_numbers_become_ranges_and_zero_is_ephemeral() {
    let config = assert_valid(&with_web(json!({"port": 0})));
    assert_eq!(config.processes[0].port, Some(PortRange { from: 0, to: 0 }));
    assert!(config.processes[0].port.unwrap().is_ephemeral());
    let config = assert_valid(&with_web(json!({"port": {"from": 0, "to": 0}})));
    assert_eq!(config.processes[0].port, Some(PortRange { from: 0, to: 0 }));
    let config = assert_valid(&with_web(json!({"port": {"to": 0}})));
    assert_eq!(config.processes[0].port, Some(PortRange { from: 0, to: 0 }));
    // A fixed port is fine where nothing overlaps across releases.
    let config = assert_valid(&with_process(
        json!({"id": "db", "policy": "service", "command": "x", "port": 5432}),
    ));
    assert_eq!(
        config.processes[1].port,
        Some(PortRange {
            from: 5432,
            to: 5432
        })
    );
    let config = assert_valid(&with_process(
        json!({"id": "cron", "policy": "singleton", "command": "x", "port": 9100}),
    ));
    assert_eq!(
        config.processes[1].port,
        Some(PortRange {
            from: 9100,
            to: 9100
        })
    );
}

#[test]
fn replicas_non_blocking_drain_and_handoff_where_allowed() {
    let config = assert_valid(&with_process(json!({
        "id": "worker", "command": "w", "replicas": 4, "nonBlockingDrain": true
    })));
    assert_eq!(config.processes[1].replicas, 4);
    assert!(config.processes[1].non_blocking_drain);
    assert_eq!(config.processes[1].policy, Policy::Companion);

    let config = assert_valid(&with_process(json!({
        "id": "svc", "policy": "service", "command": "s", "deployStrategy": "handoff",
        "port": {"from": 18600, "to": 18699}
    })));
    assert!(config.processes[1].is_handoff_service());
}

#[test]
fn stop_signal_rules_that_must_not_fire() {
    for extra in [
        json!({"stopSignal": "SIGINT"}),
        json!({"lifecycle": {"stopCommand": "stop.sh"}}),
        json!({"stopSignal": "SIGTERM", "lifecycle": {"stopCommand": "stop.sh"}}),
        json!({"stopSignal": "SIGTERM", "lifecycle": {"stop": {"plugin": "signal", "signal": "SIGINT"}}}),
    ] {
        assert_valid(&with_web(extra));
    }
}

#[test]
fn new_hook_keys_and_plugins() {
    let config = assert_valid(&with_web(json!({
        "lifecycle": {
            "quiet": {"plugin": "signal", "signal": "SIGUSR1"},
            "drain": {"plugin": "wait-exit"},
            "drainTimeoutMs": 2000,
            "stop": "kill -TERM -$ROLLBRIDGE_PID"
        },
        "health": {"check": {"plugin": "tcp"}}
    })));
    let web = &config.processes[0];
    let mut options = Map::new();
    options.insert("signal".to_string(), json!("SIGUSR1"));
    assert_eq!(
        web.lifecycle.quiet,
        Some(HookSpec::Plugin {
            name: "signal".to_string(),
            options
        })
    );
    assert_eq!(
        web.lifecycle.drain,
        Some(HookSpec::Plugin {
            name: "wait-exit".to_string(),
            options: Map::new()
        })
    );
    assert_eq!(
        web.lifecycle.stop,
        Some(HookSpec::Command("kill -TERM -$ROLLBRIDGE_PID".to_string()))
    );
    assert_eq!(
        web.health.as_ref().unwrap().check,
        Some(HookSpec::Plugin {
            name: "tcp".to_string(),
            options: Map::new()
        })
    );
    let config = assert_valid(&with_web(
        json!({"health": {"check": "curl -fsS localhost:$ROLLBRIDGE_PORT/ping"}}),
    ));
    assert!(matches!(
        config.processes[0].health.as_ref().unwrap().check,
        Some(HookSpec::Command(_))
    ));
}

#[test]
fn lua_script_hooks_resolve_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hooks/drain.lua", "function drain(ctx) end");
    let config = with_web(json!({
        "lifecycle": {"drain": {"lua": "hooks/drain.lua", "fn": "drain", "queue": "mail"}, "drainTimeoutMs": 100}
    }));
    let report = rollbridge::config::validate_value(
        &config,
        &rollbridge::config::ValidationContext::for_dir(dir.path()),
    );
    assert!(report.issues.is_empty(), "{:#?}", report.issues);
    let mut options = Map::new();
    options.insert("queue".to_string(), json!("mail"));
    assert_eq!(
        report.config.unwrap().processes[0].lifecycle.drain,
        Some(HookSpec::LuaFile {
            file: dir.path().join("hooks/drain.lua"),
            function: "drain".to_string(),
            options,
        })
    );
}

#[test]
fn legacy_takeover_normalizes() {
    let config = assert_valid(&with_root(json!({
        "proxy": {"forceStopTimeoutMs": 4000},
        "legacyTakeover": {
            "screens": ["shop-web"],
            "processes": [{"includes": ["puma", "shop"]}, {"includes": ["sidekiq"], "name": "jobs"}],
            "matchers": [{"plugin": "cmdline", "includes": ["unicorn"]}]
        }
    })));
    let mut options = Map::new();
    options.insert("includes".to_string(), json!(["unicorn"]));
    assert_eq!(
        config.legacy_takeover,
        Some(LegacyTakeover {
            force_stop_timeout_ms: 4000,
            screens: vec!["shop-web".to_string()],
            processes: vec![
                LegacyProcessMatcher {
                    includes: vec!["puma".to_string(), "shop".to_string()],
                    name: "legacy process 1".to_string(),
                },
                LegacyProcessMatcher {
                    includes: vec!["sidekiq".to_string()],
                    name: "jobs".to_string()
                },
            ],
            matchers: vec![HookSpec::Plugin {
                name: "cmdline".to_string(),
                options
            }],
        })
    );
    // Matchers alone satisfy the at-least-one rule.
    assert_valid(&with_root(
        json!({"legacyTakeover": {"matchers": [{"plugin": "screen", "name": ["x"]}]}}),
    ));
}

#[test]
fn retention_state_path_and_plugins() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "plugins/libqueue.so", "");
    let config = with_root(json!({
        "releaseRetention": {"keep": 0, "maxAgeMs": 86400000},
        "statePath": "/var/lib/rollbridge/shop.json",
        "plugins": {"native": ["plugins/libqueue.so"]}
    }));
    let report = rollbridge::config::validate_value(
        &config,
        &rollbridge::config::ValidationContext::for_dir(dir.path()),
    );
    assert!(report.issues.is_empty(), "{:#?}", report.issues);
    let config = report.config.unwrap();
    assert_eq!(
        config.release_retention,
        ReleaseRetention {
            keep: 0,
            max_age_ms: 86_400_000
        }
    );
    assert_eq!(
        config.state_path.as_deref(),
        Some("/var/lib/rollbridge/shop.json")
    );
    assert_eq!(
        config.plugins.native,
        vec![dir.path().join("plugins/libqueue.so")]
    );
    let config = assert_valid(&with_root(json!({"statePath": null})));
    assert_eq!(config.state_path, None);
}

#[test]
fn the_default_application_is_the_config_folder_name() {
    let ctx = rollbridge::config::ValidationContext::for_config_file(std::path::Path::new(
        "/srv/apps/../shop/./rollbridge.json",
    ));
    assert_eq!(ctx.config_dir, PathBuf::from("/srv/shop"));
    assert_eq!(ctx.default_application, "shop");
}
