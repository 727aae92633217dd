//! Deploy, drain, failure handling, config reload, rollback and stop on a real
//! daemon with real release processes.

use crate::support::daemon::*;
use serde_json::{Value, json};

fn with_processes(extra: Vec<Value>) -> impl FnOnce(&std::path::Path, u16) -> Value {
    move |dir, port| {
        let mut config = base_config(dir, port);
        config["processes"].as_array_mut().unwrap().extend(extra);
        config
    }
}

#[test]
fn deploy_switches_traffic_and_retires_the_previous_release() {
    let harness = Harness::started();
    let first = harness.deploy("v1");
    assert_eq!(
        first,
        json!({"status": "success", "activeReleaseId": "v1", "previousReleaseId": null})
    );
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    let v1 = harness.release_status("v1").unwrap();
    let keys: Vec<&String> = v1.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "activatedAt",
            "connectionCount",
            "connections",
            "ports",
            "processes",
            "releaseId",
            "releasePath",
            "revision",
            "state"
        ]
    );
    assert_eq!(v1["state"], "active");
    assert_eq!(v1["revision"], "v1");
    assert_eq!(v1["releasePath"], harness.release("v1"));
    let v1_pid = pid_of(&v1["processes"][0]);
    assert_eq!(v1["processes"][0]["lastStartReason"], "deploy");
    assert_eq!(v1["processes"][0]["state"], "running");

    let second = harness.ok(json!({
        "command": "deploy", "releasePath": harness.release("v2"), "revision": "abc123"
    }));
    assert_eq!(second["activeReleaseId"], "abc123");
    assert_eq!(second["previousReleaseId"], "v1");
    assert_eq!(harness.get("/release"), (200, "abc123".to_string()));
    wait_until(PATIENCE, "v1 to stop", || {
        harness.release_status("v1").unwrap()["state"] == "stopped"
    });
    assert!(!pid_alive(v1_pid));
    let v1 = harness.release_status("v1").unwrap();
    assert!(v1["drainStartedAt"].is_string());
    assert!(v1["stoppedAt"].is_string());
    assert_ne!(
        v1["ports"]["web"],
        harness.release_status("abc123").unwrap()["ports"]["web"]
    );

    // A deploy without id or revision gets a 17-digit timestamp id.
    let third = harness.ok(json!({"command": "deploy", "releasePath": harness.release("v3")}));
    let id = third["activeReleaseId"].as_str().unwrap();
    assert_eq!(id.len(), 17);
    assert!(id.chars().all(|c| c.is_ascii_digit()));

    let events = events_of(&harness);
    let starting: Vec<&Value> = events
        .iter()
        .filter(|e| e["message"] == "deploy starting")
        .collect();
    assert_eq!(
        starting[0]["data"],
        json!({"releaseId": "v1", "releasePath": harness.release("v1")})
    );
    assert_eq!(
        starting[1]["data"],
        json!({"releaseId": "abc123", "releasePath": harness.release("v2"), "revision": "abc123"})
    );
    assert!(events.iter().any(|e| e["message"] == "traffic switched"
        && e["data"] == json!({"previousReleaseId": "v1", "releaseId": "abc123"})));
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "release drained" && e["data"] == json!({"releaseId": "v1"}))
    );
    assert!(events[0]["at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn websockets_keep_the_old_release_draining_while_http_moves_on() {
    let harness = Harness::new(with_processes(vec![json!({
        "id": "worker", "policy": "companion", "command": "exec sleep 1000",
        "nonBlockingDrain": true
    })]));
    let mut harness = harness;
    harness.start();
    harness.deploy("v1");
    let mut socket = ws_connect(harness.proxy_port);
    assert_eq!(ws_echo(&mut socket, "release"), "v1");
    wait_until(PATIENCE, "the websocket to be counted", || {
        harness.release_status("v1").unwrap()["connections"]["websocket"] == 1
    });
    harness.deploy("v2");
    assert_eq!(harness.get("/release"), (200, "v2".to_string()));
    // The nonBlockingDrain worker stops at once; web waits for the socket.
    wait_until(PATIENCE, "the v1 worker to stop", || {
        harness.process_in("v1", "worker").unwrap()["state"] == "stopped"
    });
    let v1 = harness.release_status("v1").unwrap();
    assert_eq!(v1["state"], "draining");
    assert_eq!(v1["connectionCount"], 1);
    assert_eq!(v1["connections"], json!({"http": 0, "websocket": 1}));
    assert_eq!(harness.process_in("v1", "web").unwrap()["state"], "running");
    // The old connection still talks to v1.
    assert_eq!(ws_echo(&mut socket, "release"), "v1");
    socket.close(None).unwrap();
    drop(socket);
    wait_until(PATIENCE, "v1 to stop after the socket closed", || {
        harness.release_status("v1").unwrap()["state"] == "stopped"
    });
}

#[test]
fn a_failed_health_check_leaves_the_previous_release_active_and_nothing_running() {
    let harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"][0]["health"]["timeoutMs"] = json!(1500);
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "worker", "policy": "companion", "command": "exec sleep 1000"
        }));
        config
    });
    let mut harness = harness;
    harness.start();
    harness.deploy("good");
    let error = harness.deploy_err("bad-release");
    assert!(
        error.starts_with("Health check failed for http://127.0.0.1:"),
        "{error}"
    );
    assert!(error.ends_with("/ping: HTTP 500"), "{error}");
    assert_eq!(harness.get("/release"), (200, "good".to_string()));
    let status = harness.status();
    assert_eq!(status["activeReleaseId"], "good");
    assert!(harness.release_status("bad-release").is_none());

    let events = events_of(&harness);
    assert!(events.iter().any(|e| e["message"] == "deploy failed"
        && e["data"] == json!({"error": error, "releaseId": "bad-release"})));
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["message"] == "release startup failed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["data"]["phase"], "before cleanup");
    assert_eq!(failed[1]["data"]["phase"], "after cleanup");
    let statuses: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["message"] == "release startup process status" && e["data"]["processId"] == "web"
        })
        .collect();
    assert_eq!(statuses.len(), 2);
    let before = &statuses[0]["data"];
    let keys: Vec<&String> = before.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "command",
            "exitCode",
            "exitSignal",
            "logs",
            "phase",
            "pid",
            "processId",
            "releaseId",
            "state"
        ]
    );
    assert_eq!(before["state"], "running");
    let lines: Vec<&str> = before["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert!(
        lines.contains(&"listening on ") || lines.iter().any(|l| l.starts_with("listening on")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("stderr hello")));
    let after = &statuses[1]["data"];
    assert_eq!(after["phase"], "after cleanup");
    assert_eq!(after["state"], "stopped");
    assert_eq!(after["pid"], Value::Null);
    // Nothing the failed deploy started is still running.
    for event in events
        .iter()
        .filter(|e| e["message"] == "process started" && e["data"]["releaseId"] == "bad-release")
    {
        let pid = event["data"]["pid"].as_i64().unwrap() as i32;
        assert!(!group_alive(pid), "process group {pid} leaked");
    }
}

