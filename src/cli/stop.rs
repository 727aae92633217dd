//! `rollbridge stop`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Release to stop (default: the active release).
    #[arg(long = "release-id", value_name = "id")]
    pub release_id: Option<String>,
}

pub fn run(_args: StopArgs) -> CliResult {
    super::daemon_unavailable("stop")
}
