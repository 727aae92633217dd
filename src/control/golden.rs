//! Golden lines: the exact bytes of every request the CLI sends and of every
//! reply the daemon writes, as they were before the protocol was typed (key
//! names, key order, `null` versus absent keys). `tests/daemon/protocol_golden.rs`
//! checks the same shapes against a real daemon.

use super::protocol::{
    Request, RequestError, RolloutAction, error_reply, reply_line, success_reply,
};
use super::reply::{
    AbortReply, CanaryReply, DeployPayload, DeployReply, EventsReply, MaintenanceReply,
    MessageReply, PauseReply, RestartReply, ResumeReply, RolloutReply, payload_object,
};
use super::status::*;
use crate::events::EventRecord;
use serde::Serialize;
use serde_json::json;

const AT: &str = "2026-05-23T14:31:09.512Z";

fn success_line(payload: &impl Serialize) -> String {
    reply_line(&success_reply(payload_object(payload).unwrap()))
}

fn s(text: &str) -> String {
    text.to_string()
}

#[test]
fn requests_are_the_lines_the_cli_sends() {
    let cases = [
        (Request::Status, r#"{"command":"status"}"#),
        (Request::Events { limit: None }, r#"{"command":"events"}"#),
        (
            Request::Events { limit: Some(5.0) },
            r#"{"command":"events","limit":5}"#,
        ),
        (
            Request::Deploy {
                release_path: s("/srv/v2"),
                release_id: Some(s("v2")),
                revision: Some(s("abc")),
                watch_ms: None,
                canary_percent: None,
            },
            r#"{"command":"deploy","releasePath":"/srv/v2","releaseId":"v2","revision":"abc"}"#,
        ),
        (
            Request::Deploy {
                release_path: s("/srv/v2"),
                release_id: None,
                revision: None,
                watch_ms: Some(60000),
                canary_percent: Some(20),
            },
            r#"{"command":"deploy","releasePath":"/srv/v2","watchMs":60000,"canaryPercent":20}"#,
        ),
        (
            Request::Rollout {
                action: RolloutAction::Set,
                percent: Some(30),
            },
            r#"{"command":"rollout","action":"set","percent":30}"#,
        ),
        (
            Request::Rollout {
                action: RolloutAction::Promote,
                percent: None,
            },
            r#"{"command":"rollout","action":"promote"}"#,
        ),
        (
            Request::Pause { max_ms: Some(5000) },
            r#"{"command":"pause","maxMs":5000}"#,
        ),
        (Request::Resume, r#"{"command":"resume"}"#),
        (
            Request::Maintenance {
                enabled: true,
                message: Some(s("Back at 10:00")),
            },
            r#"{"command":"maintenance","enabled":true,"message":"Back at 10:00"}"#,
        ),
        (
            Request::Maintenance {
                enabled: false,
                message: None,
            },
            r#"{"command":"maintenance","enabled":false}"#,
        ),
        (
            Request::Deploy {
                release_path: s("/srv/v2"),
                release_id: None,
                revision: None,
                watch_ms: None,
                canary_percent: None,
            },
            r#"{"command":"deploy","releasePath":"/srv/v2"}"#,
        ),
        (
            Request::Rollback {
                release_id: Some(s("v1")),
            },
            r#"{"command":"rollback","releaseId":"v1"}"#,
        ),
        (
            Request::Rollback { release_id: None },
            r#"{"command":"rollback"}"#,
        ),
        (
            Request::Stop {
                release_id: Some(s("")),
            },
            r#"{"command":"stop","releaseId":""}"#,
        ),
        (
            Request::Restart {
                process_id: Some(s("worker")),
                policy: Some(s("companion")),
            },
            r#"{"command":"restart","processId":"worker","policy":"companion"}"#,
        ),
        (
            Request::Restart {
                process_id: None,
                policy: None,
            },
            r#"{"command":"restart"}"#,
        ),
        (Request::Shutdown, r#"{"command":"shutdown"}"#),
        (
            Request::RetireOwner {
                attestation: s("sha256:00"),
            },
            r#"{"command":"retire-owner","attestation":"sha256:00"}"#,
        ),
    ];
    for (request, line) in cases {
        assert_eq!(request.to_line(), format!("{line}\n"), "{request:?}");
    }
}

fn running_web() -> ProcessStatus {
    ProcessStatus {
        children: vec![
            ChildStatus {
                command: s("node worker.js"),
                pid: 1235,
                rss_bytes: Some(1024),
            },
            ChildStatus {
                command: s("sh"),
                pid: 1236,
                rss_bytes: None,
            },
        ],
        command: s("node server.js"),
        cwd: s("/srv/v2"),
        exit_code: None,
        exit_signal: None,
        id: s("web"),
        last_memory_restart_at: Some(s(AT)),
        last_start_reason: Some(s("memory")),
        logs: vec![LogLineStatus {
            at: s(AT),
            line: s("listening"),
            stream: s("stdout"),
        }],
        memory_restarts: 1,
        pid: Some(1234),
        restarts: 0,
        rss_bytes: Some(2048),
        started_at: Some(s(AT)),
        state: s("running"),
        uptime_ms: Some(5000),
    }
}

const RUNNING_WEB: &str = concat!(
    r#"{"children":[{"command":"node worker.js","pid":1235,"rssBytes":1024},{"command":"sh","pid":1236}],"#,
    r#""command":"node server.js","cwd":"/srv/v2","id":"web","#,
    r#""lastMemoryRestartAt":"2026-05-23T14:31:09.512Z","lastStartReason":"memory","#,
    r#""logs":[{"at":"2026-05-23T14:31:09.512Z","line":"listening","stream":"stdout"}],"#,
    r#""memoryRestarts":1,"pid":1234,"restarts":0,"rssBytes":2048,"#,
    r#""startedAt":"2026-05-23T14:31:09.512Z","state":"running","uptimeMs":5000}"#
);

fn exited_web() -> ProcessStatus {
    ProcessStatus {
        cwd: s("/srv/v1"),
        command: s("node server.js"),
        exit_code: Some(None),
        exit_signal: Some(Some(s("SIGTERM"))),
        id: s("web"),
        restarts: 2,
        state: s("stopped"),
        ..ProcessStatus::default()
    }
}

const EXITED_WEB: &str = concat!(
    r#"{"children":[],"command":"node server.js","cwd":"/srv/v1","exitCode":null,"exitSignal":"SIGTERM","#,
    r#""id":"web","logs":[],"memoryRestarts":0,"restarts":2,"state":"stopped"}"#
);

/// Every optional key present, in every object.
fn full_status() -> Status {
    Status {
        active_release_id: Some(s("v2")),
        application: s("shop"),
        bootstrap: Some(BootstrapStatus {
            attestation: Some(s("sha256:00")),
            release_id: s("v1"),
            release_path: s("/srv/v1"),
            revision: s("v1"),
        }),
        control: ControlStatus {
            group: Some(Account::Name(s("deploy"))),
            mode: Some(432),
            owner: Some(Account::Id(1000)),
            path: s("/run/shop.sock"),
        },
        daemon_runtime: Some(RuntimeIdentity {
            digest: "ab".repeat(32),
            format: 1,
            path: s("/opt/rollbridge"),
            version: s("0.2.0"),
        }),
        deploying: Some(DeployingStatus {
            release_id: s("v3"),
            release_path: s("/srv/v3"),
            started_at: s(AT),
        }),
        failed_release: Some(ReleaseStatus {
            release_id: s("v0"),
            release_path: s("/srv/v0"),
            revision: s("v0"),
            state: s("stopped"),
            stopped_at: Some(s(AT)),
            ..ReleaseStatus::default()
        }),
        logging: Some(LoggingStatus {
            dropped_lines: 0,
            process_dropped_lines: 2,
        }),
        orphans: vec![OrphanStatus {
            id: s("old"),
            pid: 41,
            release_id: None,
        }],
        proxy: Some(ProxyStatus {
            host: s("127.0.0.1"),
            port: 3000,
            upstream_host: s("127.0.0.1"),
        }),
        releases: vec![
            ReleaseStatus {
                activated_at: Some(s(AT)),
                connection_count: 3,
                connections: ConnectionsStatus {
                    http: 2,
                    websocket: 1,
                },
                drain_started_at: None,
                ports: vec![(s("web"), 4000), (s("api"), 4001)],
                processes: vec![running_web()],
                release_id: s("v2"),
                release_path: s("/srv/v2"),
                revision: s("def"),
                state: s("active"),
                stopped_at: None,
            },
            ReleaseStatus {
                activated_at: Some(s(AT)),
                drain_started_at: Some(s(AT)),
                processes: vec![exited_web()],
                release_id: s("v1"),
                release_path: s("/srv/v1"),
                revision: s("v1"),
                state: s("stopped"),
                stopped_at: Some(s(AT)),
                ..ReleaseStatus::default()
            },
        ],
        rollout: Some(RolloutStatus {
            release_id: s("v2"),
            previous_release_id: Some(s("v1")),
            phase: s("watching"),
            percent: 100,
            started_at: s(AT),
            requests: 212,
            errors: 3,
            error_rate: 0.25,
            p99_ms: Some(40),
        }),
        services: vec![NamedProcessStatus {
            id: s("db"),
            process: Some(running_web()),
        }],
        singletons: vec![],
        traffic: Some(TrafficStatus {
            paused: true,
            maintenance: false,
            held: Some(4),
        }),
    }
}

fn full_status_line() -> String {
    [
        r#"{"status":"success","activeReleaseId":"v2","application":"shop","#,
        r#""bootstrap":{"attestation":"sha256:00","releaseId":"v1","releasePath":"/srv/v1","revision":"v1"},"#,
        r#""control":{"group":"deploy","mode":432,"owner":1000,"path":"/run/shop.sock"},"#,
        &format!(
            r#""daemonRuntime":{{"digest":"{}","format":1,"path":"/opt/rollbridge","version":"0.2.0"}},"#,
            "ab".repeat(32)
        ),
        r#""deploying":{"releaseId":"v3","releasePath":"/srv/v3","startedAt":"2026-05-23T14:31:09.512Z"},"#,
        r#""failedRelease":{"connectionCount":0,"connections":{"http":0,"websocket":0},"ports":{},"processes":[],"#,
        r#""releaseId":"v0","releasePath":"/srv/v0","revision":"v0","state":"stopped","stoppedAt":"2026-05-23T14:31:09.512Z"},"#,
        r#""logging":{"droppedLines":0,"processDroppedLines":2},"#,
        r#""orphans":[{"id":"old","pid":41,"releaseId":null}],"#,
        r#""proxy":{"host":"127.0.0.1","port":3000,"upstreamHost":"127.0.0.1"},"#,
        r#""releases":[{"activatedAt":"2026-05-23T14:31:09.512Z","connectionCount":3,"connections":{"http":2,"websocket":1},"#,
        r#""ports":{"web":4000,"api":4001},"processes":["#,
        RUNNING_WEB,
        r#"],"releaseId":"v2","releasePath":"/srv/v2","revision":"def","state":"active"},"#,
        r#"{"activatedAt":"2026-05-23T14:31:09.512Z","connectionCount":0,"connections":{"http":0,"websocket":0},"#,
        r#""drainStartedAt":"2026-05-23T14:31:09.512Z","ports":{},"processes":["#,
        EXITED_WEB,
        r#"],"releaseId":"v1","releasePath":"/srv/v1","revision":"v1","state":"stopped","#,
        r#""stoppedAt":"2026-05-23T14:31:09.512Z"}],"#,
        r#""rollout":{"releaseId":"v2","previousReleaseId":"v1","phase":"watching","percent":100,"#,
        r#""startedAt":"2026-05-23T14:31:09.512Z","requests":212,"errors":3,"errorRate":0.25,"p99Ms":40},"#,
        r#""services":[{"id":"db","process":"#,
        RUNNING_WEB,
        r#"}],"singletons":[],"traffic":{"paused":true,"maintenance":false,"held":4}}"#,
        "\n",
    ]
    .concat()
}

#[test]
fn status_and_stop_reply_with_every_key_in_wire_order() {
    assert_eq!(success_line(&full_status()), full_status_line());
}

#[test]
fn a_bare_status_leaves_optional_keys_out() {
    let status = Status {
        application: s("shop"),
        control: ControlStatus {
            path: s("/run/shop.sock"),
            ..ControlStatus::default()
        },
        proxy: Some(ProxyStatus {
            host: s("127.0.0.1"),
            port: 3000,
            upstream_host: s("127.0.0.1"),
        }),
        ..Status::default()
    };
    assert_eq!(
        success_line(&status),
        concat!(
            r#"{"status":"success","activeReleaseId":null,"application":"shop","control":{"path":"/run/shop.sock"},"#,
            r#""orphans":[],"proxy":{"host":"127.0.0.1","port":3000,"upstreamHost":"127.0.0.1"},"#,
            r#""releases":[],"services":[],"singletons":[]}"#,
            "\n"
        )
    );
}

#[test]
fn a_status_reads_back_into_the_same_value() {
    let line = full_status_line();
    let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
    let read = Status::from_reply(reply.as_object().unwrap());
    assert_eq!(read, full_status());
}

#[test]
fn reading_a_status_skips_what_has_another_shape() {
    let reply = json!({
        "status": "success",
        "activeReleaseId": 7,
        "application": "shop",
        "daemonRuntime": {"digest": "x", "format": "1"},
        "proxy": {"host": "127.0.0.1"},
        "releases": [5, {"releaseId": "v1", "state": "active", "ports": {"web": 70000, "api": 4001},
                         "processes": [{"id": "web", "logs": [{"at": AT, "line": 3}], "exitCode": null}]}],
        "services": "none",
        "singletons": [{"id": "cron"}]
    });
    let status = Status::from_reply(reply.as_object().unwrap());
    assert_eq!(status.active_release_id, None);
    assert_eq!(status.application, "shop");
    let runtime = status.daemon_runtime.unwrap();
    assert_eq!((runtime.digest.as_str(), runtime.format), ("x", 0));
    assert_eq!(status.proxy, None, "a proxy without a port is not usable");
    assert_eq!(status.releases.len(), 1);
    let release = &status.releases[0];
    assert_eq!(release.ports, [(s("api"), 4001)]);
    let web = &release.processes[0];
    assert_eq!(web.logs[0].line, "");
    assert_eq!(web.exit_code, Some(None), "a null exit code is kept");
    assert_eq!(web.exit_signal, None);
    assert!(status.services.is_empty());
    assert_eq!(status.singletons[0].process, None);
}

#[test]
fn command_replies_keep_their_payload_keys() {
    let deploy = DeployReply {
        active_release_id: s("v2"),
        previous_release_id: None,
    };
    assert_eq!(
        success_line(&deploy),
        "{\"status\":\"success\",\"activeReleaseId\":\"v2\",\"previousReleaseId\":null}\n"
    );
    let rollback = DeployReply {
        active_release_id: s("v1"),
        previous_release_id: Some(s("v2")),
    };
    assert_eq!(
        success_line(&rollback),
        "{\"status\":\"success\",\"activeReleaseId\":\"v1\",\"previousReleaseId\":\"v2\"}\n"
    );
    let canary = DeployPayload::Canary(CanaryReply {
        active_release_id: Some(s("v1")),
        canary_release_id: s("v2"),
        percent: 20,
    });
    assert_eq!(
        success_line(&canary),
        "{\"status\":\"success\",\"activeReleaseId\":\"v1\",\"canaryReleaseId\":\"v2\",\"percent\":20}\n"
    );
    let aborted = RolloutReply::Aborted(AbortReply {
        active_release_id: Some(s("v1")),
        aborted_release_id: s("v2"),
    });
    assert_eq!(
        success_line(&aborted),
        "{\"status\":\"success\",\"activeReleaseId\":\"v1\",\"abortedReleaseId\":\"v2\"}\n"
    );
    let promoted = RolloutReply::Promoted(DeployPayload::Switched(DeployReply {
        active_release_id: s("v2"),
        previous_release_id: Some(s("v1")),
    }));
    assert_eq!(
        success_line(&promoted),
        "{\"status\":\"success\",\"activeReleaseId\":\"v2\",\"previousReleaseId\":\"v1\"}\n"
    );
    assert_eq!(
        success_line(&PauseReply {
            paused: true,
            max_ms: 30000
        }),
        "{\"status\":\"success\",\"paused\":true,\"maxMs\":30000}\n"
    );
    assert_eq!(
        success_line(&ResumeReply {
            paused: false,
            held: 3
        }),
        "{\"status\":\"success\",\"paused\":false,\"held\":3}\n"
    );
    assert_eq!(
        success_line(&MaintenanceReply {
            maintenance: true,
            message: Some(s("Back soon"))
        }),
        "{\"status\":\"success\",\"maintenance\":true,\"message\":\"Back soon\"}\n"
    );
    assert_eq!(
        success_line(&MaintenanceReply {
            maintenance: false,
            message: None
        }),
        "{\"status\":\"success\",\"maintenance\":false}\n"
    );
    let restart = RestartReply {
        restarted: vec![s("worker#0"), s("worker#1")],
    };
    assert_eq!(
        success_line(&restart),
        "{\"status\":\"success\",\"restarted\":[\"worker#0\",\"worker#1\"]}\n"
    );
    assert_eq!(
        success_line(&MessageReply::new("shutdown")),
        "{\"status\":\"success\",\"message\":\"shutdown\"}\n"
    );
    assert_eq!(
        success_line(&MessageReply::new("owner retired")),
        "{\"status\":\"success\",\"message\":\"owner retired\"}\n"
    );
    let events = EventsReply {
        events: vec![EventRecord {
            at: s(AT),
            data: json!({"previousReleaseId": null, "releaseId": "v2"})
                .as_object()
                .unwrap()
                .clone(),
            message: s("traffic switched"),
            seq: 7,
        }],
    };
    assert_eq!(
        success_line(&events),
        concat!(
            r#"{"status":"success","events":[{"at":"2026-05-23T14:31:09.512Z","#,
            r#""data":{"previousReleaseId":null,"releaseId":"v2"},"message":"traffic switched"}]}"#,
            "\n"
        )
    );
    assert_eq!(
        success_line(&EventsReply { events: vec![] }),
        "{\"status\":\"success\",\"events\":[]}\n"
    );
}

#[test]
fn errors_are_one_shape_for_every_command() {
    let line = |message: String| reply_line(&error_reply(&message));
    let parse = |text: &str| line(Request::parse_line(text).unwrap_err().to_string());
    assert_eq!(
        parse("{\"command\":\"bogus\"}"),
        "{\"error\":\"Unknown command: bogus\",\"status\":\"error\"}\n"
    );
    assert_eq!(
        parse("not json"),
        "{\"error\":\"Invalid JSON: expected ident at line 1 column 2\",\"status\":\"error\"}\n"
    );
    assert_eq!(
        parse("42"),
        "{\"error\":\"Control command must be an object\",\"status\":\"error\"}\n"
    );
    assert_eq!(
        parse("{\"command\":\"deploy\"}"),
        "{\"error\":\"releasePath is required\",\"status\":\"error\"}\n"
    );
    assert_eq!(
        parse("{\"command\":\"stop\",\"releaseId\":1}"),
        "{\"error\":\"Expected string value\",\"status\":\"error\"}\n"
    );
    assert_eq!(
        line(RequestError::LineTooLong { limit: 1024 }.to_string()),
        "{\"error\":\"Control request line is longer than 1024 bytes; send one JSON object per line (requests are small, so this is not a rollbridge client)\",\"status\":\"error\"}\n"
    );
    assert_eq!(
        line(s("Release not found: v9")),
        "{\"error\":\"Release not found: v9\",\"status\":\"error\"}\n"
    );
}
