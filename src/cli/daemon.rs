//! `rollbridge daemon`.

use super::{CliResult, ConfigArg};
use crate::daemon::bootstrap::{self, StartOptions};
use crate::daemon::upgrade::restore::{self, Inherited};
use crate::observability::{
    DaemonObservability, LoggingOptions, Rotation, SystemdHandoff, SystemdNotifier,
};
use clap::Args;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Release directory; a relative path is resolved against the current directory.
    #[arg(long = "release-path", value_name = "path")]
    pub release_path: Option<std::path::PathBuf>,
    /// Release id (default: the revision, else a UTC timestamp).
    #[arg(long = "release-id", value_name = "id")]
    pub release_id: Option<String>,
    /// Revision, e.g. a commit sha (default: the release id).
    #[arg(long = "revision", value_name = "sha")]
    pub revision: Option<String>,
    /// Attestation echoed in status.bootstrap (sha256:<64 lowercase hex>).
    #[arg(long = "boot-attestation", value_name = "sha256")]
    pub boot_attestation: Option<String>,
    /// Take over from a running daemon once the bootstrap release is healthy.
    #[arg(long = "takeover-owner")]
    pub takeover_owner: bool,
    /// Write the daemon log (event lines and diagnostics) to this file instead of
    /// stdout; SIGHUP reopens it.
    #[arg(long = "log-file", value_name = "path")]
    pub log_file: Option<std::path::PathBuf>,
    /// Roll the log file over: never (default), hourly or daily (UTC).
    #[arg(long = "log-rotation", value_name = "when", value_parser = Rotation::NAMES)]
    pub log_rotation: Option<String>,
    /// How many rolled-over log files to keep (default: all).
    #[arg(long = "log-keep", value_name = "n")]
    pub log_keep: Option<usize>,
    /// Diagnostics to log besides the events: a level (error, warn, info, debug,
    /// trace) or a list such as "warn,rollbridge::hooks=debug". Default: RUST_LOG,
    /// else warn.
    #[arg(long = "log-level", value_name = "filter")]
    pub log_level: Option<String>,
}

/// How this daemon process starts.
enum Start {
    /// Re-executed by a live upgrade: take over from the handover.
    Upgraded(Box<Inherited>),
    Fresh(bootstrap::StartMode),
}

/// Validates the start options, then runs the daemon on a two-worker tokio
/// runtime until it is shut down. The process exits as soon as the daemon is
/// done, without waiting for stray background tasks.
pub fn run(args: DaemonArgs) -> CliResult {
    let options = StartOptions {
        config: args.config.config,
        release_path: args.release_path,
        release_id: args.release_id,
        revision: args.revision,
        boot_attestation: args.boot_attestation,
        takeover_owner: args.takeover_owner,
    };
    // SAFETY: no other thread exists yet, so the environment can be changed.
    // An image started by a live upgrade takes over instead of starting anew.
    let start = match unsafe { Inherited::take() } {
        Some(inherited) => Start::Upgraded(Box::new(
            inherited.map_err(|e| anyhow::anyhow!("live upgrade: {e}"))?,
        )),
        None => Start::Fresh(bootstrap::validate(&options).map_err(anyhow::Error::msg)?),
    };
    let logging = LoggingOptions {
        file: args.log_file,
        rotation: args
            .log_rotation
            .as_deref()
            .and_then(Rotation::parse)
            .unwrap_or_default(),
        keep: args.log_keep,
        level: args.log_level,
    };
    // Read before the handoff clears it: a fallback passes it on.
    let notifier = SystemdNotifier::from_env();
    // SAFETY: no other thread exists yet (the runtime is built below), so the
    // environment can be changed without racing a reader.
    let handoff = unsafe { SystemdHandoff::take() }
        .map_err(|error| cannot_start(&start, &notifier, error.to_string()))?;
    let observability = DaemonObservability::start(&logging, handoff)
        .map_err(|error| cannot_start(&start, &notifier, error.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("rollbridge-daemon")
        .build()
        .map_err(|error| cannot_start(&start, &notifier, error.to_string()))?;
    let code = runtime.block_on(async {
        let code = match start {
            Start::Upgraded(inherited) => restore::run(*inherited, observability.clone()).await,
            Start::Fresh(mode) => crate::daemon::run::run(mode, observability.clone()).await,
        };
        observability.close().await;
        code
    });
    let code = match code {
        Ok(code) => code,
        Err(message) => {
            // Also in the log file, where `ensure-daemon` looks for the reason.
            tracing::error!(target: "rollbridge::daemon", "{message}");
            eprintln!("Error: {message}");
            1
        }
    };
    observability.finish();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}

/// A failure before the daemon runs. An image started by a live upgrade gives
/// the daemon back to the previous binary instead of ending it (this returns
/// only when that is impossible too).
fn cannot_start(start: &Start, notifier: &SystemdNotifier, reason: String) -> anyhow::Error {
    match start {
        Start::Upgraded(inherited) => {
            anyhow::Error::msg(restore::fall_back(inherited, &reason, notifier).to_string())
        }
        Start::Fresh(_) => anyhow::Error::msg(reason),
    }
}
