//! Live upgrade (`rollbridge upgrade`, docs/upgrade.md) on the real daemon: the
//! daemon re-executes itself in place under load and keeps its pid, its app
//! processes, its listeners, its state and its history; binaries that cannot
//! take over are refused with the daemon untouched; an upgrade waits for a
//! running deploy; repeated upgrades leak no descriptor, thread or memory.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The load config: the proxied web app with memory supervision, a companion
/// that grows on request, a persistent service and a singleton.
fn load_config(dir: &Path, port: u16) -> Value {
    let mut config = base_config(dir, port);
    config["metrics"] = json!({"host": "127.0.0.1", "port": 0});
    config["processes"][0]["memory"] = json!({"limitBytes": 1u64 << 30, "checkIntervalMs": 100});
    let processes = config["processes"].as_array_mut().unwrap();
    processes.push(json!({
        "id": "grower", "policy": "companion", "command": python("grow_on_signal.py"),
        "memory": {"limitBytes": 64u64 << 20, "checkIntervalMs": 100}
    }));
    processes.push(json!({
        "id": "svc", "policy": "service", "command": python("app.py"),
        "port": {"from": 0, "to": 0}
    }));
    processes.push(json!({
        "id": "jobs", "policy": "singleton", "command": python("singleton.py"),
        "env": {"ROLLBRIDGE_SINGLETON_LOG": dir.join("jobs.log")}
    }));
    config
}

/// `rollbridge upgrade -c <config> [--binary path]`: exit code, stdout, stderr.
pub(super) fn upgrade(harness: &Harness, binary: Option<&Path>) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command.arg("upgrade").arg("-c").arg(&harness.config_path);
    if let Some(binary) = binary {
        command.arg("--binary").arg(binary);
    }
    let output = command.output().expect("run rollbridge upgrade");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An upgrade that must succeed; returns its reply.
pub(super) fn upgrade_ok(harness: &Harness, binary: Option<&Path>) -> Value {
    let (code, stdout, stderr) = upgrade(harness, binary);
    assert_eq!(code, 0, "upgrade failed: {stdout}{stderr}");
    let reply: Value = serde_json::from_str(&stdout).expect("upgrade prints JSON");
    assert_eq!(reply["status"], "success", "{reply}");
    reply
}

/// `pid` of every managed process, by release/entry and id.
pub(super) fn process_pids(status: &Value) -> Vec<(String, i64)> {
    let mut pids = Vec::new();
    for release in status["releases"].as_array().unwrap() {
        for process in release["processes"].as_array().unwrap() {
            pids.push((
                format!("{}/{}", release["releaseId"], process["id"]),
                process["pid"].as_i64().unwrap_or(0),
            ));
        }
    }
    for section in ["services", "singletons"] {
        for entry in status[section].as_array().unwrap() {
            pids.push((
                format!("{section}/{}", entry["id"]),
                entry["process"]["pid"].as_i64().unwrap_or(0),
            ));
        }
    }
    pids
}

/// The status without what changes by itself or with the binary: the runtime
/// identity, logging counters, uptimes, memory samples and children lists.
fn stable_status(status: &Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for key in [
                    "daemonRuntime",
                    "logging",
                    "uptimeMs",
                    "rssBytes",
                    "children",
                ] {
                    map.remove(key);
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut status = status.clone();
    strip(&mut status);
    status
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn thread_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What the load clients saw.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) ok: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) refused: AtomicU64,
    /// Keep-alive connections the proxy closed between requests (the client
    /// reconnects, as HTTP clients do for an idempotent request).
    reconnects: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u64>>,
}

