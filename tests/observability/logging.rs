//! The daemon's log output: event line shape on stdout and in a `--log-file`,
//! rotation and retention, reopen on SIGHUP, the diagnostics filter and the
//! `status.logging` counts. Real daemons, real files.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, SystemTime};

fn parsed(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, checked character by character.
fn is_iso_millis(text: &str) -> bool {
    let pattern = "9999-99-99T99:99:99.999Z";
    text.len() == pattern.len()
        && text.bytes().zip(pattern.bytes()).all(|(c, p)| {
            if p == b'9' {
                c.is_ascii_digit()
            } else {
                c == p
            }
        })
}

/// An event line: exactly `at`, `data`, `message`, in that order.
fn assert_event_line(line: &str) -> Value {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["at", "data", "message"], "{line}");
    assert!(is_iso_millis(value["at"].as_str().unwrap()), "{line}");
    assert!(value["data"].is_object(), "{line}");
    assert!(value["message"].is_string(), "{line}");
    value
}

/// The daemon's event history, as `rollbridge events` would print it.
fn history(socket: &Path) -> Vec<Value> {
    ok(socket, json!({"command": "events"}))["events"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn stdout_lines_are_the_event_history() {
    let mut harness = Harness::started();
    harness.deploy("v1");
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    let _ = harness.err(json!({"command": "rollback", "releaseId": "nope"}));

    // The writer thread may still be behind the ring for a moment.
    wait_until(PATIENCE, "stdout to hold exactly the event history", || {
        let printed: Vec<Value> = harness
            .output()
            .lines()
            .iter()
            .map(|l| assert_event_line(l))
            .collect();
        printed == history(&harness.socket)
    });
    let printed: Vec<Value> = harness
        .output()
        .lines()
        .iter()
        .map(|l| assert_event_line(l))
        .collect();
    for message in [
        "proxy listening",
        "control socket listening",
        "traffic switched",
        "command failed",
    ] {
        assert!(printed.iter().any(|e| e["message"] == message), "{message}");
    }
    assert_eq!(
        harness.status()["logging"],
        json!({"droppedLines": 0, "processDroppedLines": 0})
    );
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn a_log_file_gets_the_event_lines_and_stdout_stays_empty() {
    let mut harness = Harness::new(base_config);
    let log = harness.path("logs-daemon.log");
    harness.start_logging_to(&log, &[]);
    harness.deploy("v1");
    wait_until(
        PATIENCE,
        "the file to hold exactly the event history",
        || {
            let written: Vec<Value> = file_lines(&log)
                .iter()
                .map(|l| assert_event_line(l))
                .collect();
            written == history(&harness.socket)
        },
    );
    assert_eq!(harness.shutdown(), 0);
    assert!(
        harness.output().lines().is_empty(),
        "{:?}",
        harness.output().lines()
    );
    // Nothing was lost at exit: the shutdown's last events are in the file.
    let after = parsed(&file_lines(&log));
    assert!(after.iter().any(|e| e["message"] == "process exited"));
}

#[test]
fn hourly_rotation_dates_the_old_file_and_keeps_n() {
    clear_of_the_hour_boundary();
    let mut harness = Harness::new(base_config);
    let log = harness.path("daemon.log");
    // A live file last written three hours ago, and older rolled files.
    std::fs::write(&log, "{\"old\":true}\n").unwrap();
    let three_hours_ago = SystemTime::now() - Duration::from_secs(3 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_modified(three_hours_ago)
        .unwrap();
    for old in ["2020-01-01-00", "2020-01-01-01", "2020-01-01-02"] {
        std::fs::write(harness.path(&format!("daemon.log.{old}")), "x\n").unwrap();
    }
    harness.start_logging_to(&log, &["--log-rotation", "hourly", "--log-keep", "2"]);
    let expected_name = format!(
        "daemon.log.{}",
        chrono::DateTime::<chrono::Utc>::from(three_hours_ago).format("%Y-%m-%d-%H")
    );
    let mut rolled: Vec<String> = std::fs::read_dir(harness.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("daemon.log."))
        .collect();
    rolled.sort();
    assert_eq!(
        rolled,
        [
            "daemon.log.2020-01-01-02".to_string(),
            expected_name.clone()
        ]
    );
    assert_eq!(
        std::fs::read_to_string(harness.path(&expected_name)).unwrap(),
        "{\"old\":true}\n"
    );
    for line in file_lines(&log) {
        assert_event_line(&line);
    }
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn sighup_after_a_rename_starts_a_new_file() {
    let mut harness = Harness::new(base_config);
    let log = harness.path("app.log");
    harness.start_logging_to(&log, &[]);
    let rotated = harness.path("app.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // Until the signal, lines still go to the renamed file.
    let _ = harness.err(json!({"command": "rollback", "releaseId": "first"}));
    wait_until(PATIENCE, "the first failure in the renamed file", || {
        file_lines(&rotated).iter().any(|l| l.contains("first"))
    });
    harness.signal(libc::SIGHUP);
    wait_until(PATIENCE, "a new file at the configured path", || {
        log.exists()
    });
    let _ = harness.err(json!({"command": "rollback", "releaseId": "second"}));
    wait_until(PATIENCE, "the second failure in the new file", || {
        file_lines(&log).iter().any(|l| l.contains("second"))
    });
    assert!(!file_lines(&rotated).iter().any(|l| l.contains("second")));
    for line in file_lines(&log) {
        assert_event_line(&line);
    }
    // SIGHUP does not stop the daemon.
    assert_eq!(harness.status()["activeReleaseId"], Value::Null);
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn debug_diagnostics_are_extra_lines_and_events_keep_their_shape() {
    let mut harness = Harness::new(base_config);
    let log = harness.path("debug.log");
    harness.start_logging_to(&log, &["--log-level", "rollbridge::hooks=debug"]);
    harness.deploy("v1");
    wait_until(PATIENCE, "a hook call diagnostic", || {
        file_lines(&log)
            .iter()
            .any(|l| l.contains("\"target\":\"rollbridge::hooks\""))
    });
    let split = || {
        let lines = parsed(&file_lines(&log));
        let (diagnostics, events): (Vec<Value>, Vec<Value>) = lines
            .into_iter()
            .partition(|line| line.get("level").is_some());
        (diagnostics, events)
    };
    wait_until(
        PATIENCE,
        "the file's event lines to match the history",
        || split().1 == history(&harness.socket),
    );
    let (diagnostics, events) = split();
    let health = diagnostics
        .iter()
        .find(|d| d["data"]["stage"] == "health")
        .expect("the health probe is reported");
    assert_eq!(health["level"], "debug");
    assert_eq!(health["message"], "hook call finished");
    assert_eq!(health["data"]["plugin"], "http");
    let keys: Vec<&String> = health.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["at", "data", "message", "level", "target"]);
    for event in &events {
        assert_event_line(&event.to_string());
    }
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn bad_logging_options_fail_with_a_fix() {
    let harness = Harness::new(base_config);
    let cases: [(&[&str], &str); 3] = [
        (&["--log-level", "verbose"], "invalid log level \"verbose\""),
        (&["--log-rotation", "daily"], "need --log-file"),
        (
            &["--log-file", "/nonexistent-rollbridge-dir/x.log"],
            "cannot open the log file /nonexistent-rollbridge-dir/x.log",
        ),
    ];
    for (args, expected) in cases {
        let mut daemon = harness.spawn(args);
        let status = poll(PATIENCE, || daemon.child.try_wait().unwrap()).expect("exits");
        assert_eq!(status.code(), Some(1), "{args:?}");
        wait_until(PATIENCE, "the error on stderr", || {
            daemon.stderr.lines().join("\n").contains(expected)
        });
        assert!(!harness.socket.exists());
    }
    let mut bad_rotation = harness.spawn(&["--log-file", "x.log", "--log-rotation", "weekly"]);
    let status = poll(PATIENCE, || bad_rotation.child.try_wait().unwrap()).expect("exits");
    assert_ne!(status.code(), Some(0));
}

#[test]
fn ensure_daemon_log_path_is_written_by_the_daemon_itself() {
    let harness = Harness::new(base_config);
    let log = harness.path("ensured/daemon.log");
    let pid_file = harness.path("ensured/daemon.pid");
    let run = std::process::Command::new(BIN)
        .arg("ensure-daemon")
        .arg("--config")
        .arg(&harness.config_path)
        .arg("--daemon-log-path")
        .arg(&log)
        .arg("--daemon-pid-path")
        .arg(&pid_file)
        .current_dir(harness.dir.path())
        .output()
        .unwrap();
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    // Whatever happens below, the detached daemon does not outlive the test.
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            if self.0 > 0 {
                unsafe { libc::kill(self.0, libc::SIGKILL) };
            }
        }
    }
    let _kill = Kill(pid);
    assert!(run.status.success(), "{run:?}");
    wait_until(PATIENCE, "the readiness line in the log", || {
        file_lines(&log)
            .iter()
            .any(|l| l.contains("\"message\":\"control socket listening\""))
    });
    for line in file_lines(&log) {
        assert_event_line(&line);
    }
    // The daemon holds the file open itself: after a rename and SIGHUP it
    // writes a new one.
    std::fs::rename(&log, harness.path("ensured/daemon.log.old")).unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    wait_until(PATIENCE, "a new log file", || log.exists());
    let _ = harness.err(json!({"command": "rollback", "releaseId": "after-hup"}));
    wait_until(PATIENCE, "the next event in the new file", || {
        file_lines(&log).iter().any(|l| l.contains("after-hup"))
    });
    ok(&harness.socket, json!({"command": "shutdown"}));
    wait_until(PATIENCE, "the daemon to exit", || !pid_alive(pid));
}
