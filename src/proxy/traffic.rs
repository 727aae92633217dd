//! The traffic rules the router applies besides "send it to the active release":
//! a canary share, a pause that holds requests, maintenance and the readiness
//! answer. They sit in the one routing table the router loads per request.

use super::target::ReleaseTarget;
use crate::util::sync::Unpoisoned;
use bytes::Bytes;
use http::header::COOKIE;
use http::{HeaderMap, HeaderName};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// What keeps a client on one release while a canary runs (`rollout.stickyBy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyBy {
    Header(HeaderName),
    Cookie(String),
}

impl StickyBy {
    /// Parses `header:<Name>` or `cookie:<name>`.
    pub fn parse(text: &str) -> Option<StickyBy> {
        let (kind, name) = text.split_once(':')?;
        if name.is_empty() {
            return None;
        }
        match kind {
            "header" => HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(StickyBy::Header),
            "cookie"
                if name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'=' && b != b';') =>
            {
                Some(StickyBy::Cookie(name.to_string()))
            }
            _ => None,
        }
    }

    /// The request's sticky value hashed into 0..100, or `None` when it has none.
    fn bucket(&self, headers: &HeaderMap) -> Option<u8> {
        match self {
            StickyBy::Header(name) => headers.get(name).map(|value| bucket_of(value.as_bytes())),
            StickyBy::Cookie(name) => headers
                .get_all(COOKIE)
                .iter()
                .find_map(|value| cookie_value(value.as_bytes(), name.as_bytes()))
                .map(bucket_of),
        }
    }
}

/// FNV-1a: stable across runs and machines, so a value keeps its release for a
/// given percent even across daemon restarts.
fn bucket_of(value: &[u8]) -> u8 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % 100) as u8
}

fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let (key, value) = pair.split_at(pair.iter().position(|b| *b == b'=')?);
        (key == name).then(|| &value[1..])
    })
}

thread_local! {
    static NEXT_BUCKET: Cell<u32> = const { Cell::new(0) };
}

/// A bucket for a request without a sticky value: 37 is coprime with 100, so every
/// 100 requests on a thread visit each bucket once, spread out rather than in runs.
fn spread_bucket() -> u8 {
    NEXT_BUCKET.with(|next| {
        let bucket = next.get();
        next.set((bucket + 37) % 100);
        bucket as u8
    })
}

/// A release receiving a share of new requests next to the active one.
#[derive(Debug, Clone)]
pub struct Canary {
    pub target: Arc<ReleaseTarget>,
    /// 0–100: requests whose bucket is below this go to the canary.
    pub percent: u8,
    pub sticky: Option<StickyBy>,
}

impl Canary {
    /// Whether this request goes to the canary.
    pub(crate) fn takes(&self, headers: &HeaderMap) -> bool {
        let bucket = match &self.sticky {
            Some(sticky) => sticky.bucket(headers).unwrap_or_else(spread_bucket),
            None => spread_bucket(),
        };
        bucket < self.percent
    }
}

/// A pause: requests arriving while it is on wait here, in arrival order, until
/// [`Hold::release_in_order`] or their bound.
#[derive(Debug)]
pub struct Hold {
    pub max_wait: Duration,
    waiting: Mutex<HoldQueue>,
}

#[derive(Debug, Default)]
struct HoldQueue {
    released: bool,
    queue: VecDeque<oneshot::Sender<ReleaseTicket>>,
}

