//! The state file and orphan detection on a real daemon.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::process::Command;

fn with_state(dir: &std::path::Path, port: u16) -> Value {
    let mut config = base_config(dir, port);
    config["statePath"] = json!(dir.join("state.json"));
    config["processes"][0]["env"] = json!({"SECRET_TOKEN_NAME": "hunter2-secret-value"});
    config
}

fn dead_pid() -> i32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    pid
}

fn read_state(harness: &Harness) -> Option<Value> {
    let text = std::fs::read_to_string(harness.path("state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

#[test]
fn state_is_persisted_without_secrets_and_removed_on_clean_shutdown() {
    let mut harness = Harness::new(with_state);
    harness.start();
    harness.deploy("v1");
    let state = poll(PATIENCE, || {
        read_state(&harness).filter(|s| s["activeReleaseId"] == "v1")
    })
    .expect("state written after the deploy");
    let text = std::fs::read_to_string(harness.path("state.json")).unwrap();
    assert!(text.ends_with("}\n"));
    assert!(!text.contains("hunter2"));
    assert!(!text.contains("SECRET_TOKEN_NAME"));
    assert!(!text.contains("\"command\""));
    assert!(!text.contains("\"logs\""));
    assert!(!text.contains("\"cwd\""));
    assert!(state.get("status").is_none());
    assert!(
        state["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"] == "traffic switched")
    );
    assert!(state["persistedAt"].as_str().unwrap().ends_with('Z'));
    let web = &state["releases"][0]["processes"][0];
    assert_eq!(web["id"], "web");
    assert!(web["pid"].is_number());
    // No temporary files are left next to the state file.
    let stray: Vec<_> = std::fs::read_dir(harness.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty());
    assert_eq!(harness.shutdown(), 0);
    assert!(!harness.path("state.json").exists());
}

#[test]
fn the_state_file_holds_no_environment_values_or_hook_options() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = with_state(dir, port);
        let web = &mut config["processes"][0];
        web["env"] =
            json!({"API_TOKEN": "env-secret-71c3", "DATABASE_URL": "postgres://u:pw-55e1@db/x"});
        web["lifecycle"] = json!({
            "quiet": {"plugin": "command", "command": "true hook-option-secret-9f2"},
            "stop": {"plugin": "signal", "signal": "TERM"}
        });
        config
    });
    harness.start();
    harness.deploy("v1");
    harness.deploy("v2");
    let state = poll(PATIENCE, || {
        read_state(&harness).filter(|s| {
            s["activeReleaseId"] == "v2" && s["releases"][0]["processes"][0]["pid"].is_number()
        })
    })
    .expect("state written after the deploys");
    let text = std::fs::read_to_string(harness.path("state.json")).unwrap();
    for secret in [
        "env-secret-71c3",
        "API_TOKEN",
        "pw-55e1",
        "hook-option-secret-9f2",
        "\"lifecycle\"",
        "\"signal\": \"TERM\"",
        "\"env\"",
        "\"command\"",
        "app.py",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the state file:\n{text}"
        );
    }
    assert_eq!(state["version"], 1);
    let releases: Vec<&str> = state["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["releaseId"].as_str().unwrap())
        .collect();
    assert!(releases.contains(&"v2"), "{releases:?}");
    assert!(
        state["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"] == "traffic switched" && e["data"]["releaseId"] == "v2")
    );
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn orphans_from_a_previous_daemon_are_reported_and_dropped_once_gone() {
    let mut harness = Harness::new(with_state);
    let live = GroupGuard::spawn_sleep(&["1000"]);
    let dead = dead_pid();
    let previous = json!({
        "activeReleaseId": "v1",
        "orphans": [],
        "releases": [{"releaseId": "v1", "processes": [
            {"id": "worker", "pid": live.pid()},
            {"id": "web", "pid": dead}
        ]}],
        "services": [],
        "singletons": []
    });
    std::fs::write(harness.path("state.json"), previous.to_string()).unwrap();
    harness.start();
    let output = harness.output().events();
    let detected: Vec<&Value> = output
        .iter()
        .filter(|e| e["message"] == "orphaned managed process detected")
        .collect();
    assert_eq!(detected.len(), 1);
    assert_eq!(
        detected[0]["data"],
        json!({"pid": live.pid(), "processId": "worker", "releaseId": "v1"})
    );
    let summary = output
        .iter()
        .find(|e| e["message"] == "orphaned processes from a previous daemon")
        .unwrap();
    assert_eq!(summary["data"]["count"], 1);
    assert_eq!(
        summary["data"]["hint"],
        "a previous daemon did not shut down cleanly; verify these pids and stop any leftovers"
    );
    assert_eq!(
        harness.status()["orphans"],
        json!([{"id": "worker", "pid": live.pid(), "releaseId": "v1"}])
    );
    assert!(pid_alive(live.pid()), "orphans are never signalled");
    // The running daemon carries the orphan along in its own state file.
    wait_until(PATIENCE, "the orphan in the new state file", || {
        read_state(&harness).is_some_and(|s| s["orphans"][0]["pid"] == live.pid())
    });
    drop(live);
    wait_until(PATIENCE, "the orphan to be dropped", || {
        harness.status()["orphans"] == json!([])
    });
}

#[test]
fn a_clean_shutdown_keeps_records_of_live_orphans() {
    let mut harness = Harness::new(with_state);
    let live = GroupGuard::spawn_sleep(&["1000"]);
    let previous = json!({
        "activeReleaseId": null,
        "orphans": [{"id": "worker", "pid": live.pid(), "releaseId": "previous"}],
        "releases": [],
        "services": [],
        "singletons": []
    });
    std::fs::write(harness.path("state.json"), previous.to_string()).unwrap();
    harness.start();
    harness.deploy("v1");
    assert_eq!(harness.shutdown(), 0);
    let state = read_state(&harness).expect("state kept for recover");
    assert_eq!(
        state,
        json!({
            "version": 1,
            "activeReleaseId": null,
            "orphans": [{"id": "worker", "pid": live.pid(), "releaseId": "previous"}],
            "releases": [],
            "services": [],
            "singletons": []
        })
    );
    assert!(pid_alive(live.pid()));
}

#[test]
fn a_failing_state_write_is_reported_and_ignored() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["statePath"] = json!(dir.join("missing-dir").join("state.json"));
        config
    });
    harness.start();
    harness.deploy("v1");
    assert!(
        events_of(&harness)
            .iter()
            .any(|e| e["message"] == "state persist failed")
    );
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
}

#[test]
fn a_shutdown_right_after_a_deploy_still_removes_the_state_file() {
    let mut harness = Harness::new(with_state);
    harness.start();
    // The deploy's own state write and the 5 s timer race the shutdown; none of
    // them may leave a file behind.
    for release in ["v1", "v2"] {
        harness.deploy(release);
    }
    assert_eq!(harness.shutdown(), 0);
    assert!(!harness.path("state.json").exists());
    let stray: Vec<_> = std::fs::read_dir(harness.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("state.json"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
