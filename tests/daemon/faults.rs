//! The daemon off the happy path (issue 10): a kill -9 in the middle of a deploy,
//! thousands of idle control clients, an environment that is not UTF-8, and the
//! messages of deploys that fail or are cut short.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;
use std::time::Duration;

fn read_state(harness: &Harness) -> Option<Value> {
    let text = std::fs::read_to_string(harness.path("state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Pids recorded for a release in a state snapshot or a status reply.
fn recorded_pids(state: &Value, release_id: &str) -> Vec<i32> {
    state["releases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|release| release["releaseId"] == release_id)
        .flat_map(|release| release["processes"].as_array().cloned().unwrap_or_default())
        .filter_map(|process| process["pid"].as_i64().map(|pid| pid as i32))
        .collect()
}

/// Sends `deploy` on its own thread (it blocks until the daemon answers or goes
/// away) and returns the reply, or the transport error as text.
fn deploy_in_background(
    harness: &Harness,
    release_id: &str,
) -> std::thread::JoinHandle<Result<Value, String>> {
    let path = harness.release(release_id);
    let socket = harness.socket.clone();
    let line = json!({"command": "deploy", "releasePath": path, "releaseId": release_id});
    std::thread::spawn(move || control_raw(&socket, &line.to_string()).map_err(|e| e.to_string()))
}

/// Runs the CLI with `args` and the harness's config; (exit code, stdout, stderr).
fn cli(harness: &Harness, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&harness.config_path)
        .current_dir(harness.dir.path())
        .output()
        .expect("run the rollbridge CLI");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// --- item 3: crash-safe state -------------------------------------------------

#[test]
fn a_kill_9_while_a_release_waits_for_its_health_check_leaves_every_process_recoverable() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["statePath"] = json!(dir.join("state.json"));
        // A release id containing "bad" never answers /ping with 2xx.
        config["processes"][0]["health"]["timeoutMs"] = json!(120_000);
        config["proxy"]["healthTimeoutMs"] = json!(120_000);
        config["processes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "worker", "policy": "companion", "command": "exec sleep 300"}));
        config
    });
    harness.start();
    harness.deploy("v1");
    let deploy = deploy_in_background(&harness, "bad-2");

    // The starting release's processes reach the state file while its health
    // check still runs (written within ~100 ms of their start, not after 5 s).
    let state = poll(PATIENCE, || {
        read_state(&harness).filter(|state| recorded_pids(state, "bad-2").len() == 2)
    })
    .expect("the starting release's processes in the state file");
    let starting = recorded_pids(&state, "bad-2");
    let active = recorded_pids(&state, "v1");
    assert_eq!(active.len(), 2, "{state}");
    assert!(
        harness.status()["deploying"]["releaseId"] == "bad-2",
        "still health-checking"
    );
    let every_pid: Vec<i32> = active.iter().chain(&starting).copied().collect();
    harness.extra_pids.lock().unwrap().extend(&every_pid);
    // Kill only once the starting app serves (its /ping answers 500): an app
    // still starting up would die on its first write to the dead daemon's pipe,
    // and there would be nothing left to recover.
    let web_port = starting
        .iter()
        .find_map(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            environ
                .split(|byte| *byte == 0)
                .find_map(|entry| entry.strip_prefix(b"ROLLBRIDGE_PORT="))
                .and_then(|port| std::str::from_utf8(port).ok()?.parse::<u16>().ok())
        })
        .expect("the starting web process's ROLLBRIDGE_PORT");
    poll(PATIENCE, || {
        http_get(web_port, "/ping")
            .ok()
            .filter(|(code, _)| *code == 500)
    })
    .expect("the starting app serving (and failing) its health check");
    assert!(every_pid.iter().all(|pid| pid_alive(*pid)));

    harness.signal(libc::SIGKILL);
    harness.wait_exit(PATIENCE);
    assert!(
        deploy.join().unwrap().is_err(),
        "the killed daemon never answered"
    );

    // The next daemon reports all four as orphans…
    harness.start();
    let orphans: Vec<(i32, Value)> = harness.status()["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|orphan| {
            (
                orphan["pid"].as_i64().unwrap() as i32,
                orphan["releaseId"].clone(),
            )
        })
        .collect();
    for pid in &starting {
        assert!(orphans.contains(&(*pid, json!("bad-2"))), "{orphans:?}");
    }
    for pid in &active {
        assert!(orphans.contains(&(*pid, json!("v1"))), "{orphans:?}");
    }
    assert_eq!(harness.shutdown(), 0);

    // …and `recover --force` stops every one of them.
    let (code, stdout, stderr) = cli(&harness, &["recover", "--force"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("Stopped 4 orphaned processes:"),
        "{stdout}"
    );
    for pid in every_pid {
        assert!(!pid_alive(pid), "pid {pid} still runs");
        assert!(!group_alive(pid), "group {pid} still runs");
    }
    assert!(read_state(&harness).is_none(), "the state file is cleared");
}

// --- item 4: a control socket no client can lock ------------------------------

/// Raises this test process's open-file limit so it can hold `needed` sockets.
fn allow_open_files(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    if limit.rlim_cur < needed {
        assert!(
            limit.rlim_max >= needed,
            "the hard open-file limit {} is below {needed}",
            limit.rlim_max
        );
        limit.rlim_cur = needed;
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    }
}

#[test]
fn two_thousand_idle_control_connections_cannot_lock_out_status_or_deploy() {
    allow_open_files(4096);
    let harness = Harness::started();
    let idle: Vec<UnixStream> = (0..2000)
        .map(|_| UnixStream::connect(&harness.socket).expect("connect an idle client"))
        .collect();
    // While all of them are held open, commands still get through.
    assert_eq!(harness.status()["status"], "success");
    harness.deploy("v1");
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    assert_eq!(harness.status()["activeReleaseId"], "v1");

    // Idle clients are closed: the oldest to make room, the rest once they have
    // sent no request for REQUEST_TIMEOUT (5 s).
    for stream in &idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
    }
    let closed = idle
        .iter()
        .filter(|stream| matches!((&**stream).read(&mut [0u8; 64]), Ok(0)))
        .count();
    assert_eq!(closed, idle.len(), "every idle client sees EOF");
}

