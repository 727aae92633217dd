//! `rollbridge shutdown`: stop every managed process and the daemon.

use super::common::load_config;
use super::human::{replies, run_with_progress};
use super::{CliResult, ConfigArg};
use crate::control::protocol::Request;
use clap::Args;

#[derive(Debug, Args)]
pub struct ShutdownArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub output: super::human::OutputArgs,
    #[command(flatten)]
    pub progress: super::human::progress::ProgressArg,
}

pub fn run(args: ShutdownArgs) -> CliResult {
    let config = load_config(&args.config)?;
    // The reply comes only after every process has stopped: no timeout.
    run_with_progress(
        &config,
        &Request::Shutdown,
        &args.output,
        &args.progress,
        |_| "the daemon shut down".to_string(),
        replies::shut_down,
    )
}
