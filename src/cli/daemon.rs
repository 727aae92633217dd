//! `rollbridge daemon`.

use super::{CliResult, ConfigArg};
use clap::Args;

#[derive(Debug, Args)]
pub struct DaemonArgs {
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
    /// Attestation echoed in status.bootstrap (sha256:<64 lowercase hex>).
    #[arg(long = "boot-attestation", value_name = "sha256")]
    pub boot_attestation: Option<String>,
    /// Take over from a running daemon once the bootstrap release is healthy.
    #[arg(long = "takeover-owner")]
    pub takeover_owner: bool,
}

pub fn run(_args: DaemonArgs) -> CliResult {
    super::daemon_unavailable("daemon")
}
