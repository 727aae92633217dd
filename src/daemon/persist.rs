//! The state file (flows.md §15): a secret-free snapshot of what the daemon runs,
//! written atomically, so that after a crash the next daemon (or `recover`) can
//! tell which processes were left behind.

use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Keys dropped at every depth before anything reaches the state file: they can
/// hold secrets (commands, environment, captured output).
pub const SENSITIVE_KEYS: [&str; 7] = [
    "children",
    "command",
    "cwd",
    "env",
    "environment",
    "logs",
    "output",
];

/// One process a previous daemon managed that is still alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub id: String,
    pub pid: i32,
    pub release_id: Option<String>,
}

impl Orphan {
    /// `{id, pid, releaseId}`.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("id".into(), Value::from(self.id.clone()));
        map.insert("pid".into(), Value::from(self.pid));
        map.insert(
            "releaseId".into(),
            self.release_id
                .clone()
                .map(Value::from)
                .unwrap_or(Value::Null),
        );
        Value::Object(map)
    }
}

/// Removes every sensitive key, in nested objects and arrays alike.
pub fn sanitize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| !SENSITIVE_KEYS.contains(&key.as_str()));
            for child in map.values_mut() {
                sanitize(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sanitize),
        _ => {}
    }
}

/// Writes the state file: each write goes to a unique temporary file next to it
/// and is renamed over it, so readers only ever see complete snapshots.
/// Callers serialize writes (the daemon holds one writer behind a lock).
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    counter: AtomicU64,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile {
            path: path.into(),
            counter: AtomicU64::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `snapshot` (pretty JSON, 2-space indent, trailing newline).
    pub fn write(&self, snapshot: &Value) -> std::io::Result<()> {
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut temporary = self.path.as_os_str().to_owned();
        temporary.push(format!(".{}.{counter}.tmp", std::process::id()));
        let temporary = PathBuf::from(temporary);
        let mut text = serde_json::to_string_pretty(snapshot).map_err(std::io::Error::other)?;
        text.push('\n');
        let written = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written
    }

    /// Deletes the state file; a missing file is fine.
    pub fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// The parsed file, or `None` when it is missing or not JSON.
    pub fn read(&self) -> Option<Value> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Builds the snapshot written to the state file: the status object without its
/// envelope key, secrets removed, plus the event history and the write time.
pub fn snapshot(mut status: Map<String, Value>, events: Value) -> Value {
    status.remove("status");
    status.insert("events".into(), events);
    status.insert(
        "persistedAt".into(),
        Value::from(crate::util::time::iso_now()),
    );
    let mut value = Value::Object(status);
    sanitize(&mut value);
    value
}

/// The snapshot kept after a clean shutdown when a previous daemon's processes
/// are still alive, so `recover` can still find them.
pub fn orphans_only_snapshot(orphans: &[Orphan]) -> Value {
    let mut map = Map::new();
    map.insert("activeReleaseId".into(), Value::Null);
    map.insert(
        "orphans".into(),
        Value::Array(orphans.iter().map(Orphan::to_json).collect()),
    );
    map.insert("releases".into(), Value::Array(Vec::new()));
    map.insert("services".into(), Value::Array(Vec::new()));
    map.insert("singletons".into(), Value::Array(Vec::new()));
    Value::Object(map)
}

/// Every process recorded in a state snapshot that is still alive
/// (flows.md §15.3). An unexpected shape yields nothing.
pub fn live_processes(state: &Value) -> Vec<Orphan> {
    recorded_processes(state)
        .into_iter()
        .filter(|orphan| orphan_alive(orphan.pid))
        .collect()
}

/// Whether a recorded managed process is still around: its wrapper pid is
/// alive, or something still runs in the process group it led (a wrapper shell
/// can die and leave its children behind).
pub fn orphan_alive(pid: i32) -> bool {
    pid_alive(pid) || crate::process::group_alive(pid)
}

/// Every process recorded in a snapshot, alive or not.
pub fn recorded_processes(state: &Value) -> Vec<Orphan> {
    let Some(releases) = state.get("releases").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if let Some(orphans) = state.get("orphans").and_then(Value::as_array) {
        for entry in orphans {
            let id = entry.get("id").and_then(Value::as_str);
            let pid = entry.get("pid").and_then(Value::as_f64);
            let release_id = match entry.get("releaseId") {
                Some(Value::String(text)) => Some(Some(text.clone())),
                Some(Value::Null) => Some(None),
                _ => None,
            };
            if let (Some(id), Some(pid), Some(release_id)) = (id, pid, release_id) {
                found.push(Orphan {
                    id: id.to_string(),
                    pid: pid as i32,
                    release_id,
                });
            }
        }
    }
    for release in releases {
        let release_id = release
            .get("releaseId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let processes = release.get("processes").and_then(Value::as_array);
        for process in processes.into_iter().flatten() {
            let id = process.get("id").and_then(Value::as_str).unwrap_or("");
            if let Some(pid) = process.get("pid").and_then(Value::as_f64) {
                found.push(Orphan {
                    id: id.to_string(),
                    pid: pid as i32,
                    release_id: release_id.clone(),
                });
            }
        }
    }
    for key in ["services", "singletons"] {
        let entries = state.get(key).and_then(Value::as_array);
        for entry in entries.into_iter().flatten() {
            let id = entry.get("id").and_then(Value::as_str).unwrap_or("");
            if let Some(pid) = entry
                .get("process")
                .and_then(|process| process.get("pid"))
                .and_then(Value::as_f64)
            {
                found.push(Orphan {
                    id: id.to_string(),
                    pid: pid as i32,
                    release_id: None,
                });
            }
        }
    }
    found
}

/// Whether a pid belongs to a live process. Zombies count as gone: they hold no
/// resources and only wait for their parent to reap them.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => !is_zombie(pid),
        Err(_) => false,
    }
}

