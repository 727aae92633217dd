//! `rollbridge daemon` start options: listener-only, known-release bootstrap and
//! owner takeover, on the real binary.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::time::Duration;

fn attestation(fill: char) -> String {
    format!("sha256:{}", fill.to_string().repeat(64))
}

fn gated(dir: &std::path::Path, port: u16) -> Value {
    let mut config = base_config(dir, port);
    config["processes"][0]["env"] = json!({
        "APP_HEALTH_GATE": dir.join("gate"),
        "APP_MARKER_DIR": dir,
    });
    config
}

/// `daemon --config … --release-path … --release-id … --revision …` plus extras.
fn bootstrap_args(harness: &Harness, release_id: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--release-path".to_string(),
        harness.release(release_id),
        "--release-id".to_string(),
        release_id.to_string(),
        "--revision".to_string(),
        format!("rev-{release_id}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn spawn_with(harness: &Harness, args: &[String]) -> DaemonProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    harness.spawn(&args)
}

fn wait_ready(daemon: &DaemonProcess) {
    wait_until(PATIENCE, "control socket listening", || {
        daemon.output.has_event("control socket listening")
    });
}

#[test]
fn invalid_bootstrap_options_fail_before_anything_starts() {
    let harness = Harness::new(gated);
    let root = harness.dir.path().to_string_lossy().into_owned();
    let release = harness.release("r1");
    let config = harness.config_path.to_string_lossy().into_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--release-path".into(), release.clone()],
            "must be provided together",
        ),
        (
            vec![
                "--release-path".into(),
                release.clone(),
                "--release-id".into(),
                "r1".into(),
                "--revision".into(),
                "abc".into(),
                "--config".into(),
                "rollbridge.json".into(),
            ],
            "--config must be an absolute path",
        ),
        (
            vec![
                "--release-path".into(),
                "releases/r1".into(),
                "--release-id".into(),
                "r1".into(),
                "--revision".into(),
                "abc".into(),
            ],
            "--release-path must be an absolute path",
        ),
        (
            vec![
                "--release-path".into(),
                format!("{root}/child/.."),
                "--release-id".into(),
                "r1".into(),
                "--revision".into(),
                "abc".into(),
            ],
            "--release-path must be normalized",
        ),
        (
            vec![
                "--release-path".into(),
                format!("{root}/missing"),
                "--release-id".into(),
                "r1".into(),
                "--revision".into(),
                "abc".into(),
            ],
            "--release-path is not accessible",
        ),
        (
            vec![
                "--release-path".into(),
                release.clone(),
                "--release-id".into(),
                "unsafe id".into(),
                "--revision".into(),
                "abc".into(),
            ],
            "--release-id",
        ),
        (
            vec![
                "--release-path".into(),
                release.clone(),
                "--release-id".into(),
                "r1".into(),
                "--revision".into(),
                "unsafe revision".into(),
            ],
            "--revision",
        ),
        (
            vec!["--boot-attestation".into(), attestation('a')],
            "accepted only with",
        ),
        (
            vec![
                "--release-path".into(),
                release.clone(),
                "--release-id".into(),
                "r1".into(),
                "--revision".into(),
                "abc".into(),
                "--boot-attestation".into(),
                attestation('A'),
            ],
            "--boot-attestation",
        ),
        (
            vec![
                "--release-path".into(),
                release.clone(),
                "--release-id".into(),
                "r1".into(),
                "--revision".into(),
                "abc".into(),
                "--boot-attestation".into(),
                format!("sha512:{}", "a".repeat(64)),
            ],
            "--boot-attestation",
        ),
        (
            vec![
                "--release-path".into(),
                release.clone(),
                "--release-id".into(),
                "r1".into(),
                "--revision".into(),
                "abc".into(),
                "--boot-attestation".into(),
                format!("sha256:{}", "a".repeat(63)),
            ],
            "--boot-attestation",
        ),
        (vec!["--takeover-owner".into()], "--takeover-owner requires"),
    ];
    for (args, expected) in cases {
        let mut command = std::process::Command::new(BIN);
        command.arg("daemon");
        if !args.iter().any(|a| a == "--config") {
            command.arg("--config").arg(&config);
        }
        let output = command
            .args(&args)
            .current_dir(harness.dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_ne!(output.status.code(), Some(0), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!harness.socket.exists(), "{args:?}");
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains("process started"),
            "{args:?}"
        );
    }
}

#[test]
fn plain_start_is_listener_only() {
    let mut harness = Harness::new(base_config);
    harness.start();
    let status = harness.status();
    assert_eq!(status["activeReleaseId"], Value::Null);
    assert_eq!(status["releases"], json!([]));
    assert!(status.get("bootstrap").is_none());
    let lines = harness.output().events();
    assert_eq!(lines[0]["message"], "proxy listening");
    assert_eq!(lines[1]["message"], "control socket listening");
    harness.signal(libc::SIGTERM);
    assert_eq!(harness.wait_exit(PATIENCE), 0);
}