#[test]
fn a_crash_looping_release_fails_its_deploy_without_leaking() {
    let harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"][0]["command"] = json!(python("crasher.py"));
        config["processes"][0]["restartDelayMs"] = json!(20);
        config["processes"][0]["health"]["timeoutMs"] = json!(1500);
        config
    });
    let mut harness = harness;
    harness.start();
    let error = harness.deploy_err("v1");
    assert!(error.starts_with("Health check failed"), "{error}");
    let started = harness.output().started_pids();
    assert!(started.len() >= 2, "crash restarts happened: {started:?}");
    for pid in started {
        assert!(!group_alive(pid), "process group {pid} leaked");
    }
    assert_eq!(harness.status()["releases"], json!([]));
}

#[test]
fn deploy_errors_name_the_problem() {
    let harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "templated", "policy": "companion",
            "command": "echo {{env.ROLLBRIDGE_ENV_MISSING}}"
        }));
        config
    });
    let mut harness = harness;
    harness.start();
    let error = harness.deploy_err("v1");
    assert_eq!(
        error,
        "Missing template value for {{env.ROLLBRIDGE_ENV_MISSING}}"
    );
    // A missing working directory fails the spawn; fixing it makes the same
    // deploy work.
    harness.rewrite_config(|config| {
        config["processes"][1]["command"] = json!("exec sleep 1000");
        config["processes"][1]["cwd"] = json!("{{releasePath}}/sub");
    });
    let error = harness.deploy_err("v1");
    assert!(!error.is_empty());
    assert_eq!(harness.status()["activeReleaseId"], Value::Null);
    std::fs::create_dir_all(format!("{}/sub", harness.release("v1"))).unwrap();
    harness.deploy("v1");
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
}

