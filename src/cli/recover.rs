//! `rollbridge recover`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Stop the orphans found (without it, only list them).
    #[arg(long)]
    pub force: bool,
}

pub fn run(_args: RecoverArgs) -> CliResult {
    super::daemon_unavailable("recover")
}
