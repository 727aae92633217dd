//! What a managed process is: its fully rendered definition, why it was started, and
//! the states it moves through.

use crate::config::model::ProcessConfig;
use crate::observability::ProcessLogTarget;
use std::path::PathBuf;

/// A fully rendered process definition. The daemon builds it from the config and the
/// release's template values; the supervisor never renders anything itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessDefinition {
    /// `"web"`, or `"worker#0"` for a replica.
    pub instance_id: String,
    pub base_id: String,
    /// The release the definition was built from; prefixes every process event.
    pub release_id: String,
    pub release_path: String,
    pub revision: String,
    /// The rendered shell command, run as `/bin/sh -c <command>`.
    pub command: String,
    /// The rendered working directory.
    pub cwd: PathBuf,
    /// `ROLLBRIDGE_*` plus the rendered `env`; the daemon's own environment is
    /// inherited underneath and loses to these.
    pub env: Vec<(String, String)>,
    pub port: Option<u16>,
    pub replica_index: u32,
    pub replica_count: u32,
    /// Policy, stop signal, graceful stop, lifecycle hooks, restart, memory and
    /// output settings.
    pub config: ProcessConfig,
    /// Where the output is also appended (`logFile`, rendered and resolved).
    pub log_file: Option<ProcessLogTarget>,
}

/// Why a process was (re)started: part of the `process started` event.
pub use crate::events::StartReason;

crate::util::names::wire_names! {
    /// `stopped` (initial) → `starting` → `running` → (`stopping` → `stopped`) or
    /// `failed`. A spawn error goes straight to `failed`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ProcessState {
        Starting = "starting",
        Running = "running",
        Stopping = "stopping",
        Stopped = "stopped",
        Failed = "failed",
    }
}
