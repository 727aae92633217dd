//! Keep-alive client connections handed from one daemon image to the next in a
//! live upgrade. While a server hands over, its connections stop reading new
//! requests (`client_io`), finish the one in progress, and are taken from hyper
//! at the request boundary (`worker::serve_client`) and kept here with the
//! bytes of a next request hyper had already read. The new image serves them
//! with [`ProxyServer::adopt_connection`](super::ProxyServer::adopt_connection).
//!
//! When the upgrade does not happen, the server that serves in its place
//! becomes the successor: connections that reach their boundary later go on
//! there, so none is closed under a client that already sent its next request.

use super::forward::ServerShared;
use crate::util::sync::Unpoisoned;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A keep-alive client connection between two requests, handed from one image
/// to the next.
#[derive(Debug)]
pub struct IdleConnection {
    pub socket: std::net::TcpStream,
    /// Read from the client and not yet parsed (the start of its next request),
    /// to be served before what the socket delivers.
    pub unread: bytes::Bytes,
}

/// The connection handover of one proxy server.
#[derive(Debug, Default)]
pub(crate) struct ConnectionHandover {
    /// Set by a live upgrade before the proxy pauses; never cleared (the
    /// server only finishes what it serves afterwards).
    handing_over: AtomicBool,
    kept: Mutex<Kept>,
    /// Client connections an earlier image (or a paused server) handed over,
    /// for the listening thread to serve.
    adopted: Mutex<Vec<IdleConnection>>,
    adopted_ready: Notify,
}

#[derive(Debug, Default)]
struct Kept {
    connections: Vec<IdleConnection>,
    /// The server serving instead of this one after an upgrade that did not
    /// happen.
    successor: Option<Arc<ServerShared>>,
}

impl ConnectionHandover {
    pub(crate) fn start(&self) {
        self.handing_over.store(true, Ordering::Release);
    }

    /// Whether connections are being handed over: they read no new request.
    pub(crate) fn handing_over(&self) -> bool {
        self.handing_over.load(Ordering::Acquire)
    }

    /// A connection taken from hyper between two requests: kept for the next
    /// image, or served by the successor.
    pub(crate) fn deposit(&self, connection: IdleConnection) {
        let mut kept = self.kept.lock().unpoisoned();
        match &kept.successor {
            Some(successor) => successor.connections.adopt(connection),
            None => kept.connections.push(connection),
        }
    }

    /// The connections kept so far.
    pub(crate) fn take(&self) -> Vec<IdleConnection> {
        std::mem::take(&mut self.kept.lock().unpoisoned().connections)
    }

    /// The upgrade did not happen: what is kept, and every connection that
    /// reaches its boundary from now on, goes on at `successor`.
    pub(crate) fn pass_to(&self, successor: Arc<ServerShared>) {
        let mut kept = self.kept.lock().unpoisoned();
        for connection in std::mem::take(&mut kept.connections) {
            successor.connections.adopt(connection);
        }
        kept.successor = Some(successor);
    }

    pub(crate) fn adopt(&self, connection: IdleConnection) {
        self.adopted.lock().unpoisoned().push(connection);
        self.adopted_ready.notify_one();
    }

    /// The next batch of handed-over client connections (waits for one).
    pub(crate) async fn adopted(&self) -> Vec<IdleConnection> {
        loop {
            let batch = std::mem::take(&mut *self.adopted.lock().unpoisoned());
            if !batch.is_empty() {
                return batch;
            }
            self.adopted_ready.notified().await;
        }
    }
}
