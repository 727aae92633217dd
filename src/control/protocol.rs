//! The control protocol: one JSON object per line in each direction.
//!
//! Parsing follows the wire rules exactly (docs/daemon.md, "Control protocol"),
//! including the quirks
//! scripts can observe: arrays count as objects without a `command`, the unknown
//! command value is stringified the way JavaScript would, and field errors are
//! reported before any work starts. The same [`Request`] type builds the lines the
//! CLI sends, so both sides agree on names and shapes.

use serde_json::{Map, Value};

/// The largest request line the daemon accepts. Real requests are a few hundred
/// bytes; the cap keeps a misbehaving client from growing a buffer without bound.
pub const MAX_REQUEST_LINE_BYTES: usize = 1024 * 1024;

/// One control request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Status,
    Events {
        /// Only a JSON number is honoured; anything else means "all events".
        limit: Option<f64>,
    },
    Deploy {
        release_path: String,
        /// `None` when missing, `null` or empty.
        release_id: Option<String>,
        /// `None` when missing, `null` or empty.
        revision: Option<String>,
        /// `watchMs`: this deploy's post-switch watch instead of `rollout.watchMs`.
        watch_ms: Option<u64>,
        /// `canaryPercent` (1–99): start as a canary with this share of requests.
        canary_percent: Option<u8>,
    },
    /// `rollout set|promote|abort` of the open canary (docs/rollouts.md).
    Rollout {
        action: RolloutAction,
        /// `percent` for `set` (0–100).
        percent: Option<u8>,
    },
    /// Hold new requests in the proxy until `resume` or `maxMs` per request.
    Pause {
        max_ms: Option<u64>,
    },
    Resume,
    /// Answer every request with 503 (and `message`) while enabled.
    Maintenance {
        enabled: bool,
        message: Option<String>,
    },
    Rollback {
        release_id: Option<String>,
    },
    Stop {
        release_id: Option<String>,
    },
    Restart {
        /// Used literally: `""` matches nothing.
        process_id: Option<String>,
        /// Used literally: an unknown policy matches nothing.
        policy: Option<String>,
    },
    Shutdown,
    RetireOwner {
        attestation: String,
    },
    /// `events` or `logs` with `"follow": true`: a stream of lines until the
    /// client closes (see `follow.rs`).
    Follow(super::follow::FollowRequest),
    /// Re-execute the daemon in place from `binary` (default: its own
    /// executable's path), keeping processes, listeners and state.
    Upgrade {
        binary: Option<String>,
    },
}

/// A request that could not be turned into a [`Request`]. The Display text is the
/// exact `error` string of the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("Invalid JSON: {0}")]
    InvalidJson(String),
    #[error("Control command must be an object")]
    NotAnObject,
    #[error("Unknown command: {0}")]
    UnknownCommand(String),
    #[error("Expected string value")]
    ExpectedString,
    #[error("{0} is required")]
    Required(&'static str),
    /// A traffic-control field with a value out of its range; the text says which.
    #[error("{0}")]
    OutOfRange(&'static str),
    #[error(
        "Control request line is longer than {limit} bytes; send one JSON object per line (requests are small, so this is not a rollbridge client)"
    )]
    LineTooLong { limit: usize },
}

/// Every command name the daemon knows.
pub const COMMAND_NAMES: [&str; 14] = [
    "status",
    "events",
    "deploy",
    "rollback",
    "stop",
    "restart",
    "shutdown",
    "retire-owner",
    "logs",
    "rollout",
    "pause",
    "resume",
    "maintenance",
    "upgrade",
];

crate::util::names::wire_names! {
    /// What `rollout` does to the open canary.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum RolloutAction {
        Set = "set",
        Promote = "promote",
        Abort = "abort",
    }
}

impl Request {
    /// Parses one request line (without its LF).
    pub fn parse_line(line: &str) -> Result<Request, RequestError> {
        let value: Value = serde_json::from_str(line)
            .map_err(|error| RequestError::InvalidJson(error.to_string()))?;
        Request::from_value(&value)
    }