#[test]
fn bootstrap_activates_the_exact_release_before_exposing_control() {
    let mut harness = Harness::new(gated);
    let args = bootstrap_args(
        &harness,
        "release-42",
        &["--boot-attestation", &attestation('a')],
    );
    let daemon = spawn_with(&harness, &args);
    wait_until(PATIENCE, "the web process to start", || {
        daemon.output.has_event("process started")
    });
    // A window in which something must *not* happen (no signal to wait for):
    // the control socket stays closed until the gate opens.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!harness.socket.exists(), "no control before activation");
    std::fs::write(harness.path("gate"), "").unwrap();
    wait_ready(&daemon);
    harness.daemon = Some(daemon);
    let status = harness.status();
    assert_eq!(status["activeReleaseId"], "release-42");
    assert_eq!(status["releases"].as_array().unwrap().len(), 1);
    assert_eq!(status["releases"][0]["revision"], "rev-release-42");
    assert_eq!(
        status["bootstrap"],
        json!({
            "attestation": attestation('a'),
            "releaseId": "release-42",
            "releasePath": harness.release("release-42"),
            "revision": "rev-release-42"
        })
    );
    assert_eq!(harness.get("/release"), (200, "release-42".to_string()));
    harness.signal(libc::SIGTERM);
    assert_eq!(harness.wait_exit(PATIENCE), 0);
    assert!(!harness.socket.exists());
}

#[test]
fn a_failed_bootstrap_reports_cleans_up_and_exits_non_zero() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = gated(dir, port);
        config["processes"][0]["health"]["timeoutMs"] = json!(100);
        config
    });
    let args = bootstrap_args(&harness, "bad-release", &[]);
    harness.daemon = Some(spawn_with(&harness, &args));
    let code = harness.wait_exit(PATIENCE);
    assert_ne!(code, 0);
    let events = harness.output().events();
    let failed = events
        .iter()
        .find(|e| e["message"] == "bootstrap activation failed")
        .expect("bootstrap activation failed");
    assert_eq!(
        failed["data"],
        json!({"releaseId": "bad-release", "status": "error"})
    );
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "release startup process status"
                && e["data"]["phase"] == "after cleanup"
                && e["data"]["state"] == "stopped")
    );
    assert!(!harness.socket.exists());
    for pid in harness.started_pids() {
        assert!(!group_alive(pid));
    }
}

#[test]
fn sigterm_during_activation_follows_the_shutdown_path() {
    let mut harness = Harness::new(gated);
    let args = bootstrap_args(&harness, "r1", &[]);
    let daemon = spawn_with(&harness, &args);
    wait_until(PATIENCE, "the web process to log", || {
        std::fs::read_dir(harness.dir.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("started-r1"))
    });
    harness.daemon = Some(daemon);
    harness.signal(libc::SIGTERM);
    assert_eq!(harness.wait_exit(PATIENCE), 0);
    assert!(!harness.socket.exists());
    let stopped = std::fs::read_dir(harness.dir.path())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("stopped-r1"));
    assert!(stopped, "the web process received SIGTERM");
    for pid in harness.started_pids() {
        assert!(!group_alive(pid));
    }
}

#[test]
fn bootstrap_reports_but_keeps_live_processes_from_the_state_file() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = gated(dir, port);
        config["statePath"] = json!(dir.join("state.json"));
        config
    });
    std::fs::write(harness.path("gate"), "").unwrap();
    // Like a managed process, the orphan leads its own process group.
    let mut orphan = std::process::Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = orphan.id() as i32;
    harness.extra_pids.lock().unwrap().push(pid);
    std::fs::write(
        harness.path("state.json"),
        json!({"releases": [{"releaseId": "previous", "processes": [{"id": "worker", "pid": pid}]}],
               "services": [], "singletons": []})
        .to_string(),
    )
    .unwrap();
    let args = bootstrap_args(&harness, "r1", &[]);
    let daemon = spawn_with(&harness, &args);
    wait_ready(&daemon);
    harness.daemon = Some(daemon);
    assert_eq!(
        harness.status()["orphans"],
        json!([{"id": "worker", "pid": pid, "releaseId": "previous"}])
    );
    harness.signal(libc::SIGTERM);
    assert_eq!(harness.wait_exit(PATIENCE), 0);
    assert!(pid_alive(pid));
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(harness.path("state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["orphans"],
        json!([{"id": "worker", "pid": pid, "releaseId": "previous"}])
    );
    let _ = orphan.kill();
    let _ = orphan.wait();
}

