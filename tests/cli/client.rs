//! The daemon-talking commands against a fake daemon on a real Unix socket:
//! request shapes, printed replies, error reporting and local option checks.

use crate::support::cli::*;
use serde_json::{Value, json};

fn status_payload() -> Value {
    json!({
        "activeReleaseId": "v1",
        "application": "fake",
        "releases": [{"releaseId": "v1", "state": "active", "processes": [
            {"id": "web", "logs": [
                {"at": "2026-05-22T00:00:00.000Z", "line": "listening", "stream": "stdout"},
                {"at": "2026-05-22T00:00:01.000Z", "line": "oops", "stream": "stderr"}
            ]},
            {"id": "worker#0", "logs": []}
        ]}],
        "services": [{"id": "beacon", "process": {"id": "beacon", "logs": []}}],
        "singletons": [{"id": "cron", "process": {"id": "cron", "logs": []}}]
    })
}

#[test]
fn status_prints_the_whole_reply_pretty_with_status_first() {
    let sandbox = Sandbox::new("fake");
    let daemon = FakeDaemon::start(&sandbox.socket(), |_| {
        Some(success(
            json!({"activeReleaseId": null, "application": "fake", "orphans": []}),
        ))
    });
    let run = sandbox.run("status", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "{\n  \"status\": \"success\",\n  \"activeReleaseId\": null,\n  \"application\": \"fake\",\n  \"orphans\": []\n}\n"
    );
    assert_eq!(daemon.requests(), vec![json!({"command": "status"})]);
}

#[test]
fn daemon_errors_print_error_prefix_and_exit_1() {
    let sandbox = Sandbox::new("fake");
    let _daemon = FakeDaemon::start(&sandbox.socket(), |_| {
        Some(failure("Release not found: active"))
    });
    let run = sandbox.run("stop", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, "Error: Release not found: active\n");
    assert_eq!(run.stdout, "");
}

