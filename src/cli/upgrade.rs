//! `rollbridge upgrade`: re-execute the running daemon in place from a new
//! binary, keeping its processes, listeners and state (docs/upgrade.md).

use super::common::{load_config, send};
use super::human::{OutputArgs, print_reply, replies};
use super::{CliResult, ConfigArg};
use crate::control::protocol::Request;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The new rollbridge executable (default: the daemon's own executable path,
    /// as it is on disk now). A relative path is resolved against the current
    /// directory.
    #[arg(long = "binary", value_name = "path")]
    pub binary: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: UpgradeArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let binary = match args.binary {
        Some(path) => Some(std::path::absolute(&path)?),
        None => None,
    };
    let request = Request::Upgrade {
        binary: binary.map(|path| path.to_string_lossy().into_owned()),
    };
    // An upgrade waits for a running deploy first: no timeout.
    let reply = send(&config, &request, None)?;
    print_reply(reply, args.output.mode(), replies::upgraded)
}

/// `rollbridge handover-format` (hidden): the handshake an upgrading daemon runs
/// on the new binary before executing it.
pub fn handover_format() -> CliResult {
    println!(
        "{}{}",
        crate::daemon::upgrade::handover::HANDSHAKE_PREFIX,
        crate::daemon::upgrade::handover::HANDOVER_FORMAT
    );
    Ok(ExitCode::SUCCESS)
}
