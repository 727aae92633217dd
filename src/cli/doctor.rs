//! `rollbridge doctor`: check the config and whether this host can run it (socket,
//! proxy port, state path, leftovers of a crashed daemon) and, with
//! `--release-path`, whether a release would start (templates, working directories).

use super::common::{LoadedConfig, plural, print_json};
use super::human::Paint;
use super::{CliResult, ConfigArg};
use crate::config::model::Config;
use crate::control::client::error_code;
use crate::control::probe::{ProbeOutcome, probe};
use crate::daemon::orphans::live_orphans;
use clap::Args;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Also check a release directory: templates and working directories.
    #[arg(long = "release-path", value_name = "path")]
    pub release_path: Option<PathBuf>,
    /// Release id for the release checks (default: the revision, else the directory name).
    #[arg(long = "release-id", value_name = "id")]
    pub release_id: Option<String>,
    /// Revision for the release checks (default: the release id).
    #[arg(long = "revision", value_name = "sha")]
    pub revision: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub color: super::human::ColorArg,
}

/// One line of the doctor report.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub(super) fn pass(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            ok: true,
            detail: detail.into(),
        }
    }

    pub(super) fn fail(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            ok: false,
            detail: detail.into(),
        }
    }

    fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("detail".into(), Value::from(self.detail.clone()));
        object.insert("name".into(), Value::from(self.name.clone()));
        object.insert("ok".into(), Value::from(self.ok));
        Value::Object(object)
    }
}

/// What loading and validating the config gave.
pub enum ConfigVerdict {
    /// No config file could be found (the message says where we looked).
    Unresolvable(String),
    /// The file was found but has this many problems.
    Invalid(usize),
    Valid(Box<LoadedConfig>),
}

pub fn run(args: DoctorArgs) -> CliResult {
    let config = match super::common::check_config(&args.config) {
        ConfigVerdict::Unresolvable(message) => {
            if args.json {
                let check = Check::fail("config", message);
                print_report(&[check], true, Paint::NONE);
            } else {
                eprintln!("{message}");
            }
            return Ok(ExitCode::FAILURE);
        }
        ConfigVerdict::Invalid(issues) => {
            let check = Check::fail(
                "config",
                format!(
                    "{} — run \"rollbridge validate\" for details",
                    plural(issues, "issue", "issues")
                ),
            );
            return Ok(print_report(&[check], args.json, paint_of(&args)));
        }
        ConfigVerdict::Valid(config) => config,
    };
    let mut checks = vec![config_check(&config.config)];
    checks.extend(environment_checks(&config.config));
    if let Some(release_path) = &args.release_path {
        checks.extend(super::doctor_release::release_checks(
            &config,
            release_path,
            args.release_id.as_deref(),
            args.revision.as_deref(),
        ));
    }
    Ok(print_report(&checks, args.json, paint_of(&args)))
}

fn config_check(config: &Config) -> Check {
    Check::pass(
        "config",
        format!(
            "valid: {}, proxy on {}:{}",
            plural(config.processes.len(), "process", "processes"),
            config.proxy.host,
            config.proxy.port
        ),
    )
}

/// The host checks for a valid config: control socket, its directory, the proxy
/// port, and (with `statePath`) the state directory and leftover processes.
pub fn environment_checks(config: &Config) -> Vec<Check> {
    let socket = Path::new(&config.control.path);
    let probed = probe(socket);
    let mut checks = vec![socket_check(config, socket, &probed)];
    checks.push(directory_check(
        "control socket directory",
        socket,
        "is missing or not writable",
    ));
    checks.push(proxy_port_check(config, probed.as_ref().ok()));
    if let Some(state_path) = &config.state_path {
        let state_path = Path::new(state_path);
        checks.push(directory_check(
            "state path directory",
            state_path,
            "is missing or not writable; state cannot be persisted",
        ));
        checks.push(orphan_check(state_path, probed.as_ref().ok()));
    }
    checks
}

