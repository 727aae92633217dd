//! Every event the daemon emits, as a type. Its name and its `data` keys (in
//! wire order) are spelled once, in [`Event::to_parts`]; emitting sites build a
//! variant, so a misspelt name or key does not compile.
//!
//! Adding an event: add a variant (or a [`ProcessEvent`] variant for events of
//! one managed process) and its arm in `to_parts`, then its golden line in
//! `golden.rs`.

use crate::data;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The fixed `hint` of `orphaned processes from a previous daemon`.
pub const ORPHANS_HINT: &str =
    "a previous daemon did not shut down cleanly; verify these pids and stop any leftovers";

/// The fixed `hint` of `environment variable is not UTF-8`.
pub const NON_UTF8_ENV_HINT: &str =
    "managed processes receive it unchanged; {{env.NAME}} templates and hooks do not see it";

crate::util::names::wire_names! {
    /// Why a process was (re)started; reported as `lastStartReason` and in
    /// `process started`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum StartReason {
        Deploy = "deploy",
        Crash = "crash",
        Manual = "manual",
        Memory = "memory",
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
    /// rollbridge's own: the daemon re-executed itself in place (live upgrade);
    /// emitted by the new image once it serves.
    DaemonUpgraded {
        previous_version: String,
        version: String,
        digest: String,
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
    /// rollbridge's own: a retired release starts draining with these
    /// connections open (progress lines show it).
    ReleaseDraining {
        http: usize,
        release_id: String,
        timeout_ms: u64,
        websocket: usize,
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
    /// Rollouts, pause and maintenance (see `events/rollout.rs`).
    Traffic(super::rollout::TrafficEvent),
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
    /// rollbridge's own: a readiness probe of a starting process did not pass
    /// yet (the first failure, then at most one a second).
    HealthCheckWaiting {
        attempt: u64,
        detail: String,
    },
    /// rollbridge's own: the readiness check passed after `attempts` probes.
    HealthCheckPassed {
        attempts: u64,
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
            Event::DaemonUpgraded {
                previous_version,
                version,
                digest,
            } => (
                "daemon upgraded",
                data! {
                    "digest" => digest,
                    "previousVersion" => previous_version,
                    "version" => version,
                },
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
            Event::ReleaseDraining {
                http,
                release_id,
                timeout_ms,
                websocket,
            } => (
                "release draining",
                data! { "http" => http, "releaseId" => release_id, "timeoutMs" => timeout_ms, "websocket" => websocket },
            ),
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
            Event::Traffic(event) => event.to_parts(),
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
            ProcessEvent::HealthCheckWaiting { attempt, detail } => (
                "health check waiting",
                data! { "attempt" => attempt, "detail" => detail },
            ),
            ProcessEvent::HealthCheckPassed { attempts } => {
                ("health check passed", data! { "attempts" => attempts })
            }
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
