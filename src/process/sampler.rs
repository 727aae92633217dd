//! The supervision sampler: one thread per daemon that reads `/proc` in one pass
//! for every supervised process at once.
//!
//! Each managed process (and anything else that asks about a process group) is a
//! [`Tracked`] tree. A pass reads every process's `stat` once, decides which tree
//! each process belongs to (`tree.rs`), and hands every tree its members with
//! their RSS. Subscribers (the managed processes: `children`, memory verdicts)
//! are called after each pass; those whose interval has come are told so.
//!
//! Passes coalesce: the thread wakes for the earliest due subscriber and serves
//! every subscriber due within half the shortest interval, so 200 processes
//! sampled every second cost one pass a second, not 200. A caller that needs a
//! fresh view (a stop deciding whether a group is empty) asks for the next pass
//! and shares it with everyone else who asked meanwhile.
//!
//! In the daemon (a child subreaper) a pass also ties adopted processes to their
//! trees and reaps adopted zombies (`adoption.rs`).

use super::adoption::{Adoptions, is_subreaper};
pub use super::adoption::{become_subreaper, marker_of};
use super::snapshot::{ProcEntry, ProcSnapshot};
use super::tree::{RootSpec, attribute};
use crate::util::sync::Unpoisoned;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The most a due subscriber is served early, to share a pass.
const MAX_SLACK: Duration = Duration::from_millis(500);

/// One process of a tree as the latest pass saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub pid: i32,
    pub start_time: u64,
    pub pgrp: i32,
    pub command: String,
    pub rss_bytes: Option<u64>,
    pub live: bool,
}

impl Member {
    fn of(entry: &ProcEntry) -> Member {
        Member {
            pid: entry.pid,
            start_time: entry.start_time,
            pgrp: entry.pgrp,
            command: entry.comm.clone(),
            rss_bytes: entry.rss_bytes,
            live: entry.is_live(),
        }
    }
}

/// Called after every pass with the tree's members (sorted by pid, zombies
/// included) and whether the subscriber's interval has come.
pub type OnSample = Arc<dyn Fn(&[Member], bool) + Send + Sync>;

/// The daemon-wide sampler.
#[derive(Clone)]
pub struct Sampler {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the sampler thread (a new subscriber or a request for a pass).
    wake: Condvar,
    /// Wakes blocking callers waiting for a pass.
    done: Condvar,
    finished: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    tracked: Vec<Weak<Tracked>>,
    subscriptions: HashMap<u64, Subscription>,
    next_subscription: u64,
    started: u64,
    finished: u64,
    /// The highest pass number a caller waits for.
    wanted: u64,
    /// Whether the latest pass could read `/proc` at all.
    readable: bool,
    /// Our own children that are not roots (processes adopted as a subreaper).
    adoptions: Adoptions,
}

struct Subscription {
    tracked: Weak<Tracked>,
    interval: Duration,
    due: Instant,
    on_sample: OnSample,
}

