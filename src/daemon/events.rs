//! The event history: a ring of the most recent events, each also written as one
//! JSON line (`{"at":…,"data":…,"message":…}`) to the daemon's log output.
//!
//! Every part of the daemon reports through an [`EventSink`]; cloning it is cheap.
//! An event travels as a `tracing` event (target `rollbridge::event`, level `info`);
//! the event layer in `crate::observability` turns it into the line and the ring
//! entry, so the log and `rollbridge events` cannot disagree.

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

/// The in-memory history: the most recent events, oldest first.
///
/// It is filled by the event layer (`observability::events_layer`) while it writes
/// the event's log line, under the same lock, so the ring and the log always hold
/// the same events in the same order.
#[derive(Debug)]
pub struct EventRing {
    events: Mutex<VecDeque<Event>>,
    capacity: usize,
}

impl EventRing {
    pub fn new(capacity: usize) -> Arc<EventRing> {
        Arc::new(EventRing {
            events: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
        })
    }

    /// Runs `write_line` and then stores `event`, both under the ring's lock.
    pub fn record(&self, event: Event, write_line: impl FnOnce(&Event)) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        write_line(&event);
        if self.capacity == 0 {
            return;
        }
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event);
    }

    fn recent(&self, limit: Option<f64>) -> Vec<Event> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let len = events.len();
        let start = match limit {
            Some(limit) if limit.is_finite() && limit > 0.0 && limit < len as f64 => {
                (len as f64 - limit).floor().max(0.0) as usize
            }
            _ => 0,
        };
        events.iter().skip(start).cloned().collect()
    }
}

struct Inner {
    ring: Arc<EventRing>,
    /// The tracing dispatcher every event of this sink goes through; its event
    /// layer writes the line and fills `ring`.
    dispatch: tracing::Dispatch,
    /// Called with each event as it is emitted (see [`EventSink::listen`]).
    listeners: Mutex<Vec<(u64, Listener)>>,
    next_listener: std::sync::atomic::AtomicU64,
}

/// Sees each event (`message`, `data`) as it is emitted. It runs on the emitting
/// task, so it must only note what it needs and return (no blocking, no emit).
pub type Listener = Arc<dyn Fn(&str, &Map<String, Value>) + Send + Sync>;

/// Keeps a listener registered; dropping it unregisters the listener.
pub struct ListenerGuard {
    sink: std::sync::Weak<Inner>,
    id: u64,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.sink.upgrade() {
            let mut listeners = inner.listeners.lock().unwrap_or_else(|e| e.into_inner());
            listeners.retain(|(id, _)| *id != self.id);
        }
    }
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

    /// A sink whose lines go to `writer` (none when `None`).
    pub fn with_writer(capacity: usize, writer: Option<LineWriter>) -> EventSink {
        let ring = EventRing::new(capacity);
        let layer = crate::observability::EventLayer::new(
            ring.clone(),
            crate::observability::LineOutput::from_callback(writer),
        );
        EventSink::from_parts(ring, crate::observability::event_dispatch(layer))
    }

    /// A sink over a ring and the dispatcher whose event layer fills it (see
    /// `observability::Logging`, which builds the daemon's).
    pub fn from_parts(ring: Arc<EventRing>, dispatch: tracing::Dispatch) -> EventSink {
        EventSink {
            inner: Arc::new(Inner {
                ring,
                dispatch,
                listeners: Mutex::new(Vec::new()),
                next_listener: std::sync::atomic::AtomicU64::new(1),
            }),
        }
    }

    /// Calls `listener` with every event emitted from now on, until the guard is
    /// dropped. This is how the daemon learns that processes started or exited
    /// without the supervisor knowing about the daemon.
    pub fn listen(&self, listener: Listener) -> ListenerGuard {
        let id = self
            .inner
            .next_listener
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, listener));
        ListenerGuard {
            sink: Arc::downgrade(&self.inner),
            id,
        }
    }

    fn notify_listeners(&self, message: &str, data: &Map<String, Value>) {
        let listeners: Vec<Listener> = {
            let listeners = self
                .inner
                .listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if listeners.is_empty() {
                return;
            }
            listeners.iter().map(|(_, l)| l.clone()).collect()
        };
        for listener in listeners {
            listener(message, data);
        }
    }

    /// Records an event now: one `info` event with the target
    /// [`crate::observability::EVENT_TARGET`] on this sink's dispatcher.
    pub fn emit(&self, message: impl Into<String>, data: Map<String, Value>) {
        let event = Event {
            at: crate::util::time::iso_now(),
            data,
            message: message.into(),
        };
        self.notify_listeners(&event.message, &event.data);
        if let Some(unclaimed) = crate::observability::emit_event(&self.inner.dispatch, event) {
            // No event layer took it (a dispatcher built without one): the history
            // must still be complete.
            self.inner.ring.record(unclaimed, |_| {});
        }
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
        self.inner.ring.recent(limit)
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
    fn listeners_see_events_until_their_guard_drops() {
        let sink = EventSink::silent();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let guard = sink.listen({
            let seen = seen.clone();
            Arc::new(move |message: &str, data: &Map<String, Value>| {
                seen.lock()
                    .unwrap()
                    .push((message.to_string(), data["i"].clone()));
            })
        });
        sink.emit("a", data! { "i" => 1 });
        drop(guard);
        sink.emit("b", data! { "i" => 2 });
        assert_eq!(
            *seen.lock().unwrap(),
            vec![("a".to_string(), Value::from(1))]
        );
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
