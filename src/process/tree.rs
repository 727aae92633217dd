//! Which processes belong to which managed process, from one `/proc` snapshot.
//!
//! A process belongs to the tree of a managed process (its *root*, the `/bin/sh`
//! wrapper) when it is the root, a descendant remembered from an earlier pass
//! (same pid *and* start time), a member of the root's process group or session,
//! or a child of anything that belongs (by parent chain). Everything in a tree
//! started at or after its root, which keeps recycled ids out.

use super::snapshot::{ProcEntry, ProcSnapshot};
use std::collections::HashMap;

/// What is known about one tree before a pass.
#[derive(Debug, Clone)]
pub struct RootSpec<'a> {
    pub root: i32,
    /// The root's start time; `None` when the root was not seen (then nothing
    /// can be checked against it).
    pub root_start: Option<u64>,
    /// Descendants seen before: pid → start time.
    pub remembered: &'a HashMap<i32, u64>,
}

impl RootSpec<'_> {
    fn not_older(&self, entry: &ProcEntry) -> bool {
        self.root_start
            .is_none_or(|start| entry.start_time >= start)
    }
}

/// The tree (index into `roots`) each process of `snapshot` belongs to; processes
/// of no tree are absent. When trees overlap, the youngest root wins.
pub fn attribute(snapshot: &ProcSnapshot, roots: &[RootSpec]) -> HashMap<i32, usize> {
    let mut direct: HashMap<i32, usize> = HashMap::new();
    let mut by_root: HashMap<i32, usize> = HashMap::new();
    for (index, spec) in roots.iter().enumerate() {
        let younger = by_root
            .get(&spec.root)
            .is_none_or(|&other| roots[other].root_start < spec.root_start);
        if younger {
            by_root.insert(spec.root, index);
        }
        for (&pid, &start) in spec.remembered {
            if snapshot.get(pid).is_some_and(|e| e.start_time == start) {
                direct.insert(pid, index);
            }
        }
    }
    // A direct claim: a remembered pid, a member of the root's group or session
    // (the root itself included: it leads both, and a session leader cannot
    // leave its group, so a pid that leads no group is not our root).
    let claim = |entry: &ProcEntry| -> Option<usize> {
        if let Some(&index) = direct.get(&entry.pid) {
            return Some(index);
        }
        [entry.pgrp, entry.session]
            .into_iter()
            .filter_map(|id| by_root.get(&id).copied())
            .find(|&index| roots[index].not_older(entry))
    };
    let mut owner: HashMap<i32, Option<usize>> = HashMap::with_capacity(snapshot.len());
    for entry in snapshot.iter() {
        let mut path = Vec::new();
        let mut current = Some(entry);
        let found = loop {
            let Some(here) = current else { break None };
            if let Some(known) = owner.get(&here.pid) {
                break *known;
            }
            if let Some(index) = claim(here) {
                owner.insert(here.pid, Some(index));
                break Some(index);
            }
            path.push(here.pid);
            // pid 0 is the kernel; a cycle cannot happen, but a bound costs nothing.
            current = (here.ppid > 0 && path.len() < 4096)
                .then(|| snapshot.get(here.ppid))
                .flatten();
        };
        for pid in path {
            let inherits = found.filter(|&index| {
                snapshot
                    .get(pid)
                    .is_some_and(|entry| roots[index].not_older(entry))
            });
            owner.insert(pid, inherits);
        }
    }
    owner
        .into_iter()
        .filter_map(|(pid, index)| Some((pid, index?)))
        .collect()
}

/// Every descendant of `ancestor` by parent chain (not `ancestor` itself).
pub fn descendants(snapshot: &ProcSnapshot, ancestor: i32) -> Vec<&ProcEntry> {
    let none = HashMap::new();
    let spec = RootSpec {
        root: ancestor,
        root_start: snapshot.get(ancestor).map(|e| e.start_time),
        remembered: &none,
    };
    let mut below: HashMap<i32, bool> = HashMap::new();
    let mut found = Vec::new();
    for entry in snapshot.iter() {
        let mut path = Vec::new();
        let mut current = Some(entry);
        let inside = loop {
            let Some(here) = current else { break false };
            if here.pid == ancestor {
                break true;
            }
            if let Some(&known) = below.get(&here.pid) {
                break known;
            }
            path.push(here.pid);
            current = (here.ppid > 0 && path.len() < 4096)
                .then(|| snapshot.get(here.ppid))
                .flatten();
        };
        for pid in path {
            below.insert(pid, inside);
        }
        if inside && entry.pid != ancestor && spec.not_older(entry) {
            found.push(entry);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i32, ppid: i32, pgrp: i32, session: i32, start: u64) -> ProcEntry {
        ProcEntry {
            pid,
            ppid,
            pgrp,
            session,
            state: 'S',
            start_time: start,
            rss_bytes: Some(4096),
            comm: format!("p{pid}"),
        }
    }

    fn snapshot(entries: Vec<ProcEntry>) -> ProcSnapshot {
        ProcSnapshot::from_entries(entries)
    }

    #[test]
    fn group_session_parent_chain_and_memory_each_claim_a_process() {
        let daemon = 10;
        let table = snapshot(vec![
            entry(1, 0, 1, 1, 0),
            entry(daemon, 1, daemon, daemon, 5),
            // root 100: its own group and session
            entry(100, daemon, 100, 100, 50),
            entry(101, 100, 100, 100, 51),
            // left the group (setsid) but its parent is still the app
            entry(102, 100, 102, 102, 52),
            entry(103, 102, 103, 102, 53),
            // double-forked: parent gone, reparented to the daemon, same group
            entry(104, daemon, 100, 100, 54),
            // escaped and reparented: only memory knows it
            entry(105, daemon, 105, 105, 55),
            // a stranger older than the root that carries a recycled group id
            entry(106, 1, 100, 100, 40),
            // a recycled pid of a former root that leads no group
            entry(300, 1, 1, 1, 70),
            // unrelated
            entry(200, daemon, 200, 200, 60),
        ]);
        let remembered = HashMap::from([(105, 55), (999, 1)]);
        let none = HashMap::new();
        let roots = [
            RootSpec {
                root: 100,
                root_start: Some(50),
                remembered: &remembered,
            },
            RootSpec {
                root: 300,
                root_start: None,
                remembered: &none,
            },
        ];
        let owners = attribute(&table, &roots);
        let mut members: Vec<i32> = owners
            .iter()
            .filter(|(_, i)| **i == 0)
            .map(|(p, _)| *p)
            .collect();
        members.sort_unstable();
        assert_eq!(members, vec![100, 101, 102, 103, 104, 105]);
        assert_eq!(owners.len(), 6, "{owners:?}");
    }

    #[test]
    fn a_recycled_remembered_pid_is_not_claimed() {
        let table = snapshot(vec![entry(7, 1, 7, 7, 99)]);
        let remembered = HashMap::from([(7, 12)]);
        let roots = [RootSpec {
            root: 5,
            root_start: Some(10),
            remembered: &remembered,
        }];
        assert!(attribute(&table, &roots).is_empty());
    }

    #[test]
    fn descendants_follow_the_parent_chain_only() {
        let table = snapshot(vec![
            entry(10, 1, 10, 10, 5),
            entry(11, 10, 11, 11, 6),
            entry(12, 11, 12, 12, 7),
            entry(13, 1, 10, 10, 8),
        ]);
        let mut found: Vec<i32> = descendants(&table, 10).iter().map(|e| e.pid).collect();
        found.sort_unstable();
        assert_eq!(found, vec![11, 12]);
    }
}