impl Tally {
    fn record(&self, result: std::io::Result<(u16, String)>, took: Duration) {
        match result {
            Ok((200, body)) if body == "v1" => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                self.latencies_us
                    .lock()
                    .unwrap()
                    .push(took.as_micros() as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                eprintln!("failed request: {other:?}");
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits until more than `more` requests past the ones answered so far were
    /// answered.
    pub(super) fn wait_for_more(&self, what: &str, more: u64) {
        let served = self.ok.load(Ordering::Relaxed);
        wait_until(LONG_PATIENCE, what, || {
            self.ok.load(Ordering::Relaxed) > served + more
        });
    }

    fn percentile(&self, p: f64) -> u64 {
        let mut all = self.latencies_us.lock().unwrap().clone();
        all.sort_unstable();
        if all.is_empty() {
            return 0;
        }
        all[((all.len() as f64 - 1.0) * p).round() as usize]
    }
}

/// Fresh-connection and keep-alive clients until `stop`.
pub(super) fn start_load(
    port: u16,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for _ in 0..2 {
        let (stop, tally) = (stop.clone(), tally.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = http_get(port, "/release");
                tally.record(result, started.elapsed());
            }
        }));
    }
    for _ in 0..2 {
        let (stop, tally) = (stop.clone(), tally.clone());
        threads.push(std::thread::spawn(move || {
            let mut client = KeepAlive::connect(port).ok();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let reused = client.is_some();
                let mut result = match client.as_mut() {
                    Some(c) => c.get("/release").map(|(s, b, _)| (s, b)),
                    None => Err(std::io::Error::other("not connected")),
                };
                if result.is_err() && reused {
                    // Closed while idle: a new connection, as clients do.
                    tally.reconnects.fetch_add(1, Ordering::Relaxed);
                    client = KeepAlive::connect(port).ok();
                    result = match client.as_mut() {
                        Some(c) => c.get("/release").map(|(s, b, _)| (s, b)),
                        None => Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionRefused,
                            "reconnect failed",
                        )),
                    };
                }
                if result.is_err() {
                    client = None;
                }
                tally.record(result, started.elapsed());
                if client.is_none() {
                    client = KeepAlive::connect(port).ok();
                }
            }
        }));
    }
    threads
}

