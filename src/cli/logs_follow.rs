//! `rollbridge logs --follow`: the recent lines of each process, then new
//! output as the daemon captures it (every release, so it goes on across deploys).

use super::CliResult;
use super::common::{QUERY_TIMEOUT, send};
use super::follow::{
    FollowStream, after_end, exit_cleanly_on_interrupt, print_streamed, wait_for_daemon,
};
use super::human::{Mode, Paint, mode_for};
use super::logs::{LogsArgs, log_sources};
use crate::config::LoadedConfig;
use crate::control::protocol::Request;
use crate::control::status::Status;
use serde_json::{Map, Value};
use std::collections::HashSet;

pub fn run(config: &LoadedConfig, args: &LogsArgs) -> CliResult {
    exit_cleanly_on_interrupt();
    let mode = mode_for(args.json, &args.follow.color);
    let socket = config.socket_path();
    let mut request = Map::new();
    request.insert("command".into(), Value::from("logs"));
    request.insert("follow".into(), Value::Bool(true));
    if let Some(id) = &args.process {
        request.insert("processId".into(), Value::from(id.as_str()));
    }
    let request = Value::Object(request);
    let mut first_connection = true;
    loop {
        // Follow first, then read the recent lines: a line captured in between
        // is in both and printed once.
        let mut stream = match FollowStream::open(socket, &request) {
            Ok(stream) => stream,
            Err(error) if args.follow.retry && !first_connection && error.is_no_daemon() => {
                wait_for_daemon(socket, "The daemon is not running");
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let mut printed = HashSet::new();
        if first_connection {
            let status = send(config, &Request::Status, Some(QUERY_TIMEOUT))?;
            for line in recent_lines(&Status::from_reply(&status), args.process.as_deref()) {
                if args
                    .release
                    .as_ref()
                    .is_some_and(|release| line["releaseId"] != release.as_str())
                {
                    continue;
                }
                printed.insert(line.to_string());
                print_line(&line, mode);
            }
        }
        first_connection = false;
        let end = loop {
            match stream.next_line() {
                Ok(line) => {
                    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    let object = Value::Object(object);
                    let other_release = args
                        .release
                        .as_ref()
                        .is_some_and(|release| object["releaseId"] != release.as_str());
                    if !printed.remove(&object.to_string()) && !other_release {
                        print_line(&object, mode);
                    }
                }
                Err(end) => break end,
            }
        };
        if let Some(code) = after_end(end, args.follow.retry, socket, "output")? {
            return Ok(code);
        }
    }
}

/// The captured lines of a status reply in the follow stream's line shape,
/// `{"at","id","line","releaseId","stream"}` (services and singletons have an
/// empty `releaseId`).
fn recent_lines(status: &Status, process: Option<&str>) -> Vec<Value> {
    log_sources(status)
        .into_iter()
        .filter(|source| process.is_none_or(|id| source.id == id))
        .flat_map(|source| {
            let release = source.release_id.clone().unwrap_or_default();
            source.logs.into_iter().map(move |entry| {
                let mut line = Map::new();
                line.insert("at".into(), Value::from(entry.at));
                line.insert("id".into(), Value::from(source.id.as_str()));
                line.insert("line".into(), Value::from(entry.line));
                line.insert("releaseId".into(), Value::from(release.as_str()));
                line.insert("stream".into(), Value::from(entry.stream));
                Value::Object(line)
            })
        })
        .collect()
}

fn print_line(line: &Value, mode: Mode) {
    print_streamed(&line.to_string(), mode, |paint| human_line(line, paint));
}

/// `<at> <id>@<release> [stderr] <line>`: stderr marked in red.
fn human_line(line: &Value, paint: Paint) -> String {
    let field = |key: &str| line.get(key).and_then(Value::as_str).unwrap_or("");
    let source = match field("releaseId") {
        "" => field("id").to_string(),
        release => format!("{}@{release}", field("id")),
    };
    let stream = match field("stream") {
        "stderr" => paint.red("[stderr]"),
        other => paint.dim(&format!("[{other}]")),
    };
    format!(
        "{} {} {stream} {}",
        paint.dim(field("at")),
        paint.bold(&source),
        field("line")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recent_lines_have_the_stream_shape_and_human_lines_name_the_release() {
        let status = json!({"releases": [{"releaseId": "v1", "state": "active", "processes": [
            {"id": "web", "logs": [{"at": "T", "line": "hi", "stream": "stderr"}]}]}]});
        let lines = recent_lines(&Status::from_reply(status.as_object().unwrap()), None);
        assert_eq!(
            lines,
            vec![
                json!({"at": "T", "id": "web", "line": "hi", "releaseId": "v1", "stream": "stderr"})
            ]
        );
        assert_eq!(human_line(&lines[0], Paint::NONE), "T web@v1 [stderr] hi");
        assert!(
            recent_lines(
                &Status::from_reply(status.as_object().unwrap()),
                Some("worker")
            )
            .is_empty()
        );
    }
}