#[test]
fn a_daemon_with_a_low_file_limit_still_answers_behind_two_thousand_idle_clients() {
    use std::os::unix::process::CommandExt;
    allow_open_files(4096);
    let mut harness = Harness::new(base_config);
    // 256 descriptors: the daemon caps itself at 128 connections and keeps the
    // rest for the deploy's pipes, sockets and files.
    let daemon = harness.spawn_with(&[], |command| {
        let limit = libc::rlimit {
            rlim_cur: 256,
            rlim_max: 4096,
        };
        // SAFETY: setrlimit is async-signal-safe; it runs in the forked child.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    });
    daemon.wait_ready(PATIENCE);
    harness.daemon = Some(daemon);
    let _idle: Vec<UnixStream> = (0..2000)
        .map(|_| UnixStream::connect(&harness.socket).expect("connect an idle client"))
        .collect();
    harness.deploy("v1");
    harness.deploy("v2");
    assert_eq!(harness.get("/release"), (200, "v2".to_string()));
    assert_eq!(harness.status()["activeReleaseId"], "v2");
}

#[test]
fn a_client_that_never_finishes_its_request_line_is_closed() {
    let harness = Harness::started();
    let mut slow = UnixStream::connect(&harness.socket).unwrap();
    std::io::Write::write_all(&mut slow, b"{\"command\": \"sta").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reply = Vec::new();
    slow.read_to_end(&mut reply).unwrap();
    assert!(reply.is_empty(), "closed without a reply: {reply:?}");
    // A client that keeps its connection and sends whole lines is answered.
    assert_eq!(harness.status()["status"], "success");
}

#[test]
fn a_client_that_never_reads_its_replies_is_closed() {
    let harness = Harness::started();
    let mut greedy = UnixStream::connect(&harness.socket).unwrap();
    greedy.set_nonblocking(true).unwrap();
    // Each request echoes ~512 KiB back ("Unknown command: xxx…"): more than the
    // socket buffers hold, so the daemon's write blocks on this client.
    let line = format!("{{\"command\": \"{}\"}}\n", "x".repeat(512 * 1024));
    let mut sent = 0usize;
    let closed = poll(PATIENCE, || {
        match std::io::Write::write(&mut greedy, &line.as_bytes()[sent % line.len()..]) {
            Ok(written) => sent += written,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return Some(()),
        }
        None
    });
    assert!(
        closed.is_some(),
        "the daemon hung up on a client that never reads"
    );
    assert_eq!(harness.status()["status"], "success");
}

// --- item 5: an environment that is not UTF-8 ---------------------------------

#[test]
fn a_non_utf8_variable_reaches_the_app_byte_for_byte_and_the_deploy_succeeds() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        let seen = dir.join("seen-bytes");
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "witness",
            "policy": "companion",
            "command": format!("printf '%s' \"$RB_RAW_BYTES\" > {}; exec sleep 300", seen.display()),
        }));
        config
    });
    let daemon = harness.spawn_with(&[], |command| {
        command.env(
            OsStr::new("RB_RAW_BYTES"),
            OsStr::from_bytes(b"caf\xe9-\xff"),
        );
    });
    daemon.wait_ready(PATIENCE);
    harness.daemon = Some(daemon);

    harness.deploy("v1");
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    let seen = harness.path("seen-bytes");
    wait_until(PATIENCE, "the witness wrote the variable", || {
        std::fs::metadata(&seen).is_ok_and(|m| m.len() > 0)
    });
    assert_eq!(std::fs::read(&seen).unwrap(), b"caf\xe9-\xff");
    let warning = events_of(&harness)
        .into_iter()
        .find(|event| event["message"] == "environment variable is not UTF-8")
        .expect("a warning names the variable");
    assert_eq!(warning["data"]["name"], "RB_RAW_BYTES");
    assert!(harness.status()["deploying"].is_null());

    // A template cannot use it as text, and the error says why.
    harness.rewrite_config(|config| {
        config["processes"][1]["command"] = json!("echo {{env.RB_RAW_BYTES}}; exec sleep 300");
    });
    let error = harness.deploy_err("v2");
    assert_eq!(
        error,
        "Missing template value for {{env.RB_RAW_BYTES}}\nthe daemon's RB_RAW_BYTES is not valid UTF-8, so templates cannot use it (the process still inherits it unchanged)"
    );
    assert_eq!(harness.status()["activeReleaseId"], "v1");
}

