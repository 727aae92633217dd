//! `doctor`: config and host checks, text and JSON output, exit codes.

use crate::support::cli::*;
use serde_json::{Value, json};
use std::net::TcpListener;

fn sandbox_on(port: u16, edit: impl FnOnce(&mut Value)) -> Sandbox {
    Sandbox::with("doctor-test", |config| {
        config["proxy"]["port"] = json!(port);
        edit(config);
    })
}

#[test]
fn passes_for_a_valid_config_on_a_free_host() {
    let port = free_port();
    let sandbox = sandbox_on(port, |config| config["statePath"] = json!("state/s.json"));
    std::fs::create_dir(sandbox.path().join("state")).unwrap();
    let run = sandbox.run("doctor", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let dir = sandbox.path().display();
    assert_eq!(
        run.stdout,
        format!(
            "✓ config: valid: 1 process, proxy on 127.0.0.1:{port}\n\
             ✓ control socket: no daemon running; {dir}/control.sock is free to bind\n\
             ✓ control socket directory: {dir} is writable\n\
             ✓ proxy port: 127.0.0.1:{port} is available\n\
             ✓ state path directory: {dir}/state is writable\n\
             ✓ orphaned processes: no leftover processes from a previous daemon\n\
             \n\
             All checks passed.\n"
        )
    );
}

#[test]
fn a_held_proxy_port_fails_with_its_error_code() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let sandbox = sandbox_on(port, |_| {});
    let run = sandbox.run("doctor", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "✗ proxy port: 127.0.0.1:{port} is unavailable (EADDRINUSE)\n"
        )),
        "{run:?}"
    );
    assert_eq!(run.stderr, "\n1 check failed.\n");
    assert!(
        !run.stdout.contains("state path"),
        "no statePath, no state checks"
    );
}

#[test]
fn json_report_has_checks_and_ok() {
    let port = free_port();
    let sandbox = sandbox_on(port, |_| {});
    let run = sandbox.run("doctor", &["--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "config",
            "control socket",
            "control socket directory",
            "proxy port"
        ]
    );
    assert!(
        run.stdout
            .starts_with("{\n  \"checks\": [\n    {\n      \"detail\": "),
        "{run:?}"
    );

    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let sandbox = sandbox_on(port, |_| {});
    let run = sandbox.run("doctor", &["--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["checks"][3]["name"], "proxy port");
    assert_eq!(report["checks"][3]["ok"], false);
}

#[test]
fn a_foreign_listener_on_the_socket_fails() {
    let sandbox = sandbox_on(free_port(), |_| {});
    let _other = FakeDaemon::start(&sandbox.socket(), |_| Some("hello".into()));
    let run = sandbox.run("doctor", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "✗ control socket: another process is already listening on {}; the daemon would fail to bind it\n",
            sandbox.socket().display()
        )),
        "{run:?}"
    );
}

#[test]
fn the_running_daemon_of_this_application_holds_socket_and_port() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let sandbox = sandbox_on(port, |config| config["statePath"] = json!("s.json"));
    let _daemon = FakeDaemon::start(&sandbox.socket(), move |_| {
        Some(success(json!({
            "activeReleaseId": "v1",
            "application": "doctor-test",
            "proxy": {"host": "127.0.0.1", "port": port, "upstreamHost": "127.0.0.1"}
        })))
    });
    let run = sandbox.run("doctor", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("✓ control socket: Rollbridge daemon for \"doctor-test\" is running on "),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(&format!(
            "✓ proxy port: 127.0.0.1:{port} is already held by the running Rollbridge daemon\n"
        )),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(
            "✓ orphaned processes: a daemon is running; its managed processes are not orphans\n"
        ),
        "{run:?}"
    );
}

#[test]
fn a_daemon_of_another_application_fails() {
    let sandbox = sandbox_on(free_port(), |_| {});
    let _daemon = FakeDaemon::start(&sandbox.socket(), |_| {
        Some(success(
            json!({"activeReleaseId": null, "application": "other-app"}),
        ))
    });
    let run = sandbox.run("doctor", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(
            "✗ control socket: a Rollbridge daemon for \"other-app\" is already running on "
        ),
        "{run:?}"
    );
}

#[test]
fn leftover_processes_in_the_state_file_fail() {
    let sandbox = sandbox_on(free_port(), |config| config["statePath"] = json!("s.json"));
    let orphan = GroupGuard::spawn_sleep(&["300"]);
    let state = json!({
        "application": "doctor-test",
        "orphans": [],
        "releases": [{"releaseId": "v1", "processes": [{"id": "worker", "pid": orphan.pid()}]}],
        "services": [], "singletons": []
    });
    std::fs::write(sandbox.path().join("s.json"), state.to_string()).unwrap();
    let run = sandbox.run("doctor", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "✗ orphaned processes: 1 possible orphaned process still running: worker (pid {}) — verify and stop any leftovers\n",
            orphan.pid()
        )),
        "{run:?}"
    );
}