impl Sampler {
    /// The sampler of this process (started on first use).
    pub fn global() -> &'static Sampler {
        static SAMPLER: OnceLock<Sampler> = OnceLock::new();
        SAMPLER.get_or_init(|| {
            let sampler = Sampler {
                shared: Arc::new(Shared {
                    state: Mutex::new(State {
                        readable: true,
                        ..State::default()
                    }),
                    wake: Condvar::new(),
                    done: Condvar::new(),
                    finished: watch::channel(0).0,
                }),
            };
            let runner = sampler.clone();
            std::thread::Builder::new()
                .name("rollbridge-sampler".into())
                .spawn(move || runner.run())
                .expect("start the supervision sampler thread");
            sampler
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unpoisoned()
    }

    /// The tree rooted at `root` (a process-group leader we started, or a group
    /// id a hook acts on). Everyone asking about the same root shares one tree.
    pub fn track(&self, root: i32) -> Arc<Tracked> {
        let root_start = super::snapshot::read_one(root).map(|e| e.start_time);
        let mut state = self.lock();
        state.tracked.retain(|t| t.strong_count() > 0);
        let existing = state
            .tracked
            .iter()
            .filter_map(Weak::upgrade)
            .find(|t| t.root == root && (t.root_start == root_start || root_start.is_none()));
        if let Some(tracked) = existing {
            return tracked;
        }
        let tracked = Arc::new(Tracked {
            root,
            root_start,
            marker: Mutex::new(None),
            view: Mutex::new(View {
                gone: root <= 0,
                ..View::default()
            }),
            sampler: self.clone(),
        });
        state.tracked.push(Arc::downgrade(&tracked));
        tracked
    }

    /// Asks for a pass that starts after now; returns its number.
    fn request(&self) -> u64 {
        let mut state = self.lock();
        let target = state.started + 1;
        state.wanted = state.wanted.max(target);
        self.shared.wake.notify_all();
        target
    }

    /// Waits (async) for the next pass to finish.
    pub async fn fresh_pass(&self) {
        let mut finished = self.shared.finished.subscribe();
        let target = self.request();
        let _ = finished.wait_for(|&n| n >= target).await;
    }

    /// Waits (blocking the thread) for the next pass to finish.
    pub fn fresh_pass_blocking(&self) {
        let target = self.request();
        let mut state = self.lock();
        while state.finished < target {
            state = self.shared.done.wait(state).unpoisoned();
        }
    }

    /// Whether the latest pass could read `/proc`.
    pub fn readable(&self) -> bool {
        self.lock().readable
    }

    fn subscribe(&self, tracked: &Arc<Tracked>, interval: Duration, on_sample: OnSample) -> u64 {
        let mut state = self.lock();
        let id = state.next_subscription;
        state.next_subscription += 1;
        state.subscriptions.insert(
            id,
            Subscription {
                tracked: Arc::downgrade(tracked),
                interval,
                due: Instant::now() + interval,
                on_sample,
            },
        );
        self.shared.wake.notify_all();
        id
    }

    fn unsubscribe(&self, id: u64) {
        self.lock().subscriptions.remove(&id);
    }

    fn run(&self) {
        loop {
            let (number, tracked) = self.wait_for_work();
            let snapshot = ProcSnapshot::read();
            let callbacks = self.finish_pass(number, &tracked, snapshot.ok());
            for (callback, members, due) in callbacks {
                callback(&members, due);
            }
        }
    }

    /// Sleeps until a pass is asked for or a subscriber is due; then starts one.
    fn wait_for_work(&self) -> (u64, Vec<Arc<Tracked>>) {
        let mut state = self.lock();
        loop {
            if state.wanted > state.started {
                break;
            }
            let next_due = state.subscriptions.values().map(|s| s.due).min();
            let now = Instant::now();
            state = match next_due {
                Some(due) if due <= now => break,
                Some(due) => {
                    self.shared
                        .wake
                        .wait_timeout(state, due - now)
                        .unpoisoned()
                        .0
                }
                None => self.shared.wake.wait(state).unpoisoned(),
            };
        }
        state.started += 1;
        state.tracked.retain(|t| t.strong_count() > 0);
        let tracked = state.tracked.iter().filter_map(Weak::upgrade).collect();
        (state.started, tracked)
    }

    /// Attributes the snapshot to the trees, reaps adopted zombies, and returns
    /// the subscriber calls to make (outside every lock).
    fn finish_pass(
        &self,
        number: u64,
        tracked: &[Arc<Tracked>],
        snapshot: Option<ProcSnapshot>,
    ) -> Vec<(OnSample, Arc<[Member]>, bool)> {
        let members = snapshot
            .as_ref()
            .map(|snapshot| self.attribute(snapshot, tracked));
        let mut state = self.lock();
        state.readable = snapshot.is_some();
        if let (Some(snapshot), Some(members)) = (&snapshot, &members) {
            for (tree, list) in tracked.iter().zip(members) {
                tree.update(list.clone());
            }
            if is_subreaper() {
                state.adoptions.reap(snapshot, tracked, members);
            }
        }
        let now = Instant::now();
        let slack = state
            .subscriptions
            .values()
            .map(|s| s.interval / 2)
            .min()
            .unwrap_or_default()
            .min(MAX_SLACK);
        let mut calls = Vec::new();
        for subscription in state.subscriptions.values_mut() {
            let Some(tree) = subscription.tracked.upgrade() else {
                continue;
            };
            let due = subscription.due <= now + slack;
            if due {
                subscription.due = now + subscription.interval;
            }
            if members.is_some() {
                calls.push((subscription.on_sample.clone(), tree.members(), due));
            }
        }
        state.finished = number;
        drop(state);
        self.shared.finished.send_replace(number);
        self.shared.done.notify_all();
        calls
    }

    /// The members of every tree; adopted children whose environment names a
    /// tree's process are added to that tree.
    fn attribute(&self, snapshot: &ProcSnapshot, tracked: &[Arc<Tracked>]) -> Vec<Arc<[Member]>> {
        let mut extra: Vec<HashMap<i32, u64>> = tracked.iter().map(|t| t.remembered()).collect();
        if is_subreaper() {
            let mut state = self.lock();
            for (index, pid, start) in state.adoptions.claim_by_environment(snapshot, tracked) {
                extra[index].insert(pid, start);
            }
        }
        let specs: Vec<RootSpec> = tracked
            .iter()
            .zip(&extra)
            .map(|(tree, remembered)| RootSpec {
                root: if tree.gone() { -1 } else { tree.root },
                root_start: tree.root_start,
                remembered,
            })
            .collect();
        let owners = attribute(snapshot, &specs);
        let mut members: Vec<Vec<Member>> = vec![Vec::new(); tracked.len()];
        for (pid, index) in owners {
            if let Some(entry) = snapshot.get(pid) {
                members[index].push(Member::of(entry));
            }
        }
        members
            .into_iter()
            .map(|mut list| {
                list.sort_unstable_by_key(|m| m.pid);
                Arc::from(list)
            })
            .collect()
    }
}

/// One tree: a root process and everything attributed to it.
pub struct Tracked {
    root: i32,
    root_start: Option<u64>,
    marker: Mutex<Option<String>>,
    view: Mutex<View>,
    sampler: Sampler,
}

#[derive(Default)]
struct View {
    members: Arc<[Member]>,
    gone: bool,
    seen: bool,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked")
            .field("root", &self.root)
            .field("root_start", &self.root_start)
            .finish()
    }
}