fn socket_check(config: &Config, socket: &Path, probed: &std::io::Result<ProbeOutcome>) -> Check {
    const NAME: &str = "control socket";
    let path = socket.display();
    match probed {
        Err(error) => Check::fail(
            NAME,
            format!("could not probe {path}: {} ({error})", error_code(error)),
        ),
        Ok(outcome) if !outcome.alive => {
            Check::pass(NAME, format!("no daemon running; {path} is free to bind"))
        }
        Ok(ProbeOutcome {
            application: None, ..
        }) => Check::fail(
            NAME,
            format!(
                "another process is already listening on {path}; the daemon would fail to bind it"
            ),
        ),
        Ok(ProbeOutcome {
            application: Some(application),
            ..
        }) if application == &config.application => Check::pass(
            NAME,
            format!("Rollbridge daemon for \"{application}\" is running on {path}"),
        ),
        Ok(ProbeOutcome {
            application: Some(application),
            ..
        }) => Check::fail(
            NAME,
            format!(
                "a Rollbridge daemon for \"{application}\" is already running on {path}; stop it before starting another"
            ),
        ),
    }
}

/// The directory that holds `file` (resolved against the working directory) must
/// let us create files in it.
fn directory_check(name: &str, file: &Path, failure: &str) -> Check {
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let directory = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let writable = nix::unistd::access(
        &directory,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .is_ok();
    if writable {
        Check::pass(name, format!("{} is writable", directory.display()))
    } else {
        Check::fail(name, format!("{} {failure}", directory.display()))
    }
}

fn proxy_port_check(config: &Config, probed: Option<&ProbeOutcome>) -> Check {
    const NAME: &str = "proxy port";
    let (host, port) = (&config.proxy.host, config.proxy.port);
    let address = format!("{host}:{port}");
    let error = match std::net::TcpListener::bind((host.as_str(), port)) {
        Ok(listener) => {
            drop(listener);
            return Check::pass(NAME, format!("{address} is available"));
        }
        Err(error) => error,
    };
    let held_by_our_daemon = probed.is_some_and(|outcome| {
        outcome.application.as_deref() == Some(config.application.as_str())
            && outcome
                .proxy
                .as_ref()
                .is_some_and(|proxy| &proxy.host == host && proxy.port == f64::from(port))
    });
    if held_by_our_daemon {
        Check::pass(
            NAME,
            format!("{address} is already held by the running Rollbridge daemon"),
        )
    } else {
        Check::fail(
            NAME,
            format!("{address} is unavailable ({})", error_code(&error)),
        )
    }
}

fn orphan_check(state_path: &Path, probed: Option<&ProbeOutcome>) -> Check {
    const NAME: &str = "orphaned processes";
    if probed.is_some_and(|outcome| outcome.alive) {
        return Check::pass(
            NAME,
            "a daemon is running; its managed processes are not orphans",
        );
    }
    let orphans = live_orphans(state_path);
    if orphans.is_empty() {
        return Check::pass(NAME, "no leftover processes from a previous daemon");
    }
    let list = orphans
        .iter()
        .map(|orphan| format!("{} (pid {})", orphan.id, orphan.pid))
        .collect::<Vec<_>>()
        .join(", ");
    Check::fail(
        NAME,
        format!(
            "{} still running: {list} — verify and stop any leftovers",
            plural(
                orphans.len(),
                "possible orphaned process",
                "possible orphaned processes"
            )
        ),
    )
}

/// Prints the report and returns the exit code (1 when any check failed).
/// Colour for the marks: only on a terminal (the text is the same either way).
fn paint_of(args: &DoctorArgs) -> Paint {
    match super::human::mode_for(args.json, &args.color) {
        super::human::Mode::Human(paint) => paint,
        super::human::Mode::Plain => Paint::NONE,
    }
}

fn print_report(checks: &[Check], json: bool, paint: Paint) -> ExitCode {
    let failed = checks.iter().filter(|check| !check.ok).count();
    if json {
        let mut report = Map::new();
        report.insert(
            "checks".into(),
            Value::Array(checks.iter().map(Check::to_json).collect()),
        );
        report.insert("ok".into(), Value::from(failed == 0));
        print_json(&Value::Object(report));
    } else {
        for check in checks {
            let mark = if check.ok {
                paint.green("✓")
            } else {
                paint.red("✗")
            };
            println!("{mark} {}: {}", check.name, check.detail);
        }
        if failed == 0 {
            println!("\nAll checks passed.");
        } else {
            eprintln!("\n{} failed.", plural(failed, "check", "checks"));
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
