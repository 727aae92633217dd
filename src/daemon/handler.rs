//! Dispatch of control requests to the daemon's flows.

use super::deploy::DeployRequest;
use super::hook_warnings::HookWarnings;
use super::state::Daemon;
use crate::control::protocol::Request;
use crate::control::reply::{EventsReply, MessageReply, RestartReply};
use crate::control::server::{AfterReply, ConnectionId, ControlHandler, Reply, ReplyFuture};
use crate::events::Event;
use crate::util::panic::catch_panic;
use std::sync::Arc;

impl ControlHandler for Daemon {
    fn handle(self: Arc<Self>, request: Request, origin: ConnectionId) -> ReplyFuture {
        Box::pin(async move {
            let command = request.name();
            let exclusive = request.waits_for_operations();
            let warnings = warns_of_hooks(&request).then(|| HookWarnings::watch(&self.events));
            let reply = match catch_panic(self.clone().answer(request, origin)).await {
                Ok(reply) => reply,
                Err(panic) => self.recover_from_panic(command, exclusive, &panic).await,
            };
            match warnings {
                Some(warnings) => warnings.attach(reply),
                None => reply,
            }
        })
    }
}

impl Daemon {
    /// A command handler panicked (a bug): the client gets an error instead of
    /// silence, and a deploy-class command's leftovers are cleaned up — the
    /// `deploying` marker and every release still starting (nothing else can be
    /// starting while the operations lock is held) are stopped and forgotten.
    async fn recover_from_panic(&self, command: &str, exclusive: bool, panic: &str) -> Reply {
        self.events.emit(Event::CommandPanicked {
            command: command.to_string(),
            error: panic.to_string(),
        });
        if exclusive {
            let _operations = self.lock_operations().await;
            let leftovers = {
                let mut state = self.state();
                state.deploying = None;
                // An open canary is among the releases stopped below.
                state.rollout = None;
                std::mem::take(&mut state.starting)
            };
            self.router.set_canary(None);
            for release in leftovers {
                release.stop_now().await;
            }
        }
        Reply::error(format!(
            "Internal error while handling \"{command}\": {panic}\nThis is a bug in rollbridge; the daemon stopped what the command had started and keeps serving. Please report it with the daemon log."
        ))
    }

    async fn answer(self: Arc<Self>, request: Request, origin: ConnectionId) -> Reply {
        match request {
            Request::Status => {
                self.recheck_orphans();
                Reply::ok(self.status())
            }
            Request::Events { limit } => Reply::ok(EventsReply {
                events: self.events.recent(limit),
            }),
            // Shutdown and retirement take the operations lock themselves, after
            // raising `stopping` so a running deploy gives up quickly.
            Request::Shutdown => {
                let reply = match self.shutdown(Some(origin)).await {
                    Ok(()) => Reply::ok(MessageReply::new("shutdown")),
                    Err(error) => error_reply(error),
                };
                reply.then(AfterReply::CloseAndExit)
            }
            Request::RetireOwner { attestation } => {
                match self.retire_owner(attestation, Some(origin)).await {
                    Ok(payload) => Reply::ok(payload).then(AfterReply::Close),
                    Err(error) => error_reply(error),
                }
            }
            // Traffic control (docs/rollouts.md): pause, maintenance and rollouts
            // act while other commands wait; a rollback ends a rollout.
            Request::Pause { max_ms } => Reply::ok(self.pause_traffic(max_ms)),
            Request::Resume => Reply::ok(self.resume_traffic()),
            Request::Maintenance { enabled, message } => {
                Reply::ok(self.set_maintenance(enabled, message))
            }
            Request::Rollout { action, percent } => self
                .rollout_command(action, percent)
                .await
                .map(Reply::ok)
                .unwrap_or_else(error_reply),
            Request::Rollback { release_id: None } if let Some(run) = self.rollout() => self
                .rollback_rollout(run)
                .await
                .map(|outcome| Reply::ok(outcome.to_payload()))
                .unwrap_or_else(error_reply),
            exclusive => {
                debug_assert!(exclusive.waits_for_operations(), "{}", exclusive.name());
                // Deploy-class commands run one at a time, and not while a canary is open.
                let operations = self.lock_operations_after_canary(exclusive.name()).await;
                if let Err(error) = self.ensure_running() {
                    return error_reply(error);
                }
                match exclusive {
                    Request::Deploy {
                        release_path,
                        release_id,
                        revision,
                        watch_ms,
                        canary_percent,
                    } => self
                        .deploy_locked(
                            &operations,
                            DeployRequest {
                                release_path,
                                release_id,
                                revision,
                                watch_ms,
                                canary_percent,
                            },
                        )
                        .await
                        .map(|outcome| Reply::ok(outcome.to_payload()))
                        .unwrap_or_else(error_reply),
                    Request::Rollback { release_id } => self
                        .rollback_locked(&operations, release_id)
                        .await
                        .map(|outcome| Reply::ok(outcome.to_payload()))
                        .unwrap_or_else(error_reply),
                    Request::Stop { release_id } => self
                        .stop_locked(&operations, release_id)
                        .await
                        .map(Reply::ok)
                        .unwrap_or_else(error_reply),
                    Request::Upgrade { binary } => {
                        error_reply(self.upgrade_locked(&operations, binary, origin).await)
                    }
                    Request::Restart { process_id, policy } => self
                        .restart_locked(&operations, process_id, policy)
                        .await
                        .map(|restarted| Reply::ok(RestartReply { restarted }))
                        .unwrap_or_else(error_reply),
                    _ => Reply::error("internal error: request routed to the wrong handler"),
                }
            }
        }
    }
}