#[test]
fn a_missing_socket_directory_fails() {
    let sandbox = sandbox_on(free_port(), |config| {
        config["control"]["path"] = json!("/nonexistent-rollbridge-dir/x.sock");
    });
    let run = sandbox.run("doctor", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(
            "✗ control socket directory: /nonexistent-rollbridge-dir is missing or not writable\n"
        ),
        "{run:?}"
    );
}

#[test]
fn no_config_file_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let run = rollbridge_in(dir.path(), &["doctor"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with("No config file found in "),
        "{run:?}"
    );
    assert_eq!(run.stdout, "");
    let run = rollbridge_in(dir.path(), &["doctor", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["checks"][0]["name"], "config");
    assert!(
        report["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("No config file found in ")
    );
}

#[test]
fn an_invalid_config_is_the_only_check() {
    let sandbox = sandbox_on(free_port(), |config| config["processes"] = json!([]));
    let run = sandbox.run("doctor", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stdout,
        "✗ config: 1 issue — run \"rollbridge validate\" for details\n"
    );
    assert_eq!(run.stderr, "\n1 check failed.\n");
    let run = sandbox.run("doctor", &["--json"]);
    assert_eq!(run.code, 1);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        report,
        json!({"checks": [{"detail": "1 issue — run \"rollbridge validate\" for details", "name": "config", "ok": false}], "ok": false})
    );
}

fn release_sandbox(command: &str) -> Sandbox {
    let command = command.to_string();
    sandbox_on(free_port(), move |config| {
        config["processes"] = json!([
            {"id": "web", "policy": "proxied", "command": command, "cwd": "{{releasePath}}/backend",
             "port": {"from": 18000, "to": 18099}},
            {"id": "worker", "command": "run-worker --port {{ports.web}}"}
        ]);
    })
}

#[test]
fn release_checks_pass_for_a_complete_release() {
    let sandbox = release_sandbox("serve --port {{port}} --release {{releaseId}}");
    let release = sandbox.path().join("releases/r42");
    std::fs::create_dir_all(release.join("backend")).unwrap();
    let run = sandbox.run("doctor", &["--release-path", "releases/r42"]);
    assert_eq!(run.code, 0, "{run:?}");
    let release_text = release.display();
    assert!(
        run.stdout
            .contains(&format!("✓ release path: {release_text} exists\n")),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("✓ process templates: all 2 process command/cwd/env templates resolve\n"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("✓ process working directories: all 2 process working directories exist\n"),
        "{run:?}"
    );
    assert!(run.stdout.ends_with("\nAll checks passed.\n"), "{run:?}");
}

#[test]
fn release_checks_report_templates_and_missing_directories() {
    let sandbox = release_sandbox("serve {{missingVar}}");
    let release = sandbox.path().join("r1");
    std::fs::create_dir(&release).unwrap();
    let run = sandbox.run(
        "doctor",
        &[
            "--release-path",
            release.to_str().unwrap(),
            "--revision",
            "abc",
        ],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("✗ process templates: unresolved templates — web: Missing template value for {{missingVar}}\n"),
        "{run:?}"
    );
    // Only the worker rendered; it runs in the release directory, which exists.
    assert!(
        run.stdout
            .contains("✓ process working directories: all 1 process working directory exists\n"),
        "{run:?}"
    );

    let sandbox = release_sandbox("serve");
    let release = sandbox.path().join("r2");
    std::fs::create_dir(&release).unwrap();
    let run = sandbox.run("doctor", &["--release-path", release.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "✗ process working directories: missing working directory: web ({}/backend)\n",
            release.display()
        )),
        "{run:?}"
    );

    let run = sandbox.run("doctor", &["--release-path", "does-not-exist"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("✗ release path: "), "{run:?}");
    assert!(
        run.stdout
            .contains("does-not-exist is missing or not a directory\n"),
        "{run:?}"
    );
}

#[test]
fn a_running_daemon_on_another_port_does_not_excuse_a_held_proxy_port() {
    let daemon_port = free_port();
    let sandbox = daemon_sandbox("doctor-test", daemon_port);
    let _daemon = DaemonGuard::start(&sandbox);
    // The config now asks for a port the running daemon does not hold and
    // another program does.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let wanted = held.local_addr().unwrap().port();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(sandbox.config_path()).unwrap()).unwrap();
    config["proxy"]["port"] = json!(wanted);
    sandbox.write_config(&config);

    let run = sandbox.run("doctor", &["--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let check = |name: &str| -> Value {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} check: {report}"))
    };
    assert_eq!(check("control socket")["ok"], true, "{report}");
    assert_eq!(check("proxy port")["ok"], false, "{report}");
    assert_eq!(
        check("proxy port")["detail"],
        format!("127.0.0.1:{wanted} is unavailable (EADDRINUSE)")
    );
}
