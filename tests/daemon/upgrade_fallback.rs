//! The fallback of a live upgrade (docs/upgrade.md, "Safety"): a new image that
//! cannot take over re-executes the previous binary, which takes the daemon
//! back and answers the upgrade with why. No hook in the product: the binary
//! given to `rollbridge upgrade` is a shell script that answers the handshake
//! with the real binary and, when run for the upgrade itself, first moves the
//! config file away (the new image must load it) and then runs the real binary.

use super::upgrade::{Tally, process_pids, start_load, upgrade, upgrade_ok};
use super::upgrade_counters::{sample, scrape};
use crate::support::daemon::*;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A script standing in for a new binary: `handover-format` goes straight to
/// the real binary (the check passes); the real run does `prepare` first.
fn wrapper_binary(dir: &Path, name: &str, prepare: &str) -> PathBuf {
    let script = dir.join(name);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" != handover-format ]; then {prepare}; fi\n\
             exec '{BIN}' \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The real run moves `config` to `<config>.away` first.
fn config_moving_binary(dir: &Path, config: &Path) -> PathBuf {
    let config = config.display();
    let prepare = format!("mv '{config}' '{config}.away'");
    wrapper_binary(dir, "rollbridge-moves-the-config", &prepare)
}

/// The position of the last message containing `needle`.
fn last(messages: &[String], needle: &str) -> Option<usize> {
    messages.iter().rposition(|m| m.contains(needle))
}

#[test]
fn a_new_image_that_cannot_take_over_gives_the_daemon_back_to_the_previous_binary() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["metrics"] = json!({"host": "127.0.0.1", "port": 0});
        config["processes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "sleeper", "policy": "companion", "command": "exec sleep 1000"}));
        config
    });
    let notifications = harness.spawn_under_systemd();
    harness.daemon.as_ref().unwrap().wait_ready(PATIENCE);
    harness.deploy("v1");
    notifications.until("READY=1 after the start", |m| last(m, "READY=1").is_some());
    let daemon_pid = harness.daemon.as_ref().unwrap().pid();
    let before = harness.status();
    let pids_before = process_pids(&before);
    assert!(
        pids_before.iter().all(|(_, pid)| *pid > 0),
        "{pids_before:?}"
    );
    let mut socket = ws_connect(harness.proxy_port);
    assert_eq!(ws_echo(&mut socket, "before"), "before");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let load = start_load(harness.proxy_port, &stop, &tally);
    wait_until(LONG_PATIENCE, "the load to flow", || {
        tally.ok.load(Ordering::Relaxed) > 50
    });

    let metrics = metrics_port(&harness);
    let ok_series = "rollbridge_http_requests_total{release=\"v1\",class=\"2xx\"}";
    assert!(sample(&scrape(metrics), ok_series) > 0.0);

    let binary = config_moving_binary(harness.dir.path(), &harness.config_path);
    let (code, stdout, stderr) = upgrade(&harness, Some(&binary));
    assert_eq!(code, 1, "{stdout}{stderr}");
    let config = harness.config_path.display().to_string();
    assert!(
        stderr.contains("Upgrade refused: the new binary could not take over (")
            && stderr.contains(&format!("(Cannot read config file {config}: "))
            && stderr.contains(&format!(
                "the daemon went back to rollbridge {}",
                env!("CARGO_PKG_VERSION")
            )),
        "{stderr}"
    );
    assert!(!harness.config_path.exists(), "the script ran for real");
    let daemon_stderr = harness.daemon.as_ref().unwrap().stderr.lines().join("\n");
    assert!(
        daemon_stderr.contains("going back to the previous binary"),
        "{daemon_stderr}"
    );

    // Served throughout, by the same process, with the same app.
    tally.wait_for_more("traffic after the fallback", 20);
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "failed requests");
    assert_eq!(
        tally.refused.load(Ordering::Relaxed),
        0,
        "refused connections"
    );
    assert_eq!(ws_echo(&mut socket, "after"), "after");
    // The previous binary continues the counters too: every answer the
    // clients got is counted once.
    let answered = tally.ok.load(Ordering::Relaxed) as f64;
    wait_until(PATIENCE, "every answer to be counted", || {
        sample(&scrape(metrics), ok_series) == answered
    });
    assert_eq!(harness.daemon.as_ref().unwrap().pid(), daemon_pid);
    assert!(pid_alive(daemon_pid));
    let after = harness.status();
    assert_eq!(after["daemonRuntime"], before["daemonRuntime"]);
    assert_eq!(process_pids(&after), pids_before, "app pids unchanged");
    let events = events_of(&harness);
    assert!(!events.iter().any(|e| e["message"] == "daemon upgraded"));
    assert!(
        events.iter().any(|e| e["message"] == "command failed"
            && e["data"]["error"]
                .as_str()
                .is_some_and(|t| t.contains(&config))),
        "{events:?}"
    );
    // systemd hears the daemon is ready again, and the watchdog goes on.
    notifications.until("READY=1 after the fallback's RELOADING=1", |m| {
        let reloading = last(m, "RELOADING=1");
        reloading.is_some() && last(m, "READY=1") > reloading
    });
    notifications.until("WATCHDOG=1 from the previous binary", |m| {
        last(m, "WATCHDOG=1") > last(m, "READY=1")
    });

    // With the config back, an upgrade goes through.
    std::fs::rename(format!("{config}.away"), &config).unwrap();
    let reply: Value = upgrade_ok(&harness, None);
    assert_eq!(reply["previousVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(ws_echo(&mut socket, "upgraded"), "upgraded");
    assert_eq!(process_pids(&harness.status()), pids_before);
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    assert_eq!(harness.daemon.as_ref().unwrap().pid(), daemon_pid);
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn a_new_image_failing_before_it_reads_its_config_gives_the_daemon_back_too() {
    let mut harness = Harness::started();
    harness.deploy("v1");
    let daemon_pid = harness.daemon.as_ref().unwrap().pid();
    let before = harness.status();
    let pids_before = process_pids(&before);
    let mut socket = ws_connect(harness.proxy_port);
    assert_eq!(ws_echo(&mut socket, "before"), "before");
    // A broken socket-activation environment: the new image fails while it
    // sets up, before it looks at the handover's config.
    let binary = wrapper_binary(
        harness.dir.path(),
        "rollbridge-in-a-broken-environment",
        "export LISTEN_PID=$$ LISTEN_FDS=bogus",
    );
    let (code, stdout, stderr) = upgrade(&harness, Some(&binary));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("Upgrade refused: the new binary could not take over (socket activation: ")
            && stderr.contains("the daemon went back to rollbridge"),
        "{stderr}"
    );
    assert_eq!(harness.daemon.as_ref().unwrap().pid(), daemon_pid);
    let after = harness.status();
    assert_eq!(after["daemonRuntime"], before["daemonRuntime"]);
    assert_eq!(process_pids(&after), pids_before, "app pids unchanged");
    assert_eq!(ws_echo(&mut socket, "after"), "after");
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    upgrade_ok(&harness, None);
    assert_eq!(ws_echo(&mut socket, "upgraded"), "upgraded");
    assert_eq!(harness.shutdown(), 0);
}