#[test]
fn exhausted_port_ranges_are_explained() {
    // Two adjacent ports, both held by this test.
    let (first, second) = loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port == u16::MAX {
            continue;
        }
        if let Ok(b) = std::net::TcpListener::bind(("127.0.0.1", port + 1)) {
            break (a, b);
        }
    };
    let from = first.local_addr().unwrap().port();
    let to = second.local_addr().unwrap().port();
    let harness = Harness::new(move |dir, port| {
        let mut config = base_config(dir, port);
        config["processes"][0]["port"] = json!({"from": from, "to": to});
        config
    });
    let mut harness = harness;
    harness.start();
    let error = harness.deploy_err("v1");
    assert_eq!(
        error,
        format!(
            "No available ports in range {from}-{to} (2 ports on 127.0.0.1): 0 reserved by this deploy, 2 already in use. Widen the port range, free a port, or check bind permissions."
        )
    );
    assert!(
        events_of(&harness)
            .iter()
            .any(|e| e["message"] == "deploy failed")
    );
    drop((first, second));
}

#[test]
fn deploy_reloads_the_config_and_retires_with_the_new_settings() {
    let harness = Harness::new(with_processes(vec![json!({
        "id": "stubborn", "policy": "companion",
        "command": format!("APP_IGNORE_TERM=1 ROLLBRIDGE_PORT=0 {}", python("app.py")),
        "gracefulStopMs": "indefinite"
    })]));
    let mut harness = harness;
    harness.start();
    harness.deploy("v1");
    let stubborn = pid_of(&harness.process_in("v1", "stubborn").unwrap());
    wait_until(PATIENCE, "stubborn to be ready", || {
        !harness.process_in("v1", "stubborn").unwrap()["logs"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    // With "indefinite" the old worker would never be killed; the reloaded 50 ms
    // window governs its retirement.
    harness.rewrite_config(|config| config["processes"][1]["gracefulStopMs"] = json!(50));
    harness.deploy("v2");
    wait_until(PATIENCE, "the v1 worker to be killed", || {
        harness.process_in("v1", "stubborn").unwrap()["state"] == "stopped"
    });
    assert!(!pid_alive(stubborn));
}

#[test]
fn incompatible_or_failing_reloads_keep_the_running_release() {
    let harness = Harness::started();
    harness.deploy("v1");
    harness.rewrite_config(|config| config["proxy"]["host"] = json!("0.0.0.0"));
    let error = harness.deploy_err("v2");
    assert_eq!(
        error,
        "Config changes to proxy.host cannot be applied live; restart the Rollbridge daemon before deploying."
    );
    harness.rewrite_config(|config| {
        config["proxy"]["host"] = json!("127.0.0.1");
        config["processes"][0]["health"]["path"] = json!("/not-ready");
        config["processes"][0]["health"]["timeoutMs"] = json!(300);
    });
    let error = harness.deploy_err("v2");
    assert!(
        error.starts_with("Health check failed for http://127.0.0.1:"),
        "{error}"
    );
    assert!(error.contains("/not-ready: "), "{error}");
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    harness.rewrite_config(|config| config["proxy"] = json!("broken"));
    let error = harness.deploy_err("v2");
    assert!(
        error.starts_with("Invalid Rollbridge config:\n  - "),
        "{error}"
    );
    assert_eq!(harness.status()["activeReleaseId"], "v1");
}

#[test]
fn rollback_reactivates_retained_releases() {
    let harness = Harness::started();
    harness.deploy("v1");
    harness.deploy("v2");
    assert_eq!(
        harness.ok(json!({"command": "rollback"})),
        json!({"status": "success", "activeReleaseId": "v1", "previousReleaseId": "v2"})
    );
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    harness.deploy("v3");
    harness.ok(json!({"command": "rollback", "releaseId": "v2"}));
    assert_eq!(harness.get("/release"), (200, "v2".to_string()));
    assert_eq!(
        harness.err(json!({"command": "rollback", "releaseId": "v2"})),
        "Release \"v2\" is already active."
    );
    assert_eq!(
        harness.err(json!({"command": "rollback", "releaseId": "nope"})),
        "No retained release \"nope\" to roll back to."
    );
    // The map keeps first-insertion order.
    let ids: Vec<String> = harness.status()["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["releaseId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["v1", "v2", "v3"]);
    let events = events_of(&harness);
    assert!(events.iter().any(|e| e["message"] == "rollback starting"
        && e["data"] == json!({"releaseId": "v2", "releasePath": harness.release("v2")})));
}

#[test]
fn rollback_to_a_draining_release_stops_its_old_instance() {
    let mut harness = Harness::new(base_config);
    harness.start();
    harness.deploy("v1");
    let old_web = pid_of(&harness.process_in("v1", "web").unwrap());
    let mut socket = ws_connect(harness.proxy_port);
    assert_eq!(ws_echo(&mut socket, "release"), "v1");
    harness.deploy("v2");
    assert_eq!(harness.release_status("v1").unwrap()["state"], "draining");
    harness.ok(json!({"command": "rollback", "releaseId": "v1"}));
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    wait_until(PATIENCE, "the old v1 web to be gone", || {
        !pid_alive(old_web)
    });
    let new_web = pid_of(&harness.process_in("v1", "web").unwrap());
    assert_ne!(new_web, old_web);
}

#[test]
fn stop_takes_the_release_out_of_traffic() {
    let harness = Harness::started();
    harness.deploy("v1");
    let web = pid_of(&harness.process_in("v1", "web").unwrap());
    let reply = harness.ok(json!({"command": "stop"}));
    assert_eq!(reply["activeReleaseId"], Value::Null);
    assert_eq!(reply["releases"][0]["state"], "stopped");
    assert!(!pid_alive(web));
    let (status, body) = harness.get("/release");
    assert_eq!(status, 503);
    assert_eq!(body, "No active release\n");
    assert!(
        events_of(&harness)
            .iter()
            .any(|e| e["message"] == "release stopped" && e["data"] == json!({"releaseId": "v1"}))
    );
    assert_eq!(
        harness.err(json!({"command": "stop"})),
        "Release not found: active"
    );
    // A stopped release can be rolled back to.
    harness.ok(json!({"command": "rollback", "releaseId": "v1"}));
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
}

#[test]
fn status_shows_a_deploy_in_progress_and_deploys_run_one_at_a_time() {
    let harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"][0]["env"] = json!({"APP_HEALTH_GATE": dir.join("gate")});
        config
    });
    let mut harness = harness;
    // The debug line "waiting for the operation in progress" shows when the second
    // deploy has reached the daemon and queued behind the first.
    let daemon = harness.spawn(&["--log-level", "rollbridge::daemon=debug"]);
    daemon.wait_ready(PATIENCE);
    harness.daemon = Some(daemon);
    let socket = harness.socket.clone();
    let first_path = harness.release("v1");
    let second_path = harness.release("v2");
    let first = std::thread::spawn({
        let socket = socket.clone();
        move || {
            control(
                &socket,
                json!({"command": "deploy", "releasePath": first_path, "releaseId": "v1"}),
            )
        }
    });
    let deploying = poll(PATIENCE, || {
        let status = harness.status();
        status.get("deploying").cloned()
    })
    .expect("status shows the deploy");
    assert_eq!(deploying["releaseId"], "v1");
    assert_eq!(deploying["releasePath"], harness.release("v1"));
    assert!(deploying["startedAt"].as_str().unwrap().ends_with('Z'));
    let second = std::thread::spawn({
        let socket = socket.clone();
        move || {
            control(
                &socket,
                json!({"command": "deploy", "releasePath": second_path, "releaseId": "v2"}),
            )
        }
    });
    poll(PATIENCE, || {
        harness
            .output()
            .lines()
            .iter()
            .any(|line| line.contains("waiting for the operation in progress"))
            .then_some(())
    })
    .expect("the second deploy queues behind the first");
    // The second deploy waits for the first: still only v1 is being deployed.
    assert_eq!(harness.status()["deploying"]["releaseId"], "v1");
    std::fs::write(harness.path("gate"), "").unwrap();
    assert_eq!(first.join().unwrap()["activeReleaseId"], "v1");
    let second = second.join().unwrap();
    assert_eq!(second["activeReleaseId"], "v2");
    assert_eq!(second["previousReleaseId"], "v1");
    assert!(harness.status().get("deploying").is_none());
    let starts: Vec<String> = events_of(&harness)
        .iter()
        .filter(|e| e["message"] == "deploy starting" || e["message"] == "traffic switched")
        .map(|e| {
            format!(
                "{} {}",
                e["message"].as_str().unwrap(),
                e["data"]["releaseId"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        starts,
        [
            "deploy starting v1",
            "traffic switched v1",
            "deploy starting v2",
            "traffic switched v2"
        ]
    );
}

#[test]
fn retention_prunes_stopped_releases() {
    let harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["releaseRetention"] = json!({"keep": 1});
        config
    });
    let mut harness = harness;
    harness.start();
    harness.deploy("v1");
    harness.deploy("v2");
    harness.deploy("v3");
    wait_until(PATIENCE, "v1 to be pruned", || {
        harness.release_status("v1").is_none()
    });
    let ids: Vec<String> = harness.status()["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["releaseId"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() <= 2, "{ids:?}");
    assert!(ids.contains(&"v3".to_string()));
}

#[test]
fn a_wildcard_proxy_host_reaches_releases_over_loopback() {
    let harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["proxy"]["host"] = json!("0.0.0.0");
        config
    });
    let mut harness = harness;
    harness.start();
    harness.deploy("v1");
    let status = harness.status();
    assert_eq!(status["proxy"]["host"], "0.0.0.0");
    assert_eq!(status["proxy"]["upstreamHost"], "127.0.0.1");
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
}

#[test]
fn injected_environment_reaches_the_process() {
    let harness = Harness::new(with_processes(vec![json!({
        "id": "background-jobs", "policy": "companion", "command": "exec sleep 1000",
        "port": {"from": 0, "to": 0}
    })]));
    let mut harness = harness;
    harness.start();
    harness.deploy("v1");
    let (status, body) = harness.get("/env");
    assert_eq!(status, 200);
    let env: Value = serde_json::from_str(&body).unwrap();
    let ports = &harness.release_status("v1").unwrap()["ports"];
    assert_eq!(env["ROLLBRIDGE_APPLICATION"], "rollbridge-test");
    assert_eq!(env["ROLLBRIDGE_PROCESS_ID"], "web");
    assert_eq!(env["ROLLBRIDGE_RELEASE_ID"], "v1");
    assert_eq!(env["ROLLBRIDGE_REVISION"], "v1");
    assert_eq!(env["ROLLBRIDGE_RELEASE_PATH"], harness.release("v1"));
    assert_eq!(env["ROLLBRIDGE_REPLICA_INDEX"], "0");
    assert_eq!(env["ROLLBRIDGE_REPLICA_COUNT"], "1");
    assert_eq!(env["ROLLBRIDGE_PORT"], ports["web"].to_string());
    assert_eq!(env["ROLLBRIDGE_WEB_PORT"], ports["web"].to_string());
    assert_eq!(
        env["ROLLBRIDGE_BACKGROUND_JOBS_PORT"],
        ports["background-jobs"].to_string()
    );
}

#[test]
fn redeploying_the_active_id_replaces_it_and_shutdown_still_stops_the_old_one() {
    let mut harness = Harness::started();
    harness.deploy("v1");
    let old_web = pid_of(&harness.process_in("v1", "web").unwrap());
    let mut socket = ws_connect(harness.proxy_port);
    assert_eq!(ws_echo(&mut socket, "release"), "v1");
    let reply = harness.deploy("v1");
    assert_eq!(reply["previousReleaseId"], "v1");
    let releases = harness.status()["releases"].clone();
    assert_eq!(releases.as_array().unwrap().len(), 1);
    assert_ne!(pid_of(&releases[0]["processes"][0]), old_web);
    // The replaced instance is still draining behind the open WebSocket.
    assert!(pid_alive(old_web));
    assert_eq!(ws_echo(&mut socket, "release"), "v1");
    assert_eq!(harness.shutdown(), 0);
    assert!(
        !pid_alive(old_web),
        "shutdown stopped the replaced instance"
    );
}

#[test]
fn health_check_hooks_come_from_the_plugin_registry() {
    // A native plugin that always says "healthy" lets a release whose /ping
    // answers 500 through; the built-in `tcp` plugin is used the same way.
    let harness = Harness::new(base_config);
    let source = format!(
        "{}/plugins/example-c/always_ready.c",
        env!("CARGO_MANIFEST_DIR")
    );
    let library = harness.path("libalways_ready.so");
    let compiled = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-I"])
        .arg(format!("{}/plugins/include", env!("CARGO_MANIFEST_DIR")))
        .arg("-o")
        .arg(&library)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(compiled.success());
    harness.rewrite_config(|config| {
        config["plugins"] = json!({"native": [library]});
        config["processes"][0]["health"]["check"] = json!({"plugin": "always-ready"});
    });
    let mut harness = harness;
    harness.start();
    harness.deploy("bad-but-ready");
    // The plugin does not wait for the app to listen, so give it a moment.
    wait_until(PATIENCE, "the app to answer", || {
        harness.get("/release") == (200, "bad-but-ready".to_string())
    });
    harness.rewrite_config(|config| {
        config["processes"][0]["health"]["check"] = json!({"plugin": "tcp"});
    });
    harness.deploy("bad-tcp");
    assert_eq!(harness.get("/release"), (200, "bad-tcp".to_string()));
}

/// The value of `NAME=value` in an `env` dump.
fn env_value(dump: &str, name: &str) -> Option<String> {
    dump.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .map(str::to_string)
}

#[test]
fn templates_see_the_daemon_environment_and_each_replica_context() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"][0]["command"] = json!(format!(
            "{} # {{{{env.RB_TEST_GREETING}}}}",
            python("app.py")
        ));
        config["processes"].as_array_mut().unwrap().push(json!({
            "id": "worker", "policy": "companion", "replicas": 3,
            "command": format!(
                "env > {}/env-{{{{replicaIndex}}}}; exec sleep 1000 # worker {{{{replicaIndex}}}}/{{{{replicaCount}}}}",
                dir.display()
            ),
            "env": {"SLOT": "{{replicaIndex}}", "GREETING": "{{env.RB_TEST_GREETING}}"}
        }));
        config
    });
    harness.start_with_env(&[("RB_TEST_GREETING", "hello-from-the-daemon")]);
    harness.deploy("v1");
    let web = harness.process_in("v1", "web").unwrap();
    assert!(
        web["command"]
            .as_str()
            .unwrap()
            .ends_with("# hello-from-the-daemon"),
        "{web}"
    );
    let worker = harness.process_in("v1", "worker#1").unwrap();
    assert!(
        worker["command"]
            .as_str()
            .unwrap()
            .ends_with("# worker 1/3"),
        "{worker}"
    );
    let dump = poll(PATIENCE, || {
        std::fs::read_to_string(harness.path("env-1"))
            .ok()
            .filter(|text| text.contains("SLOT="))
    })
    .expect("worker#1 wrote its environment");
    for (name, expected) in [
        ("SLOT", "1"),
        ("GREETING", "hello-from-the-daemon"),
        ("ROLLBRIDGE_REPLICA_INDEX", "1"),
        ("ROLLBRIDGE_REPLICA_COUNT", "3"),
        ("ROLLBRIDGE_PROCESS_ID", "worker"),
        ("ROLLBRIDGE_RELEASE_ID", "v1"),
    ] {
        assert_eq!(
            env_value(&dump, name).as_deref(),
            Some(expected),
            "{name} in {dump}"
        );
    }
}

