//! Process output for followers (`logs --follow`): each captured line is handed
//! to the bounded queues of whoever follows, and to nobody else. Output lines
//! are not events — they never reach the ring or the daemon's log — but they
//! travel through the sink because every process already holds one.

use super::sink::EventSink;
use crate::util::sync::Unpoisoned;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One captured line of a managed process.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputLine {
    /// The instance id (`web`, `worker#0`).
    pub id: String,
    /// The release the process belongs to (empty for services and singletons).
    pub release_id: String,
    /// ISO time the line was read.
    pub at: String,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    pub line: String,
}

struct Follower {
    id: u64,
    queue: mpsc::Sender<OutputLine>,
    missed: Arc<AtomicU64>,
}

/// The followers of one sink. Publishing costs one atomic load while nobody
/// follows, so capturing output stays as cheap as before.
#[derive(Default)]
pub(super) struct OutputTap {
    count: AtomicUsize,
    next_id: AtomicU64,
    followers: Mutex<Vec<Follower>>,
}

/// Output lines captured since [`EventSink::subscribe_output`], oldest first.
/// Capturing never waits: lines that do not fit are counted in
/// [`OutputSubscription::missed`]. Dropping it unsubscribes.
pub struct OutputSubscription {
    queue: mpsc::Receiver<OutputLine>,
    missed: Arc<AtomicU64>,
    sink: EventSink,
    id: u64,
}

impl OutputSubscription {
    /// The next line; `None` once the sink is gone.
    pub async fn recv(&mut self) -> Option<OutputLine> {
        self.queue.recv().await
    }

    /// Lines dropped because the queue was full.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl Drop for OutputSubscription {
    fn drop(&mut self) {
        let tap = &self.sink.inner_output();
        let mut followers = tap.followers.lock().unpoisoned();
        followers.retain(|follower| follower.id != self.id);
        tap.count.store(followers.len(), Ordering::Release);
    }
}

impl EventSink {
    /// Whether anybody follows process output (a line need not be built otherwise).
    pub fn output_followed(&self) -> bool {
        self.inner_output().count.load(Ordering::Acquire) > 0
    }

    /// Hands captured lines to every follower without waiting.
    pub fn publish_output(&self, lines: impl IntoIterator<Item = OutputLine>) {
        let tap = self.inner_output();
        let followers = tap.followers.lock().unpoisoned();
        for line in lines {
            for follower in followers.iter() {
                if follower.queue.try_send(line.clone()).is_err() {
                    follower.missed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Queues every output line captured from now on (at most `capacity` waiting).
    pub fn subscribe_output(&self, capacity: usize) -> OutputSubscription {
        let (queue_sender, queue) = mpsc::channel(capacity.max(1));
        let missed = Arc::new(AtomicU64::new(0));
        let tap = self.inner_output();
        let id = tap.next_id.fetch_add(1, Ordering::Relaxed);
        let mut followers = tap.followers.lock().unpoisoned();
        followers.push(Follower {
            id,
            queue: queue_sender,
            missed: missed.clone(),
        });
        tap.count.store(followers.len(), Ordering::Release);
        OutputSubscription {
            queue,
            missed,
            sink: self.clone(),
            id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> OutputLine {
        OutputLine {
            id: "web".into(),
            release_id: "v1".into(),
            at: "2026-12-06T00:00:00.000Z".into(),
            stream: "stdout",
            line: text.into(),
        }
    }

    #[tokio::test]
    async fn followers_get_lines_in_order_count_overflow_and_unsubscribe_on_drop() {
        let sink = EventSink::silent();
        assert!(!sink.output_followed());
        let mut follower = sink.subscribe_output(2);
        assert!(sink.output_followed());
        sink.publish_output([line("a"), line("b"), line("c")]);
        assert_eq!(follower.recv().await.unwrap().line, "a");
        assert_eq!(follower.recv().await.unwrap().line, "b");
        assert_eq!(follower.missed(), 1);
        drop(follower);
        assert!(!sink.output_followed());
    }
}
