//! Stopping processes found by tree rather than by group: everything still
//! descended from the daemon when it shuts down, and the members of a previous
//! daemon's process that left its group (for `recover`).

use super::pidfd::PidFd;
use super::snapshot::{ProcSnapshot, read_one};
use super::tree::{RootSpec, attribute, descendants};
use futures_util::future::join_all;
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::time::Duration;

/// A process named by pid and start time.
pub type ProcessId = (i32, u64);

/// The live processes of the tree rooted at `root` (group, session, parent
/// chain) that are not in the group itself, from one pass.
pub fn escaped_members(root: i32) -> Vec<ProcessId> {
    let Ok(snapshot) = ProcSnapshot::read() else {
        return Vec::new();
    };
    let none = HashMap::new();
    let spec = RootSpec {
        root,
        root_start: snapshot.get(root).map(|e| e.start_time),
        remembered: &none,
    };
    attribute(&snapshot, &[spec])
        .into_keys()
        .filter_map(|pid| snapshot.get(pid))
        .filter(|e| e.is_live() && e.pgrp != root)
        .map(|e| (e.pid, e.start_time))
        .collect()
}

/// Whether this exact process still runs (not a zombie, not a recycled pid).
pub fn still_runs((pid, start): ProcessId) -> bool {
    read_one(pid).is_some_and(|e| e.start_time == start && e.is_live())
}

/// Signals each process that still is the one recorded.
pub fn signal_all(processes: &[ProcessId], signal: Signal) {
    for &(pid, start) in processes {
        if let Some(handle) = PidFd::open(pid, start) {
            let _ = handle.signal(signal);
        }
    }
}

/// Stops every process still descended from this one: SIGTERM, up to `grace`
/// for them to exit, then SIGKILL. Returns how many there were. Used at the end
/// of a shutdown, when every managed process has been stopped, for what escaped
/// them (with the daemon a subreaper, those are its children now).
pub async fn stop_descendants(grace: Duration) -> usize {
    let own = std::process::id() as i32;
    let found: Vec<ProcessId> = tokio::task::spawn_blocking(move || {
        ProcSnapshot::read()
            .map(|snapshot| {
                descendants(&snapshot, own)
                    .into_iter()
                    .filter(|e| e.is_live())
                    .map(|e| (e.pid, e.start_time))
                    .collect()
            })
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    if found.is_empty() {
        return 0;
    }
    for (signal, bound) in [
        (Signal::SIGTERM, grace),
        (Signal::SIGKILL, Duration::from_secs(1)),
    ] {
        let handles: Vec<PidFd> = found
            .iter()
            .filter_map(|&(pid, start)| PidFd::open(pid, start))
            .collect();
        if handles.is_empty() {
            break;
        }
        for handle in &handles {
            let _ = handle.signal(signal);
        }
        let exits = join_all(handles.into_iter().map(PidFd::exited));
        if tokio::time::timeout(bound, exits).await.is_ok() {
            break;
        }
    }
    found.len()
}