#[test]
fn a_failed_startup_stops_every_process_it_started_with_the_stop_signal() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"][0]["health"]["timeoutMs"] = json!(1500);
        config["processes"][0]["env"] = json!({"APP_SIGNAL_LOG": dir.join("web-signals")});
        config["processes"].as_array_mut().unwrap().insert(
            0,
            json!({
                "id": "beacon", "policy": "service", "deployStrategy": "handoff",
                "command": python("app.py"),
                "port": {"from": 20000, "to": 20999},
                "env": {"APP_SIGNAL_LOG": dir.join("beacon-signals")}
            }),
        );
        config
    });
    harness.start();
    let error = harness.deploy_err("bad-release");
    assert!(error.starts_with("Health check failed"), "{error}");
    let events = events_of(&harness);
    let after_cleanup = |process_id: &str| -> Value {
        events
            .iter()
            .find(|e| {
                e["message"] == "release startup process status"
                    && e["data"]["phase"] == "after cleanup"
                    && e["data"]["processId"] == process_id
            })
            .unwrap_or_else(|| panic!("no after-cleanup status for {process_id}"))["data"]
            .clone()
    };
    // The fixture exits by itself on SIGTERM, so the signal it received is
    // read from its own log rather than from its exit status.
    for process_id in ["web", "beacon"] {
        let data = after_cleanup(process_id);
        assert_eq!(data["state"], "stopped", "{process_id}: {data}");
        assert_eq!(data["pid"], Value::Null, "{process_id}: {data}");
        let signals =
            std::fs::read_to_string(harness.path(&format!("{process_id}-signals"))).unwrap();
        assert_eq!(signals, "SIGTERM\n", "{process_id}");
    }
    for pid in harness.started_pids() {
        assert!(!group_alive(pid), "process group {pid} leaked");
    }
}

