//! `rollbridge logs`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only the process with exactly this instance id (e.g. `worker#0`).
    #[arg(long = "process", value_name = "id")]
    pub process: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: LogsArgs) -> CliResult {
    super::daemon_unavailable("logs")
}
