//! `rollbridge daemon`.

use super::{CliResult, ConfigArg};
use crate::daemon::bootstrap::{self, StartOptions};
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

/// Validates the start options, then runs the daemon on a two-worker tokio
/// runtime until it is shut down. The process exits as soon as the daemon is
/// done, without waiting for stray background tasks.
pub fn run(args: DaemonArgs) -> CliResult {
    let options = StartOptions {
        config: args.config.config,
        release_path: args.release_path,
        release_id: args.release_id,
        revision: args.revision,
        boot_attestation: args.boot_attestation,
        takeover_owner: args.takeover_owner,
    };
    let mode = bootstrap::validate(&options).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("rollbridge-daemon")
        .build()?;
    let code = runtime.block_on(crate::daemon::run::run(mode));
    let code = match code {
        Ok(code) => code,
        Err(message) => {
            eprintln!("Error: {message}");
            1
        }
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}
