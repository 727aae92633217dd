//! Follow streams: `{"command":"events","follow":true}` and
//! `{"command":"logs","follow":true}` are answered with a first line
//! (`{"status":"success","follow":…}`) and then one line per event or output
//! line until the client closes (docs/protocol.md, "Follow streams").
//!
//! What a stream may hold back is bounded twice: at most [`FOLLOW_BUFFER`]
//! entries wait in its queue (emitting never waits for it), and the server
//! hands the socket one line at a time. A client that reads too slowly lets the
//! queue fill; the stream then ends with an error line, so the daemon never
//! buffers without bound and never slows down for a follower.

use super::protocol::RequestError;
use crate::events::{EventRecord, EventSink, OutputLine, OutputSubscription, Subscription};
use serde_json::{Map, Value};
use std::collections::{HashSet, VecDeque};

/// How many events or output lines may wait for one slow follower before it is
/// dropped.
pub const FOLLOW_BUFFER: usize = 1024;

/// What a follow request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowRequest {
    /// Events; with `since`, first the stored events numbered above it.
    Events {
        since: Option<u64>,
        /// The epoch `since` counts in; another epoch (a restarted daemon)
        /// replays the whole stored history.
        epoch: Option<String>,
    },
    /// Output lines of every managed process, or of the one instance `process_id`.
    Logs { process_id: Option<String> },
}

impl FollowRequest {
    /// `{"command":"events","follow":true[,"since":N][,"epoch":E]}`.
    pub fn events(object: &Map<String, Value>) -> Result<FollowRequest, RequestError> {
        Ok(FollowRequest::Events {
            since: object.get("since").and_then(Value::as_u64),
            epoch: optional_string(object, "epoch")?,
        })
    }

    /// `{"command":"logs","follow":true[,"processId":ID]}`.
    pub fn logs(object: &Map<String, Value>) -> Result<FollowRequest, RequestError> {
        if object.get("follow") != Some(&Value::Bool(true)) {
            return Err(RequestError::Required("follow"));
        }
        Ok(FollowRequest::Logs {
            process_id: optional_string(object, "processId")?.filter(|id| !id.is_empty()),
        })
    }

    pub fn command(&self) -> &'static str {
        match self {
            FollowRequest::Events { .. } => "events",
            FollowRequest::Logs { .. } => "logs",
        }
    }

    /// Adds the request's fields after `command`.
    pub fn put_fields(&self, map: &mut Map<String, Value>) {
        map.insert("follow".into(), Value::Bool(true));
        match self {
            FollowRequest::Events { since, epoch } => {
                if let Some(since) = since {
                    map.insert("since".into(), Value::from(*since));
                }
                if let Some(epoch) = epoch {
                    map.insert("epoch".into(), Value::from(epoch.as_str()));
                }
            }
            FollowRequest::Logs { process_id } => {
                if let Some(id) = process_id {
                    map.insert("processId".into(), Value::from(id.as_str()));
                }
            }
        }
    }

    /// Starts following on `sink`: the subscription exists before this returns,
    /// so nothing emitted afterwards is missed.
    pub fn open(&self, sink: &EventSink) -> FollowSource {
        match self {
            FollowRequest::Events { since, epoch } => {
                let subscription = sink.subscribe(FOLLOW_BUFFER);
                let same_epoch = epoch.as_deref().is_none_or(|epoch| epoch == sink.epoch());
                let backlog: VecDeque<EventRecord> = match since {
                    Some(since) if same_epoch => sink.recent_after(*since),
                    Some(_) => sink.recent(None),
                    None => Vec::new(),
                }
                .into();
                let replayed = backlog.iter().map(|event| event.seq).collect();
                let first = ack("events", sink.epoch(), sink.last_seq());
                FollowSource::Events {
                    first: Some(first),
                    backlog,
                    replayed,
                    subscription,
                    last_seq: since.unwrap_or(0),
                }
            }
            FollowRequest::Logs { process_id } => FollowSource::Logs {
                first: Some(ack("logs", sink.epoch(), sink.last_seq())),
                process_id: process_id.clone(),
                subscription: sink.subscribe_output(FOLLOW_BUFFER),
            },
        }
    }
}

