//! `rollbridge events`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only the last N events (a positive integer).
    #[arg(long = "limit", value_name = "n")]
    pub limit: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: EventsArgs) -> CliResult {
    super::daemon_unavailable("events")
}
