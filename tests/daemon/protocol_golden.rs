//! Golden replies of a real daemon: every command's reply line for a fixed
//! sequence (start, deploy, deploy, restart, rollback, stop, errors, shutdown),
//! compared byte for byte after masking what changes from run to run (pids,
//! ports, times, the temp dir, the build digest). The unit goldens in
//! `src/control/golden.rs` pin the types; this pins what the daemon fills in.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::time::Duration;

/// The web app plus a companion `restart` can target.
fn config(dir: &std::path::Path, proxy_port: u16) -> Value {
    let mut config = base_config(dir, proxy_port);
    config["application"] = json!("golden");
    config["processes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "worker", "policy": "companion", "command": "exec sleep 300"}));
    config
}

/// One request's reply line, masked.
fn reply(harness: &Harness, request: &str) -> String {
    let reply = control_raw(&harness.socket, request).expect("control request");
    let mut masker = Masker::new(harness);
    masker.collect_ports(&reply);
    masker.mask(reply).to_string()
}

/// Replaces run-dependent values with placeholders; keys and their order stay.
struct Masker {
    dir: String,
    ports: Vec<String>,
}

impl Masker {
    fn new(harness: &Harness) -> Masker {
        Masker {
            dir: harness.dir.path().to_string_lossy().into_owned(),
            ports: Vec::new(),
        }
    }

    /// The app ports a reply shows, so log lines that print them can be masked.
    fn collect_ports(&mut self, value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    if key == "ports" {
                        let ports = value.as_object().into_iter().flatten();
                        self.ports.extend(ports.map(|(_, port)| port.to_string()));
                    }
                    self.collect_ports(value);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| self.collect_ports(item)),
            _ => {}
        }
    }

    fn mask(&self, value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    // Sampled a few times a second: present or not depending on timing.
                    .filter(|(key, _)| key != "rssBytes")
                    .map(|(key, value)| {
                        let masked = match key.as_str() {
                            "pid" if value.is_number() => json!("<pid>"),
                            "port" => json!("<port>"),
                            "uptimeMs" => json!("<ms>"),
                            // Group members appear once the sampler has seen them.
                            "children" => json!("<children>"),
                            "digest" | "version" => json!(format!("<{key}>")),
                            "ports" => Value::Object(
                                value
                                    .as_object()
                                    .unwrap()
                                    .keys()
                                    .map(|id| (id.clone(), json!("<port>")))
                                    .collect(),
                            ),
                            // stdout and stderr are read by separate threads.
                            "logs" => {
                                let mut lines: Vec<Value> = value
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .map(|line| self.mask(line.clone()))
                                    .collect();
                                lines.sort_by_key(|line| line.to_string());
                                Value::Array(lines)
                            }
                            _ => self.mask(value),
                        };
                        (key, masked)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.mask(v)).collect()),
            Value::String(text) => Value::String(self.mask_text(&text)),
            other => other,
        }
    }

    fn mask_text(&self, text: &str) -> String {
        if is_iso_time(text) {
            return "<time>".into();
        }
        let mut text = text.replace(&self.dir, "<dir>");
        for port in &self.ports {
            text = text.replace(port.as_str(), "<port>");
        }
        text
    }
}

fn is_iso_time(text: &str) -> bool {
    text.len() == 24 && text.ends_with('Z') && text.as_bytes()[10] == b'T'
}

/// Waits until every running `web` shows both of its start-up lines, so the
/// `logs` of a status are complete.
fn wait_for_web_output(harness: &Harness) {
    wait_until(Duration::from_secs(30), "the web output in status", || {
        let status = harness.status();
        status["releases"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|release| release["processes"].as_array().unwrap())
            .filter(|process| process["id"] == "web" && process["state"] == "running")
            .all(|process| process["logs"].as_array().unwrap().len() == 2)
    });
}

fn wait_for_release_state(harness: &Harness, release_id: &str, state: &str) {
    wait_until(
        Duration::from_secs(30),
        &format!("release {release_id} {state}"),
        || {
            harness
                .release_status(release_id)
                .is_some_and(|r| r["state"] == state)
        },
    );
}

