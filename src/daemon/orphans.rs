//! Processes a previous daemon left behind, as its state file records them.
//!
//! One reading of the state file and one liveness rule serve every place that
//! asks: daemon startup (the orphan report), `status.orphans`, the shutdown
//! rewrite of the state file, `doctor`, `recover` and `predeploy-cleanup`.
//!
//! Every managed process is a `/bin/sh` wrapper that leads its own process group,
//! so a recorded pid really names a *group*: the record is live while any member
//! of that group still runs. Compared with a plain `kill(pid, 0)`:
//! - zombies do not count (they run nothing and only wait to be reaped);
//! - children that outlived their wrapper still count (the group is alive);
//! - a recorded pid that now belongs to a process that does not lead its own
//!   group, or that started at a different time than the state file says, is a
//!   recycled pid and is ignored.

use super::state_file::{OrphanEntry, ProcessEntry, RecordedPid, StateFile, StateSnapshot};
use crate::control::status::OrphanStatus;
use crate::process::cgroup::ProcessCgroup;
use crate::process::group_alive;
use crate::process::leftovers::{ProcessId, escaped_members, signal_all, still_runs};
use crate::process::proc_table::{ProcStat, read_stat, start_time_ms};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::time::{Duration, Instant};

/// How far a process's start time may be from the `startedAt` the daemon recorded
/// and still be the same process. Start times from `/proc` have a resolution of
/// one second at worst; a recycled pid that started within this window of the
/// original is not a realistic case.
const START_TIME_TOLERANCE_MS: i64 = 5_000;

/// One process recorded in a state file (also carried by a live upgrade).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Orphan {
    /// Instance id for release processes, entry id for services and singletons.
    pub id: String,
    pub pid: i32,
    pub release_id: Option<String>,
    /// When the daemon says it started this pid (ms since the epoch), if recorded.
    pub started_at_ms: Option<i64>,
}

impl Orphan {
    /// This record as a `status.orphans` entry.
    pub fn to_status(&self) -> OrphanStatus {
        OrphanStatus {
            id: self.id.clone(),
            pid: self.pid,
            release_id: self.release_id.clone(),
        }
    }

    /// `  <id> (pid <pid>[, release <releaseId>])`, the list line of `recover`.
    pub fn list_line(&self) -> String {
        match &self.release_id {
            Some(release) => format!("  {} (pid {}, release {release})", self.id, self.pid),
            None => format!("  {} (pid {})", self.id, self.pid),
        }
    }

    /// Whether this record still stands for running processes.
    pub fn is_live(&self) -> bool {
        if self.pid <= 0 {
            return false;
        }
        match read_stat(self.pid) {
            Some(leader) if leader.is_live() => self.leader_is_ours(&leader),
            Some(_) => group_alive(self.pid),
            None => match kill(Pid::from_raw(self.pid), None) {
                // Hidden from /proc (hidepid) but present: trust the signal probe.
                Err(Errno::EPERM) => true,
                _ => group_alive(self.pid),
            },
        }
    }

    /// A live process holds the recorded pid. It is the recorded one only when it
    /// still leads its own group (the kernel never reuses an id while a group of
    /// that id exists) and, when the start was recorded, started at that time.
    fn leader_is_ours(&self, leader: &ProcStat) -> bool {
        if leader.pgrp != self.pid {
            return false;
        }
        match (self.started_at_ms, start_time_ms(leader)) {
            (Some(recorded), Some(actual)) => (recorded - actual).abs() <= START_TIME_TOLERANCE_MS,
            _ => true,
        }
    }
}

/// Every process the state snapshot records, in the order the daemon wrote
/// them: carried-over orphans first, then its own managed processes (see
/// [`managed_processes`]). A pid that appears twice is listed once.
pub fn recorded_processes(state: &StateSnapshot) -> Vec<Orphan> {
    let mut records = Vec::new();
    for entry in &state.orphans {
        push_unique(&mut records, Orphan::from(entry));
    }
    for record in managed_processes(state) {
        push_unique(&mut records, record);
    }
    records
}

/// The processes a daemon manages, from its state snapshot (or its `status`
/// reply read as one, see [`StateSnapshot::parse`]): release processes,
/// services, singletons. Orphans it merely reports are not included.
pub fn managed_processes(state: &StateSnapshot) -> Vec<Orphan> {
    let mut records = Vec::new();
    for release in &state.releases {
        for process in &release.processes {
            if let Some(record) = managed(&process.id, process, release.release_id.clone()) {
                push_unique(&mut records, record);
            }
        }
    }
    for entry in state.services.iter().chain(&state.singletons) {
        let Some(process) = &entry.process else {
            continue;
        };
        if let Some(record) = managed(&entry.id, process, None) {
            push_unique(&mut records, record);
        }
    }
    records
}

/// Every process recorded in a state snapshot that is still alive
///. An unexpected shape yields nothing.
pub fn live_processes(state: &StateSnapshot) -> Vec<Orphan> {
    recorded_processes(state)
        .into_iter()
        .filter(Orphan::is_live)
        .collect()
}

