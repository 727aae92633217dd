//! The handle every part of the daemon reports events through.

use super::record::EventRecord;
use super::ring::{EVENT_RING_CAPACITY, EventRing};
use serde_json::{Map, Value};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Where event lines go besides the ring.
pub type LineWriter = Box<dyn Fn(&str) + Send + Sync>;

/// Writes an event's line and stores it in the ring. The daemon's recorder is
/// the tracing event layer in `observability` (so events and diagnostics share
/// one output); [`RingWriter`] is the plain one.
pub trait EventRecorder: Send + Sync {
    fn record(&self, event: EventRecord);
}

/// Records straight into a ring, handing each line to an optional writer
/// under the ring's lock.
pub struct RingWriter {
    ring: Arc<EventRing>,
    writer: Option<LineWriter>,
}

impl EventRecorder for RingWriter {
    fn record(&self, event: EventRecord) {
        let writer = &self.writer;
        self.ring.record(event, |event| {
            if let Some(write) = writer {
                if let Ok(line) = serde_json::to_string(event) {
                    write(&line);
                }
            }
        });
    }
}

/// Sees each event (`message`, `data`) as it is emitted. It runs on the emitting
/// task, so it must only note what it needs and return (no blocking, no emit).
pub type Listener = Arc<dyn Fn(&str, &Map<String, Value>) + Send + Sync>;

struct Inner {
    ring: Arc<EventRing>,
    recorder: Arc<dyn EventRecorder>,
    /// Called with each event as it is emitted (see [`EventSink::listen`]).
    listeners: Mutex<Vec<(u64, Listener)>>,
    next_listener: AtomicU64,
}

/// Keeps a listener registered; dropping it unregisters the listener.
pub struct ListenerGuard {
    sink: Weak<Inner>,
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
        let recorder = Arc::new(RingWriter {
            ring: ring.clone(),
            writer,
        });
        EventSink::with_recorder(ring, recorder)
    }

    /// A sink over `ring` and the recorder that fills it (see
    /// `observability::Logging`, which builds the daemon's).
    pub fn with_recorder(ring: Arc<EventRing>, recorder: Arc<dyn EventRecorder>) -> EventSink {
        EventSink {
            inner: Arc::new(Inner {
                ring,
                recorder,
                listeners: Mutex::new(Vec::new()),
                next_listener: AtomicU64::new(1),
            }),
        }
    }

    /// Calls `listener` with every event emitted from now on, until the guard is
    /// dropped. This is how the daemon learns that processes started or exited
    /// without the supervisor knowing about the daemon.
    pub fn listen(&self, listener: Listener) -> ListenerGuard {
        let id = self.inner.next_listener.fetch_add(1, Ordering::Relaxed);
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

    /// Records an event now.
    pub fn emit(&self, message: impl Into<String>, data: Map<String, Value>) {
        let event = EventRecord {
            at: crate::util::time::iso_now(),
            data,
            message: message.into(),
        };
        self.notify_listeners(&event.message, &event.data);
        self.inner.recorder.record(event);
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

    /// The most recent events, oldest first (see [`EventRing::recent`]).
    pub fn recent(&self, limit: Option<f64>) -> Vec<EventRecord> {
        self.inner.ring.recent(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;

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
}
