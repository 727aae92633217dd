//! Pause, maintenance and the readiness path against the real daemon.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const READY: &str = "/_rollbridge/ready";

/// The base config with a readiness path and a request log for the app.
fn harness() -> Harness {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["proxy"]["readinessPath"] = json!(READY);
        config["processes"][0]["env"] =
            json!({"APP_REQUEST_LOG": dir.join("requests.log").to_string_lossy()});
        config
    });
    harness.start();
    harness
}

/// The raw response (head and body) of one GET on a fresh connection.
fn raw_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn held(harness: &Harness) -> u64 {
    harness.status()["traffic"]["held"].as_u64().unwrap_or(0)
}

#[test]
fn pause_holds_requests_and_resume_releases_them_in_order() {
    let harness = harness();
    harness.deploy("v1");
    assert!(
        harness.status().get("traffic").is_none(),
        "no traffic key when unused"
    );
    let reply = harness.ok(json!({"command": "pause"}));
    assert_eq!(reply["maxMs"], 30000);
    assert_eq!(
        harness.status()["traffic"],
        json!({"paused": true, "maintenance": false, "held": 0})
    );
    assert_eq!(harness.get(READY).0, 503, "not ready while paused");

    let port = harness.proxy_port;
    let mut clients = Vec::new();
    for n in 0..5 {
        clients.push(std::thread::spawn(move || {
            http_get(port, &format!("/release?n={n}"))
        }));
        wait_until(LONG_PATIENCE, "the request held", || {
            held(&harness) == n + 1
        });
    }
    // A deploy under pause health-checks and switches as usual.
    harness.deploy("v2");
    assert_eq!(held(&harness), 5, "still held after the deploy");
    let reply = harness.ok(json!({"command": "resume"}));
    assert_eq!(reply["held"], 5);
    for client in clients {
        assert_eq!(
            client.join().unwrap().unwrap(),
            (200, "v2".to_string()),
            "none refused"
        );
    }
    let log = file_lines(&harness.path("requests.log"));
    let expected: Vec<String> = (0..5).map(|n| format!("/release?n={n}")).collect();
    assert_eq!(log, expected, "released in arrival order");
    assert!(harness.status().get("traffic").is_none());
    assert_eq!(harness.get(READY), (200, "ready\n".to_string()));
    let resumed = events_of(&harness)
        .into_iter()
        .find(|e| e["message"] == "traffic resumed")
        .unwrap();
    assert_eq!(resumed["data"]["held"], 5);
}

#[test]
fn a_request_held_past_the_bound_gets_503() {
    let harness = harness();
    harness.deploy("v1");
    harness.ok(json!({"command": "pause", "maxMs": 300}));
    let started = Instant::now();
    let response = raw_get(harness.proxy_port, "/release");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("retry-after: 30"),
        "{response}"
    );
    assert!(
        response.ends_with("Service paused; try again shortly\n"),
        "{response}"
    );
    harness.ok(json!({"command": "resume"}));
    assert_eq!(harness.get("/release"), (200, "v1".to_string()));
}

#[test]
fn maintenance_answers_503_with_the_message_and_survives_deploys() {
    let harness = harness();
    harness.deploy("v1");
    let reply =
        harness.ok(json!({"command": "maintenance", "enabled": true, "message": "Back at 3"}));
    assert_eq!(reply["maintenance"], true);
    let response = raw_get(harness.proxy_port, "/release");
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("retry-after: 30"),
        "{response}"
    );
    assert!(response.ends_with("\r\n\r\nBack at 3\n"), "{response}");
    assert_eq!(harness.get(READY).0, 503);
    assert_eq!(
        harness.status()["traffic"],
        json!({"paused": false, "maintenance": true})
    );
    harness.deploy("v2");
    assert_eq!(
        harness.get("/release").0,
        503,
        "maintenance survives a deploy"
    );
    harness.ok(json!({"command": "maintenance", "enabled": false}));
    assert_eq!(harness.get("/release"), (200, "v2".to_string()));
    let messages: Vec<Value> = events_of(&harness)
        .iter()
        .map(|e| e["message"].clone())
        .collect();
    assert!(messages.contains(&json!("maintenance on")));
    assert!(messages.contains(&json!("maintenance off")));
}

#[test]
fn readiness_flips_to_503_when_shutdown_starts() {
    let mut harness = Harness::new(|dir, port| {
        let mut config = base_config(dir, port);
        config["proxy"]["readinessPath"] = json!(READY);
        // The app ignores SIGTERM, so stopping it takes the stop window.
        config["processes"][0]["env"] = json!({"APP_IGNORE_TERM": "1"});
        config["processes"][0]["gracefulStopMs"] = json!(3000);
        config
    });
    harness.start();
    harness.deploy("v1");
    let mut client = KeepAlive::connect(harness.proxy_port).unwrap();
    assert_eq!(client.get(READY).unwrap().0, 200);
    let socket = harness.socket.clone();
    let shutdown = std::thread::spawn(move || control(&socket, json!({"command": "shutdown"})));
    let flipped = poll(LONG_PATIENCE, || {
        let (status, _, _) = client.get(READY).ok()?;
        (status == 503).then_some(())
    });
    assert!(
        flipped.is_some(),
        "readiness answered 503 during the shutdown"
    );
    assert!(
        !shutdown.is_finished(),
        "the flip came at the start of the shutdown"
    );
    shutdown.join().unwrap();
    harness.wait_exit(LONG_PATIENCE);
}

#[test]
fn traffic_commands_check_their_fields() {
    let harness = harness();
    assert_eq!(
        harness.err(json!({"command": "pause", "maxMs": -5})),
        "maxMs must be a whole number of milliseconds, 0 or more"
    );
    assert_eq!(
        harness.err(json!({"command": "maintenance"})),
        "enabled must be true or false"
    );
    assert_eq!(
        harness.ok(json!({"command": "resume"})),
        json!({"status": "success", "paused": false, "held": 0})
    );
}

#[test]
fn cli_commands_send_their_requests_and_check_their_flags() {
    let harness = harness();
    harness.deploy("v1");
    let config = harness.config_path.to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(BIN)
            .args(args)
            .args(["--config", &config])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = run(&["maintenance", "on", "--message", "Upgrading"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("\"message\": \"Upgrading\""), "{stdout}");
    assert!(raw_get(harness.proxy_port, "/").ends_with("Upgrading\n"));
    assert_eq!(run(&["maintenance", "off"]).0, Some(0));
    let (code, stdout, _) = run(&["pause", "--max-ms", "1500"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("\"maxMs\": 1500"), "{stdout}");
    assert_eq!(run(&["resume"]).0, Some(0));
    let (code, _, stderr) = run(&["rollout", "promote"]);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("Error: No canary is open"), "{stderr}");

    for bad in [
        vec!["deploy", "--release-path", "/tmp", "--canary", "0"],
        vec!["deploy", "--release-path", "/tmp", "--canary", "100"],
        vec!["deploy", "--release-path", "/tmp", "--watch-ms", "soon"],
        vec!["rollout", "set", "101"],
        vec!["rollout", "grow"],
        vec!["pause", "--max-ms", "-1"],
        vec!["maintenance"],
        vec!["maintenance", "on", "--color", "red"],
    ] {
        let (code, _, stderr) = run(&bad);
        assert_eq!(code, Some(1), "{bad:?}");
        assert!(!stderr.is_empty(), "{bad:?} says what is wrong");
    }
    assert_eq!(
        harness.get("/release"),
        (200, "v1".to_string()),
        "nothing changed"
    );
}
