//! SIGINT and SIGTERM: an orderly shutdown, then exit. A repeated signal while
//! the shutdown runs is ignored, so a second Ctrl-C cannot leave children behind.

use super::errors::ShutdownError;
use super::state::Daemon;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// Installs the handlers. The receiver yields the shutdown outcome once the
/// first signal's shutdown has finished.
pub fn install(
    daemon: &Arc<Daemon>,
) -> std::io::Result<oneshot::Receiver<Result<(), ShutdownError>>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let (done, outcome) = oneshot::channel();
    let daemon = daemon.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        // Keep both streams registered (and drained) so later signals are
        // swallowed instead of killing the process with the default action.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
        });
        let result = daemon.shutdown(None).await;
        let _ = done.send(result);
    });
    Ok(outcome)
}