#[test]
fn upgrades_under_load_keep_the_app_the_pid_the_state_and_every_request() {
    let mut harness = Harness::new(load_config);
    harness.start();
    harness.deploy("v1");
    wait_until(LONG_PATIENCE, "the singleton and service to run", || {
        let status = harness.status();
        process_pids(&status).iter().all(|(_, pid)| *pid > 0)
    });
    let daemon_pid = harness.daemon.as_ref().unwrap().pid();
    // One crash before the upgrades, so the counter must continue from 1.
    let grower_pid = pid_of(&harness.process_in("v1", "grower").unwrap());
    unsafe { libc::kill(grower_pid, libc::SIGKILL) };
    wait_until(LONG_PATIENCE, "the grower to be restarted", || {
        let grower = harness.process_in("v1", "grower").unwrap();
        grower["restarts"] == 1
            && grower["pid"]
                .as_i64()
                .is_some_and(|p| p as i32 != grower_pid)
            && grower["logs"].as_array().unwrap().len() == 2
    });
    let mut sockets: Vec<Ws> = (0..100).map(|_| ws_connect(harness.proxy_port)).collect();
    for (index, socket) in sockets.iter_mut().enumerate() {
        assert_eq!(
            ws_echo(socket, &format!("hello {index}")),
            format!("hello {index}")
        );
    }
    let before = harness.status();
    let pids_before = process_pids(&before);
    let events_before = events_of(&harness);

    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("rollbridge-copy");
    std::fs::copy(BIN, &copy).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let load = start_load(harness.proxy_port, &stop, &tally);
    wait_until(LONG_PATIENCE, "the load to flow", || {
        tally.ok.load(Ordering::Relaxed) > 50
    });
    let mut upgrade_times = Vec::new();
    for round in 0..6 {
        let binary = (round == 5).then_some(copy.as_path());
        let started = Instant::now();
        let reply = upgrade_ok(&harness, binary);
        upgrade_times.push(started.elapsed());
        assert_eq!(reply["previousVersion"], env!("CARGO_PKG_VERSION"));
        assert_eq!(reply["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(reply["digest"].as_str().unwrap().len(), 64);
        // Every WebSocket still echoes, on its original connection.
        for (index, socket) in sockets.iter_mut().enumerate() {
            let text = format!("round {round} socket {index}");
            assert_eq!(ws_echo(socket, &text), text);
        }
        tally.wait_for_more("traffic after the upgrade", 20);
    }
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    eprintln!(
        "load across 6 upgrades: {} ok, {} failed, {} refused, {} keep-alive reconnects; latency p50 {} us, p99 {} us, max {} us; upgrade command took {:?}",
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
        tally.reconnects.load(Ordering::Relaxed),
        tally.percentile(0.5),
        tally.percentile(0.99),
        tally.percentile(1.0),
        upgrade_times
    );
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "failed requests");
    // Keep-alive connections go on in the new image, also those with a
    // request in flight when the proxy paused.
    assert_eq!(
        tally.reconnects.load(Ordering::Relaxed),
        0,
        "keep-alive connections closed"
    );
    assert_eq!(
        tally.refused.load(Ordering::Relaxed),
        0,
        "refused connections"
    );

    assert_eq!(harness.daemon.as_ref().unwrap().pid(), daemon_pid);
    assert!(pid_alive(daemon_pid));
    let after = harness.status();
    assert_eq!(process_pids(&after), pids_before, "app pids unchanged");
    assert_eq!(stable_status(&after), stable_status(&before));
    let runtime = &after["daemonRuntime"];
    assert_eq!(runtime["path"], copy_dir.path().to_string_lossy().as_ref());

    // The history is kept, plus one `daemon upgraded` per upgrade.
    let events_after = events_of(&harness);
    let messages = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect()
    };
    let before_messages = messages(&events_before);
    let after_messages = messages(&events_after);
    assert_eq!(
        &after_messages[..before_messages.len()],
        &before_messages[..]
    );
    let upgraded: Vec<&Value> = events_after
        .iter()
        .filter(|e| e["message"] == "daemon upgraded")
        .collect();
    assert_eq!(upgraded.len(), 6);
    assert_eq!(upgraded[5]["data"]["digest"], runtime["digest"]);

    // Supervision is live on the adopted processes: the memory limit is still
    // enforced, and a crash restarts with the counter continued.
    let grower_pid = pid_of(&harness.process_in("v1", "grower").unwrap());
    unsafe { libc::kill(grower_pid, libc::SIGUSR1) };
    wait_until(LONG_PATIENCE, "a memory restart after the upgrades", || {
        let grower = harness.process_in("v1", "grower").unwrap();
        grower["memoryRestarts"] == 1 && grower["logs"].as_array().unwrap().len() == 3
    });
    assert_eq!(
        harness.process_in("v1", "grower").unwrap()["lastStartReason"],
        "memory"
    );
    let grower_pid = pid_of(&harness.process_in("v1", "grower").unwrap());
    unsafe { libc::kill(grower_pid, libc::SIGKILL) };
    wait_until(
        LONG_PATIENCE,
        "the grower to be restarted after the upgrades",
        || harness.process_in("v1", "grower").unwrap()["restarts"] == 2,
    );
    assert_eq!(
        after["releases"][0]["connections"]["websocket"], 100,
        "the handed-over WebSockets are counted"
    );
    drop(sockets);
    // New WebSockets and plain requests are served by the new image.
    let mut socket = ws_connect(harness.proxy_port);
    assert_eq!(ws_echo(&mut socket, "after"), "after");
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn binaries_that_cannot_take_over_are_refused_and_the_daemon_is_untouched() {
    let mut harness = Harness::started();
    harness.deploy("v1");
    let daemon_pid = harness.daemon.as_ref().unwrap().pid();
    let web = pid_of(&harness.process_in("v1", "web").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let not_executable = dir.path().join("rollbridge");
    std::fs::copy(BIN, &not_executable).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let other_format = dir.path().join("other-format");
    std::fs::write(
        &other_format,
        "#!/bin/sh\necho 'rollbridge-handover-format 999'\n",
    )
    .unwrap();
    std::fs::set_permissions(&other_format, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cases: [(&Path, &str); 4] = [
        (&not_executable, "is not executable"),
        (
            Path::new("/bin/true"),
            "is not a rollbridge that can take over",
        ),
        (&other_format, "reads handover format 999"),
        (&dir.path().join("missing"), "does not exist"),
    ];
    for (binary, why) in cases {
        let (code, stdout, stderr) = upgrade(&harness, Some(binary));
        assert_eq!(code, 1, "{binary:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("Upgrade refused: ") && stderr.contains(why),
            "{binary:?}: {stderr}"
        );
        assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    }
    assert_eq!(harness.daemon.as_ref().unwrap().pid(), daemon_pid);
    assert_eq!(pid_of(&harness.process_in("v1", "web").unwrap()), web);
    assert!(
        !events_of(&harness)
            .iter()
            .any(|e| e["message"] == "daemon upgraded")
    );
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn maintenance_survives_an_upgrade_and_a_pause_refuses_one() {
    let mut harness = Harness::started();
    harness.deploy("v1");
    let daemon_pid = harness.daemon.as_ref().unwrap().pid();
    harness.ok(json!({"command": "maintenance", "enabled": true, "message": "Back at 3"}));
    upgrade_ok(&harness, None);
    assert_eq!(harness.daemon.as_ref().unwrap().pid(), daemon_pid);
    assert_eq!(harness.get("/release"), (503, "Back at 3\n".to_string()));
    assert_eq!(
        harness.status()["traffic"],
        json!({"paused": false, "maintenance": true})
    );
    harness.ok(json!({"command": "maintenance", "enabled": false}));
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));

    // Held requests cannot cross an exec: a pause refuses the upgrade at once.
    harness.ok(json!({"command": "pause"}));
    let (code, stdout, stderr) = upgrade(&harness, None);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("Upgrade refused: traffic is paused")
            && stderr.contains("rollbridge resume"),
        "{stderr}"
    );
    harness.ok(json!({"command": "resume"}));
    upgrade_ok(&harness, None);
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn an_upgrade_during_a_deploy_waits_for_it() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"][0]["env"] = json!({"APP_HEALTH_GATE": dir.join("gate")});
        config
    });
    std::fs::write(harness.path("gate"), "").unwrap();
    harness.start();
    harness.deploy("v1");
    std::fs::remove_file(harness.path("gate")).unwrap();
    let release = harness.release("v2");
    let socket = harness.socket.clone();
    let deploy = std::thread::spawn(move || {
        control(
            &socket,
            json!({"command": "deploy", "releasePath": release, "releaseId": "v2"}),
        )
    });
    wait_until(LONG_PATIENCE, "the deploy to be in progress", || {
        harness.status()["deploying"]["releaseId"] == "v2"
    });
    let socket = harness.socket.clone();
    let upgrading = std::thread::spawn(move || control(&socket, json!({"command": "upgrade"})));
    // The deploy cannot finish while its health gate is closed, so neither can
    // the upgrade queued behind it; the event order below proves it waited.
    assert_eq!(harness.status()["deploying"]["releaseId"], "v2");
    assert!(!upgrading.is_finished());
    std::fs::write(harness.path("gate"), "").unwrap();
    let deployed = deploy.join().unwrap();
    assert_eq!(deployed["status"], "success", "{deployed}");
    let upgraded = upgrading.join().unwrap();
    assert_eq!(upgraded["status"], "success", "{upgraded}");
    let messages: Vec<String> = events_of(&harness)
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    let switched = messages
        .iter()
        .rposition(|m| m == "traffic switched")
        .unwrap();
    let upgraded_at = messages
        .iter()
        .position(|m| m == "daemon upgraded")
        .unwrap();
    assert!(switched < upgraded_at, "{messages:?}");
    assert_eq!(harness.get("/release"), (200, "v2".to_string()));
    assert_eq!(harness.shutdown(), 0);
}

