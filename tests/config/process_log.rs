//! `processes[].logFile`: the accepted shapes, the normalized model, and one
//! message (with a fix) per mistake, in every config format.

use crate::support::config::*;
use rollbridge::config::load;
use rollbridge::config::model::{ProcessLogFileConfig, ProcessLogFormat, Rotation};
use serde_json::{Value, json};
use std::path::PathBuf;

/// The base config with `processes[0].logFile` set to `value` (`null` included).
fn log_file(value: Value) -> Value {
    let mut config = base();
    config["processes"][0]["logFile"] = value;
    config
}

fn settings(path: &str) -> ProcessLogFileConfig {
    ProcessLogFileConfig {
        path: path.to_string(),
        base_dir: PathBuf::from("/srv/shop"),
        format: ProcessLogFormat::Raw,
        rotation: None,
        keep: None,
    }
}

#[test]
fn absent_means_no_file() {
    assert_eq!(assert_valid(&base()).processes[0].log_file, None);
}

#[test]
fn a_string_is_the_path_with_every_default() {
    let config = assert_valid(&log_file(json!("logs/{{processId}}-{{replicaIndex}}.log")));
    assert_eq!(
        config.processes[0].log_file,
        Some(settings("logs/{{processId}}-{{replicaIndex}}.log"))
    );
}

#[test]
fn a_table_sets_format_rotation_and_keep() {
    let config = assert_valid(&log_file(json!({
        "path": "/var/log/shop/web.log",
        "format": "json",
        "rotation": "hourly",
        "keep": 24
    })));
    assert_eq!(
        config.processes[0].log_file,
        Some(ProcessLogFileConfig {
            format: ProcessLogFormat::Json,
            rotation: Some(Rotation::Hourly),
            keep: Some(24),
            ..settings("/var/log/shop/web.log")
        })
    );
    let config = assert_valid(&log_file(
        json!({"path": "w.log", "format": "raw", "rotation": "never"}),
    ));
    assert_eq!(
        config.processes[0].log_file,
        Some(ProcessLogFileConfig {
            rotation: Some(Rotation::Never),
            ..settings("w.log")
        })
    );
}

#[test]
fn every_mistake_has_its_message() {
    let cases = [
        (
            json!(5),
            "processes[0].logFile must be a string or an object",
        ),
        (
            json!(true),
            "processes[0].logFile must be a string or an object",
        ),
        (
            json!(["a.log"]),
            "processes[0].logFile must be a string or an object",
        ),
        (
            json!(null),
            "processes[0].logFile must be a string or an object",
        ),
        (json!(""), "processes[0].logFile must not be empty"),
        (json!({}), "processes[0].logFile.path is required"),
        (
            json!({"format": "json"}),
            "processes[0].logFile.path is required",
        ),
        (
            json!({"path": 7}),
            "processes[0].logFile.path must be a string",
        ),
        (
            json!({"path": ""}),
            "processes[0].logFile.path must not be empty",
        ),
        (
            json!({"path": "a.log", "format": "text"}),
            "processes[0].logFile.format \"text\" is not a known format",
        ),
        (
            json!({"path": "a.log", "format": 1}),
            "processes[0].logFile.format must be a string",
        ),
        (
            json!({"path": "a.log", "rotation": "weekly"}),
            "processes[0].logFile.rotation \"weekly\" is not a known rotation",
        ),
        (
            json!({"path": "a.log", "rotation": true}),
            "processes[0].logFile.rotation must be a string",
        ),
        (
            json!({"path": "a.log", "keep": 0}),
            "processes[0].logFile.keep must be a positive integer",
        ),
        (
            json!({"path": "a.log", "keep": -3}),
            "processes[0].logFile.keep must be a positive integer",
        ),
        (
            json!({"path": "a.log", "keep": 2.5}),
            "processes[0].logFile.keep must be a positive integer",
        ),
        (
            json!({"path": "a.log", "keep": "7"}),
            "processes[0].logFile.keep must be a positive integer",
        ),
        (
            json!({"path": "a.log", "rotate": "daily"}),
            "processes[0].logFile.rotate is not a known key",
        ),
    ];
    for (value, message) in cases {
        let config = log_file(value.clone());
        assert_issue(&config, message);
        assert_eq!(
            messages(&config).len(),
            1,
            "{value}: {:?}",
            messages(&config)
        );
    }
}

