//! Claiming the control socket path: find out whether something already owns it,
//! clear a stale socket file, and bind a new socket whose permissions are final
//! before any client can reach it.

use crate::config::model::{ControlConfig, IdOrName};
use crate::util::errno::describe_io_error;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the control socket could not be claimed. The Display text is the message
/// the daemon prints before exiting 1.
#[derive(Debug, thiserror::Error)]
pub enum ControlSocketError {
    #[error(
        "A Rollbridge daemon for application \"{application}\" is already running on {path} ({active}). Run \"rollbridge status\" to inspect it or \"rollbridge shutdown\" to stop it, or set a different control.path."
    )]
    AlreadyRunning {
        application: String,
        path: String,
        /// `active release: <id>` or `no active release`.
        active: String,
    },
    #[error(
        "The control socket {path} is already in use by another process. Stop that process or set a different control.path."
    )]
    InUse { path: String },
    #[error(
        "Could not probe the control socket {path}: {reason}. Check the permissions of the socket and its directory."
    )]
    ProbeFailed { path: String, reason: String },
    #[error(
        "{path} exists and is not a socket; rollbridge will not delete it. Move the file away or set a different control.path."
    )]
    NotASocket { path: String },
    #[error(
        "Could not remove the stale control socket {path}: {reason}. Remove it by hand or set a different control.path."
    )]
    StaleRemoval { path: String, reason: String },
    #[error(
        "Could not bind the control socket {path}: {reason}. Check that its directory exists and is writable, or set a different control.path."
    )]
    Bind { path: String, reason: String },
    #[error("Could not set the mode of the control socket {path}: {reason}.")]
    Chmod { path: String, reason: String },
    #[error(
        "Unknown user \"{0}\". Use a numeric id, or ensure the user exists in /etc/passwd (name resolution covers local users only)."
    )]
    UnknownUser(String),
    #[error(
        "Unknown group \"{0}\". Use a numeric id, or ensure the group exists in /etc/group (name resolution covers local groups only)."
    )]
    UnknownGroup(String),
    #[error(
        "Could not set control socket owner/group on {path}: {reason}. Run the daemon as a user allowed to chown it (for example root, or a member of the target group)."
    )]
    Chown { path: String, reason: String },
}

/// Fails when a live daemon or another process answers on `path`, or when a
/// file that is not a socket sits there.
pub async fn check_free(path: &Path) -> Result<(), ControlSocketError> {
    let shown = path.display().to_string();
    let owner =
        super::probe::probe_async(path)
            .await
            .map_err(|error| ControlSocketError::ProbeFailed {
                path: shown.clone(),
                reason: describe_io_error(&error),
            })?;
    if !owner.alive {
        return match std::fs::symlink_metadata(path) {
            Ok(metadata) if !metadata.file_type().is_socket() => {
                Err(ControlSocketError::NotASocket { path: shown })
            }
            _ => Ok(()),
        };
    }
    Err(match owner.application {
        Some(application) => ControlSocketError::AlreadyRunning {
            application,
            path: shown,
            active: match owner.active_release_id {
                Some(id) => format!("active release: {id}"),
                None => "no active release".to_string(),
            },
        },
        None => ControlSocketError::InUse { path: shown },
    })
}

/// Makes `path` free to bind: fails when a live daemon or another process owns
/// it, and removes a stale socket file left by a daemon that died.
pub async fn prepare_path(path: &Path) -> Result<(), ControlSocketError> {
    check_free(path).await?;
    let shown = path.display().to_string();
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(ControlSocketError::StaleRemoval {
            path: shown,
            reason: describe_io_error(&error),
        }),
        Ok(metadata) if !metadata.file_type().is_socket() => {
            Err(ControlSocketError::NotASocket { path: shown })
        }
        Ok(_) => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(ControlSocketError::StaleRemoval {
                path: shown,
                reason: describe_io_error(&error),
            }),
        },
    }
}