/// The live orphans recorded in the state file at `path` (none when the file is
/// missing or unreadable).
pub fn live_orphans(path: &Path) -> Vec<Orphan> {
    StateFile::new(path)
        .read()
        .map(|state| live_processes(&state))
        .unwrap_or_default()
}

impl From<&OrphanEntry> for Orphan {
    fn from(entry: &OrphanEntry) -> Orphan {
        Orphan {
            id: entry.id.clone(),
            pid: entry.pid.0,
            release_id: entry.release_id.clone(),
            started_at_ms: None,
        }
    }
}

impl From<&Orphan> for OrphanEntry {
    fn from(orphan: &Orphan) -> OrphanEntry {
        OrphanEntry {
            id: orphan.id.clone(),
            pid: RecordedPid(orphan.pid),
            release_id: orphan.release_id.clone(),
        }
    }
}

fn managed(id: &str, process: &ProcessEntry, release_id: Option<String>) -> Option<Orphan> {
    Some(Orphan {
        id: id.to_string(),
        pid: process.pid?.0,
        release_id,
        started_at_ms: process
            .started_at
            .as_deref()
            .and_then(crate::util::time::parse_iso_ms),
    })
}

fn push_unique(records: &mut Vec<Orphan>, record: Orphan) {
    if !records.iter().any(|known| known.pid == record.pid) {
        records.push(record);
    }
}

/// How stopping one orphan ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StopOutcome {
    Stopped,
    /// Still running; the reason says why it could not be stopped.
    StillRunning(String),
}

/// Stops one orphan: its process group and what left the group (its session,
/// its descendants by parent chain), SIGTERM first, up to `grace` for all of it
/// to exit, then SIGKILL and half a second more. A process the previous daemon
/// had put in a cgroup of its own gets `cgroup.kill` as the last step.
pub fn stop_orphan(record: &Orphan, grace: Duration) -> StopOutcome {
    let escaped = escaped_members(record.pid);
    let cgroup = ProcessCgroup::of_process(record.pid);
    for (signal, wait) in [
        (Signal::SIGTERM, grace),
        (Signal::SIGKILL, Duration::from_millis(500)),
    ] {
        signal_all(&escaped, signal);
        if signal == Signal::SIGKILL
            && let Some(cgroup) = &cgroup
        {
            let _ = cgroup.kill();
        }
        match kill(Pid::from_raw(-record.pid), signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => {
                return StopOutcome::StillRunning(format!(
                    "{} failed: {}",
                    signal.as_str(),
                    errno.desc()
                ));
            }
        }
        if wait_until_gone(record, &escaped, wait) {
            return StopOutcome::Stopped;
        }
    }
    StopOutcome::StillRunning("still running after SIGKILL".to_string())
}