    /// Interprets an already-parsed JSON value.
    pub fn from_value(value: &Value) -> Result<Request, RequestError> {
        let empty = Map::new();
        let object = match value {
            Value::Object(map) => map,
            // Arrays are objects to the JavaScript reference; they have no `command`.
            Value::Array(_) => &empty,
            _ => return Err(RequestError::NotAnObject),
        };
        let command = object.get("command");
        let name = match command {
            Some(Value::String(name)) if COMMAND_NAMES.contains(&name.as_str()) => name.as_str(),
            other => return Err(RequestError::UnknownCommand(js_string(other))),
        };
        Ok(match name {
            "status" => Request::Status,
            "events" if object.get("follow") == Some(&Value::Bool(true)) => {
                Request::Follow(super::follow::FollowRequest::events(object)?)
            }
            "events" => Request::Events {
                limit: object.get("limit").and_then(Value::as_f64),
            },
            "logs" => Request::Follow(super::follow::FollowRequest::logs(object)?),
            "deploy" => {
                let release_path = required_string(object, "releasePath")?;
                let release_id = non_empty(optional_string(object, "releaseId")?);
                let revision = non_empty(optional_string(object, "revision")?);
                Request::Deploy {
                    release_path,
                    release_id,
                    revision,
                    watch_ms: whole_number(object, "watchMs", u64::MAX as f64, WATCH_MS_RANGE)?,
                    canary_percent: whole_number(object, "canaryPercent", 99.0, CANARY_RANGE)?
                        .map(|n| {
                            if n == 0 {
                                Err(RequestError::OutOfRange(CANARY_RANGE))
                            } else {
                                Ok(n as u8)
                            }
                        })
                        .transpose()?,
                }
            }
            "rollout" => {
                let action = optional_string(object, "action")?
                    .as_deref()
                    .and_then(RolloutAction::parse)
                    .ok_or(RequestError::OutOfRange(ROLLOUT_ACTION))?;
                let percent =
                    whole_number(object, "percent", 100.0, PERCENT_RANGE)?.map(|n| n as u8);
                if action == RolloutAction::Set && percent.is_none() {
                    return Err(RequestError::Required("percent"));
                }
                Request::Rollout { action, percent }
            }
            "pause" => Request::Pause {
                max_ms: whole_number(object, "maxMs", u64::MAX as f64, MAX_MS_RANGE)?,
            },
            "resume" => Request::Resume,
            "maintenance" => Request::Maintenance {
                enabled: match object.get("enabled") {
                    Some(Value::Bool(enabled)) => *enabled,
                    _ => return Err(RequestError::OutOfRange(ENABLED_BOOL)),
                },
                message: non_empty(optional_string(object, "message")?),
            },
            "rollback" => Request::Rollback {
                release_id: non_empty(optional_string(object, "releaseId")?),
            },
            "stop" => Request::Stop {
                release_id: non_empty(optional_string(object, "releaseId")?),
            },
            "restart" => {
                let process_id = optional_string(object, "processId")?;
                let policy = optional_string(object, "policy")?;
                Request::Restart { process_id, policy }
            }
            "shutdown" => Request::Shutdown,
            "retire-owner" => Request::RetireOwner {
                attestation: required_string(object, "attestation")?,
            },
            "upgrade" => Request::Upgrade {
                binary: non_empty(optional_string(object, "binary")?),
            },
            _ => unreachable!("every name in COMMAND_NAMES is handled"),
        })
    }

