//! `rollbridge rollback`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Release to re-activate (default: the most recently active other release).
    #[arg(long = "release-id", value_name = "id")]
    pub release_id: Option<String>,
}

pub fn run(_args: RollbackArgs) -> CliResult {
    super::daemon_unavailable("rollback")
}
