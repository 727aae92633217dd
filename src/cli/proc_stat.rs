//! The few `/proc` facts the host-side tools need: one process's `stat`, whether a
//! process group still has a live member, and when a process started.
//!
//! INTEGRATION POINT (process helper): `read_stat`, `group_alive` and `ProcStat`
//! mirror `crate::process::proc_table` / `crate::process::group`; switch to those
//! once they are on main and keep only `start_time_ms` here.

use std::fs;

/// The fields of `/proc/<pid>/stat` the tools use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// Clock ticks since boot (field 22).
    pub start_time: u64,
}

impl ProcStat {
    /// Zombies and dead entries run no code; they never count as live.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    Some(ProcStat {
        pid,
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        pgrp: field(5)?.parse().ok()?,
        start_time: field(22)?.parse().ok()?,
    })
}

/// `/proc/<pid>/stat`, or `None` when the process does not exist.
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// True when any process of group `pgid` is alive (zombies ignored).
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 0 {
        return false;
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(-pgid), None),
            Err(nix::errno::Errno::ESRCH)
        );
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .any(|stat| stat.pgrp == pgid && stat.is_live())
}

/// The process table as legacy-takeover matchers see it (pid, ppid, command line).
pub fn proc_table() -> std::io::Result<Vec<crate::plugins::LegacyProcess>> {
    let mut table: Vec<crate::plugins::LegacyProcess> = fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = read_stat(pid)?;
            let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = raw
                .split(|&b| b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            Some(crate::plugins::LegacyProcess {
                pid,
                ppid: stat.ppid,
                cmdline,
                cwd: None,
                user: None,
            })
        })
        .collect();
    table.sort_by_key(|p| p.pid);
    Ok(table)
}

/// When a process started, in ms since the epoch (boot time plus its start ticks).
pub fn start_time_ms(stat: &ProcStat) -> Option<i64> {
    let boot_seconds: i64 = fs::read_to_string("/proc/stat")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_readable_and_recent() {
        let me = read_stat(std::process::id() as i32).expect("own stat");
        assert!(me.is_live());
        assert!(group_alive(me.pgrp));
        let started = start_time_ms(&me).expect("start time");
        let now = crate::util::time::now_ms();
        assert!(
            started <= now + 2_000 && started > now - 3_600_000,
            "{started} vs {now}"
        );
    }

    #[test]
    fn command_names_with_parens_and_spaces_parse() {
        let text = "42 (a) b (c) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0";
        let stat = parse_stat(text).unwrap();
        assert_eq!(
            (stat.pid, stat.state, stat.ppid, stat.pgrp, stat.start_time),
            (42, 'S', 1, 42, 777)
        );
    }
}