/// True when `/proc/<pid>/stat` reports state `Z` (zombie) or `X` (dead).
fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name is in parentheses and may contain spaces; the state is
    // the first field after the closing parenthesis.
    stat.rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sanitize_drops_secrets_at_every_depth() {
        let mut value = json!({
            "releases": [{"processes": [{"id": "web", "command": "x", "cwd": "/", "logs": [], "pid": 1,
                "children": [], "env": {"A": "b"}}]}],
            "events": [{"data": {"command": "secret", "output": "o", "environment": {}, "keep": 1}}]
        });
        sanitize(&mut value);
        assert_eq!(
            value,
            json!({"releases": [{"processes": [{"id": "web", "pid": 1}]}],
                   "events": [{"data": {"keep": 1}}]})
        );
    }

    #[test]
    fn writes_are_atomic_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        assert_eq!(file.read(), None);
        file.write(&json!({"n": 1})).unwrap();
        file.write(&json!({"n": 2})).unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(text.ends_with("}\n"));
        assert!(text.contains("\n  \"n\": 2"));
        assert_eq!(file.read(), Some(json!({"n": 2})));
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files remain");
        file.clear().unwrap();
        file.clear().unwrap();
        assert_eq!(file.read(), None);
        std::fs::write(file.path(), "not json").unwrap();
        assert_eq!(file.read(), None);
    }

    #[test]
    fn finds_recorded_processes_in_every_section() {
        let me = std::process::id() as i32;
        let state = json!({
            "orphans": [{"id": "old", "pid": me, "releaseId": null}, {"id": 5, "pid": me, "releaseId": null}],
            "releases": [{"releaseId": "v1", "processes": [{"id": "web", "pid": me}, {"id": "gone"}]}],
            "services": [{"id": "svc", "process": {"pid": me}}],
            "singletons": [{"id": "one", "process": {"state": "stopped"}}]
        });
        let found = live_processes(&state);
        let ids: Vec<(&str, Option<&str>)> = found
            .iter()
            .map(|o| (o.id.as_str(), o.release_id.as_deref()))
            .collect();
        assert_eq!(ids, [("old", None), ("web", Some("v1")), ("svc", None)]);
        assert!(live_processes(&json!({"orphans": []})).is_empty());
    }

    #[test]
    fn a_group_outliving_its_leader_is_alive() {
        use std::os::unix::process::CommandExt;
        // The leader shell exits at once; its child keeps the group alive.
        let mut leader = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & exit 0"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = leader.id() as i32;
        leader.wait().unwrap();
        assert!(!pid_alive(pgid));
        assert!(orphan_alive(pgid));
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while orphan_alive(pgid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!orphan_alive(pgid));
    }

    #[test]
    fn zombies_and_dead_pids_are_not_alive() {
        assert!(pid_alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Wait until the child has exited but is not yet reaped (a zombie).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !is_zombie(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!pid_alive(pid), "an unreaped child counts as gone");
        child.wait().unwrap();
        assert!(!pid_alive(pid));
        assert!(!pid_alive(0));
        assert!(!pid_alive(-1));
    }
}
