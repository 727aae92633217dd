//! The control socket of a real daemon: protocol errors, abuse, permissions,
//! stale and contested socket paths, shutdown and signals.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn events(harness: &Harness) -> Vec<Value> {
    harness.ok(json!({"command": "events"}))["events"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn protocol_errors_are_replies_and_the_daemon_keeps_serving() {
    let harness = Harness::started();
    let socket = &harness.socket;
    let reply = control_raw(socket, "this is not json").unwrap();
    assert_eq!(reply["status"], "error");
    assert!(reply["error"].as_str().unwrap().contains("JSON"), "{reply}");
    assert_eq!(
        reply.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["error", "status"]
    );
    let empty = control_raw(socket, "").unwrap();
    assert!(empty["error"].as_str().unwrap().contains("JSON"));

    let cases = [
        ("123", "Control command must be an object"),
        ("null", "Control command must be an object"),
        ("[1,2]", "Unknown command: undefined"),
        (r#"{"command":"bogus"}"#, "Unknown command: bogus"),
        (r#"{"command":5}"#, "Unknown command: 5"),
        (r#"{"command":{}}"#, "Unknown command: [object Object]"),
        (r#"{"command":"deploy"}"#, "releasePath is required"),
        (
            r#"{"command":"deploy","releasePath":"/x","releaseId":5}"#,
            "Expected string value",
        ),
        (
            r#"{"command":"restart","policy":false}"#,
            "Expected string value",
        ),
        (r#"{"command":"retire-owner"}"#, "attestation is required"),
        (
            r#"{"command":"retire-owner","attestation":"sha256:ABC"}"#,
            "Owner retirement attestation must use the canonical sha256:<64 lowercase hex> format",
        ),
        (r#"{"command":"stop"}"#, "Release not found: active"),
        (
            r#"{"command":"stop","releaseId":"nope"}"#,
            "Release not found: nope",
        ),
        (
            r#"{"command":"rollback"}"#,
            "No previous release to roll back to.",
        ),
        (
            r#"{"command":"rollback","releaseId":"nope"}"#,
            "No retained release \"nope\" to roll back to.",
        ),
    ];
    for (line, expected) in cases {
        let reply = control_raw(socket, line).unwrap();
        assert_eq!(reply["status"], "error", "{line}");
        assert_eq!(reply["error"], expected, "{line}");
    }
    let status = harness.status();
    assert_eq!(status["application"], "rollbridge-test");
    let failures: Vec<Value> = events(&harness)
        .into_iter()
        .filter(|e| e["message"] == "command failed")
        .collect();
    assert!(
        failures
            .iter()
            .any(|e| e["data"]["error"] == "Unknown command: bogus")
    );
    assert!(failures.len() >= cases.len() + 2);

    // `limit` returns the last events, oldest first.
    let last = harness.ok(json!({"command": "events", "limit": 1}))["events"].clone();
    assert_eq!(last.as_array().unwrap().len(), 1);
    assert_eq!(last[0]["message"], "command failed");
    let all = events(&harness).len();
    let non_number = harness.ok(json!({"command": "events", "limit": "1"}))["events"].clone();
    assert!(non_number.as_array().unwrap().len() >= all);
}

#[test]
fn status_has_the_documented_shape() {
    let harness = Harness::started();
    let status = harness.status();
    let keys: Vec<&String> = status.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "status",
            "activeReleaseId",
            "application",
            "control",
            "daemonRuntime",
            "logging",
            "orphans",
            "proxy",
            "releases",
            "services",
            "singletons"
        ]
    );
    assert_eq!(status["activeReleaseId"], Value::Null);
    assert_eq!(status["proxy"]["port"], harness.proxy_port);
    assert_eq!(status["proxy"]["upstreamHost"], "127.0.0.1");
    let runtime = &status["daemonRuntime"];
    assert_eq!(runtime["format"], 1);
    assert_eq!(runtime["digest"].as_str().unwrap().len(), 64);
    assert_eq!(runtime["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        runtime["path"],
        std::path::Path::new(BIN)
            .parent()
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert_eq!(
        status["control"],
        json!({"path": harness.socket.to_str().unwrap()})
    );
}

#[test]
fn several_requests_on_one_connection_each_get_a_reply() {
    let harness = Harness::started();
    let mut stream = UnixStream::connect(&harness.socket).unwrap();
    stream
        .write_all(b"{\"command\":\"status\"}\n{\"command\":\"bogus\"}\r\n{\"command\":\"events\",\"limit\":1}\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut replies = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        replies.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    assert_eq!(
        replies.iter().filter(|r| r["status"] == "success").count(),
        2
    );
    assert!(
        replies
            .iter()
            .any(|r| r["error"] == "Unknown command: bogus")
    );
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn abusive_clients_do_not_hurt_the_daemon() {
    let harness = Harness::started();
    let pid = harness.daemon.as_ref().unwrap().pid();
    let baseline = open_fds(pid);

    // A client that connects and never says anything.
    let silent = UnixStream::connect(&harness.socket).unwrap();
    // A client that sends half a line and stops.
    let mut partial = UnixStream::connect(&harness.socket).unwrap();
    partial.write_all(b"{\"command\":\"sta").unwrap();

    // A 10 MB line: refused with a clear error, then the connection closes.
    let mut huge = UnixStream::connect(&harness.socket).unwrap();
    huge.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let chunk = vec![b'x'; 1024 * 1024];
    for _ in 0..10 {
        if huge.write_all(&chunk).is_err() {
            break; // the daemon already gave up on us
        }
    }
    let mut reply = String::new();
    let _ = huge.read_to_string(&mut reply);
    let first_line = reply.lines().next().expect("an error reply");
    let parsed: Value = serde_json::from_str(first_line).unwrap();
    assert_eq!(parsed["status"], "error");
    assert!(
        parsed["error"]
            .as_str()
            .unwrap()
            .contains("longer than 1048576 bytes"),
        "{parsed}"
    );

    // 200 clients at once, each with its own status request.
    let socket = harness.socket.clone();
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || control(&socket, json!({"command": "status"})))
        })
        .collect();
    for thread in threads {
        let reply = thread.join().unwrap();
        assert_eq!(reply["status"], "success");
    }
    // A client that sends many requests and never reads the replies: the daemon
    // stops reading from it instead of queueing replies without bound.
    let flood_socket = harness.socket.clone();
    let flood = std::thread::spawn(move || {
        let mut stream = UnixStream::connect(flood_socket).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let line = b"{\"command\":\"status\"}\n".repeat(1000);
        let mut sent = 0usize;
        for _ in 0..100 {
            if stream.write_all(&line).is_err() {
                break;
            }
            sent += 1000;
        }
        (stream, sent)
    });
    let (flood_stream, sent) = flood.join().unwrap();
    assert!(
        sent < 100_000,
        "the daemon applied back-pressure ({sent} requests accepted)"
    );
    assert_eq!(harness.status()["status"], "success");
    drop(flood_stream);
    drop(silent);
    drop(partial);
    drop(huge);
    assert_eq!(harness.status()["status"], "success");
    wait_until(
        Duration::from_secs(10),
        "connections to be released",
        || open_fds(pid) <= baseline + 2,
    );
}

#[test]
fn socket_mode_and_owner_are_applied() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["control"]["mode"] = json!("660");
        config["control"]["owner"] = json!("nobody");
        config["control"]["group"] = json!(65534);
        config
    });
    harness.start();
    let metadata = std::fs::metadata(&harness.socket).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o660);
    assert_eq!(metadata.uid(), 65534);
    assert_eq!(metadata.gid(), 65534);
    let status = harness.status();
    assert_eq!(status["control"]["mode"], 432);
    assert_eq!(status["control"]["owner"], "nobody");
    assert_eq!(status["control"]["group"], 65534);
    // No staging leftovers next to the socket.
    let leftovers: Vec<_> = std::fs::read_dir(harness.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".rollbridge-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn unknown_socket_owner_fails_startup_with_a_fix() {
    let harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["control"]["owner"] = json!("no-such-user-rb");
        config
    });
    let mut daemon = harness.spawn(&[]);
    let status = daemon.child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    wait_until(Duration::from_secs(5), "stderr", || {
        daemon
            .stderr
            .lines()
            .join("\n")
            .contains("Unknown user \"no-such-user-rb\"")
    });
    assert!(!harness.socket.exists());
}

