//! Signal names as the config and the status JSON spell them (`SIGTERM`).

use nix::sys::signal::Signal;

/// Every signal name a config may use for `stopSignal`, in the kernel's order.
pub const SIGNAL_NAMES: &[&str] = &[
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGIOT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGCHLD",
    "SIGSTKFLT",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPOLL",
    "SIGPWR",
    "SIGSYS",
];

/// Parses a signal name, with or without the `SIG` prefix, case-insensitively
/// (`"TERM"`, `"sigterm"` and `"SIGTERM"` are the same signal).
pub fn parse_signal(name: &str) -> Option<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    match full.as_str() {
        "SIGIOT" => Some(Signal::SIGABRT),
        "SIGPOLL" => Some(Signal::SIGIO),
        other => other.parse::<Signal>().ok(),
    }
}

/// The name for a raw signal number, if it is one Linux knows.
pub fn signal_name_from_number(number: i32) -> Option<&'static str> {
    Signal::try_from(number).ok().map(Signal::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_parses() {
        for name in SIGNAL_NAMES {
            assert!(parse_signal(name).is_some(), "{name}");
        }
    }

    #[test]
    fn prefix_and_case_are_optional() {
        assert_eq!(parse_signal("TSTP"), Some(Signal::SIGTSTP));
        assert_eq!(parse_signal("sigterm"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGBOGUS"), None);
        assert_eq!(signal_name_from_number(15), Some("SIGTERM"));
    }
}
