//! The routing table read once per request: the active release, an optional
//! canary share, and the pause / maintenance / readiness rules (see `traffic.rs`).

use super::counters::ConnectionGuard;
use super::target::ReleaseTarget;
use super::traffic::{Canary, Hold, RoutingTable};
use crate::util::sync::Unpoisoned;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::HeaderMap;
use std::sync::{Arc, Mutex};

/// Which release receives new requests. Reads are lock-free; every change is one
/// atomic pointer swap of the whole [`RoutingTable`], so requests already routed
/// keep their target and the next request (even on the same keep-alive client
/// connection) sees the new table. Changes are serialised by a writer lock the
/// request path never takes.
///
/// Picking a release and counting the request on it are one step
/// ([`Router::route`]): a switch closes the old release's counters right after the
/// swap, and a request that loaded the old table but was not counted before that
/// is refused by the counters and routed again. So once [`Router::set_active`]
/// returns, the old release's count covers every request it will ever serve.
#[derive(Debug, Default)]
pub struct Router {
    table: ArcSwap<RoutingTable>,
    writer: Mutex<()>,
}

/// What the proxy does with one request.
pub(crate) enum Route {
    /// Send it to this release (the request is counted on it).
    Release(Arc<ReleaseTarget>, ConnectionGuard),
    /// No release is active: 503.
    NoRelease,
    /// Maintenance: 503 with this message.
    Maintenance(Bytes),
    /// Paused: wait on the hold, then route again.
    Held(Arc<Hold>),
    /// The readiness path: 200 when ready, else 503.
    Readiness(bool),
}

impl Router {
    pub fn new() -> Arc<Router> {
        Arc::new(Router::default())
    }

    /// Changes the table with `change` as one swap; returns the previous table.
    pub fn update(&self, change: impl FnOnce(&mut RoutingTable)) -> Arc<RoutingTable> {
        let _writer = self.writer.lock().unpoisoned();
        let mut next = RoutingTable::clone(&self.table.load());
        change(&mut next);
        self.table.swap(Arc::new(next))
    }

    /// The current table (for the daemon; requests use [`Router::route`]).
    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Routes new requests to `target`; `None` makes the proxy answer 503. The
    /// release switched away from admits no new request from here on.
    pub fn set_active(&self, target: Option<Arc<ReleaseTarget>>) {
        let previous = self.set_active_keeping_previous(target.clone());
        if let Some(previous) = previous {
            let same = target.is_some_and(|next| Arc::ptr_eq(&next, &previous));
            if !same {
                previous.counters().close();
            }
        }
    }

    /// Routes new requests to `target` but leaves the previous release open (a
    /// rollout may switch back to it); returns that release. Whoever calls this
    /// closes the previous release's counters once it is retired for good.
    pub fn set_active_keeping_previous(
        &self,
        target: Option<Arc<ReleaseTarget>>,
    ) -> Option<Arc<ReleaseTarget>> {
        self.update(|table| table.active = target).active.clone()
    }

    /// Starts, changes or (with `None`) ends the canary share. A canary that leaves
    /// the table without becoming active admits no new request from here on.
    pub fn set_canary(&self, canary: Option<Canary>) {
        let previous = self.update(|table| table.canary = canary.clone());
        if let Some(old) = &previous.canary {
            let kept = canary.is_some_and(|next| Arc::ptr_eq(&next.target, &old.target))
                || previous
                    .active
                    .as_ref()
                    .is_some_and(|a| Arc::ptr_eq(a, &old.target));
            if !kept {
                old.target.counters().close();
            }
        }
    }

    pub fn active(&self) -> Option<Arc<ReleaseTarget>> {
        self.table.load().active.clone()
    }