#[test]
fn a_second_daemon_reports_the_running_one() {
    let harness = Harness::started();
    harness.deploy("v1");
    let mut second = harness.spawn(&[]);
    let status = second.child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let stderr = poll(Duration::from_secs(5), || {
        let text = second.stderr.lines().join("\n");
        text.contains("already running").then_some(text)
    })
    .unwrap();
    assert!(
        stderr
            .contains("A Rollbridge daemon for application \"rollbridge-test\" is already running"),
        "{stderr}"
    );
    assert!(stderr.contains("active release: v1"), "{stderr}");
    assert!(stderr.contains("rollbridge shutdown"), "{stderr}");
    assert_eq!(harness.status()["activeReleaseId"], "v1");
}

#[test]
fn a_socket_held_by_another_program_is_a_conflict_and_a_stale_one_is_replaced() {
    let harness = Harness::new(base_config);
    // A listener that accepts but never answers.
    let listener = std::os::unix::net::UnixListener::bind(&harness.socket).unwrap();
    let mut daemon = harness.spawn(&[]);
    let status = daemon.child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    wait_until(Duration::from_secs(5), "conflict message", || {
        daemon.stderr.lines().join("\n").contains(&format!(
            "The control socket {} is already in use by another process.",
            harness.socket.display()
        ))
    });
    // Closing the listener leaves a stale socket file behind; a daemon replaces it.
    drop(listener);
    assert!(harness.socket.exists());
    let mut harness = harness;
    harness.start();
    assert_eq!(harness.status()["status"], "success");
}

