//! `rollbridge status`: print the daemon's status object.

use super::common::{QUERY_TIMEOUT, load_config, send};
use super::{CliResult, ConfigArg};
use crate::control::protocol::Request;
use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub output: super::human::OutputArgs,
}

pub fn run(args: StatusArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let reply = send(&config, &Request::Status, Some(QUERY_TIMEOUT))?;
    super::human::print_reply(reply, args.output.mode(), super::human::status::render)
}
