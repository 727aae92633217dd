//! The control socket server: a Unix stream socket speaking one JSON object per
//! line.
//!
//! Each accepted connection runs in its own task, so a silent or slow client only
//! ever holds up itself. Every request line starts its own handler; replies are
//! written in completion order. The server knows nothing about releases: it parses
//! lines, hands [`Request`]s to a [`ControlHandler`], and writes what comes back.
//!
//! No set of clients can lock the operator out: a connection with nothing in
//! flight that has not sent a complete request line within [`REQUEST_TIMEOUT`]
//! is closed, and when the connection cap is reached (or the daemon runs out of
//! file descriptors) the oldest such idle connection is closed to make room.
//! Only when every connection is waiting for a reply is a newcomer turned away.

use super::follow::{FollowItem, FollowSource};
use super::protocol::{
    MAX_REQUEST_LINE_BYTES, Request, RequestError, error_reply, reply_line, success_reply,
};
use crate::events::{Event, EventSink};
use crate::util::errno::errno_code;
use crate::util::sync::Unpoisoned;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Identifies one accepted control connection.
pub type ConnectionId = u64;

/// At most this many control connections are open at once (fewer when the
/// daemon's file descriptor limit is low, see [`connection_cap`]): the CLI uses
/// one short connection per command, so anything near this number is a runaway
/// client, and the cap keeps file descriptors for the processes the daemon
/// supervises. At the cap the oldest idle connection is closed for a newcomer.
pub const MAX_CONNECTIONS: usize = 1024;

/// A connection with no request in flight is closed when it has not sent a
/// complete request line for this long (since it connected or since its last
/// reply). The CLI sends its request right after connecting.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many requests of one connection are answered at a time; the
/// connection is not read further until replies have been written. A client that
/// sends without reading therefore cannot make the daemon queue replies forever.
pub const MAX_PENDING_PER_CONNECTION: usize = 64;

/// What the server does with the connection after writing a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterReply {
    /// Leave the connection open; the client closes it.
    KeepOpen,
    /// End the stream after the reply (owner retirement).
    Close,
    /// End the stream after the reply, then tell the daemon it may exit
    /// (a control-driven shutdown).
    CloseAndExit,
}

/// A handler's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The success payload (merged after `"status":"success"`) or the error text.
    pub result: Result<Map<String, Value>, String>,
    pub after: AfterReply,
}

impl Reply {
    /// A success carrying `payload` (one of the types of [`super::reply`] or
    /// [`super::status::Status`]), merged after `"status":"success"`.
    pub fn ok(payload: impl serde::Serialize) -> Reply {
        Reply {
            result: super::reply::payload_object(&payload),
            after: AfterReply::KeepOpen,
        }
    }

    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            result: Err(message.into()),
            after: AfterReply::KeepOpen,
        }
    }

    pub fn then(mut self, after: AfterReply) -> Reply {
        self.after = after;
        self
    }
}

pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

/// Answers control requests. The daemon implements this.
pub trait ControlHandler: Send + Sync + 'static {
    /// Handles one parsed request that arrived on connection `origin`.
    fn handle(self: Arc<Self>, request: Request, origin: ConnectionId) -> ReplyFuture;
}

/// The connection cap for this process: [`MAX_CONNECTIONS`], or half the soft
/// `RLIMIT_NOFILE` when that is lower, so idle clients can never take the file
/// descriptors a deploy needs for its pipes, sockets and log files.
pub fn connection_cap() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(u64::MAX);
    usize::try_from(soft / 2)
        .unwrap_or(usize::MAX)
        .clamp(16, MAX_CONNECTIONS)
}

/// One open connection as the accept loop and shutdown see it.
struct Connection {
    /// Cancelled to drop the connection at once.
    token: CancellationToken,
    /// The stream's descriptor (a live upgrade answers on it from the new image).
    fd: std::os::fd::RawFd,
    activity: Arc<Activity>,
}

