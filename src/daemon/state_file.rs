//! The state file: what the next daemon (or `recover`) needs to find
//! the processes a crashed daemon left behind, written atomically.
//!
//! Its content is [`StateSnapshot`], a versioned type of its own. It is built by
//! deserializing the daemon's status into it, so only the fields named below ever
//! reach the disk: an allow-list, secret-free by construction (no commands, working
//! directories, environment, captured output, hook options or attestations — a new
//! status field is left out until someone adds it here on purpose).
//!
//! Reading is lenient, entry by entry, so a file written by an earlier release (the
//! unversioned format, which was the whole status minus a deny-list of keys) or a
//! hand-edited one yields every record that makes sense; see [`StateSnapshot::parse`].

use crate::util::lenient::{lenient, lenient_entries, lenient_list, object_or_default};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The format written by this release. Files without a `version` are version 0,
/// the format of the releases before (read the same way).
pub const STATE_FILE_VERSION: u32 = 1;

/// Event data keys kept in the state file's event history; their values are kept
/// only when they are scalars. Everything else an event carries (error texts that
/// may quote output, commands, environments) stays out.
const EVENT_DATA_KEYS: [&str; 20] = [
    "code",
    "count",
    "exitCode",
    "exitSignal",
    "limitBytes",
    "phase",
    "pid",
    "port",
    "previousReleaseId",
    "processId",
    "releaseId",
    "releasePath",
    "replicaCount",
    "replicaIndex",
    "revision",
    "rssBytes",
    "signal",
    "stage",
    "state",
    "timeoutMs",
];

/// The content of the state file. Every field falls back to its default when it
/// is missing or has another shape (`lenient`, `lenient_list`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StateSnapshot {
    #[serde(deserialize_with = "lenient")]
    pub version: u32,
    #[serde(deserialize_with = "lenient")]
    pub active_release_id: Option<String>,
    /// Processes of earlier daemons still alive, carried over so they survive
    /// several crashes in a row.
    #[serde(deserialize_with = "lenient_list")]
    pub orphans: Vec<OrphanEntry>,
    /// Every release whose processes may run, including one still starting.
    #[serde(deserialize_with = "lenient_list")]
    pub releases: Vec<ReleaseEntry>,
    #[serde(deserialize_with = "lenient_list")]
    pub services: Vec<NamedProcessEntry>,
    #[serde(deserialize_with = "lenient_list")]
    pub singletons: Vec<NamedProcessEntry>,
    /// The recent event history (for a human reading the file after a crash).
    #[serde(
        deserialize_with = "lenient_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub events: Vec<EventEntry>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub persisted_at: Option<String>,
}

/// A process an earlier daemon left behind: `{id, pid, releaseId}`; all three are
/// required (an entry missing one is skipped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrphanEntry {
    pub id: String,
    pub pid: RecordedPid,
    #[serde(deserialize_with = "Option::deserialize")]
    pub release_id: Option<String>,
}

/// A release: what identifies it, and its processes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReleaseEntry {
    #[serde(deserialize_with = "lenient")]
    pub release_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub release_path: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub revision: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub state: Option<String>,
    #[serde(deserialize_with = "lenient_list")]
    pub processes: Vec<ProcessEntry>,
}

/// A service or singleton: its entry id and its process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamedProcessEntry {
    #[serde(deserialize_with = "lenient")]
    pub id: String,
    #[serde(deserialize_with = "lenient")]
    pub process: Option<ProcessEntry>,
}

/// One managed process: what liveness needs (pid and start time) and its state.
/// A process not running has `pid: null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProcessEntry {
    #[serde(deserialize_with = "lenient")]
    pub id: String,
    #[serde(deserialize_with = "lenient")]
    pub pid: Option<RecordedPid>,
    #[serde(deserialize_with = "lenient")]
    pub started_at: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub state: Option<String>,
}

/// One event of the history: `{at, message, data}` with only [`EVENT_DATA_KEYS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEntry {
    #[serde(default, deserialize_with = "lenient")]
    pub at: String,
    #[serde(default, deserialize_with = "allowed_event_data")]
    pub data: Map<String, Value>,
    pub message: String,
}

/// A pid as recorded: a whole number from 1 to `i32::MAX` (JSON numbers such as
/// `12.0` count; `41.5`, `0` or `-1` do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RecordedPid(pub i32);

