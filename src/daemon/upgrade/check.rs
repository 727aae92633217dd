//! Checking the binary an upgrade would execute, before anything changes: it
//! exists, is an executable file, answers the handshake, and reads this daemon's
//! handover format.

use super::handover::{HANDOVER_FORMAT, HANDSHAKE_PREFIX};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the handshake (`<binary> handover-format`) may take.
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Why the binary cannot take over. The Display text follows `Upgrade refused: `.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BinaryProblem {
    #[error("{} does not exist; pass --binary with the path of the new rollbridge", .0.display())]
    Missing(PathBuf),
    #[error("{} is not a regular file; pass --binary with the path of the new rollbridge executable", .0.display())]
    NotAFile(PathBuf),
    #[error("{} is not executable; run chmod +x on it first", .0.display())]
    NotExecutable(PathBuf),
    #[error("{} could not be run for the handshake: {reason}", path.display())]
    CannotRun { path: PathBuf, reason: String },
    #[error(
        "{} did not answer the handshake within {} s", path.display(), HANDSHAKE_LIMIT.as_secs()
    )]
    HandshakeTimedOut { path: PathBuf },
    #[error(
        "{} is not a rollbridge that can take over a running daemon (\"{} handover-format\" printed {answer:?}); upgrade to a rollbridge with live upgrade support, or restart the daemon instead",
        path.display(), path.display()
    )]
    NoHandshake { path: PathBuf, answer: String },
    #[error(
        "{} reads handover format {found}, but this daemon writes format {HANDOVER_FORMAT}; upgrade in steps through a release that reads both, or restart the daemon instead",
        path.display()
    )]
    OtherFormat { path: PathBuf, found: u32 },
}

/// The checks, on the calling thread (they run a process): call from a
/// blocking task.
pub fn verify(path: &Path) -> Result<(), BinaryProblem> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(_) => return Err(BinaryProblem::Missing(path.to_path_buf())),
    };
    if !metadata.is_file() {
        return Err(BinaryProblem::NotAFile(path.to_path_buf()));
    }
    let executable = metadata.permissions().mode() & 0o111 != 0
        && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok();
    if !executable {
        return Err(BinaryProblem::NotExecutable(path.to_path_buf()));
    }
    let found = handshake(path)?;
    if found != HANDOVER_FORMAT {
        return Err(BinaryProblem::OtherFormat {
            path: path.to_path_buf(),
            found,
        });
    }
    Ok(())
}

/// Runs `<path> handover-format` and reads the format it reports.
fn handshake(path: &Path) -> Result<u32, BinaryProblem> {
    let mut child = Command::new(path)
        .arg("handover-format")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| BinaryProblem::CannotRun {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    let deadline = Instant::now() + HANDSHAKE_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(BinaryProblem::HandshakeTimedOut {
                    path: path.to_path_buf(),
                });
            }
        }
    }
    let mut answer = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        let _ = stdout.by_ref().take(4096).read_to_string(&mut answer);
    }
    let answer = answer.trim().to_string();
    answer
        .strip_prefix(HANDSHAKE_PREFIX)
        .and_then(|number| number.trim().parse::<u32>().ok())
        .ok_or(BinaryProblem::NoHandshake {
            path: path.to_path_buf(),
            answer,
        })
}

/// The path an upgrade executes by default: the daemon's own executable as it is
/// on disk now (after `cargo install` replaced it, the new file).
pub fn default_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(PathBuf::from(text.trim_end_matches(" (deleted)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn binaries_that_cannot_take_over_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert_eq!(
            verify(&missing),
            Err(BinaryProblem::Missing(missing.clone()))
        );
        assert!(matches!(
            verify(dir.path()),
            Err(BinaryProblem::NotAFile(_))
        ));
        let plain = script(dir.path(), "plain", "exit 0", 0o644);
        assert!(matches!(
            verify(&plain),
            Err(BinaryProblem::NotExecutable(_))
        ));
        assert!(matches!(
            verify(Path::new("/bin/true")),
            Err(BinaryProblem::NoHandshake { .. })
        ));
        let other = script(
            dir.path(),
            "other",
            &format!("echo '{HANDSHAKE_PREFIX}{}'", HANDOVER_FORMAT + 1),
            0o755,
        );
        assert!(matches!(
            verify(&other),
            Err(BinaryProblem::OtherFormat { found, .. }) if found == HANDOVER_FORMAT + 1
        ));
        let same = script(
            dir.path(),
            "same",
            &format!("echo '{HANDSHAKE_PREFIX}{HANDOVER_FORMAT}'"),
            0o755,
        );
        assert_eq!(verify(&same), Ok(()));
    }
}
