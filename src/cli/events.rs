//! `rollbridge events`: the daemon's recent event history.

use super::common::{QUERY_TIMEOUT, load_config, option_error, print_json, send};
use super::{CliResult, ConfigArg};
use crate::control::protocol::Request;
use clap::Args;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only the last N events (a positive integer).
    #[arg(long = "limit", value_name = "n", allow_hyphen_values = true)]
    pub limit: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub follow: super::follow::FollowArgs,
}

pub fn run(args: EventsArgs) -> CliResult {
    let limit = match args.limit.as_deref().map(parse_limit) {
        None => None,
        Some(Some(limit)) => Some(limit),
        Some(None) => return option_error("--limit must be a positive integer."),
    };
    let config = load_config(&args.config)?;
    if args.follow.follow {
        return super::events_follow::run(&config, &args, limit);
    }
    let request = Request::Events {
        limit: limit.map(|limit| limit as f64),
    };
    let reply = send(&config, &request, Some(QUERY_TIMEOUT))?;
    let events = match reply.get("events") {
        Some(Value::Array(events)) => events.clone(),
        _ => {
            anyhow::bail!(
                "the daemon's events reply has no \"events\" list; is it a Rollbridge daemon?"
            )
        }
    };
    if args.json {
        print_json(&Value::Array(events));
    } else {
        println!("{}", format_events(&events));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--limit` must be a whole number of at least 1 (digits only).
fn parse_limit(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().filter(|&limit| limit >= 1)
}

/// The text form: one line per event, `<at>  <message>` plus ` <compact data>` when
/// the event has data.
pub fn format_events(events: &[Value]) -> String {
    if events.is_empty() {
        return "No events recorded yet.".to_string();
    }
    events
        .iter()
        .map(|event| {
            let at = event.get("at").and_then(Value::as_str).unwrap_or("");
            let message = event.get("message").and_then(Value::as_str).unwrap_or("");
            match event.get("data") {
                Some(Value::Object(data)) if !data.is_empty() => {
                    format!("{at}  {message} {}", Value::Object(data.clone()))
                }
                _ => format!("{at}  {message}"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limit_must_be_a_positive_whole_number() {
        assert_eq!(parse_limit("3"), Some(3));
        for bad in ["0", "-1", "1.5", "abc", "", " 2", "+2"] {
            assert_eq!(parse_limit(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn text_form_has_two_spaces_then_compact_data() {
        let events = vec![
            json!({"at": "2026-05-23T14:31:09.512Z", "data": {"previousReleaseId": null, "releaseId": "v1"}, "message": "traffic switched"}),
            json!({"at": "2026-05-23T14:31:10.000Z", "data": {}, "message": "quiet"}),
        ];
        assert_eq!(
            format_events(&events),
            "2026-05-23T14:31:09.512Z  traffic switched {\"previousReleaseId\":null,\"releaseId\":\"v1\"}\n2026-05-23T14:31:10.000Z  quiet"
        );
        assert_eq!(format_events(&[]), "No events recorded yet.");
    }
}
