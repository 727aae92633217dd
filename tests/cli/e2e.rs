//! The CLI against a real daemon: deploy, status, logs, events, restart,
//! rollback, stop and shutdown; `deploy --ensure-daemon`; doctor and recover
//! next to a running daemon.

use crate::support::cli::*;
use serde_json::{Value, json};
use std::time::Duration;

fn release_dir(sandbox: &Sandbox, name: &str) -> std::path::PathBuf {
    let dir = sandbox.path().join("releases").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_release_lifecycle_through_the_cli() {
    let port = free_port();
    let sandbox = daemon_sandbox("cli-e2e", port);
    release_dir(&sandbox, "v1");
    release_dir(&sandbox, "v2");
    let mut daemon = DaemonGuard::start(&sandbox);

    let status = json_of(&sandbox.run("status", &[]));
    assert_eq!(status["status"], "success");
    assert_eq!(status["activeReleaseId"], Value::Null);
    assert_eq!(
        status["daemonRuntime"]["digest"],
        matching_runtime()["digest"]
    );

    // A relative release path reaches the daemon as an absolute one.
    let run = sandbox.run(
        "deploy",
        &["--release-path", "releases/v1", "--release-id", "v1"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "{\n  \"status\": \"success\",\n  \"activeReleaseId\": \"v1\",\n  \"previousReleaseId\": null\n}\n"
    );
    let status = json_of(&sandbox.run("status", &[]));
    let v1_path = sandbox.path().join("releases/v1");
    assert_eq!(
        status["releases"][0]["releasePath"],
        v1_path.to_str().unwrap()
    );
    assert_eq!(http_get(port, "/release").unwrap(), (200, "v1".to_string()));

    // Captured output shows up in `logs`.
    wait_until(
        Duration::from_secs(10),
        "the v1 web process's listening line in logs",
        || {
            let logs = sandbox.run("logs", &["--process", "web"]).stdout;
            logs.lines()
                .any(|line| line.contains("[stdout] listening on ") && line.ends_with(" for v1"))
        },
    );
    let logs = sandbox.run("logs", &[]);
    assert_eq!(logs.code, 0, "{logs:?}");
    assert!(
        logs.stdout
            .starts_with("== worker [release v1 (active)] ==\n"),
        "{logs:?}"
    );
    assert!(
        logs.stdout
            .contains("\n\n== web [release v1 (active)] ==\n"),
        "{logs:?}"
    );
    assert!(logs.stdout.contains("[stdout] listening on "), "{logs:?}");
    assert!(
        logs.stdout.contains("[stderr] stderr hello from v1"),
        "{logs:?}"
    );
    let logs = json_of(&sandbox.run("logs", &["--json"]));
    let web = logs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "web")
        .unwrap();
    assert_eq!(web["source"], "release v1 (active)");
    assert!(web["logs"].is_array());

    let events = sandbox.run("events", &[]);
    assert!(
        events
            .stdout
            .contains("  traffic switched {\"previousReleaseId\":null,\"releaseId\":\"v1\"}"),
        "{events:?}"
    );
    let last = json_of(&sandbox.run("events", &["--limit", "1", "--json"]));
    assert_eq!(last.as_array().unwrap().len(), 1);

    let worker_pid = status["releases"][0]["processes"][0]["pid"]
        .as_i64()
        .unwrap();
    let run = sandbox.run("restart", &["--process", "worker"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(json_of(&run)["restarted"], json!(["worker"]));
    let status = json_of(&sandbox.run("status", &[]));
    assert_ne!(
        status["releases"][0]["processes"][0]["pid"]
            .as_i64()
            .unwrap(),
        worker_pid
    );
    let run = sandbox.run("restart", &["--process", "web"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .starts_with("Error: The proxied process cannot be restarted in place"),
        "{run:?}"
    );

    let run = sandbox.run(
        "deploy",
        &["--release-path", "releases/v2", "--release-id", "v2"],
    );
    assert_eq!(json_of(&run)["previousReleaseId"], "v1", "{run:?}");
    assert_eq!(http_get(port, "/release").unwrap().1, "v2");

    let run = sandbox.run("rollback", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        json_of(&run),
        json!({"status": "success", "activeReleaseId": "v1", "previousReleaseId": "v2"})
    );
    assert_eq!(http_get(port, "/release").unwrap().1, "v1");

    let run = sandbox.run("stop", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let stopped = json_of(&run);
    assert_eq!(stopped["status"], "success");
    assert_eq!(stopped["activeReleaseId"], Value::Null);
    assert_eq!(http_get(port, "/release").unwrap().0, 503);
    let run = sandbox.run("stop", &[]);
    assert_eq!(run.stderr, "Error: Release not found: active\n");

    let run = sandbox.run("shutdown", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "{\n  \"status\": \"success\",\n  \"message\": \"shutdown\"\n}\n"
    );
    assert!(!sandbox.socket().exists());
    wait_until(Duration::from_secs(10), "the daemon to exit", || {
        !daemon.running()
    });
    let run = sandbox.run("status", &[]);
    assert!(run.stderr.starts_with("Error: connect ENOENT "), "{run:?}");
}

#[test]
fn deploy_ensure_daemon_starts_a_detached_daemon_and_reuses_it() {
    let port = free_port();
    let sandbox = daemon_sandbox("cli-ensure", port);
    release_dir(&sandbox, "ensured-v1");
    let log = sandbox.path().join("logs/daemon.log");
    let pid_file = sandbox.path().join("run/daemon.pid");
    let runtime = sandbox.path().join("runtime");
    let daemon_flags = [
        "--daemon-log-path",
        log.to_str().unwrap(),
        "--daemon-pid-path",
        pid_file.to_str().unwrap(),
        "--daemon-start-timeout-ms",
        "30000",
        // Accepted for compatibility and ignored (see docs/differences.md).
        "--daemon-runtime-path",
        runtime.to_str().unwrap(),
    ];
    let mut args = vec![
        "--release-path",
        "releases/ensured-v1",
        "--release-id",
        "ensured-v1",
        "--ensure-daemon",
    ];
    args.extend_from_slice(&daemon_flags);
    let run = sandbox.run("deploy", &args);
    let pid_text = std::fs::read_to_string(&pid_file).unwrap_or_default();
    let _daemon = pid_text
        .trim()
        .parse()
        .ok()
        .map(|pid| DaemonGuard::adopt(pid, &sandbox));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        pid_text.ends_with('\n') && pid_text.trim().bytes().all(|b| b.is_ascii_digit()),
        "{pid_text:?}"
    );
    assert_eq!(json_of(&run)["activeReleaseId"], "ensured-v1");

    let status = json_of(&sandbox.run("status", &[]));
    assert_eq!(status["activeReleaseId"], "ensured-v1");
    assert!(status.get("bootstrap").is_none());
    assert_eq!(http_get(port, "/release").unwrap().1, "ensured-v1");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("\"control socket listening\""),
        "{log_text}"
    );

    // A second ensure finds the same daemon and starts nothing.
    let run = sandbox.run("ensure-daemon", &daemon_flags);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(json_of(&run)["activeReleaseId"], "ensured-v1");
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid_text);

    assert_eq!(sandbox.run("shutdown", &[]).code, 0);
}

#[test]
fn doctor_and_recover_next_to_a_running_daemon() {
    let port = free_port();
    let sandbox = daemon_sandbox("cli-doctor", port);
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(sandbox.config_path()).unwrap()).unwrap();
    config["statePath"] = json!("state.json");
    sandbox.write_config(&config);
    let _daemon = DaemonGuard::start(&sandbox);

    let run = sandbox.run("doctor", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("✓ control socket: Rollbridge daemon for \"cli-doctor\" is running on "),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(&format!(
            "✓ proxy port: 127.0.0.1:{port} is already held by the running Rollbridge daemon\n"
        )),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("✓ orphaned processes: a daemon is running"),
        "{run:?}"
    );

    let run = sandbox.run("recover", &["--force"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is using"), "{run:?}");

    // Same proxy, no active release: predeploy-cleanup keeps the daemon.
    let run = sandbox.run("predeploy-cleanup", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "Rollbridge daemon is running without an active release; kept it running.\nStopped 0 legacy processes.\n"
    );
    assert_eq!(sandbox.run("status", &[]).code, 0);
}

#[test]
fn recover_cleans_up_after_a_crashed_daemon() {
    let port = free_port();
    let sandbox = daemon_sandbox("cli-crash", port);
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(sandbox.config_path()).unwrap()).unwrap();
    config["statePath"] = json!("state/daemon-state.json");
    sandbox.write_config(&config);
    std::fs::create_dir(sandbox.path().join("state")).unwrap();
    release_dir(&sandbox, "v1");
    let mut daemon = DaemonGuard::start(&sandbox);
    assert_eq!(
        sandbox
            .run(
                "deploy",
                &["--release-path", "releases/v1", "--release-id", "v1"]
            )
            .code,
        0
    );
    let status = json_of(&sandbox.run("status", &[]));
    let pids: Vec<i64> = status["releases"][0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_i64().unwrap())
        .collect();
    let state = sandbox.path().join("state/daemon-state.json");
    wait_until(
        Duration::from_secs(10),
        "the state file to name v1 active",
        || {
            std::fs::read_to_string(&state)
                .is_ok_and(|text| text.contains("\"activeReleaseId\": \"v1\""))
        },
    );

    // The daemon dies without cleaning up; its processes live on.
    unsafe {
        libc::kill(daemon.pid, libc::SIGKILL);
    }
    wait_until(Duration::from_secs(10), "the daemon to exit", || {
        !daemon.running()
    });
    assert!(pids.iter().all(|&pid| pid_alive(pid as i32)));

    let run = sandbox.run("recover", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with("Found 2 orphaned processes (run with --force to stop):\n"),
        "{run:?}"
    );
    for pid in &pids {
        assert!(
            run.stdout.contains(&format!("(pid {pid}, release v1)")),
            "{run:?}"
        );
    }

    let run = sandbox.run("recover", &["--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with("Stopped 2 orphaned processes:\n"),
        "{run:?}"
    );
    wait_until(Duration::from_secs(5), "every app process to exit", || {
        pids.iter().all(|&pid| !pid_alive(pid as i32))
    });
    assert!(!state.exists());
}
