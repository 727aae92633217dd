//! Sharing client connections out between the proxy threads.
//!
//! One proxy thread owns the listening socket and accepts every connection. It
//! keeps a new connection when it serves no more connections than any other proxy
//! thread, and otherwise hands it to the least busy one.
//!
//! Why not let every thread accept on the same socket: each thread's epoll then
//! wakes for every new connection and all but one find nothing to accept, a
//! wasted wake-up and system call per connection on every other thread (measured
//! at 10–15 µs of kernel time per `Connection: close` request with two threads).
//! Why not `SO_REUSEPORT` (a socket per thread): any other process of the same
//! user could then bind the proxy port too and silently take a share of the
//! traffic, where today it gets "address in use".

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// A connection accepted by the listening thread for another proxy thread. It is
/// moved as a std socket: a tokio socket belongs to the runtime that registered it.
pub(crate) type Accepted = (std::net::TcpStream, SocketAddr);

/// Open client connections per proxy thread.
#[derive(Debug)]
pub(crate) struct ThreadLoads {
    open: Box<[AtomicUsize]>,
}

impl ThreadLoads {
    pub(crate) fn new(threads: usize) -> Arc<ThreadLoads> {
        Arc::new(ThreadLoads {
            open: (0..threads.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    /// The thread that should serve the next connection: `own` unless another
    /// thread has strictly fewer connections open. The choice is counted at once,
    /// so a burst of accepts spreads out before the other thread even wakes up.
    pub(crate) fn assign(self: &Arc<Self>, own: usize) -> ConnectionLoad {
        let mut chosen = own;
        let mut lowest = self.open[own].load(Ordering::Relaxed);
        for (index, open) in self.open.iter().enumerate() {
            let open = open.load(Ordering::Relaxed);
            if open < lowest {
                chosen = index;
                lowest = open;
            }
        }
        self.open[chosen].fetch_add(1, Ordering::Relaxed);
        ConnectionLoad {
            loads: Arc::clone(self),
            thread: chosen,
        }
    }

    #[cfg(test)]
    fn open(&self, thread: usize) -> usize {
        self.open[thread].load(Ordering::Relaxed)
    }
}

/// One open connection counted against the thread serving it, until dropped.
#[derive(Debug)]
pub(crate) struct ConnectionLoad {
    loads: Arc<ThreadLoads>,
    thread: usize,
}

impl ConnectionLoad {
    pub(crate) fn thread(&self) -> usize {
        self.thread
    }
}

impl Drop for ConnectionLoad {
    fn drop(&mut self) {
        self.loads.open[self.thread].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The listening thread's way to each other proxy thread.
pub(crate) type Handoff = UnboundedSender<(Accepted, ConnectionLoad)>;
/// A proxy thread's inbox of connections accepted for it.
pub(crate) type Inbox = UnboundedReceiver<(Accepted, ConnectionLoad)>;

pub(crate) fn handoff_channel() -> (Handoff, Inbox) {
    unbounded_channel()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_connections_while_no_other_thread_is_less_busy() {
        let loads = ThreadLoads::new(2);
        let first = loads.assign(0);
        assert_eq!(first.thread(), 0, "a tie keeps the connection");
        let second = loads.assign(0);
        assert_eq!(second.thread(), 1, "the other thread has fewer open");
        let third = loads.assign(0);
        assert_eq!(third.thread(), 0);
        drop(first);
        drop(third);
        assert_eq!(loads.open(0), 0);
        assert_eq!(loads.open(1), 1);
        assert_eq!(loads.assign(0).thread(), 0);
    }

    #[test]
    fn one_connection_at_a_time_never_leaves_the_listening_thread() {
        let loads = ThreadLoads::new(4);
        for _ in 0..100 {
            let load = loads.assign(0);
            assert_eq!(load.thread(), 0);
        }
        assert_eq!(loads.open(0), 0);
    }

    #[test]
    fn spreads_evenly_over_all_threads() {
        let loads = ThreadLoads::new(3);
        let held: Vec<ConnectionLoad> = (0..30).map(|_| loads.assign(0)).collect();
        for thread in 0..3 {
            assert_eq!(loads.open(thread), 10);
        }
        drop(held);
        for thread in 0..3 {
            assert_eq!(loads.open(thread), 0);
        }
    }
}