/// What a connection is doing, shared with its reader and writer.
struct Activity {
    /// Requests read but not yet answered (their replies not yet written).
    pending: std::sync::atomic::AtomicUsize,
    /// When the connection was accepted or its latest reply was written.
    last_reply: Mutex<Instant>,
    /// Cancelled to stop reading requests: the connection closes once the
    /// replies it still owes are written (shutdown keeps answering deploys).
    stop_reading: CancellationToken,
    /// Cancelled once requests are no longer read (the client hung up, or the
    /// connection is closing): follow streams end then.
    reading_done: CancellationToken,
    /// Set once the connection carries a follow stream: a shutdown keeps it
    /// open while processes stop (their events are the shutdown's progress)
    /// and closes it just before its final wait.
    streaming: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            pending: std::sync::atomic::AtomicUsize::new(0),
            last_reply: Mutex::new(Instant::now()),
            stop_reading: CancellationToken::new(),
            reading_done: CancellationToken::new(),
            streaming: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn is_idle(&self) -> bool {
        self.pending.load(Ordering::SeqCst) == 0
    }

    /// When the connection times out if it stays idle.
    fn idle_deadline(&self) -> Instant {
        *self.last_reply.lock().unpoisoned() + REQUEST_TIMEOUT
    }
}

/// Shared state between the accept loop, the connections and the daemon.
struct Shared {
    path: PathBuf,
    /// The listening socket's descriptor, open until the accept loop ends.
    listener_fd: std::os::fd::RawFd,
    events: EventSink,
    next_id: AtomicU64,
    /// Open connections, oldest first.
    connections: Mutex<BTreeMap<ConnectionId, Connection>>,
    /// Notified whenever a connection is removed.
    connection_closed: Notify,
    /// How many connections may be open at once.
    cap: usize,
    /// Accepted streams whose descriptor is still open, including connections
    /// already evicted whose task has not yet dropped them (see [`OpenStream`]).
    open_streams: AtomicUsize,
    /// Cancelled when the server stops accepting.
    accepting: CancellationToken,
    /// Becomes true once the accept loop has returned and the listener is closed.
    listener_closed: watch::Sender<bool>,
    /// Becomes true once a `CloseAndExit` reply has been flushed and the
    /// connection closed.
    exit_requested: watch::Sender<bool>,
}

/// A handle on a running control server. Cloning is cheap.
#[derive(Clone)]
pub struct ControlServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// Starts accepting on `listener` (already bound with its final permissions).
    pub fn start(
        listener: tokio::net::UnixListener,
        path: PathBuf,
        handler: Arc<dyn ControlHandler>,
        events: EventSink,
    ) -> ControlServer {
        let shared = Arc::new(Shared {
            listener_fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
            path,
            events,
            next_id: AtomicU64::new(1),
            connections: Mutex::new(BTreeMap::new()),
            connection_closed: Notify::new(),
            cap: connection_cap(),
            open_streams: AtomicUsize::new(0),
            accepting: CancellationToken::new(),
            listener_closed: watch::channel(false).0,
            exit_requested: watch::channel(false).0,
        });
        tokio::spawn(accept_loop(listener, shared.clone(), handler));
        ControlServer { shared }
    }

    /// The socket path as configured.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Stops accepting and closes every open connection except `keep` (the one
    /// that asked for the shutdown or retirement) and follow streams, which show
    /// the shutdown's steps until [`wait_closed_except`](Self::wait_closed_except). A connection still waiting
    /// for a reply (a deploy the shutdown interrupts) stops being read and
    /// closes once that reply is written. Returns once the listener is closed.
    pub async fn close_except(&self, keep: Option<ConnectionId>) {
        self.shared.accepting.cancel();
        {
            let connections = self.shared.connections.lock().unpoisoned();
            for (_, connection) in connections.iter().filter(|(id, _)| Some(**id) != keep) {
                if connection.activity.streaming.load(Ordering::SeqCst) {
                    continue;
                }
                connection.activity.stop_reading.cancel();
                if connection.activity.is_idle() {
                    connection.token.cancel();
                }
            }
        }
        let mut closed = self.shared.listener_closed.subscribe();
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// Waits (at most `limit`) until no connection but `keep` is open: after
    /// [`close_except`](Self::close_except), the replies still owed have been
    /// written. Connections left after `limit` are dropped.
    pub async fn wait_closed_except(&self, keep: Option<ConnectionId>, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        for (_, connection) in self
            .shared
            .connections
            .lock()
            .unpoisoned()
            .iter()
            .filter(|(id, c)| Some(**id) != keep && c.activity.streaming.load(Ordering::SeqCst))
        {
            connection.token.cancel();
        }
        loop {
            let closed = self.shared.connection_closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            let others: Vec<CancellationToken> = self
                .shared
                .connections
                .lock()
                .unpoisoned()
                .iter()
                .filter(|(id, _)| Some(**id) != keep)
                .map(|(_, connection)| connection.token.clone())
                .collect();
            if others.is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                others.iter().for_each(CancellationToken::cancel);
                return;
            }
        }
    }

    /// Resolves once a `CloseAndExit` reply has been delivered.
    pub async fn exit_requested(&self) {
        let mut requested = self.shared.exit_requested.subscribe();
        let _ = requested.wait_for(|requested| *requested).await;
    }

    /// The listening socket's descriptor (valid while the server accepts).
    pub fn listener_fd(&self) -> std::os::fd::RawFd {
        self.shared.listener_fd
    }

    /// The descriptor of open connection `id`, if it is still open.
    pub fn connection_fd(&self, id: ConnectionId) -> Option<std::os::fd::RawFd> {
        self.shared
            .connections
            .lock()
            .unpoisoned()
            .get(&id)
            .map(|connection| connection.fd)
    }

    /// How many control connections are open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.lock().unpoisoned().len()
    }
}

