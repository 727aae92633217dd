//! `rollbridge deploy`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Release directory; a relative path is resolved against the current directory.
    #[arg(long = "release-path", value_name = "path", required = true)]
    pub release_path: std::path::PathBuf,
    /// Release id (default: the revision, else a UTC timestamp).
    #[arg(long = "release-id", value_name = "id")]
    pub release_id: Option<String>,
    /// Revision, e.g. a commit sha (default: the release id).
    #[arg(long = "revision", value_name = "sha")]
    pub revision: Option<String>,
    /// Start the daemon first if none is running.
    #[arg(long = "ensure-daemon")]
    pub ensure_daemon: bool,
    /// Where a daemon started by this command writes its log.
    #[arg(long = "daemon-log-path", value_name = "path")]
    pub daemon_log_path: Option<std::path::PathBuf>,
    /// Where a daemon started by this command records its pid.
    #[arg(long = "daemon-pid-path", value_name = "path")]
    pub daemon_pid_path: Option<std::path::PathBuf>,
    /// Directory for the daemon runtime copy (accepted for compatibility).
    #[arg(long = "daemon-runtime-path", value_name = "path")]
    pub daemon_runtime_path: Option<std::path::PathBuf>,
    /// How long to wait for a started daemon to answer, in ms (default 10000).
    #[arg(long = "daemon-start-timeout-ms", value_name = "ms")]
    pub daemon_start_timeout_ms: Option<String>,
}

pub fn run(_args: DeployArgs) -> CliResult {
    super::daemon_unavailable("deploy")
}
