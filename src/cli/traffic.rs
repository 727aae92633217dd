//! Traffic control commands: `rollout set|promote|abort`, `pause`, `resume`,
//! `maintenance on|off` (docs/rollouts.md).

use super::common::{load_config, send};
use super::human::{OutputArgs, print_reply, progress::ProgressArg, replies, run_with_progress};
use super::{CliResult, ConfigArg};
use crate::control::protocol::{Request, RolloutAction};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(subcommand)]
    pub action: RolloutCommand,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub progress: ProgressArg,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Send this share (0-100) of new requests to the canary.
    Set {
        #[arg(value_name = "percent", value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
    },
    /// Switch all traffic to the canary (then the watch, if configured).
    Promote,
    /// Send all traffic back to the active release and stop the canary gracefully.
    Abort,
}

pub fn rollout(args: RolloutArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let (action, percent) = match args.action {
        RolloutCommand::Set { percent } => (RolloutAction::Set, Some(percent)),
        RolloutCommand::Promote => (RolloutAction::Promote, None),
        RolloutCommand::Abort => (RolloutAction::Abort, None),
    };
    let request = Request::Rollout { action, percent };
    // Promote runs the switch and the watch: no timeout.
    run_with_progress(
        &config,
        &request,
        &args.output,
        &args.progress,
        |_| format!("rollout {}", action.as_str()),
        replies::rollout,
    )
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Longest a request is held before it gets 503 (default 30000).
    #[arg(long = "max-ms", value_name = "ms")]
    pub max_ms: Option<u64>,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn pause(args: PauseArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let request = Request::Pause {
        max_ms: args.max_ms,
    };
    let reply = send(&config, &request, None)?;
    print_reply(reply, args.output.mode(), replies::traffic)
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn resume(args: ResumeArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let reply = send(&config, &Request::Resume, None)?;
    print_reply(reply, args.output.mode(), replies::traffic)
}

#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(subcommand)]
    pub switch: MaintenanceSwitch,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceSwitch {
    /// Answer every request with 503, Retry-After and a message.
    On {
        /// The text clients get (default "Down for maintenance").
        #[arg(long = "message", value_name = "text")]
        message: Option<String>,
    },
    /// Route requests again.
    Off,
}

pub fn maintenance(args: MaintenanceArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let request = match args.switch {
        MaintenanceSwitch::On { message } => Request::Maintenance {
            enabled: true,
            message,
        },
        MaintenanceSwitch::Off => Request::Maintenance {
            enabled: false,
            message: None,
        },
    };
    let reply = send(&config, &request, None)?;
    print_reply(reply, args.output.mode(), replies::traffic)
}
