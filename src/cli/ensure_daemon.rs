//! `rollbridge ensure-daemon` (also the first half of `deploy --ensure-daemon`):
//! make sure a daemon built from *this* rollbridge binary answers on the control
//! socket, starting a detached one when nothing is listening.
//!
//! Runtime identity: a running executable stays usable on Linux after its file is
//! deleted or replaced, so unlike the JavaScript tool we never copy the program
//! anywhere. The identity a daemon reports in `status.daemonRuntime` is the crate
//! version plus the SHA-256 of its executable; a daemon whose identity is missing
//! or differs from ours is refused before anything else is sent to it.

use super::common::{LoadedConfig, js_number, load_config, print_reply};
use super::{CliResult, ConfigArg};
use crate::control::client::ClientError;
use crate::control::protocol::Request;
use crate::control::status::Status;
use crate::daemon::runtime::RuntimeIdentity;
use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Map, Value};
use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Default `--daemon-start-timeout-ms`.
const DEFAULT_START_TIMEOUT_MS: f64 = 10_000.0;

/// How often a freshly started daemon is asked for its status.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long to keep polling after our own daemon exited: a concurrent
/// `ensure-daemon` may have won the race and be about to answer.
const AFTER_EXIT_GRACE: Duration = Duration::from_secs(2);

/// The exact refusal the JavaScript tool printed; deploy scripts match on it.
pub const RUNTIME_MISMATCH: &str = "The running Rollbridge daemon has a legacy or mismatched runtime. The deploy was not sent. Keep the current release active, then explicitly stop and restart the daemon with this Rollbridge installation before retrying.";

#[derive(Debug, Args)]
pub struct EnsureDaemonArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub daemon: DaemonStartArgs,
}

/// How to start a daemon when none is running (shared with `deploy --ensure-daemon`).
#[derive(Debug, Clone, Args, Default)]
pub struct DaemonStartArgs {
    /// Log file of a daemon started by this command (default /tmp/rollbridge-<application>.log).
    #[arg(long = "daemon-log-path", value_name = "path")]
    pub daemon_log_path: Option<PathBuf>,
    /// Pid file of a daemon started by this command (default /tmp/rollbridge-<application>.pid).
    #[arg(long = "daemon-pid-path", value_name = "path")]
    pub daemon_pid_path: Option<PathBuf>,
    /// Accepted for compatibility; has no effect (the daemon runs from this binary).
    #[arg(long = "daemon-runtime-path", value_name = "path")]
    pub daemon_runtime_path: Option<PathBuf>,
    /// How long to wait for a started daemon to answer, in ms (default 10000).
    #[arg(
        long = "daemon-start-timeout-ms",
        value_name = "ms",
        allow_hyphen_values = true
    )]
    pub daemon_start_timeout_ms: Option<String>,
}

impl DaemonStartArgs {
    /// The validated start timeout in milliseconds.
    pub fn start_timeout_ms(&self) -> anyhow::Result<f64> {
        let Some(text) = &self.daemon_start_timeout_ms else {
            return Ok(DEFAULT_START_TIMEOUT_MS);
        };
        match text.trim().parse::<f64>() {
            Ok(ms) if ms.is_finite() && ms >= 1.0 => Ok(ms),
            _ => bail!("--daemon-start-timeout-ms must be a positive number"),
        }
    }
}

pub fn run(args: EnsureDaemonArgs) -> CliResult {
    let timeout_ms = args.daemon.start_timeout_ms()?;
    let config = load_config(&args.config)?;
    let status = ensure(&config, &args.daemon, timeout_ms)?;
    print_reply(status)
}

/// The runtime identity of this binary: what a daemon it starts reports, and
/// what a daemon it reuses must report.
pub fn own_runtime() -> anyhow::Result<RuntimeIdentity> {
    RuntimeIdentity::current()
        .context("cannot read this rollbridge executable to compute its runtime digest")
}

/// True when `status.daemonRuntime` names the same runtime as `own` (same
/// format, version and digest; the path may differ).
pub fn runtime_matches(own: &RuntimeIdentity, status: &Map<String, Value>) -> bool {
    Status::from_reply(status)
        .daemon_runtime
        .is_some_and(|runtime| runtime.same_build(own))
}

/// Returns the status of a daemon running this runtime, starting one if no daemon
/// is listening. Refuses (with [`RUNTIME_MISMATCH`]) a daemon of another runtime.
pub fn ensure(
    config: &LoadedConfig,
    options: &DaemonStartArgs,
    timeout_ms: f64,
) -> anyhow::Result<Map<String, Value>> {
    let identity = own_runtime()?;
    let timeout = Duration::from_secs_f64(timeout_ms / 1000.0);
    match query_status(config, timeout) {
        Ok(status) => return checked(&identity, status),
        Err(error) if error.is_no_daemon() => {}
        Err(error) => return Err(error.into()),
    }
    let mut child = spawn_daemon(config, options)?;
    let status = wait_until_ready(config, &mut child, timeout_ms, options)?;
    checked(&identity, status)
}

fn checked(
    identity: &RuntimeIdentity,
    status: Map<String, Value>,
) -> anyhow::Result<Map<String, Value>> {
    if runtime_matches(identity, &status) {
        Ok(status)
    } else {
        bail!("{RUNTIME_MISMATCH}")
    }
}

fn query_status(
    config: &LoadedConfig,
    timeout: Duration,
) -> Result<Map<String, Value>, ClientError> {
    super::common::send(config, &Request::Status, Some(timeout))
}

