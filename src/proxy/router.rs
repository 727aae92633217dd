//! The switchable "active release" pointer read once per request.

use super::counters::ConnectionGuard;
use super::target::ReleaseTarget;
use arc_swap::ArcSwapOption;
use std::sync::Arc;

/// Which release receives new requests. Reads are lock-free; a switch is one atomic
/// pointer swap, so requests already routed keep their target and the next request
/// (even on the same keep-alive client connection) sees the new one.
///
/// Picking a release and counting the request on it are one step
/// ([`Router::route`]): a switch closes the old release's counters right after the
/// swap, and a request that loaded the old pointer but was not counted before that
/// is refused by the counters and routed again. So once [`Router::set_active`]
/// returns, the old release's count covers every request it will ever serve.
#[derive(Debug, Default)]
pub struct Router {
    active: ArcSwapOption<ReleaseTarget>,
}

impl Router {
    pub fn new() -> Arc<Router> {
        Arc::new(Router::default())
    }

    /// Routes new requests to `target`; `None` makes the proxy answer 503. The
    /// release switched away from admits no new request from here on.
    pub fn set_active(&self, target: Option<Arc<ReleaseTarget>>) {
        let previous = self.active.swap(target.clone());
        if let Some(previous) = previous {
            let same = target.is_some_and(|next| Arc::ptr_eq(&next, &previous));
            if !same {
                previous.counters().close();
            }
        }
    }

    pub fn active(&self) -> Option<Arc<ReleaseTarget>> {
        self.active.load_full()
    }

    /// The active release with this request counted on it, or `None` when no
    /// release is active. One pointer load and one counter increment, unless a
    /// switch lands in between: the old release refuses the count (it was closed
    /// after the swap, so loading again sees the new pointer).
    pub fn route(&self) -> Option<(Arc<ReleaseTarget>, ConnectionGuard)> {
        let mut refused: Option<Arc<ReleaseTarget>> = None;
        loop {
            let target = self.active.load_full()?;
            if refused
                .as_ref()
                .is_some_and(|old| Arc::ptr_eq(old, &target))
            {
                // Closed yet still active: only possible if a release's counters
                // were closed by hand; refuse rather than spin.
                return None;
            }
            match target.counters().try_track_http() {
                Some(count) => return Some((target, count)),
                None => refused = Some(target),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ConnectionCounters;

    fn target(id: &str) -> Arc<ReleaseTarget> {
        ReleaseTarget::new(id.into(), "127.0.0.1", 9, ConnectionCounters::new())
    }

    #[test]
    fn a_switch_closes_the_old_release_and_routes_to_the_new_one() {
        let router = Router::new();
        assert!(router.route().is_none(), "no release yet");
        let (v1, v2) = (target("v1"), target("v2"));
        router.set_active(Some(v1.clone()));
        let (routed, in_flight) = router.route().unwrap();
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
        let (routed, _count) = router.route().unwrap();
        assert_eq!(routed.release_id(), "v2");
        drop(in_flight);
        assert_eq!(v1.counters().total(), 0);
        router.set_active(None);
        assert!(v2.counters().is_closed());
        assert!(router.route().is_none());
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
                        let (target, count) = router.route().expect("always a release");
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
}
