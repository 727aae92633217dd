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
    match error.raw_os_error() {
        Some(raw) => {
            let errno = nix::errno::Errno::from_raw(raw);
            let description = errno.desc().to_lowercase();
            match errno_code(error) {
                Some(code) => format!("{code}: {description}"),
                None => description,
            }
        }
        None => error.to_string(),
    }
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
    }
}
