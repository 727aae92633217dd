//! Follow streams against a real daemon: `events --follow` and `logs --follow`
//! across a deploy, Ctrl-C ending them with exit 0, `--retry` across a daemon
//! restart, and a follower that does not read being dropped with an error line
//! while the daemon keeps answering everybody else.

use crate::support::cli::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `rollbridge … --follow` child whose stdout lines are collected by a thread;
/// killed on drop if still running.
struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follower {
    /// Runs in the sandbox, where the config is found by its default name: the
    /// command line does not mention the sandbox, so stopping a daemon (which
    /// kills whatever mentions it) leaves the follower alone.
    fn start(sandbox: &Sandbox, command: &str, rest: &[&str]) -> Follower {
        let mut child = Command::new(BIN)
            .arg(command)
            .args(rest)
            .current_dir(sandbox.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn follower");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        std::thread::spawn({
            let lines = lines.clone();
            move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            }
        });
        Follower { child, lines }
    }

    fn json_lines(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    fn wait_for_line(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        poll(Duration::from_secs(30), || {
            self.json_lines().into_iter().find(|line| check(line))
        })
        .unwrap_or_else(|| panic!("no {what} line in {:?}", self.lines.lock().unwrap()))
    }

    /// Ctrl-C: the follower must end with exit 0.
    fn interrupt(mut self) -> i32 {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let status = poll(Duration::from_secs(10), || self.child.try_wait().unwrap())
            .expect("the follower ignored SIGINT");
        status.code().unwrap_or(-1)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn deploy(sandbox: &Sandbox, release: &str) {
    std::fs::create_dir_all(sandbox.path().join(release)).unwrap();
    let run = sandbox.run(
        "deploy",
        &["--release-path", release, "--release-id", release],
    );
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn events_follow_streams_json_lines_across_a_deploy_and_ctrl_c_exits_zero() {
    let sandbox = daemon_sandbox("follow-events", free_port());
    let _daemon = DaemonGuard::start(&sandbox);
    deploy(&sandbox, "v1");
    // --limit 2 first prints the last two stored events.
    let follower = Follower::start(&sandbox, "events", &["--follow", "--limit", "2"]);
    let switched_v1 = follower.wait_for_line("traffic switched to v1", |event| {
        event["message"] == "traffic switched" && event["data"]["releaseId"] == "v1"
    });
    deploy(&sandbox, "v2");
    follower.wait_for_line("release v1 drained", |event| {
        event["message"] == "release drained" && event["data"]["releaseId"] == "v1"
    });
    let events = follower.json_lines();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    assert_eq!(events[1], switched_v1, "the history ends with v1's switch");
    for message in ["deploy starting", "process started", "traffic switched"] {
        assert!(
            events[2..]
                .iter()
                .any(|e| e["message"] == message && e["data"]["releaseId"] == "v2"),
            "{message} of v2 in {events:?}"
        );
    }
    // The lines are the event lines plus `seq`.
    let ring: Value = json_of(&sandbox.run("events", &["--json"]));
    let stored = ring
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message"] == "traffic switched" && e["data"]["releaseId"] == "v2")
        .unwrap()
        .clone();
    let mut streamed = events
        .iter()
        .find(|e| e["message"] == "traffic switched" && e["data"]["releaseId"] == "v2")
        .unwrap()
        .clone();
    streamed.as_object_mut().unwrap().remove("seq");
    assert_eq!(streamed, stored);
    assert_eq!(follower.interrupt(), 0);
}

#[test]
fn logs_follow_prints_the_next_release_output_for_one_process() {
    let sandbox = daemon_sandbox("follow-logs", free_port());
    let _daemon = DaemonGuard::start(&sandbox);
    deploy(&sandbox, "v1");
    let follower = Follower::start(&sandbox, "logs", &["--follow", "--process", "web"]);
    follower.wait_for_line("v1's recent output", |line| {
        line["releaseId"] == "v1" && line["line"].as_str().unwrap_or("").ends_with(" for v1")
    });
    deploy(&sandbox, "v2");
    let line = follower.wait_for_line("v2's output", |line| {
        line["releaseId"] == "v2" && line["stream"] == "stdout"
    });
    assert_eq!(line["id"], "web");
    assert!(
        line["line"].as_str().unwrap().starts_with("listening on "),
        "{line}"
    );
    assert!(
        follower.json_lines().iter().all(|line| line["id"] == "web"),
        "only web's lines"
    );
    assert_eq!(follower.interrupt(), 0);
}

#[test]
fn events_follow_with_retry_goes_on_after_a_daemon_restart() {
    let sandbox = daemon_sandbox("follow-retry", free_port());
    let daemon = DaemonGuard::start(&sandbox);
    let follower = Follower::start(&sandbox, "events", &["--follow", "--retry"]);
    // Something to see from the first daemon.
    deploy(&sandbox, "v1");
    follower.wait_for_line("the first daemon's switch", |e| {
        e["message"] == "traffic switched"
    });
    drop(daemon);
    let _second = DaemonGuard::start(&sandbox);
    // The second daemon numbers from 1 again: its whole history is new.
    follower.wait_for_line("the second daemon's start", |e| {
        e["message"] == "control socket listening" && e["seq"].as_u64() < Some(5)
    });
    assert_eq!(follower.interrupt(), 0);
}

#[test]
fn a_follower_that_does_not_read_is_dropped_with_an_error_line_and_others_are_served() {
    let sandbox = daemon_sandbox("follow-slow", free_port());
    let _daemon = DaemonGuard::start(&sandbox);
    let mut slow = UnixStream::connect(sandbox.socket()).unwrap();
    slow.write_all(b"{\"command\":\"events\",\"follow\":true}\n")
        .unwrap();
    let mut first = String::new();
    let mut reader = BufReader::new(slow.try_clone().unwrap());
    reader.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("{\"status\":\"success\",\"follow\":\"events\""),
        "{first}"
    );

    // Flood: every unknown command is answered and recorded as `command failed`.
    const FLOOD: usize = 4000;
    let mut flooder = UnixStream::connect(sandbox.socket()).unwrap();
    let replies = std::thread::spawn({
        let mut reader = BufReader::new(flooder.try_clone().unwrap());
        move || {
            let mut line = String::new();
            for _ in 0..FLOOD {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
            }
        }
    });
    let started = Instant::now();
    flooder
        .write_all("{\"command\":\"flood\"}\n".repeat(FLOOD).as_bytes())
        .unwrap();
    replies.join().unwrap();
    // Meanwhile the daemon answers others at once.
    let status = sandbox.run("status", &[]);
    assert_eq!(status.code, 0, "{status:?}");
    eprintln!("flood of {FLOOD} events took {:?}", started.elapsed());

    // The slow follower now reads: its events, then the error line, then EOF.
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    let lines: Vec<&str> = rest.lines().collect();
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["status"], "error", "{last}");
    assert!(
        last["error"].as_str().unwrap().contains("read too slowly"),
        "{last}"
    );
    assert!(
        lines.len() < FLOOD,
        "dropped before the end: {} lines",
        lines.len()
    );
    // A new follower is served as usual.
    let follower = Follower::start(&sandbox, "events", &["--follow", "--limit", "1"]);
    follower.wait_for_line("the last stored event", |e| e["seq"].as_u64().is_some());
    assert_eq!(follower.interrupt(), 0);
}

#[test]
fn logs_release_keeps_a_failed_deploys_output_until_the_next_deploy() {
    let sandbox = daemon_sandbox("failed-logs", free_port());
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(sandbox.config_path()).unwrap()).unwrap();
    config["proxy"]["healthTimeoutMs"] = Value::from(1500);
    sandbox.write_config(&config);
    let _daemon = DaemonGuard::start(&sandbox);
    std::fs::create_dir_all(sandbox.path().join("bad")).unwrap();
    // The fixture app answers /ping with 500 in a release whose id contains "bad".
    let failed = sandbox.run("deploy", &["--release-path", "bad", "--release-id", "bad"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    let logs = sandbox.run("logs", &["--release", "bad", "--process", "web"]);
    assert_eq!(logs.code, 0, "{logs:?}");
    assert!(
        logs.stdout
            .starts_with("== web [release bad (failed deploy)] ==\n"),
        "{logs:?}"
    );
    assert!(logs.stdout.contains("[stdout] listening on "), "{logs:?}");
    let status = json_of(&sandbox.run("status", &[]));
    assert_eq!(status["failedRelease"]["releaseId"], "bad");

    deploy(&sandbox, "v1");
    let status = json_of(&sandbox.run("status", &[]));
    assert!(status.get("failedRelease").is_none(), "{status}");
    let gone = sandbox.run("logs", &["--release", "bad"]);
    assert_eq!(gone.code, 1, "{gone:?}");
    assert!(gone.stderr.contains("No release \"bad\""), "{gone:?}");
}

#[test]
fn a_quiet_stream_outlives_the_idle_timeout_of_control_connections() {
    let sandbox = daemon_sandbox("follow-idle", free_port());
    let _daemon = DaemonGuard::start(&sandbox);
    let stream = UnixStream::connect(sandbox.socket()).unwrap();
    (&stream)
        .write_all(b"{\"command\":\"events\",\"follow\":true}\n")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("\"follow\":\"events\""), "{first}");
    // An idle one-shot connection is closed after 5 s; nothing happens for 6.5 s
    // here, and the stream must still be open (a read times out instead of EOF).
    stream
        .set_read_timeout(Some(Duration::from_millis(6500)))
        .unwrap();
    let mut line = String::new();
    let quiet = reader.read_line(&mut line);
    assert!(
        matches!(&quiet, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the stream ended or sent {line:?}: {quiet:?}"
    );
    // And it still delivers.
    deploy(&sandbox, "v1");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["message"], "deploy starting", "{line}");
}
