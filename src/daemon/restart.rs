//! `restart`: bounce companions, services (persistent and
//! handoff) and singletons in place, one at a time. The proxied process is never
//! restarted in place; a deploy replaces it without downtime.

use super::errors::RestartError;
use super::state::{Daemon, OperationsGuard};
use crate::config::model::Policy;
use crate::events::Event;
use crate::process::{ManagedProcess, StartReason};
use std::sync::Arc;

impl Daemon {
    /// Runs a restart and returns the restarted instance ids. Every target is
    /// tried even when an earlier one fails; failures are reported together at
    /// the end. Runs while the operations lock is held.
    pub async fn restart_locked(
        self: &Arc<Self>,
        _operations: &OperationsGuard<'_>,
        process_id: Option<String>,
        policy: Option<String>,
    ) -> Result<Vec<String>, RestartError> {
        let targets = self.restart_targets(process_id.as_deref(), policy.as_deref())?;
        let mut restarted = Vec::new();
        let mut failures = Vec::new();
        for (instance_id, process) in targets {
            self.events.emit(Event::ProcessRestartRequested {
                process_id: instance_id.clone(),
            });
            process.stop().await;
            match process.start(StartReason::Manual).await {
                Ok(()) => restarted.push(instance_id),
                Err(error) => failures.push((instance_id, error)),
            }
        }
        if failures.is_empty() {
            Ok(restarted)
        } else {
            Err(RestartError::Failed {
                failures,
                restarted,
            })
        }
    }

    fn restart_targets(
        &self,
        process_id: Option<&str>,
        policy: Option<&str>,
    ) -> Result<Vec<(String, Arc<ManagedProcess>)>, RestartError> {
        let state = self.state();
        let config = state.config.clone();
        let proxied = config.proxied();
        if policy == Some("proxied") || process_id == Some(proxied.id.as_str()) {
            return Err(RestartError::Proxied);
        }
        let mut targets = Vec::new();
        for process in &config.processes {
            if process.policy == Policy::Proxied {
                continue;
            }
            if policy.is_some_and(|wanted| wanted != process.policy.as_str()) {
                continue;
            }
            let instances: Vec<Arc<ManagedProcess>> = match process.policy {
                Policy::Service if process.is_handoff_service() => state
                    .active
                    .as_ref()
                    .map(|release| release.instances_of(&process.id))
                    .unwrap_or_default(),
                Policy::Service => state.service(&process.id).into_iter().collect(),
                Policy::Singleton => state.singleton(&process.id).into_iter().collect(),
                Policy::Companion => state
                    .active
                    .as_ref()
                    .map(|release| release.instances_of(&process.id))
                    .unwrap_or_default(),
                Policy::Proxied => Vec::new(),
            };
            for instance in instances {
                let instance_id = instance.instance_id();
                let selected = match process_id {
                    None => true,
                    Some(wanted) => wanted == process.id || wanted == instance_id,
                };
                if selected {
                    targets.push((instance_id, instance));
                }
            }
        }
        if let Some(wanted) = process_id {
            if targets.is_empty() {
                return Err(RestartError::NoSuchProcess(wanted.to_string()));
            }
        }
        Ok(targets)
    }
}
