//! `rollbridge shutdown`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct ShutdownArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(_args: ShutdownArgs) -> CliResult {
    super::daemon_unavailable("shutdown")
}
