//! `rollbridge validate` and `rollbridge completion`, driven through the binary.

use crate::support::config::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};

fn rollbridge(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rollbridge"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run rollbridge")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const BAD_PORT: &str = r#"{
  "proxy": {},
  "processes": [{ "id": "web", "policy": "proxied", "command": "x", "port": { "from": 200, "to": 100 } }]
}"#;

#[test]
fn validate_json_for_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.json", BAD_PORT);
    let output = rollbridge(&["validate", "--config", "bad.json", "--json"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let result: Value = serde_json::from_str(&stdout(&output)).expect("JSON on stdout");
    let keys: Vec<&str> = result
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["config", "issues", "path", "valid"]);
    assert_eq!(result["config"], Value::Null);
    assert_eq!(result["path"], "bad.json");
    assert_eq!(result["valid"], false);
    let issues = result["issues"].as_array().unwrap();
    assert!(!issues.is_empty());
    for issue in issues {
        let keys: Vec<&str> = issue
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["fix", "message"]);
        assert!(!issue["fix"].as_str().unwrap().is_empty());
    }
    assert!(issues.iter().any(|issue| issue["message"]
        == "processes[0].port must be a positive port or valid {from, to} range"));
    // The port was given, only wrongly: its own issue says so, and no
    // "must define a port range" follows (issue 15).
    assert!(
        !issues
            .iter()
            .any(|issue| issue["message"] == "Proxied process web must define a port range")
    );
    assert_eq!(issues.len(), 1, "{issues:?}");
    let fix = issues[0]["fix"].as_str().unwrap();
    assert!(
        fix.starts_with("Its from (200) is greater than its to (100)"),
        "{fix}"
    );
    assert!(
        fix.contains("\"port\": {\"from\": 100, \"to\": 200}"),
        "JSON syntax in a JSON file: {fix}"
    );
}