// --- item 6: honest failure reports -------------------------------------------

/// A harness whose proxied `web` runs `command`, restarts quickly and has a
/// health check that would wait a minute.
fn failing_web(command: &'static str) -> Harness {
    let mut harness = Harness::new(move |dir, port| {
        let mut config = base_config(dir, port);
        config["processes"][0]["command"] = json!(command);
        config["processes"][0]["restartDelayMs"] = json!(50);
        config["processes"][0]["health"]["timeoutMs"] = json!(60_000);
        config["proxy"]["healthTimeoutMs"] = json!(60_000);
        config
    });
    harness.start();
    harness
}

#[test]
fn a_command_that_is_not_found_fails_the_deploy_after_three_exits() {
    let harness = failing_web("exec rb-no-such-command --port 1");
    let error = harness.deploy_err("v1");
    let first = error.lines().next().unwrap();
    assert!(
        first.starts_with("Health check failed for http://127.0.0.1:"),
        "{error}"
    );
    assert!(
        first.ends_with(
            "/ping: the process exited 3 times before it became healthy (last: exit code 127 (command not found))"
        ),
        "{error}"
    );
    assert!(error.contains("\nlast lines of its stderr:\n  "), "{error}");
    assert!(error.contains("rb-no-such-command"), "{error}");
    assert!(!error.contains("connection refused"), "{error}");
    assert!(harness.status()["deploying"].is_null());
}

