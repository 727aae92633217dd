//! Every event the daemon emits, as a type. Its name and its `data` keys (in
//! wire order) are spelled once, in [`Event::to_parts`]; emitting sites build a
//! variant, so a misspelt name or key does not compile.
//!
//! Adding an event: add a variant (or a [`ProcessEvent`] variant for events of
//! one managed process) and its arm in `to_parts`, then a golden line in this
//! file's tests.

use crate::data;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The fixed `hint` of `orphaned processes from a previous daemon`.
pub const ORPHANS_HINT: &str =
    "a previous daemon did not shut down cleanly; verify these pids and stop any leftovers";

/// The fixed `hint` of `environment variable is not UTF-8`.
pub const NON_UTF8_ENV_HINT: &str =
    "managed processes receive it unchanged; {{env.NAME}} templates and hooks do not see it";

/// Why a process was (re)started; reported as `lastStartReason` and in
/// `process started`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartReason {
    Deploy,
    Crash,
    Manual,
    Memory,
}

impl StartReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StartReason::Deploy => "deploy",
            StartReason::Crash => "crash",
            StartReason::Manual => "manual",
            StartReason::Memory => "memory",
        }
    }
}

/// A daemon event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    ProxyListening {
        host: String,
        port: u16,
    },
    ControlSocketListening {
        path: String,
    },
    /// rollbridge's own: the `/metrics` listener is bound.
    MetricsListening {
        host: String,
        port: u16,
    },
    /// `suppressed` (reports held back since the last one) is left out when 0.
    ProxyError {
        error: String,
        suppressed: u64,
    },
    ControlConnectionError {
        code: Option<String>,
        error: String,
    },
    CommandFailed {
        error: String,
    },
    CommandPanicked {
        command: String,
        error: String,
    },
    /// `revision` is left out when the deploy named none.
    DeployStarting {
        release_id: String,
        release_path: String,
        revision: Option<String>,
    },
    DeployFailed {
        error: String,
        release_id: String,
    },
    TrafficSwitched {
        previous_release_id: Option<String>,
        release_id: String,
    },
    RollbackStarting {
        release_id: String,
        release_path: String,
    },
    ProcessRestartRequested {
        process_id: String,
    },
    ReleaseStopped {
        release_id: String,
    },
    ReleaseDrained {
        release_id: String,
    },
    ReleaseDrainFailed {
        error: String,
        release_id: String,
    },
    StatePersistFailed {
        error: String,
    },
    OrphanDetected {
        pid: i32,
        process_id: String,
        release_id: Option<String>,
    },
    /// Carries [`ORPHANS_HINT`].
    OrphansFromPreviousDaemon {
        count: usize,
    },
    /// `status` is always `draining`.
    ExternalOwnerRetired {
        attestation: String,
    },
    /// `status` is always `error`.
    BootstrapActivationFailed {
        release_id: String,
    },
    /// Carries [`NON_UTF8_ENV_HINT`].
    EnvironmentNotUtf8 {
        name: String,
    },
    ReleaseStartupFailed {
        error: String,
        phase: String,
        release_id: String,
    },
    ReleaseStartupProcessStatus(Box<StartupProcessStatus>),
    /// An event of one managed process: its data starts with `processId`,
    /// `releaseId`.
    Process {
        scope: ProcessScope,
        event: ProcessEvent,
    },
    /// An event a hook reported (`ctx:event`) outside a process: its name and
    /// data are the hook's.
    Hook {
        message: String,
        data: Map<String, Value>,
    },
}

/// `release startup process status`: one process of a release that failed to
/// start, its fields copied from its `status` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct StartupProcessStatus {
    pub command: Value,
    pub exit_code: Value,
    pub exit_signal: Value,
    pub logs: Value,
    pub phase: String,
    pub pid: Value,
    pub process_id: Value,
    pub release_id: String,
    pub state: Value,
}

/// The process an event belongs to: its instance id and the release its
/// definition came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessScope {
    pub process_id: String,
    pub release_id: String,
}

