//! The tracing layer that turns daemon events into event lines and ring entries.
//!
//! A sink built by [`traced_sink`] sends every event it emits as an `info`
//! tracing event with the target [`EVENT_TARGET`]. This layer is the
//! only place that writes the event's JSON line and stores it in the ring, both
//! under the ring's lock, so the log and `rollbridge events` hold the same events
//! in the same order.

use super::output::LineOutput;
use crate::events::{Event, EventRecord, EventRecorder, EventRing, EventSink, ListenerGuard};
use crate::util::sync::Unpoisoned;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, RwLock};
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The tracing target of daemon events. Filters on other targets never touch it.
pub const EVENT_TARGET: &str = "rollbridge::event";

thread_local! {
    /// The event being emitted on this thread. `emit_event` parks the finished
    /// `EventRecord` here and the layer, which runs synchronously inside the same call,
    /// takes it, so the ring stores exactly the value that was emitted instead of a
    /// copy parsed back from text.
    static PENDING: RefCell<Option<EventRecord>> = const { RefCell::new(None) };
}

/// Something that wants to see every event (metrics and the systemd status
/// derived from events): it matches on the typed event, never on its text.
pub trait EventObserver: Send + Sync {
    fn observe(&self, event: &Event);
}

/// Observers that can be added after the sink was built (the metrics registry
/// exists only once the config is loaded, logging starts before that). They
/// hear the sink through one listener (see [`EventObservers::watch`]).
#[derive(Default)]
pub struct EventObservers {
    observers: RwLock<Vec<Arc<dyn EventObserver>>>,
}

impl EventObservers {
    pub fn add(&self, observer: Arc<dyn EventObserver>) {
        self.observers.write().unpoisoned().push(observer);
    }

    fn notify(&self, event: &Event) {
        let observers = self.observers.read().unpoisoned();
        for observer in observers.iter() {
            observer.observe(event);
        }
    }

    /// Passes every event of `sink` to the observers until the guard drops.
    pub fn watch(self: &Arc<Self>, sink: &EventSink) -> ListenerGuard {
        let observers = self.clone();
        sink.listen(Arc::new(move |event: &Event, _: &EventRecord| {
            observers.notify(event)
        }))
    }
}

/// Writes event lines and fills the event ring.
pub struct EventLayer {
    ring: Arc<EventRing>,
    output: LineOutput,
}

impl EventLayer {
    pub fn new(ring: Arc<EventRing>, output: LineOutput) -> EventLayer {
        EventLayer { ring, output }
    }
}

impl<S: Subscriber> Layer<S> for EventLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != EVENT_TARGET {
            return;
        }
        let recorded = PENDING
            .with(|pending| pending.borrow_mut().take())
            .unwrap_or_else(|| event_from_fields(event));
        let output = &self.output;
        self.ring.record(recorded, |event| {
            if output.is_enabled() {
                if let Ok(line) = serde_json::to_string(event) {
                    output.write_line(&line);
                }
            }
        });
    }
}

/// A dispatcher holding only `layer`, limited to daemon events.
pub fn event_dispatch(layer: EventLayer) -> Dispatch {
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(only_events()));
    Dispatch::new(subscriber)
}

/// The filter that lets exactly the daemon events through.
pub fn only_events() -> tracing_subscriber::filter::FilterFn {
    tracing_subscriber::filter::filter_fn(|metadata| metadata.target() == EVENT_TARGET)
}

/// Records events by sending them through a dispatcher whose [`EventLayer`]
/// writes the line and fills the ring.
struct TracingRecorder {
    ring: Arc<EventRing>,
    dispatch: Dispatch,
}

impl EventRecorder for TracingRecorder {
    fn record(&self, event: EventRecord) {
        if let Some(unclaimed) = emit_event(&self.dispatch, event) {
            // No event layer took it (a dispatcher built without one): the history
            // must still be complete.
            self.ring.record(unclaimed, |_| {});
        }
    }
}

/// A sink over `ring` whose events go through `dispatch` (its event layer fills
/// `ring`), so event lines share the dispatcher's output with diagnostics.
pub fn traced_sink(ring: Arc<EventRing>, dispatch: Dispatch) -> EventSink {
    let recorder = Arc::new(TracingRecorder {
        ring: ring.clone(),
        dispatch,
    });
    EventSink::with_recorder(ring, recorder)
}

/// Sends `event` through `dispatch`. Returns the event when no layer took it.
pub fn emit_event(dispatch: &Dispatch, event: EventRecord) -> Option<EventRecord> {
    let message = event.message.clone();
    let data = JsonText(serde_json::to_string(&event.data).unwrap_or_else(|_| "{}".into()));
    PENDING.with(|pending| *pending.borrow_mut() = Some(event));
    tracing::dispatcher::with_default(dispatch, || {
        tracing::info!(target: EVENT_TARGET, data = %data, "{message}");
    });
    PENDING.with(|pending| pending.borrow_mut().take())
}

