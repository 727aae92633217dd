//! systemd integration: `sd_notify` messages (`Type=notify`) and the watchdog.
//!
//! The notify socket and watchdog settings are read once at startup and then
//! removed from the environment (see [`clear_systemd_env`]), so managed processes
//! never inherit them: an application that speaks `sd_notify` itself must not be
//! able to announce readiness on rollbridge's behalf.

use sd_notify::NotifyState;
use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;
use tokio::task::JoinHandle;

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Every variable systemd passes that must not leak into managed processes.
pub const SYSTEMD_ENV: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];

/// Removes [`SYSTEMD_ENV`] from the environment.
///
/// # Safety
/// Changing the environment races with any other thread reading it: call this
/// while the process has a single thread (before the tokio runtime starts).
pub unsafe fn clear_systemd_env() {
    for name in SYSTEMD_ENV {
        // SAFETY: the caller guarantees no other thread exists yet.
        unsafe { std::env::remove_var(name) };
    }
}

/// Sends state changes to the service manager. Without `NOTIFY_SOCKET` (not
/// started by systemd with `Type=notify`) every call does nothing.
#[derive(Debug, Clone, Default)]
pub struct SystemdNotifier {
    socket: Option<OsString>,
    watchdog: Option<Duration>,
}

impl SystemdNotifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC`/`WATCHDOG_PID`.
    pub fn from_env() -> SystemdNotifier {
        SystemdNotifier {
            socket: std::env::var_os(NOTIFY_SOCKET).filter(|s| !s.is_empty()),
            watchdog: sd_notify::watchdog_enabled().filter(|d| !d.is_zero()),
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> SystemdNotifier {
        SystemdNotifier::default()
    }

    /// Sends to `socket` (a path, or `@name` for an abstract socket).
    pub fn to_socket(socket: impl Into<OsString>) -> SystemdNotifier {
        SystemdNotifier {
            socket: Some(socket.into()),
            watchdog: None,
        }
    }

    /// `NOTIFY_SOCKET` as read at startup (a live upgrade passes it on).
    pub fn socket(&self) -> Option<&OsString> {
        self.socket.as_ref()
    }

    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// `READY=1` with a status line: proxy and control are serving.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `STATUS=…`: a one-line summary `systemctl status` shows.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `STOPPING=1`: the shutdown has begun.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// `RELOADING=1` (with the monotonic timestamp `Type=notify-reload` wants):
    /// the config is being reloaded. Follow with [`SystemdNotifier::ready`].
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// Stores each listener in systemd's file descriptor store (`FDSTORE=1`
    /// with `FDNAME=<name>`), so a restart of the service gets them back in
    /// `LISTEN_FDS` and clients queue in their backlog meanwhile. Needs
    /// `FileDescriptorStoreMax=` in the unit; without it systemd drops them.
    pub fn store_fds(&self, named: &[(&str, std::os::fd::RawFd)]) {
        let Some(socket) = &self.socket else { return };
        for (name, fd) in named {
            let message = format!("FDSTORE=1\nFDNAME={name}\n");
            if let Err(error) = send_with_fd(socket, message.as_bytes(), *fd) {
                tracing::warn!(
                    target: "rollbridge::systemd",
                    error = %error,
                    "could not store the {name} listener with the service manager"
                );
            }
        }
    }

    /// The watchdog period systemd expects pings within (`WatchdogSec=`).
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
    }

    /// With a watchdog configured, pings at half its period from a task on the
    /// current runtime: if the runtime stalls, the pings stop and systemd acts.
    pub fn spawn_watchdog(&self) -> Option<JoinHandle<()>> {
        let period = self.watchdog? / 2;
        if !self.is_enabled() {
            return None;
        }
        let notifier = self.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                notifier.send(&[NotifyState::Watchdog]);
            }
        }))
    }

    /// Best effort: a lost notification must never disturb the daemon, and
    /// systemd notices a missing `READY=1` by itself (start timeout).
    fn send(&self, states: &[NotifyState<'_>]) {
        if let Some(socket) = &self.socket {
            if let Err(error) = send_datagram(socket, states) {
                tracing::warn!(
                    target: "rollbridge::systemd",
                    error = %error,
                    "could not notify the service manager"
                );
            }
        }
    }
}

/// One datagram carrying `fd` (SCM_RIGHTS) to the notify socket.
fn send_with_fd(target: &OsString, message: &[u8], fd: std::os::fd::RawFd) -> io::Result<()> {
    use nix::sys::socket::{
        AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, sendmsg, socket,
    };
    use std::os::unix::ffi::OsStrExt;
    let bytes = target.as_bytes();
    let address = match bytes.strip_prefix(b"@") {
        Some(name) => UnixAddr::new_abstract(name)?,
        None => UnixAddr::new(bytes)?,
    };
    let datagram = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let fds = [fd];
    let iov = [io::IoSlice::new(message)];
    let control = [ControlMessage::ScmRights(&fds)];
    use std::os::fd::AsRawFd;
    sendmsg(
        datagram.as_raw_fd(),
        &iov,
        &control,
        MsgFlags::empty(),
        Some(&address),
    )?;
    Ok(())
}

fn send_datagram(socket: &OsString, states: &[NotifyState<'_>]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::SocketAddr;
    let mut message = String::new();
    for state in states {
        message.push_str(&state.to_string());
        message.push('\n');
    }
    let bytes = socket.as_bytes();
    let address = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(socket)?,
    };
    let datagram = UnixDatagram::unbound()?;
    let sent = datagram.send_to_addr(message.as_bytes(), &address)?;
    if sent != message.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was cut short",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buffer = [0u8; 512];
        let len = socket.recv(&mut buffer).unwrap();
        String::from_utf8_lossy(&buffer[..len]).into_owned()
    }

    #[test]
    fn sends_each_state_as_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = SystemdNotifier::to_socket(path.as_os_str());
        notifier.ready("active release v1");
        assert_eq!(receive(&socket), "READY=1\nSTATUS=active release v1\n");
        notifier.reloading();
        let reloading = receive(&socket);
        assert!(
            reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{reloading}"
        );
        notifier.stopping();
        assert_eq!(receive(&socket), "STOPPING=1\nSTATUS=stopping\n");
    }

    #[test]
    fn abstract_sockets_work_and_a_missing_socket_is_harmless() {
        let name = format!("rollbridge-test-{}", std::process::id());
        let address = {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
        };
        let socket = UnixDatagram::bind_addr(&address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        SystemdNotifier::to_socket(format!("@{name}")).status("hello");
        assert_eq!(receive(&socket), "STATUS=hello\n");

        SystemdNotifier::to_socket("/nonexistent/notify.sock").ready("x");
        SystemdNotifier::disabled().ready("x");
    }

    #[test]
    fn listeners_go_to_the_descriptor_store_with_their_names() {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let notifier = SystemdNotifier::to_socket(path.as_os_str());
        notifier.store_fds(&[("proxy", listener.as_raw_fd())]);
        let mut buffer = [0u8; 256];
        let mut iov = [io::IoSliceMut::new(&mut buffer)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let received = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let passed: Vec<_> = received
            .cmsgs()
            .unwrap()
            .filter_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .collect();
        let length = received.bytes;
        let _ = iov;
        let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
        assert_eq!(text, "FDSTORE=1\nFDNAME=proxy\n");
        assert_eq!(passed.len(), 1);
        let stored =
            unsafe { <std::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(passed[0]) };
        assert_eq!(stored.local_addr().unwrap(), listener.local_addr().unwrap());
    }

    #[tokio::test]
    async fn watchdog_pings_at_half_the_period() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wd.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = SystemdNotifier {
            socket: Some(path.into_os_string()),
            watchdog: Some(Duration::from_millis(100)),
        };
        let task = notifier.spawn_watchdog().unwrap();
        let socket = tokio::task::spawn_blocking(move || {
            assert_eq!(receive(&socket), "WATCHDOG=1\n");
            assert_eq!(receive(&socket), "WATCHDOG=1\n");
        });
        socket.await.unwrap();
        task.abort();
    }
}
