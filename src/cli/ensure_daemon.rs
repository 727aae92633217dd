//! `rollbridge ensure-daemon`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct EnsureDaemonArgs {
    #[command(flatten)]
    pub config: ConfigArg,
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

pub fn run(_args: EnsureDaemonArgs) -> CliResult {
    super::daemon_unavailable("ensure-daemon")
}
