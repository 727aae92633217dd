//! Rollouts against the real daemon: the post-switch watch with automatic
//! rollback (error rate under load, a failing Lua check), a watch that passes,
//! canary shares, stickiness, promote and abort with open WebSockets.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The base config plus a `rollout` section.
fn with_rollout(rollout: Value) -> Harness {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["rollout"] = rollout;
        config
    });
    harness.start();
    harness
}

fn deploy_request(harness: &Harness, release_id: &str, extra: Value) -> Value {
    let mut request = json!({"command": "deploy", "releasePath": harness.release(release_id), "releaseId": release_id});
    for (key, value) in extra.as_object().unwrap() {
        request[key] = value.clone();
    }
    request
}

/// Sends a deploy of `release_id` from another thread and returns once its
/// post-switch watch shows in `status`; joining gives the deploy's reply.
fn deploy_into_watch(harness: &Harness, release_id: &str) -> std::thread::JoinHandle<Value> {
    let request = deploy_request(harness, release_id, json!({}));
    let socket = harness.socket.clone();
    let deploy = std::thread::spawn(move || control(&socket, request));
    wait_until(LONG_PATIENCE, "the watch", || {
        harness.status().get("rollout").is_some()
    });
    deploy
}

fn event_messages(harness: &Harness) -> Vec<String> {
    events_of(harness)
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn event(harness: &Harness, message: &str) -> Option<Value> {
    events_of(harness)
        .into_iter()
        .find(|e| e["message"] == message)
}

/// The pid of the release's process from its `process started` event (a canary
/// is not in `status.releases` until it is promoted).
fn started_pid(harness: &Harness, release_id: &str) -> i32 {
    events_of(harness)
        .iter()
        .find(|e| e["message"] == "process started" && e["data"]["releaseId"] == release_id)
        .and_then(|e| e["data"]["pid"].as_i64())
        .expect("a process started event") as i32
}

/// Clients hitting `/release` until stopped; every answer is sorted by release.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    answers: AtomicU64,
    /// Answers other than 200 from anything but `allowed_to_fail`, and errors.
    failures: Mutex<Vec<String>>,
}

fn run_load(
    port: u16,
    load: Arc<Load>,
    allowed_to_fail: &'static str,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !load.stop.load(Ordering::Relaxed) {
            match http_get(port, "/release") {
                Ok((200, _)) => {}
                Ok((_, body)) if body == allowed_to_fail => {}
                Ok((status, body)) => load
                    .failures
                    .lock()
                    .unwrap()
                    .push(format!("{status} {body}")),
                Err(error) => load.failures.lock().unwrap().push(error.to_string()),
            }
            load.answers.fetch_add(1, Ordering::Relaxed);
        }
    })
}

#[test]
fn a_release_failing_30_percent_is_rolled_back_under_load() {
    let harness = with_rollout(json!({"watchMs": 30000, "minRequests": 40}));
    harness.deploy("v1");
    let load = Arc::new(Load::default());
    let clients: Vec<_> = (0..2)
        .map(|_| run_load(harness.proxy_port, load.clone(), "v2-flaky"))
        .collect();
    wait_until(LONG_PATIENCE, "load before the deploy", || {
        load.answers.load(Ordering::Relaxed) > 20
    });

    let release_path = harness.release("v2-flaky");
    let run = std::process::Command::new(BIN)
        .args(["deploy", "--config"])
        .arg(&harness.config_path)
        .args(["--release-path", &release_path, "--release-id", "v2-flaky"])
        .output()
        .unwrap();
    let answered = load.answers.load(Ordering::Relaxed);
    wait_until(LONG_PATIENCE, "load after the rollback", || {
        load.answers.load(Ordering::Relaxed) > answered + 20
    });
    load.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }

    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.starts_with("Error: Rolled back release \"v2-flaky\": 5xx rate 0."),
        "{stderr}"
    );
    assert!(stderr.contains(" > 0.05 over "), "{stderr}");
    assert_eq!(
        *load.failures.lock().unwrap(),
        Vec::<String>::new(),
        "the old release never failed"
    );
    assert_eq!(harness.status()["activeReleaseId"], "v1");
    assert!(harness.status().get("rollout").is_none());
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    wait_until(LONG_PATIENCE, "the flaky release stopped", || {
        harness
            .release_status("v2-flaky")
            .is_none_or(|r| r["state"] == "stopped")
    });
    let rollback = event(&harness, "automatic rollback").expect("automatic rollback event");
    assert_eq!(rollback["data"]["releaseId"], "v2-flaky");
    assert_eq!(rollback["data"]["previousReleaseId"], "v1");
    let messages = event_messages(&harness);
    assert!(messages.contains(&"rollout started".to_string()));
    assert!(messages.contains(&"rollout failed".to_string()));
}

