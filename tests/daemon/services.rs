//! Persistent and handoff services, singletons, replicas, `restart` and memory
//! supervision on a real daemon.

use crate::support::daemon::*;
use serde_json::{Value, json};

fn log_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn events_summary(path: &std::path::Path) -> Vec<String> {
    log_lines(path)
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["event"].as_str().unwrap(),
                l["releaseId"].as_str().unwrap()
            )
        })
        .collect()
}

fn service(id: &str, dir: &std::path::Path, extra: Value) -> Value {
    let mut process = json!({
        "id": id, "policy": "service",
        "command": format!("{} # {{{{releaseId}}}}", python("app.py")),
        "port": {"from": 0, "to": 0},
        "env": {"ROLLBRIDGE_SERVICE_LOG": dir.join(format!("{id}.log"))}
    });
    for (key, value) in extra.as_object().unwrap() {
        process[key] = value.clone();
    }
    process
}

#[test]
fn persistent_services_survive_deploys_and_restart_with_the_latest_template() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"]
            .as_array_mut()
            .unwrap()
            .insert(0, service("svc", dir, json!({})));
        config
    });
    harness.start();
    harness.deploy("v1");
    let status = harness.status();
    let svc = &status["services"][0];
    assert_eq!(svc["id"], "svc");
    let pid = pid_of(&svc["process"]);
    assert!(
        svc["process"]["command"]
            .as_str()
            .unwrap()
            .ends_with("# v1")
    );
    let port = harness.release_status("v1").unwrap()["ports"]["svc"].clone();

    harness.deploy("v2");
    let status = harness.status();
    let svc = &status["services"][0];
    assert_eq!(pid_of(&svc["process"]), pid, "not restarted by the deploy");
    assert!(
        svc["process"]["command"]
            .as_str()
            .unwrap()
            .ends_with("# v2")
    );
    assert_eq!(harness.release_status("v2").unwrap()["ports"]["svc"], port);

    // A crash of the service restarts it from the v2 template.
    wait_until(PATIENCE, "svc to log its start", || {
        events_summary(&harness.path("svc.log")) == ["start v1"]
    });
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    wait_until(PATIENCE, "svc to restart from v2", || {
        events_summary(&harness.path("svc.log"))
            .last()
            .map(String::as_str)
            == Some("start v2")
    });
    let status = harness.status();
    assert_eq!(status["services"][0]["process"]["lastStartReason"], "crash");
    assert_eq!(status["services"][0]["process"]["restarts"], 1);
    assert_eq!(harness.shutdown(), 0);
    let svc_pid = pid_of(&log_lines(&harness.path("svc.log")).last().unwrap().clone());
    assert!(!pid_alive(svc_pid));
}

#[test]
fn singletons_are_replaced_without_overlap() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "jobs", "policy": "singleton", "command": python("singleton.py"),
            "env": {"ROLLBRIDGE_SINGLETON_LOG": dir.join("jobs.log")}
        }));
        config
    });
    harness.start();
    harness.deploy("v1");
    wait_until(PATIENCE, "the v1 singleton to start", || {
        events_summary(&harness.path("jobs.log")) == ["start v1"]
    });
    harness.deploy("v2");
    wait_until(PATIENCE, "the v2 singleton to start", || {
        events_summary(&harness.path("jobs.log")).len() == 3
    });
    assert_eq!(
        events_summary(&harness.path("jobs.log")),
        ["start v1", "stop v1", "start v2"]
    );
    let singletons = harness.status()["singletons"].clone();
    assert_eq!(singletons.as_array().unwrap().len(), 1);
    assert_eq!(singletons[0]["id"], "jobs");
    assert_eq!(singletons[0]["process"]["state"], "running");
}

#[test]
fn a_failed_singleton_after_the_switch_still_retires_the_old_release() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "jobs", "policy": "singleton", "command": python("singleton.py"),
            "cwd": "{{releasePath}}/{{releaseId}}",
            "env": {"ROLLBRIDGE_SINGLETON_LOG": dir.join("jobs.log")}
        }));
        config
    });
    harness.start();
    let v1 = harness.release("v1");
    std::fs::create_dir_all(format!("{v1}/v1")).unwrap();
    harness.deploy("v1");
    let old_web = pid_of(&harness.process_in("v1", "web").unwrap());
    wait_until(PATIENCE, "the v1 singleton to start", || {
        events_summary(&harness.path("jobs.log")) == ["start v1"]
    });
    let error = harness.deploy_err("v2");
    assert!(
        error.starts_with(
            "Traffic switched to release \"v2\", but singleton \"jobs\" failed to start: "
        ),
        "{error}"
    );
    let status = harness.status();
    assert_eq!(status["activeReleaseId"], "v2");
    assert_eq!(status["singletons"][0]["process"]["state"], "failed");
    assert_eq!(harness.get("/release"), (200, "v2".to_string()));
    // The old singleton was stopped, and the old release is retired anyway.
    assert_eq!(
        events_summary(&harness.path("jobs.log")),
        ["start v1", "stop v1"]
    );
    wait_until(PATIENCE, "v1 to be retired", || {
        harness.release_status("v1").unwrap()["state"] == "stopped"
    });
    assert!(!pid_alive(old_web));
}

