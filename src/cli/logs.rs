//! `rollbridge logs`: recent captured output of every managed process, built
//! from one `status` reply (the daemon has no separate logs command).

use super::common::{QUERY_TIMEOUT, load_config, print_json, send};
use super::{CliResult, ConfigArg};
use crate::control::protocol::Request;
use crate::control::status::Status;
use crate::control::status::{LogLineStatus, ProcessStatus};
use clap::Args;
use serde::Serialize;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only the process with exactly this instance id (e.g. `worker#0`).
    #[arg(long = "process", value_name = "id")]
    pub process: Option<String>,
    /// Only the processes of this release (also a failed deploy's release, kept
    /// until the next deploy).
    #[arg(long = "release", value_name = "id")]
    pub release: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub follow: super::follow::FollowArgs,
}

/// One process's captured output and where the process belongs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogSource {
    /// The instance id (`web`, `worker#0`).
    pub id: String,
    pub logs: Vec<LogLineStatus>,
    /// `release <id> (<state>)`, `service` or `singleton`.
    pub source: String,
    /// The release the process belongs to (none for services and singletons).
    #[serde(skip)]
    pub release_id: Option<String>,
}

pub fn run(args: LogsArgs) -> CliResult {
    let config = load_config(&args.config)?;
    if args.follow.follow {
        return super::logs_follow::run(&config, &args);
    }
    let status = send(&config, &Request::Status, Some(QUERY_TIMEOUT))?;
    let mut sources = log_sources(&Status::from_reply(&status));
    if let Some(release) = &args.release {
        sources.retain(|source| source.release_id.as_deref() == Some(release.as_str()));
        if sources.is_empty() {
            return super::common::option_error(&format!(
                "No release \"{release}\" in the daemon's status (a failed deploy's release is kept only until the next deploy)."
            ));
        }
    }
    if args.json {
        let selected: Vec<&LogSource> = sources
            .iter()
            .filter(|source| args.process.as_ref().is_none_or(|id| &source.id == id))
            .collect();
        print_json(&serde_json::to_value(selected)?);
    } else {
        println!("{}", format_log_sources(&sources, args.process.as_deref()));
    }
    Ok(ExitCode::SUCCESS)
}

/// Flattens a status object into log sources: every release's processes (in
/// release order), then services, then singletons.
pub fn log_sources(status: &Status) -> Vec<LogSource> {
    let mut sources = Vec::new();
    for release in &status.releases {
        let label = format!("release {} ({})", release.release_id, release.state);
        for process in &release.processes {
            sources.push(source_of(process, "", &label, Some(&release.release_id)));
        }
    }
    // The latest failed deploy's release (stopped), until the next deploy.
    if let Some(failed) = &status.failed_release {
        let label = format!("release {} (failed deploy)", failed.release_id);
        for process in &failed.processes {
            sources.push(source_of(process, "", &label, Some(&failed.release_id)));
        }
    }
    for (entries, label) in [
        (&status.services, "service"),
        (&status.singletons, "singleton"),
    ] {
        for entry in entries {
            if let Some(process) = &entry.process {
                sources.push(source_of(process, &entry.id, label, None));
            }
        }
    }
    sources
}

fn source_of(
    process: &ProcessStatus,
    fallback_id: &str,
    label: &str,
    release_id: Option<&str>,
) -> LogSource {
    let id = if process.id.is_empty() {
        fallback_id
    } else {
        &process.id
    };
    LogSource {
        id: id.to_string(),
        logs: process.logs.clone(),
        source: label.to_string(),
        release_id: release_id.map(str::to_string),
    }
}

/// The text form: a `== <id> [<source>] ==` section per source with its lines,
/// sections separated by a blank line.
pub fn format_log_sources(sources: &[LogSource], process: Option<&str>) -> String {
    if sources.is_empty() {
        return "No managed processes.".to_string();
    }
    let selected: Vec<&LogSource> = sources
        .iter()
        .filter(|source| process.is_none_or(|id| source.id == id))
        .collect();
    if selected.is_empty() {
        return format!("No process found with id \"{}\".", process.unwrap_or(""));
    }
    selected
        .iter()
        .map(|source| {
            let mut lines = vec![format!("== {} [{}] ==", source.id, source.source)];
            if source.logs.is_empty() {
                lines.push("  (no recent output)".to_string());
            }
            for entry in &source.logs {
                lines.push(format!("  {} [{}] {}", entry.at, entry.stream, entry.line));
            }
            lines.join("\n")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample_status() -> Status {
        let status = json!({
            "status": "success",
            "releases": [{"releaseId": "v1", "state": "active", "processes": [
                {"id": "web", "logs": [{"at": "2026-05-22T00:00:00.000Z", "line": "listening", "stream": "stdout"}]},
                {"id": "worker#0", "logs": []}
            ]}],
            "services": [{"id": "beacon", "process": {"id": "beacon", "logs": []}}],
            "singletons": []
        });
        Status::from_reply(status.as_object().unwrap())
    }

    #[test]
    fn renders_a_section_per_process() {
        let text = format_log_sources(&log_sources(&sample_status()), None);
        assert_eq!(
            text,
            "== web [release v1 (active)] ==\n  2026-05-22T00:00:00.000Z [stdout] listening\n\n\
             == worker#0 [release v1 (active)] ==\n  (no recent output)\n\n\
             == beacon [service] ==\n  (no recent output)"
        );
    }

    #[test]
    fn filters_by_exact_instance_id() {
        let sources = log_sources(&sample_status());
        assert_eq!(
            format_log_sources(&sources, Some("beacon")),
            "== beacon [service] ==\n  (no recent output)"
        );
        assert_eq!(
            format_log_sources(&sources, Some("worker")),
            "No process found with id \"worker\"."
        );
        assert_eq!(format_log_sources(&[], None), "No managed processes.");
    }
}
