//! Rules that look at a process as a whole, or at all processes together.

use super::Validator;
use super::process::{CheckedProcess, port_is_fixed};
use crate::config::model::{DeployStrategy, Policy};
use std::collections::HashSet;

pub(super) fn validate_cross_process(v: &mut Validator, processes: &[CheckedProcess]) {
    let mut seen = HashSet::new();
    for checked in processes {
        let process = &checked.config;
        let id = process.id.as_str();
        if id.is_empty() {
            continue;
        }
        let policy = process.policy.as_str();
        if !seen.insert(id) {
            v.issue(
                format!("Duplicate process id: {id}"),
                format!(
                    "Rename one of the processes called \"{id}\": every process id must be unique."
                ),
            );
        }
        if id.contains('#') {
            let stripped = id.replace('#', "");
            v.issue(
                format!("Process id \"{id}\" must not contain \"#\""),
                format!("Rename it, e.g. to \"{stripped}\": rollbridge uses \"#\" to name replicas, as in \"{stripped}#0\"."),
            );
        }
        if process.replicas > 1 && (process.policy != Policy::Companion || process.port.is_some()) {
            let with_port = if process.port.is_some() {
                " with a port"
            } else {
                ""
            };
            v.issue(
                format!("Process \"{id}\" can only set replicas > 1 on a companion process without a port"),
                format!("\"{id}\" asks for {} replicas but is a {policy}{with_port}; only portless companions can run several copies, so set replicas to 1 or change the process.", process.replicas),
            );
        }
        if process.non_blocking_drain && process.policy != Policy::Companion {
            v.issue(
                format!("Process \"{id}\" can only set nonBlockingDrain on a companion process"),
                format!("Remove nonBlockingDrain from \"{id}\" (a {policy}); it only changes how companion processes are drained."),
            );
        }
        if process.deploy_strategy == DeployStrategy::Handoff {
            if process.policy != Policy::Service {
                v.issue(
                    format!("Process \"{id}\" can only set deployStrategy: \"handoff\" on a service process"),
                    format!("Remove deployStrategy \"handoff\" from \"{id}\" (a {policy}), or make it a service: only services hand off between releases."),
                );
            } else {
                match process.port {
                    None => v.issue(
                        format!("Handoff service \"{id}\" must define a port range"),
                        format!("Give \"{id}\" a port range so the new instance can listen while the old one is still running."),
                    ),
                    Some(range) if range.from == range.to => v.issue(
                        format!("Handoff service \"{id}\" must use a multi-port range"),
                        format!(
                            "Widen the port of \"{id}\" to a range such as port: {{from: {}, to: {}}} so each release gets a port of its own.",
                            range.from,
                            range.from.saturating_add(99)
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        if let Some(stop_key) = checked.stop_key
            && process.stop_signal != "SIGTERM"
        {
            v.issue(
                format!("Process \"{id}\" sets both lifecycle.{stop_key} and a custom stopSignal, but {stop_key} replaces stopSignal"),
                format!("Remove either stopSignal \"{}\" or lifecycle.{stop_key} from \"{id}\": when a stop hook is set it does the stopping, so the signal is never sent.", process.stop_signal),
            );
        }
        if matches!(process.policy, Policy::Proxied | Policy::Companion)
            && let Some(port) = port_is_fixed(process.port)
        {
            v.issue(
                format!("Process \"{id}\" uses the fixed port {port}, but a {policy} process needs a multi-port range"),
                format!(
                    "Give \"{id}\" a range such as port: {{from: {port}, to: {}}}, or port: 0 for an ephemeral port: during a deploy the new release starts while the old one still holds its port.",
                    port.saturating_add(99)
                ),
            );
        }
    }

    let proxied: Vec<_> = processes
        .iter()
        .map(|checked| &checked.config)
        .filter(|process| process.policy == Policy::Proxied)
        .collect();
    if proxied.len() != 1 {
        v.issue(
            format!(
                "Config must define exactly one proxied process; found {}",
                proxied.len()
            ),
            "Set policy to proxied on exactly one process: the one that receives the proxy's traffic.",
        );
    }
    for process in proxied {
        if process.port.is_none() {
            let id = if process.id.is_empty() {
                "(unnamed)"
            } else {
                &process.id
            };
            v.issue(
                format!("Proxied process {id} must define a port range"),
                format!("Add a port range to the proxied process \"{id}\", e.g. port: {{from: 18000, to: 18099}}, so each release can listen on a port of its own."),
            );
        }
    }
}