#[test]
fn a_failed_bootstrap_does_not_touch_another_daemons_socket() {
    let mut first = Harness::new(gated);
    std::fs::write(first.path("gate"), "").unwrap();
    first.start();
    first.deploy("v1");
    // A bootstrap on the same socket path is refused before it starts anything.
    let second_args = bootstrap_args(&first, "r2", &[]);
    let mut second = spawn_with(&first, &second_args);
    let status = second.child.wait().unwrap();
    assert_ne!(status.code(), Some(0));
    assert!(!second.output.has_event("process started"));
    assert!(first.socket.exists());
    assert_eq!(first.status()["activeReleaseId"], "v1");
}

#[test]
fn takeover_replaces_the_running_owner_after_the_new_release_is_healthy() {
    let mut harness = Harness::new(gated);
    std::fs::write(harness.path("gate"), "").unwrap();
    let first_args = bootstrap_args(&harness, "r1", &["--boot-attestation", &attestation('a')]);
    let first = spawn_with(&harness, &first_args);
    wait_ready(&first);
    harness.daemon = Some(first);
    let old_web = pid_of(&harness.process_in("r1", "web").unwrap());
    let mut keep_alive = KeepAlive::connect(harness.proxy_port).unwrap();
    assert_eq!(keep_alive.get("/release").unwrap().1, "r1");

    let second_args = bootstrap_args(
        &harness,
        "r2",
        &["--boot-attestation", &attestation('b'), "--takeover-owner"],
    );
    let second = spawn_with(&harness, &second_args);
    wait_ready(&second);
    let mut first = harness.daemon.replace(second).unwrap();
    let status = harness.status();
    assert_eq!(status["activeReleaseId"], "r2");
    assert_eq!(status["bootstrap"]["attestation"], attestation('b'));
    assert_eq!(status["orphans"], json!([]));
    assert_eq!(harness.get("/release"), (200, "r2".to_string()));
    // The old owner retired: it stops its processes and exits by itself.
    let exited = poll(PATIENCE, || first.child.try_wait().unwrap()).expect("old owner exits");
    assert_eq!(exited.code(), Some(0));
    assert!(!pid_alive(old_web));
    assert!(first.output.has_event("external owner retired"));
    drop(keep_alive);
    harness.signal(libc::SIGTERM);
    assert_eq!(harness.wait_exit(PATIENCE), 0);
}

#[test]
fn a_failed_takeover_leaves_the_owner_in_charge() {
    let mut harness = Harness::new(gated);
    std::fs::write(harness.path("gate"), "").unwrap();
    let first_args = bootstrap_args(&harness, "r1", &["--boot-attestation", &attestation('a')]);
    let first = spawn_with(&harness, &first_args);
    wait_ready(&first);
    harness.daemon = Some(first);
    harness.rewrite_config(|config| {
        config["processes"][0]["health"]["path"] = json!("/never-ready");
        config["processes"][0]["health"]["timeoutMs"] = json!(100);
    });
    let second_args = bootstrap_args(
        &harness,
        "r2",
        &["--boot-attestation", &attestation('b'), "--takeover-owner"],
    );
    let mut second = spawn_with(&harness, &second_args);
    let status = second.child.wait().unwrap();
    assert_ne!(status.code(), Some(0));
    for pid in second.output.started_pids() {
        assert!(!group_alive(pid), "the candidate cleaned up {pid}");
    }
    let status = harness.status();
    assert_eq!(status["activeReleaseId"], "r1");
    assert_eq!(status["bootstrap"]["attestation"], attestation('a'));
    assert_eq!(harness.get("/release"), (200, "r1".to_string()));
}

#[test]
fn retire_owner_releases_the_listeners_before_slow_processes_finish() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "worker", "policy": "companion", "command": "exec sleep 1000",
            "lifecycle": {
                "quietCommand": format!("touch {}", dir.join("quiet-ran").display()),
                "drainCommand": "sleep 3",
                "drainTimeoutMs": 3000
            }
        }));
        config
    });
    harness.start();
    harness.deploy("v1");
    let worker = pid_of(&harness.process_in("v1", "worker").unwrap());
    let reply = control(
        &harness.socket,
        json!({"command": "retire-owner", "attestation": attestation('c')}),
    );
    assert_eq!(
        reply,
        json!({"status": "success", "message": "owner retired"})
    );
    assert_eq!(
        reply.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["status", "message"]
    );
    assert!(
        harness.path("quiet-ran").exists(),
        "quiet ran before the reply"
    );
    assert!(!harness.socket.exists());
    assert!(pid_alive(worker), "the worker is still draining");
    let mut old = harness.daemon.take().unwrap();
    wait_until(PATIENCE, "the retirement event", || {
        old.output.has_event("external owner retired")
    });
    let retired = old
        .output
        .events()
        .into_iter()
        .find(|e| e["message"] == "external owner retired")
        .unwrap();
    assert_eq!(
        retired["data"],
        json!({"attestation": attestation('c'), "status": "draining"})
    );
    // A replacement binds the same socket and proxy port right away.
    harness.start();
    let status = harness.status();
    assert_eq!(status["orphans"], json!([]));
    assert_eq!(status["proxy"]["port"], harness.proxy_port);
    // The old daemon finishes stopping its processes and exits by itself.
    let exited = poll(PATIENCE, || old.child.try_wait().unwrap()).expect("old daemon exits");
    assert_eq!(exited.code(), Some(0));
    assert!(!pid_alive(worker));
}

