//! Process-group liveness. A managed process is a `/bin/sh` wrapper that leads its
//! own session and group; whatever it starts stays in that group unless it moves
//! itself out. Stopping therefore waits for the *group*, not just the wrapper.
//!
//! Zombies (`Z`) and dead entries (`X`) do not count: they run no code and are only
//! waiting for someone to reap them (an orphaned grandchild is reaped by pid 1,
//! sometimes late).

use super::cgroup::ProcessCgroup;
use super::pidfd::PidFd;
use super::sampler::{Member, Sampler, Tracked};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often a wait re-checks when the kernel cannot notify exits (no pidfd).
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// True when any process of the tree rooted at `pgid` (its group, its session,
/// its descendants) is alive, zombies ignored. Shares the sampler's next pass.
/// Without a readable `/proc` this falls back to `kill(-pgid, 0)`, which cannot
/// tell zombies apart.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 0 {
        return false;
    }
    ProcessGroup::new(pgid).alive()
}

fn signal_probe(pgid: i32) -> bool {
    !matches!(kill(Pid::from_raw(-pgid), None), Err(Errno::ESRCH))
}

/// A process group we started and everything that came from it: the group, its
/// session, and descendants by parent chain even after they moved to a session
/// of their own. The sampler keeps the membership (see `sampler.rs`); pids are
/// remembered with their start time, so a recycled id is never mistaken for ours.
///
/// Once the tree has been seen empty it is remembered as gone: after that moment
/// the kernel may hand the ids to unrelated processes, so we never look at (or
/// signal) them again.
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: i32,
    tracked: Arc<Tracked>,
    cgroup: Option<ProcessCgroup>,
}

impl ProcessGroup {
    /// Follows the group led by `pgid` (for a process we just spawned, still
    /// unreaped, so its pid is ours).
    pub fn new(pgid: i32) -> ProcessGroup {
        ProcessGroup::with_cgroup(pgid, None)
    }

    /// Like [`new`](Self::new) for a process placed in a cgroup of its own.
    pub fn with_cgroup(pgid: i32, cgroup: Option<ProcessCgroup>) -> ProcessGroup {
        ProcessGroup {
            pgid,
            tracked: Sampler::global().track(pgid),
            cgroup,
        }
    }

    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    pub fn tracked(&self) -> &Arc<Tracked> {
        &self.tracked
    }

    pub fn cgroup(&self) -> Option<&ProcessCgroup> {
        self.cgroup.as_ref()
    }

    pub fn known_gone(&self) -> bool {
        self.tracked.gone()
    }

    /// The members the latest pass found (zombies included).
    pub fn members(&self) -> Arc<[Member]> {
        self.tracked.members()
    }

    /// True while any member is alive; waits for the sampler's next pass
    /// (blocking: call it off the async threads).
    pub fn alive(&self) -> bool {
        if self.known_gone() {
            return false;
        }
        let live = self.tracked.refresh_blocking();
        self.judge(!live.is_empty())
    }

    /// [`alive`](Self::alive) for async callers.
    pub async fn alive_now(&self) -> bool {
        if self.known_gone() {
            return false;
        }
        let live = self.tracked.refresh().await;
        self.judge(!live.is_empty())
    }

    fn judge(&self, any_live: bool) -> bool {
        if self.tracked.sampler().readable() {
            return any_live;
        }
        let alive = signal_probe(self.pgid);
        if !alive {
            self.tracked.mark_gone();
        }
        alive
    }

    /// Sends `signal` to the group and to every member that left it, unless the
    /// tree is known to be gone. Members are signalled through a pidfd opened
    /// for their recorded start time, so a recycled pid is never hit. A group
    /// that vanished in the meantime (ESRCH) is not an error.
    pub fn signal(&self, signal: Signal) -> Result<(), Errno> {
        if self.known_gone() {
            return Ok(());
        }
        let outcome = match kill(Pid::from_raw(-self.pgid), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(e),
        };
        for member in self.tracked.live_members() {
            if member.pgrp == self.pgid {
                continue;
            }
            if let Some(handle) = PidFd::open(member.pid, member.start_time) {
                let _ = handle.signal(signal);
            }
        }
        outcome
    }

    /// Waits until the tree has no live member, up to `bound` (`None`: forever).
    /// Returns true when it emptied.
    ///
    /// Exits are noticed through pidfds of the known members, not by re-reading
    /// `/proc`; once they have all exited, the sampler's next pass tells whether
    /// they left anything behind (new members can only be started by live ones).
    pub async fn wait_empty(self: &Arc<Self>, bound: Option<Duration>) -> bool {
        let deadline = bound.map(|b| Instant::now() + b);
        loop {
            if !self.alive_now().await {
                return true;
            }
            let handles: Vec<PidFd> = self
                .tracked
                .live_members()
                .into_iter()
                .filter_map(|m| PidFd::open(m.pid, m.start_time))
                .collect();
            let all_exited = async {
                if handles.is_empty() {
                    tokio::time::sleep(POLL_INTERVAL).await;
                } else {
                    futures_util::future::join_all(handles.into_iter().map(PidFd::exited)).await;
                }
            };
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, all_exited).await.is_err() {
                        return !self.alive_now().await;
                    }
                }
                None => all_exited.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::proc_table::read_stat;

    #[test]
    fn a_group_without_members_is_not_alive() {
        assert!(!group_alive(2_147_483_646));
        assert!(!group_alive(0));
        let group = ProcessGroup::new(2_147_483_646);
        assert!(!group.alive());
        assert!(group.known_gone());
    }

    #[test]
    fn our_own_group_is_alive() {
        let pgid = nix::unistd::getpgrp().as_raw();
        assert!(group_alive(pgid));
    }

    #[test]
    fn a_group_whose_members_are_all_zombies_is_not_alive() {
        use std::os::unix::process::CommandExt;
        // The leader exits at once and stays unreaped (a zombie) while its child
        // keeps the group alive; once the child is gone only the zombie is left.
        let mut leader = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & echo $! ; exit 0"])
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pgid = leader.id() as i32;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(leader.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let child: i32 = line.trim().parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while read_stat(pgid).is_some_and(|s| s.is_live()) {
            assert!(std::time::Instant::now() < deadline, "the leader exits");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(group_alive(pgid), "a zombie leader and a sleeping child");
        kill(Pid::from_raw(child), Signal::SIGKILL).unwrap();
        while group_alive(pgid) {
            assert!(std::time::Instant::now() < deadline, "the child dies");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            read_stat(pgid).is_some_and(|s| !s.is_live()),
            "only the zombie is left"
        );
        leader.wait().unwrap();
    }
}