async fn accept_loop(
    listener: tokio::net::UnixListener,
    shared: Arc<Shared>,
    handler: Arc<dyn ControlHandler>,
) {
    loop {
        // An evicted connection gives its descriptor back only when its task
        // runs; accept no more until it has, or a burst of clients would push
        // the daemon past its descriptor budget while evictions lag behind.
        while shared.open_streams.load(Ordering::Acquire) > shared.cap {
            let closed = shared.connection_closed.notified();
            if shared.open_streams.load(Ordering::Acquire) <= shared.cap {
                break;
            }
            tokio::select! {
                _ = shared.accepting.cancelled() => break,
                _ = closed => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
        }
        let accepted = tokio::select! {
            _ = shared.accepting.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let open = OpenStream::new(&shared);
                let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
                let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                let token = CancellationToken::new();
                let activity = Activity::new();
                let admitted = {
                    let mut connections = shared.connections.lock().unpoisoned();
                    let room =
                        connections.len() < shared.cap || evict_oldest_idle(&mut connections);
                    if room {
                        connections.insert(
                            id,
                            Connection {
                                token: token.clone(),
                                fd,
                                activity: activity.clone(),
                            },
                        );
                    }
                    room
                };
                if admitted {
                    tokio::spawn(serve_connection(
                        stream,
                        open,
                        id,
                        token,
                        activity,
                        shared.clone(),
                        handler.clone(),
                    ));
                } else {
                    tokio::spawn(turn_away(stream, open, shared.cap));
                }
            }
            Err(error) => {
                // Out of file descriptors: an idle client gives its one back.
                let out_of_descriptors =
                    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                if out_of_descriptors
                    && evict_oldest_idle(&mut shared.connections.lock().unpoisoned())
                {
                    tokio::task::yield_now().await;
                    continue;
                }
                // Otherwise report, back off briefly and keep serving the
                // connections that exist.
                shared.events.emit(Event::ControlConnectionError {
                    code: errno_code(&error),
                    error: error.to_string(),
                });
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    shared.listener_closed.send_replace(true);
}

/// Closes the oldest connection with nothing in flight and forgets it. Returns
/// false when every connection is waiting for a reply.
fn evict_oldest_idle(connections: &mut BTreeMap<ConnectionId, Connection>) -> bool {
    let oldest = connections
        .iter()
        .find(|(_, connection)| connection.activity.is_idle())
        .map(|(id, _)| *id);
    let Some(evicted) = oldest.and_then(|id| connections.remove(&id)) else {
        return false;
    };
    tracing::debug!("closing an idle control connection to make room for a new one");
    evicted.token.cancel();
    true
}

/// Counts one accepted stream in [`Shared::open_streams`] for as long as it
/// lives; held by the task that owns the stream, so the count falls only when
/// the descriptor is really closed.
struct OpenStream(Arc<Shared>);

impl OpenStream {
    fn new(shared: &Arc<Shared>) -> OpenStream {
        shared.open_streams.fetch_add(1, Ordering::AcqRel);
        OpenStream(shared.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::AcqRel);
        self.0.connection_closed.notify_waiters();
    }
}

async fn turn_away(mut stream: UnixStream, _open: OpenStream, cap: usize) {
    let reply = error_reply(&format!(
        "The daemon already has {cap} open control connections, all waiting for replies; retry once some have finished."
    ));
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        stream.write_all(reply_line(&reply).as_bytes()),
    )
    .await;
    let _ = stream.shutdown().await;
}

/// One line to write, and what to do after it.
struct Outgoing {
    line: String,
    after: AfterReply,
    /// Released once the line has been written.
    _slot: Option<OwnedSemaphorePermit>,
}

async fn serve_connection(
    stream: UnixStream,
    open: OpenStream,
    id: ConnectionId,
    token: CancellationToken,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
    handler: Arc<dyn ControlHandler>,
) {
    let (reader, writer) = stream.into_split();
    let (outgoing, queue) = mpsc::unbounded_channel::<Outgoing>();
    let write_side = write_replies(writer, queue, shared.clone(), activity.clone());
    let read_side = read_requests(reader, outgoing, shared.clone(), handler, id, activity);
    // The writer ends when every sender is gone (the reader and all pending
    // handlers) or when a reply asks for the connection to close.
    let both = async {
        tokio::join!(read_side, write_side);
    };
    tokio::select! {
        _ = token.cancelled() => {}
        _ = both => {}
    }
    shared.connections.lock().unpoisoned().remove(&id);
    // The stream's halves are gone with `both`; this also wakes the accept loop.
    drop(open);
    shared.connection_closed.notify_waiters();
}

async fn read_requests(
    mut reader: tokio::net::unix::OwnedReadHalf,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
    handler: Arc<dyn ControlHandler>,
    id: ConnectionId,
    activity: Arc<Activity>,
) {
    let _done = activity.reading_done.clone().drop_guard();
    let mut buffer: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let slots = Arc::new(Semaphore::new(MAX_PENDING_PER_CONNECTION));
    loop {
        // Only an idle connection runs out of time; one waiting for a reply (a
        // deploy can take minutes) is checked again a full timeout later.
        let check_at = if activity.is_idle() {
            activity.idle_deadline()
        } else {
            Instant::now() + REQUEST_TIMEOUT
        };
        let read = tokio::select! {
            // Stop reading once the writer is gone (the connection is closing).
            _ = outgoing.closed() => return,
            _ = activity.stop_reading.cancelled() => return,
            _ = tokio::time::sleep_until(check_at.into()) => {
                if activity.is_idle() && Instant::now() >= activity.idle_deadline() {
                    tracing::debug!("closing a control connection that sent no complete request in time");
                    return;
                }
                continue;
            }
            read = reader.read(&mut chunk) => read,
        };
        let count = match read {
            Ok(0) => return,
            Ok(count) => count,
            Err(error) => {
                shared.events.emit(Event::ControlConnectionError {
                    code: errno_code(&error),
                    error: error.to_string(),
                });
                return;
            }
        };
        let scan_from = buffer.len();
        buffer.extend_from_slice(&chunk[..count]);
        let mut line_start = 0;
        let mut position = scan_from;
        while let Some(offset) = buffer[position..].iter().position(|&byte| byte == b'\n') {
            let end = position + offset;
            if end - line_start > MAX_REQUEST_LINE_BYTES {
                reject_long_line(&outgoing, &shared);
                return;
            }
            let line = String::from_utf8_lossy(&buffer[line_start..end]).into_owned();
            let slot = tokio::select! {
                _ = outgoing.closed() => return,
                slot = slots.clone().acquire_owned() => slot.ok(),
            };
            // Counted until the reply is written (`write_replies`).
            activity.pending.fetch_add(1, Ordering::SeqCst);
            dispatch_line(line, slot, &outgoing, &shared, &handler, id, &activity);
            line_start = end + 1;
            position = line_start;
        }
        buffer.drain(..line_start);
        if buffer.len() > MAX_REQUEST_LINE_BYTES {
            reject_long_line(&outgoing, &shared);
            return;
        }
    }
}

fn reject_long_line(outgoing: &mpsc::UnboundedSender<Outgoing>, shared: &Shared) {
    let message = RequestError::LineTooLong {
        limit: MAX_REQUEST_LINE_BYTES,
    }
    .to_string();
    shared.events.emit(Event::CommandFailed {
        error: message.clone(),
    });
    let _ = outgoing.send(Outgoing {
        line: reply_line(&error_reply(&message)),
        after: AfterReply::Close,
        _slot: None,
    });
}

fn dispatch_line(
    line: String,
    slot: Option<OwnedSemaphorePermit>,
    outgoing: &mpsc::UnboundedSender<Outgoing>,
    shared: &Arc<Shared>,
    handler: &Arc<dyn ControlHandler>,
    id: ConnectionId,
    activity: &Arc<Activity>,
) {
    match Request::parse_line(&line) {
        Err(error) => {
            let reply = Reply::error(error.to_string());
            send_reply(reply, slot, outgoing, shared);
        }
        Ok(Request::Follow(follow)) => {
            activity.streaming.store(true, Ordering::SeqCst);
            let source = follow.open(&shared.events);
            tokio::spawn(write_follow_stream(
                source,
                slot,
                outgoing.clone(),
                activity.clone(),
            ));
        }
        Ok(request) => {
            let handler = handler.clone();
            let outgoing = outgoing.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let reply = handler.handle(request, id).await;
                send_reply(reply, slot, &outgoing, &shared);
            });
        }
    }
}