#[test]
fn a_regular_file_at_the_socket_path_is_never_deleted() {
    let harness = Harness::new(base_config);
    std::fs::write(&harness.socket, "important").unwrap();
    let mut daemon = harness.spawn(&[]);
    assert_eq!(daemon.child.wait().unwrap().code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&harness.socket).unwrap(),
        "important"
    );
}

#[test]
fn a_busy_proxy_port_fails_before_the_socket_exists() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let harness = Harness::new(|dir, _| base_config(dir, port));
    let mut daemon = harness.spawn(&[]);
    assert_eq!(daemon.child.wait().unwrap().code(), Some(1));
    assert!(!harness.socket.exists());
    assert!(!daemon.output.has_event("control socket listening"));
}

#[test]
fn shutdown_replies_after_cleanup_closes_idle_clients_and_exits() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "worker", "policy": "companion", "command": "exec sleep 1000"
        }));
        config
    });
    harness.start();
    harness.deploy("v1");
    let worker_pid = harness.process_in("v1", "worker").unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;
    let web_pid = harness.process_in("v1", "web").unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;
    let mut idle = UnixStream::connect(&harness.socket).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // Make sure the idle connection has been accepted before the shutdown.
    assert_eq!(harness.status()["status"], "success");

    let reply = control(&harness.socket, json!({"command": "shutdown"}));
    assert_eq!(reply, json!({"status": "success", "message": "shutdown"}));
    // By the time the reply arrived, everything is gone.
    assert!(!harness.socket.exists());
    assert!(!pid_alive(worker_pid));
    assert!(!pid_alive(web_pid));
    assert!(std::net::TcpStream::connect(("127.0.0.1", harness.proxy_port)).is_err());
    let mut buffer = [0u8; 16];
    assert_eq!(
        idle.read(&mut buffer).unwrap_or(0),
        0,
        "idle client sees EOF"
    );
    assert_eq!(harness.wait_exit(Duration::from_secs(10)), 0);

    // A replacement with the same config starts at once.
    harness.start();
    assert_eq!(harness.status()["activeReleaseId"], Value::Null);
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn shutdown_reports_a_state_cleanup_failure_but_still_releases_the_socket() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        let state_dir = dir.join("state-is-a-dir");
        std::fs::create_dir_all(state_dir.join("x")).unwrap();
        config["statePath"] = json!(state_dir);
        config
    });
    harness.start();
    let reply = control(&harness.socket, json!({"command": "shutdown"}));
    assert_eq!(reply["status"], "error");
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.starts_with("persistent state cleanup failed: "),
        "{error}"
    );
    assert!(
        error.contains("EISDIR") || error.contains("directory"),
        "{error}"
    );
    assert!(!harness.socket.exists());
    harness.wait_exit(Duration::from_secs(10));
}

