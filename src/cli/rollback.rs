//! `rollbridge rollback`: re-activate a retained release.

use super::common::{load_config, reply_text};
use super::human::{replies, run_with_progress};
use super::{CliResult, ConfigArg};
use crate::control::protocol::Request;
use clap::Args;

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Release to re-activate (default: the most recently active other release).
    #[arg(long = "release-id", value_name = "id")]
    pub release_id: Option<String>,
    #[command(flatten)]
    pub output: super::human::OutputArgs,
    #[command(flatten)]
    pub progress: super::human::progress::ProgressArg,
}

pub fn run(args: RollbackArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let request = Request::Rollback {
        release_id: args.release_id,
    };
    // A rollback runs the deploy flow (start, health check, switch): no timeout.
    run_with_progress(
        &config,
        &request,
        &args.output,
        &args.progress,
        |reply| format!("rolled back to {}", reply_text(reply, "activeReleaseId")),
        replies::rolled_back,
    )
}
