//! Retiring a release that lost its traffic: drain its connections
//! (bounded by `proxy.drainTimeoutMs`), then stop its processes in dependency
//! order, in the background, then apply retention and persist.

use super::definition::{self, ReleaseIdentity};
use super::release::{Release, ReleaseState};
use super::retention::{RetentionEntry, releases_to_prune};
use super::state::Daemon;
use crate::config::model::Config;
use crate::events::Event;
use crate::plugins::Registry;
use crate::util::time::{iso_now, now_ms, parse_iso_ms};
use futures_util::future::join_all;
use std::sync::Arc;
use std::time::Duration;

impl Daemon {
    /// Starts the drain of `release` without waiting for it.
    pub fn retire_in_background(
        self: &Arc<Self>,
        release: Arc<Release>,
        config: Arc<Config>,
        registry: Registry,
    ) {
        let daemon = self.clone();
        self.events.emit(Event::ReleaseDraining {
            http: release.counters.http(),
            release_id: release.id.clone(),
            timeout_ms: config.proxy.drain_timeout_ms,
            websocket: release.counters.websocket(),
        });
        tokio::spawn(async move {
            let id = release.id.clone();
            // Run the drain as its own task so a panic inside it is reported
            // instead of silently leaving the release half-stopped.
            let drain = tokio::spawn(drain_and_stop(release.clone(), config, registry));
            match drain.await {
                Ok(()) => daemon.events.emit(Event::ReleaseDrained {
                    release_id: id.clone(),
                }),
                Err(error) => daemon.events.emit(Event::ReleaseDrainFailed {
                    error: error.to_string(),
                    release_id: id.clone(),
                }),
            }
            daemon
                .state()
                .detached
                .retain(|r| !Arc::ptr_eq(r, &release));
            daemon.prune_releases();
            daemon.persist().await;
        });
    }

    /// Forgets stopped releases beyond the retention policy.
    pub fn prune_releases(&self) {
        let mut state = self.state();
        let entries: Vec<RetentionEntry> = state
            .releases
            .iter()
            .map(|release| {
                let meta = release.meta();
                RetentionEntry {
                    release_id: release.id.clone(),
                    stopped: meta.state == ReleaseState::Stopped,
                    stopped_at_ms: meta
                        .stopped_at
                        .as_deref()
                        .and_then(parse_iso_ms)
                        .unwrap_or(0),
                }
            })
            .collect();
        let prune = releases_to_prune(&entries, &state.config.release_retention, now_ms());
        if !prune.is_empty() {
            state.releases.retain(|release| {
                let live = release.state() != ReleaseState::Stopped;
                live || !prune.contains(&release.id)
            });
        }
    }
}

/// The drain itself: connection-dependent processes stop once the release has
/// no open connections (or the timeout passed), `nonBlockingDrain` companions
/// stop at once, handoff services stop last.
pub async fn drain_and_stop(release: Arc<Release>, config: Arc<Config>, registry: Registry) {
    {
        let mut meta = release.meta();
        if meta.state == ReleaseState::Stopped {
            return;
        }
        meta.state = ReleaseState::Draining;
        meta.drain_started_at = Some(iso_now());
    }
    // No new request reaches a retired release; close its idle upstream
    // connections now (requests in flight finish normally).
    release.target.retire();
    refresh_definitions(&release, &config, &registry);

    let mut non_blocking = Vec::new();
    let mut handoff = Vec::new();
    let mut dependent = Vec::new();
    for entry in release.processes() {
        let process_config = config.process(&entry.base_id);
        if process_config.is_some_and(|p| p.non_blocking_drain) {
            non_blocking.push(entry.process);
        } else if process_config.is_some_and(|p| p.is_handoff_service()) {
            handoff.push(entry.process);
        } else {
            dependent.push(entry.process);
        }
    }
    let early = tokio::spawn(async move {
        join_all(non_blocking.iter().map(|p| p.stop())).await;
    });
    // The router closed this release's counters when it switched away: no request
    // can start here any more, so the count only goes down and its notification
    // ends the wait.
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(config.proxy.drain_timeout_ms);
    release.counters.wait_drained(deadline).await;
    join_all(dependent.iter().map(|p| p.stop())).await;
    let _ = early.await;
    join_all(handoff.iter().map(|p| p.stop())).await;
    release.mark_stopped();
}

/// Waits (up to `timeout`) for the HTTP requests in flight on `release` to
/// finish, ignoring WebSockets. Used before a release is stopped on purpose.
pub async fn wait_http_requests(release: &Release, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    release.counters.wait_http_drained(deadline).await;
}

/// Rebuilds the retiring processes' definitions from the new config (new stop
/// signal, graceful window, hooks) while keeping this release's ids, paths and
/// ports. A definition that no longer renders keeps its previous one. The hooks
/// of a new definition are resolved by `registry`, built from the same config.
fn refresh_definitions(release: &Release, config: &Config, registry: &Registry) {
    let identity = ReleaseIdentity::of(release);
    for entry in release.processes() {
        let Some(process_config) = config.process(&entry.base_id) else {
            continue;
        };
        let current = entry.process.definition();
        if let Ok(def) = definition::build(config, process_config, &identity, current.replica_index)
        {
            entry.process.redefine_with(def, registry.clone());
        }
    }
}
