//! `predeploy-cleanup`: legacy processes found through the matchers are stopped,
//! a daemon that can take the deploy is kept, one that cannot is shut down first.

use crate::support::cli::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn unique_marker() -> String {
    format!(
        "rb-legacy-marker-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn legacy_sandbox(marker: &str, force_stop_ms: u64) -> Sandbox {
    let marker = marker.to_string();
    Sandbox::with("legacy-test", move |config| {
        config["proxy"]["port"] = json!(18999);
        config["legacyTakeover"] = json!({
            "forceStopTimeoutMs": force_stop_ms,
            "processes": [{"includes": [marker, "sleep"], "name": "old app"}]
        });
    })
}

/// A legacy app: a shell (which will not exec away its marker) running sleep.
fn spawn_legacy(marker: &str, ignore_term: bool) -> GroupGuard {
    let trap = if ignore_term { "trap '' TERM; " } else { "" };
    let child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{trap}sleep 300; true"))
        .arg(marker)
        .process_group(0)
        .spawn()
        .unwrap();
    let guard = GroupGuard { child };
    // Wait for the shell to start its sleep, so the table the cleanup reads is complete.
    let shell = guard.pid();
    wait_until(
        Duration::from_secs(10),
        "the shell's child to start",
        || has_child(shell),
    );
    guard
}

fn has_child(parent: i32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<i32>().ok())
                == Some(parent)
        })
    })
}

use std::os::unix::process::CommandExt;

fn daemon_status(active: Option<&str>, port: u16) -> Value {
    json!({
        "status": "success",
        "activeReleaseId": active,
        "application": "legacy-test",
        "proxy": {"host": "127.0.0.1", "port": port, "upstreamHost": "127.0.0.1"},
        "releases": [],
        "services": [],
        "singletons": []
    })
}

#[test]
fn stops_a_legacy_process_when_no_daemon_runs() {
    let marker = unique_marker();
    let sandbox = legacy_sandbox(&marker, 60_000);
    let mut legacy = spawn_legacy(&marker, false);
    let started = Instant::now();
    let run = sandbox.run("predeploy-cleanup", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "No active Rollbridge daemon found.\nRecovered 0 Rollbridge orphaned processes.\nStopped 2 legacy processes.\n"
    );
    wait_until(Duration::from_secs(5), "the legacy process to exit", || {
        !legacy.running()
    });
    // Everything exited on SIGTERM, so the command did not sit out the 60 s grace.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_legacy_process_that_ignores_sigterm_is_killed() {
    let marker = unique_marker();
    let sandbox = legacy_sandbox(&marker, 300);
    let mut legacy = spawn_legacy(&marker, true);
    let run = sandbox.run("predeploy-cleanup", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.ends_with("Stopped 2 legacy processes.\n"),
        "{run:?}"
    );
    wait_until(Duration::from_secs(5), "the legacy process to exit", || {
        !legacy.running()
    });
}

#[test]
fn keeps_a_daemon_with_an_active_release_and_touches_nothing() {
    let marker = unique_marker();
    let sandbox = legacy_sandbox(&marker, 300);
    let mut legacy = spawn_legacy(&marker, false);
    let log = sandbox.path().join("requests.log");
    let _daemon = external_fake_daemon(&sandbox.socket(), &daemon_status(Some("v1"), 18999), &log);
    let run = sandbox.run("predeploy-cleanup", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "Rollbridge daemon already has an active release; no legacy cleanup needed.\n"
    );
    assert!(legacy.running());
    let requests = std::fs::read_to_string(&log).unwrap();
    assert!(!requests.contains("shutdown"), "{requests}");
}

#[test]
fn keeps_an_idle_daemon_but_clears_legacy_processes() {
    let marker = unique_marker();
    let sandbox = legacy_sandbox(&marker, 300);
    let mut legacy = spawn_legacy(&marker, false);
    let log = sandbox.path().join("requests.log");
    let mut daemon = external_fake_daemon(&sandbox.socket(), &daemon_status(None, 18999), &log);
    let run = sandbox.run("predeploy-cleanup", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "Rollbridge daemon is running without an active release; kept it running.\nStopped 2 legacy processes.\n"
    );
    wait_until(Duration::from_secs(5), "the legacy process to exit", || {
        !legacy.running()
    });
    assert!(daemon.running());
    let requests = std::fs::read_to_string(&log).unwrap();
    assert!(!requests.contains("shutdown"), "{requests}");
}