/// An event of one managed process (see [`Event::Process`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessEvent {
    Started {
        command: String,
        id: String,
        pid: Option<i64>,
        reason: StartReason,
    },
    Exited {
        code: Option<i32>,
        id: String,
        signal: Option<String>,
    },
    LogFileFailed {
        error: String,
        id: String,
        path: String,
    },
    RestartLimitReached {
        id: String,
        max_restarts: Option<u32>,
        window_ms: u64,
    },
    RestartFailed {
        error: String,
        id: String,
    },
    MemoryWarning {
        id: String,
        rss_bytes: u64,
        warn_bytes: u64,
    },
    MemoryLimitExceeded {
        id: String,
        limit_bytes: u64,
        rss_bytes: u64,
    },
    MemoryRestartFailed {
        error: String,
        id: String,
    },
    StopTimedOut {
        id: String,
        pid: i32,
    },
    HookFailed {
        stage: &'static str,
        plugin: String,
        reason: String,
    },
    /// A `command` hook that did not exit 0; `hook` names it (`quiet command`).
    CommandHook {
        hook: &'static str,
        id: String,
        outcome: CommandHookOutcome,
    },
    /// An event a hook of this process reported (`ctx:event`).
    Hook {
        message: String,
        data: Map<String, Value>,
    },
}

/// How a `command` hook ended when it did not exit 0.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandHookOutcome {
    ExitedNonZero { code: i32 },
    ExitedOnSignal { signal: String },
    TimedOut { timeout_ms: u64 },
    Failed { error: String },
}

impl Event {
    /// The event's name (`message`) and `data`, keys in wire order.
    pub fn to_parts(&self) -> (Cow<'static, str>, Map<String, Value>) {
        let (message, data): (&'static str, _) = match self {
            Event::ProxyListening { host, port } => {
                ("proxy listening", data! { "host" => host, "port" => port })
            }
            Event::ControlSocketListening { path } => {
                ("control socket listening", data! { "path" => path })
            }
            Event::MetricsListening { host, port } => (
                "metrics listening",
                data! { "host" => host, "port" => port },
            ),
            Event::ProxyError { error, suppressed } => {
                let mut data = data! { "error" => error };
                if *suppressed > 0 {
                    data.insert("suppressed".into(), Value::from(*suppressed));
                }
                ("proxy error", data)
            }
            Event::ControlConnectionError { code, error } => (
                "control connection error",
                data! { "code" => code, "error" => error },
            ),
            Event::CommandFailed { error } => ("command failed", data! { "error" => error }),
            Event::CommandPanicked { command, error } => (
                "command panicked",
                data! { "command" => command, "error" => error },
            ),
            Event::DeployStarting {
                release_id,
                release_path,
                revision,
            } => {
                let mut data = data! { "releaseId" => release_id, "releasePath" => release_path };
                if let Some(revision) = revision {
                    data.insert("revision".into(), Value::from(revision.as_str()));
                }
                ("deploy starting", data)
            }
            Event::DeployFailed { error, release_id } => (
                "deploy failed",
                data! { "error" => error, "releaseId" => release_id },
            ),
            Event::TrafficSwitched {
                previous_release_id,
                release_id,
            } => (
                "traffic switched",
                data! { "previousReleaseId" => previous_release_id, "releaseId" => release_id },
            ),
            Event::RollbackStarting {
                release_id,
                release_path,
            } => (
                "rollback starting",
                data! { "releaseId" => release_id, "releasePath" => release_path },
            ),
            Event::ProcessRestartRequested { process_id } => (
                "process restart requested",
                data! { "processId" => process_id },
            ),
            Event::ReleaseStopped { release_id } => {
                ("release stopped", data! { "releaseId" => release_id })
            }
            Event::ReleaseDrained { release_id } => {
                ("release drained", data! { "releaseId" => release_id })
            }
            Event::ReleaseDrainFailed { error, release_id } => (
                "release drain failed",
                data! { "error" => error, "releaseId" => release_id },
            ),
            Event::StatePersistFailed { error } => {
                ("state persist failed", data! { "error" => error })
            }
            Event::OrphanDetected {
                pid,
                process_id,
                release_id,
            } => (
                "orphaned managed process detected",
                data! { "pid" => pid, "processId" => process_id, "releaseId" => release_id },
            ),
            Event::OrphansFromPreviousDaemon { count } => (
                "orphaned processes from a previous daemon",
                data! { "count" => count, "hint" => ORPHANS_HINT },
            ),
            Event::ExternalOwnerRetired { attestation } => (
                "external owner retired",
                data! { "attestation" => attestation, "status" => "draining" },
            ),
            Event::BootstrapActivationFailed { release_id } => (
                "bootstrap activation failed",
                data! { "releaseId" => release_id, "status" => "error" },
            ),
            Event::EnvironmentNotUtf8 { name } => (
                "environment variable is not UTF-8",
                data! { "hint" => NON_UTF8_ENV_HINT, "name" => name },
            ),
            Event::ReleaseStartupFailed {
                error,
                phase,
                release_id,
            } => (
                "release startup failed",
                data! { "error" => error, "phase" => phase, "releaseId" => release_id },
            ),
            Event::ReleaseStartupProcessStatus(status) => (
                "release startup process status",
                data! {
                    "command" => status.command,
                    "exitCode" => status.exit_code,
                    "exitSignal" => status.exit_signal,
                    "logs" => status.logs,
                    "phase" => status.phase,
                    "pid" => status.pid,
                    "processId" => status.process_id,
                    "releaseId" => status.release_id,
                    "state" => status.state,
                },
            ),
            Event::Process { scope, event } => {
                let mut data = data! {
                    "processId" => scope.process_id,
                    "releaseId" => scope.release_id,
                };
                let (message, rest) = event.to_parts();
                data.extend(rest);
                return (message, data);
            }
            Event::Hook { message, data } => return (message.clone().into(), data.clone()),
        };
        (Cow::Borrowed(message), data)
    }
}