/// A process object of the fixed config: `worker` (a companion) or `web`.
fn process(id: &str, release: &str, state: &str, reason: &str) -> String {
    let (command, logs) = match id {
        "web" => (
            "exec python3 <fixtures>/app.py".to_string(),
            format!(
                r#"[{{"at":"<time>","line":"listening on <port> for {release}","stream":"stdout"}},{{"at":"<time>","line":"stderr hello from {release}","stream":"stderr"}}]"#
            ),
        ),
        _ => ("exec sleep 300".to_string(), "[]".to_string()),
    };
    let head = format!(
        r#"{{"children":"<children>","command":"{command}","cwd":"<dir>/releases/{release}","#
    );
    let exit = match (id, state) {
        (_, "running") => "",
        ("web", _) => r#""exitCode":0,"exitSignal":null,"#,
        _ => r#""exitCode":null,"exitSignal":"SIGTERM","#,
    };
    let middle =
        format!(r#""id":"{id}","lastStartReason":"{reason}","logs":{logs},"memoryRestarts":0,"#);
    let tail = match state {
        "running" => {
            r#""pid":"<pid>","restarts":0,"startedAt":"<time>","state":"running","uptimeMs":"<ms>"}"#
        }
        _ => r#""restarts":0,"startedAt":"<time>","state":"stopped"}"#,
    };
    format!("{head}{exit}{middle}{tail}")
}

/// A release object with its `worker` and `web` (running when the release is
/// active); `drained` when it has a `drainStartedAt`.
fn release(id: &str, state: &str, worker_reason: &str, drained: bool) -> String {
    let process_state = if state == "active" {
        "running"
    } else {
        "stopped"
    };
    let processes = [
        process("worker", id, process_state, worker_reason),
        process("web", id, process_state, "deploy"),
    ];
    let drain = if drained {
        r#""drainStartedAt":"<time>","#
    } else {
        ""
    };
    let stopped = if state == "stopped" {
        r#","stoppedAt":"<time>""#
    } else {
        ""
    };
    format!(
        r#"{{"activatedAt":"<time>","connectionCount":0,"connections":{{"http":0,"websocket":0}},{drain}"ports":{{"web":"<port>"}},"processes":[{}],"releaseId":"{id}","releasePath":"<dir>/releases/{id}","revision":"{id}","state":"{state}"{stopped}}}"#,
        processes.join(",")
    )
}

/// A whole status reply around `releases`.
fn status(active: &str, releases: &[String]) -> String {
    format!(
        r#"{{"status":"success","activeReleaseId":{active},"application":"golden","control":{{"path":"<dir>/control.sock"}},"daemonRuntime":{{"digest":"<digest>","format":1,"path":"<path>","version":"<version>"}},"logging":{{"droppedLines":0,"processDroppedLines":0}},"orphans":[],"proxy":{{"host":"127.0.0.1","port":"<port>","upstreamHost":"127.0.0.1"}},"releases":[{}],"services":[],"singletons":[]}}"#,
        releases.join(",")
    )
}

#[test]
fn every_command_replies_with_its_golden_line() {
    let mut harness = Harness::new(config);
    harness.start();
    let fixtures = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let golden = |text: String| text.replace("<fixtures>", &fixtures);

    // A daemon without releases.
    assert_eq!(
        mask_runtime_path(&reply(&harness, r#"{"command":"status"}"#)),
        status("null", &[])
    );

    // Deploys: the reply names the new and the previous release.
    let v1 = harness.release("v1");
    let v2 = harness.release("v2");
    assert_eq!(
        reply(
            &harness,
            &json!({"command": "deploy", "releasePath": v1, "releaseId": "v1"}).to_string()
        ),
        r#"{"status":"success","activeReleaseId":"v1","previousReleaseId":null}"#
    );
    assert_eq!(
        reply(
            &harness,
            &json!({"command": "deploy", "releasePath": v2, "releaseId": "v2"}).to_string()
        ),
        r#"{"status":"success","activeReleaseId":"v2","previousReleaseId":"v1"}"#
    );
    wait_for_release_state(&harness, "v1", "stopped");
    wait_for_web_output(&harness);
    let v1_drained = release("v1", "stopped", "deploy", true);
    let serving = release("v2", "active", "deploy", false);
    assert_eq!(
        mask_runtime_path(&reply(&harness, r#"{"command":"status"}"#)),
        golden(status(r#""v2""#, &[v1_drained, serving]))
    );

    // `restart` names what it restarted.
    assert_eq!(
        reply(&harness, r#"{"command":"restart","processId":"worker"}"#),
        r#"{"status":"success","restarted":["worker"]}"#
    );

    // `rollback` is a deploy of a retained release.
    assert_eq!(
        reply(&harness, r#"{"command":"rollback","releaseId":"v1"}"#),
        r#"{"status":"success","activeReleaseId":"v1","previousReleaseId":"v2"}"#
    );
    wait_for_release_state(&harness, "v2", "stopped");
    wait_for_web_output(&harness);

    // `stop` answers with the status afterwards.
    let stopped = mask_runtime_path(&reply(&harness, r#"{"command":"stop","releaseId":"v1"}"#));
    let v1_stopped = release("v1", "stopped", "deploy", false);
    let v2_drained = release("v2", "stopped", "manual", true);
    assert_eq!(stopped, golden(status("null", &[v1_stopped, v2_drained])));

    // Errors have one shape whatever went wrong.
    assert_eq!(
        reply(&harness, r#"{"command":"stop","releaseId":"v9"}"#),
        r#"{"error":"Release not found: v9","status":"error"}"#
    );
    assert_eq!(
        reply(&harness, r#"{"command":"bogus"}"#),
        r#"{"error":"Unknown command: bogus","status":"error"}"#
    );
    assert_eq!(
        reply(&harness, "not json"),
        r#"{"error":"Invalid JSON: expected ident at line 1 column 2","status":"error"}"#
    );
    assert_eq!(
        reply(&harness, r#"{"command":"deploy"}"#),
        r#"{"error":"releasePath is required","status":"error"}"#
    );
    // The last event is the failure just answered.
    assert_eq!(
        reply(&harness, r#"{"command":"events","limit":1}"#),
        r#"{"status":"success","events":[{"at":"<time>","data":{"error":"releasePath is required"},"message":"command failed"}]}"#
    );

    assert_eq!(
        reply(&harness, r#"{"command":"shutdown"}"#),
        r#"{"status":"success","message":"shutdown"}"#
    );
    harness.wait_exit(Duration::from_secs(30));
}

/// `daemonRuntime.path` is the directory of the test build's binary.
fn mask_runtime_path(line: &str) -> String {
    let mut value: Value = serde_json::from_str(line).unwrap();
    if let Some(runtime) = value.get_mut("daemonRuntime") {
        runtime["path"] = json!("<path>");
    }
    value.to_string()
}
