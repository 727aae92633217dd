//! `rollbridge restart`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Restart only this process (a base id selects every replica; `id#n` one).
    #[arg(long = "process", value_name = "id")]
    pub process: Option<String>,
    /// Restart only processes with this policy: companion, singleton or service.
    #[arg(long = "policy", value_name = "policy")]
    pub policy: Option<String>,
}

pub fn run(_args: RestartArgs) -> CliResult {
    super::daemon_unavailable("restart")
}
