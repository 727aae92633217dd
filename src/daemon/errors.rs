//! The errors of the daemon's flows. Each `Display` is the exact message the
//! control protocol (or the daemon's stderr) carries today; the lower error a
//! message is built from stays reachable as its source.

use crate::config::ConfigError;
use crate::config::template::TemplateError;
use crate::control::client::ClientError;
use crate::control::socket::ControlSocketError;
use crate::lua::EngineError;
use crate::plugins::UnresolvedHook;
use crate::plugins::native::NativePluginError;
use crate::process::{HealthError, SpawnError};
use crate::util::errno::describe_io_error;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

/// Every operation refused because shutdown has begun.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("Rollbridge is shutting down")]
pub struct ShuttingDown;

/// Building the plugin registry of a loaded config.
#[derive(Debug, Error)]
pub enum SetupError {
    #[error(transparent)]
    Native(#[from] NativePluginError),
    #[error(transparent)]
    Lua(#[from] EngineError),
}

/// A config change a running daemon cannot take on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "Config changes to {} cannot be applied live; restart the Rollbridge daemon before deploying.",
    .keys.join(", ")
)]
pub struct IncompatibleConfig {
    pub keys: Vec<&'static str>,
}

/// No port of a process's range could be handed out. `code` is the errno name
/// (or the error text when there is none) of a port that could not be bound.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PortError {
    #[error("Unable to allocate an ephemeral port on {host} ({code})")]
    Ephemeral { host: String, code: String },
    #[error(
        "No available ports in range {from}-{to} ({count} {noun} on {host}): {reserved} reserved by this deploy, {in_use} already in use{}. Widen the port range, free a port, or check bind permissions.",
        describe_unbindable(*.unavailable, .example_code.as_deref()),
        noun = if *.count == 1 { "port" } else { "ports" }
    )]
    Exhausted {
        from: u16,
        to: u16,
        count: u32,
        host: String,
        reserved: u32,
        in_use: u32,
        unavailable: u32,
        example_code: Option<String>,
    },
}

fn describe_unbindable(unavailable: u32, example_code: Option<&str>) -> String {
    match example_code {
        Some(code) if unavailable > 0 => {
            format!(", {unavailable} could not be bound (e.g. {code})")
        }
        _ => String::new(),
    }
}

/// A process definition whose templates cannot be rendered.
#[derive(Debug, Error)]
#[error("{source}{}", .non_utf8.as_deref().map(|name| format!("\nthe daemon's {name} is not valid UTF-8, so templates cannot use it (the process still inherits it unchanged)")).unwrap_or_default())]
pub struct DefinitionError {
    pub source: TemplateError,
    /// The environment variable the template names that is not valid UTF-8.
    pub non_utf8: Option<String>,
}

/// A deploy (and a bootstrap's activation) that did not complete.
#[derive(Debug, Error)]
pub enum DeployError {
    #[error(transparent)]
    ShuttingDown(#[from] ShuttingDown),
    /// Shutdown cut the deploy short: the protocol's first line, then what happened.
    #[error(
        "{ShuttingDown}\nthe daemon is shutting down: the deploy of release \"{release_id}\" was interrupted and the processes it had started were stopped"
    )]
    Interrupted { release_id: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Incompatible(#[from] IncompatibleConfig),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(
        "Release path {path} {problem}; pass the release's directory with deploy --release-path"
    )]
    ReleasePath { path: String, problem: &'static str },
    #[error(transparent)]
    Ports(#[from] PortError),
    #[error("Proxied process {0} must define a port range")]
    ProxiedWithoutPorts(String),
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(transparent)]
    HealthPlugin(#[from] UnresolvedHook),
    #[error(transparent)]
    Health(#[from] HealthError),
    /// The new process kept exiting before it was healthy.
    #[error("Health check failed for {url}: {detail}")]
    GaveUp { url: String, detail: String },
    /// A deploy step panicked (a bug in rollbridge).
    #[error(
        "Internal error during the deploy: {0}\nThis is a bug in rollbridge; please report it with the daemon log."
    )]
    Internal(String),
    /// The post-switch watch (or a rollback during it) sent traffic back.
    #[error("Rolled back release \"{release_id}\": {reason}")]
    RolledBack { release_id: String, reason: String },
    #[error(
        "deploy --canary needs an active release to share traffic with; deploy without --canary first"
    )]
    CanaryWithoutActive,
    /// Traffic moved, but a service or singleton did not follow.
    #[error("Traffic switched to release \"{release_id}\", but {}", describe_problems(.problems))]
    PartlySwitched {
        release_id: String,
        problems: Vec<SwitchProblem>,
    },
}