#[test]
fn a_process_that_exits_at_once_fails_the_deploy_with_its_code_and_stderr() {
    let harness = failing_web("echo 'missing DATABASE_URL' >&2; exit 3");
    let error = harness.deploy_err("v1");
    assert!(
        error
            .lines()
            .next()
            .unwrap()
            .ends_with("the process exited 3 times before it became healthy (last: exit code 3)"),
        "{error}"
    );
    assert!(error.ends_with("\n  missing DATABASE_URL"), "{error}");
    let status = harness.status();
    assert!(status["activeReleaseId"].is_null());
    let web = &status["releases"].as_array().unwrap();
    assert!(web.is_empty(), "a failed release is not retained: {status}");
}

#[test]
fn a_health_endpoint_that_accepts_but_never_answers_times_out() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"][0]["command"] = json!(
            "exec python3 -c 'import os, socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind((\"127.0.0.1\", int(os.environ[\"ROLLBRIDGE_PORT\"])))\ns.listen(64)\nheld = []\nwhile True:\n    held.append(s.accept())'"
        );
        config["processes"][0]["health"]["timeoutMs"] = json!(3000);
        config
    });
    harness.start();
    let error = harness.deploy_err("v1");
    let detail = error
        .split_once("/ping: ")
        .map(|(_, detail)| detail)
        .unwrap_or_default();
    assert!(
        error.starts_with("Health check failed for http://127.0.0.1:"),
        "{error}"
    );
    assert!(detail.starts_with("timed out after "), "{error}");
    let millis: u64 = detail["timed out after ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number of milliseconds in {error}"));
    assert!(
        (1000..=3000).contains(&millis),
        "the probe waited for most of the window: {error}"
    );
    assert!(
        detail.ends_with("ms (the port accepted the connection, but no HTTP response arrived)")
    );
}

#[test]
fn a_deploy_interrupted_by_shutdown_says_the_daemon_is_shutting_down() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"][0]["health"]["timeoutMs"] = json!(120_000);
        config["proxy"]["healthTimeoutMs"] = json!(120_000);
        config
    });
    harness.start();
    let release = harness.release("bad-1");
    let config_path = harness.config_path.clone();
    let deploy = std::thread::spawn(move || {
        Command::new(BIN)
            .args([
                "deploy",
                "--release-id",
                "bad-1",
                "--release-path",
                &release,
                "--config",
            ])
            .arg(&config_path)
            .output()
            .expect("run rollbridge deploy")
    });
    wait_until(PATIENCE, "the deploy to be health-checking", || {
        harness.status()["deploying"]["releaseId"] == "bad-1"
    });
    assert_eq!(harness.shutdown(), 0);

    let output = deploy.join().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("Error: Rollbridge is shutting down\nthe daemon is shutting down: the deploy of release \"bad-1\" was interrupted"),
        "{stderr}"
    );
}

#[test]
fn a_daemon_that_goes_away_mid_request_is_reported_as_shutting_down() {
    // A daemon stand-in that takes the request, removes its socket and hangs up
    // without answering, as a daemon killed or shutting down mid-request does.
    let harness = Harness::new(base_config);
    let listener = UnixListener::bind(&harness.socket).unwrap();
    let socket = harness.socket.clone();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 256];
        let _ = stream.read(&mut request);
        std::fs::remove_file(&socket).unwrap();
        drop(listener);
    });
    let (code, _, stderr) = cli(&harness, &["status"]);
    server.join().unwrap();
    assert_eq!(code, 1);
    assert!(
        stderr.contains("closed the connection without answering and no longer accepts connections: the daemon is shutting down or has stopped"),
        "{stderr}"
    );
    assert!(!stderr.contains("is it a Rollbridge daemon?"), "{stderr}");
}
