//! `rollbridge stop`: stop a release (the active one by default).

use super::common::load_config;
use super::human::{replies, run_with_progress};
use super::{CliResult, ConfigArg};
use crate::control::protocol::Request;
use clap::Args;

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Release to stop (default: the active release).
    #[arg(long = "release-id", value_name = "id")]
    pub release_id: Option<String>,
    #[command(flatten)]
    pub output: super::human::OutputArgs,
    #[command(flatten)]
    pub progress: super::human::progress::ProgressArg,
}

pub fn run(args: StopArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let request = Request::Stop {
        release_id: args.release_id.clone(),
    };
    // Stopping waits for graceful stops, which may legitimately take long.
    let release = args.release_id.as_deref();
    run_with_progress(
        &config,
        &request,
        &args.output,
        &args.progress,
        |_| format!("stopped {}", release.unwrap_or("the active release")),
        |reply, paint| replies::stopped(reply, release, paint),
    )
}