#[test]
fn an_error_reply_without_text_is_unknown_error() {
    let sandbox = Sandbox::new("fake");
    let _daemon = FakeDaemon::start(&sandbox.socket(), |_| {
        Some(r#"{"status":"error"}"#.to_string())
    });
    let run = sandbox.run("shutdown", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, "Error: Unknown Rollbridge error\n");
}

#[test]
fn no_daemon_is_a_connection_error() {
    let sandbox = Sandbox::new("fake");
    let run = sandbox.run("shutdown", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.starts_with("Error: connect ENOENT "), "{run:?}");
    assert!(run.stderr.contains("control.sock"), "{run:?}");
}

#[test]
fn requests_carry_only_the_options_given() {
    let sandbox = Sandbox::new("fake");
    let daemon = FakeDaemon::start(&sandbox.socket(), |request| {
        Some(match request["command"].as_str() {
            Some("restart") => success(json!({"restarted": ["worker#0"]})),
            Some("rollback") | Some("deploy") => {
                success(json!({"activeReleaseId": "v2", "previousReleaseId": "v1"}))
            }
            _ => success(json!({})),
        })
    });
    assert_eq!(sandbox.run("restart", &[]).code, 0);
    assert_eq!(
        sandbox
            .run(
                "restart",
                &["--process", "worker#0", "--policy", "companion"]
            )
            .code,
        0
    );
    assert_eq!(sandbox.run("stop", &["--release-id", "v1"]).code, 0);
    let rollback = sandbox.run("rollback", &[]);
    assert_eq!(
        rollback.stdout,
        "{\n  \"status\": \"success\",\n  \"activeReleaseId\": \"v2\",\n  \"previousReleaseId\": \"v1\"\n}\n"
    );
    assert_eq!(sandbox.run("rollback", &["--release-id", "v0"]).code, 0);
    assert_eq!(
        daemon.requests(),
        vec![
            json!({"command": "restart"}),
            json!({"command": "restart", "processId": "worker#0", "policy": "companion"}),
            json!({"command": "stop", "releaseId": "v1"}),
            json!({"command": "rollback"}),
            json!({"command": "rollback", "releaseId": "v0"}),
        ]
    );
}

#[test]
fn deploy_sends_an_absolute_release_path() {
    let sandbox = Sandbox::new("fake");
    std::fs::create_dir(sandbox.path().join("releases")).unwrap();
    let daemon = FakeDaemon::start(&sandbox.socket(), |_| {
        Some(success(
            json!({"activeReleaseId": "r1", "previousReleaseId": null}),
        ))
    });
    let run = sandbox.run(
        "deploy",
        &[
            "--release-path",
            "releases/r1",
            "--release-id",
            "r1",
            "--revision",
            "abc",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let absolute = sandbox.path().join("releases/r1");
    let absolute_text = absolute.to_str().unwrap();
    let run = sandbox.run("deploy", &["--release-path", "/srv/app/current"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        daemon.requests(),
        vec![
            json!({"command": "deploy", "releasePath": absolute_text, "releaseId": "r1", "revision": "abc"}),
            json!({"command": "deploy", "releasePath": "/srv/app/current"}),
        ]
    );
}

#[test]
fn deploy_without_release_path_is_an_argument_error() {
    let sandbox = Sandbox::new("fake");
    let run = sandbox.run("deploy", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("error: required option '--release-path <path>' not specified"),
        "{run:?}"
    );
}

#[test]
fn restart_policy_is_checked_before_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let run = rollbridge_in(
        dir.path(),
        &["restart", "--config", "missing.json", "--policy", "proxied"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        "--policy must be one of: companion, singleton, service.\n"
    );
}

#[test]
fn events_limit_is_checked_before_the_config() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["0", "-2", "1.5", "many"] {
        let run = rollbridge_in(
            dir.path(),
            &["events", "--config", "missing.json", "--limit", bad],
        );
        assert_eq!(run.code, 1, "{bad}: {run:?}");
        assert_eq!(run.stderr, "--limit must be a positive integer.\n", "{bad}");
    }
}

#[test]
fn events_text_and_json_forms() {
    let sandbox = Sandbox::new("fake");
    let daemon = FakeDaemon::start(&sandbox.socket(), |request| {
        let events = json!([
            {"at": "2026-05-22T00:00:00.000Z", "data": {"previousReleaseId": null, "releaseId": "v1"}, "message": "traffic switched"},
            {"at": "2026-05-22T00:00:01.000Z", "data": {}, "message": "bare"}
        ]);
        Some(if request.get("limit").is_some() {
            success(json!({"events": []}))
        } else {
            success(json!({"events": events}))
        })
    });
    let run = sandbox.run("events", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "2026-05-22T00:00:00.000Z  traffic switched {\"previousReleaseId\":null,\"releaseId\":\"v1\"}\n2026-05-22T00:00:01.000Z  bare\n"
    );
    let run = sandbox.run("events", &["--json"]);
    let parsed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 2);
    assert!(run.stdout.starts_with("[\n  {\n    \"at\": "), "{run:?}");
    let run = sandbox.run("events", &["--limit", "3"]);
    assert_eq!(run.stdout, "No events recorded yet.\n");
    assert_eq!(
        daemon.requests()[2],
        json!({"command": "events", "limit": 3})
    );
}

#[test]
fn logs_are_built_from_status() {
    let sandbox = Sandbox::new("fake");
    let daemon = FakeDaemon::start(&sandbox.socket(), |_| Some(success(status_payload())));
    let run = sandbox.run("logs", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "== web [release v1 (active)] ==\n\
         \x20 2026-05-22T00:00:00.000Z [stdout] listening\n\
         \x20 2026-05-22T00:00:01.000Z [stderr] oops\n\
         \n\
         == worker#0 [release v1 (active)] ==\n\
         \x20 (no recent output)\n\
         \n\
         == beacon [service] ==\n\
         \x20 (no recent output)\n\
         \n\
         == cron [singleton] ==\n\
         \x20 (no recent output)\n"
    );
    let run = sandbox.run("logs", &["--process", "worker"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.stdout, "No process found with id \"worker\".\n");

    let run = sandbox.run("logs", &["--json", "--process", "web"]);
    let parsed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        parsed,
        json!([{"id": "web", "logs": status_payload()["releases"][0]["processes"][0]["logs"], "source": "release v1 (active)"}])
    );
    let run = sandbox.run("logs", &["--json", "--process", "nope"]);
    assert_eq!(run.stdout, "[]\n");
    assert!(daemon.commands().iter().all(|c| c == "status"));
}

#[test]
fn logs_without_processes() {
    let sandbox = Sandbox::new("fake");
    let _daemon = FakeDaemon::start(&sandbox.socket(), |_| {
        Some(success(
            json!({"application": "fake", "releases": [], "services": [], "singletons": []}),
        ))
    });
    let run = sandbox.run("logs", &[]);
    assert_eq!(run.stdout, "No managed processes.\n");
    assert_eq!(run.code, 0);
}

#[test]
fn config_problems_stop_the_command_before_connecting() {
    let sandbox = Sandbox::with("fake", |config| config["processes"] = json!([]));
    let daemon = FakeDaemon::start(&sandbox.socket(), |_| Some(success(json!({}))));
    let run = sandbox.run("status", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .starts_with("Error: Invalid Rollbridge config:\n  - "),
        "{run:?}"
    );
    assert!(daemon.requests().is_empty());

    let empty = tempfile::tempdir().unwrap();
    let run = rollbridge_in(empty.path(), &["status"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with("Error: No config file found in "),
        "{run:?}"
    );
}
