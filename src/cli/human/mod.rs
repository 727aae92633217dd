//! Output for a person at a terminal. Every daemon-talking command prints its
//! reply as today's bytes (pretty JSON or its plain text) unless stdout is a
//! terminal and `--json` was not given; only then does it render the reply
//! here. Renderers take the reply as a `serde_json::Value` (the seam: when the
//! replies become typed, only the input type of these functions changes) and
//! return text, so exit codes never depend on the mode.

pub mod color;
pub mod progress;
pub mod replies;
pub mod status;
pub mod table;

pub use color::{ColorChoice, Paint};

use crate::cli::CliResult;
use crate::config::LoadedConfig;
use crate::control::protocol::Request;
use clap::Args;
use serde_json::{Map, Value};
use std::io::IsTerminal;
use std::process::ExitCode;

/// `--color`, for commands that print for a person.
#[derive(Debug, Clone, Args, Default)]
pub struct ColorArg {
    /// Colour in human output: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long = "color", value_name = "when", value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// `--json` and `--color`, for commands whose only output used to be JSON.
#[derive(Debug, Clone, Args, Default)]
pub struct OutputArgs {
    /// Print the daemon's JSON reply even on a terminal (what scripts always get).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub color: ColorArg,
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Today's bytes: pretty JSON or the plain text scripts read.
    Plain,
    /// For a person at a terminal, coloured when `Paint` says so.
    Human(Paint),
}

impl OutputArgs {
    /// Human when stdout is a terminal and `--json` was not given.
    pub fn mode(&self) -> Mode {
        mode_for(self.json, &self.color)
    }
}

/// Human output only on a terminal and never with `json`.
pub fn mode_for(json: bool, color: &ColorArg) -> Mode {
    if json || !std::io::stdout().is_terminal() {
        Mode::Plain
    } else {
        Mode::Human(Paint::for_terminal(color.color))
    }
}

/// Prints a reply: today's pretty JSON in [`Mode::Plain`], `render`'s text in
/// [`Mode::Human`]. Exit 0 either way.
pub fn print_reply(
    reply: Map<String, Value>,
    mode: Mode,
    render: impl FnOnce(&Map<String, Value>, Paint) -> String,
) -> CliResult {
    match mode {
        Mode::Plain => crate::cli::common::print_reply(reply),
        Mode::Human(paint) => {
            println!("{}", render(&reply, paint));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs a deploy-class command with live progress on stderr (see
/// [`progress`]) and prints its reply. `what` names the command in the summary
/// (`deploy`), `done` words a success for it.
pub fn run_with_progress(
    config: &LoadedConfig,
    request: &Request,
    output: &OutputArgs,
    progress: &progress::ProgressArg,
    done: impl FnOnce(&Map<String, Value>) -> String,
    render: impl FnOnce(&Map<String, Value>, Paint) -> String,
) -> CliResult {
    let steps = progress::Progress::start(config.socket_path(), progress, output.color.color);
    let reply = crate::cli::common::send(config, request, None);
    if let Some(steps) = steps {
        match &reply {
            Ok(reply) => steps.finish(&done(reply)),
            Err(_) => steps.finish(&format!("{} failed", request.name())),
        }
    }
    print_reply(reply?, output.mode(), render)
}
