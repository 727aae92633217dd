//! One pass over `/proc`: every process's parent, group, session, state, start
//! time, resident memory and short name, from one read of `/proc/<pid>/stat` each.
//!
//! The `stat` line is parsed by the `procfs` crate; we open the file ourselves
//! (one `open` per process) instead of using `procfs::process::all_processes`,
//! which opens each `/proc/<pid>` directory first and so costs two. The choice is
//! measured by `benches/supervision` (`proc_pass`).
//!
//! `rss` in `stat` is the same counter as `VmRSS` in `status` (file + anon + shmem
//! pages), so one read gives everything the sampler needs.

use procfs::FromRead;
use procfs::process::Stat;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const PROC_ROOT: &str = "/proc";

/// How many full `/proc` directory passes this process has made (read by the
/// metrics and by tests that check the sampler coalesces).
static PASSES: AtomicU64 = AtomicU64::new(0);

pub fn passes_total() -> u64 {
    PASSES.load(Ordering::Relaxed)
}

/// Counts one full directory pass (every reader of the whole table calls it).
pub fn count_pass() {
    PASSES.fetch_add(1, Ordering::Relaxed);
}

/// One process as a pass saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub state: char,
    /// Clock ticks since boot; with the pid it names one process for good.
    pub start_time: u64,
    /// `None` for zombies and dead entries, which have no memory map.
    pub rss_bytes: Option<u64>,
    /// The kernel's short name (what `/proc/<pid>/comm` holds).
    pub comm: String,
}

impl ProcEntry {
    /// Zombies and dead entries run nothing; they only wait to be reaped.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }

    fn from_stat(stat: Stat) -> ProcEntry {
        let live = !matches!(stat.state, 'Z' | 'X');
        ProcEntry {
            pid: stat.pid,
            ppid: stat.ppid,
            pgrp: stat.pgrp,
            session: stat.session,
            state: stat.state,
            start_time: stat.starttime,
            rss_bytes: live.then(|| stat.rss.saturating_mul(page_size())),
            comm: stat.comm,
        }
    }
}

fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(procfs::page_size)
}

/// Reads one process's `stat` into `buffer` (reused between calls).
fn read_entry(pid: i32, buffer: &mut Vec<u8>) -> Option<ProcEntry> {
    buffer.clear();
    let mut file = File::open(format!("{PROC_ROOT}/{pid}/stat")).ok()?;
    // Plain reads: `read_to_end` would also stat and seek the file to size its
    // buffer, two more system calls per process on every pass.
    let mut chunk = [0u8; 1024];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Stat::from_read(buffer.as_slice())
        .ok()
        .map(ProcEntry::from_stat)
}

/// One process, read on its own (no directory pass).
pub fn read_one(pid: i32) -> Option<ProcEntry> {
    read_entry(pid, &mut Vec::with_capacity(512))
}

/// Every process at one moment (as near as `/proc` allows), by pid.
#[derive(Debug, Default)]
pub struct ProcSnapshot {
    entries: HashMap<i32, ProcEntry>,
}

impl ProcSnapshot {
    /// One directory pass plus one `stat` read per process. Processes that vanish
    /// during the pass are simply missing.
    pub fn read() -> io::Result<ProcSnapshot> {
        count_pass();
        let mut buffer = Vec::with_capacity(512);
        let mut entries = HashMap::new();
        for dirent in std::fs::read_dir(PROC_ROOT)? {
            let Ok(dirent) = dirent else { continue };
            let Some(pid) = dirent
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(entry) = read_entry(pid, &mut buffer) {
                entries.insert(pid, entry);
            }
        }
        Ok(ProcSnapshot { entries })
    }

    /// A snapshot made of given entries (for tests of what reads one).
    pub fn from_entries(entries: impl IntoIterator<Item = ProcEntry>) -> ProcSnapshot {
        ProcSnapshot {
            entries: entries.into_iter().map(|e| (e.pid, e)).collect(),
        }
    }

    pub fn get(&self, pid: i32) -> Option<&ProcEntry> {
        self.entries.get(&pid)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ProcEntry> {
        self.entries.values()
    }
}

/// For tests: runs `sh -c <script>` (leading its own group when `own_group`)
/// and returns it with the pid it printed on its first line.
#[cfg(test)]
pub(crate) fn spawn_reporting_pid(script: &str, own_group: bool) -> (std::process::Child, i32) {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new("/bin/sh");
    command
        .args(["-c", script])
        .stdout(std::process::Stdio::piped());
    if own_group {
        command.process_group(0);
    }
    let mut shell = command.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(shell.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let pid = line.trim().parse().unwrap();
    (shell, pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_sees_this_process_with_the_hand_written_parsers_values() {
        let me = std::process::id() as i32;
        let snapshot = ProcSnapshot::read().unwrap();
        let own = snapshot.get(me).expect("own entry");
        let hand = super::super::proc_table::read_stat(me).unwrap();
        assert_eq!(
            (own.ppid, own.pgrp, own.session, own.start_time),
            (hand.ppid, hand.pgrp, hand.session, hand.start_time)
        );
        assert_eq!(own.comm, hand.comm);
        assert!(own.is_live());
        assert!(own.rss_bytes.unwrap() > 0);
        assert!(snapshot.len() > 1);
        assert!(read_one(2_147_483_646).is_none());
    }
}