/// The first line of a stream: `{"status":"success","follow":"events","epoch":…,"seq":N}`
/// (`seq`: the latest event's number when the stream started).
fn ack(kind: &str, epoch: &str, seq: u64) -> String {
    let mut map = Map::new();
    map.insert("status".into(), Value::from("success"));
    map.insert("follow".into(), Value::from(kind));
    map.insert("epoch".into(), Value::from(epoch));
    map.insert("seq".into(), Value::from(seq));
    Value::Object(map).to_string()
}

/// The next thing a stream writes.
#[derive(Debug, PartialEq)]
pub enum FollowItem {
    /// One line (without its LF); more follow.
    Line(String),
    /// The last line: the stream ends with this error text.
    End(String),
}

/// A follow stream's producer; the server writes what [`FollowSource::next`] gives.
pub enum FollowSource {
    Events {
        first: Option<String>,
        backlog: VecDeque<EventRecord>,
        /// The numbers replayed from the history, so the same event arriving
        /// live is not sent twice.
        replayed: HashSet<u64>,
        subscription: Subscription,
        last_seq: u64,
    },
    Logs {
        first: Option<String>,
        process_id: Option<String>,
        subscription: OutputSubscription,
    },
}

impl FollowSource {
    /// The next line to write; waits for the next event or output line.
    pub async fn next(&mut self) -> FollowItem {
        match self {
            FollowSource::Events {
                first,
                backlog,
                replayed,
                subscription,
                last_seq,
            } => {
                if let Some(first) = first.take() {
                    return FollowItem::Line(first);
                }
                if let Some(event) = backlog.pop_front() {
                    *last_seq = event.seq;
                    return FollowItem::Line(event_line(&event));
                }
                loop {
                    if subscription.missed() > 0 {
                        return FollowItem::End(too_slow("events", Some(*last_seq)));
                    }
                    let Some((_, event)) = subscription.recv().await else {
                        return FollowItem::End(GONE.into());
                    };
                    if replayed.remove(&event.seq) {
                        continue;
                    }
                    *last_seq = event.seq;
                    return FollowItem::Line(event_line(&event));
                }
            }
            FollowSource::Logs {
                first,
                process_id,
                subscription,
            } => {
                if let Some(first) = first.take() {
                    return FollowItem::Line(first);
                }
                loop {
                    if subscription.missed() > 0 {
                        return FollowItem::End(too_slow("output lines", None));
                    }
                    let Some(line) = subscription.recv().await else {
                        return FollowItem::End(GONE.into());
                    };
                    if process_id.as_ref().is_none_or(|id| *id == line.id) {
                        return FollowItem::Line(output_line(&line));
                    }
                }
            }
        }
    }
}

const GONE: &str = "The daemon is stopping; this follow stream ends.";

fn too_slow(what: &str, last_seq: Option<u64>) -> String {
    let resume = match last_seq {
        Some(seq) => {
            format!(" Reconnect with \"since\":{seq} to continue after the last event sent.")
        }
        None => String::new(),
    };
    format!(
        "This follow stream was dropped because its client read too slowly: more than {FOLLOW_BUFFER} {what} waited to be written.{resume}"
    )
}

/// An event as a follow line: the event line with its number appended,
/// `{"at":…,"data":…,"message":…,"seq":N}`.
pub fn event_line(event: &EventRecord) -> String {
    let mut map = match serde_json::to_value(event) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    map.insert("seq".into(), Value::from(event.seq));
    Value::Object(map).to_string()
}

/// An output line as a follow line:
/// `{"at":…,"id":…,"line":…,"releaseId":…,"stream":…}`.
pub fn output_line(line: &OutputLine) -> String {
    let mut map = Map::new();
    map.insert("at".into(), Value::from(line.at.as_str()));
    map.insert("id".into(), Value::from(line.id.as_str()));
    map.insert("line".into(), Value::from(line.line.as_str()));
    map.insert("releaseId".into(), Value::from(line.release_id.as_str()));
    map.insert("stream".into(), Value::from(line.stream));
    Value::Object(map).to_string()
}

