//! Deploy-time config reload (flows.md §18): which changes a running daemon can
//! take on, and which need a daemon restart.

use crate::config::model::{Config, ProcessConfig};

/// Checks that `next` can replace `current` in a running daemon. The error is the
/// message the deploy fails with.
pub fn check_compatible(current: &Config, next: &Config) -> Result<(), String> {
    let mut blocked: Vec<&str> = Vec::new();
    if current.application != next.application {
        blocked.push("application");
    }
    if current.control != next.control {
        blocked.push("control");
    }
    if current.state_path != next.state_path {
        blocked.push("statePath");
    }
    if current.proxy.host != next.proxy.host {
        blocked.push("proxy.host");
    }
    if current.proxy.port != next.proxy.port {
        blocked.push("proxy.port");
    }
    if current.proxy.upstream_host != next.proxy.upstream_host {
        blocked.push("proxy.upstreamHost");
    }
    if processes_changed(&current.processes, &next.processes) {
        blocked.push("processes");
    }
    if blocked.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "Config changes to {} cannot be applied live; restart the Rollbridge daemon before deploying.",
            blocked.join(", ")
        ))
    }
}

/// The process set is fixed for a daemon's life: same ids, and for each the same
/// policy, deploy strategy, replica count and port range. Order may change.
fn processes_changed(current: &[ProcessConfig], next: &[ProcessConfig]) -> bool {
    current.len() != next.len()
        || current.iter().any(|process| {
            match next.iter().find(|candidate| candidate.id == process.id) {
                None => true,
                Some(candidate) => {
                    candidate.policy != process.policy
                        || candidate.deploy_strategy != process.deploy_strategy
                        || candidate.replicas != process.replicas
                        || candidate.port != process.port
                }
            }
        })
}
