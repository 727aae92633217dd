//! Process file descriptors: wait for any process to exit (not only our own
//! children) and signal it without ever hitting a recycled pid.

use super::snapshot::read_one;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A handle on one process, opened for a known (pid, start time).
pub struct PidFd(OwnedFd);

impl PidFd {
    /// Opens the process that holds `pid`, but only when it is the one that
    /// started at `start_time` (checked after opening, so the handle can never
    /// name a younger process). `None` when it is gone, or without pidfd support.
    pub fn open(pid: i32, start_time: u64) -> Option<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the descriptor was just created and is owned by nobody else.
        let handle = PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        read_one(pid)
            .is_some_and(|entry| entry.start_time == start_time)
            .then_some(handle)
    }

    /// Whether this kernel has `pidfd_open` (Linux 5.3 and later).
    pub fn supported() -> bool {
        let me = std::process::id() as i32;
        // SAFETY: as in `open`; the descriptor is closed at once.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, me, 0) };
        if fd >= 0 {
            // SAFETY: we own this descriptor.
            unsafe { libc::close(fd as i32) };
        }
        fd >= 0
    }

    /// Sends `signal`; a process that already exited is not an error.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with a null siginfo behaves like kill(2).
        let result = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal as i32,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        match result {
            0 => Ok(()),
            _ => match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Resolves once the process has exited (zombie or reaped).
    pub async fn exited(self) {
        // SAFETY: the AsyncFd owns the descriptor (an OwnedFd), which stays open
        // and the same until it is dropped.
        match unsafe { AsyncFd::register_with_interest(self.0, Interest::READABLE) } {
            Ok(fd) => {
                let _ = fd.readable().await;
            }
            // Without a reactor to register with, there is nothing to wait on.
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_for_a_process_that_is_not_our_child_to_exit() {
        let (mut shell, grandchild) =
            super::super::snapshot::spawn_reporting_pid("sleep 30 & echo $!", false);
        shell.wait().unwrap();
        let start = read_one(grandchild).unwrap().start_time;
        assert!(
            PidFd::open(grandchild, start + 1).is_none(),
            "wrong start time"
        );
        let handle = PidFd::open(grandchild, start).expect("pidfd");
        let exited = tokio::spawn(handle.exited());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!exited.is_finished());
        PidFd::open(grandchild, start)
            .unwrap()
            .signal(nix::sys::signal::Signal::SIGKILL)
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), exited)
            .await
            .expect("the exit is noticed")
            .unwrap();
    }
}
