//! What a new user tripped over in `validate` (issue 15): a reversed port range,
//! fixes written in another format's syntax, 0-based paths in a 1-based Lua
//! file, a range holding the proxy's own port, and placeholder typos. Driven
//! through the real binary with `--json`.

use crate::support::config::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// `rollbridge validate --config <file> --json` in `dir`: exit code and issues.
fn validate(dir: &Path, file: &str) -> (i32, Vec<(String, String)>) {
    let output = Command::new(env!("CARGO_BIN_EXE_rollbridge"))
        .args(["validate", "--config", file, "--json"])
        .current_dir(dir)
        .output()
        .expect("run rollbridge");
    let result: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let issues = result["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|issue| {
            (
                issue["message"].as_str().unwrap().to_string(),
                issue["fix"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (output.status.code().unwrap_or(-1), issues)
}

/// Validates `source` as `rollbridge.lua`, which must fail: the issues.
fn invalid_lua(source: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rollbridge.lua", source);
    let (code, issues) = validate(dir.path(), "rollbridge.lua");
    assert_eq!(code, 1, "{issues:?}");
    issues
}

/// The messages of `issues`.
fn messages(issues: &[(String, String)]) -> Vec<&str> {
    issues.iter().map(|(message, _)| message.as_str()).collect()
}

const REVERSED_LUA: &str = r#"local rb = require("rollbridge")
return {
  proxy = { port = 4500 },
  processes = {
    { id = "web", policy = "proxied", command = "exec python3 app.py",
      port = rb.range(26199, 26100) },
  },
}
"#;

#[test]
fn a_reversed_range_is_one_issue_that_says_so_in_lua_syntax_with_the_lua_place() {
    let issues = invalid_lua(REVERSED_LUA);
    assert_eq!(issues.len(), 1, "once, without a follow-on: {issues:?}");
    let (message, fix) = &issues[0];
    assert_eq!(
        message,
        "processes[0].port must be a positive port or valid {from, to} range"
    );
    assert_eq!(
        fix,
        "Its from (26199) is greater than its to (26100); a range runs upwards, so swap them: port = { from = 26100, to = 26199 }. (Lua counts list entries from 1: this is processes[1].port, the process on line 5 of rollbridge.lua.)"
    );
}

#[test]
fn fixes_show_json_in_a_json_config() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "app.json",
        r#"{"processes": [{"id": "web", "policy": "proxied", "command": "x", "port": 18000}], "metrics": 5}"#,
    );
    let (code, issues) = validate(dir.path(), "app.json");
    assert_eq!(code, 1);
    let fix_of = |start: &str| {
        issues
            .iter()
            .find(|(message, _)| message.starts_with(start))
            .unwrap_or_else(|| panic!("no {start}: {issues:?}"))
            .1
            .clone()
    };
    assert!(fix_of("proxy is required").contains("\"proxy\": {\"port\": 8182}"));
    assert!(fix_of("metrics must be an object").contains("\"metrics\": {\"port\": 9464}"));
    let fixed_port = fix_of("Process \"web\" uses the fixed port 18000");
    assert!(
        fixed_port.contains("\"port\": {\"from\": 18000, \"to\": 18099}"),
        "{fixed_port}"
    );
    assert!(fixed_port.contains("\"port\": 0"), "{fixed_port}");
    for (_, fix) in &issues {
        assert!(!fix.contains(" = {"), "no Lua in a JSON config: {fix}");
        assert!(!fix.contains("Lua counts"), "{fix}");
    }
}

#[test]
fn a_range_holding_the_proxy_port_is_an_issue() {
    let issues = invalid_lua(
        r#"return {
  proxy = { port = 26150 },
  processes = {
    { id = "web", policy = "proxied", command = "x", port = { from = 26100, to = 26199 } },
    { id = "cache", policy = "service", command = "y", port = 26150 },
    { id = "ok", policy = "service", command = "z", port = 26300 },
  },
}
"#,
    );
    assert_eq!(
        messages(&issues),
        [
            "Process \"web\" has the port range 26100-26199, which contains proxy.port 26150",
            "Process \"cache\" has the port range 26150-26150, which contains proxy.port 26150",
        ]
    );
    assert!(
        issues[0].1.contains("port = { from = 26151, to = 26250 }"),
        "{}",
        issues[0].1
    );
}

#[test]
fn placeholders_that_can_never_be_filled_are_reported() {
    let config = r#"return {
  proxy = { port = 4500 },
  processes = {
    { id = "web", policy = "proxied", port = { from = 18000, to = 18099 },
      command = "exec app --port {{prot}} --db {{ports.db}} --home {{env.HOME}} {{ proxy.port }}",
      env = { RELEASE = "{{releaseId}}" } },
    { id = "jobs", command = "exec worker {{port}}", logFile = "logs/{{processId}}-{{replicaIndex}}.log" },
  },
}
"#;
    let issues = invalid_lua(config);
    assert_eq!(
        messages(&issues),
        [
            "processes[0].command uses {{prot}}, which is not a placeholder rollbridge knows",
            "processes[0].command uses {{ports.db}}, which names no process with a port",
            "processes[1].command uses {{port}}, which needs a port, and this process has none",
        ]
    );
    assert!(
        issues[0].1.starts_with("Did you mean {{port}}?"),
        "{}",
        issues[0].1
    );
    assert!(
        issues[1].1.starts_with("Use one of: {{ports.web}}."),
        "{}",
        issues[1].1
    );
    assert!(
        issues[2]
            .1
            .contains("processes[2].command, the process on line 7"),
        "{}",
        issues[2].1
    );

    // The same config loads for the daemon and doctor: a running setup keeps
    // starting, and doctor --release-path reports templates among its checks.
    let dir = tempfile::tempdir().unwrap();
    let loaded = rollbridge::config::load(&write(dir.path(), "rollbridge.lua", config));
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}