/// The event's `data` as JSON text, for layers other than ours.
struct JsonText(String);

impl fmt::Display for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Rebuilds an event from its fields, for events emitted with the macro directly
/// instead of through an `EventSink`: `data` must be a JSON object's text.
fn event_from_fields(event: &tracing::Event<'_>) -> EventRecord {
    let mut fields = FieldText::default();
    event.record(&mut fields);
    let data = match serde_json::from_str::<Value>(&fields.data) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    EventRecord {
        at: crate::util::time::iso_now(),
        data,
        message: fields.message,
        seq: 0,
    }
}

#[derive(Default)]
struct FieldText {
    message: String,
    data: String,
}

impl Visit for FieldText {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "data" => self.data = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "data" => self.data = format!("{value:?}"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An event with only a name (as a hook's `ctx:event` may report).
    fn named(message: &str) -> Event {
        Event::Hook {
            message: message.into(),
            data: Map::new(),
        }
    }

    fn starting(release_id: &str) -> Event {
        Event::DeployStarting {
            release_id: release_id.into(),
            release_path: "/srv/app".into(),
            revision: None,
        }
    }

    fn capturing_sink() -> (EventSink, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let captured = lines.clone();
        let ring = EventRing::new(10);
        let output = LineOutput::from_callback(Some(Box::new(move |line: &str| {
            captured.lock().unwrap().push(line.to_string())
        })));
        let sink = traced_sink(ring.clone(), event_dispatch(EventLayer::new(ring, output)));
        (sink, lines)
    }

    #[test]
    fn line_and_ring_hold_the_same_event() {
        let (sink, lines) = capturing_sink();
        sink.emit(Event::TrafficSwitched {
            previous_release_id: None,
            release_id: "v2".into(),
        });
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1);
        let ring = sink.recent(None);
        assert_eq!(ring.len(), 1);
        assert_eq!(lines[0], serde_json::to_string(&ring[0]).unwrap());
        assert!(
            lines[0].starts_with(r#"{"at":""#)
                && lines[0].ends_with(
                    r#","data":{"previousReleaseId":null,"releaseId":"v2"},"message":"traffic switched"}"#
                ),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn sinks_do_not_see_each_others_events() {
        let (first, first_lines) = capturing_sink();
        let (second, _) = capturing_sink();
        first.emit(named("a"));
        second.emit(named("b"));
        assert_eq!(first.recent(None).len(), 1);
        assert_eq!(second.recent(None)[0].message, "b");
        assert_eq!(first_lines.lock().unwrap().len(), 1);
    }

    #[test]
    fn an_event_emitted_inside_another_dispatch_goes_to_its_own_sink() {
        let (outer, _) = capturing_sink();
        let (inner, _) = capturing_sink();
        let dispatch = event_dispatch(EventLayer::new(EventRing::new(4), LineOutput::none()));
        tracing::dispatcher::with_default(&dispatch, || {
            outer.emit(named("outer"));
            inner.emit(named("inner"));
        });
        assert_eq!(outer.recent(None)[0].message, "outer");
        assert_eq!(inner.recent(None)[0].message, "inner");
    }

    #[test]
    fn observers_see_recorded_events() {
        struct Count(Mutex<Vec<Event>>);
        impl EventObserver for Count {
            fn observe(&self, event: &Event) {
                self.0.lock().unwrap().push(event.clone());
            }
        }
        let ring = EventRing::new(4);
        let layer = EventLayer::new(ring.clone(), LineOutput::none());
        let observers = Arc::new(EventObservers::default());
        let sink = traced_sink(ring, event_dispatch(layer));
        let _watching = observers.watch(&sink);
        let count = Arc::new(Count(Mutex::new(Vec::new())));
        observers.add(count.clone());
        sink.emit(starting("v1"));
        assert_eq!(*count.0.lock().unwrap(), vec![starting("v1")]);
    }

    #[test]
    fn a_direct_tracing_event_is_recorded_from_its_fields() {
        let ring = EventRing::new(4);
        let dispatch = event_dispatch(EventLayer::new(ring.clone(), LineOutput::none()));
        let sink = traced_sink(ring, dispatch.clone());
        let data = r#"{"releaseId":"v1"}"#;
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!(target: EVENT_TARGET, data = data, "release drained");
        });
        let events = sink.recent(None);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].message, "release drained");
        assert_eq!(events[0].data["releaseId"], "v1");
    }
}