#[test]
fn a_healthy_release_passes_its_watch_and_the_old_release_retires() {
    let harness = with_rollout(json!({}));
    harness.deploy("v1");
    let v1_pid = pid_of(&harness.process_in("v1", "web").unwrap());
    let request = deploy_request(&harness, "v2", json!({"watchMs": 2500}));
    let socket = harness.socket.clone();
    let deploy = std::thread::spawn(move || control(&socket, request));
    let watching = poll(LONG_PATIENCE, || {
        harness
            .status()
            .get("rollout")
            .cloned()
            .filter(|r| r["phase"] == "watching")
    })
    .expect("status shows the watch");
    assert_eq!(watching["releaseId"], "v2");
    assert_eq!(watching["previousReleaseId"], "v1");
    assert_eq!(watching["percent"], 100);
    assert!(
        pid_alive(v1_pid),
        "the previous release keeps running during the watch"
    );
    for _ in 0..5 {
        assert_eq!(harness.get("/release"), (200, "v2".to_string()));
    }
    let reply = deploy.join().unwrap();
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(reply["activeReleaseId"], "v2");
    let passed = event(&harness, "rollout passed").expect("rollout passed");
    assert_eq!(passed["data"]["releaseId"], "v2");
    assert!(passed["data"]["requests"].as_u64().unwrap() >= 5);
    assert_eq!(passed["data"]["errors"], 0);
    wait_until(LONG_PATIENCE, "v1 retired", || !pid_alive(v1_pid));
    assert!(harness.status().get("rollout").is_none());
}

#[test]
fn a_failing_lua_check_rolls_back() {
    let mut harness = Harness::new(|dir, port| {
        std::fs::write(
            dir.join("check.lua"),
            r#"
            return {
              check = function(ctx)
                local stats = ctx.options.stats
                assert(stats.requests ~= nil and stats.elapsedMs ~= nil)
                if ctx.process.releaseId == "v2" then
                  return false, "checkout probe failed"
                end
                return true
              end,
            }
            "#,
        )
        .unwrap();
        let mut config = base_config(dir, port);
        config["rollout"] = json!({"watchMs": 20000, "check": {"lua": "check.lua", "fn": "check"}});
        config
    });
    harness.start();
    harness.deploy("v1");
    let error = harness.deploy_err("v2");
    assert_eq!(
        error,
        "Rolled back release \"v2\": rollout.check: checkout probe failed"
    );
    assert_eq!(harness.status()["activeReleaseId"], "v1");
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
}

#[test]
fn rollback_during_a_watch_ends_it_and_goes_back() {
    let harness = with_rollout(json!({"watchMs": 60000}));
    harness.deploy("v1");
    let deploy = deploy_into_watch(&harness, "v2");
    let reply = harness.ok(json!({"command": "rollback"}));
    assert_eq!(reply["activeReleaseId"], "v1", "{reply}");
    assert_eq!(reply["previousReleaseId"], "v2");
    let deployed = deploy.join().unwrap();
    assert_eq!(
        deployed["error"],
        "Rolled back release \"v2\": rollback requested"
    );
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
}

#[test]
fn a_canary_gets_its_share_then_promote_switches_and_retires_the_old_release() {
    let harness = with_rollout(json!({}));
    harness.deploy("v1");
    let v1_pid = pid_of(&harness.process_in("v1", "web").unwrap());
    let reply = harness.ok(deploy_request(&harness, "v2", json!({"canaryPercent": 20})));
    assert_eq!(
        reply,
        json!({"status": "success", "activeReleaseId": "v1", "canaryReleaseId": "v2", "percent": 20})
    );
    let status = harness.status();
    assert_eq!(status["activeReleaseId"], "v1");
    assert_eq!(status["rollout"]["phase"], "canary");
    assert_eq!(status["rollout"]["percent"], 20);
    let on_canary = (0..1000)
        .filter(|_| harness.get("/release").1 == "v2")
        .count();
    assert!(
        (150..=250).contains(&on_canary),
        "{on_canary} of 1000 on the canary"
    );
    assert_eq!(harness.status()["rollout"]["requests"], on_canary as u64);

    // A deploy waits while the canary is open.
    let waiting_request = deploy_request(&harness, "v3", json!({}));
    let socket = harness.socket.clone();
    let waiting = std::thread::spawn(move || control(&socket, waiting_request));

    let set = harness.ok(json!({"command": "rollout", "action": "set", "percent": 60}));
    assert_eq!(set["percent"], 60);
    assert!(event(&harness, "rollout updated").is_some());
    // A WebSocket on the old release stays open through the promote until v1 drains.
    let mut old_socket = loop {
        let mut socket = ws_connect(harness.proxy_port);
        if ws_echo(&mut socket, "release") == "v1" {
            break socket;
        }
    };
    let promoted = harness.ok(json!({"command": "rollout", "action": "promote"}));
    assert_eq!(promoted["activeReleaseId"], "v2", "{promoted}");
    assert_eq!(promoted["previousReleaseId"], "v1");
    assert_eq!(harness.get("/release"), (200, "v2".to_string()));
    assert_eq!(ws_echo(&mut old_socket, "after promote"), "after promote");
    wait_until(LONG_PATIENCE, "v1 retired", || !pid_alive(v1_pid));
    assert!(
        old_socket.read().is_err() || old_socket.read().is_err(),
        "the old release's WebSocket closed with its drain"
    );
    let deployed = waiting.join().unwrap();
    assert_eq!(
        deployed["activeReleaseId"], "v3",
        "the waiting deploy ran after the promote"
    );
    assert_eq!(deployed["previousReleaseId"], "v2");
}