    /// The command name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Events { .. } => "events",
            Request::Deploy { .. } => "deploy",
            Request::Rollback { .. } => "rollback",
            Request::Stop { .. } => "stop",
            Request::Restart { .. } => "restart",
            Request::Shutdown => "shutdown",
            Request::RetireOwner { .. } => "retire-owner",
            Request::Follow(follow) => follow.command(),
            Request::Rollout { .. } => "rollout",
            Request::Pause { .. } => "pause",
            Request::Resume => "resume",
            Request::Maintenance { .. } => "maintenance",
            Request::Upgrade { .. } => "upgrade",
        }
    }

    /// The request as a JSON object. Options that were not given are left out, as
    /// the reference CLI does.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("command".into(), Value::from(self.name()));
        // Fields in the order the CLI has always sent them; absent options are left out.
        fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
            if let Some(value) = value {
                map.insert(key.into(), value);
            }
        }
        let text = |value: &Option<String>| value.as_deref().map(Value::from);
        match self {
            Request::Status | Request::Shutdown | Request::Resume => {}
            Request::Events { limit } => {
                let number = limit.map(|limit| {
                    if limit.fract() == 0.0 && limit.abs() < 9.0e15 {
                        Value::from(limit as i64)
                    } else {
                        serde_json::Number::from_f64(limit)
                            .map(Value::Number)
                            .unwrap_or(Value::Null)
                    }
                });
                put(&mut map, "limit", number);
            }
            Request::Deploy {
                release_path,
                release_id,
                revision,
                watch_ms,
                canary_percent,
            } => {
                put(
                    &mut map,
                    "releasePath",
                    Some(Value::from(release_path.as_str())),
                );
                put(&mut map, "releaseId", text(release_id));
                put(&mut map, "revision", text(revision));
                put(&mut map, "watchMs", watch_ms.map(Value::from));
                put(&mut map, "canaryPercent", canary_percent.map(Value::from));
            }
            Request::Rollout { action, percent } => {
                put(&mut map, "action", Some(Value::from(action.as_str())));
                put(&mut map, "percent", percent.map(Value::from));
            }
            Request::Pause { max_ms } => put(&mut map, "maxMs", max_ms.map(Value::from)),
            Request::Maintenance { enabled, message } => {
                put(&mut map, "enabled", Some(Value::from(*enabled)));
                put(&mut map, "message", text(message));
            }
            Request::Rollback { release_id } | Request::Stop { release_id } => {
                put(&mut map, "releaseId", text(release_id));
            }
            Request::Restart { process_id, policy } => {
                put(&mut map, "processId", text(process_id));
                put(&mut map, "policy", text(policy));
            }
            Request::RetireOwner { attestation } => {
                put(
                    &mut map,
                    "attestation",
                    Some(Value::from(attestation.as_str())),
                );
            }
            Request::Follow(follow) => follow.put_fields(&mut map),
            Request::Upgrade { binary } => put(&mut map, "binary", text(binary)),
        }
        Value::Object(map)
    }

    /// The request as one wire line, LF included.
    pub fn to_line(&self) -> String {
        let mut line = self.to_value().to_string();
        line.push('\n');
        line
    }

    /// Commands that change releases or processes (and `upgrade`, which replaces
    /// the daemon under them): the daemon runs them one at a time, each holding
    /// the operations lock for its whole run. `shutdown` and
    /// `retire-owner` also end under that lock, but they take it themselves after
    /// telling a running operation to give up, so they are not in this list.
    pub fn waits_for_operations(&self) -> bool {
        matches!(
            self,
            Request::Deploy { .. }
                | Request::Rollback { .. }
                | Request::Stop { .. }
                | Request::Restart { .. }
                | Request::Upgrade { .. }
        )
    }
}

/// `{"status":"success", ...payload}` with `status` first.
pub fn success_reply(payload: Map<String, Value>) -> Value {
    let mut map = Map::with_capacity(payload.len() + 1);
    map.insert("status".into(), Value::from("success"));
    for (key, value) in payload {
        if key != "status" {
            map.insert(key, value);
        }
    }
    Value::Object(map)
}

/// `{"error":message,"status":"error"}`.
pub fn error_reply(message: &str) -> Value {
    let mut map = Map::with_capacity(2);
    map.insert("error".into(), Value::from(message));
    map.insert("status".into(), Value::from("error"));
    Value::Object(map)
}

/// A reply as one wire line, LF included.
pub fn reply_line(reply: &Value) -> String {
    let mut line = reply.to_string();
    line.push('\n');
    line
}

/// The text used when the daemon reports an error without saying what it was.
pub const UNKNOWN_ERROR: &str = "Unknown Rollbridge error";

/// The envelope rule every client applies: a reply with `"status":"error"` is a
/// failure carrying its `error` text ([`UNKNOWN_ERROR`] when that is missing or
/// empty); any other reply is a success, returned whole by the caller.
pub fn reply_error(reply: &Map<String, Value>) -> Option<String> {
    if reply.get("status").and_then(Value::as_str) != Some("error") {
        return None;
    }
    Some(match reply.get("error").and_then(Value::as_str) {
        Some(message) if !message.is_empty() => message.to_string(),
        _ => UNKNOWN_ERROR.to_string(),
    })
}

fn optional_string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, RequestError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(RequestError::ExpectedString),
    }
}

fn required_string(object: &Map<String, Value>, key: &'static str) -> Result<String, RequestError> {
    match object.get(key) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        _ => Err(RequestError::Required(key)),
    }
}