impl ProcessEvent {
    /// The event's name and the `data` keys after the process prefix.
    fn to_parts(&self) -> (Cow<'static, str>, Map<String, Value>) {
        let (message, data): (&'static str, _) = match self {
            ProcessEvent::Started {
                command,
                id,
                pid,
                reason,
            } => (
                "process started",
                data! { "command" => command, "id" => id, "pid" => pid, "reason" => reason.as_str() },
            ),
            ProcessEvent::Exited { code, id, signal } => (
                "process exited",
                data! { "code" => code, "id" => id, "signal" => signal },
            ),
            ProcessEvent::LogFileFailed { error, id, path } => (
                "process log file failed",
                data! { "error" => error, "id" => id, "path" => path },
            ),
            ProcessEvent::RestartLimitReached {
                id,
                max_restarts,
                window_ms,
            } => (
                "restart limit reached",
                data! { "id" => id, "maxRestarts" => max_restarts, "windowMs" => window_ms },
            ),
            ProcessEvent::RestartFailed { error, id } => (
                "process restart failed",
                data! { "error" => error, "id" => id },
            ),
            ProcessEvent::MemoryWarning {
                id,
                rss_bytes,
                warn_bytes,
            } => (
                "memory warning",
                data! { "id" => id, "rssBytes" => rss_bytes, "warnBytes" => warn_bytes },
            ),
            ProcessEvent::MemoryLimitExceeded {
                id,
                limit_bytes,
                rss_bytes,
            } => (
                "memory limit exceeded",
                data! { "id" => id, "limitBytes" => limit_bytes, "rssBytes" => rss_bytes },
            ),
            ProcessEvent::MemoryRestartFailed { error, id } => (
                "memory restart failed",
                data! { "error" => error, "id" => id },
            ),
            ProcessEvent::StopTimedOut { id, pid } => (
                "process stop timed out; sending SIGKILL",
                data! { "id" => id, "pid" => pid },
            ),
            ProcessEvent::HookFailed {
                stage,
                plugin,
                reason,
            } => (
                "hook failed",
                data! { "stage" => stage, "plugin" => plugin, "reason" => reason },
            ),
            ProcessEvent::CommandHook { hook, id, outcome } => {
                let (suffix, data) = match outcome {
                    CommandHookOutcome::ExitedNonZero { code } => {
                        ("exited non-zero", data! { "code" => code, "id" => id })
                    }
                    CommandHookOutcome::ExitedOnSignal { signal } => {
                        ("exited on signal", data! { "id" => id, "signal" => signal })
                    }
                    CommandHookOutcome::TimedOut { timeout_ms } => {
                        ("timed out", data! { "id" => id, "timeoutMs" => timeout_ms })
                    }
                    CommandHookOutcome::Failed { error } => {
                        ("failed", data! { "error" => error, "id" => id })
                    }
                };
                return (format!("{hook} {suffix}").into(), data);
            }
            ProcessEvent::Hook { message, data } => return (message.clone().into(), data.clone()),
        };
        (Cow::Borrowed(message), data)
    }
}

#[cfg(test)]
mod tests {
    //! Golden lines: each event's bytes as the daemon wrote them before events
    //! were typed (names, data keys, key order, omitted keys).

    use super::*;
    use crate::events::EventRecord;
    use serde_json::json;

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
}