/// Held by a released request until its upstream answered (or failed); dropping
/// it lets the next held request go, which keeps the release in arrival order.
#[derive(Debug)]
pub struct ReleaseTicket(#[allow(dead_code)] Option<oneshot::Sender<()>>);

impl Hold {
    pub fn new(max_wait: Duration) -> Arc<Hold> {
        Arc::new(Hold {
            max_wait,
            waiting: Mutex::new(HoldQueue::default()),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, HoldQueue> {
        self.waiting.lock().unpoisoned()
    }

    /// Waits until released (`Some`: route the request again, keeping the ticket
    /// until its response head) or until the bound (`None`: answer 503).
    pub(crate) async fn wait(&self) -> Option<ReleaseTicket> {
        let (sender, receiver) = oneshot::channel();
        {
            let mut waiting = self.queue();
            if waiting.released {
                return Some(ReleaseTicket(None));
            }
            waiting.queue.push_back(sender);
        }
        tokio::time::timeout(self.max_wait, receiver)
            .await
            .ok()?
            .ok()
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.queue().queue.iter().filter(|s| !s.is_closed()).count()
    }

    /// Lets every waiting request go, first come first served: each is released
    /// once the one before it has its response head, or after `step` at the
    /// latest (so a slow request does not hold up the rest). Requests arriving
    /// later are not held. Returns how many were released.
    pub async fn release_in_order(&self, step: Duration) -> usize {
        let queue = {
            let mut waiting = self.queue();
            waiting.released = true;
            std::mem::take(&mut waiting.queue)
        };
        let mut released = 0;
        for sender in queue {
            let (done, answered) = oneshot::channel();
            if sender.send(ReleaseTicket(Some(done))).is_ok() {
                released += 1;
                let _ = tokio::time::timeout(step, answered).await;
            }
        }
        released
    }

    /// Lets every waiting request go at once (shutdown).
    pub fn release_all(&self) {
        let queue = {
            let mut waiting = self.queue();
            waiting.released = true;
            std::mem::take(&mut waiting.queue)
        };
        for sender in queue {
            let _ = sender.send(ReleaseTicket(None));
        }
    }
}

/// Everything a request's routing depends on, swapped as one value.
#[derive(Debug, Default, Clone)]
pub struct RoutingTable {
    pub active: Option<Arc<ReleaseTarget>>,
    pub canary: Option<Canary>,
    /// Set while paused.
    pub hold: Option<Arc<Hold>>,
    /// The maintenance message (503 for every request) while maintenance is on.
    pub maintenance: Option<Bytes>,
    /// `proxy.readinessPath`, answered by the proxy itself.
    pub readiness_path: Option<Arc<str>>,
    /// Set when shutdown begins: readiness answers 503 from then on.
    pub stopping: bool,
}

impl RoutingTable {
    /// Whether a load balancer should send this host traffic.
    pub fn is_ready(&self) -> bool {
        !self.stopping && self.maintenance.is_none() && self.hold.is_none()
    }

    /// The release this request goes to (canary or active).
    pub(crate) fn choose(&self, headers: &HeaderMap) -> Option<&Arc<ReleaseTarget>> {
        match &self.canary {
            Some(canary) if canary.takes(headers) => Some(&canary.target),
            _ => self.active.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_rules_parse_and_find_their_value() {
        assert_eq!(
            StickyBy::parse("cookie:sid"),
            Some(StickyBy::Cookie("sid".into()))
        );
        assert!(matches!(
            StickyBy::parse("header:X-User"),
            Some(StickyBy::Header(_))
        ));
        for bad in [
            "",
            "header:",
            "cookie",
            "query:x",
            "header:bad name",
            "cookie:a=b",
        ] {
            assert_eq!(StickyBy::parse(bad), None, "{bad}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=1; sid=abc; b=2".parse().unwrap());
        let cookie = StickyBy::Cookie("sid".into());
        assert_eq!(cookie.bucket(&headers), Some(bucket_of(b"abc")));
        assert_eq!(StickyBy::Cookie("none".into()).bucket(&headers), None);
    }

    #[test]
    fn unsticky_requests_visit_every_bucket_once_per_hundred() {
        let mut seen = [0u32; 100];
        for _ in 0..1000 {
            seen[spread_bucket() as usize] += 1;
        }
        assert!(seen.iter().all(|count| *count == 10));
    }

    #[tokio::test]
    async fn a_hold_releases_in_order_and_times_out() {
        let hold = Hold::new(Duration::from_secs(30));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..5 {
            let (waiter, order) = (hold.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let ticket = waiter.wait().await.expect("released");
                // Later requests are still waiting while this one holds its ticket.
                tokio::task::yield_now().await;
                order.lock().unwrap().push(n);
                drop(ticket);
            }));
            while hold.waiting() < n + 1 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(hold.release_in_order(Duration::from_secs(30)).await, 5);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
        assert!(
            hold.wait().await.is_some(),
            "released holds let requests through"
        );
        let short = Hold::new(Duration::from_millis(20));
        assert!(short.wait().await.is_none());
    }
}
