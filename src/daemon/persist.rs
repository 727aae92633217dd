//! The state file (flows.md §15): a secret-free snapshot of what the daemon runs,
//! written atomically, so that after a crash the next daemon (or `recover`) can
//! tell which processes were left behind (read back by [`super::orphans`]).

use super::orphans::Orphan;
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
    fn concurrent_writes_leave_one_complete_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let file = std::sync::Arc::new(StateFile::new(&path));
        let writers: Vec<_> = (0..3)
            .map(|n| {
                let file = file.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        file.write(&json!({"n": n, "padding": "x".repeat(64 * 1024)}))
                            .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let state = file.read().expect("a complete snapshot");
        assert!(
            [0, 1, 2].contains(&state["n"].as_i64().unwrap()),
            "{}",
            state["n"]
        );
        assert_eq!(state["padding"].as_str().unwrap().len(), 64 * 1024);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files remain");
    }
}
