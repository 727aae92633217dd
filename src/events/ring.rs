//! The in-memory history: the most recent events, oldest first.

use super::record::EventRecord;
use crate::util::sync::Unpoisoned;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// How many events the in-memory ring keeps.
pub const EVENT_RING_CAPACITY: usize = 1000;

/// The most recent events, oldest first.
///
/// Whoever writes an event's log line fills the ring under the same lock (see
/// [`EventRing::record`]), so the ring and the log always hold the same events
/// in the same order.
#[derive(Debug)]
pub struct EventRing {
    events: Mutex<VecDeque<EventRecord>>,
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
    pub fn record(&self, event: EventRecord, write_line: impl FnOnce(&EventRecord)) {
        let mut events = self.events.lock().unpoisoned();
        write_line(&event);
        if self.capacity == 0 {
            return;
        }
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// Puts events recorded by an earlier image of this daemon (live upgrade)
    /// in front of the ones recorded since; their lines were written already.
    pub fn restore(&self, earlier: Vec<EventRecord>) {
        let mut events = self.events.lock().unpoisoned();
        let since: Vec<EventRecord> = events.drain(..).collect();
        for event in earlier.into_iter().chain(since) {
            if events.len() == self.capacity {
                events.pop_front();
            }
            if self.capacity > 0 {
                events.push_back(event);
            }
        }
    }

    /// The most recent events, oldest first. `limit` follows the protocol: only a
    /// finite number greater than 0 and smaller than the stored count slices; a
    /// fractional limit is truncated at the slice start (2.5 gives 3 events).
    pub fn recent(&self, limit: Option<f64>) -> Vec<EventRecord> {
        let events = self.events.lock().unpoisoned();
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
