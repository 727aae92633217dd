//! Processes the daemon adopted as a child subreaper: which managed process an
//! orphan belongs to when no pass saw it before its parent died (its
//! environment says), and reaping adopted zombies.
//!
//! The daemon never waits for "any child": that would take the exit statuses of
//! the shells and hook commands it waits for itself. A zombie child is reaped by
//! pid only when it belongs to a tree without being its root, or when nobody has
//! reaped it for [`ZOMBIE_PATIENCE`] (a child the daemon waits for is reaped
//! within milliseconds).

use super::sampler::{Member, Tracked};
use super::snapshot::ProcSnapshot;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a zombie child that nobody claimed may stay before it is reaped.
const ZOMBIE_PATIENCE: Duration = Duration::from_secs(2);
static SUBREAPER: AtomicBool = AtomicBool::new(false);

/// Makes this process a child subreaper: orphans of everything it starts are
/// reparented to it instead of pid 1, so they stay findable (and reapable).
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag on this process.
    let result = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    SUBREAPER.store(true, Ordering::SeqCst);
    Ok(())
}

/// Whether [`become_subreaper`] succeeded in this process.
pub fn is_subreaper() -> bool {
    SUBREAPER.load(Ordering::SeqCst)
}

/// What is known about our own children that are not roots.
#[derive(Default)]
pub struct Adoptions {
    children: HashMap<i32, ChildNote>,
}

struct ChildNote {
    start_time: u64,
    marker: Option<String>,
    zombie_since: Option<Instant>,
}

impl ChildNote {
    fn new(start_time: u64) -> ChildNote {
        ChildNote {
            start_time,
            marker: None,
            zombie_since: None,
        }
    }
}

impl Adoptions {
    /// Live children of ours, not roots, whose environment names the process of
    /// a live tree: `(tree index, pid, start time)`. Each environment is read
    /// once per process.
    pub fn claim_by_environment(
        &mut self,
        snapshot: &ProcSnapshot,
        tracked: &[Arc<Tracked>],
    ) -> Vec<(usize, i32, u64)> {
        let own = std::process::id() as i32;
        // A root always belongs to its own tree, whatever its environment says.
        let roots: HashSet<i32> = tracked.iter().map(|t| t.root()).collect();
        let candidates: Vec<_> = snapshot
            .iter()
            .filter(|e| e.ppid == own && e.is_live() && !roots.contains(&e.pid))
            .collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        let markers: Vec<Option<String>> = tracked.iter().map(|t| t.marker()).collect();
        let mut claims = Vec::new();
        for entry in candidates {
            let note = self
                .children
                .entry(entry.pid)
                .or_insert_with(|| ChildNote::new(entry.start_time));
            if note.start_time != entry.start_time {
                *note = ChildNote::new(entry.start_time);
            }
            let marker = note
                .marker
                .get_or_insert_with(|| environment_marker(entry.pid).unwrap_or_default());
            if marker.is_empty() {
                continue;
            }
            // The youngest live tree of that process claims it.
            if let Some(index) = (0..tracked.len())
                .filter(|&i| markers[i].as_deref() == Some(marker.as_str()) && !tracked[i].gone())
                .max_by_key(|&i| tracked[i].root_start())
            {
                claims.push((index, entry.pid, entry.start_time));
            }
        }
        claims
    }

    /// Reaps zombie children of ours that belong to a tree without being its
    /// root, and any other non-root child that has been a zombie for
    /// [`ZOMBIE_PATIENCE`].
    pub fn reap(
        &mut self,
        snapshot: &ProcSnapshot,
        tracked: &[Arc<Tracked>],
        members: &[Arc<[Member]>],
    ) {
        let own = std::process::id() as i32;
        let now = Instant::now();
        let in_tree: HashSet<i32> = members
            .iter()
            .flat_map(|m| m.iter())
            .map(|m| m.pid)
            .collect();
        self.children.retain(|pid, note| {
            snapshot
                .get(*pid)
                .is_some_and(|e| e.start_time == note.start_time)
        });
        for entry in snapshot.iter() {
            if entry.ppid != own || entry.is_live() || tracked.iter().any(|t| t.root() == entry.pid)
            {
                continue;
            }
            let note = self
                .children
                .entry(entry.pid)
                .or_insert_with(|| ChildNote::new(entry.start_time));
            let since = *note.zombie_since.get_or_insert(now);
            if in_tree.contains(&entry.pid) || now.duration_since(since) >= ZOMBIE_PATIENCE {
                let _ = nix::sys::wait::waitpid(
                    nix::unistd::Pid::from_raw(entry.pid),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
                self.children.remove(&entry.pid);
            }
        }
    }
}

/// `RELEASE\nPROCESS\nREPLICA` from a process's environment, when it is a
/// managed process's (hook commands carry `ROLLBRIDGE_PID` and are not).
fn environment_marker(pid: i32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let mut fields: HashMap<&[u8], &[u8]> = HashMap::new();
    for variable in environ.split(|b| *b == 0) {
        if let Some(at) = variable.iter().position(|b| *b == b'=') {
            fields.insert(&variable[..at], &variable[at + 1..]);
        }
    }
    if fields.contains_key(&b"ROLLBRIDGE_PID"[..]) {
        return None;
    }
    marker_of(|key| {
        fields
            .get(key.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// The marker built from a lookup of `ROLLBRIDGE_*` variables.
pub fn marker_of(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let release = lookup("ROLLBRIDGE_RELEASE_ID")?;
    let process = lookup("ROLLBRIDGE_PROCESS_ID")?;
    let replica = lookup("ROLLBRIDGE_REPLICA_INDEX").unwrap_or_default();
    Some(format!("{release}\n{process}\n{replica}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_need_release_and_process() {
        let env = |key: &str| match key {
            "ROLLBRIDGE_RELEASE_ID" => Some("v1".to_string()),
            "ROLLBRIDGE_PROCESS_ID" => Some("web".to_string()),
            _ => None,
        };
        assert_eq!(marker_of(env).as_deref(), Some("v1\nweb\n"));
        assert_eq!(marker_of(|_| None), None);
    }
}