#[test]
fn validate_json_for_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.json", &minimal_json());
    let output = rollbridge(&["validate", "--json", "-c", "good.json"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let result: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let application = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        result,
        json!({
            "config": {"application": application, "processes": 1, "proxy": {"host": "127.0.0.1", "port": 8182}},
            "issues": [],
            "path": "good.json",
            "valid": true
        })
    );
    let config_keys: Vec<&str> = result["config"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(config_keys, ["application", "processes", "proxy"]);
}

#[test]
fn validate_text_output() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.json", &minimal_json());
    let output = rollbridge(&["validate", "--config", "good.json"], dir.path());
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        "good.json is valid: 1 process, proxy on 127.0.0.1:8182.\n"
    );

    let examples = repo_root().join("examples/rollbridge.lua");
    let output = rollbridge(
        &["validate", "--config", examples.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(
        stdout(&output),
        format!(
            "{} is valid: 4 processes, proxy on 127.0.0.1:4500.\n",
            examples.display()
        )
    );

    write(
        dir.path(),
        "bad.json",
        r#"{"proxy": {}, "processes": [{"id": "web", "policy": "proxied", "command": "x"}]}"#,
    );
    let output = rollbridge(&["validate", "--config", "bad.json"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    let text = stderr(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Found 1 configuration issue in bad.json:");
    assert_eq!(lines[1], "");
    assert_eq!(lines[2], "1. Proxied process web must define a port range");
    assert!(
        lines[3].starts_with("   Fix: Add a port range to the proxied process \"web\""),
        "{text}"
    );
    assert_eq!(lines.len(), 4, "{text}");

    write(
        dir.path(),
        "worse.json",
        r#"{"proxy": {}, "processes": {}}"#,
    );
    let output = rollbridge(&["validate", "--config", "worse.json"], dir.path());
    let text = stderr(&output);
    assert!(
        text.starts_with(
            "Found 2 configuration issues in worse.json:\n\n1. processes must be an array\n   Fix: "
        ),
        "{text}"
    );
    assert!(
        text.contains("\n\n2. Config must define exactly one proxied process; found 0\n   Fix: "),
        "{text}"
    );
}

#[test]
fn validate_finds_the_default_config_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rollbridge.json", &minimal_json());
    let output = rollbridge(&["validate"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "{} is valid: 1 process, proxy on 127.0.0.1:8182.\n",
            dir.path().join("rollbridge.json").display()
        )
    );
}

#[test]
fn validate_without_any_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let message = format!(
        "No config file found in {}. Pass --config <path> or add one of: rollbridge.lua, rollbridge.json, rollbridge.js.",
        dir.path().display()
    );
    let output = rollbridge(&["validate"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output), format!("{message}\n"));

    let output = rollbridge(&["validate", "--json"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let result: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(result["config"], Value::Null);
    assert_eq!(result["path"], Value::Null);
    assert_eq!(result["valid"], false);
    assert_eq!(result["issues"][0]["message"], message);
    assert!(!result["issues"][0]["fix"].as_str().unwrap().is_empty());
}

#[test]
fn validate_reports_load_errors_as_one_issue() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "loop.lua", "while true do end");
    let output = rollbridge(&["validate", "--json", "--config", "loop.lua"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let result: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(result["issues"].as_array().unwrap().len(), 1);
    assert_eq!(
        result["issues"][0]["message"],
        "Lua config loop.lua did not finish within 2000 ms"
    );

    write(
        dir.path(),
        "error.lua",
        "return {\n  proxy = nil .. 'x',\n}",
    );
    let output = rollbridge(&["validate", "--config", "error.lua"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(
            "1. Lua config error.lua failed: error.lua:2: attempt to concatenate a nil value"
        ),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_javascript_config_without_node_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rollbridge.js", "module.exports = {};");
    let empty_path = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rollbridge"))
        .args(["validate", "--json"])
        .current_dir(dir.path())
        .env("PATH", empty_path.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let result: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let message = result["issues"][0]["message"].as_str().unwrap();
    assert!(
        message.ends_with("rollbridge.js: node was not found on PATH"),
        "{message}"
    );
    let fix = result["issues"][0]["fix"].as_str().unwrap();
    assert!(
        fix.contains("Install Node.js") && fix.contains("rollbridge.lua"),
        "{fix}"
    );
}

#[test]
fn a_javascript_config_function_sees_the_environment() {
    if !node_available("a_javascript_config_function_sees_the_environment") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rollbridge.js",
        "module.exports = () => ({ proxy: { port: Number(process.env.ROLLBRIDGE_JS_TEST_PORT) }, processes: [{ id: 'web', policy: 'proxied', command: 'x', port: 0 }] });",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_rollbridge"))
        .arg("validate")
        .current_dir(dir.path())
        .env("ROLLBRIDGE_JS_TEST_PORT", "9191")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).ends_with("rollbridge.js is valid: 1 process, proxy on 127.0.0.1:9191.\n")
    );
}

const COMMANDS: [&str; 15] = [
    "daemon",
    "deploy",
    "rollback",
    "ensure-daemon",
    "status",
    "stop",
    "restart",
    "shutdown",
    "validate",
    "doctor",
    "logs",
    "events",
    "predeploy-cleanup",
    "recover",
    "completion",
];

#[test]
fn completion_scripts_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    let bash = rollbridge(&["completion", "bash"], dir.path());
    assert_eq!(bash.status.code(), Some(0));
    let script = stdout(&bash);
    assert!(
        script.contains("_rollbridge()"),
        "bash script defines _rollbridge"
    );
    assert!(
        script.contains("complete -F _rollbridge"),
        "bash script registers itself"
    );
    for command in COMMANDS {
        assert!(script.contains(command), "bash: {command}");
    }
    for flag in [
        "--release-path",
        "--daemon-runtime-path",
        "--policy",
        "--json",
        "--config",
    ] {
        assert!(script.contains(flag), "bash: {flag}");
    }

    let zsh = rollbridge(&["completion", "zsh"], dir.path());
    assert_eq!(zsh.status.code(), Some(0));
    let script = stdout(&zsh);
    assert!(
        script.starts_with("#compdef rollbridge"),
        "zsh script header"
    );
    for command in COMMANDS {
        assert!(script.contains(command), "zsh: {command}");
    }
    assert!(script.contains("--limit"));

    let fish = rollbridge(&["completion", "fish"], dir.path());
    assert_eq!(fish.status.code(), Some(0));
    let script = stdout(&fish);
    assert!(script.contains("complete -c rollbridge"));
    assert!(script.contains("predeploy-cleanup"));
}

#[test]
fn completion_rejects_other_shells() {
    let dir = tempfile::tempdir().unwrap();
    let output = rollbridge(&["completion", "powershell"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        "Unsupported shell \"powershell\". Supported shells: bash, zsh, fish.\n"
    );
}

/// The `opts="…"` line of one branch of the bash script.
fn bash_branch_options<'a>(script: &'a str, branch: &str) -> &'a str {
    let start = script
        .find(&format!("        {branch})\n"))
        .unwrap_or_else(|| panic!("no {branch} branch"));
    script[start..]
        .lines()
        .find_map(|line| line.trim().strip_prefix("opts=\""))
        .unwrap_or_else(|| panic!("no opts in {branch}"))
}

#[test]
fn completion_branches_offer_each_commands_own_flags() {
    let dir = tempfile::tempdir().unwrap();
    let bash = stdout(&rollbridge(&["completion", "bash"], dir.path()));
    assert!(bash.contains("complete -F _rollbridge -o"), "{bash}");
    assert!(bash.trim_end().ends_with("rollbridge\nfi"));
    // The top level offers the commands in the documented order.
    let top = bash_branch_options(&bash, "rollbridge");
    let offered: Vec<&str> = top
        .split_whitespace()
        .filter(|w| !w.starts_with('-'))
        .collect();
    assert_eq!(&offered[..COMMANDS.len()], COMMANDS);
    for (branch, flag) in [
        ("rollbridge__subcmd__deploy", "--release-path"),
        (
            "rollbridge__subcmd__ensure__subcmd__daemon",
            "--daemon-runtime-path",
        ),
        ("rollbridge__subcmd__restart", "--policy"),
        ("rollbridge__subcmd__events", "--limit"),
    ] {
        let options = bash_branch_options(&bash, branch);
        assert!(
            options.split_whitespace().any(|o| o == flag),
            "{branch}: {options}"
        );
    }
    assert!(!bash_branch_options(&bash, "rollbridge__subcmd__status").contains("--release-path"));

    let zsh = stdout(&rollbridge(&["completion", "zsh"], dir.path()));
    assert!(zsh.contains("compdef _rollbridge rollbridge"));
    let listed = zsh
        .split("local commands; commands=(\n")
        .nth(1)
        .expect("the command list");
    let names: Vec<&str> = listed
        .lines()
        .take(COMMANDS.len())
        .map(|line| line.trim_start_matches('\'').split(':').next().unwrap())
        .collect();
    assert_eq!(names, COMMANDS);
    let events = zsh.split("\n(events)\n").nth(1).expect("an events branch");
    let events = &events[..events.find("\n;;").unwrap()];
    assert!(events.contains("'--limit=["), "{events}");
}
