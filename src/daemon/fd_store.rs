//! Keeping the listeners in systemd's file descriptor store (docs/systemd.md):
//! with `FileDescriptorStoreMax=` in the unit, even a full `systemctl restart`
//! hands the proxy and control sockets to the next daemon (`LISTEN_FDS`, named
//! `proxy` and `control`), so clients queue in the backlog instead of being
//! refused. Without `NOTIFY_SOCKET` this does nothing.

use super::state::Daemon;

impl Daemon {
    /// Stores the proxy and control listeners (once serving).
    pub fn store_listeners(&self) {
        let Some(observability) = self.observability() else {
            return;
        };
        let notifier = observability.notifier();
        if !notifier.is_enabled() {
            return;
        }
        let mut named = Vec::new();
        {
            let endpoints = self.endpoints();
            if let Some(proxy) = &endpoints.proxy {
                named.push(("proxy", proxy.listener_fd()));
            }
            if let Some(control) = &endpoints.control {
                named.push(("control", control.listener_fd()));
            }
        }
        notifier.store_fds(&named);
    }
}