/// Writes a follow stream's lines one at a time (the next is taken only once
/// the previous one is written, so a slow reader backs up into the stream's
/// bounded queue, never into the daemon), until the client hangs up or the
/// stream ends with an error line. The request stays pending meanwhile, so the
/// idle timeout never cuts a stream.
async fn write_follow_stream(
    mut source: FollowSource,
    slot: Option<OwnedSemaphorePermit>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    activity: Arc<Activity>,
) {
    let _request = slot;
    let in_flight = Arc::new(Semaphore::new(1));
    loop {
        let written = tokio::select! {
            _ = activity.reading_done.cancelled() => return,
            permit = in_flight.clone().acquire_owned() => permit.ok(),
        };
        let item = tokio::select! {
            _ = activity.reading_done.cancelled() => return,
            item = source.next() => item,
        };
        activity.pending.fetch_add(1, Ordering::SeqCst);
        let (line, after) = match item {
            FollowItem::Line(mut line) => {
                line.push('\n');
                (line, AfterReply::KeepOpen)
            }
            FollowItem::End(error) => (reply_line(&error_reply(&error)), AfterReply::Close),
        };
        let last = after == AfterReply::Close;
        if outgoing
            .send(Outgoing {
                line,
                after,
                _slot: written,
            })
            .is_err()
            || last
        {
            return;
        }
    }
}