#[test]
fn fixes_say_what_to_write() {
    let fix_of = |value: Value, message: &str| {
        report(&log_file(value))
            .issues
            .into_iter()
            .find(|issue| issue.message == message)
            .unwrap_or_else(|| panic!("no issue {message}"))
            .fix
    };
    let fix = fix_of(
        json!(5),
        "processes[0].logFile must be a string or an object",
    );
    assert!(fix.contains("{{replicaIndex}}"), "{fix}");
    assert!(fix.contains("format = \"json\""), "{fix}");
    let fix = fix_of(
        json!({"path": "a.log", "rotation": "weekly"}),
        "processes[0].logFile.rotation \"weekly\" is not a known rotation",
    );
    assert!(fix.contains("never, hourly, daily"), "{fix}");
    assert!(fix.contains("--log-rotation"), "{fix}");
    let fix = fix_of(
        json!({"path": "a.log", "format": "text"}),
        "processes[0].logFile.format \"text\" is not a known format",
    );
    assert!(fix.starts_with("Use one of: raw, json."), "{fix}");
    let fix = fix_of(
        json!({"path": "a.log", "keep": 0}),
        "processes[0].logFile.keep must be a positive integer",
    );
    assert!(fix.contains("--log-keep"), "{fix}");
    let fix = fix_of(
        json!({"path": "a.log", "rotate": "daily"}),
        "processes[0].logFile.rotate is not a known key",
    );
    assert!(fix.starts_with("Did you mean \"rotation\"?"), "{fix}");
    let fix = fix_of(
        json!({"path": "a.log", "kep": 2}),
        "processes[0].logFile.kep is not a known key",
    );
    assert!(fix.starts_with("Did you mean \"keep\"?"), "{fix}");
    let fix = fix_of(json!(""), "processes[0].logFile must not be empty");
    assert!(fix.contains("config's folder"), "{fix}");
}

#[test]
fn a_typo_of_the_key_itself_is_caught() {
    let config = with_web(json!({"logfile": "a.log"}));
    let issue = report(&config)
        .issues
        .into_iter()
        .find(|issue| issue.message == "processes[0].logfile is not a known key")
        .expect("unknown key issue");
    assert!(
        issue.fix.starts_with("Did you mean \"logFile\"?"),
        "{}",
        issue.fix
    );
}

#[test]
fn several_mistakes_are_all_reported_in_key_order() {
    let config = log_file(json!({"format": "xml", "keep": 0, "rotation": "yearly", "zzz": 1}));
    assert_eq!(
        messages(&config),
        vec![
            "processes[0].logFile.zzz is not a known key",
            "processes[0].logFile.format \"xml\" is not a known format",
            "processes[0].logFile.keep must be a positive integer",
            "processes[0].logFile.path is required",
            "processes[0].logFile.rotation \"yearly\" is not a known rotation",
        ]
    );
}

#[test]
fn lua_json_and_javascript_configs_give_the_same_settings() {
    let dir = tempfile::tempdir().unwrap();
    let lua = write(
        dir.path(),
        "rollbridge.lua",
        r#"return {
  proxy = { port = 8182 },
  processes = {
    { id = "web", policy = "proxied", command = "run", port = { from = 18000, to = 18099 },
      logFile = { path = "logs/{{processId}}.log", format = "json", rotation = "daily", keep = 3 } },
    { id = "worker", command = "work", replicas = 2, logFile = "logs/worker-{{replicaIndex}}.log" },
  },
}"#,
    );
    let json_config = json!({
        "proxy": {"port": 8182},
        "processes": [
            {"id": "web", "policy": "proxied", "command": "run", "port": {"from": 18000, "to": 18099},
             "logFile": {"path": "logs/{{processId}}.log", "format": "json", "rotation": "daily", "keep": 3}},
            {"id": "worker", "command": "work", "replicas": 2, "logFile": "logs/worker-{{replicaIndex}}.log"}
        ]
    });
    let json_path = write(dir.path(), "rollbridge.json", &json_config.to_string());
    let from_lua = load(&lua).unwrap().config;
    let from_json = load(&json_path).unwrap().config;
    assert_eq!(from_lua, from_json);
    let web = from_lua.processes[0].log_file.as_ref().unwrap();
    assert_eq!(web.format, ProcessLogFormat::Json);
    assert_eq!(web.rotation, Some(Rotation::Daily));
    assert_eq!(web.keep, Some(3));
    // Relative paths are taken from the config's folder, like proxy.accessLog.
    assert_eq!(web.base_dir, dir.path());
    if node_available("lua_json_and_javascript_configs_give_the_same_settings") {
        let js = write(
            dir.path(),
            "rollbridge.config.cjs",
            &format!("module.exports = {json_config};"),
        );
        assert_eq!(load(&js).unwrap().config, from_json);
    }
}

#[test]
fn lua_reports_the_same_messages() {
    let dir = tempfile::tempdir().unwrap();
    let lua = write(
        dir.path(),
        "rollbridge.lua",
        r#"return {
  proxy = { port = 8182 },
  processes = {
    { id = "web", policy = "proxied", command = "run", port = { from = 18000, to = 18099 },
      logFile = { pth = "x.log", format = "yaml" } },
    { id = "worker", command = "work", logFile = {} },
  },
}"#,
    );
    assert_eq!(
        check_messages(&lua),
        vec![
            "processes[0].logFile.pth is not a known key",
            "processes[0].logFile.format \"yaml\" is not a known format",
            "processes[0].logFile.path is required",
            "processes[1].logFile.path is required",
        ]
    );
}
