//! `rollbridge doctor`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Release directory; a relative path is resolved against the current directory.
    #[arg(long = "release-path", value_name = "path")]
    pub release_path: Option<std::path::PathBuf>,
    /// Release id (default: the revision, else a UTC timestamp).
    #[arg(long = "release-id", value_name = "id")]
    pub release_id: Option<String>,
    /// Revision, e.g. a commit sha (default: the release id).
    #[arg(long = "revision", value_name = "sha")]
    pub revision: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: DoctorArgs) -> CliResult {
    super::daemon_unavailable("doctor")
}