#[test]
fn handoff_services_start_per_release_and_stop_after_their_dependents() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        let processes = config["processes"].as_array_mut().unwrap();
        processes.insert(
            0,
            service(
                "beacon",
                dir,
                json!({"deployStrategy": "handoff", "port": {"from": 20000, "to": 20999}}),
            ),
        );
        processes.push(json!({
            "id": "worker", "policy": "companion", "command": "exec sleep 1000",
            "nonBlockingDrain": true
        }));
        config
    });
    harness.start();
    harness.deploy("v1");
    let v1 = harness.release_status("v1").unwrap();
    let ids: Vec<&str> = v1["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["beacon", "worker", "web"],
        "handoff first, proxied last"
    );
    assert!(harness.status()["services"].as_array().unwrap().is_empty());
    let mut socket = ws_connect(harness.proxy_port);
    assert_eq!(ws_echo(&mut socket, "release"), "v1");
    harness.deploy("v2");
    assert_ne!(
        harness.release_status("v1").unwrap()["ports"]["beacon"],
        harness.release_status("v2").unwrap()["ports"]["beacon"]
    );
    wait_until(PATIENCE, "the v1 worker to stop", || {
        harness.process_in("v1", "worker").unwrap()["state"] == "stopped"
    });
    assert_eq!(harness.release_status("v1").unwrap()["state"], "draining");
    assert_eq!(
        harness.process_in("v1", "beacon").unwrap()["state"],
        "running"
    );
    // The v2 beacon listens a moment before it writes its start line; a loaded
    // machine can stretch that moment, so the line is waited for before v1 may
    // stop (its WebSocket holds it).
    wait_until(PATIENCE, "the v2 beacon's start line", || {
        events_summary(&harness.path("beacon.log")).contains(&"start v2".to_string())
    });
    socket.close(None).unwrap();
    drop(socket);
    wait_until(PATIENCE, "v1 to stop", || {
        harness.release_status("v1").unwrap()["state"] == "stopped"
    });
    assert_eq!(
        harness.process_in("v1", "beacon").unwrap()["state"],
        "stopped"
    );
    wait_until(PATIENCE, "the beacon log", || {
        events_summary(&harness.path("beacon.log")).len() == 3
    });
    assert_eq!(
        events_summary(&harness.path("beacon.log")),
        ["start v1", "start v2", "stop v1"]
    );
    // Handoff services can be restarted in place.
    let before = pid_of(&harness.process_in("v2", "beacon").unwrap());
    let reply = harness.ok(json!({"command": "restart", "processId": "beacon"}));
    assert_eq!(reply["restarted"], json!(["beacon"]));
    assert_ne!(pid_of(&harness.process_in("v2", "beacon").unwrap()), before);
}

#[test]
fn restart_selects_by_instance_base_id_and_policy() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        let processes = config["processes"].as_array_mut().unwrap();
        processes.insert(0, service("beacon", dir, json!({})));
        processes.push(json!({
            "id": "worker", "policy": "companion", "command": "exec sleep 1000", "replicas": 3
        }));
        processes.push(json!({
            "id": "jobs-main", "policy": "singleton", "command": "exec sleep 1000"
        }));
        config
    });
    harness.start();
    harness.deploy("v1");
    let pid = |id: &str| -> i32 {
        let status = harness.status();
        for section in ["services", "singletons"] {
            for entry in status[section].as_array().unwrap() {
                if entry["id"] == id {
                    return pid_of(&entry["process"]);
                }
            }
        }
        pid_of(&harness.process_in("v1", id).unwrap())
    };
    let ids: Vec<String> = harness.release_status("v1").unwrap()["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["worker#0", "worker#1", "worker#2", "web"]);

    let before = pid("worker#1");
    let reply = harness.ok(json!({"command": "restart", "processId": "worker#1"}));
    assert_eq!(
        reply,
        json!({"status": "success", "restarted": ["worker#1"]})
    );
    assert_ne!(pid("worker#1"), before);
    assert_eq!(
        harness.process_in("v1", "worker#1").unwrap()["lastStartReason"],
        "manual"
    );
    let reply = harness.ok(json!({"command": "restart", "processId": "worker"}));
    assert_eq!(
        reply["restarted"],
        json!(["worker#0", "worker#1", "worker#2"])
    );

    let beacon = pid("beacon");
    let reply = harness.ok(json!({"command": "restart", "policy": "companion"}));
    assert_eq!(
        reply["restarted"],
        json!(["worker#0", "worker#1", "worker#2"])
    );
    assert_eq!(pid("beacon"), beacon);
    let reply = harness.ok(json!({"command": "restart", "policy": "bogus"}));
    assert_eq!(reply["restarted"], json!([]));

    let web = pid("web");
    let reply = harness.ok(json!({"command": "restart"}));
    assert_eq!(
        reply["restarted"],
        json!(["beacon", "worker#0", "worker#1", "worker#2", "jobs-main"])
    );
    assert_eq!(pid("web"), web, "the proxied process is never restarted");
    assert_ne!(pid("beacon"), beacon);

    let refusal = "The proxied process cannot be restarted in place; use \"rollbridge deploy\" for a zero-downtime replacement.";
    assert_eq!(
        harness.err(json!({"command": "restart", "processId": "web"})),
        refusal
    );
    assert_eq!(
        harness.err(json!({"command": "restart", "policy": "proxied"})),
        refusal
    );
    assert_eq!(
        harness.err(json!({"command": "restart", "processId": "missing"})),
        "No managed process with id \"missing\" to restart."
    );
    assert_eq!(
        harness.err(json!({"command": "restart", "processId": ""})),
        "No managed process with id \"\" to restart."
    );
    let events = events_of(&harness);
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "process restart requested"
                && e["data"] == json!({"processId": "worker#1"}))
    );
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "process started" && e["data"]["reason"] == "manual")
    );
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "process started" && e["data"]["reason"] == "deploy")
    );
}

