//! The recorded form of an event: what the ring keeps, `rollbridge events`
//! returns and the daemon's log prints as one line.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One recorded event. Field order is the wire order: `at`, `data`, `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub at: String,
    pub data: Map<String, Value>,
    pub message: String,
    /// The event's number in this daemon's history (1, 2, …; 0 for a record
    /// not emitted through a sink). Not part of the event line: only follow
    /// streams show it (`"seq"`, docs/protocol.md).
    #[serde(skip)]
    pub seq: u64,
}

impl EventRecord {
    /// `event` as recorded at `at` (an ISO time).
    pub fn new(at: String, event: &super::Event) -> EventRecord {
        let (message, data) = event.to_parts();
        EventRecord {
            at,
            data,
            message: message.into_owned(),
            seq: 0,
        }
    }
}

/// Builds an ordered JSON object: `data! { "releaseId" => id, "error" => msg }`.
#[macro_export]
macro_rules! data {
    () => { ::serde_json::Map::new() };
    ($($key:expr => $value:expr),+ $(,)?) => {{
        let mut map = ::serde_json::Map::new();
        $( map.insert(($key).to_string(), ::serde_json::json!($value)); )+
        map
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_wire_order() {
        let event = EventRecord {
            at: "2026-05-23T14:31:09.512Z".into(),
            data: data! { "previousReleaseId" => "v3", "releaseId" => "v4" },
            message: "traffic switched".into(),
            seq: 7,
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"at":"2026-05-23T14:31:09.512Z","data":{"previousReleaseId":"v3","releaseId":"v4"},"message":"traffic switched"}"#
        );
    }
}
