//! `rollbridge status`: print the daemon's status object.

use super::common::{QUERY_TIMEOUT, load_config, print_reply, send};
use super::{CliResult, ConfigArg};
use clap::Args;
use serde_json::Map;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(args: StatusArgs) -> CliResult {
    let config = load_config(&args.config)?;
    print_reply(send(&config, "status", Map::new(), Some(QUERY_TIMEOUT))?)
}
