//! The event history: a ring of the most recent events, each also written as one
//! JSON line (`{"at":…,"data":…,"message":…}`) to the daemon's log output.
//!
//! Every part of the daemon reports through an [`EventSink`]; cloning it is cheap.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// How many events the in-memory ring keeps.
pub const EVENT_RING_CAPACITY: usize = 1000;

/// One recorded event. Field order is the wire order: `at`, `data`, `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: String,
    pub data: Map<String, Value>,
    pub message: String,
}

/// Where event lines go besides the ring.
pub type LineWriter = Box<dyn Fn(&str) + Send + Sync>;

struct Inner {
    ring: Mutex<VecDeque<Event>>,
    capacity: usize,
    writer: Option<LineWriter>,
}

/// A cheap, cloneable handle for recording events.
#[derive(Clone)]
pub struct EventSink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").finish_non_exhaustive()
    }
}

impl EventSink {
    /// A sink that writes each event line to stdout.
    pub fn stdout() -> EventSink {
        EventSink::with_writer(
            EVENT_RING_CAPACITY,
            Some(Box::new(|line: &str| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            })),
        )
    }

    /// A sink that only keeps the ring (tests, CLI-side tools).
    pub fn silent() -> EventSink {
        EventSink::with_writer(EVENT_RING_CAPACITY, None)
    }

    pub fn with_writer(capacity: usize, writer: Option<LineWriter>) -> EventSink {
        EventSink {
            inner: Arc::new(Inner {
                ring: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
                capacity,
                writer,
            }),
        }
    }

    /// Records an event now.
    pub fn emit(&self, message: impl Into<String>, data: Map<String, Value>) {
        let event = Event {
            at: crate::util::time::iso_now(),
            data,
            message: message.into(),
        };
        if let Some(writer) = &self.inner.writer {
            if let Ok(line) = serde_json::to_string(&event) {
                writer(&line);
            }
        }
        let mut ring = self.inner.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == self.inner.capacity {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// Records an event whose data starts with the process prefix
    /// (`processId`, `releaseId`), followed by `rest` in order.
    pub fn emit_process(
        &self,
        message: impl Into<String>,
        process_id: &str,
        release_id: &str,
        rest: Map<String, Value>,
    ) {
        let mut data = Map::new();
        data.insert("processId".into(), Value::from(process_id));
        data.insert("releaseId".into(), Value::from(release_id));
        data.extend(rest);
        self.emit(message, data);
    }

    /// The most recent events, oldest first. `limit` follows the protocol: only a
    /// finite number greater than 0 and smaller than the stored count slices; a
    /// fractional limit is truncated at the slice start (2.5 gives 3 events).
    pub fn recent(&self, limit: Option<f64>) -> Vec<Event> {
        let ring = self.inner.ring.lock().unwrap_or_else(|e| e.into_inner());
        let len = ring.len();
        let start = match limit {
            Some(limit) if limit.is_finite() && limit > 0.0 && limit < len as f64 => {
                (len as f64 - limit).floor().max(0.0) as usize
            }
            _ => 0,
        };
        ring.iter().skip(start).cloned().collect()
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
    fn ring_drops_oldest_and_slices_recent() {
        let sink = EventSink::with_writer(3, None);
        for i in 0..5 {
            sink.emit("e", data! { "i" => i });
        }
        let all: Vec<i64> = sink
            .recent(None)
            .iter()
            .map(|e| e.data["i"].as_i64().unwrap())
            .collect();
        assert_eq!(all, vec![2, 3, 4]);
        let last2: Vec<i64> = sink
            .recent(Some(2.0))
            .iter()
            .map(|e| e.data["i"].as_i64().unwrap())
            .collect();
        assert_eq!(last2, vec![3, 4]);
        assert_eq!(sink.recent(Some(0.0)).len(), 3);
        assert_eq!(sink.recent(Some(99.0)).len(), 3);
        assert_eq!(sink.recent(Some(1.5)).len(), 2);
    }

    #[test]
    fn serializes_in_wire_order() {
        let event = Event {
            at: "2026-05-23T14:31:09.512Z".into(),
            data: data! { "previousReleaseId" => "v3", "releaseId" => "v4" },
            message: "traffic switched".into(),
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"at":"2026-05-23T14:31:09.512Z","data":{"previousReleaseId":"v3","releaseId":"v4"},"message":"traffic switched"}"#
        );
    }
}
