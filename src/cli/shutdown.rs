//! `rollbridge shutdown`: stop every managed process and the daemon.

use super::common::{load_config, print_reply, send};
use super::{CliResult, ConfigArg};
use crate::control::protocol::Request;
use clap::Args;

#[derive(Debug, Args)]
pub struct ShutdownArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(args: ShutdownArgs) -> CliResult {
    let config = load_config(&args.config)?;
    // The reply comes only after every process has stopped: no timeout.
    print_reply(send(&config, &Request::Shutdown, None)?)
}
