//! Golden lines: each event's bytes as the daemon wrote them before events
//! were typed (names, data keys, key order, omitted keys).

use super::*;
use serde_json::{Value, json};

const AT: &str = "2026-05-23T14:31:09.512Z";

fn line(event: Event) -> String {
    serde_json::to_string(&EventRecord::new(AT.into(), &event)).unwrap()
}

fn golden(data: &str, message: &str) -> String {
    format!(r#"{{"at":"{AT}","data":{data},"message":"{message}"}}"#)
}

fn web(event: ProcessEvent) -> Event {
    Event::Process {
        scope: ProcessScope {
            process_id: "web#0".into(),
            release_id: "v4".into(),
        },
        event,
    }
}

fn s(text: &str) -> String {
    text.to_string()
}

#[test]
fn daemon_events_keep_their_names_and_data_keys() {
    let cases = [
        (
            Event::ProxyListening {
                host: s("127.0.0.1"),
                port: 3000,
            },
            golden(r#"{"host":"127.0.0.1","port":3000}"#, "proxy listening"),
        ),
        (
            Event::ControlSocketListening {
                path: s("/run/app.sock"),
            },
            golden(r#"{"path":"/run/app.sock"}"#, "control socket listening"),
        ),
        (
            Event::MetricsListening {
                host: s("127.0.0.1"),
                port: 9100,
            },
            golden(r#"{"host":"127.0.0.1","port":9100}"#, "metrics listening"),
        ),
        (
            Event::DaemonUpgraded {
                previous_version: s("0.2.0"),
                version: s("0.2.1"),
                digest: s("ab12"),
            },
            golden(
                r#"{"digest":"ab12","previousVersion":"0.2.0","version":"0.2.1"}"#,
                "daemon upgraded",
            ),
        ),
        (
            Event::ProxyError {
                error: s("connect ECONNREFUSED 127.0.0.1:1"),
                suppressed: 0,
            },
            golden(
                r#"{"error":"connect ECONNREFUSED 127.0.0.1:1"}"#,
                "proxy error",
            ),
        ),
        (
            Event::ProxyError {
                error: s("reset"),
                suppressed: 7,
            },
            golden(r#"{"error":"reset","suppressed":7}"#, "proxy error"),
        ),
        (
            Event::ControlConnectionError {
                code: Some(s("ECONNRESET")),
                error: s("reset"),
            },
            golden(
                r#"{"code":"ECONNRESET","error":"reset"}"#,
                "control connection error",
            ),
        ),
        (
            Event::ControlConnectionError {
                code: None,
                error: s("odd"),
            },
            golden(r#"{"code":null,"error":"odd"}"#, "control connection error"),
        ),
        (
            Event::CommandFailed {
                error: s("no such release"),
            },
            golden(r#"{"error":"no such release"}"#, "command failed"),
        ),
        (
            Event::CommandPanicked {
                command: s("deploy"),
                error: s("boom"),
            },
            golden(r#"{"command":"deploy","error":"boom"}"#, "command panicked"),
        ),
        (
            Event::DeployStarting {
                release_id: s("v4"),
                release_path: s("/srv/v4"),
                revision: None,
            },
            golden(
                r#"{"releaseId":"v4","releasePath":"/srv/v4"}"#,
                "deploy starting",
            ),
        ),
        (
            Event::DeployStarting {
                release_id: s("v4"),
                release_path: s("/srv/v4"),
                revision: Some(s("abc")),
            },
            golden(
                r#"{"releaseId":"v4","releasePath":"/srv/v4","revision":"abc"}"#,
                "deploy starting",
            ),
        ),
        (
            Event::DeployFailed {
                error: s("unhealthy"),
                release_id: s("v4"),
            },
            golden(r#"{"error":"unhealthy","releaseId":"v4"}"#, "deploy failed"),
        ),
        (
            Event::TrafficSwitched {
                previous_release_id: Some(s("v3")),
                release_id: s("v4"),
            },
            golden(
                r#"{"previousReleaseId":"v3","releaseId":"v4"}"#,
                "traffic switched",
            ),
        ),
        (
            Event::TrafficSwitched {
                previous_release_id: None,
                release_id: s("v4"),
            },
            golden(
                r#"{"previousReleaseId":null,"releaseId":"v4"}"#,
                "traffic switched",
            ),
        ),
        (
            Event::RollbackStarting {
                release_id: s("v3"),
                release_path: s("/srv/v3"),
            },
            golden(
                r#"{"releaseId":"v3","releasePath":"/srv/v3"}"#,
                "rollback starting",
            ),
        ),
        (
            Event::ProcessRestartRequested {
                process_id: s("web#0"),
            },
            golden(r#"{"processId":"web#0"}"#, "process restart requested"),
        ),
        (
            Event::ReleaseDraining {
                http: 2,
                release_id: s("v3"),
                timeout_ms: 30000,
                websocket: 1,
            },
            golden(
                r#"{"http":2,"releaseId":"v3","timeoutMs":30000,"websocket":1}"#,
                "release draining",
            ),
        ),
        (
            Event::ReleaseStopped {
                release_id: s("v3"),
            },
            golden(r#"{"releaseId":"v3"}"#, "release stopped"),
        ),
        (
            Event::ReleaseDrained {
                release_id: s("v3"),
            },
            golden(r#"{"releaseId":"v3"}"#, "release drained"),
        ),
        (
            Event::ReleaseDrainFailed {
                error: s("stuck"),
                release_id: s("v3"),
            },
            golden(
                r#"{"error":"stuck","releaseId":"v3"}"#,
                "release drain failed",
            ),
        ),
        (
            Event::StatePersistFailed {
                error: s("disk full"),
            },
            golden(r#"{"error":"disk full"}"#, "state persist failed"),
        ),
        (
            Event::OrphanDetected {
                pid: 42,
                process_id: s("web#0"),
                release_id: None,
            },
            golden(
                r#"{"pid":42,"processId":"web#0","releaseId":null}"#,
                "orphaned managed process detected",
            ),
        ),
        (
            Event::OrphansFromPreviousDaemon { count: 2 },
            golden(
                r#"{"count":2,"hint":"a previous daemon did not shut down cleanly; verify these pids and stop any leftovers"}"#,
                "orphaned processes from a previous daemon",
            ),
        ),
        (
            Event::ExternalOwnerRetired {
                attestation: s("token"),
            },
            golden(
                r#"{"attestation":"token","status":"draining"}"#,
                "external owner retired",
            ),
        ),
        (
            Event::BootstrapActivationFailed {
                release_id: s("v1"),
            },
            golden(
                r#"{"releaseId":"v1","status":"error"}"#,
                "bootstrap activation failed",
            ),
        ),
        (
            Event::EnvironmentNotUtf8 { name: s("ODD") },
            golden(
                r#"{"hint":"managed processes receive it unchanged; {{env.NAME}} templates and hooks do not see it","name":"ODD"}"#,
                "environment variable is not UTF-8",
            ),
        ),
        (
            Event::ReleaseStartupFailed {
                error: s("exited"),
                phase: s("before cleanup"),
                release_id: s("v4"),
            },
            golden(
                r#"{"error":"exited","phase":"before cleanup","releaseId":"v4"}"#,
                "release startup failed",
            ),
        ),
        (
            Event::ReleaseStartupProcessStatus(Box::new(StartupProcessStatus {
                command: json!("node app.js"),
                exit_code: json!(1),
                exit_signal: Value::Null,
                logs: json!([]),
                phase: s("after cleanup"),
                pid: Value::Null,
                process_id: json!("web#0"),
                release_id: s("v4"),
                state: json!("failed"),
            })),
            golden(
                r#"{"command":"node app.js","exitCode":1,"exitSignal":null,"logs":[],"phase":"after cleanup","pid":null,"processId":"web#0","releaseId":"v4","state":"failed"}"#,
                "release startup process status",
            ),
        ),
        (
            Event::Hook {
                message: s("cache warmed"),
                data: crate::data! { "z" => 1, "a" => 2 },
            },
            golden(r#"{"z":1,"a":2}"#, "cache warmed"),
        ),
        (
            Event::Traffic(TrafficEvent::RolloutStarted {
                release_id: s("v4"),
                phase: "canary",
                percent: 20,
            }),
            golden(
                r#"{"releaseId":"v4","phase":"canary","percent":20}"#,
                "rollout started",
            ),
        ),
        (
            Event::Traffic(TrafficEvent::RolloutUpdated {
                release_id: s("v4"),
                percent: 50,
            }),
            golden(r#"{"releaseId":"v4","percent":50}"#, "rollout updated"),
        ),
        (
            Event::Traffic(TrafficEvent::RolloutPassed {
                release_id: s("v4"),
                requests: 212,
                errors: 1,
            }),
            golden(
                r#"{"releaseId":"v4","requests":212,"errors":1}"#,
                "rollout passed",
            ),
        ),
        (
            Event::Traffic(TrafficEvent::RolloutFailed {
                release_id: s("v4"),
                reason: s("5xx rate 0.31 > 0.05 over 212 requests"),
            }),
            golden(
                r#"{"releaseId":"v4","reason":"5xx rate 0.31 > 0.05 over 212 requests"}"#,
                "rollout failed",
            ),
        ),
        (
            Event::Traffic(TrafficEvent::AutomaticRollback {
                release_id: s("v4"),
                previous_release_id: s("v3"),
                reason: s("p99 1000 ms > 250 ms over 40 requests"),
            }),
            golden(
                r#"{"releaseId":"v4","previousReleaseId":"v3","reason":"p99 1000 ms > 250 ms over 40 requests"}"#,
                "automatic rollback",
            ),
        ),
        (
            Event::Traffic(TrafficEvent::Paused),
            golden("{}", "traffic paused"),
        ),
        (
            Event::Traffic(TrafficEvent::Resumed { held: 3 }),
            golden(r#"{"held":3}"#, "traffic resumed"),
        ),
        (
            Event::Traffic(TrafficEvent::MaintenanceOn),
            golden("{}", "maintenance on"),
        ),
        (
            Event::Traffic(TrafficEvent::MaintenanceOff),
            golden("{}", "maintenance off"),
        ),
    ];
    for (event, expected) in cases {
        assert_eq!(line(event), expected);
    }
}

#[test]
fn process_events_start_with_the_process_prefix() {
    let prefix = r#""processId":"web#0","releaseId":"v4""#;
    let cases = [
        (
            ProcessEvent::Started {
                command: s("node app.js"),
                id: s("web#0"),
                pid: Some(4242),
                reason: StartReason::Crash,
            },
            r#""command":"node app.js","id":"web#0","pid":4242,"reason":"crash""#,
            "process started",
        ),
        (
            ProcessEvent::Started {
                command: s("x"),
                id: s("web#0"),
                pid: None,
                reason: StartReason::Deploy,
            },
            r#""command":"x","id":"web#0","pid":null,"reason":"deploy""#,
            "process started",
        ),
        (
            ProcessEvent::Exited {
                code: None,
                id: s("web#0"),
                signal: Some(s("SIGTERM")),
            },
            r#""code":null,"id":"web#0","signal":"SIGTERM""#,
            "process exited",
        ),
        (
            ProcessEvent::LogFileFailed {
                error: s("EACCES"),
                id: s("web#0"),
                path: s("/var/log/a"),
            },
            r#""error":"EACCES","id":"web#0","path":"/var/log/a""#,
            "process log file failed",
        ),
        (
            ProcessEvent::RestartLimitReached {
                id: s("web#0"),
                max_restarts: Some(5),
                window_ms: 60000,
            },
            r#""id":"web#0","maxRestarts":5,"windowMs":60000"#,
            "restart limit reached",
        ),
        (
            ProcessEvent::RestartFailed {
                error: s("ENOENT"),
                id: s("web#0"),
            },
            r#""error":"ENOENT","id":"web#0""#,
            "process restart failed",
        ),
        (
            ProcessEvent::MemoryWarning {
                id: s("web#0"),
                rss_bytes: 10,
                warn_bytes: 8,
            },
            r#""id":"web#0","rssBytes":10,"warnBytes":8"#,
            "memory warning",
        ),
        (
            ProcessEvent::MemoryLimitExceeded {
                id: s("web#0"),
                limit_bytes: 8,
                rss_bytes: 10,
            },
            r#""id":"web#0","limitBytes":8,"rssBytes":10"#,
            "memory limit exceeded",
        ),
        (
            ProcessEvent::MemoryRestartFailed {
                error: s("x"),
                id: s("web#0"),
            },
            r#""error":"x","id":"web#0""#,
            "memory restart failed",
        ),
        (
            ProcessEvent::HealthCheckWaiting {
                attempt: 3,
                detail: s("connection refused"),
            },
            r#""attempt":3,"detail":"connection refused""#,
            "health check waiting",
        ),
        (
            ProcessEvent::HealthCheckPassed { attempts: 4 },
            r#""attempts":4"#,
            "health check passed",
        ),
        (
            ProcessEvent::StopTimedOut {
                id: s("web#0"),
                pid: 4242,
            },
            r#""id":"web#0","pid":4242"#,
            "process stop timed out; sending SIGKILL",
        ),
        (
            ProcessEvent::HookFailed {
                stage: "stop",
                plugin: s("lua"),
                reason: s("boom"),
            },
            r#""stage":"stop","plugin":"lua","reason":"boom""#,
            "hook failed",
        ),
        (
            ProcessEvent::CommandHook {
                hook: "quiet command",
                id: s("web#0"),
                outcome: CommandHookOutcome::ExitedNonZero { code: 3 },
            },
            r#""code":3,"id":"web#0""#,
            "quiet command exited non-zero",
        ),
        (
            ProcessEvent::CommandHook {
                hook: "drain command",
                id: s("web#0"),
                outcome: CommandHookOutcome::ExitedOnSignal {
                    signal: s("SIGKILL"),
                },
            },
            r#""id":"web#0","signal":"SIGKILL""#,
            "drain command exited on signal",
        ),
        (
            ProcessEvent::CommandHook {
                hook: "stop command",
                id: s("web#0"),
                outcome: CommandHookOutcome::TimedOut { timeout_ms: 500 },
            },
            r#""id":"web#0","timeoutMs":500"#,
            "stop command timed out",
        ),
        (
            ProcessEvent::CommandHook {
                hook: "health command",
                id: s("web#0"),
                outcome: CommandHookOutcome::Failed {
                    error: s("spawn failed"),
                },
            },
            r#""error":"spawn failed","id":"web#0""#,
            "health command failed",
        ),
        (
            ProcessEvent::Hook {
                message: s("warmed"),
                data: crate::data! { "n" => 1 },
            },
            r#""n":1"#,
            "warmed",
        ),
    ];
    for (event, rest, message) in cases {
        assert_eq!(
            line(web(event)),
            golden(&format!("{{{prefix},{rest}}}"), message)
        );
    }
}