/// Binds the control socket at `control.path` with its mode and owner already
/// applied: the socket is created inside a private (0700) directory next to the
/// final path, adjusted there, and then linked into place, so no client can
/// connect while it still has the default permissions.
pub fn bind(
    control: &ControlConfig,
) -> Result<std::os::unix::net::UnixListener, ControlSocketError> {
    let path = PathBuf::from(&control.path);
    let shown = control.path.clone();
    let bind_error = |error: &io::Error| ControlSocketError::Bind {
        path: shown.clone(),
        reason: describe_io_error(error),
    };
    let owner = resolve_owner(control.owner.as_ref())?;
    let group = resolve_group(control.group.as_ref())?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = nix::unistd::mkdtemp(&directory.join(".rollbridge-XXXXXX"))
        .map_err(|errno| bind_error(&io::Error::from(errno)))?;
    let staged_socket = staging.join("s");
    let result = (|| {
        if staged_socket.as_os_str().len() >= 108 {
            return bind_in_place(&path, control.mode, owner, group, &shown);
        }
        let listener = std::os::unix::net::UnixListener::bind(&staged_socket)
            .map_err(|error| bind_error(&error))?;
        apply_permissions(&staged_socket, control.mode, owner, group, &shown)?;
        // A hard link never replaces an existing file: if another daemon claimed
        // the path since the probe, we fail instead of stealing it.
        match std::fs::hard_link(&staged_socket, &path) {
            Ok(()) => Ok(listener),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                Err(ControlSocketError::InUse {
                    path: shown.clone(),
                })
            }
            Err(_) if !path.exists() => {
                // Some filesystems refuse hard links; a rename is still atomic.
                std::fs::rename(&staged_socket, &path).map_err(|error| bind_error(&error))?;
                Ok(listener)
            }
            Err(error) => Err(bind_error(&error)),
        }
    })();
    let _ = std::fs::remove_file(&staged_socket);
    let _ = std::fs::remove_dir(&staging);
    result
}

/// Fallback for socket paths too long to stage: bind under a restrictive umask so
/// the socket starts out private, then apply the configured permissions.
fn bind_in_place(
    path: &Path,
    mode: Option<u32>,
    owner: Option<u32>,
    group: Option<u32>,
    shown: &str,
) -> Result<std::os::unix::net::UnixListener, ControlSocketError> {
    use nix::sys::stat::{Mode, umask};
    let previous = umask(Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    umask(previous);
    let listener = bound.map_err(|error| ControlSocketError::Bind {
        path: shown.to_string(),
        reason: describe_io_error(&error),
    })?;
    // Without a configured mode, give the socket the mode the umask would have.
    let mode = mode.unwrap_or(0o777 & !previous.bits());
    apply_permissions(path, Some(mode), owner, group, shown)?;
    Ok(listener)
}

fn apply_permissions(
    path: &Path,
    mode: Option<u32>,
    owner: Option<u32>,
    group: Option<u32>,
    shown: &str,
) -> Result<(), ControlSocketError> {
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|error| {
            ControlSocketError::Chmod {
                path: shown.to_string(),
                reason: describe_io_error(&error),
            }
        })?;
    }
    if owner.is_some() || group.is_some() {
        std::os::unix::fs::chown(path, owner, group).map_err(|error| {
            ControlSocketError::Chown {
                path: shown.to_string(),
                reason: describe_io_error(&error),
            }
        })?;
    }
    Ok(())
}

/// Resolves `control.owner`: a number, a numeric string, or a name from
/// `/etc/passwd`.
pub fn resolve_owner(owner: Option<&IdOrName>) -> Result<Option<u32>, ControlSocketError> {
    match owner {
        None => Ok(None),
        Some(IdOrName::Id(id)) => Ok(Some(*id)),
        Some(IdOrName::Name(name)) => match name.parse::<u32>() {
            Ok(id) => Ok(Some(id)),
            Err(_) => lookup_id("/etc/passwd", name)
                .map(Some)
                .ok_or_else(|| ControlSocketError::UnknownUser(name.clone())),
        },
    }
}

/// Resolves `control.group`: a number, a numeric string, or a name from
/// `/etc/group`.
pub fn resolve_group(group: Option<&IdOrName>) -> Result<Option<u32>, ControlSocketError> {
    match group {
        None => Ok(None),
        Some(IdOrName::Id(id)) => Ok(Some(*id)),
        Some(IdOrName::Name(name)) => match name.parse::<u32>() {
            Ok(id) => Ok(Some(id)),
            Err(_) => lookup_id("/etc/group", name)
                .map(Some)
                .ok_or_else(|| ControlSocketError::UnknownGroup(name.clone())),
        },
    }
}

/// Finds `name` in a passwd-style file (`name:x:id:...`) and returns its id.
fn lookup_id(file: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split(':');
            let entry = fields.next()?;
            let id = fields.nth(1)?;
            (entry == name).then(|| id.parse().ok()).flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_numeric_ids_and_names() {
        assert_eq!(
            resolve_owner(Some(&IdOrName::Id(1000))).unwrap(),
            Some(1000)
        );
        assert_eq!(
            resolve_owner(Some(&IdOrName::Name("42".into()))).unwrap(),
            Some(42)
        );
        assert_eq!(
            resolve_owner(Some(&IdOrName::Name("root".into()))).unwrap(),
            Some(0)
        );
        assert_eq!(
            resolve_group(Some(&IdOrName::Name("root".into()))).unwrap(),
            Some(0)
        );
        let error = resolve_owner(Some(&IdOrName::Name("no-such-user-xyz".into())))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("Unknown user \"no-such-user-xyz\""),
            "{error}"
        );
        let error = resolve_group(Some(&IdOrName::Name("no-such-group-xyz".into())))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("Unknown group \"no-such-group-xyz\""),
            "{error}"
        );
    }
}
