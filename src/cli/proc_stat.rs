//! When a process started, in wall-clock time, to tell a recorded pid from a
//! recycled one. Everything else about `/proc` comes from `crate::process`.

use crate::process::proc_table::ProcStat;
use std::fs;

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
    use crate::process::proc_table::read_stat;

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
