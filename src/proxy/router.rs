//! The switchable "active release" pointer read once per request.

use super::target::ReleaseTarget;
use arc_swap::ArcSwapOption;
use std::sync::Arc;

/// Which release receives new requests. Reads are lock-free; a switch is one atomic
/// pointer swap, so requests already routed keep their target and the next request
/// (even on the same keep-alive client connection) sees the new one.
#[derive(Debug, Default)]
pub struct Router {
    active: ArcSwapOption<ReleaseTarget>,
}

impl Router {
    pub fn new() -> Arc<Router> {
        Arc::new(Router::default())
    }

    /// Routes new requests to `target`; `None` makes the proxy answer 503.
    pub fn set_active(&self, target: Option<Arc<ReleaseTarget>>) {
        self.active.store(target);
    }

    pub fn active(&self) -> Option<Arc<ReleaseTarget>> {
        self.active.load_full()
    }
}
