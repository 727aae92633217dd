//! `rollbridge status`: print the daemon's status object.

use super::common::{QUERY_TIMEOUT, load_config, print_reply, send};
use super::{CliResult, ConfigArg};
use crate::control::protocol::Request;
use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(args: StatusArgs) -> CliResult {
    let config = load_config(&args.config)?;
    print_reply(send(&config, &Request::Status, Some(QUERY_TIMEOUT))?)
}
