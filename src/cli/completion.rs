//! `rollbridge completion <shell>`.

use super::CliResult;
use clap::Args;

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash, zsh or fish.
    pub shell: String,
}

pub fn run(_args: CompletionArgs) -> CliResult {
    anyhow::bail!("completion is not available in this build yet")
}
