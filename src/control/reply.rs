//! The success payloads of the control commands, as types. On the wire each is
//! merged after `"status":"success"` ([`super::protocol::success_reply`]); an
//! error is `{"error": <text>, "status": "error"}` whatever the command.
//!
//! | command | payload |
//! | --- | --- |
//! | `status`, `stop` | [`super::status::Status`] (stop: the status afterwards) |
//! | `events` | [`EventsReply`] |
//! | `deploy`, `rollback` | [`DeployReply`]; a canary deploy [`CanaryReply`] (both: [`DeployPayload`]) |
//! | `rollout` | [`RolloutReply`] |
//! | `pause`, `resume` | [`PauseReply`], [`ResumeReply`] |
//! | `maintenance` | [`MaintenanceReply`] |
//! | `restart` | [`RestartReply`] |
//! | `shutdown`, `retire-owner` | [`MessageReply`] |
//!
//! A new command's payload is one struct here (fields in wire order).

use crate::events::EventRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `deploy` and `rollback`: the release now serving and the one before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployReply {
    pub active_release_id: String,
    /// `null` when nothing served traffic before.
    pub previous_release_id: Option<String>,
}

/// `deploy --canary`: the release still serving most requests, the canary and
/// its share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryReply {
    /// The release serving the rest (always set: a canary needs an active release).
    pub active_release_id: Option<String>,
    pub canary_release_id: String,
    pub percent: u8,
}

/// The payload of `deploy`: a switch, or a canary opened beside the active release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeployPayload {
    Canary(CanaryReply),
    Switched(DeployReply),
}

/// `rollout set` (the canary's new share), `rollout abort` and `rollout promote`
/// (a switch, like `deploy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RolloutReply {
    Set(CanaryReply),
    Aborted(AbortReply),
    Promoted(DeployPayload),
}

/// `rollout abort`: the release still serving and the canary that was stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortReply {
    pub active_release_id: Option<String>,
    pub aborted_release_id: String,
}

/// `pause`: paused, and how long a request may be held before it gets 503.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseReply {
    pub paused: bool,
    pub max_ms: u64,
}

/// `resume`: no longer paused, and how many held requests were let through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeReply {
    pub paused: bool,
    pub held: u64,
}

/// `maintenance`: on or off, and the message answered while on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceReply {
    pub maintenance: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `restart`: the instance ids restarted, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartReply {
    pub restarted: Vec<String>,
}

/// `shutdown` (`"shutdown"`) and `retire-owner` (`"owner retired"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReply {
    pub message: String,
}

impl MessageReply {
    pub fn new(message: &str) -> MessageReply {
        MessageReply {
            message: message.to_string(),
        }
    }
}

/// `events`: the recent history, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsReply {
    pub events: Vec<EventRecord>,
}

/// A payload as the JSON object the server merges after the envelope key.
/// Every payload type is a struct, so anything else is a bug in its `Serialize`.
pub fn payload_object(payload: &impl Serialize) -> Result<Map<String, Value>, String> {
    match serde_json::to_value(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "internal error: a reply payload serialised to {other} instead of an object"
        )),
        Err(error) => Err(format!(
            "internal error: a reply payload did not serialise: {error}"
        )),
    }
}
