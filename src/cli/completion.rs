//! `rollbridge completion <shell>`: a completion script generated from the same
//! command definitions the parser uses, so it never falls out of date.

use super::{Cli, CliResult};
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash, zsh or fish.
    pub shell: String,
}

pub fn run(args: CompletionArgs) -> CliResult {
    let shell = match args.shell.as_str() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => {
            let _ = writeln!(
                std::io::stderr(),
                "Unsupported shell \"{other}\". Supported shells: bash, zsh, fish."
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "rollbridge", &mut script);
    // A closed pipe (e.g. `| head`) is not an error worth reporting.
    let _ = std::io::stdout().write_all(&script);
    Ok(ExitCode::SUCCESS)
}