fn optional_string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, RequestError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(RequestError::ExpectedString),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::Request;
    use crate::events::Event;

    fn stopped(id: &str) -> Event {
        Event::ReleaseStopped {
            release_id: id.into(),
        }
    }

    #[test]
    fn follow_requests_parse_and_round_trip() {
        let request =
            Request::parse_line(r#"{"command":"events","follow":true,"since":3,"epoch":"e"}"#)
                .unwrap();
        assert_eq!(
            request,
            Request::Follow(FollowRequest::Events {
                since: Some(3),
                epoch: Some("e".into())
            })
        );
        assert_eq!(
            request.to_line(),
            "{\"command\":\"events\",\"follow\":true,\"since\":3,\"epoch\":\"e\"}\n"
        );
        let logs =
            Request::parse_line(r#"{"command":"logs","follow":true,"processId":"web"}"#).unwrap();
        assert_eq!(Request::parse_line(&logs.to_line()).unwrap(), logs);
        assert_eq!(
            Request::parse_line(r#"{"command":"logs"}"#)
                .unwrap_err()
                .to_string(),
            "follow is required"
        );
        // `follow` other than true is today's one-shot request.
        assert_eq!(
            Request::parse_line(r#"{"command":"events","follow":1}"#).unwrap(),
            Request::Events { limit: None }
        );
    }

    #[tokio::test]
    async fn events_since_replays_the_history_then_live_events_once_each() {
        let sink = EventSink::silent();
        for id in ["a", "b", "c"] {
            sink.emit(stopped(id));
        }
        let mut source = FollowRequest::Events {
            since: Some(1),
            epoch: Some(sink.epoch().to_string()),
        }
        .open(&sink);
        sink.emit(stopped("d"));
        let FollowItem::Line(first) = source.next().await else {
            panic!("no ack")
        };
        let first: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(first["status"], "success");
        assert_eq!(first["follow"], "events");
        let mut seen = Vec::new();
        for _ in 0..3 {
            let FollowItem::Line(line) = source.next().await else {
                panic!("ended")
            };
            let event: Value = serde_json::from_str(&line).unwrap();
            seen.push((event["data"]["releaseId"].clone(), event["seq"].clone()));
        }
        assert_eq!(
            seen,
            vec![
                (Value::from("b"), Value::from(2)),
                (Value::from("c"), Value::from(3)),
                (Value::from("d"), Value::from(4))
            ]
        );
    }

    #[tokio::test]
    async fn another_epoch_replays_everything_and_overflow_ends_the_stream() {
        let sink = EventSink::silent();
        sink.emit(stopped("a"));
        let mut source = FollowRequest::Events {
            since: Some(99),
            epoch: Some("an-older-daemon".into()),
        }
        .open(&sink);
        assert!(matches!(source.next().await, FollowItem::Line(_)));
        let FollowItem::Line(line) = source.next().await else {
            panic!("ended")
        };
        assert!(line.contains("\"releaseId\":\"a\""), "{line}");
        for _ in 0..=FOLLOW_BUFFER {
            sink.emit(stopped("flood"));
        }
        let FollowItem::End(error) = source.next().await else {
            panic!("not dropped")
        };
        assert!(error.contains("read too slowly"), "{error}");
        assert!(error.contains("\"since\":1"), "{error}");
    }

    #[test]
    fn event_lines_are_the_event_line_plus_seq() {
        let sink = EventSink::silent();
        sink.emit(stopped("v1"));
        let event = sink.recent(None).remove(0);
        let plain = serde_json::to_string(&event).unwrap();
        let followed = event_line(&event);
        assert_eq!(
            followed,
            format!("{},\"seq\":1}}", plain.trim_end_matches('}'))
        );
    }
}