    /// The release for a request with these headers, with the request counted on
    /// it, or why the proxy answers itself. One table load (and, during a canary,
    /// one hash) per request, unless a switch lands in between: the old release
    /// refuses the count (it was closed after the swap, so loading again sees the
    /// new table).
    pub(crate) fn route(&self, path: &str, headers: &HeaderMap) -> Route {
        let mut refused: Option<Arc<ReleaseTarget>> = None;
        loop {
            let table = self.table.load();
            if let Some(readiness) = &table.readiness_path
                && **readiness == *path
            {
                return Route::Readiness(table.is_ready());
            }
            if let Some(message) = &table.maintenance {
                return Route::Maintenance(message.clone());
            }
            if let Some(hold) = &table.hold {
                return Route::Held(hold.clone());
            }
            let Some(target) = table.choose(headers) else {
                return Route::NoRelease;
            };
            if refused.as_ref().is_some_and(|old| Arc::ptr_eq(old, target)) {
                // Closed yet still in the table: only possible if a release's
                // counters were closed by hand; refuse rather than spin.
                return Route::NoRelease;
            }
            match target.counters().try_track_http() {
                Some(count) => return Route::Release(target.clone(), count),
                None => refused = Some(target.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ConnectionCounters;

    impl Router {
        fn test_route(&self) -> Option<(Arc<ReleaseTarget>, ConnectionGuard)> {
            match self.route("/", &HeaderMap::new()) {
                Route::Release(target, count) => Some((target, count)),
                _ => None,
            }
        }
    }

    fn target(id: &str) -> Arc<ReleaseTarget> {
        ReleaseTarget::new(id.into(), "127.0.0.1", 9, ConnectionCounters::new())
    }

    #[test]
    fn a_switch_closes_the_old_release_and_routes_to_the_new_one() {
        let router = Router::new();
        assert!(router.test_route().is_none(), "no release yet");
        let (v1, v2) = (target("v1"), target("v2"));
        router.set_active(Some(v1.clone()));
        let (routed, in_flight) = router.test_route().unwrap();
        assert_eq!(routed.release_id(), "v1");
        router.set_active(Some(v1.clone()));
        assert!(!v1.counters().is_closed(), "re-activating is no switch");
        router.set_active(Some(v2.clone()));
        assert!(v1.counters().is_closed());
        assert_eq!(
            v1.counters().http(),
            1,
            "the request in flight stays counted"
        );
        let (routed, _count) = router.test_route().unwrap();
        assert_eq!(routed.release_id(), "v2");
        drop(in_flight);
        assert_eq!(v1.counters().total(), 0);
        router.set_active(None);
        assert!(v2.counters().is_closed());
        assert!(router.test_route().is_none());
    }

    #[test]
    fn switching_under_load_never_counts_a_request_on_a_closed_release() {
        let router = Router::new();
        let releases: Vec<_> = (0..20).map(|n| target(&format!("v{n}"))).collect();
        router.set_active(Some(releases[0].clone()));
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..5_000 {
                        let (target, count) = router.test_route().expect("always a release");
                        assert!(!target.counters().is_closed() || target.counters().http() > 0);
                        drop(count);
                    }
                });
            }
            for (n, release) in releases.iter().enumerate().skip(1) {
                router.set_active(Some(release.clone()));
                // Once switched away, the old release's count only goes down.
                let old = &releases[n - 1];
                assert!(old.counters().try_track_http().is_none());
                std::thread::yield_now();
            }
        });
        assert!(releases.iter().all(|r| r.counters().total() == 0));
    }

    #[test]
    fn a_canary_takes_its_share_and_leaves_closed_unless_promoted() {
        let router = Router::new();
        let (v1, v2) = (target("v1"), target("v2"));
        router.set_active(Some(v1.clone()));
        router.set_canary(Some(Canary {
            target: v2.clone(),
            percent: 20,
            sticky: None,
        }));
        let on_canary = (0..1000)
            .filter(|_| router.test_route().unwrap().0.release_id() == "v2")
            .count();
        assert_eq!(on_canary, 200);
        router.set_canary(None);
        assert!(
            v2.counters().is_closed(),
            "an aborted canary admits no more"
        );
        assert!(!v1.counters().is_closed());

        let v3 = target("v3");
        router.set_canary(Some(Canary {
            target: v3.clone(),
            percent: 50,
            sticky: None,
        }));
        let previous = router.set_active_keeping_previous(Some(v3.clone()));
        router.set_canary(None);
        assert!(!v3.counters().is_closed(), "a promoted canary stays open");
        assert!(!previous.unwrap().counters().is_closed());
    }

    #[test]
    fn maintenance_pause_and_readiness_come_before_routing() {
        let router = Router::new();
        router.set_active(Some(target("v1")));
        router.update(|t| t.readiness_path = Some(Arc::from("/_ready")));
        let headers = HeaderMap::new();
        assert!(matches!(
            router.route("/_ready", &headers),
            Route::Readiness(true)
        ));
        router.update(|t| t.hold = Some(Hold::new(std::time::Duration::from_secs(1))));
        assert!(matches!(router.route("/x", &headers), Route::Held(_)));
        assert!(matches!(
            router.route("/_ready", &headers),
            Route::Readiness(false)
        ));
        router.update(|t| t.maintenance = Some(Bytes::from_static(b"down")));
        assert!(matches!(
            router.route("/x", &headers),
            Route::Maintenance(_)
        ));
        router.update(|t| {
            t.hold = None;
            t.maintenance = None;
        });
        assert!(router.test_route().is_some());
        router.update(|t| t.stopping = true);
        assert!(matches!(
            router.route("/_ready", &headers),
            Route::Readiness(false)
        ));
    }
}
