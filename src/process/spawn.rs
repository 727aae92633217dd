//! Starting `/bin/sh -c <command>` in a session of its own.

use super::cgroup::ProcessCgroup;
use super::definition::ProcessDefinition;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::{Child, Command};

/// Why a managed process could not be started. The process object stays usable:
/// a later `start` tries again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpawnError {
    #[error(
        "cannot start process \"{id}\": its working directory {} does not exist; create it or point the process's cwd at an existing directory",
        cwd.display()
    )]
    MissingCwd { id: String, cwd: PathBuf },
    #[error(
        "cannot start process \"{id}\": its working directory {} is not a directory; point the process's cwd at a directory",
        cwd.display()
    )]
    CwdNotDirectory { id: String, cwd: PathBuf },
    #[error("cannot start process \"{id}\" with /bin/sh: {reason}")]
    Spawn { id: String, reason: String },
}

/// A `/bin/sh -c <command>` that becomes the leader of a new session (and so of a
/// new process group whose id is its pid), with stdin on `/dev/null` and a clean
/// signal state. Output handling is left to the caller.
pub fn session_shell(command: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(command).stdin(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent;
    // it runs in the forked child right before exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        });
    }
    cmd
}

/// Checks the working directory first, so a missing one gives an error that names
/// it instead of the kernel's bare `ENOENT`.
pub fn check_cwd(id: &str, cwd: &Path) -> Result<(), SpawnError> {
    match std::fs::metadata(cwd) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(SpawnError::CwdNotDirectory {
            id: id.to_string(),
            cwd: cwd.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SpawnError::MissingCwd {
            id: id.to_string(),
            cwd: cwd.to_path_buf(),
        }),
        // Anything else (permissions) is left to the spawn to report precisely.
        Err(_) => Ok(()),
    }
}

/// Spawns the wrapper of a managed process with piped stdout and stderr. Where
/// the daemon may create cgroups (`cgroup.rs`), the wrapper joins a cgroup of its
/// own before `exec`, returned with the child.
pub fn spawn_wrapper(
    def: &ProcessDefinition,
) -> Result<(Child, Option<ProcessCgroup>), SpawnError> {
    check_cwd(&def.instance_id, &def.cwd)?;
    let mut cmd = session_shell(&def.command);
    cmd.current_dir(&def.cwd)
        .envs(def.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    let cgroup = super::cgroup::active().and_then(|root| root.create().ok());
    if let Some((_, procs)) = &cgroup {
        let procs = procs.as_raw_fd();
        // SAFETY: join_in_child only calls write(2) on a descriptor that stays
        // open until the spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                super::cgroup::join_in_child(procs);
                Ok(())
            });
        }
    }
    let child = cmd.spawn().map_err(|e| SpawnError::Spawn {
        id: def.instance_id.clone(),
        reason: format!("{e} (working directory {})", def.cwd.display()),
    });
    match child {
        Ok(child) => Ok((child, cgroup.map(|(cgroup, _procs)| cgroup))),
        Err(e) => {
            if let Some((cgroup, _)) = cgroup {
                let _ = std::fs::remove_dir(cgroup.path());
            }
            Err(e)
        }
    }
}
