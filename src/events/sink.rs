//! The handle every part of the daemon reports events through.

use super::kinds::Event;
use super::record::EventRecord;
use super::ring::{EVENT_RING_CAPACITY, EventRing};
use crate::util::sync::Unpoisoned;
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

/// Sees each event as it is emitted: the typed event (match on it) and its
/// record (the line `rollbridge events` shows). It runs on the emitting task,
/// before the event reaches the ring, so it must only note what it needs and
/// return (no blocking, no emit).
pub type Listener = Arc<dyn Fn(&Event, &EventRecord) + Send + Sync>;

struct Inner {
    ring: Arc<EventRing>,
    recorder: Arc<dyn EventRecorder>,
    /// Called with each event as it is emitted (see [`EventSink::listen`]).
    listeners: Mutex<Vec<(u64, Listener)>>,
    next_listener: AtomicU64,
    /// The number the next event gets (see [`EventRecord::seq`]).
    next_seq: AtomicU64,
    /// Names this sink's numbering: a restarted daemon numbers from 1 again
    /// under another epoch (see [`EventSink::epoch`]).
    epoch: String,
    /// Followers of process output (`logs --follow`).
    pub(super) output: super::output_tap::OutputTap,
}

/// Keeps a listener registered; dropping it unregisters the listener.
pub struct ListenerGuard {
    sink: Weak<Inner>,
    id: u64,
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.sink.upgrade() {
            let mut listeners = inner.listeners.lock().unpoisoned();
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
                next_seq: AtomicU64::new(1),
                epoch: new_epoch(),
                output: Default::default(),
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
            .unpoisoned()
            .push((id, listener));
        ListenerGuard {
            sink: Arc::downgrade(&self.inner),
            id,
        }
    }

    fn notify_listeners(&self, event: &Event, record: &EventRecord) {
        let listeners: Vec<Listener> = {
            let listeners = self.inner.listeners.lock().unpoisoned();
            if listeners.is_empty() {
                return;
            }
            listeners.iter().map(|(_, l)| l.clone()).collect()
        };
        for listener in listeners {
            listener(event, record);
        }
    }

    /// Records `event` now.
    pub fn emit(&self, event: Event) {
        let mut record = EventRecord::new(crate::util::time::iso_now(), &event);
        record.seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        self.notify_listeners(&event, &record);
        self.inner.recorder.record(record);
    }

    /// Puts an earlier image's history in front of the ring (live upgrade).
    pub fn restore(&self, earlier: Vec<EventRecord>) {
        self.inner.ring.restore(earlier);
    }

    /// The most recent events, oldest first (see [`EventRing::recent`]).
    pub fn recent(&self, limit: Option<f64>) -> Vec<EventRecord> {
        self.inner.ring.recent(limit)
    }

    pub(super) fn inner_output(&self) -> &super::output_tap::OutputTap {
        &self.inner.output
    }

    /// The stored events numbered above `seq`, oldest first.
    pub fn recent_after(&self, seq: u64) -> Vec<EventRecord> {
        let mut events = self.inner.ring.recent(None);
        events.retain(|event| event.seq > seq);
        events
    }

    /// The number of the latest event emitted (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.inner.next_seq.load(Ordering::Relaxed) - 1
    }

    /// Names this sink's event numbering. A client resuming a follow stream
    /// with `since` passes the epoch it saw, so after a daemon restart (new
    /// numbering) it is sent the whole history instead of a gap.
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }
}

/// The process id and the start time in nanoseconds: unique per daemon run on
/// one host, and it changes on an in-place re-exec too.
fn new_epoch() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ProcessEvent, ProcessScope};
    use serde_json::Value;

    fn drained(id: i32) -> Event {
        Event::ReleaseDrained {
            release_id: id.to_string(),
        }
    }

    fn release_ids(events: Vec<EventRecord>) -> Vec<i64> {
        events
            .iter()
            .map(|e| e.data["releaseId"].as_str().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn ring_drops_oldest_and_slices_recent() {
        let sink = EventSink::with_writer(3, None);
        for i in 0..5 {
            sink.emit(drained(i));
        }
        assert_eq!(release_ids(sink.recent(None)), vec![2, 3, 4]);
        assert_eq!(release_ids(sink.recent(Some(2.0))), vec![3, 4]);
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
            Arc::new(move |event: &Event, record: &EventRecord| {
                seen.lock()
                    .unwrap()
                    .push((event.clone(), record.data["releaseId"].clone()));
            })
        });
        sink.emit(drained(1));
        drop(guard);
        sink.emit(drained(2));
        assert_eq!(*seen.lock().unwrap(), vec![(drained(1), Value::from("1"))]);
    }

    #[test]
    fn listeners_see_the_typed_event_and_the_recorded_line_before_the_ring() {
        let sink = EventSink::silent();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let _guard = sink.listen({
            let (seen, sink) = (seen.clone(), sink.clone());
            Arc::new(move |event: &Event, record: &EventRecord| {
                if let Event::Process {
                    scope,
                    event: ProcessEvent::Exited { code, .. },
                } = event
                {
                    let stored = sink.recent(None).len();
                    seen.lock().unwrap().push((
                        scope.process_id.clone(),
                        *code,
                        record.clone(),
                        stored,
                    ));
                }
            })
        });
        sink.emit(drained(1));
        sink.emit(Event::Process {
            scope: ProcessScope {
                process_id: "web#0".into(),
                release_id: "v1".into(),
            },
            event: ProcessEvent::Exited {
                code: Some(3),
                id: "web#0".into(),
                signal: None,
            },
        });
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (process, code, record, stored) = &seen[0];
        assert_eq!((process.as_str(), *code, *stored), ("web#0", Some(3), 1));
        assert_eq!(record, sink.recent(None).last().unwrap());
        assert_eq!(record.message, "process exited");
    }
}
