//! System error names. Operators know failures by their errno name
//! (`ECONNREFUSED`, `EADDRINUSE`), which is also how the JavaScript tool showed
//! them, so every message that reports an I/O error names it the same way.

use std::io;

/// The errno name of an I/O error (`"ECONNRESET"`), when it came from the
/// operating system with a known number.
pub fn errno_code(error: &io::Error) -> Option<String> {
    error
        .raw_os_error()
        .map(|raw| format!("{:?}", nix::errno::Errno::from_raw(raw)))
        .filter(|name| name.starts_with('E'))
}

/// An I/O error as `CODE: description` (`EISDIR: is a directory`); errors that
/// did not come from the operating system keep their own text.
pub fn describe_io_error(error: &io::Error) -> String {
    match (errno_code(error), os_description(error)) {
        (Some(code), Some(description)) => format!("{code}: {description}"),
        (None, Some(description)) => description,
        _ => error.to_string(),
    }
}

/// An I/O error in a few plain words, for messages about one file or one
/// connection: `the file does not exist`, `permission denied`, `connection
/// refused` (the operating system's description without its error number).
pub fn plain_io_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "the file does not exist".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => os_description(error).unwrap_or_else(|| error.to_string()),
    }
}

/// The operating system's description of the error number, in lower case.
fn os_description(error: &io::Error) -> Option<String> {
    let raw = error.raw_os_error()?;
    Some(nix::errno::Errno::from_raw(raw).desc().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_like_errno_names() {
        let error = io::Error::from_raw_os_error(libc::EISDIR);
        assert_eq!(describe_io_error(&error), "EISDIR: is a directory");
        assert_eq!(errno_code(&error).as_deref(), Some("EISDIR"));
        assert_eq!(errno_code(&io::Error::other("x")), None);
        assert_eq!(describe_io_error(&io::Error::other("x")), "x");
        let missing = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(plain_io_reason(&missing), "the file does not exist");
        assert_eq!(
            describe_io_error(&missing),
            "ENOENT: no such file or directory"
        );
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(plain_io_reason(&refused), "connection refused");
        let denied = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(plain_io_reason(&denied), "permission denied");
    }
}
