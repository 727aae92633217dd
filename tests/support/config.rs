//! Helpers shared by the config tests.

#![allow(dead_code)]

use rollbridge::config::{Issue, ValidationContext, ValidationReport, validate_value};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A minimal valid config: one proxied process on a port range.
pub fn base() -> Value {
    json!({
        "proxy": { "port": 8182 },
        "processes": [
            { "id": "web", "policy": "proxied", "command": "python3 app.py", "port": { "from": 18000, "to": 18099 } }
        ]
    })
}

/// `base()` with `extra` merged into the proxied process.
pub fn with_web(extra: Value) -> Value {
    let mut config = base();
    merge(&mut config["processes"][0], extra);
    config
}

/// `base()` with `process` appended as `processes[1]`.
pub fn with_process(process: Value) -> Value {
    let mut config = base();
    config["processes"].as_array_mut().unwrap().push(process);
    config
}

/// `base()` with top-level keys replaced.
pub fn with_root(extra: Value) -> Value {
    let mut config = base();
    merge(&mut config, extra);
    config
}

/// Shallow merge of `extra`'s keys into `target`; `null` in `extra` removes a key.
pub fn merge(target: &mut Value, extra: Value) {
    let target = target.as_object_mut().expect("object");
    for (key, value) in extra.as_object().expect("object").clone() {
        if value.is_null() {
            target.remove(&key);
        } else {
            target.insert(key, value);
        }
    }
}

pub fn context() -> ValidationContext {
    ValidationContext::for_dir("/srv/shop")
}

pub fn report(value: &Value) -> ValidationReport {
    validate_value(value, &context())
}

pub fn messages(value: &Value) -> Vec<String> {
    report(value)
        .issues
        .into_iter()
        .map(|i| i.message)
        .collect()
}

/// Asserts that `message` is among the issues, and that every issue has a fix.
#[track_caller]
pub fn assert_issue(value: &Value, message: &str) {
    let report = report(value);
    let found: Vec<&Issue> = report
        .issues
        .iter()
        .filter(|i| i.message == message)
        .collect();
    assert!(
        !found.is_empty(),
        "expected issue {message:?}, got {:#?}",
        report.issues
    );
    for issue in &report.issues {
        assert!(
            !issue.fix.trim().is_empty(),
            "issue without a fix: {issue:?}"
        );
    }
    assert!(
        report.config.is_none(),
        "an invalid config must not produce a Config"
    );
}

#[track_caller]
pub fn assert_valid(value: &Value) -> rollbridge::config::model::Config {
    let report = report(value);
    assert!(
        report.issues.is_empty(),
        "unexpected issues: {:#?}",
        report.issues
    );
    report.config.expect("a valid config")
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, contents).unwrap();
    path
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/config").join(name)
}

/// Whether `node` can be run; tests that need it print a skip notice otherwise.
pub fn node_available(test: &str) -> bool {
    let found = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        eprintln!("SKIPPED {test}: node is not on PATH");
    }
    found
}

/// The config's issues from `check`, messages only.
pub fn check_messages(path: &Path) -> Vec<String> {
    rollbridge::config::check(path)
        .issues
        .into_iter()
        .map(|issue| issue.message)
        .collect()
}

pub fn minimal_json() -> String {
    serde_json::to_string_pretty(&base()).unwrap()
}
