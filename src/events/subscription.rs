//! A queue of the events emitted after it was made, for tasks that consume them
//! at their own pace (streaming `events --follow`, a state writer).

use super::kinds::Event;
use super::record::EventRecord;
use super::sink::{EventSink, ListenerGuard};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Events emitted since [`EventSink::subscribe`], oldest first. Emitting never
/// waits for a subscriber: when `capacity` events are queued, newer ones are
/// dropped and counted in [`Subscription::missed`]. Dropping it unsubscribes.
pub struct Subscription {
    queue: mpsc::Receiver<(Event, EventRecord)>,
    missed: Arc<AtomicU64>,
    _listener: ListenerGuard,
}

impl Subscription {
    /// The next event; `None` once the sink is gone.
    pub async fn recv(&mut self) -> Option<(Event, EventRecord)> {
        self.queue.recv().await
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<(Event, EventRecord)> {
        self.queue.try_recv().ok()
    }

    /// Events dropped because the queue was full.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl EventSink {
    /// Queues every event emitted from now on (at most `capacity` waiting).
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        let (sender, queue) = mpsc::channel(capacity.max(1));
        let missed = Arc::new(AtomicU64::new(0));
        let listener = self.listen({
            let missed = missed.clone();
            Arc::new(move |event: &Event, record: &EventRecord| {
                if sender.try_send((event.clone(), record.clone())).is_err() {
                    missed.fetch_add(1, Ordering::Relaxed);
                }
            })
        });
        Subscription {
            queue,
            missed,
            _listener: listener,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(id: &str) -> Event {
        Event::ReleaseStopped {
            release_id: id.into(),
        }
    }

    #[tokio::test]
    async fn a_subscription_gets_later_events_in_order_and_counts_what_did_not_fit() {
        let sink = EventSink::silent();
        sink.emit(stopped("before"));
        let mut subscription = sink.subscribe(2);
        for id in ["a", "b", "c"] {
            sink.emit(stopped(id));
        }
        let (event, record) = subscription.recv().await.unwrap();
        assert_eq!(event, stopped("a"));
        assert_eq!(record, sink.recent(None)[1]);
        assert_eq!(subscription.recv().await.unwrap().0, stopped("b"));
        assert!(subscription.try_recv().is_none());
        assert_eq!(subscription.missed(), 1);
        sink.emit(stopped("d"));
        assert_eq!(subscription.try_recv().unwrap().0, stopped("d"));
    }
}