#[test]
fn shuts_down_a_daemon_whose_proxy_differs() {
    let marker = unique_marker();
    let sandbox = legacy_sandbox(&marker, 300);
    let mut legacy = spawn_legacy(&marker, false);
    let log = sandbox.path().join("requests.log");
    let mut daemon =
        external_fake_daemon(&sandbox.socket(), &daemon_status(Some("v1"), 9999), &log);
    let run = sandbox.run("predeploy-cleanup", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "Stopped existing Rollbridge daemon before deploy.\nRecovered 0 Rollbridge orphaned processes.\nStopped 2 legacy processes.\n"
    );
    wait_until(Duration::from_secs(5), "the daemon to exit", || {
        !daemon.running()
    });
    wait_until(Duration::from_secs(5), "the legacy process to exit", || {
        !legacy.running()
    });
    let commands: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["command"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(commands.last().map(String::as_str), Some("shutdown"));
    assert!(
        commands[..commands.len() - 1].iter().all(|c| c == "status"),
        "{commands:?}"
    );
}

#[test]
fn refuses_a_socket_owned_by_something_else() {
    let sandbox = legacy_sandbox(&unique_marker(), 300);
    let _other = FakeDaemon::start(&sandbox.socket(), |_| Some("not json".into()));
    let run = sandbox.run("predeploy-cleanup", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "Error: A non-Rollbridge process is using {}; refusing predeploy cleanup.\n",
            sandbox.socket().display()
        )
    );
}

#[test]
fn refuses_a_daemon_of_another_application() {
    let sandbox = legacy_sandbox(&unique_marker(), 300);
    let _other = FakeDaemon::start(&sandbox.socket(), |_| {
        Some(success(
            json!({"activeReleaseId": null, "application": "someone-else"}),
        ))
    });
    let run = sandbox.run("predeploy-cleanup", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .starts_with("Error: A Rollbridge daemon for \"someone-else\" is using "),
        "{run:?}"
    );
    assert!(
        run.stderr.ends_with("; expected \"legacy-test\".\n"),
        "{run:?}"
    );
}

#[test]
fn recovers_orphans_from_the_state_file() {
    let sandbox = Sandbox::with("legacy-test", |config| {
        config["statePath"] = json!("state.json");
    });
    let mut orphan = GroupGuard::spawn_sleep(&["300"]);
    let state = json!({
        "application": "legacy-test",
        "orphans": [{"id": "worker", "pid": orphan.pid(), "releaseId": null}],
        "releases": [], "services": [], "singletons": []
    });
    std::fs::write(sandbox.path().join("state.json"), state.to_string()).unwrap();
    let run = sandbox.run("predeploy-cleanup", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "No active Rollbridge daemon found.\nRecovered 1 Rollbridge orphaned process.\nStopped 0 legacy processes.\n"
    );
    wait_until(Duration::from_secs(5), "the orphan to exit", || {
        !orphan.running()
    });
    assert!(!sandbox.path().join("state.json").exists());
}

#[test]
fn a_daemon_of_another_build_is_restarted_only_for_a_release_path() {
    let marker = unique_marker();
    let sandbox = legacy_sandbox(&marker, 300);
    let mut status = daemon_status(Some("v1"), 18999);
    status["daemonRuntime"] =
        json!({"digest": "0".repeat(64), "format": 1, "path": "/opt/old", "version": "0.1.0"});

    let log = sandbox.path().join("first.log");
    let mut daemon = external_fake_daemon(&sandbox.socket(), &status, &log);
    let run = sandbox.run("predeploy-cleanup", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "Rollbridge daemon already has an active release; no legacy cleanup needed.\n"
    );
    assert!(daemon.running());

    let release = sandbox.path().join("release");
    std::fs::create_dir(&release).unwrap();
    let run = sandbox.run(
        "predeploy-cleanup",
        &["--release-path", release.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with("Stopped existing Rollbridge daemon before deploy.\n"),
        "{run:?}"
    );
    wait_until(Duration::from_secs(5), "the daemon to exit", || {
        !daemon.running()
    });
}
