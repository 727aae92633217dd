//! `rollbridge predeploy-cleanup`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct PredeployCleanupArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Release directory; a relative path is resolved against the current directory.
    #[arg(long = "release-path", value_name = "path")]
    pub release_path: Option<std::path::PathBuf>,
}

pub fn run(_args: PredeployCleanupArgs) -> CliResult {
    super::daemon_unavailable("predeploy-cleanup")
}