#[test]
fn identical_boots_are_told_apart_by_their_attestation() {
    let mut harness = Harness::new(gated);
    std::fs::write(harness.path("gate"), "").unwrap();
    for fill in ['a', 'b'] {
        let args = bootstrap_args(&harness, "r1", &["--boot-attestation", &attestation(fill)]);
        let daemon = spawn_with(&harness, &args);
        wait_ready(&daemon);
        harness.daemon = Some(daemon);
        let bootstrap = harness.status()["bootstrap"].clone();
        assert_eq!(
            bootstrap,
            json!({
                "attestation": attestation(fill),
                "releaseId": "r1",
                "releasePath": harness.release("r1"),
                "revision": "rev-r1"
            })
        );
        harness.signal(libc::SIGTERM);
        assert_eq!(harness.wait_exit(PATIENCE), 0);
    }
}

#[test]
fn sigterm_while_bootstrap_starts_several_processes_leaves_none_behind() {
    // The first service signals the daemon as soon as it runs, so the shutdown
    // begins while the daemon is still starting the remaining processes.
    let mut harness = Harness::new(|dir, port| {
        let mut config = gated(dir, port);
        std::fs::write(dir.join("gate"), "").unwrap();
        let processes = config["processes"].as_array_mut().unwrap();
        processes.insert(
            0,
            json!({"id": "trigger", "policy": "service", "command": "kill -TERM $PPID; exec sleep 1000"}),
        );
        processes.insert(
            1,
            json!({"id": "second", "policy": "service", "command": "exec sleep 1000"}),
        );
        processes.push(json!({
            "id": "worker", "policy": "companion", "command": "exec sleep 1000", "replicas": 2
        }));
        processes.push(json!({
            "id": "jobs", "policy": "singleton", "command": "exec sleep 1000"
        }));
        config
    });
    let args = bootstrap_args(&harness, "r1", &[]);
    harness.daemon = Some(spawn_with(&harness, &args));
    assert_eq!(harness.wait_exit(PATIENCE), 0);
    let started = harness.started_pids();
    assert!(!started.is_empty(), "the trigger service started");
    for pid in started {
        assert!(!group_alive(pid), "process group {pid} outlived the daemon");
    }
    assert!(!harness.socket.exists());
    assert!(!harness.output().has_event("control socket listening"));
}

#[test]
fn a_failed_bootstrap_keeps_the_state_file_of_the_previous_daemon() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = gated(dir, port);
        config["statePath"] = json!(dir.join("state.json"));
        config["processes"][0]["health"]["timeoutMs"] = json!(100);
        config
    });
    let orphan = GroupGuard::spawn_sleep(&["1000"]);
    let previous = json!({
        "activeReleaseId": "previous",
        "orphans": [],
        "releases": [{"releaseId": "previous", "processes": [{"id": "worker", "pid": orphan.pid()}]}],
        "services": [],
        "singletons": []
    });
    let text = serde_json::to_string_pretty(&previous).unwrap();
    std::fs::write(harness.path("state.json"), &text).unwrap();
    let args = bootstrap_args(&harness, "bad-release", &[]);
    harness.daemon = Some(spawn_with(&harness, &args));
    assert_ne!(harness.wait_exit(PATIENCE), 0);
    assert!(harness.output().has_event("bootstrap activation failed"));
    let kept = std::fs::read_to_string(harness.path("state.json")).expect("state file kept");
    let kept: Value = serde_json::from_str(&kept).unwrap();
    let records = |state: &Value| -> Vec<(Value, Value)> {
        let mut found = Vec::new();
        for release in state["releases"].as_array().into_iter().flatten() {
            for process in release["processes"].as_array().into_iter().flatten() {
                found.push((process["id"].clone(), process["pid"].clone()));
            }
        }
        for orphan in state["orphans"].as_array().into_iter().flatten() {
            found.push((orphan["id"].clone(), orphan["pid"].clone()));
        }
        found
    };
    assert_eq!(
        records(&kept),
        [(json!("worker"), json!(orphan.pid()))],
        "{kept}"
    );
    assert!(pid_alive(orphan.pid()));
}
