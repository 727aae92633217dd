//! Shutdown: stop listening for control, stop every owned
//! process, close the proxy, finalize the state file. Memoised: every caller
//! waits for the same run and gets the same outcome.

use super::errors::ShutdownError;
use super::release::Release;
use super::state::Daemon;
use crate::control::server::ConnectionId;
use crate::process::ManagedProcess;
use futures_util::future::join_all;
use std::sync::Arc;
use std::time::Duration;

/// How long the proxy listener waits for its open connections at shutdown,
/// once every upstream process has stopped.
pub const PROXY_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long shutdown waits, at its end, for control connections that were
/// waiting for a reply (a deploy it interrupted) to receive it.
pub const PENDING_REPLY_GRACE: Duration = Duration::from_secs(2);

/// How long processes that escaped their managed process get between SIGTERM
/// and SIGKILL at shutdown.
const LEFTOVER_GRACE: Duration = Duration::from_secs(2);

/// Something shutdown has to stop.
enum Owned {
    Process(Arc<ManagedProcess>),
    Release(Arc<Release>),
}

impl Daemon {
    /// Shuts the daemon down. `origin` is the control connection that asked for
    /// it (kept open for the reply); `None` for a signal.
    pub async fn shutdown(
        self: &Arc<Self>,
        origin: Option<ConnectionId>,
    ) -> Result<(), ShutdownError> {
        self.shutdown_outcome
            .get_or_init(|| self.perform_shutdown(origin))
            .await
            .clone()
    }

    async fn perform_shutdown(
        self: &Arc<Self>,
        origin: Option<ConnectionId>,
    ) -> Result<(), ShutdownError> {
        let mut errors = ShutdownError::default();
        self.begin_stopping();
        let control = self.endpoints().control.clone();
        if let Some(control) = &control {
            control.close_except(origin).await;
            // Only a socket this daemon bound is removed: a failed bootstrap must
            // not delete another daemon's socket file, and a socket systemd passed
            // stays for the next start.
            let unlinked = if self.control_socket_activated() {
                Ok(())
            } else {
                std::fs::remove_file(control.path())
            };
            match unlinked {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    errors.control_socket = Some(Arc::new(error));
                }
                _ => {}
            }
        }
        // A deploy in progress sees `stopping`, aborts and cleans up after itself;
        // waiting for it here means nothing it started is left behind.
        let _operations = self.lock_operations().await;

        errors.unstopped = self.stop_everything().await;
        // What escaped every managed process (adopted by the daemon, a subreaper)
        // does not outlive it either.
        crate::process::leftovers::stop_descendants(LEFTOVER_GRACE).await;
        let proxy = self.endpoints().proxy.take();
        if let Some(proxy) = proxy {
            proxy
                .shutdown(tokio::time::Instant::now() + PROXY_CLOSE_GRACE)
                .await;
        }
        if let Err(error) = self.finalize_state_file().await {
            errors.state_file = Some(Arc::new(error));
        }
        // An interrupted deploy's client gets its answer before the daemon exits.
        if let Some(control) = &control {
            control
                .wait_closed_except(origin, PENDING_REPLY_GRACE)
                .await;
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Stops every persistent service, singleton, starting release and retained
    /// release in parallel. Returns how many could not be stopped (their process
    /// group is still alive afterwards).
    async fn stop_everything(&self) -> usize {
        let owned: Vec<Owned> = {
            let state = self.state();
            let mut owned: Vec<Owned> = Vec::new();
            owned.extend(
                state
                    .services
                    .iter()
                    .map(|(_, p)| Owned::Process(p.clone())),
            );
            owned.extend(
                state
                    .singletons
                    .iter()
                    .map(|(_, p)| Owned::Process(p.clone())),
            );
            let mut releases: Vec<Arc<Release>> = Vec::new();
            for release in state
                .starting
                .iter()
                .chain(state.releases.iter())
                .chain(state.detached.iter())
            {
                if !releases.iter().any(|r| Arc::ptr_eq(r, release)) {
                    releases.push(release.clone());
                }
            }
            owned.extend(releases.into_iter().map(Owned::Release));
            owned
        };
        let stops = owned.into_iter().map(|resource| {
            tokio::spawn(async move {
                match resource {
                    Owned::Process(process) => {
                        process.stop().await;
                        !still_running(&process)
                    }
                    Owned::Release(release) => {
                        release.stop_now().await;
                        !release
                            .processes()
                            .iter()
                            .any(|p| still_running(&p.process))
                    }
                }
            })
        });
        join_all(stops)
            .await
            .into_iter()
            .filter(|outcome| !matches!(outcome, Ok(true)))
            .count()
    }
}

/// True when a stopped process's group still has live members.
pub fn still_running(process: &ManagedProcess) -> bool {
    process.pid().is_some() || process.pgid().is_some_and(crate::process::group_alive)
}