const WATCH_MS_RANGE: &str = "watchMs must be a whole number of milliseconds, 0 or more";
const CANARY_RANGE: &str = "canaryPercent must be a whole number from 1 to 99";
const PERCENT_RANGE: &str = "percent must be a whole number from 0 to 100";
const MAX_MS_RANGE: &str = "maxMs must be a whole number of milliseconds, 0 or more";
const ROLLOUT_ACTION: &str = "action must be \"set\", \"promote\" or \"abort\"";
const ENABLED_BOOL: &str = "enabled must be true or false";

/// An optional whole number in `0..=max`; absent or `null` is `None`.
fn whole_number(
    object: &Map<String, Value>,
    key: &str,
    max: f64,
    range: &'static str,
) -> Result<Option<u64>, RequestError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => match number.as_f64() {
            Some(n) if n.fract() == 0.0 && (0.0..=max).contains(&n) => Ok(Some(n as u64)),
            _ => Err(RequestError::OutOfRange(range)),
        },
        Some(_) => Err(RequestError::OutOfRange(range)),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.is_empty())
}

/// Converts a JSON value to text the way JavaScript's `String(value)` does, so
/// `Unknown command: <value>` reads like the reference.
fn js_string(value: Option<&Value>) -> String {
    match value {
        None => "undefined".to_string(),
        Some(value) => js_value_string(value, false),
    }
}

fn js_value_string(value: &Value, inside_array: bool) -> String {
    match value {
        // Inside an array, null and undefined join as empty strings.
        Value::Null if inside_array => String::new(),
        Value::Null => "null".to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => js_number_string(number),
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| js_value_string(item, true))
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".to_string(),
    }
}

