//! `rollbridge status`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(_args: StatusArgs) -> CliResult {
    super::daemon_unavailable("status")
}