#[test]
fn restart_revives_a_dead_process_and_reports_failures_after_trying_all() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        let processes = config["processes"].as_array_mut().unwrap();
        processes.push(json!({
            "id": "worker", "policy": "companion", "command": "exec sleep 1000",
            "restart": {"maxRestarts": 0}
        }));
        processes.push(json!({
            "id": "jobs", "policy": "singleton", "command": "exec sleep 1000",
            "cwd": "{{releasePath}}/jobs"
        }));
        processes.push(json!({
            "id": "later", "policy": "singleton", "command": "exec sleep 1000"
        }));
        config
    });
    harness.start();
    let v1 = harness.release("v1");
    std::fs::create_dir_all(format!("{v1}/jobs")).unwrap();
    harness.deploy("v1");
    // A worker that died and may not restart by itself.
    let worker = pid_of(&harness.process_in("v1", "worker").unwrap());
    unsafe { libc::kill(-worker, libc::SIGKILL) };
    wait_until(PATIENCE, "the worker to fail", || {
        harness.process_in("v1", "worker").unwrap()["state"] == "failed"
    });
    let reply = harness.ok(json!({"command": "restart", "processId": "worker"}));
    assert_eq!(reply["restarted"], json!(["worker"]));
    assert_eq!(
        harness.process_in("v1", "worker").unwrap()["state"],
        "running"
    );

    // One target cannot start: the others are still restarted.
    std::fs::remove_dir_all(format!("{v1}/jobs")).unwrap();
    let later = pid_of(&harness.status()["singletons"][1]["process"]);
    let error = harness.err(json!({"command": "restart"}));
    assert!(error.starts_with("Failed to restart jobs: "), "{error}");
    assert!(error.ends_with("(restarted: worker, later)"), "{error}");
    assert_ne!(pid_of(&harness.status()["singletons"][1]["process"]), later);
}

#[test]
fn a_process_over_its_memory_limit_is_restarted() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "hog", "policy": "companion", "command": python("hog.py"),
            "env": {
                "ROLLBRIDGE_HOG_BYTES": (256u64 << 20).to_string(),
                "ROLLBRIDGE_HOG_ONCE": dir.join("hogged")
            },
            "memory": {"limitBytes": 64u64 << 20, "checkIntervalMs": 100}
        }));
        config
    });
    harness.start();
    harness.deploy("v1");
    wait_until(PATIENCE, "a memory restart", || {
        harness.process_in("v1", "hog").unwrap()["memoryRestarts"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    });
    let hog = harness.process_in("v1", "hog").unwrap();
    assert_eq!(hog["lastStartReason"], "memory");
    assert!(hog["lastMemoryRestartAt"].is_string());
    assert!(
        events_of(&harness)
            .iter()
            .any(|e| e["message"] == "memory limit exceeded")
    );
    // The restarted hog stays under the limit; its samples show up in status.
    wait_until(PATIENCE, "a memory sample of the restarted hog", || {
        let hog = harness.process_in("v1", "hog").unwrap();
        hog["rssBytes"].as_u64().unwrap_or(0) > 0
            && hog["children"].as_array().is_some_and(|children| {
                children
                    .iter()
                    .any(|child| child["rssBytes"].as_u64().unwrap_or(0) > 0)
            })
    });
    let hog = harness.process_in("v1", "hog").unwrap();
    assert_eq!(hog["memoryRestarts"], 1, "{hog}");
    assert!(hog["rssBytes"].as_u64().unwrap() < 64 << 20, "{hog}");
}

#[test]
fn a_pending_crash_restart_does_not_hold_up_shutdown() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "crasher", "policy": "companion", "command": python("crasher.py"),
            "restartDelayMs": 600_000
        }));
        config
    });
    harness.start();
    harness.deploy("v1");
    wait_until(PATIENCE, "the crasher to wait for its restart", || {
        harness.process_in("v1", "crasher").unwrap()["state"] == "failed"
    });
    // The restart is ten minutes away; the shutdown must not wait for it.
    assert_eq!(harness.shutdown(), 0);
    assert_eq!(
        harness.output().started_pids().len(),
        2,
        "web and one crasher"
    );
}