/// A service or singleton that did not follow a deploy's traffic switch.
#[derive(Debug, Error)]
pub enum SwitchProblem {
    #[error("service \"{id}\" keeps its previous template: {source}")]
    ServiceTemplate { id: String, source: DefinitionError },
    #[error("singleton \"{id}\" was not replaced: {ShuttingDown}")]
    SingletonNotReplaced { id: String },
    #[error("singleton \"{id}\" failed to start: {source}")]
    SingletonDefinition { id: String, source: DefinitionError },
    #[error("singleton \"{id}\" failed to start: {source}")]
    SingletonStart { id: String, source: SpawnError },
}

fn describe_problems(problems: &[SwitchProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A rollback that found no target or whose deploy failed.
#[derive(Debug, Error)]
pub enum RollbackError {
    #[error("No retained release \"{0}\" to roll back to.")]
    NotRetained(String),
    #[error("No previous release to roll back to.")]
    NoPrevious,
    #[error("Release \"{0}\" is already active.")]
    AlreadyActive(String),
    #[error(transparent)]
    Deploy(#[from] DeployError),
}

/// A stop whose release does not exist (`active` when none was named).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Release not found: {0}")]
pub struct StopError(pub String);

/// A restart that was refused or where some targets failed to start again.
#[derive(Debug, Error)]
pub enum RestartError {
    #[error(
        "The proxied process cannot be restarted in place; use \"rollbridge deploy\" for a zero-downtime replacement."
    )]
    Proxied,
    #[error("No managed process with id \"{0}\" to restart.")]
    NoSuchProcess(String),
    #[error("Failed to restart {}{}", describe_failures(.failures), describe_restarted(.restarted))]
    Failed {
        failures: Vec<(String, SpawnError)>,
        restarted: Vec<String>,
    },
}

fn describe_failures(failures: &[(String, SpawnError)]) -> String {
    failures
        .iter()
        .map(|(instance_id, error)| format!("{instance_id}: {error}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe_restarted(restarted: &[String]) -> String {
    if restarted.is_empty() {
        String::new()
    } else {
        format!(" (restarted: {})", restarted.join(", "))
    }
}

/// Why the final state file could not be written or removed at shutdown.
#[derive(Debug, Error)]
pub enum StateCleanupError {
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[error("{}", describe_io_error(.0))]
    Io(#[from] std::io::Error),
}

/// What an orderly shutdown could not do; shared by every caller, so cloneable.
/// Shown in a stable order: socket, resources, state.
#[derive(Debug, Clone, Default)]
pub struct ShutdownError {
    pub control_socket: Option<Arc<std::io::Error>>,
    /// Owned processes or releases still running afterwards.
    pub unstopped: usize,
    pub state_file: Option<Arc<StateCleanupError>>,
}

impl ShutdownError {
    pub fn is_empty(&self) -> bool {
        self.control_socket.is_none() && self.unstopped == 0 && self.state_file.is_none()
    }
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(error) = &self.control_socket {
            parts.push(format!(
                "control socket unlink failed: {}",
                describe_io_error(error)
            ));
        }
        if self.unstopped > 0 {
            parts.push(format!(
                "Shutdown failed to stop {} owned resource{}.",
                self.unstopped,
                if self.unstopped == 1 { "" } else { "s" }
            ));
        }
        if let Some(error) = &self.state_file {
            parts.push(format!("persistent state cleanup failed: {error}"));
        }
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for ShutdownError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        if let Some(error) = &self.control_socket {
            return Some(error.as_ref());
        }
        self.state_file
            .as_ref()
            .map(|error| error.as_ref() as &(dyn std::error::Error + 'static))
    }
}

/// Invalid daemon start flags; checked before anything starts.
#[derive(Debug, Error)]
pub enum BootstrapError {
    #[error(
        "Daemon --boot-attestation is accepted only with --config, --release-path, --release-id, and --revision."
    )]
    AttestationWithoutTuple,
    #[error(
        "Daemon --takeover-owner requires the complete bootstrap release tuple and --boot-attestation."
    )]
    TakeoverRequirements,
    #[error(
        "Daemon bootstrap options --config, --release-path, --release-id, and --revision must be provided together."
    )]
    IncompleteTuple,
    #[error("Daemon bootstrap {flag} must be an absolute path.")]
    RelativePath { flag: &'static str },
    #[error(
        "Daemon bootstrap {flag} must be normalized and must not contain unsafe traversal segments."
    )]
    UnnormalizedPath { flag: &'static str },
    #[error(
        "Daemon bootstrap {flag} must be a non-empty safe identifier containing only letters, numbers, dots, underscores, and hyphens."
    )]
    UnsafeIdentifier { flag: &'static str },
    #[error(
        "Daemon bootstrap --boot-attestation must use the canonical sha256:<64 lowercase hex> format."
    )]
    AttestationFormat,
    #[error("Daemon bootstrap --release-path is not accessible: {}", describe_io_error(.0))]
    ReleasePathInaccessible(#[source] std::io::Error),
    #[error("Daemon bootstrap --release-path must name a directory.")]
    ReleasePathNotDirectory,
}

