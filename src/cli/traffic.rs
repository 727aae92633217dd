//! Traffic control commands: `rollout set|promote|abort`, `pause`, `resume`,
//! `maintenance on|off` (docs/rollouts.md).

use super::common::{load_config, print_reply, put_optional, send};
use super::{CliResult, ConfigArg};
use clap::{Args, Subcommand};
use serde_json::{Map, Value};

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(subcommand)]
    pub action: RolloutCommand,
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
    let mut fields = Map::new();
    let action = match args.action {
        RolloutCommand::Set { percent } => {
            fields.insert("percent".into(), Value::from(percent));
            "set"
        }
        RolloutCommand::Promote => "promote",
        RolloutCommand::Abort => "abort",
    };
    fields.insert("action".into(), Value::from(action));
    // Promote runs the switch and the watch: no timeout.
    print_reply(send(&config, "rollout", fields, None)?)
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Longest a request is held before it gets 503 (default 30000).
    #[arg(long = "max-ms", value_name = "ms")]
    pub max_ms: Option<u64>,
}

pub fn pause(args: PauseArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let mut fields = Map::new();
    if let Some(max_ms) = args.max_ms {
        fields.insert("maxMs".into(), Value::from(max_ms));
    }
    print_reply(send(&config, "pause", fields, None)?)
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn resume(args: ResumeArgs) -> CliResult {
    let config = load_config(&args.config)?;
    print_reply(send(&config, "resume", Map::new(), None)?)
}

#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(subcommand)]
    pub switch: MaintenanceSwitch,
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
    let mut fields = Map::new();
    match &args.switch {
        MaintenanceSwitch::On { message } => {
            fields.insert("enabled".into(), Value::Bool(true));
            put_optional(&mut fields, "message", message.as_deref());
        }
        MaintenanceSwitch::Off => {
            fields.insert("enabled".into(), Value::Bool(false));
        }
    }
    print_reply(send(&config, "maintenance", fields, None)?)
}
