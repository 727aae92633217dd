//! Rules that look at a process as a whole, or at all processes together.

use super::Validator;
use super::process::{CheckedProcess, port_is_fixed};
use crate::config::model::{DeployStrategy, Policy};
use serde_json::json;
use std::collections::HashSet;

/// A range of the same width as `from..=to` that leaves out `port`: the part
/// above it when there is one, else the part below.
fn clear_of(from: u16, to: u16, port: u16) -> (u16, u16) {
    let width = to - from;
    match port.checked_add(1) {
        Some(start) if start.checked_add(width).is_some() => (start, start + width),
        _ => (port.saturating_sub(width + 1).max(1), port - 1),
    }
}

pub(super) fn validate_cross_process(
    v: &mut Validator,
    processes: &[CheckedProcess],
    proxy_port: u16,
) {
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
                    None if checked.port_rejected => {}
                    None => v.issue(
                        format!("Handoff service \"{id}\" must define a port range"),
                        format!("Give \"{id}\" a port range so the new instance can listen while the old one is still running."),
                    ),
                    Some(range) if range.from == range.to => {
                        let example = v.example(
                            "port",
                            json!({"from": range.from, "to": range.from.saturating_add(99)}),
                        );
                        v.issue(
                            format!("Handoff service \"{id}\" must use a multi-port range"),
                            format!("Widen the port of \"{id}\" to a range such as {example} so each release gets a port of its own."),
                        )
                    }
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
            let range = v.example("port", json!({"from": port, "to": port.saturating_add(99)}));
            let zero = v.example("port", json!(0));
            v.issue(
                format!("Process \"{id}\" uses the fixed port {port}, but a {policy} process needs a multi-port range"),
                format!(
                    "Give \"{id}\" a range such as {range}, or {zero} for an ephemeral port: during a deploy the new release starts while the old one still holds its port."
                ),
            );
        }
        if let Some(range) = process.port
            && proxy_port != 0
            && range.from != 0
            && (range.from..=range.to).contains(&proxy_port)
        {
            let (from, to) = clear_of(range.from, range.to, proxy_port);
            let example = v.example("port", json!({"from": from, "to": to}));
            v.issue(
                format!("Process \"{id}\" has the port range {}-{}, which contains proxy.port {proxy_port}", range.from, range.to),
                format!("The proxy listens on {proxy_port}, so that port of the range can never go to a process (and a range of only that port can never start one). Move the range clear of it, e.g. {example}, or change proxy.port."),
            );
        }
    }

    let proxied = processes
        .iter()
        .filter(|checked| checked.config.policy == Policy::Proxied)
        .count();
    if proxied != 1 {
        v.issue(
            format!("Config must define exactly one proxied process; found {proxied}"),
            "Set policy to proxied on exactly one process: the one that receives the proxy's traffic.",
        );
    }
    for checked in processes
        .iter()
        .filter(|checked| checked.config.policy == Policy::Proxied && !checked.port_rejected)
    {
        let process = &checked.config;
        if process.port.is_none() {
            let id = if process.id.is_empty() {
                "(unnamed)"
            } else {
                &process.id
            };
            v.issue(
                format!("Proxied process {id} must define a port range"),
                format!(
                    "Add a port range to the proxied process \"{id}\", e.g. {}, so each release can listen on a port of its own.",
                    v.example("port", json!({"from": 18000, "to": 18099}))
                ),
            );
        }
    }
}
