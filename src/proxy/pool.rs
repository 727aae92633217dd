//! A small keep-alive pool of HTTP/1.1 connections to one release's upstream.
//!
//! A connection is only handed back once the response it carried has been read to
//! the end, so a pooled connection is always idle; checkout is a pop under a short
//! lock (last in, first out, which keeps the warmest connections busy).
//!
//! The pool is sharded by proxy thread: an upstream connection is driven by the
//! runtime of the thread that opened it, so each thread only reuses its own and a
//! request never has to wake another thread.

use super::deadline::ClientBody;
use super::errors::UpstreamError;
use super::quickack::QuickAckStream;
use super::relay::RawConnection;
use crate::util::sync::Unpoisoned;
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long establishing one upstream TCP connection may take.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections kept per release; extra ones are closed when freed.
pub const MAX_IDLE_PER_RELEASE: usize = 256;

pub(crate) type Sender = SendRequest<ClientBody>;

/// Pool shards per release; proxy threads beyond this share shards.
const SHARDS: usize = 8;

thread_local! {
    static CURRENT_SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The proxy thread (and so the runtime) pooled connections were opened on.
    static CURRENT_RUNTIME: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Numbers the proxy threads ever started, so a connection opened on one is
/// never used on another that took the same shard (a live upgrade that did not
/// happen serves with new threads while the paused ones finish; a connection's
/// socket is registered with its thread's runtime, which ends with it).
static RUNTIMES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Called once by each proxy thread with its index.
pub(crate) fn set_current_shard(thread_index: usize) {
    CURRENT_SHARD.with(|shard| shard.set(thread_index % SHARDS));
    let runtime = RUNTIMES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    CURRENT_RUNTIME.with(|current| current.set(runtime));
}

fn current_shard() -> usize {
    CURRENT_SHARD.with(|shard| shard.get())
}

fn current_runtime() -> u64 {
    CURRENT_RUNTIME.with(|runtime| runtime.get())
}

#[derive(Debug)]
enum Endpoint {
    Address(SocketAddr),
    Name { host: String, port: u16 },
}

#[derive(Debug, Default)]
struct IdleState {
    /// Each with the runtime it was opened on (see [`RUNTIMES`]).
    senders: Vec<(u64, Sender)>,
    /// Idle connections of the direct path (`relay.rs`).
    raw: Vec<(u64, RawConnection)>,
    retired: bool,
}

#[derive(Debug)]
pub(crate) struct UpstreamPool {
    endpoint: Endpoint,
    authority: String,
    idle: [Mutex<IdleState>; SHARDS],
}

impl UpstreamPool {
    pub(crate) fn new(upstream_host: &str, port: u16) -> UpstreamPool {
        let bare = crate::util::host::unbracketed(upstream_host);
        let (endpoint, authority) = match bare.parse::<IpAddr>() {
            Ok(ip) => {
                let addr = SocketAddr::new(ip, port);
                (Endpoint::Address(addr), addr.to_string())
            }
            Err(_) => (
                Endpoint::Name {
                    host: bare.to_string(),
                    port,
                },
                format!("{bare}:{port}"),
            ),
        };
        UpstreamPool {
            endpoint,
            authority,
            idle: Default::default(),
        }
    }

    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    pub(crate) fn idle_count(&self) -> usize {
        (0..SHARDS)
            .map(|shard| {
                let idle = self.lock(shard);
                idle.senders.len() + idle.raw.len()
            })
            .sum()
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, IdleState> {
        self.idle[shard].lock().unpoisoned()
    }

    pub(crate) fn retire(&self) {
        for shard in 0..SHARDS {
            let closing = {
                let mut idle = self.lock(shard);
                idle.retired = true;
                (
                    std::mem::take(&mut idle.senders),
                    std::mem::take(&mut idle.raw),
                )
            };
            // Dropping the senders lets each idle connection task finish and close
            // its socket.
            drop(closing);
        }
    }

    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.lock(current_shard());
        let runtime = current_runtime();
        while let Some((opened_on, sender)) = idle.senders.pop() {
            if opened_on == runtime && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// An idle connection of the direct path that is still open, if any.
    pub(crate) fn take_idle_raw(&self) -> Option<RawConnection> {
        let mut idle = self.lock(current_shard());
        let runtime = current_runtime();
        while let Some((opened_on, connection)) = idle.raw.pop() {
            if opened_on == runtime && connection.still_open() {
                return Some(connection);
            }
        }
        None
    }

    /// Gives back a direct-path connection whose last response was read completely.
    pub(crate) fn put_raw(&self, connection: RawConnection) {
        let mut idle = self.lock(current_shard());
        if !idle.retired && idle.raw.len() < MAX_IDLE_PER_RELEASE {
            idle.raw.push((current_runtime(), connection));
        }
    }

    /// Gives back a connection whose last response was read completely.
    pub(crate) fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock(current_shard());
        if !idle.retired && idle.senders.len() < MAX_IDLE_PER_RELEASE {
            idle.senders.push((current_runtime(), sender));
        }
    }

    /// Sends `request` on an idle connection, or a new one. A pooled connection that
    /// turns out to be closed before the request went out is skipped transparently.
    pub(crate) async fn send(
        &self,
        mut request: Request<ClientBody>,
    ) -> Result<(Response<hyper::body::Incoming>, Sender), UpstreamError> {
        loop {
            let (mut sender, reused) = match self.take_idle() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            if let Err(error) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(self.exchange_error(error));
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(self.exchange_error(failed.into_error())),
                },
            }
        }
    }

    fn exchange_error(&self, source: hyper::Error) -> UpstreamError {
        UpstreamError::Exchange {
            authority: self.authority.clone(),
            source,
        }
    }

    /// A new TCP connection to the upstream, within the connect timeout.
    pub(crate) async fn connect_stream(&self) -> Result<TcpStream, UpstreamError> {
        let stream = match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, self.open_socket()).await
        {
            Ok(result) => result?,
            Err(_) => {
                return Err(UpstreamError::ConnectTimeout {
                    authority: self.authority.clone(),
                });
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn connect(&self) -> Result<Sender, UpstreamError> {
        let stream = self.connect_stream().await?;
        // Flat write buffer, as on the client side (see worker.rs).
        let (sender, connection) = Builder::new()
            .writev(false)
            .handshake(TokioIo::new(QuickAckStream::new(stream)))
            .await
            .map_err(|source| self.exchange_error(source))?;
        tokio::spawn(async move {
            // Errors surface through the request that was using the connection.
            let _ = connection.with_upgrades().await;
        });
        Ok(sender)
    }

    async fn open_socket(&self) -> Result<TcpStream, UpstreamError> {
        match &self.endpoint {
            Endpoint::Address(addr) => {
                TcpStream::connect(addr)
                    .await
                    .map_err(|source| UpstreamError::Connect {
                        authority: self.authority.clone(),
                        source,
                    })
            }
            Endpoint::Name { host, port } => {
                let addrs = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|source| UpstreamError::Resolve {
                        host: host.clone(),
                        source,
                    })?;
                let mut last_error = None;
                for addr in addrs {
                    match TcpStream::connect(addr).await {
                        Ok(stream) => return Ok(stream),
                        Err(error) => last_error = Some((addr, error)),
                    }
                }
                Err(match last_error {
                    Some((addr, source)) => UpstreamError::Connect {
                        authority: addr.to_string(),
                        source,
                    },
                    None => UpstreamError::Resolve {
                        host: host.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no addresses found",
                        ),
                    },
                })
            }
        }
    }
}