#[test]
fn shutdown_without_a_daemon_is_a_connection_error() {
    let harness = Harness::new(base_config);
    let error = control_raw(&harness.socket, r#"{"command":"shutdown"}"#).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn sigterm_shuts_down_and_a_second_signal_does_not_abandon_children() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "stubborn",
            "policy": "companion",
            "command": format!(
                "APP_IGNORE_TERM=1 APP_SIGNAL_LOG={} ROLLBRIDGE_PORT=0 {}",
                dir.join("stubborn-signals").display(),
                python("app.py")
            ),
            "gracefulStopMs": 1500
        }));
        config
    });
    harness.start();
    harness.deploy("v1");
    let stubborn = harness.process_in("v1", "stubborn").unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;
    // Wait until the fixture has installed its signal handlers (it prints once ready).
    wait_until(Duration::from_secs(20), "stubborn to be ready", || {
        harness.process_in("v1", "stubborn").unwrap()["logs"]
            .as_array()
            .is_some_and(|logs| !logs.is_empty())
    });
    harness.signal(libc::SIGTERM);
    // The second signal comes while the shutdown waits for the stubborn child.
    let signals = harness.path("stubborn-signals");
    wait_until(
        PATIENCE,
        "the shutdown to signal the stubborn child",
        || std::fs::read_to_string(&signals).is_ok_and(|log| log.contains("SIGTERM")),
    );
    harness.signal(libc::SIGTERM);
    harness.signal(libc::SIGINT);
    assert_eq!(harness.wait_exit(Duration::from_secs(20)), 0);
    assert!(
        !pid_alive(stubborn),
        "the stubborn child was killed, not abandoned"
    );
    assert!(!harness.socket.exists());
    let output = harness.output();
    assert!(output.has_event("process stop timed out; sending SIGKILL"));
}

