//! Reading `/proc` directly: one process's `stat` (parsed by the `procfs` crate),
//! the whole process table for legacy-takeover matchers, and the members of a
//! process group with their memory. Supervision reads `/proc` through the
//! sampler instead (`snapshot.rs`, `sampler.rs`).
//!
//! Everything here is synchronous file reading; async callers that scan the whole
//! table should do it on a blocking thread (`tokio::task::spawn_blocking`).

use crate::plugins::LegacyProcess;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

const PROC_ROOT: &str = "/proc";

/// The fields of `/proc/<pid>/stat` rollbridge cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    /// The kernel's short command name (between the parentheses).
    pub comm: String,
    /// One-letter state: `R`, `S`, `D`, `Z`, `X`, …
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// Start time in clock ticks since boot (field 22). Together with the pid it
    /// identifies a process even after its pid has been recycled.
    pub start_time: u64,
}

impl ProcStat {
    /// Zombies (`Z`) and dead entries (`X`) no longer run any code: they only wait
    /// to be reaped, so they never count as a live process.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// Parses the text of a `/proc/<pid>/stat` file with the `procfs` crate's parser.
/// The command name sits between the first `(` and the *last* `)`, because it may
/// itself contain spaces and parens.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    use procfs::FromRead;
    let stat = procfs::process::Stat::from_read(text.as_bytes()).ok()?;
    Some(ProcStat {
        pid: stat.pid,
        comm: stat.comm,
        state: stat.state,
        ppid: stat.ppid,
        pgrp: stat.pgrp,
        session: stat.session,
        start_time: stat.starttime,
    })
}

/// Reads `/proc/<pid>/stat`; `None` when the process does not exist (any more).
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("{PROC_ROOT}/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// When a process started, in ms since the epoch (boot time plus its start
/// ticks), to tell a recorded pid from a recycled one.
pub fn start_time_ms(stat: &ProcStat) -> Option<i64> {
    let boot_seconds: i64 = fs::read_to_string(format!("{PROC_ROOT}/stat"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_second <= 0 {
        return None;
    }
    let since_boot_ms = (stat.start_time as i128 * 1000 / ticks_per_second as i128) as i64;
    Some(boot_seconds * 1000 + since_boot_ms)
}

/// The pids listed in `/proc`, or an error when `/proc` cannot be read at all.
pub fn list_pids() -> io::Result<Vec<i32>> {
    super::snapshot::count_pass();
    let mut pids: Vec<i32> = fs::read_dir(PROC_ROOT)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Every process's `stat`, sorted by pid. Processes that vanish during the scan are
/// skipped.
pub fn scan_stats() -> io::Result<Vec<ProcStat>> {
    Ok(list_pids()?.into_iter().filter_map(read_stat).collect())
}

/// Resident memory of one process in bytes (`VmRSS` × 1024), if readable. Kernel
/// threads and zombies have no `VmRSS` line.
pub fn read_rss_bytes(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("{PROC_ROOT}/{pid}/status")).ok()?;
    status_field(&status, "VmRSS:")?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// The short command name from `/proc/<pid>/comm`, trimmed; `""` when unreadable.
pub fn read_comm(pid: i32) -> String {
    fs::read_to_string(format!("{PROC_ROOT}/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .map(str::trim)
}

/// The full command line, arguments joined by spaces. Kernel threads have an empty
/// `cmdline`; like `ps`, they are shown as `[comm]`.
pub fn read_cmdline(pid: i32, comm: &str) -> String {
    let raw = fs::read(format!("{PROC_ROOT}/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    if args.is_empty() {
        format!("[{comm}]")
    } else {
        args.join(" ")
    }
}

fn read_uid(pid: i32) -> Option<u32> {
    let status = fs::read_to_string(format!("{PROC_ROOT}/{pid}/status")).ok()?;
    status_field(&status, "Uid:")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The process table, read from `/proc`: pid, ppid, command line, working directory
/// and user name (numeric when the uid has no name). The working directory is
/// `None` for processes we may not inspect.
pub fn proc_table() -> io::Result<Vec<LegacyProcess>> {
    let mut user_names: HashMap<u32, Option<String>> = HashMap::new();
    let mut table = Vec::new();
    for stat in scan_stats()? {
        let pid = stat.pid;
        let cwd = fs::read_link(Path::new(PROC_ROOT).join(pid.to_string()).join("cwd"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let user = read_uid(pid).map(|uid| {
            user_names
                .entry(uid)
                .or_insert_with(|| {
                    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                        .ok()
                        .flatten()
                        .map(|u| u.name)
                })
                .clone()
                .unwrap_or_else(|| uid.to_string())
        });
        table.push(LegacyProcess {
            pid,
            ppid: stat.ppid,
            cmdline: read_cmdline(pid, &stat.comm),
            cwd,
            user,
        });
    }
    Ok(table)
}

/// One member of a process group as reported in `status` (`children`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub pid: i32,
    pub command: String,
    pub rss_bytes: Option<u64>,
}

/// Every process whose process group is `pgid`, zombies included, sorted by pid,
/// with its short name and resident memory.
pub fn group_members(pgid: i32) -> Vec<GroupMember> {
    let Ok(stats) = scan_stats() else {
        return Vec::new();
    };
    stats
        .into_iter()
        .filter(|stat| stat.pgrp == pgid)
        .map(|stat| GroupMember {
            pid: stat.pid,
            command: read_comm(stat.pid),
            rss_bytes: read_rss_bytes(stat.pid),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.comm, "my (odd) name");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.pgrp, 4242);
        assert_eq!(stat.session, 4242);
        assert_eq!(stat.start_time, 987654);
        assert!(stat.is_live());
    }

    #[test]
    fn zombies_and_dead_entries_are_not_live() {
        let zombie = "7 (sh) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";
        assert!(!parse_stat(zombie).unwrap().is_live());
        let dead = zombie.replace(" Z ", " X ");
        assert!(!parse_stat(&dead).unwrap().is_live());
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        let stat = read_stat(me).unwrap();
        assert_eq!(stat.pid, me);
        assert!(stat.is_live());
        assert!(read_rss_bytes(me).unwrap() > 0);
        let table = proc_table().unwrap();
        let own = table.iter().find(|p| p.pid == me).unwrap();
        assert!(!own.cmdline.is_empty());
        assert!(own.user.is_some());
        let members = group_members(stat.pgrp);
        assert!(
            members
                .iter()
                .any(|m| m.pid == me && m.rss_bytes.unwrap() > 0)
        );
        assert!(group_members(2_147_483_646).is_empty());
    }

    #[test]
    fn our_own_start_time_is_in_the_past_hour() {
        let me = read_stat(std::process::id() as i32).expect("own stat");
        let started = start_time_ms(&me).expect("start time");
        let now = crate::util::time::now_ms();
        assert!(
            started <= now + 2_000 && started > now - 3_600_000,
            "{started} vs {now}"
        );
    }
}