impl<'de> Deserialize<'de> for RecordedPid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = f64::deserialize(deserializer)?;
        if number.fract() == 0.0 && number >= 1.0 && number <= i32::MAX as f64 {
            Ok(RecordedPid(number as i32))
        } else {
            Err(serde::de::Error::custom(format!("{number} is not a pid")))
        }
    }
}

impl StateSnapshot {
    /// The snapshot of a running daemon: its status object (`status` reply shape,
    /// with the releases it is still starting) reduced to the allow-listed fields,
    /// plus the event history and the write time. Takes the typed [`Status`] and
    /// [`EventRecord`]s, or any JSON of that shape.
    ///
    /// [`Status`]: crate::control::status::Status
    /// [`EventRecord`]: crate::events::EventRecord
    pub fn of_status(status: impl Serialize, events: impl Serialize) -> StateSnapshot {
        let mut snapshot = StateSnapshot::parse(serde_json::to_value(status).unwrap_or_default());
        snapshot.version = STATE_FILE_VERSION;
        snapshot.events = lenient_entries(serde_json::to_value(events).unwrap_or_default());
        snapshot.persisted_at = Some(crate::util::time::iso_now());
        snapshot
    }

    /// The snapshot kept after a clean shutdown when processes of an earlier daemon
    /// are still alive, so `recover` can still find them.
    pub fn orphans_only(orphans: Vec<OrphanEntry>) -> StateSnapshot {
        StateSnapshot {
            version: STATE_FILE_VERSION,
            orphans,
            ..StateSnapshot::default()
        }
    }

    /// Reads any JSON value as a snapshot: fields and entries that do not have the
    /// expected shape are skipped, and something other than an object is empty.
    pub fn parse(value: Value) -> StateSnapshot {
        object_or_default(value)
    }
}

fn allowed_event_data<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Map<String, Value>, D::Error> {
    let Value::Object(mut data) = Value::deserialize(deserializer)? else {
        return Ok(Map::new());
    };
    data.retain(|key, value| {
        EVENT_DATA_KEYS.contains(&key.as_str()) && !(value.is_object() || value.is_array())
    });
    Ok(data)
}

