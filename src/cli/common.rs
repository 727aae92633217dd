//! What the daemon-talking commands share: load the config, find the control
//! socket, send one request, print the reply.

use super::ConfigArg;
use crate::config;
pub use crate::config::LoadedConfig;
use crate::control::client::{self, ClientError};
use crate::control::protocol::Request;
use anyhow::Context;
use serde_json::{Map, Value};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// How long read-only commands (`status`, `events`, `logs`) wait for an answer.
/// They never queue behind deploys, so a daemon that stays silent this long is stuck.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Resolves `--config` (or the default file in the working directory) and loads it
/// with full validation.
pub fn load_config(arg: &ConfigArg) -> anyhow::Result<LoadedConfig> {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let path = config::resolve_config_path(arg.config.as_deref(), &cwd)?;
    Ok(config::load(&path)?)
}

/// Loads and validates the config for `doctor`, which reports problems instead of
/// failing on them.
pub fn check_config(arg: &ConfigArg) -> super::doctor::ConfigVerdict {
    use super::doctor::ConfigVerdict;
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(error) => {
            return ConfigVerdict::Unresolvable(format!(
                "cannot read the working directory: {error}"
            ));
        }
    };
    let path = match config::resolve_config_path(arg.config.as_deref(), &cwd) {
        Ok(path) => path,
        Err(error) => return ConfigVerdict::Unresolvable(error.to_string()),
    };
    let report = config::check(&path);
    match report.config {
        Some(config) if report.issues.is_empty() => ConfigVerdict::Valid(Box::new(LoadedConfig {
            path,
            config,
            lua: None,
        })),
        _ => ConfigVerdict::Invalid(report.issues.len().max(1)),
    }
}

/// Sends one request to the daemon of `config`.
pub fn send(
    config: &LoadedConfig,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<Map<String, Value>, ClientError> {
    client::send(config.socket_path(), request, timeout)
}

/// Prints a reply object the way every daemon-talking command does: pretty JSON
/// with 2-space indentation, `"status":"success"` included.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a JSON value always serializes")
    );
}

/// The usual end of a daemon-talking command: print the reply, exit 0.
pub fn print_reply(reply: Map<String, Value>) -> super::CliResult {
    print_json(&Value::Object(reply));
    Ok(ExitCode::SUCCESS)
}

/// A reply's string field, `-` when missing or not a string.
pub fn reply_text(reply: &Map<String, Value>, key: &str) -> String {
    reply
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_string()
}

/// A local option check failed: the message goes to stderr as is, exit 1.
pub fn option_error(message: &str) -> super::CliResult {
    eprintln!("{message}");
    Ok(ExitCode::FAILURE)
}

/// `1 process` / `2 processes`: English plurals for counts in messages.
pub fn plural(count: usize, singular: &str, plural: &str) -> String {
    if count == 1 {
        format!("{count} {singular}")
    } else {
        format!("{count} {plural}")
    }
}

/// Formats a number the way the JavaScript tool printed it: integers without a
/// fractional part (`10000`, not `10000.0`).
pub fn js_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// The pid of the process serving the control socket, from the kernel's peer
/// credentials.
pub fn daemon_pid(socket: &Path) -> Option<i32> {
    let stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    let credentials =
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials).ok()?;
    Some(credentials.pid()).filter(|&pid| pid > 0)
}