/// Upgrades in a row on an idle daemon: descriptors, threads and memory after
/// the last one, against after the first.
fn repeated_upgrades_leak_nothing(rounds: usize) {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["metrics"] = json!({"host": "127.0.0.1", "port": 0});
        config
    });
    harness.start();
    harness.deploy("v1");
    let pid = harness.daemon.as_ref().unwrap().pid();
    upgrade_ok(&harness, None);
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    let (fds, threads, rss) = (fd_count(pid), thread_count(pid), rss_kib(pid));
    for _ in 1..rounds {
        upgrade_ok(&harness, None);
        let stream = TcpStream::connect(("127.0.0.1", harness.proxy_port));
        assert!(stream.is_ok(), "proxy serves between upgrades");
    }
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    // Connections just closed and idle blocking-pool threads (gone after 10 s)
    // come and go: wait for the counts to come back down.
    let settled = poll(LONG_PATIENCE, || {
        (fd_count(pid) <= fds + 2 && thread_count(pid) <= threads + 1).then_some(())
    });
    let (fds_after, threads_after, rss_after) = (fd_count(pid), thread_count(pid), rss_kib(pid));
    eprintln!(
        "{rounds} upgrades: fds {fds} -> {fds_after}, threads {threads} -> {threads_after}, RSS {rss} KiB -> {rss_after} KiB"
    );
    assert!(
        settled.is_some(),
        "descriptors or threads leaked: fds {fds} -> {fds_after}, threads {threads} -> {threads_after}"
    );
    // Each image starts afresh; growth would only come from the handover itself.
    assert!(
        rss_after < rss + 8 * 1024,
        "memory grew: {rss} -> {rss_after} KiB"
    );
    assert_eq!(harness.daemon.as_ref().unwrap().pid(), pid);
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn ten_upgrades_leak_no_descriptor_thread_or_memory() {
    repeated_upgrades_leak_nothing(10);
}

