//! `rollbridge stop`: stop a release (the active one by default).

use super::common::{load_config, print_reply, send};
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
}

pub fn run(args: StopArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let request = Request::Stop {
        release_id: args.release_id,
    };
    // Stopping waits for graceful stops, which may legitimately take long.
    print_reply(send(&config, &request, None)?)
}