fn log_path(config: &LoadedConfig, options: &DaemonStartArgs) -> PathBuf {
    options.daemon_log_path.clone().unwrap_or_else(|| {
        PathBuf::from(format!("/tmp/rollbridge-{}.log", config.config.application))
    })
}

fn pid_path(config: &LoadedConfig, options: &DaemonStartArgs) -> PathBuf {
    options.daemon_pid_path.clone().unwrap_or_else(|| {
        PathBuf::from(format!("/tmp/rollbridge-{}.pid", config.config.application))
    })
}

/// Starts `<this executable> daemon --config <path> --log-file <log>` in its own
/// session and writes its pid file. The daemon writes its log itself (so SIGHUP
/// reopens it and a slow disk never blocks it); stderr is also appended to the
/// log file for anything printed before its logging is up.
fn spawn_daemon(config: &LoadedConfig, options: &DaemonStartArgs) -> anyhow::Result<Child> {
    let log_path = log_path(config, options);
    let pid_path = pid_path(config, options);
    for path in [&log_path, &pid_path] {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the directory {}", parent.display()))?;
        }
    }
    let open_log = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open the daemon log {}", log_path.display()))
    };
    let stderr = open_log()?;

    let mut command = Command::new("/proc/self/exe");
    if let Ok(exe) = std::env::current_exe() {
        command.arg0(exe);
    }
    command
        .arg("daemon")
        .arg("--config")
        .arg(&config.path)
        .arg("--log-file")
        .arg(&log_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
    let child = command
        .spawn()
        .context("cannot start the rollbridge daemon")?;
    std::fs::write(&pid_path, format!("{}\n", child.id()))
        .with_context(|| format!("cannot write the daemon pid file {}", pid_path.display()))?;
    Ok(child)
}

/// Polls `status` every 100 ms until the daemon answers or the timeout passes.
fn wait_until_ready(
    config: &LoadedConfig,
    child: &mut Child,
    timeout_ms: f64,
    options: &DaemonStartArgs,
) -> anyhow::Result<Map<String, Value>> {
    let started = Instant::now();
    let mut deadline = started + Duration::from_secs_f64(timeout_ms / 1000.0);
    let mut last_error: Option<String> = None;
    let mut exited: Option<ExitStatus> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match query_status(config, left.max(READY_POLL_INTERVAL)) {
            Ok(status) => return Ok(status),
            Err(error) if error.is_no_daemon() => {}
            Err(error) => last_error = Some(error.to_string()),
        }
        if exited.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                deadline = deadline.min(Instant::now() + AFTER_EXIT_GRACE);
            }
        }
        if Instant::now() + READY_POLL_INTERVAL > deadline {
            break;
        }
        std::thread::sleep(READY_POLL_INTERVAL);
    }
    if let Some(status) = exited {
        let log = log_path(config, options);
        let last_line = last_log_line(&log)
            .map(|line| format!(" Last log line: {line}"))
            .unwrap_or_default();
        bail!(
            "Rollbridge daemon did not become ready: it {} before answering (log: {}).{last_line}",
            describe_exit(status),
            log.display()
        );
    }
    match last_error {
        Some(error) => bail!(
            "Rollbridge daemon did not become ready within {}ms. Last error: {error}",
            js_number(timeout_ms)
        ),
        None => bail!(
            "Rollbridge daemon did not become ready within {}ms.",
            js_number(timeout_ms)
        ),
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!(
            "was killed by {}",
            crate::util::signals::signal_name_from_number(signal).unwrap_or("a signal")
        ),
        _ => "exited".to_string(),
    }
}

/// The last non-empty line of the daemon log, to show why a start failed.
fn last_log_line(path: &Path) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let tail = &text[text.len().saturating_sub(8192)..];
    String::from_utf8_lossy(tail)
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| line.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn start_timeout_must_be_a_positive_number() {
        let with = |text: &str| DaemonStartArgs {
            daemon_start_timeout_ms: Some(text.to_string()),
            ..DaemonStartArgs::default()
        };
        assert_eq!(
            DaemonStartArgs::default().start_timeout_ms().unwrap(),
            10_000.0
        );
        assert_eq!(with("250").start_timeout_ms().unwrap(), 250.0);
        assert_eq!(with("1e3").start_timeout_ms().unwrap(), 1000.0);
        for bad in ["0", "-5", "abc", "", "inf", "NaN", "0.5"] {
            let error = with(bad).start_timeout_ms().unwrap_err();
            assert_eq!(
                error.to_string(),
                "--daemon-start-timeout-ms must be a positive number",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn identity_requires_format_version_and_digest() {
        let identity = RuntimeIdentity {
            digest: "ab".repeat(32),
            format: 1,
            path: "/opt/rollbridge".into(),
            version: "0.2.0".into(),
        };
        let status = |runtime: Value| json!({"status": "success", "daemonRuntime": runtime});
        let good = status(
            json!({"digest": "ab".repeat(32), "format": 1, "path": "/x", "version": "0.2.0"}),
        );
        assert!(runtime_matches(&identity, good.as_object().unwrap()));
        for bad in [
            json!({"status": "success"}),
            status(
                json!({"digest": "0".repeat(64), "format": 1, "path": "/x", "version": "0.2.0"}),
            ),
            status(
                json!({"digest": "ab".repeat(32), "format": 2, "path": "/x", "version": "0.2.0"}),
            ),
            status(
                json!({"digest": "ab".repeat(32), "format": 1, "path": "/x", "version": "0.1.21"}),
            ),
        ] {
            assert!(
                !runtime_matches(&identity, bad.as_object().unwrap()),
                "{bad}"
            );
        }
    }
}
