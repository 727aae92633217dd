//! `ensure-daemon` and `deploy --ensure-daemon` against fake daemons: a daemon of
//! another runtime is refused before any deploy is sent.

use crate::support::cli::*;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::time::Duration;

const MISMATCH: &str = "The running Rollbridge daemon has a legacy or mismatched runtime. The deploy was not sent. Keep the current release active, then explicitly stop and restart the daemon with this Rollbridge installation before retrying.";

fn answering(runtime: Option<Value>) -> impl Fn(&Value) -> Option<String> + Send + Sync + 'static {
    move |request| {
        Some(match request["command"].as_str() {
            Some("status") => {
                let mut status = json!({"activeReleaseId": null, "application": "fake"});
                if let Some(runtime) = &runtime {
                    status["daemonRuntime"] = runtime.clone();
                }
                success(status)
            }
            Some("deploy") => success(json!({"activeReleaseId": "v1", "previousReleaseId": null})),
            _ => failure("unexpected"),
        })
    }
}

#[test]
fn a_legacy_daemon_without_runtime_identity_is_refused() {
    let sandbox = Sandbox::new("fake");
    let daemon = FakeDaemon::start(&sandbox.socket(), answering(None));
    let run = sandbox.run("deploy", &["--release-path", "/srv/r1", "--ensure-daemon"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, format!("Error: {MISMATCH}\n"));
    let run = sandbox.run("ensure-daemon", &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, format!("Error: {MISMATCH}\n"));
    assert_eq!(daemon.commands(), vec!["status", "status"]);
}

#[test]
fn a_daemon_with_another_digest_is_refused_before_deploy() {
    let sandbox = Sandbox::new("fake");
    let mut runtime = matching_runtime();
    runtime["digest"] = json!("0".repeat(64));
    let daemon = FakeDaemon::start(&sandbox.socket(), answering(Some(runtime)));
    let run = sandbox.run("deploy", &["--release-path", "/srv/r1", "--ensure-daemon"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("legacy or mismatched runtime"),
        "{run:?}"
    );
    assert!(run.stderr.contains("The deploy was not sent"), "{run:?}");
    assert!(!daemon.commands().contains(&"deploy".to_string()));
}

#[test]
fn a_daemon_of_this_binary_is_reused() {
    let sandbox = Sandbox::new("fake");
    let daemon = FakeDaemon::start(&sandbox.socket(), answering(Some(matching_runtime())));
    let run = sandbox.run("ensure-daemon", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let printed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(printed["status"], "success");
    assert_eq!(printed["daemonRuntime"], matching_runtime());

    let run = sandbox.run("deploy", &["--release-path", "/srv/r1", "--ensure-daemon"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "{\n  \"status\": \"success\",\n  \"activeReleaseId\": \"v1\",\n  \"previousReleaseId\": null\n}\n"
    );
    assert_eq!(daemon.commands(), vec!["status", "status", "deploy"]);
    // Neither call started a daemon of its own.
    assert!(!sandbox.path().join("daemon.pid").exists());
}

#[test]
fn start_timeout_must_be_a_positive_number() {
    let sandbox = Sandbox::new("fake");
    for bad in ["0", "-1", "soon"] {
        let run = sandbox.run("ensure-daemon", &["--daemon-start-timeout-ms", bad]);
        assert_eq!(run.code, 1, "{run:?}");
        assert_eq!(
            run.stderr,
            "Error: --daemon-start-timeout-ms must be a positive number\n"
        );
    }
    let run = sandbox.run(
        "deploy",
        &[
            "--release-path",
            "/srv/r1",
            "--ensure-daemon",
            "--daemon-start-timeout-ms",
            "0",
        ],
    );
    assert_eq!(
        run.stderr,
        "Error: --daemon-start-timeout-ms must be a positive number\n"
    );
    assert!(!sandbox.socket().exists());
}

#[test]
fn boot_attestation_is_not_an_ensure_daemon_option() {
    let sandbox = Sandbox::new("fake");
    let attestation = format!("sha256:{}", "a".repeat(64));
    let run = sandbox.run("ensure-daemon", &["--boot-attestation", &attestation]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("unknown option '--boot-attestation'"),
        "{run:?}"
    );
    assert!(!sandbox.socket().exists());
}

#[test]
fn a_daemon_that_cannot_start_is_reported_with_its_log() {
    // The proxy port is taken, so a daemon started for this config cannot bind it.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let sandbox = Sandbox::with("fake", |config| config["proxy"]["port"] = json!(port));
    let log = sandbox.path().join("logs/daemon.log");
    let pid = sandbox.path().join("run/daemon.pid");
    let run = sandbox.run(
        "ensure-daemon",
        &[
            "--daemon-log-path",
            log.to_str().unwrap(),
            "--daemon-pid-path",
            pid.to_str().unwrap(),
            "--daemon-start-timeout-ms",
            "20000",
        ],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .starts_with("Error: Rollbridge daemon did not become ready"),
        "{run:?}"
    );
    assert!(run.stderr.contains(log.to_str().unwrap()), "{run:?}");
    let pid_text = std::fs::read_to_string(&pid).unwrap();
    assert!(
        pid_text.ends_with('\n') && pid_text.trim().parse::<u32>().is_ok(),
        "{pid_text:?}"
    );
    let daemon_pid: i32 = pid_text.trim().parse().unwrap();
    wait_until(Duration::from_secs(5), "the daemon process to exit", || {
        !pid_alive(daemon_pid)
    });
    assert!(log.exists());
}
