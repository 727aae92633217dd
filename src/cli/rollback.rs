//! `rollbridge rollback`: re-activate a retained release.

use super::common::{load_config, print_reply, put_optional, send};
use super::{CliResult, ConfigArg};
use clap::Args;
use serde_json::Map;

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Release to re-activate (default: the most recently active other release).
    #[arg(long = "release-id", value_name = "id")]
    pub release_id: Option<String>,
}

pub fn run(args: RollbackArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let mut fields = Map::new();
    put_optional(&mut fields, "releaseId", args.release_id.as_deref());
    // A rollback runs the deploy flow (start, health check, switch): no timeout.
    print_reply(send(&config, "rollback", fields, None)?)
}