fn send_reply(
    reply: Reply,
    slot: Option<OwnedSemaphorePermit>,
    outgoing: &mpsc::UnboundedSender<Outgoing>,
    shared: &Shared,
) {
    let value = match reply.result {
        Ok(payload) => success_reply(payload),
        Err(message) => {
            shared.events.emit(Event::CommandFailed {
                error: message.clone(),
            });
            error_reply(&message)
        }
    };
    let sent = outgoing.send(Outgoing {
        line: reply_line(&value),
        after: reply.after,
        _slot: slot,
    });
    if let Err(unsent) = sent {
        // The client is gone; a shutdown still has to let the daemon exit.
        if unsent.0.after == AfterReply::CloseAndExit {
            shared.exit_requested.send_replace(true);
        }
    }
}

async fn write_replies(
    mut writer: tokio::net::unix::OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
    activity: Arc<Activity>,
) {
    let mut healthy = true;
    while let Some(Outgoing { line, after, _slot }) = queue.recv().await {
        if healthy {
            // A client that does not read its replies cannot keep the connection
            // busy (and so safe from eviction) forever.
            match tokio::time::timeout(REQUEST_TIMEOUT, writer.write_all(line.as_bytes())).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    healthy = false;
                    shared.events.emit(Event::ControlConnectionError {
                        code: errno_code(&error),
                        error: error.to_string(),
                    });
                }
                Err(_) => {
                    healthy = false;
                    tracing::debug!("closing a control connection that does not read its replies");
                }
            }
            if !healthy {
                activity.stop_reading.cancel();
            }
        }
        *activity.last_reply.lock().unpoisoned() = Instant::now();
        let _ = activity
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match after {
            AfterReply::KeepOpen => {}
            AfterReply::Close | AfterReply::CloseAndExit => {
                let _ = writer.shutdown().await;
                queue.close();
                drop(writer);
                if after == AfterReply::CloseAndExit {
                    shared.exit_requested.send_replace(true);
                }
                return;
            }
        }
    }
}
