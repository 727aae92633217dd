//! `rollbridge events --follow`: the event stream, printed as it comes.

use super::CliResult;
use super::events::{EventsArgs, format_events};
use super::follow::{
    FollowStream, StreamEnd, after_end, exit_cleanly_on_interrupt, print_streamed, wait_for_daemon,
};
use super::human::{Mode, Paint, mode_for};
use crate::config::LoadedConfig;
use serde_json::{Map, Value};

/// Prints events until Ctrl-C (exit 0). `--limit N` first prints the last N
/// stored events. With `--retry` a stopped or restarted daemon is waited for
/// and the stream resumes after the last event printed.
pub fn run(config: &LoadedConfig, args: &EventsArgs, limit: Option<u64>) -> CliResult {
    exit_cleanly_on_interrupt();
    let mode = mode_for(args.json, &args.follow.color);
    let socket = config.socket_path();
    let mut resume: Option<(u64, String)> = None;
    let mut first_connection = true;
    loop {
        let mut request = Map::new();
        request.insert("command".into(), Value::from("events"));
        request.insert("follow".into(), Value::Bool(true));
        if let Some((seq, epoch)) = &resume {
            request.insert("since".into(), Value::from(*seq));
            request.insert("epoch".into(), Value::from(epoch.as_str()));
        } else if limit.is_some() {
            // The history first: everything stored, trimmed to the last N below.
            request.insert("since".into(), Value::from(0));
        }
        let mut stream = match FollowStream::open(socket, &Value::Object(request)) {
            Ok(stream) => stream,
            Err(error) if args.follow.retry && !first_connection && error.is_no_daemon() => {
                wait_for_daemon(socket, "The daemon is not running");
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        first_connection = false;
        let mut backlog: Vec<String> = Vec::new();
        let mut in_backlog = resume.is_none() && limit.is_some() && stream.start_seq > 0;
        let print_backlog = |backlog: &mut Vec<String>| {
            let skip = backlog.len().saturating_sub(limit.unwrap_or(0) as usize);
            for line in backlog.drain(..).skip(skip) {
                print_event(&line, mode);
            }
        };
        if in_backlog {
            // Stored events arrive at once, up to the stream's start; a pause
            // also ends them (the latest one may not be stored yet).
            stream.set_wait(Some(std::time::Duration::from_millis(500)));
        }
        let end = loop {
            match stream.next_line() {
                Ok(line) => {
                    let seq = serde_json::from_str::<Value>(&line)
                        .ok()
                        .and_then(|event| event.get("seq").and_then(Value::as_u64));
                    if let Some(seq) = seq {
                        resume = Some((seq, stream.epoch.clone()));
                    }
                    if !in_backlog {
                        print_event(&line, mode);
                        continue;
                    }
                    backlog.push(line);
                    if seq.is_some_and(|seq| seq >= stream.start_seq) {
                        in_backlog = false;
                        stream.set_wait(None);
                        print_backlog(&mut backlog);
                    }
                }
                Err(StreamEnd::Closed) if in_backlog => {
                    in_backlog = false;
                    stream.set_wait(None);
                    print_backlog(&mut backlog);
                }
                Err(end) => break end,
            }
        };
        if resume.is_none() {
            resume = Some((0, stream.epoch.clone()));
        }
        if let Some(code) = after_end(end, args.follow.retry, socket, "event")? {
            return Ok(code);
        }
    }
}

fn print_event(line: &str, mode: Mode) {
    print_streamed(line, mode, |paint| human_event(line, paint));
}

/// An event line as `events` prints it on a terminal: `<at>  <message> <data>`,
/// the message in bold.
fn human_event(line: &str, paint: Paint) -> String {
    let Ok(Value::Object(mut event)) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    event.remove("seq");
    if let Some(Value::String(message)) = event.get_mut("message") {
        *message = paint.bold(message);
    }
    format_events(&[Value::Object(event)])
}