#[test]
fn a_failed_deploy_does_not_adopt_the_reloaded_config() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["processes"].as_array_mut().unwrap().insert(
            0,
            json!({
                "id": "svc", "policy": "service",
                "command": "exec sleep 1000 # first {{releaseId}}"
            }),
        );
        config
    });
    harness.start();
    harness.deploy("v1");
    harness.deploy("v2");
    let service_command = |harness: &Harness| -> String {
        harness.status()["services"][0]["process"]["command"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(service_command(&harness), "exec sleep 1000 # first v2");
    // The edited file changes the service template and the retention policy,
    // and breaks the health path: the deploy fails and nothing of the new file
    // may stick.
    harness.rewrite_config(|config| {
        config["processes"][0]["command"] = json!("exec sleep 1000 # second {{releaseId}}");
        config["releaseRetention"] = json!({"keep": 0});
        config["processes"][1]["health"]["path"] = json!("/not-ready");
        config["processes"][1]["health"]["timeoutMs"] = json!(300);
    });
    let error = harness.deploy_err("v3");
    assert!(error.starts_with("Health check failed"), "{error}");
    assert_eq!(service_command(&harness), "exec sleep 1000 # first v2");
    assert_eq!(harness.get("/release"), (200, "v2".to_string()));
    // `stop` prunes under the retention policy the daemon kept (keep 10), so
    // both stopped releases stay listed. (A rollback would not tell: it
    // reloads the file itself.)
    let stopped = harness.ok(json!({"command": "stop"}));
    let ids: Vec<&Value> = stopped["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["releaseId"])
        .collect();
    assert_eq!(ids, [&json!("v1"), &json!("v2")]);
    // Once the file is fixed, the next deploy adopts all of it.
    harness.rewrite_config(|config| {
        config["processes"][1]["health"]["path"] = json!("/ping");
        config["processes"][1]["health"]["timeoutMs"] = json!(10000);
    });
    harness.deploy("v4");
    assert_eq!(service_command(&harness), "exec sleep 1000 # second v4");
    let stopped = harness.ok(json!({"command": "stop"}));
    assert_eq!(
        stopped["releases"],
        json!([]),
        "keep 0 prunes every stopped release"
    );
}
