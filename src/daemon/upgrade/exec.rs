//! The exec itself: the daemon's own arguments, its environment plus the
//! handover variable, and exactly the handed-over descriptors made inheritable
//! (every other descriptor is close-on-exec, as Rust and tokio open them).
//!
//! The descriptors are made inheritable only right before `execve` and made
//! close-on-exec again when it fails, so a process the daemon spawns meanwhile
//! inherits them for at most that instant.

use super::handover::{FALLBACK_ENV, HANDOVER_FD_ENV, PREVIOUS_ENV};
use std::ffi::{CString, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// What to execute.
pub enum Target<'a> {
    /// A file on disk (the upgrade's binary).
    Path(&'a Path),
    /// An open executable (the previous image, when the new one gives up).
    Descriptor(RawFd),
}

/// Replaces the process image. Returns only when that failed, with why; the
/// descriptors are close-on-exec again by then.
pub fn replace_image(
    target: Target<'_>,
    handed: &[RawFd],
    document: RawFd,
    extra_env: &[(String, OsString)],
) -> std::io::Error {
    let argv0: OsString = match &target {
        Target::Path(path) => path.as_os_str().to_os_string(),
        Target::Descriptor(_) => std::env::args_os()
            .next()
            .unwrap_or_else(|| "rollbridge".into()),
    };
    let argv: Vec<CString> = std::iter::once(argv0)
        .chain(std::env::args_os().skip(1))
        .filter_map(|arg| CString::new(arg.into_vec()).ok())
        .collect();
    let replaced: Vec<&str> = extra_env
        .iter()
        .map(|(name, _)| name.as_str())
        .chain([HANDOVER_FD_ENV, FALLBACK_ENV, PREVIOUS_ENV])
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(name, _)| !replaced.iter().any(|r| name.as_bytes() == r.as_bytes()))
        .chain(
            extra_env
                .iter()
                .map(|(name, value)| (OsString::from(name), value.clone())),
        )
        .chain([(
            OsString::from(HANDOVER_FD_ENV),
            OsString::from(document.to_string()),
        )])
        .filter_map(|(name, value)| {
            let mut entry = name.into_vec();
            entry.push(b'=');
            entry.extend(value.into_vec());
            CString::new(entry).ok()
        })
        .collect();
    env.shrink_to_fit();
    let all: Vec<RawFd> = handed.iter().copied().chain([document]).collect();
    for fd in &all {
        set_inheritable(*fd, true);
    }
    let error = match target {
        Target::Path(path) => match CString::new(path.as_os_str().as_bytes()) {
            Ok(path) => nix::unistd::execve(&path, &argv, &env).unwrap_err(),
            Err(_) => nix::errno::Errno::EINVAL,
        },
        Target::Descriptor(fd) => {
            // SAFETY: `fd` names an open executable for the whole call.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            nix::unistd::fexecve(borrowed, &argv, &env).unwrap_err()
        }
    };
    for fd in &all {
        set_inheritable(*fd, false);
    }
    std::io::Error::from(error)
}

/// Clears (or sets again) `FD_CLOEXEC` on one descriptor.
pub fn set_inheritable(fd: RawFd, inheritable: bool) {
    let flags = if inheritable { 0 } else { libc::FD_CLOEXEC };
    // SAFETY: F_SETFD only changes the descriptor's close-on-exec flag.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags) };
}