#[test]
fn sticky_header_values_never_change_release() {
    let harness = with_rollout(json!({"stickyBy": "header:X-User"}));
    harness.deploy("v1");
    harness.ok(deploy_request(&harness, "v2", json!({"canaryPercent": 40})));
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..40 {
        let name = format!("user-{user}");
        let first =
            http_get_with_headers(harness.proxy_port, "/release", &[("X-User", &name)]).unwrap();
        for _ in 0..5 {
            let again = http_get_with_headers(harness.proxy_port, "/release", &[("X-User", &name)])
                .unwrap();
            assert_eq!(again, first, "{name} changed release");
        }
        seen.insert(first.1);
    }
    assert_eq!(seen.len(), 2, "both releases have users: {seen:?}");
}

#[test]
fn abort_ends_the_canary_and_its_websocket_closes_like_a_drained_one() {
    let harness = with_rollout(json!({}));
    harness.deploy("v1");
    harness.ok(deploy_request(&harness, "v2", json!({"canaryPercent": 50})));
    let canary_pid = started_pid(&harness, "v2");
    let mut sockets: Vec<(Ws, String)> = Vec::new();
    while !(sockets.iter().any(|(_, r)| r == "v1") && sockets.iter().any(|(_, r)| r == "v2")) {
        let mut socket = ws_connect(harness.proxy_port);
        let release = ws_echo(&mut socket, "release");
        sockets.push((socket, release));
        assert!(sockets.len() < 50, "never reached both releases");
    }
    let reply = harness.ok(json!({"command": "rollout", "action": "abort"}));
    assert_eq!(reply["activeReleaseId"], "v1");
    assert_eq!(reply["abortedReleaseId"], "v2");
    assert!(harness.status().get("rollout").is_none());
    for _ in 0..20 {
        assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    }
    // Open WebSockets keep working until the canary has drained.
    for (socket, release) in &mut sockets {
        assert_eq!(ws_echo(socket, "release"), *release);
    }
    wait_until(LONG_PATIENCE, "the canary stopped after its drain", || {
        !pid_alive(canary_pid)
    });
    for (socket, release) in &mut sockets {
        if release == "v1" {
            assert_eq!(ws_echo(socket, "still"), "still");
        }
    }
    let failed = event(&harness, "rollout failed").unwrap();
    assert_eq!(failed["data"]["reason"], "aborted by rollout abort");
}

#[test]
fn rollout_commands_need_an_open_canary_and_valid_fields() {
    let harness = with_rollout(json!({}));
    assert_eq!(
        harness.err(json!({"command": "rollout", "action": "promote"})),
        "No canary is open; start one with \"rollbridge deploy --canary <percent>\"."
    );
    assert_eq!(
        harness.err(json!({"command": "rollout", "action": "grow"})),
        "action must be \"set\", \"promote\" or \"abort\""
    );
    assert_eq!(
        harness.err(json!({"command": "rollout", "action": "set"})),
        "percent is required"
    );
    assert_eq!(
        harness.err(json!({"command": "rollout", "action": "set", "percent": 101})),
        "percent must be a whole number from 0 to 100"
    );
    let path = harness.release("v1");
    for bad in [json!(0), json!(100), json!(2.5), json!("20")] {
        assert_eq!(
            harness.err(json!({"command": "deploy", "releasePath": path, "canaryPercent": bad})),
            "canaryPercent must be a whole number from 1 to 99"
        );
    }
    assert_eq!(
        harness.err(json!({"command": "deploy", "releasePath": path, "watchMs": -1})),
        "watchMs must be a whole number of milliseconds, 0 or more"
    );
    assert_eq!(
        harness.err(json!({"command": "deploy", "releasePath": path, "canaryPercent": 10})),
        "deploy --canary needs an active release to share traffic with; deploy without --canary first"
    );
}

