//! Processes a previous daemon left behind, read from its state file
//! (`statePath`), for `recover`, `doctor` and `predeploy-cleanup`.
//!
//! Every managed process is a `/bin/sh` wrapper that leads its own process group,
//! so a recorded pid is really a *group*: the record is live while any member of
//! that group still runs. Compared with a plain `kill(pid, 0)`:
//! - zombies do not count (they run nothing and only wait to be reaped);
//! - children that outlived their wrapper still count (the group is alive);
//! - a recorded pid that now belongs to a process that does not lead its own
//!   group, or that started at a different time than the state file says, is a
//!   recycled pid and is ignored.

use super::proc_stat::start_time_ms;
use crate::process::group_alive;
use crate::process::proc_table::{ProcStat, read_stat};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// How far a process's start time may be from the `startedAt` the daemon recorded
/// and still be the same process. Start times from `/proc` have a resolution of
/// one second at worst; a recycled pid that started within this window of the
/// original is not a realistic case.
const START_TIME_TOLERANCE_MS: i64 = 5_000;

/// One process recorded in a state file.
#[derive(Debug, Clone, PartialEq)]
pub struct OrphanRecord {
    /// Instance id for release processes, entry id for services and singletons.
    pub id: String,
    pub pid: i32,
    pub release_id: Option<String>,
    /// When the daemon says it started this pid (ms since the epoch), if recorded.
    pub started_at_ms: Option<i64>,
}

impl OrphanRecord {
    /// `  <id> (pid <pid>[, release <releaseId>])`, the list line of `recover`.
    pub fn list_line(&self) -> String {
        match &self.release_id {
            Some(release) => format!("  {} (pid {}, release {release})", self.id, self.pid),
            None => format!("  {} (pid {})", self.id, self.pid),
        }
    }

    /// Whether this record still stands for running processes.
    pub fn is_live(&self) -> bool {
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

/// Reads a state file; a missing or unparseable file means "no state".
pub fn read_state(path: &Path) -> Option<Value> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Every process the state file records, in the order the daemon wrote them:
/// carried-over orphans, release processes, services, singletons. A pid that
/// appears twice is listed once.
pub fn recorded_processes(state: &Value) -> Vec<OrphanRecord> {
    let mut records: Vec<OrphanRecord> = Vec::new();
    let mut push = |record: OrphanRecord| {
        if record.pid > 0 && !records.iter().any(|r| r.pid == record.pid) {
            records.push(record);
        }
    };
    let list = |key: &str| {
        state
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };

    for entry in list("orphans") {
        let id = entry.get("id").and_then(Value::as_str);
        let pid = entry.get("pid").and_then(as_pid);
        let release_id = match entry.get("releaseId") {
            Some(Value::String(id)) => Some(Some(id.clone())),
            Some(Value::Null) => Some(None),
            _ => None,
        };
        if let (Some(id), Some(pid), Some(release_id)) = (id, pid, release_id) {
            push(OrphanRecord {
                id: id.to_string(),
                pid,
                release_id,
                started_at_ms: None,
            });
        }
    }
    for release in list("releases") {
        let release_id = release
            .get("releaseId")
            .and_then(Value::as_str)
            .map(str::to_string);
        for process in release
            .get("processes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(pid) = process.get("pid").and_then(as_pid) {
                push(OrphanRecord {
                    id: text_or_empty(process.get("id")),
                    pid,
                    release_id: release_id.clone(),
                    started_at_ms: started_at(process),
                });
            }
        }
    }
    for key in ["services", "singletons"] {
        for entry in list(key) {
            let Some(process) = entry.get("process") else {
                continue;
            };
            if let Some(pid) = process.get("pid").and_then(as_pid) {
                push(OrphanRecord {
                    id: text_or_empty(entry.get("id")),
                    pid,
                    release_id: None,
                    started_at_ms: started_at(process),
                });
            }
        }
    }
    records
}

fn as_pid(value: &Value) -> Option<i32> {
    let number = value.as_f64()?;
    (number.fract() == 0.0 && number >= 1.0 && number <= i32::MAX as f64).then_some(number as i32)
}

fn text_or_empty(value: Option<&Value>) -> String {
    value.and_then(Value::as_str).unwrap_or("").to_string()
}

fn started_at(process: &Value) -> Option<i64> {
    crate::util::time::parse_iso_ms(process.get("startedAt")?.as_str()?)
}

/// The live orphans recorded in the state file at `path` (none when the file is
/// missing or unreadable).
pub fn live_orphans(path: &Path) -> Vec<OrphanRecord> {
    read_state(path)
        .map(|state| {
            recorded_processes(&state)
                .into_iter()
                .filter(OrphanRecord::is_live)
                .collect()
        })
        .unwrap_or_default()
}

/// How stopping one orphan ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StopOutcome {
    Stopped,
    /// Still running; the reason says why it could not be stopped.
    StillRunning(String),
}

/// Stops one orphan's process group: SIGTERM, wait up to `grace` for the group to
/// empty, then SIGKILL and wait up to half a second more.
pub fn stop_orphan(record: &OrphanRecord, grace: Duration) -> StopOutcome {
    for (signal, wait) in [
        (Signal::SIGTERM, grace),
        (Signal::SIGKILL, Duration::from_millis(500)),
    ] {
        match kill(Pid::from_raw(-record.pid), signal) {
            Ok(()) => {}
            Err(Errno::ESRCH) => return StopOutcome::Stopped,
            Err(errno) => {
                return StopOutcome::StillRunning(format!(
                    "{} failed: {}",
                    signal.as_str(),
                    errno.desc()
                ));
            }
        }
        if wait_until_gone(record, wait) {
            return StopOutcome::Stopped;
        }
    }
    StopOutcome::StillRunning("still running after SIGKILL".to_string())
}

/// Polls every 50 ms until the record is no longer live or `bound` has passed.
fn wait_until_gone(record: &OrphanRecord, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if !record.is_live() {
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
        let records = recorded_processes(&state);
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
    }

    #[test]
    fn unexpected_shapes_give_no_records() {
        assert!(recorded_processes(&json!([1, 2])).is_empty());
        assert!(recorded_processes(&json!({"releases": "x"})).is_empty());
    }

    #[test]
    fn a_pid_that_does_not_lead_its_group_is_not_ours() {
        // This test process runs inside cargo's group, not as a group leader.
        let me = std::process::id() as i32;
        let leader = nix::unistd::getpgrp().as_raw() == me;
        let record = OrphanRecord {
            id: "me".into(),
            pid: me,
            release_id: None,
            started_at_ms: None,
        };
        assert_eq!(record.is_live(), leader);
    }
}