#[test]
#[ignore = "soak: 50 upgrades (run with --ignored)"]
fn fifty_upgrades_leak_no_descriptor_thread_or_memory() {
    repeated_upgrades_leak_nothing(50);
}

#[test]
fn under_systemd_an_upgrade_reloads_stores_the_listeners_and_keeps_the_watchdog() {
    let mut harness = Harness::new(base_config);
    let notify = harness.spawn_under_systemd();
    let ready = notify.wait_for("READY=1", 0);
    notify.wait_for("FDSTORE=1\nFDNAME=proxy", ready);
    notify.wait_for("FDSTORE=1\nFDNAME=control", ready);
    harness.deploy("v1");
    let deployed = notify.wait_for("STATUS=active release v1", ready);
    let reply = upgrade_ok(&harness, None);
    assert_eq!(reply["status"], "success");
    let reloading = notify.wait_for("RELOADING=1\nMONOTONIC_USEC=", deployed);
    let ready_again = notify.wait_for("READY=1\nSTATUS=active release v1", reloading);
    notify.wait_for("FDSTORE=1\nFDNAME=proxy", ready_again);
    // The new image pings the watchdog (WatchdogSec= keeps working).
    notify.wait_for("WATCHDOG=1", ready_again);
    // The managed processes still inherit none of systemd's variables.
    let web = pid_of(&harness.process_in("v1", "web").unwrap());
    let environment = std::fs::read(format!("/proc/{web}/environ")).unwrap();
    let environment = String::from_utf8_lossy(&environment);
    assert!(!environment.contains("NOTIFY_SOCKET="));
    assert!(!environment.contains("ROLLBRIDGE_HANDOVER"));
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn ensure_daemon_sees_the_runtime_the_daemon_was_upgraded_to() {
    let mut harness = Harness::started();
    harness.deploy("v1");
    // Another build: the same code with bytes appended (another SHA-256).
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("rollbridge");
    let mut bytes = std::fs::read(BIN).unwrap();
    bytes.extend_from_slice(b"another build");
    std::fs::write(&other, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ensure = |binary: &Path| {
        Command::new(binary)
            .arg("ensure-daemon")
            .arg("-c")
            .arg(&harness.config_path)
            .arg("--daemon-log-path")
            .arg(harness.path("ensure.log"))
            .arg("--daemon-pid-path")
            .arg(harness.path("ensure.pid"))
            .output()
            .unwrap()
    };
    let refused = ensure(&other);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("mismatched runtime"));

    let reply = upgrade_ok(&harness, Some(&other));
    let status = harness.status();
    assert_eq!(status["daemonRuntime"]["digest"], reply["digest"]);
    assert_eq!(
        status["daemonRuntime"]["path"],
        dir.path().to_string_lossy().as_ref()
    );
    let accepted = ensure(&other);
    assert_eq!(
        accepted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert_eq!(ensure(Path::new(BIN)).status.code(), Some(1));
    // Rolling back is upgrading again, to the old binary.
    upgrade_ok(&harness, Some(Path::new(BIN)));
    assert_eq!(ensure(Path::new(BIN)).status.code(), Some(0));
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn an_idle_keep_alive_connection_goes_on_in_the_new_image() {
    let mut harness = Harness::started();
    harness.deploy("v1");
    let mut client = KeepAlive::connect(harness.proxy_port).unwrap();
    assert_eq!(client.get("/release").unwrap().0, 200);
    for _ in 0..3 {
        upgrade_ok(&harness, None);
        let (status, body, close) = client.get("/release").expect("same connection");
        assert_eq!((status, body.as_str(), close), (200, "v1", false));
    }
    assert_eq!(harness.shutdown(), 0);
}

/// Runs `rollbridge upgrade` on a thread; the handle yields its reply and when
/// it returned.
fn upgrade_in_background(harness: &Harness) -> std::thread::JoinHandle<(Value, Instant)> {
    let config = harness.config_path.clone();
    std::thread::spawn(move || {
        let output = Command::new(BIN)
            .arg("upgrade")
            .arg("-c")
            .arg(&config)
            .output()
            .expect("run rollbridge upgrade");
        let finished = Instant::now();
        assert_eq!(
            output.status.code(),
            Some(0),
            "upgrade failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        (serde_json::from_slice(&output.stdout).unwrap(), finished)
    })
}

#[test]
fn a_request_in_flight_finishes_and_its_connection_goes_on_in_the_new_image() {
    let mut harness = Harness::started();
    harness.deploy("v1");
    let pid = harness.daemon.as_ref().unwrap().pid();
    let mut stream = KeepAlive::connect(harness.proxy_port).unwrap();
    stream
        .send(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let upgrading = upgrade_in_background(&harness);
    let (status, body, close) = stream.response().unwrap();
    let answered = Instant::now();
    assert_eq!((status, body.as_str(), close), (200, "v1", false));
    let (reply, upgraded) = upgrading.join().unwrap();
    assert_eq!(reply["status"], "success", "{reply}");
    // The upgrade waited for the request in flight.
    assert!(
        upgraded >= answered,
        "the upgrade did not wait for the request"
    );
    // The same connection is served by the new image.
    stream
        .send(b"GET /release HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    assert_eq!(stream.response().unwrap(), (200, "v1".to_string(), false));
    assert_eq!(harness.daemon.as_ref().unwrap().pid(), pid);
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn a_request_body_still_arriving_finishes_and_its_connection_goes_on() {
    let mut harness = Harness::started();
    harness.deploy("v1");
    let mut stream = KeepAlive::connect(harness.proxy_port).unwrap();
    stream
        .send(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nhello")
        .unwrap();
    let upgrading = upgrade_in_background(&harness);
    // The rest of the body comes while the upgrade waits for this request
    // (its checks of the binary take longer than this).
    std::thread::sleep(Duration::from_millis(300));
    stream.send(b"world").unwrap();
    assert_eq!(
        stream.response().unwrap(),
        (200, "v1:10".to_string(), false)
    );
    let (reply, _) = upgrading.join().unwrap();
    assert_eq!(reply["status"], "success", "{reply}");
    stream
        .send(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    assert_eq!(stream.response().unwrap(), (200, "v1:3".to_string(), false));
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn the_start_of_a_request_read_before_an_upgrade_is_not_lost() {
    let mut harness = Harness::started();
    harness.deploy("v1");
    let mut stream = KeepAlive::connect(harness.proxy_port).unwrap();
    stream
        .send(b"GET /release HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    assert_eq!(stream.response().unwrap(), (200, "v1".to_string(), false));
    // Half a request head: the proxy reads it and waits for the rest.
    stream.send(b"GET /release HTTP/1.1\r\nHo").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    upgrade_ok(&harness, None);
    stream.send(b"st: 127.0.0.1\r\n\r\n").unwrap();
    assert_eq!(stream.response().unwrap(), (200, "v1".to_string(), false));
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn a_response_a_client_is_slow_to_read_refuses_the_upgrade_and_arrives_whole() {
    use std::io::Read;
    let mut harness = Harness::started();
    harness.deploy("v1");
    let pid = harness.daemon.as_ref().unwrap().pid();
    let mut stream = KeepAlive::connect(harness.proxy_port).unwrap();
    // Far more than the socket buffers hold: the proxy is still writing it
    // while this client reads nothing.
    const SIZE: usize = 64 << 20;
    stream
        .send(format!("GET /big?bytes={SIZE} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .unwrap();
    let (code, _, stderr) = upgrade(&harness, None);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("Upgrade refused: ") && stderr.contains("still in flight"),
        "{stderr}"
    );
    // The response was not cut off.
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.reader().read_exact(&mut byte).unwrap();
        head.push(byte[0] as char);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = vec![0u8; SIZE];
    stream.reader().read_exact(&mut body).unwrap();
    assert!(body.iter().all(|&b| b == b'x'));
    // The daemon was untouched and upgrades once the response is delivered.
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    upgrade_ok(&harness, None);
    assert_eq!(harness.daemon.as_ref().unwrap().pid(), pid);
    assert_eq!(harness.shutdown(), 0);
}

/// The daemon's proxy threads (named `rollbridge-proxy-N`; `comm` keeps 15
/// bytes).
fn proxy_threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|task| {
                    std::fs::read_to_string(task.path().join("comm"))
                        .is_ok_and(|name| name.starts_with("rollbridge-prox"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn keep_alive_connections_go_on_when_an_upgrade_is_refused_for_a_long_request() {
    let mut harness = Harness::started();
    harness.deploy("v1");
    let request = b"GET /release HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let pid = harness.daemon.as_ref().unwrap().pid();
    let serving = proxy_threads(pid);
    assert!(serving > 0);
    // Idle at the pause: kept for the new image, then served by the old one.
    let mut idle = KeepAlive::connect(harness.proxy_port).unwrap();
    idle.send(request).unwrap();
    assert_eq!(idle.response().unwrap(), (200, "v1".to_string(), false));
    // Busy past the drain limit: the upgrade is refused for it.
    let mut busy = KeepAlive::connect(harness.proxy_port).unwrap();
    busy.send(b"GET /slow?ms=12000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let (code, _, stderr) = upgrade(&harness, None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("still in flight"), "{stderr}");
    idle.send(request).unwrap();
    assert_eq!(idle.response().unwrap(), (200, "v1".to_string(), false));
    // The long request finishes, kept alive, and its connection goes on.
    assert_eq!(busy.response().unwrap(), (200, "v1".to_string(), false));
    // Once the paused proxy's threads are gone (and with them the runtime its
    // upstream connections were registered with), the next request is served
    // on a connection of the proxy serving now.
    wait_until(PATIENCE, "the paused proxy's threads to end", || {
        proxy_threads(pid) == serving
    });
    busy.send(request).unwrap();
    assert_eq!(busy.response().unwrap(), (200, "v1".to_string(), false));
    upgrade_ok(&harness, None);
    for stream in [&mut idle, &mut busy] {
        stream.send(request).unwrap();
        assert_eq!(stream.response().unwrap(), (200, "v1".to_string(), false));
    }
    assert_eq!(harness.shutdown(), 0);
}
