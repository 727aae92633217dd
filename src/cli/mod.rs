//! The `rollbridge` command line. Each command lives in its own file with its
//! arguments and its `run` function; this file only parses and dispatches.
//!
//! Conventions shared by every command: errors print `Error: <message>` on stderr
//! and exit 1; argument errors also exit 1 (not clap's usual 2), worded like the
//! JavaScript rollbridge (`error: unknown option '--x'`) so deploy scripts that
//! match on them keep working.

pub mod common;
pub mod completion;
pub mod daemon;
pub mod deploy;
mod deploy_warnings;
pub mod doctor;
mod doctor_release;
pub mod ensure_daemon;
pub mod events;
mod events_follow;
mod follow;
pub mod human;
pub mod legacy;
pub mod logs;
mod logs_follow;
pub mod lua_types;
pub mod man;
pub mod predeploy_cleanup;
pub mod recover;
pub mod restart;
pub mod rollback;
pub mod shutdown;
pub mod status;
pub mod stop;
pub mod systemd_unit;
pub mod traffic;
pub mod upgrade;
pub mod validate;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// What every command returns: an exit code, or an error to print as
/// `Error: <message>` (exit 1).
pub type CliResult = anyhow::Result<ExitCode>;

#[derive(Debug, Parser)]
#[command(
    name = "rollbridge",
    version,
    about = "Zero-downtime deploys for one host: a stable proxy port in front of supervised releases.",
    long_about = None,
    disable_help_subcommand = false,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `-c, --config <path>`, accepted by every command except `completion`.
#[derive(Debug, Clone, Args, Default)]
pub struct ConfigArg {
    /// Config file (.lua, .json, or a legacy .js/.mjs/.cjs module). Default: the first of
    /// rollbridge.lua, rollbridge.json, rollbridge.js in the working directory.
    // Global so commands with subcommands (`maintenance on`, `rollout set`)
    // accept it after the subcommand too.
    #[arg(short = 'c', long = "config", value_name = "path", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (proxy, supervisor and control socket).
    Daemon(daemon::DaemonArgs),
    /// Start a release, health-check it, switch traffic, and retire the previous one.
    Deploy(deploy::DeployArgs),
    /// Re-activate a retained release (the previous one by default).
    Rollback(rollback::RollbackArgs),
    /// Start a detached daemon unless one with the same runtime is already answering.
    EnsureDaemon(ensure_daemon::EnsureDaemonArgs),
    /// Print the daemon's status as JSON.
    Status(status::StatusArgs),
    /// Stop a release (the active one by default); the proxy then answers 503.
    Stop(stop::StopArgs),
    /// Gracefully restart companions, services and singletons in place.
    Restart(restart::RestartArgs),
    /// Stop every managed process and the daemon.
    Shutdown(shutdown::ShutdownArgs),
    /// Check a config file and report every problem with a fix.
    Validate(validate::ValidateArgs),
    /// Check the config and this host (socket, port, state path, release templates).
    Doctor(doctor::DoctorArgs),
    /// Show recent output captured from each managed process.
    Logs(logs::LogsArgs),
    /// Show the daemon's recent event history.
    Events(events::EventsArgs),
    /// Stop a pre-rollbridge supervisor's processes before the first deploy.
    PredeployCleanup(predeploy_cleanup::PredeployCleanupArgs),
    /// Find (and with --force stop) processes a crashed daemon left behind.
    Recover(recover::RecoverArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completion(completion::CompletionArgs),
    /// Move the open canary: `set <percent>`, `promote` or `abort`.
    Rollout(traffic::RolloutArgs),
    /// Hold new requests in the proxy (queued, never refused) until `resume`.
    Pause(traffic::PauseArgs),
    /// Let held requests through, in arrival order.
    Resume(traffic::ResumeArgs),
    /// Answer every request with 503 and a message (`on`), or route again (`off`).
    Maintenance(traffic::MaintenanceArgs),
    /// Replace the running daemon's binary in place; the app keeps running.
    Upgrade(upgrade::UpgradeArgs),
    /// Write the Lua annotation files (config, ctx, library) for an editor's language server.
    LuaTypes(lua_types::LuaTypesArgs),
    /// Print a systemd unit for this config (Type=notify, timeouts from its stop windows).
    SystemdUnit(systemd_unit::SystemdUnitArgs),
    /// Write manual pages (rollbridge.1 and one per command).
    Man(man::ManArgs),
    /// The config's process ids, one per line (used by the completion scripts).
    #[command(hide = true)]
    ProcessIds(completion::ProcessIdsArgs),
    /// The handover format this binary reads (the live upgrade handshake).
    #[command(hide = true)]
    HandoverFormat,
}

/// Entry point of the `rollbridge` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return report_parse_error(error),
    };
    if !matches!(cli.command, Command::Daemon(_)) {
        restore_default_sigpipe();
    }
    let result = match cli.command {
        Command::Daemon(args) => daemon::run(args),
        Command::Deploy(args) => deploy::run(args),
        Command::Rollback(args) => rollback::run(args),
        Command::EnsureDaemon(args) => ensure_daemon::run(args),
        Command::Status(args) => status::run(args),
        Command::Stop(args) => stop::run(args),
        Command::Restart(args) => restart::run(args),
        Command::Shutdown(args) => shutdown::run(args),
        Command::Rollout(args) => traffic::rollout(args),
        Command::Pause(args) => traffic::pause(args),
        Command::Resume(args) => traffic::resume(args),
        Command::Maintenance(args) => traffic::maintenance(args),
        Command::Upgrade(args) => upgrade::run(args),
        Command::HandoverFormat => upgrade::handover_format(),
        Command::Validate(args) => validate::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Events(args) => events::run(args),
        Command::PredeployCleanup(args) => predeploy_cleanup::run(args),
        Command::Recover(args) => recover::run(args),
        Command::Completion(args) => completion::run(args),
        Command::LuaTypes(args) => lua_types::run(args),
        Command::SystemdUnit(args) => systemd_unit::run(args),
        Command::Man(args) => man::run(args),
        Command::ProcessIds(args) => completion::process_ids(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints an argument error in the wording deploy scripts already match on and
/// exits 1. Help and version requests print normally and exit 0.
fn report_parse_error(error: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            return if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
        ErrorKind::UnknownArgument => {
            if let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) {
                let flag = arg.split('=').next().unwrap_or(arg);
                eprintln!("error: unknown option '{flag}'");
                eprintln!("Run \"rollbridge --help\" to see the commands and their options.");
                return ExitCode::FAILURE;
            }
        }
        ErrorKind::MissingRequiredArgument => {
            if let Some(ContextValue::Strings(args)) = error.get(ContextKind::InvalidArg) {
                for arg in args {
                    eprintln!("error: required option '{arg}' not specified");
                }
                let rendered = error.render().to_string();
                if let Some(usage) = rendered.find("Usage:") {
                    eprintln!("\n{}", rendered[usage..].trim_end());
                }
                return ExitCode::FAILURE;
            }
        }
        _ => {}
    }
    let _ = error.print();
    ExitCode::FAILURE
}

/// Short-lived commands behave like other Unix tools when their output pipe
/// closes early (`rollbridge logs | head`): they end quietly instead of failing on
/// a write. The daemon keeps Rust's default (ignored SIGPIPE) so a vanished client
/// is an error on one socket, never the end of the daemon.
fn restore_default_sigpipe() {
    // SAFETY: called once at startup, before any thread is spawned, and SIG_DFL is
    // always a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
