//! `rollbridge lua-types [DIR]`: writes the LuaLS annotation files compiled into
//! the binary, for an editor to read (docs/lua.md, "Editor support").

use super::CliResult;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct LuaTypesArgs {
    /// Folder to write the annotation files into (created when missing).
    #[arg(value_name = "DIR", default_value = "rollbridge-types")]
    pub dir: PathBuf,
}

pub fn run(args: LuaTypesArgs) -> CliResult {
    let written = crate::lua::types::write_all(&args.dir)
        .with_context(|| format!("cannot write the Lua annotations to {}", args.dir.display()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
