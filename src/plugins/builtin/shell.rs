//! Running a short shell command (a hook or a health command) with a hard bound.

use crate::process::spawn::session_shell;
use crate::util::signals::signal_name_from_number;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use tokio::time::{Instant, timeout_at};

/// How a bounded shell command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOutcome {
    Exited(i32),
    Signaled(String),
    /// It ran past its deadline; its whole process group got SIGKILL.
    TimedOut,
    /// It could not be started (or waited for).
    Failed(String),
}

/// Kills the command's process group if the run is abandoned (its future dropped)
/// before the command finished. It is dropped before the child handle, so the
/// group leader is still unreaped and its id cannot have been recycled.
struct GroupKiller {
    pgid: Option<i32>,
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = kill(Pid::from_raw(-pgid), Signal::SIGKILL);
        }
    }
}

/// Runs `/bin/sh -c <command>` in its own process group with `cwd`, the daemon's
/// environment plus `env`, and stdio ignored, until it exits or `deadline` passes.
pub async fn run_bounded(
    command: &str,
    cwd: &Path,
    env: &[(String, String)],
    deadline: Instant,
) -> ShellOutcome {
    let mut cmd = session_shell(command);
    cmd.current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return ShellOutcome::Failed(format!("{e} (working directory {})", cwd.display()));
        }
    };
    let mut killer = GroupKiller {
        pgid: child.id().map(|p| p as i32),
    };
    match timeout_at(deadline, child.wait()).await {
        Ok(Ok(status)) => {
            killer.pgid = None;
            match (status.code(), status.signal()) {
                (Some(code), _) => ShellOutcome::Exited(code),
                (None, Some(n)) => ShellOutcome::Signaled(
                    signal_name_from_number(n)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("SIG{n}")),
                ),
                (None, None) => ShellOutcome::Failed("ended without a status".into()),
            }
        }
        Ok(Err(e)) => ShellOutcome::Failed(e.to_string()),
        Err(_) => {
            drop(killer);
            let _ = child.wait().await;
            ShellOutcome::TimedOut
        }
    }
}

/// Milliseconds until `deadline`, rounded up (so it reads back as the bound a
/// stage had when its hook started).
pub fn millis_until(deadline: Instant) -> u64 {
    let micros = deadline
        .saturating_duration_since(Instant::now())
        .as_micros();
    u64::try_from(micros.div_ceil(1000)).unwrap_or(u64::MAX)
}