/// The commands whose replies carry `warnings` about failed hooks.
fn warns_of_hooks(request: &Request) -> bool {
    matches!(
        request,
        Request::Deploy { .. }
            | Request::Rollback { .. }
            | Request::Restart { .. }
            | Request::Stop { .. }
            | Request::Shutdown
    )
}

/// The error reply of a failed flow: its message is the error's `Display`.
fn error_reply(error: impl std::fmt::Display) -> Reply {
    Reply::error(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Policy;
    use crate::daemon::definition::{self, ReleaseIdentity};
    use crate::daemon::release::Release;
    use crate::daemon::state::DeployingInfo;
    use crate::events::EventSink;
    use crate::process::{ManagedProcess, StartReason};

    /// A daemon on a one-process config (`web`, `exec sleep 300`), not serving.
    fn daemon(dir: &std::path::Path) -> Arc<Daemon> {
        let path = dir.join("rollbridge.json");
        let config = serde_json::json!({
            "application": "panic-test",
            "control": {"path": dir.join("control.sock")},
            "proxy": {"port": 0, "forceStopTimeoutMs": 2000},
            "processes": [{"id": "web", "policy": "proxied", "command": "exec sleep 300",
                           "port": {"from": 0, "to": 0}}]
        });
        std::fs::write(&path, config.to_string()).unwrap();
        let loaded = crate::config::load(&path).unwrap();
        let registry = crate::daemon::setup::registry_for(&loaded).unwrap();
        Daemon::new(loaded.config, registry, None, None, EventSink::silent())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicked_deploy_is_answered_and_its_starting_release_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = daemon(dir.path());
        let (config, registry) = (daemon.config(), daemon.registry());
        let release = Release::new(
            "v1".into(),
            dir.path().display().to_string(),
            "v1".into(),
            vec![("web".into(), 0)],
            "127.0.0.1",
            0,
        );
        let web = &config.processes[0];
        assert_eq!(web.policy, Policy::Proxied);
        let def = definition::build(&config, web, &ReleaseIdentity::of(&release), 0).unwrap();
        let process = ManagedProcess::new(def, daemon.release_supervision(&registry, &release));
        release.add_process("web", process.clone());
        process.start(StartReason::Deploy).await.unwrap();
        let pid = process.pid().unwrap();
        assert!(crate::process::group_alive(pid));
        {
            let mut state = daemon.state();
            state.starting.push(release.clone());
            state.deploying = Some(DeployingInfo {
                release_id: "v1".into(),
                release_path: release.path.clone(),
                started_at: crate::util::time::iso_now(),
            });
        }

        let reply = daemon
            .recover_from_panic("deploy", true, "index out of bounds")
            .await;
        let error = reply.result.unwrap_err();
        assert!(
            error.starts_with("Internal error while handling \"deploy\": index out of bounds\n"),
            "{error}"
        );
        {
            let state = daemon.state();
            assert!(state.deploying.is_none());
            assert!(state.starting.is_empty());
        }
        assert!(
            !crate::process::group_alive(pid),
            "the started process is stopped"
        );
        assert_eq!(release.state().as_str(), "stopped");
        let panicked = daemon.events.recent(None);
        assert!(
            panicked
                .iter()
                .any(|event| event.message == "command panicked"
                    && event.data["command"] == "deploy"
                    && event.data["error"] == "index out of bounds")
        );
    }
}
