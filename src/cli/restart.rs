//! `rollbridge restart`: gracefully restart non-proxied processes in place.

use super::common::{load_config, option_error, plural};
use super::human::{replies, run_with_progress};
use super::{CliResult, ConfigArg};
use crate::control::protocol::Request;
use clap::Args;

/// The policies `--policy` accepts (the proxied process is replaced by deploys only).
pub const RESTARTABLE_POLICIES: [&str; 3] = ["companion", "singleton", "service"];

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Restart only this process (a base id selects every replica; `id#n` one).
    #[arg(long = "process", value_name = "id")]
    pub process: Option<String>,
    /// Restart only processes with this policy: companion, singleton or service.
    #[arg(long = "policy", value_name = "policy")]
    pub policy: Option<String>,
    #[command(flatten)]
    pub output: super::human::OutputArgs,
    #[command(flatten)]
    pub progress: super::human::progress::ProgressArg,
}

pub fn run(args: RestartArgs) -> CliResult {
    if let Some(policy) = &args.policy {
        if !RESTARTABLE_POLICIES.contains(&policy.as_str()) {
            return option_error("--policy must be one of: companion, singleton, service.");
        }
    }
    let config = load_config(&args.config)?;
    let request = Request::Restart {
        process_id: args.process,
        policy: args.policy,
    };
    // Each target goes through its graceful stop: no timeout.
    run_with_progress(
        &config,
        &request,
        &args.output,
        &args.progress,
        |reply| {
            let count = reply
                .get("restarted")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len);
            format!("restarted {}", plural(count, "process", "processes"))
        },
        replies::restarted,
    )
}