#[test]
fn a_client_reset_is_recorded_and_harmless() {
    let harness = Harness::started();
    {
        // Ask for a reply and hang up without reading it: the daemon's side of a
        // Unix socket then sees ECONNRESET.
        let mut stream = UnixStream::connect(&harness.socket).unwrap();
        stream.write_all(b"{\"command\":\"status\"}\n").unwrap();
        // Closed with the reply unread (it has arrived), the socket resets.
        wait_until(PATIENCE, "the reply to arrive", || reply_waiting(&stream));
    }
    wait_until(
        Duration::from_secs(10),
        "the connection error event",
        || {
            events(&harness).iter().any(|e| {
                e["message"] == "control connection error" && e["data"]["code"] == "ECONNRESET"
            })
        },
    );
    let event = events(&harness)
        .into_iter()
        .find(|e| e["message"] == "control connection error")
        .unwrap();
    let keys: Vec<&String> = event["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["code", "error"]);
    assert_eq!(harness.status()["status"], "success");
}

#[test]
fn an_unlink_failure_is_reported_after_everything_else_was_cleaned_up() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["statePath"] = json!(dir.join("state.json"));
        config
    });
    harness.start();
    harness.deploy("v1");
    let web = pid_of(&harness.process_in("v1", "web").unwrap());
    // Keep a second name for the socket, then put a non-empty directory where
    // the daemon expects its socket file, so removing it fails.
    let alias = harness.path("alias.sock");
    std::fs::hard_link(&harness.socket, &alias).unwrap();
    std::fs::remove_file(&harness.socket).unwrap();
    std::fs::create_dir_all(harness.socket.join("blocker")).unwrap();
    let reply = control(&alias, json!({"command": "shutdown"}));
    assert_eq!(reply["status"], "error");
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.starts_with("control socket unlink failed: EISDIR"),
        "{error}"
    );
    assert!(!pid_alive(web));
    assert!(std::net::TcpStream::connect(("127.0.0.1", harness.proxy_port)).is_err());
    assert!(!harness.path("state.json").exists());
    assert_eq!(harness.wait_exit(Duration::from_secs(10)), 0);
}

/// True while the peer has neither closed the connection nor sent anything.
fn still_open_and_quiet(stream: &UnixStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buffer = [0u8; 16];
    let open = matches!(
        (&*stream).read(&mut buffer),
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).unwrap();
    open
}

#[test]
fn a_blocked_shutdown_has_already_closed_its_endpoint_and_touches_no_other_daemon() {
    let unrelated = Harness::started();
    let unrelated_idle = UnixStream::connect(&unrelated.socket).unwrap();
    assert_eq!(unrelated.status()["status"], "success");

    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        let started = dir.join("quiet-started");
        let release = dir.join("quiet-release");
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "worker", "policy": "companion", "command": "exec sleep 1000",
            "gracefulStopMs": 60000,
            "lifecycle": {"quietCommand": format!(
                "touch {}; while [ ! -e {} ]; do sleep 0.02; done",
                started.display(),
                release.display()
            )}
        }));
        config
    });
    harness.start();
    harness.deploy("v1");
    let worker = pid_of(&harness.process_in("v1", "worker").unwrap());
    let idle = UnixStream::connect(&harness.socket).unwrap();
    assert_eq!(harness.status()["status"], "success");

    let socket = harness.socket.clone();
    let shutdown = std::thread::spawn(move || control(&socket, json!({"command": "shutdown"})));
    wait_until(Duration::from_secs(30), "the quiet hook to block", || {
        harness.path("quiet-started").exists()
    });
    // While the hook blocks: no reply yet, the endpoint is gone, the worker
    // still runs, this daemon's idle client was closed and the other daemon's
    // was not.
    assert!(!shutdown.is_finished());
    assert!(UnixStream::connect(&harness.socket).is_err());
    assert!(pid_alive(worker));
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!((&idle).read(&mut [0u8; 16]).unwrap_or(0), 0, "EOF");
    assert!(still_open_and_quiet(&unrelated_idle));

    std::fs::write(harness.path("quiet-release"), "").unwrap();
    let reply = shutdown.join().unwrap();
    assert_eq!(reply, json!({"status": "success", "message": "shutdown"}));
    assert!(!harness.socket.exists());
    assert!(!pid_alive(worker));
    assert_eq!(harness.wait_exit(Duration::from_secs(10)), 0);
    assert_eq!(unrelated.status()["status"], "success");
    assert!(still_open_and_quiet(&unrelated_idle));
    // The same config starts again at once.
    harness.start();
    assert_eq!(harness.status()["status"], "success");
}

/// Whether bytes wait to be read on `stream` (without reading them).
fn reply_waiting(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    // SAFETY: a valid socket and a one-byte buffer; MSG_PEEK leaves it unread.
    let peeked = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    peeked > 0
}