/// Polls every 50 ms until the record and its escaped processes are no longer
/// live or `bound` has passed.
fn wait_until_gone(record: &Orphan, escaped: &[ProcessId], bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if !record.is_live() && !escaped.iter().any(|&process| still_runs(process)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(deadline - Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};

    /// A process leading its own group, like a managed process; killed on drop.
    struct GroupLeader(Child);

    impl GroupLeader {
        fn spawn(script: &str) -> GroupLeader {
            let child = Command::new("/bin/sh")
                .args(["-c", script])
                .process_group(0)
                .spawn()
                .unwrap();
            GroupLeader(child)
        }

        fn pid(&self) -> i32 {
            self.0.id() as i32
        }
    }

    impl Drop for GroupLeader {
        fn drop(&mut self) {
            unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }

    fn record(pid: i32) -> Orphan {
        Orphan {
            id: "x".into(),
            pid,
            release_id: None,
            started_at_ms: None,
        }
    }

    fn wait_for(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn records_come_from_orphans_releases_services_and_singletons() {
        let state = json!({
            "orphans": [{"id": "old", "pid": 11, "releaseId": null}, {"id": 5, "pid": 12, "releaseId": null}],
            "releases": [{"releaseId": "v1", "processes": [
                {"id": "web", "pid": 21, "startedAt": "2026-05-23T14:31:09.512Z"},
                {"id": "gone"},
                {"id": "dup", "pid": 11}
            ]}],
            "services": [{"id": "svc", "process": {"pid": 31}}],
            "singletons": [{"id": "cron", "process": {"pid": 41.5}}]
        });
        let records = recorded_processes(&StateSnapshot::parse(state.clone()));
        let summary: Vec<(String, i32, Option<String>)> = records
            .iter()
            .map(|r| (r.id.clone(), r.pid, r.release_id.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("old".into(), 11, None),
                ("web".into(), 21, Some("v1".into())),
                ("svc".into(), 31, None),
            ]
        );
        assert_eq!(records[1].started_at_ms, Some(1_779_546_669_512));
        assert_eq!(records[1].list_line(), "  web (pid 21, release v1)");
        assert_eq!(records[0].list_line(), "  old (pid 11)");
        assert_eq!(
            serde_json::to_value(records[1].to_status()).unwrap(),
            json!({"id": "web", "pid": 21, "releaseId": "v1"})
        );
        let managed: Vec<i32> = managed_processes(&StateSnapshot::parse(state))
            .iter()
            .map(|r| r.pid)
            .collect();
        assert_eq!(managed, [21, 11, 31], "orphans are not managed processes");
    }

    #[test]
    fn unexpected_shapes_give_no_records() {
        assert!(recorded_processes(&StateSnapshot::parse(json!([1, 2]))).is_empty());
        assert!(recorded_processes(&StateSnapshot::parse(json!({"releases": "x"}))).is_empty());
        assert!(live_processes(&StateSnapshot::parse(json!({"orphans": []}))).is_empty());
    }

    #[test]
    fn live_records_are_found_in_every_section() {
        let (old, web, svc) = (
            GroupLeader::spawn("exec sleep 30"),
            GroupLeader::spawn("exec sleep 30"),
            GroupLeader::spawn("exec sleep 30"),
        );
        let state = json!({
            "orphans": [{"id": "old", "pid": old.pid(), "releaseId": null}, {"id": 5, "pid": old.pid(), "releaseId": null}],
            "releases": [{"releaseId": "v1", "processes": [{"id": "web", "pid": web.pid()}, {"id": "gone"}]}],
            "services": [{"id": "svc", "process": {"pid": svc.pid()}}],
            "singletons": [{"id": "one", "process": {"state": "stopped"}}]
        });
        let found = live_processes(&StateSnapshot::parse(state));
        let ids: Vec<(&str, Option<&str>)> = found
            .iter()
            .map(|o| (o.id.as_str(), o.release_id.as_deref()))
            .collect();
        assert_eq!(ids, [("old", None), ("web", Some("v1")), ("svc", None)]);
    }

    #[test]
    fn a_pid_that_does_not_lead_its_group_is_not_ours() {
        // This test process runs inside cargo's group, not as a group leader.
        let me = std::process::id() as i32;
        let leader = nix::unistd::getpgrp().as_raw() == me;
        assert_eq!(record(me).is_live(), leader);
    }

    #[test]
    fn a_start_time_far_from_the_recorded_one_means_a_recycled_pid() {
        let leader = GroupLeader::spawn("exec sleep 30");
        let started = start_time_ms(&read_stat(leader.pid()).unwrap()).unwrap();
        let mut ours = record(leader.pid());
        ours.started_at_ms = Some(started + 1_000);
        assert!(ours.is_live());
        ours.started_at_ms = Some(started - 60_000);
        assert!(!ours.is_live(), "started a minute apart: another process");
    }

    #[test]
    fn a_group_outliving_its_leader_is_alive() {
        // The leader shell exits at once; its child keeps the group alive.
        let mut leader = GroupLeader::spawn("sleep 30 & exit 0");
        let pgid = leader.pid();
        leader.0.wait().unwrap();
        assert!(read_stat(pgid).is_none_or(|stat| stat.pgrp != pgid || !stat.is_live()));
        assert!(record(pgid).is_live());
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        wait_for("the group to empty", || !record(pgid).is_live());
    }

    #[test]
    fn zombies_and_dead_pids_are_not_alive() {
        let mut leader = GroupLeader::spawn("exit 0");
        let pid = leader.pid();
        // Wait until the leader has exited but is not yet reaped (a zombie).
        wait_for("a zombie", || read_stat(pid).is_some_and(|s| !s.is_live()));
        assert!(!record(pid).is_live(), "an unreaped leader counts as gone");
        leader.0.wait().unwrap();
        assert!(!record(pid).is_live());
        assert!(!record(0).is_live());
        assert!(!record(-1).is_live());
    }

    #[test]
    fn stopping_waits_for_the_whole_group() {
        let leader = GroupLeader::spawn("trap '' TERM; sleep 30 & wait");
        let orphan = record(leader.pid());
        wait_for("the group to start", || {
            crate::process::proc_table::group_members(orphan.pid).len() >= 2
        });
        assert_eq!(
            stop_orphan(&orphan, Duration::from_millis(100)),
            StopOutcome::Stopped
        );
        assert!(!orphan.is_live());
    }

    #[test]
    fn stopping_reaches_what_left_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("escaped.pid");
        let leader = GroupLeader::spawn(&format!(
            "setsid sleep 30 & echo $! > {}; exec sleep 30",
            file.display()
        ));
        wait_for("the escaped pid", || {
            std::fs::read_to_string(&file).is_ok_and(|t| t.ends_with('\n'))
        });
        let escaped: i32 = std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let escaped_alive = || read_stat(escaped).is_some_and(|s| s.is_live());
        assert!(escaped_alive());
        assert_eq!(
            stop_orphan(&record(leader.pid()), Duration::from_millis(500)),
            StopOutcome::Stopped
        );
        let still = escaped_alive();
        unsafe { libc::kill(escaped, libc::SIGKILL) };
        assert!(!still, "the setsid child of the orphan was stopped too");
    }
}