/// The state file on disk. Each write goes to a unique temporary file next to it
/// and is renamed over it, so readers only ever see complete snapshots. Callers
/// serialize writes (the daemon holds one writer behind a lock).
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
    pub fn write(&self, snapshot: &StateSnapshot) -> std::io::Result<()> {
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

    /// The snapshot in the file, or `None` when it is missing or not JSON.
    pub fn read(&self) -> Option<StateSnapshot> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        serde_json::from_str(&text).ok().map(StateSnapshot::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snapshot(n: i32) -> StateSnapshot {
        StateSnapshot {
            active_release_id: Some(format!("v{n}")),
            ..StateSnapshot::orphans_only(Vec::new())
        }
    }

    #[test]
    fn only_allow_listed_fields_are_kept_at_every_depth() {
        let status = json!({
            "status": "ok",
            "activeReleaseId": "v1",
            "application": "shop",
            "bootstrap": {"attestation": "takeover-secret", "releaseId": "v1"},
            "control": {"path": "/run/shop.sock"},
            "releases": [{"releaseId": "v1", "releasePath": "/srv/v1", "revision": "abc",
                "state": "active", "ports": {"web": 4000},
                "processes": [{"id": "web", "command": "x", "cwd": "/", "logs": ["out"], "pid": 1,
                    "children": [{"command": "secret", "pid": 2}], "env": {"A": "b"},
                    "startedAt": "2026-05-23T14:31:09.512Z", "state": "running", "restarts": 0}]}],
            "services": [{"id": "db", "process": {"id": "db", "pid": 3, "command": "pg", "hooks": {"options": 1}}}],
            "singletons": [],
            "orphans": [{"id": "old", "pid": 9, "releaseId": null}]
        });
        let Value::Object(status) = status else {
            unreachable!()
        };
        let events = json!([
            {"at": "t", "message": "release startup process status",
             "data": {"command": "secret", "logs": ["o"], "error": "boom: output", "pid": 1,
                      "environment": {}, "nested": {"releaseId": "v1"}, "releaseId": "v1"}}
        ]);
        let mut written = serde_json::to_value(StateSnapshot::of_status(status, events)).unwrap();
        assert!(written["persistedAt"].as_str().unwrap().ends_with('Z'));
        written.as_object_mut().unwrap().remove("persistedAt");
        assert_eq!(
            written,
            json!({
                "version": 1,
                "activeReleaseId": "v1",
                "orphans": [{"id": "old", "pid": 9, "releaseId": null}],
                "releases": [{"releaseId": "v1", "releasePath": "/srv/v1", "revision": "abc",
                    "state": "active",
                    "processes": [{"id": "web", "pid": 1, "startedAt": "2026-05-23T14:31:09.512Z",
                        "state": "running"}]}],
                "services": [{"id": "db", "process": {"id": "db", "pid": 3, "startedAt": null, "state": null}}],
                "singletons": [],
                "events": [{"at": "t", "message": "release startup process status",
                    "data": {"pid": 1, "releaseId": "v1"}}]
            })
        );
    }

    #[test]
    fn a_file_of_the_unversioned_format_still_loads() {
        // Bytes as the previous release wrote them (status minus a deny-list).
        let text = include_str!("../../tests/fixtures/state/unversioned.json");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, text).unwrap();
        let state = StateFile::new(&path).read().expect("loads");
        assert_eq!(state.version, 0);
        assert_eq!(state.active_release_id.as_deref(), Some("v2"));
        assert_eq!(state.orphans[0].pid, RecordedPid(4242));
        let processes: Vec<(&str, Option<i32>)> = state
            .releases
            .iter()
            .flat_map(|r| &r.processes)
            .map(|p| (p.id.as_str(), p.pid.map(|pid| pid.0)))
            .collect();
        assert_eq!(
            processes,
            [("web", Some(31337)), ("worker", None), ("web", Some(31002))]
        );
        assert_eq!(
            state.services[0].process.as_ref().unwrap().pid,
            Some(RecordedPid(31400))
        );
        assert_eq!(state.singletons[0].id, "cron");
        assert_eq!(
            state.releases[0].processes[0].started_at.as_deref(),
            Some("2026-12-05T21:14:03.118Z")
        );
        assert_eq!(state.events.len(), 2);
        assert_eq!(
            state.persisted_at.as_deref(),
            Some("2026-12-05T21:20:41.730Z")
        );
    }

    #[test]
    fn misshapen_entries_are_skipped_one_by_one() {
        let state = StateSnapshot::parse(json!({
            "version": "x",
            "activeReleaseId": 5,
            "orphans": [{"id": 5, "pid": 12, "releaseId": null}, {"id": "a", "pid": 13},
                        {"id": "b", "pid": 14.0, "releaseId": "v1"}, {"id": "c", "pid": 0, "releaseId": null}],
            "releases": "x",
            "services": [{"id": "svc", "process": {"pid": 41.5}}, 7],
            "events": [{"message": "ok"}, {"at": "t"}]
        }));
        assert_eq!(state.version, 0);
        assert_eq!(state.active_release_id, None);
        assert_eq!(
            state.orphans,
            [OrphanEntry {
                id: "b".into(),
                pid: RecordedPid(14),
                release_id: Some("v1".into())
            }]
        );
        assert!(state.releases.is_empty());
        assert_eq!(state.services.len(), 1);
        assert_eq!(state.services[0].process.as_ref().unwrap().pid, None);
        assert_eq!(state.events.len(), 1);
        assert_eq!(
            StateSnapshot::parse(json!([1, 2])),
            StateSnapshot::default()
        );
    }

    #[test]
    fn writes_are_atomic_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        assert_eq!(file.read(), None);
        file.write(&snapshot(1)).unwrap();
        file.write(&snapshot(2)).unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(text.ends_with("}\n"));
        assert!(text.contains("\n  \"activeReleaseId\": \"v2\""));
        assert_eq!(file.read(), Some(snapshot(2)));
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
        let padding = "x".repeat(64 * 1024);
        let writers: Vec<_> = (0..3)
            .map(|n| {
                let file = file.clone();
                let mut state = snapshot(n);
                state.persisted_at = Some(padding.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        file.write(&state).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let state = file.read().expect("a complete snapshot");
        let active = state.active_release_id.unwrap();
        assert!(["v0", "v1", "v2"].contains(&active.as_str()), "{active}");
        assert_eq!(state.persisted_at.unwrap().len(), 64 * 1024);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files remain");
    }
}