fn js_number_string(number: &serde_json::Number) -> String {
    if let Some(int) = number.as_i64() {
        return int.to_string();
    }
    if let Some(int) = number.as_u64() {
        return int.to_string();
    }
    let float = number.as_f64().unwrap_or(f64::NAN);
    if float == 0.0 {
        return "0".to_string();
    }
    let magnitude = float.abs();
    if (1e-7..1e21).contains(&magnitude) {
        // Rust's shortest round-trip form matches JavaScript in this range.
        return format!("{float}");
    }
    // JavaScript uses exponent form with an explicit sign: 1e+21, 1e-7.
    let text = format!("{float:e}");
    match text.split_once('e') {
        Some((mantissa, exponent)) if !exponent.starts_with('-') => {
            format!("{mantissa}e+{exponent}")
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(line: &str) -> Result<Request, String> {
        Request::parse_line(line).map_err(|error| error.to_string())
    }

    #[test]
    fn malformed_json_mentions_json() {
        let error = parse("this is not json").unwrap_err();
        assert!(error.starts_with("Invalid JSON: "), "{error}");
        assert!(parse("").unwrap_err().contains("JSON"));
        assert!(parse("\r").unwrap_err().contains("JSON"));
    }

    #[test]
    fn non_objects_are_rejected_but_arrays_are_unknown_commands() {
        for line in ["123", "null", "\"status\"", "true"] {
            assert_eq!(
                parse(line).unwrap_err(),
                "Control command must be an object"
            );
        }
        assert_eq!(parse("[1,2]").unwrap_err(), "Unknown command: undefined");
    }

    #[test]
    fn unknown_commands_are_stringified_like_javascript() {
        let cases = [
            (r#"{}"#, "undefined"),
            (r#"{"command":"bogus"}"#, "bogus"),
            (r#"{"command":5}"#, "5"),
            (r#"{"command":2.5}"#, "2.5"),
            (r#"{"command":1e21}"#, "1e+21"),
            (r#"{"command":null}"#, "null"),
            (r#"{"command":true}"#, "true"),
            (r#"{"command":{"a":1}}"#, "[object Object]"),
            (r#"{"command":[1,null,"x"]}"#, "1,,x"),
            (r#"{"command":""}"#, ""),
        ];
        for (line, shown) in cases {
            assert_eq!(
                parse(line).unwrap_err(),
                format!("Unknown command: {shown}"),
                "{line}"
            );
        }
    }

    #[test]
    fn deploy_fields_are_checked_in_order() {
        assert_eq!(
            parse(r#"{"command":"deploy"}"#).unwrap_err(),
            "releasePath is required"
        );
        assert_eq!(
            parse(r#"{"command":"deploy","releasePath":""}"#).unwrap_err(),
            "releasePath is required"
        );
        assert_eq!(
            parse(r#"{"command":"deploy","releasePath":7,"releaseId":7}"#).unwrap_err(),
            "releasePath is required"
        );
        assert_eq!(
            parse(r#"{"command":"deploy","releasePath":"/r","releaseId":7}"#).unwrap_err(),
            "Expected string value"
        );
        assert_eq!(
            parse(
                r#"{"command":"deploy","releasePath":"/r","releaseId":"","revision":null,"x":1}"#
            )
            .unwrap(),
            Request::Deploy {
                release_path: "/r".into(),
                release_id: None,
                revision: None,
                watch_ms: None,
                canary_percent: None,
            }
        );
    }

    #[test]
    fn restart_keeps_empty_strings_literally() {
        assert_eq!(
            parse(r#"{"command":"restart","processId":"","policy":""}"#).unwrap(),
            Request::Restart {
                process_id: Some(String::new()),
                policy: Some(String::new())
            }
        );
        assert_eq!(
            parse(r#"{"command":"restart","policy":3}"#).unwrap_err(),
            "Expected string value"
        );
    }

    #[test]
    fn events_limit_only_honours_numbers() {
        assert_eq!(
            parse(r#"{"command":"events","limit":"3"}"#).unwrap(),
            Request::Events { limit: None }
        );
        assert_eq!(
            parse(r#"{"command":"events","limit":2.5}"#).unwrap(),
            Request::Events { limit: Some(2.5) }
        );
    }

    #[test]
    fn retire_owner_requires_attestation() {
        assert_eq!(
            parse(r#"{"command":"retire-owner"}"#).unwrap_err(),
            "attestation is required"
        );
    }

    #[test]
    fn requests_round_trip_through_lines() {
        let requests = [
            Request::Status,
            Request::Events { limit: Some(3.0) },
            Request::Events { limit: None },
            Request::Deploy {
                release_path: "/srv/a".into(),
                release_id: Some("v1".into()),
                revision: None,
                watch_ms: None,
                canary_percent: None,
            },
            Request::Deploy {
                release_path: "/srv/b".into(),
                release_id: None,
                revision: None,
                watch_ms: Some(60000),
                canary_percent: Some(20),
            },
            Request::Rollout {
                action: RolloutAction::Set,
                percent: Some(40),
            },
            Request::Rollout {
                action: RolloutAction::Promote,
                percent: None,
            },
            Request::Pause { max_ms: Some(500) },
            Request::Pause { max_ms: None },
            Request::Resume,
            Request::Maintenance {
                enabled: true,
                message: Some("Back at 3".into()),
            },
            Request::Maintenance {
                enabled: false,
                message: None,
            },
            Request::Rollback { release_id: None },
            Request::Stop {
                release_id: Some("v2".into()),
            },
            Request::Restart {
                process_id: Some("worker#1".into()),
                policy: None,
            },
            Request::Shutdown,
            Request::RetireOwner {
                attestation: "sha256:00".into(),
            },
        ];
        for request in requests {
            let line = request.to_line();
            assert!(line.ends_with('\n'));
            assert_eq!(Request::parse_line(line.trim_end()).unwrap(), request);
        }
        assert_eq!(
            Request::Deploy {
                release_path: "/a".into(),
                release_id: None,
                revision: Some("abc".into()),
                watch_ms: None,
                canary_percent: None,
            }
            .to_value(),
            json!({"command":"deploy","releasePath":"/a","revision":"abc"})
        );
    }

    #[test]
    fn envelopes_have_their_key_order() {
        let mut payload = Map::new();
        payload.insert("message".into(), json!("shutdown"));
        assert_eq!(
            success_reply(payload).to_string(),
            r#"{"status":"success","message":"shutdown"}"#
        );
        assert_eq!(
            error_reply("boom").to_string(),
            r#"{"error":"boom","status":"error"}"#
        );
        let error_text = |reply: Value| reply_error(reply.as_object().unwrap());
        assert_eq!(
            error_text(error_reply("")).unwrap(),
            "Unknown Rollbridge error"
        );
        assert_eq!(error_text(error_reply("x")).unwrap(), "x");
        assert_eq!(error_text(json!({"status": "success"})), None);
    }
}
