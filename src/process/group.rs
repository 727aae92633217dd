//! Process-group liveness. A managed process is a `/bin/sh` wrapper that leads its
//! own session and group; whatever it starts stays in that group unless it moves
//! itself out. Stopping therefore waits for the *group*, not just the wrapper.
//!
//! Zombies (`Z`) and dead entries (`X`) do not count: they run no code and are only
//! waiting for someone to reap them (an orphaned grandchild is reaped by pid 1,
//! sometimes late).

use super::proc_table::{ProcStat, list_pids, read_stat, scan_stats};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How often a waiting stop re-reads the known members of a group.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// True when any process in group `pgid` is alive (zombies ignored). Without a
/// readable `/proc` this falls back to `kill(-pgid, 0)`, which cannot tell zombies
/// apart.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 0 {
        return false;
    }
    match scan_stats() {
        Ok(stats) => stats.iter().any(|s| s.pgrp == pgid && s.is_live()),
        Err(_) => signal_probe(pgid),
    }
}

fn signal_probe(pgid: i32) -> bool {
    !matches!(kill(Pid::from_raw(-pgid), None), Err(Errno::ESRCH))
}

/// A process group we started, identified by its id *and* the start time of its
/// leader, so a recycled id is never mistaken for ours.
///
/// Once the group has been seen empty it is remembered as gone: after that moment
/// the kernel may hand the id to an unrelated process, so we never look at (or
/// signal) that id again.
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: i32,
    leader_start_time: Option<u64>,
    gone: AtomicBool,
}

impl ProcessGroup {
    /// Records a freshly spawned group leader (still unreaped, so its pid is ours).
    pub fn new(pgid: i32) -> ProcessGroup {
        ProcessGroup {
            pgid,
            leader_start_time: read_stat(pgid).map(|s| s.start_time),
            gone: AtomicBool::new(false),
        }
    }

    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    pub fn known_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// Whether a `stat` entry is a live member of *this* group. Every process of our
    /// session was forked after our leader, so anything older is a different group
    /// that happens to carry a recycled id.
    fn is_member(&self, stat: &ProcStat) -> bool {
        stat.pgrp == self.pgid
            && stat.is_live()
            && self.leader_start_time.is_none_or(|t| stat.start_time >= t)
    }

    /// The live members, from a full `/proc` scan. Latches "gone" when empty.
    /// `None` when `/proc` is unreadable (then only a signal probe is possible).
    fn scan_members(&self) -> Option<HashMap<i32, u64>> {
        if self.known_gone() {
            return Some(HashMap::new());
        }
        if let (Some(expected), Some(leader)) = (self.leader_start_time, read_stat(self.pgid)) {
            // The leader's pid now belongs to a younger process: the id was recycled,
            // which the kernel only does once our whole group is gone.
            if leader.start_time != expected {
                self.gone.store(true, Ordering::SeqCst);
                return Some(HashMap::new());
            }
        }
        let pids = list_pids().ok()?;
        let members: HashMap<i32, u64> = pids
            .into_iter()
            .filter_map(read_stat)
            .filter(|s| self.is_member(s))
            .map(|s| (s.pid, s.start_time))
            .collect();
        if members.is_empty() {
            self.gone.store(true, Ordering::SeqCst);
        }
        Some(members)
    }

    /// True while any member of the group is alive (one full `/proc` scan).
    pub fn alive(&self) -> bool {
        match self.scan_members() {
            Some(members) => !members.is_empty(),
            None => {
                let alive = signal_probe(self.pgid);
                if !alive {
                    self.gone.store(true, Ordering::SeqCst);
                }
                alive
            }
        }
    }

    /// Sends `signal` to every member of the group unless the group is known to be
    /// gone. A group that vanished in the meantime (ESRCH) is not an error.
    pub fn signal(&self, signal: Signal) -> Result<(), Errno> {
        if self.known_gone() {
            return Ok(());
        }
        match kill(Pid::from_raw(-self.pgid), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until the group has no live member, up to `bound` (`None`: forever).
    /// Returns true when the group emptied.
    ///
    /// A full `/proc` scan is comparatively expensive, so between scans only the
    /// members already known are re-read (every 10 ms). New members can only be
    /// forked by existing ones, so when every known member is gone one more full
    /// scan tells whether the group is really empty.
    pub async fn wait_empty(self: &std::sync::Arc<Self>, bound: Option<Duration>) -> bool {
        let deadline = bound.map(|b| Instant::now() + b);
        loop {
            let group = self.clone();
            let scanned = tokio::task::spawn_blocking(move || group.scan_members())
                .await
                .ok()
                .flatten();
            let mut known = match scanned {
                Some(members) if members.is_empty() => return true,
                Some(members) => members,
                None => {
                    // No /proc: fall back to probing the group with signal 0.
                    if !self.alive() {
                        return true;
                    }
                    HashMap::new()
                }
            };
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                let nap = match deadline {
                    Some(d) => POLL_INTERVAL.min(d.saturating_duration_since(Instant::now())),
                    None => POLL_INTERVAL,
                };
                tokio::time::sleep(nap).await;
                if known.is_empty() {
                    break;
                }
                known.retain(|pid, start| {
                    read_stat(*pid).is_some_and(|s| s.start_time == *start && self.is_member(&s))
                });
                if known.is_empty() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