impl Tracked {
    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unpoisoned()
    }

    pub fn root(&self) -> i32 {
        self.root
    }

    pub fn root_start(&self) -> Option<u64> {
        self.root_start
    }

    /// Names the managed process (`marker_of` its environment), so adopted
    /// processes that carry the same environment are attributed to this tree.
    pub fn set_marker(&self, marker: Option<String>) {
        *self.marker.lock().unpoisoned() = marker;
    }

    pub(super) fn marker(&self) -> Option<String> {
        self.marker.lock().unpoisoned().clone()
    }

    /// Once a pass found no live member, the tree is gone for good: only live
    /// members can start new ones, and the ids may now be recycled.
    pub fn gone(&self) -> bool {
        self.view().gone
    }

    /// The members of the latest pass (sorted by pid, zombies included).
    pub fn members(&self) -> Arc<[Member]> {
        self.view().members.clone()
    }

    /// The live members of the latest pass.
    pub fn live_members(&self) -> Vec<Member> {
        self.view()
            .members
            .iter()
            .filter(|m| m.live)
            .cloned()
            .collect()
    }

    /// Whether a pass has looked at this tree yet.
    pub fn seen(&self) -> bool {
        self.view().seen
    }

    fn remembered(&self) -> HashMap<i32, u64> {
        self.view()
            .members
            .iter()
            .map(|m| (m.pid, m.start_time))
            .collect()
    }

    fn update(&self, members: Arc<[Member]>) {
        let mut view = self.view();
        if view.gone {
            return;
        }
        view.gone = !members.iter().any(|m| m.live);
        view.members = if view.gone { Arc::from([]) } else { members };
        view.seen = true;
    }

    /// Marks the tree gone without a pass (a signal probe found nothing).
    pub fn mark_gone(&self) {
        let mut view = self.view();
        view.gone = true;
        view.members = Arc::from([]);
    }

    /// Waits for a pass that started after now and returns the live members.
    pub async fn refresh(&self) -> Vec<Member> {
        if !self.gone() {
            self.sampler.fresh_pass().await;
        }
        self.live_members()
    }

    /// [`refresh`](Self::refresh), blocking the calling thread.
    pub fn refresh_blocking(&self) -> Vec<Member> {
        if !self.gone() {
            self.sampler.fresh_pass_blocking();
        }
        self.live_members()
    }

    /// Calls `on_sample` after every pass until the returned guard is dropped;
    /// its `due` flag is set every `interval`.
    pub fn subscribe(
        self: &Arc<Self>,
        interval: Duration,
        on_sample: OnSample,
    ) -> SampleSubscription {
        let id = self.sampler.subscribe(self, interval, on_sample);
        SampleSubscription {
            id,
            sampler: self.sampler.clone(),
        }
    }

    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }
}

/// Ends a subscription when dropped.
pub struct SampleSubscription {
    id: u64,
    sampler: Sampler,
}

impl Drop for SampleSubscription {
    fn drop(&mut self) {
        self.sampler.unsubscribe(self.id);
    }
}

impl std::fmt::Debug for SampleSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleSubscription")
            .field("id", &self.id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_sees_its_root_and_a_child_that_left_the_group() {
        let (mut shell, escaped) = super::super::snapshot::spawn_reporting_pid(
            "setsid sleep 30 & echo $!; exec sleep 30",
            true,
        );
        let root = shell.id() as i32;
        let tree = Sampler::global().track(root);
        let live = tree.refresh_blocking();
        let pids: Vec<i32> = live.iter().map(|m| m.pid).collect();
        unsafe {
            libc::kill(escaped, libc::SIGKILL);
            libc::kill(root, libc::SIGKILL);
        }
        shell.wait().unwrap();
        assert!(pids.contains(&root), "{pids:?}");
        assert!(pids.contains(&escaped), "{pids:?}");
        assert!(live.iter().all(|m| m.rss_bytes.is_some()), "{live:?}");
        assert!(Arc::ptr_eq(&tree, &Sampler::global().track(root)));
    }
}
