//! Warnings `deploy` prints on stderr before it asks the daemon, for two
//! mistakes the daemon's reply would not point at: a config file that is not
//! the one the daemon runs (the deploy reloads the daemon's own file), and a
//! release directory that does not exist.

use super::common::{LoadedConfig, daemon_pid};
use crate::config::resolve_config_path;
use std::path::{Path, PathBuf};

/// Both warnings, each on its own `warning:` line. Nothing is printed when the
/// facts cannot be read (no daemon, another user's daemon).
pub fn warn_before_deploy(config: &LoadedConfig, release_path: &str) {
    if let Some(running) = daemon_config_path(config.socket_path())
        && !same_file(&running, &config.path)
    {
        eprintln!(
            "warning: the daemon on {} runs the config {}, not {}; this deploy reloads {} and uses {} only to find the daemon. To switch files, shut the daemon down and start it with --config {}.",
            config.socket_path().display(),
            running.display(),
            config.path.display(),
            running.display(),
            config.path.display(),
            config.path.display(),
        );
    }
    if !Path::new(release_path).is_dir() {
        eprintln!(
            "warning: --release-path {release_path} is not an existing directory; processes that run in the release path (the default cwd) cannot start. Pass the folder the release was unpacked into."
        );
    }
}

/// The config file the daemon serving `socket` was started with: its
/// `--config` argument (resolved against its working directory), or the
/// default file of that directory.
fn daemon_config_path(socket: &Path) -> Option<PathBuf> {
    let pid = daemon_pid(socket)?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    let daemon_at = args.iter().position(|arg| arg == "daemon")?;
    let rest = &args[daemon_at + 1..];
    let given = rest
        .iter()
        .enumerate()
        .find_map(|(index, arg)| match arg.as_str() {
            "--config" | "-c" => rest.get(index + 1).cloned(),
            other => other.strip_prefix("--config=").map(str::to_string),
        });
    let path = match given {
        Some(path) => cwd.join(path),
        None => resolve_config_path(None, &cwd).ok()?,
    };
    Some(path)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}
