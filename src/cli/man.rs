//! `rollbridge man [DIR]`: manual pages generated from the same command
//! definitions the parser uses: `rollbridge.1` and one `rollbridge-<command>.1`
//! per command.

use super::{Cli, CliResult};
use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_mangen::Man;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Folder to write the pages into (created when missing), e.g.
    /// /usr/local/share/man/man1.
    #[arg(value_name = "DIR", default_value = "man")]
    pub dir: PathBuf,
}

pub fn run(args: ManArgs) -> CliResult {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    for path in write_pages(&args.dir)
        .with_context(|| format!("cannot write manual pages to {}", args.dir.display()))?
    {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the page of the command and of every visible subcommand.
fn write_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut command = Cli::command().disable_help_subcommand(true);
    // Building fills in what the pages show: `rollbridge-<command>` names and
    // the generated --help/--version flags.
    command.build();
    let mut written = vec![Man::new(command.clone()).generate_to(dir)?];
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        written.push(Man::new(sub.clone()).generate_to(dir)?);
    }
    Ok(written)
}