/// A `retire-owner` request this daemon refuses (the owner's side of a takeover).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RetireError {
    #[error("Owner retirement attestation must use the canonical sha256:<64 lowercase hex> format")]
    AttestationFormat,
}

/// A daemon that could not start, or a bootstrap/takeover that could not
/// activate its release.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[error("Could not read the rollbridge executable to identify this build: {0}")]
    Identity(#[source] std::io::Error),
    #[error("Could not watch for SIGHUP to reopen the logs: {0}")]
    Sighup(#[source] std::io::Error),
    #[error(transparent)]
    ControlSocket(#[from] ControlSocketError),
    /// The access log or metrics listener (already a full message).
    #[error(transparent)]
    Observability(#[from] crate::observability::ConfigureError),
    /// A new image that could not take over a live upgrade (a full message).
    #[error("{0}")]
    Takeover(String),
    #[error("Could not serve the proxy socket systemd passed: {0}")]
    PassedProxy(#[source] std::io::Error),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// The running owner refused to retire; its message as it sent it.
    #[error("{0}")]
    OwnerRefused(String),
    #[error("Could not reach the current owner on {} to retire it: {source}", .path.display())]
    OwnerUnreachable { path: PathBuf, source: ClientError },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_failures_read_in_a_fixed_order() {
        let error = ShutdownError {
            control_socket: Some(Arc::new(std::io::Error::from_raw_os_error(13))),
            unstopped: 2,
            state_file: Some(Arc::new(StateCleanupError::Io(
                std::io::Error::from_raw_os_error(28),
            ))),
        };
        let text = error.to_string();
        let socket = text
            .find("control socket unlink failed: EACCES")
            .expect(&text);
        let resources = text
            .find("; Shutdown failed to stop 2 owned resources.; ")
            .expect(&text);
        let state = text
            .find("persistent state cleanup failed: ENOSPC")
            .expect(&text);
        assert!(socket < resources && resources < state, "{text}");
        let one = ShutdownError {
            unstopped: 1,
            ..ShutdownError::default()
        };
        assert_eq!(one.to_string(), "Shutdown failed to stop 1 owned resource.");
        assert!(ShutdownError::default().is_empty());
    }

    #[test]
    fn an_interrupted_deploy_keeps_the_protocol_first_line() {
        let error = DeployError::Interrupted {
            release_id: "v2".into(),
        };
        assert_eq!(
            error.to_string(),
            "Rollbridge is shutting down\nthe daemon is shutting down: the deploy of release \"v2\" was interrupted and the processes it had started were stopped"
        );
        assert_eq!(
            DeployError::from(ShuttingDown).to_string(),
            "Rollbridge is shutting down"
        );
    }

    #[test]
    fn a_restart_failure_lists_failures_then_what_was_restarted() {
        let error = RestartError::Failed {
            failures: vec![(
                "worker".into(),
                SpawnError::Spawn {
                    id: "worker".into(),
                    reason: "ENOENT".into(),
                },
            )],
            restarted: vec!["jobs".into(), "cron".into()],
        };
        let text = error.to_string();
        assert_eq!(
            text,
            "Failed to restart worker: cannot start process \"worker\" with /bin/sh: ENOENT (restarted: jobs, cron)"
        );
    }
}
