//! systemd socket activation: listeners passed in `LISTEN_FDS`.
//!
//! systemd binds the sockets of a `.socket` unit itself and keeps them open while
//! the service restarts, so clients connecting in between wait in the kernel's
//! backlog instead of being refused. rollbridge takes at most one TCP socket (the
//! proxy) and one Unix stream socket (the control socket). With
//! `FileDescriptorName=proxy` / `control` they are matched by name; without a name
//! of their own (systemd then uses the socket unit's name, or passes no names)
//! by address family.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

/// The sockets systemd passed, taken over by this process.
#[derive(Debug, Default)]
pub struct ActivatedSockets {
    pub proxy: Option<TcpListener>,
    pub control: Option<UnixListener>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error(
        "socket activation: cannot read the passed sockets ({0}). Check LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES in the service's environment"
    )]
    Environment(std::io::Error),
    #[error(
        "socket activation: the socket named \"{0}\" is not one rollbridge uses. Name the proxy socket \"proxy\" and the control socket \"control\" (FileDescriptorName= in the .socket unit)"
    )]
    UnknownName(String),
    #[error(
        "socket activation: the \"{name}\" socket is not a {expected} listening socket. Use ListenStream= with {hint}"
    )]
    WrongKind {
        name: String,
        expected: &'static str,
        hint: &'static str,
    },
    #[error(
        "socket activation: more than one {0} socket was passed. rollbridge listens on one proxy socket and one control socket"
    )]
    Duplicate(&'static str),
}

impl ActivatedSockets {
    /// Takes the sockets passed to this process (none when `LISTEN_PID` names
    /// another process or is unset). Each passed descriptor is marked
    /// close-on-exec, so managed processes do not inherit it.
    ///
    /// Call it once: the descriptors become owned by the returned listeners.
    pub fn from_env() -> Result<ActivatedSockets, ActivationError> {
        let passed: Vec<(RawFd, String)> = sd_notify::listen_fds_with_names()
            .map_err(ActivationError::Environment)?
            .collect();
        let owned = passed
            .into_iter()
            // SAFETY: systemd hands these descriptors to this process (LISTEN_PID
            // matched) and nothing else in rollbridge claims them; the environment
            // variables naming them are removed at startup, so they are taken once.
            .map(|(fd, name)| (unsafe { OwnedFd::from_raw_fd(fd) }, name))
            .collect();
        ActivatedSockets::from_descriptors(owned)
    }

    /// Sorts passed descriptors into the proxy and control listeners.
    pub fn from_descriptors(
        passed: Vec<(OwnedFd, String)>,
    ) -> Result<ActivatedSockets, ActivationError> {
        let mut sockets = ActivatedSockets::default();
        for (fd, name) in passed {
            let kind = SocketKind::of(&fd);
            let role = match name.as_str() {
                "proxy" => Role::Proxy,
                "control" => Role::Control,
                // systemd's defaults when the unit names nothing: the unit's name
                // (`app.socket`), or placeholders.
                other
                    if other.ends_with(".socket")
                        || matches!(other, "unknown" | "" | "stored" | "connection") =>
                {
                    match kind {
                        SocketKind::TcpListener => Role::Proxy,
                        SocketKind::UnixListener => Role::Control,
                        SocketKind::Other => return Err(ActivationError::UnknownName(name)),
                    }
                }
                _ => return Err(ActivationError::UnknownName(name)),
            };
            match role {
                Role::Proxy => {
                    if kind != SocketKind::TcpListener {
                        return Err(ActivationError::WrongKind {
                            name,
                            expected: "TCP",
                            hint: "an address and port, such as ListenStream=127.0.0.1:8182",
                        });
                    }
                    if sockets.proxy.is_some() {
                        return Err(ActivationError::Duplicate("proxy"));
                    }
                    sockets.proxy = Some(TcpListener::from(fd));
                }
                Role::Control => {
                    if kind != SocketKind::UnixListener {
                        return Err(ActivationError::WrongKind {
                            name,
                            expected: "Unix stream",
                            hint: "a path, such as ListenStream=/run/rollbridge/app.sock",
                        });
                    }
                    if sockets.control.is_some() {
                        return Err(ActivationError::Duplicate("control"));
                    }
                    sockets.control = Some(UnixListener::from(fd));
                }
            }
        }
        Ok(sockets)
    }

    pub fn is_empty(&self) -> bool {
        self.proxy.is_none() && self.control.is_none()
    }
}

enum Role {
    Proxy,
    Control,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocketKind {
    TcpListener,
    UnixListener,
    Other,
}

impl SocketKind {
    fn of(fd: &OwnedFd) -> SocketKind {
        let socket = socket2::SockRef::from(fd);
        let stream = socket.r#type().is_ok_and(|t| t == socket2::Type::STREAM);
        let listening = socket.is_listener().unwrap_or(false);
        if !stream || !listening {
            return SocketKind::Other;
        }
        match socket.local_addr() {
            Ok(address) if address.is_ipv4() || address.is_ipv6() => SocketKind::TcpListener,
            Ok(address) if address.is_unix() => SocketKind::UnixListener,
            _ => SocketKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp() -> OwnedFd {
        OwnedFd::from(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn unix(dir: &tempfile::TempDir, name: &str) -> OwnedFd {
        OwnedFd::from(UnixListener::bind(dir.path().join(name)).unwrap())
    }

    #[test]
    fn named_sockets_are_matched_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let sockets = ActivatedSockets::from_descriptors(vec![
            (unix(&dir, "c.sock"), "control".into()),
            (tcp(), "proxy".into()),
        ])
        .unwrap();
        assert!(sockets.proxy.is_some() && sockets.control.is_some());
    }

    #[test]
    fn unnamed_sockets_are_matched_by_family() {
        let dir = tempfile::tempdir().unwrap();
        let sockets = ActivatedSockets::from_descriptors(vec![
            (tcp(), "unknown".into()),
            (unix(&dir, "c.sock"), "unknown".into()),
        ])
        .unwrap();
        assert!(sockets.proxy.is_some() && sockets.control.is_some());
        let sockets = ActivatedSockets::from_descriptors(vec![
            (unix(&dir, "d.sock"), "rollbridge@shop.socket".into()),
            (tcp(), "rollbridge@shop.socket".into()),
        ])
        .unwrap();
        assert!(sockets.proxy.is_some() && sockets.control.is_some());
        assert!(
            ActivatedSockets::from_descriptors(vec![])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn wrong_names_kinds_and_duplicates_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let error = ActivatedSockets::from_descriptors(vec![(tcp(), "web".into())])
            .unwrap_err()
            .to_string();
        assert!(error.contains("named \"web\""), "{error}");

        let error =
            ActivatedSockets::from_descriptors(vec![(unix(&dir, "p.sock"), "proxy".into())])
                .unwrap_err()
                .to_string();
        assert!(error.contains("not a TCP listening socket"), "{error}");

        let error = ActivatedSockets::from_descriptors(vec![
            (tcp(), "proxy".into()),
            (tcp(), "unknown".into()),
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("more than one proxy socket"), "{error}");

        let unbound = OwnedFd::from(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        let error = ActivatedSockets::from_descriptors(vec![(unbound, "proxy".into())])
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a TCP listening socket"), "{error}");
    }
}
