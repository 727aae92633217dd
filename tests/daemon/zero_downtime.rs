//! Zero downtime under load: keep-alive and fresh-connection HTTP clients plus
//! open WebSockets run through the proxy while releases are deployed one after
//! another and rolled back. Not a single request may fail, no WebSocket may be
//! dropped before its release has drained, and every old release's processes
//! must be gone afterwards.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Load {
    stop: AtomicBool,
    requests: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Load {
    fn fail(&self, what: String) {
        let mut failures = self.failures.lock().unwrap();
        if failures.len() < 20 {
            failures.push(what);
        }
    }

    fn check(&self, result: std::io::Result<(u16, String)>, client: &str) -> bool {
        match result {
            Ok((200, body)) if body.starts_with('v') => {
                self.requests.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok((status, body)) => {
                self.fail(format!("{client}: HTTP {status} {body:?}"));
                false
            }
            Err(error) => {
                self.fail(format!("{client}: {error}"));
                false
            }
        }
    }
}

fn keep_alive_client(port: u16, load: Arc<Load>, name: String) {
    let mut client = KeepAlive::connect(port).expect("connect");
    while !load.stop.load(Ordering::Relaxed) {
        let result = client.get("/release").map(|(status, body, close)| {
            if close {
                // The proxy never closes a keep-alive client by itself while it runs.
                load.fail(format!("{name}: proxy asked to close the connection"));
            }
            (status, body)
        });
        if !load.check(result, &name) {
            client = KeepAlive::connect(port).expect("reconnect");
        }
    }
}

fn fresh_connection_client(port: u16, load: Arc<Load>, name: String) {
    while !load.stop.load(Ordering::Relaxed) {
        load.check(http_get(port, "/release"), &name);
    }
}

fn slow_request_client(port: u16, load: Arc<Load>, name: String) {
    // Requests that are in flight while the switch happens.
    while !load.stop.load(Ordering::Relaxed) {
        load.check(http_get(port, "/slow?ms=150"), &name);
    }
}

/// Deploys `deploys` releases in a row under load, then rolls back once.
fn run_under_load(deploys: usize) -> (u64, Duration) {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["proxy"]["drainTimeoutMs"] = json!(20000);
        config["releaseRetention"] = json!({"keep": 3});
        config
    });
    harness.start();
    harness.deploy("v0");
    let load = Arc::new(Load::default());
    let port = harness.proxy_port;
    let mut threads = Vec::new();
    for i in 0..2 {
        let load = load.clone();
        threads.push(std::thread::spawn(move || {
            keep_alive_client(port, load, format!("keep-alive-{i}"))
        }));
    }
    for i in 0..2 {
        let load = load.clone();
        threads.push(std::thread::spawn(move || {
            fresh_connection_client(port, load, format!("fresh-{i}"))
        }));
    }
    {
        let load = load.clone();
        threads.push(std::thread::spawn(move || {
            slow_request_client(port, load, "slow".into())
        }));
    }
    wait_until(LONG_PATIENCE, "load to flow", || {
        load.requests.load(Ordering::Relaxed) > 20
    });

    let started = Instant::now();
    let mut sockets: Vec<(String, Ws)> = Vec::new();
    let mut previous = "v0".to_string();
    for n in 1..=deploys {
        // A WebSocket on the release about to be replaced.
        let mut socket = ws_connect(port);
        assert_eq!(ws_echo(&mut socket, "release"), previous);
        sockets.push((previous.clone(), socket));
        let id = format!("v{n}");
        let reply = harness.deploy(&id);
        assert_eq!(reply["previousReleaseId"], previous.as_str());
        assert_eq!(http_get(port, "/release").unwrap(), (200, id.clone()));
        // Older sockets still reach their own (draining) release.
        for (release, socket) in sockets.iter_mut() {
            assert_eq!(
                ws_echo(socket, "release"),
                *release,
                "websocket of {release} kept"
            );
        }
        // Keep at most two sockets open so older releases can finish draining.
        if sockets.len() > 2 {
            let (_, mut oldest) = sockets.remove(0);
            oldest.close(None).unwrap();
        }
        previous = id;
    }
    let rollback = harness.ok(json!({"command": "rollback"}));
    let back_to = format!("v{}", deploys - 1);
    assert_eq!(rollback["activeReleaseId"], back_to.as_str());
    assert_eq!(http_get(port, "/release").unwrap(), (200, back_to.clone()));
    for (release, socket) in sockets.iter_mut() {
        // The rollback target's old instance was stopped on purpose (it is
        // replaced by a fresh one); every other socket must still work.
        if *release != back_to {
            assert_eq!(ws_echo(socket, "release"), *release);
        }
    }
    let elapsed = started.elapsed();
    wait_until(LONG_PATIENCE, "some traffic after the rollback", || {
        load.requests.load(Ordering::Relaxed) > 0
    });
    load.stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    for (_, mut socket) in sockets {
        let _ = socket.close(None);
    }
    let failures = load.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed requests: {failures:#?}");

    // Every retired release drains and its processes exit.
    let active = back_to;
    wait_until(LONG_PATIENCE, "all old releases to stop", || {
        harness.status()["releases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["releaseId"] == active.as_str() || r["state"] == "stopped")
    });
    let events = harness.output().events();
    let active_pids: Vec<i32> = harness.status()["releases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "active")
        .flat_map(|r| r["processes"].as_array().unwrap().clone())
        .filter_map(|p: Value| p["pid"].as_i64().map(|p| p as i32))
        .collect();
    let old_pids: Vec<i32> = events
        .iter()
        .filter(|e| e["message"] == "process started")
        .filter_map(|e| e["data"]["pid"].as_i64().map(|p| p as i32))
        .filter(|pid| !active_pids.contains(pid))
        .collect();
    wait_until(LONG_PATIENCE, "old release processes to exit", || {
        old_pids.iter().all(|pid| !group_alive(*pid))
    });
    let total = load.requests.load(Ordering::Relaxed);
    assert_eq!(harness.shutdown(), 0);
    (total, elapsed)
}

#[test]
fn five_deploys_and_a_rollback_under_load_drop_nothing() {
    let (requests, elapsed) = run_under_load(5);
    eprintln!("5 deploys + rollback: {requests} requests, {elapsed:?}, 0 failures");
    assert!(
        requests > 100,
        "the load actually ran ({requests} requests)"
    );
}

#[test]
#[ignore = "long: 100 deploys under load (run with --ignored)"]
fn a_hundred_deploys_under_load_drop_nothing() {
    let (requests, elapsed) = run_under_load(100);
    eprintln!("100 deploys + rollback: {requests} requests, {elapsed:?}, 0 failures");
}
