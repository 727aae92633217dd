//! `rollbridge recover`: after a daemon crash, list (and with `--force` stop) the
//! processes its state file says it was running. Runs without a daemon, and
//! refuses to run while anything listens on the control socket.

use super::common::{load_config, plural};
use super::{CliResult, ConfigArg};
use crate::config::model::Config;
use crate::control::probe::probe;
use crate::daemon::orphans::{Orphan, StopOutcome, live_orphans, stop_orphan};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Stop the orphans found (without it, only list them).
    #[arg(long)]
    pub force: bool,
}

/// Why recover did not look for orphans at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecoverRefusal {
    #[error("No statePath is configured; set statePath in the config to enable recovery.")]
    NoStatePath,
    #[error(
        "A daemon (or another process) is using {0}; stop it before recovering — recover is for cleaning up after a crash."
    )]
    SocketInUse(String),
}

/// What a recover run found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoverReport {
    pub state_path: PathBuf,
    pub forced: bool,
    /// Live orphans found in the state file.
    pub orphans: Vec<Orphan>,
    /// With `--force`: the orphans that are gone now.
    pub stopped: Vec<Orphan>,
    /// With `--force`: the orphans still running, each with the reason.
    pub remaining: Vec<(Orphan, String)>,
    /// With `--force`: whether the state file was removed.
    pub cleared: bool,
    /// With `--force`: why removing the state file failed, if it did.
    pub clear_error: Option<String>,
}

pub fn run(args: RecoverArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let report = match recover(&config.config, args.force) {
        Ok(report) => report,
        Err(refusal) => {
            eprintln!("{refusal}");
            return Ok(ExitCode::FAILURE);
        }
    };
    Ok(print_report(&report))
}

/// Runs recover for `config`. Without `force` nothing is stopped or removed.
pub fn recover(config: &Config, force: bool) -> Result<RecoverReport, RecoverRefusal> {
    let Some(state_path) = &config.state_path else {
        return Err(RecoverRefusal::NoStatePath);
    };
    let socket = &config.control.path;
    match probe(Path::new(socket)) {
        Ok(outcome) if !outcome.alive => {}
        _ => return Err(RecoverRefusal::SocketInUse(socket.clone())),
    }
    let state_path = PathBuf::from(state_path);
    let orphans = live_orphans(&state_path);
    let mut report = RecoverReport {
        state_path,
        forced: force,
        orphans: orphans.clone(),
        stopped: Vec::new(),
        remaining: Vec::new(),
        cleared: false,
        clear_error: None,
    };
    if !force {
        return Ok(report);
    }
    let grace = Duration::from_millis(config.proxy.force_stop_timeout_ms);
    for orphan in orphans {
        match stop_orphan(&orphan, grace) {
            StopOutcome::Stopped => report.stopped.push(orphan),
            StopOutcome::StillRunning(reason) => report.remaining.push((orphan, reason)),
        }
    }
    if report.remaining.is_empty() {
        match std::fs::remove_file(&report.state_path) {
            Ok(()) => report.cleared = true,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => report.cleared = true,
            Err(error) => report.clear_error = Some(error.to_string()),
        }
    }
    Ok(report)
}

fn orphaned(count: usize) -> String {
    plural(count, "orphaned process", "orphaned processes")
}

fn print_report(report: &RecoverReport) -> ExitCode {
    if !report.forced {
        if report.orphans.is_empty() {
            println!("No orphaned processes found.");
        } else {
            println!(
                "Found {} (run with --force to stop):",
                orphaned(report.orphans.len())
            );
            for orphan in &report.orphans {
                println!("{}", orphan.list_line());
            }
            println!("Review the list first — a recycled pid could be an unrelated process.");
        }
        return ExitCode::SUCCESS;
    }
    if report.orphans.is_empty() && report.cleared {
        println!("No orphaned processes found; cleared the state file.");
        return ExitCode::SUCCESS;
    }
    if !report.stopped.is_empty() {
        println!("Stopped {}:", orphaned(report.stopped.len()));
        for orphan in &report.stopped {
            println!("{}", orphan.list_line());
        }
    }
    if !report.remaining.is_empty() {
        eprintln!(
            "Could not stop {} — still running (check permissions/ownership):",
            orphaned(report.remaining.len())
        );
        for (orphan, reason) in &report.remaining {
            eprintln!("{} — {reason}", orphan.list_line());
        }
        eprintln!("Left the state file in place so you can investigate and re-run recover.");
        return ExitCode::FAILURE;
    }
    if let Some(error) = &report.clear_error {
        eprintln!(
            "Could not remove the state file {}: {error}. Remove it by hand once you have checked it.",
            report.state_path.display()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
