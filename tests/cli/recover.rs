//! `recover` against real state files and real process groups.

use crate::support::cli::*;
use serde_json::json;
use std::time::Duration;

fn sandbox_with_state() -> Sandbox {
    Sandbox::with("recover-test", |config| {
        config["statePath"] = json!("state/rollbridge.json");
    })
}

fn write_state(sandbox: &Sandbox, pids: &[(&str, i32)]) -> std::path::PathBuf {
    let processes: Vec<_> = pids
        .iter()
        .map(|(id, pid)| json!({"id": id, "pid": pid, "state": "running"}))
        .collect();
    let state = json!({
        "activeReleaseId": "v1",
        "application": "recover-test",
        "orphans": [],
        "releases": [{"releaseId": "v1", "processes": processes}],
        "services": [],
        "singletons": [],
        "events": [],
        "persistedAt": "2026-05-22T00:00:00.000Z"
    });
    let path = sandbox.path().join("state/rollbridge.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
    path
}

#[test]
fn recover_needs_a_state_path() {
    let sandbox = Sandbox::new("recover-test");
    let run = sandbox.run("recover", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        "No statePath is configured; set statePath in the config to enable recovery.\n"
    );
}

#[test]
fn recover_refuses_while_the_socket_is_in_use() {
    let sandbox = sandbox_with_state();
    let _daemon = FakeDaemon::start(&sandbox.socket(), |_| None);
    let run = sandbox.run("recover", &["--force"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is using"), "{run:?}");
    assert!(
        run.stderr.contains(sandbox.socket().to_str().unwrap()),
        "{run:?}"
    );
}

#[test]
fn dry_run_lists_live_orphans_and_touches_nothing() {
    let sandbox = sandbox_with_state();
    let mut orphan = GroupGuard::spawn_sleep(&["300"]);
    let state = write_state(&sandbox, &[("web", orphan.pid()), ("gone", 2_147_483_000)]);
    let run = sandbox.run("recover", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "Found 1 orphaned process (run with --force to stop):\n  web (pid {}, release v1)\nReview the list first — a recycled pid could be an unrelated process.\n",
            orphan.pid()
        )
    );
    assert!(orphan.running());
    assert!(state.exists());
}

#[test]
fn force_stops_the_whole_group_and_clears_the_state_file() {
    let sandbox = sandbox_with_state();
    // The wrapper exits at once; its background child keeps the group alive.
    let marker = sandbox.path().join("child.pid");
    let mut wrapper = GroupGuard::spawn_shell(&format!(
        "sleep 300 & echo $! > {}; exit 0",
        marker.display()
    ));
    wait_until(Duration::from_secs(10), "the wrapper to exit", || {
        !wrapper.running()
    });
    let child_pid: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(child_pid));
    let state = write_state(&sandbox, &[("worker", wrapper.pid())]);

    let dry = sandbox.run("recover", &[]);
    assert!(
        dry.stdout.starts_with("Found 1 orphaned process"),
        "{dry:?}"
    );

    let run = sandbox.run("recover", &["--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "Stopped 1 orphaned process:\n  worker (pid {}, release v1)\n",
            wrapper.pid()
        )
    );
    wait_until(Duration::from_secs(5), "the child process to exit", || {
        !pid_alive(child_pid)
    });
    assert!(!state.exists());
}

#[test]
fn force_without_orphans_clears_the_state_file() {
    let sandbox = sandbox_with_state();
    let state = write_state(&sandbox, &[("web", 2_147_483_000)]);
    let run = sandbox.run("recover", &["--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "No orphaned processes found; cleared the state file.\n"
    );
    assert!(!state.exists());
}

#[test]
fn a_recorded_pid_that_leads_no_group_is_a_recycled_pid() {
    let sandbox = sandbox_with_state();
    // Same group as this test process: not a group leader, so not a managed wrapper.
    let mut plain = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    write_state(&sandbox, &[("web", plain.id() as i32)]);
    let run = sandbox.run("recover", &[]);
    let _ = plain.kill();
    let _ = plain.wait();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "No orphaned processes found.\n");
}

#[test]
fn an_orphan_that_cannot_be_stopped_keeps_the_state_file() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // Needs two users: recover runs as `nobody` and the orphan belongs to root,
    // so the signals fail with EPERM.
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED an_orphan_that_cannot_be_stopped_keeps_the_state_file: needs root");
        return;
    }
    let sandbox = sandbox_with_state();
    let mut orphan = GroupGuard::spawn_sleep(&["300"]);
    let state = write_state(&sandbox, &[("worker", orphan.pid())]);
    for dir in [sandbox.path(), state.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let output = std::process::Command::new(BIN)
        .args(["recover", "--force", "--config"])
        .arg(sandbox.config_path())
        .current_dir(sandbox.path())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("Could not stop 1 orphaned process"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "  worker (pid {}, release v1) — SIGTERM failed: ",
            orphan.pid()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Left the state file in place"), "{stderr}");
    assert!(state.exists());
    assert!(orphan.running());
}