#[test]
fn a_failing_canary_is_aborted_automatically_and_rollback_ends_a_canary() {
    let harness = with_rollout(json!({"minRequests": 20}));
    harness.deploy("v1");
    harness.ok(deploy_request(
        &harness,
        "v2-flaky",
        json!({"canaryPercent": 50}),
    ));
    let load = Arc::new(Load::default());
    let client = run_load(harness.proxy_port, load.clone(), "v2-flaky");
    wait_until(LONG_PATIENCE, "the canary aborted", || {
        harness.status().get("rollout").is_none()
    });
    load.stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    assert_eq!(*load.failures.lock().unwrap(), Vec::<String>::new());
    let rollback = event(&harness, "automatic rollback").expect("automatic rollback");
    assert_eq!(rollback["data"]["releaseId"], "v2-flaky");
    assert!(
        rollback["data"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("5xx rate "),
        "{rollback}"
    );
    for _ in 0..20 {
        assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    }

    harness.ok(deploy_request(&harness, "v3", json!({"canaryPercent": 30})));
    let reply = harness.ok(json!({"command": "rollback"}));
    assert_eq!(reply["activeReleaseId"], "v1", "{reply}");
    assert_eq!(reply["previousReleaseId"], "v3");
    assert!(harness.status().get("rollout").is_none());
    for _ in 0..20 {
        assert_eq!(harness.get("/release"), (200, "v1".to_string()));
    }
}

/// `rollbridge validate` on a config file written into a fresh directory.
fn validate(name: &str, text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn the_rollout_section_loads_from_lua_and_legacy_javascript_configs() {
    let lua = r#"
        return {
          proxy = { port = 0, readinessPath = "/_rollbridge/ready" },
          rollout = {
            watchMs = 60000, maxP99Ms = 800, stickyBy = "cookie:session",
            check = function(ctx) return ctx.options.stats.errorRate < 0.01, "too many errors" end,
          },
          processes = { { id = "web", policy = "proxied", command = "exec app", port = { from = 0, to = 0 } } },
        }
    "#;
    let (code, text) = validate("rollbridge.lua", lua);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = validate(
        "rollbridge.lua",
        &lua.replace("maxP99Ms = 800", "maxP99ms = 800"),
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("rollout.maxP99ms is not a known key"),
        "{text}"
    );
    assert!(
        text.contains("maxP99Ms"),
        "the fix names the right key: {text}"
    );

    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok()
    {
        let js = r#"export default {
          proxy: { port: 0 },
          rollout: { watchMs: 30000, maxErrorRate: 0.1, stickyBy: "header:X-User" },
          processes: [{ id: "web", policy: "proxied", command: "exec app", port: { from: 0, to: 0 } }],
        };"#;
        let (code, text) = validate("rollbridge.mjs", js);
        assert_eq!(code, Some(0), "{text}");
        let (code, text) = validate("rollbridge.mjs", &js.replace("0.1", "1.5"));
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains("rollout.maxErrorRate must be a number between 0 and 1"),
            "{text}"
        );
    }
}

#[test]
fn failing_health_probes_during_the_watch_roll_back() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["rollout"] = json!({"watchMs": 30000, "healthFailures": 2});
        config["processes"][0]["env"] =
            json!({"APP_HEALTH_GATE": dir.join("healthy").to_string_lossy()});
        config
    });
    std::fs::write(harness.path("healthy"), "").unwrap();
    harness.start();
    harness.deploy("v1");
    let deploy = deploy_into_watch(&harness, "v2");
    std::fs::remove_file(harness.path("healthy")).unwrap();
    let reply = deploy.join().unwrap();
    let error = reply["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.starts_with(
            "Rolled back release \"v2\": 2 consecutive health probes failed (healthFailures 2): "
        ),
        "{reply}"
    );
    assert_eq!(harness.status()["activeReleaseId"], "v1");
}

#[test]
fn metrics_show_the_rollout_phase_and_percent() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["metrics"] = json!({"port": 0});
        config
    });
    harness.start();
    harness.deploy("v1");
    let port = metrics_port(&harness);
    let scrape = || http_get(port, "/metrics").unwrap().1;
    let idle = scrape();
    assert!(
        idle.contains("rollbridge_rollout_phase{phase=\"canary\"} 0"),
        "{idle}"
    );
    assert!(idle.contains("rollbridge_rollout_percent 0"), "{idle}");
    harness.ok(deploy_request(&harness, "v2", json!({"canaryPercent": 20})));
    let canary = scrape();
    assert!(
        canary.contains("rollbridge_rollout_phase{phase=\"canary\"} 1"),
        "{canary}"
    );
    assert!(
        canary.contains("rollbridge_rollout_phase{phase=\"watching\"} 0"),
        "{canary}"
    );
    assert!(canary.contains("rollbridge_rollout_percent 20"), "{canary}");
    harness.ok(json!({"command": "rollout", "action": "abort"}));
    assert!(scrape().contains("rollbridge_rollout_percent 0"));
}
