//! `rollbridge predeploy-cleanup`: make the host ready for a rollbridge deploy.
//!
//! 1. A daemon for this application that can take the deploy is left alone.
//!    Otherwise it is shut down (see [`decide`] for when).
//! 2. Processes a crashed daemon left behind are stopped (`recover --force`).
//! 3. The processes of the previous supervisor (`legacyTakeover`) are stopped.

use super::common::{LoadedConfig, QUERY_TIMEOUT, daemon_pid, load_config, plural, send};
use super::deploy::absolute_release_path;
use super::ensure_daemon::own_runtime;
use super::legacy::{legacy_matchers, matcher_registry, stop_legacy_processes};
use super::recover::recover;
use super::{CliResult, ConfigArg};
use crate::control::protocol::Request;
use crate::control::status::Status;
use crate::daemon::orphans::managed_processes;
use crate::daemon::runtime::RuntimeIdentity;
use crate::daemon::state_file::StateSnapshot;
use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long to wait for a shut-down daemon to release its socket.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);
const SHUTDOWN_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
pub struct PredeployCleanupArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The release about to be deployed; when given, a running daemon built from a
    /// different rollbridge binary is restarted.
    #[arg(long = "release-path", value_name = "path")]
    pub release_path: Option<std::path::PathBuf>,
}

/// What to do with a daemon that is already running for this application.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// It serves a release and can take the deploy: nothing else to do.
    KeepActive,
    /// It runs without an active release and can take the deploy: keep it, but
    /// still clear legacy processes out of the way.
    KeepIdle,
    /// Shut it down first; the reason is for the record.
    Restart(String),
}

/// Whether a running daemon (its `status` reply) can take a deploy of `config`.
///
/// It can when its proxy listens where the config says (`host`, `port`,
/// `upstreamHost` all equal) and, when a release path was given, it runs the same
/// rollbridge build as this command (a daemon that does not report its build is
/// given the benefit of the doubt). Unlike the JavaScript tool, a daemon without
/// an active release is not shut down for that reason alone.
pub fn decide(
    status: &Map<String, Value>,
    config: &LoadedConfig,
    runtime: Option<&RuntimeIdentity>,
) -> Decision {
    let proxy = &config.config.proxy;
    let reported = Status::from_reply(status);
    let same_proxy = reported.proxy.as_ref().is_some_and(|reported| {
        reported.host == proxy.host
            && reported.port == proxy.port
            && reported.upstream_host == proxy.upstream_host
    });
    if !same_proxy {
        return Decision::Restart("its proxy settings differ from the config".into());
    }
    if let (Some(runtime), Some(reported)) = (runtime, &reported.daemon_runtime) {
        if !reported.same_build(runtime) {
            return Decision::Restart("it runs a different rollbridge build".into());
        }
    }
    match reported.active_release_id {
        Some(_) => Decision::KeepActive,
        None => Decision::KeepIdle,
    }
}

pub fn run(args: PredeployCleanupArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let runtime = match &args.release_path {
        Some(path) => {
            absolute_release_path(path)?;
            Some(own_runtime()?)
        }
        None => None,
    };
    let socket = config.socket_path().to_path_buf();
    let probed = crate::control::probe::probe(&socket)
        .with_context(|| format!("could not probe {}", socket.display()))?;

    let mut protected_groups = HashSet::new();
    let mut protected_roots = HashSet::new();
    let mut daemon_kept = false;
    let daemon_line = if probed.alive {
        let Some(application) = &probed.application else {
            bail!(
                "A non-Rollbridge process is using {}; refusing predeploy cleanup.",
                socket.display()
            );
        };
        if application != &config.config.application {
            bail!(
                "A Rollbridge daemon for \"{application}\" is using {}; expected \"{}\".",
                socket.display(),
                config.config.application
            );
        }
        let status = send(&config, &Request::Status, Some(QUERY_TIMEOUT))?;
        match decide(&status, &config, runtime.as_ref()) {
            Decision::KeepActive => {
                println!(
                    "Rollbridge daemon already has an active release; no legacy cleanup needed."
                );
                return Ok(ExitCode::SUCCESS);
            }
            Decision::KeepIdle => {
                protected_groups = managed_pids(&status);
                protected_roots.extend(daemon_pid(&socket));
                daemon_kept = true;
                "Rollbridge daemon is running without an active release; kept it running."
            }
            Decision::Restart(_) => {
                send(&config, &Request::Shutdown, None)?;
                wait_until_released(&socket)?;
                "Stopped existing Rollbridge daemon before deploy."
            }
        }
    } else {
        "No active Rollbridge daemon found."
    };

    let mut lines = vec![daemon_line.to_string()];
    if !daemon_kept {
        let recovered = recover_orphans(&config)?;
        lines.push(format!(
            "Recovered {}.",
            plural(
                recovered,
                "Rollbridge orphaned process",
                "Rollbridge orphaned processes"
            )
        ));
    }

    let mut stopped = 0;
    if let Some(takeover) = &config.config.legacy_takeover {
        let registry = matcher_registry(&config)?;
        let matchers = legacy_matchers(takeover, &registry)?;
        let cleanup =
            stop_legacy_processes(takeover, &matchers, &protected_groups, &protected_roots)?;
        for warning in &cleanup.warnings {
            eprintln!("Warning: {warning}");
        }
        stopped = cleanup.stopped.len();
    }
    lines.push(format!(
        "Stopped {}.",
        plural(stopped, "legacy process", "legacy processes")
    ));
    println!("{}", lines.join("\n"));
    Ok(ExitCode::SUCCESS)
}

/// Runs `recover --force` when a state file is configured; returns how many
/// orphans were found.
fn recover_orphans(config: &LoadedConfig) -> anyhow::Result<usize> {
    if config.config.state_path.is_none() {
        return Ok(0);
    }
    let report = recover(&config.config, true)?;
    if !report.remaining.is_empty() {
        bail!(
            "Could not stop {}.",
            plural(
                report.remaining.len(),
                "Rollbridge orphaned process",
                "Rollbridge orphaned processes"
            )
        );
    }
    if let Some(error) = &report.clear_error {
        eprintln!(
            "Warning: could not remove the state file {}: {error}",
            report.state_path.display()
        );
    }
    Ok(report.orphans.len())
}

/// Probes every 250 ms until nothing listens on the socket any more.
fn wait_until_released(socket: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + SHUTDOWN_WAIT;
    loop {
        let probed = crate::control::probe::probe(socket)
            .with_context(|| format!("could not probe {}", socket.display()))?;
        if !probed.alive {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "Timed out waiting for Rollbridge daemon at {} to shut down.",
                socket.display()
            );
        }
        std::thread::sleep(SHUTDOWN_POLL);
    }
}

/// Every pid a status reply lists: each one leads the process group of a
/// managed process.
fn managed_pids(status: &Map<String, Value>) -> HashSet<i32> {
    managed_processes(&StateSnapshot::parse(Value::Object(status.clone())))
        .into_iter()
        .map(|process| process.pid)
        .collect()
}
