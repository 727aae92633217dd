//! One proxy thread: where its client connections come from (the listening socket
//! or the listening thread's hand-offs, see `distribute`), one task per client
//! connection, and how a connection ends (done, idle too long, graceful or hard
//! stop).

use super::body::ProxyBody;
use super::client_io::ClientIo;
use super::connection_handover::IdleConnection;
use super::distribute::{Accepted, ConnectionLoad, Handoff, Inbox, ThreadLoads};
use super::forward::{self, ConnectionContext, ServerShared};
use super::headers::ClientInfo;
use super::idle::IdleSweeper;
use bytes::Bytes;
use http::HeaderValue;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::server::conn::http1::UpgradeableConnection;
use hyper::service::HttpService;
use hyper::service::service_fn;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Pause after an accept error that is not about one connection (such as running out
/// of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How often a connection with a request in progress looks again whether it
/// reached a request boundary while a live upgrade waits for it.
const HANDOVER_TICK: Duration = Duration::from_millis(2);

/// Where one proxy thread gets its client connections.
pub(crate) enum ConnectionSource {
    /// This thread owns the listening socket; `others[i]` reaches proxy thread
    /// `i` (`None` for this thread itself).
    Listener {
        listener: std::net::TcpListener,
        others: Vec<Option<Handoff>>,
    },
    /// The listening thread hands connections to this one.
    Handoff(Inbox),
}

/// One proxy thread as its runtime sees it.
pub(crate) struct WorkerSetup {
    pub(crate) index: usize,
    /// The port clients connect to (for `X-Forwarded-Port`).
    pub(crate) local_port: u16,
    pub(crate) source: ConnectionSource,
    pub(crate) loads: Arc<ThreadLoads>,
    pub(crate) shared: Arc<ServerShared>,
    pub(crate) stop: CancellationToken,
    pub(crate) accept_stopped: oneshot::Sender<()>,
}

/// The life of one proxy thread: take connections until told to stop, then keep
/// serving the connections already open until they are done or the server is
/// stopped for good. Must run inside the thread's runtime.
pub(crate) async fn run_worker(setup: WorkerSetup) {
    let WorkerSetup {
        index,
        local_port,
        source,
        loads,
        shared,
        stop,
        accept_stopped,
    } = setup;
    // Connections wait on this thread's own child tokens, so registering and
    // dropping those waits never contends with the other proxy threads.
    let stop = ThreadStop {
        accepting: stop.child_token(),
        everything: shared.hard_stop.child_token(),
    };
    let sweeper = IdleSweeper::new(shared.idle_timeout);
    tokio::spawn(Arc::clone(&sweeper).run(stop.everything.clone()));
    let serve = ThreadServe {
        shared: Arc::clone(&shared),
        sweeper,
        builder: Arc::new(http1_builder()),
        stop: stop.clone(),
        local_port: HeaderValue::from(local_port),
    };
    match source {
        ConnectionSource::Listener { listener, others } => match TcpListener::from_std(listener) {
            Ok(listener) => {
                // Client connections an earlier image handed over are served
                // like accepted ones.
                let adopting = async {
                    loop {
                        for adopted in serve.shared.connections.adopted().await {
                            let IdleConnection { socket, unread } = adopted;
                            let peer = socket.peer_addr();
                            let stream = socket
                                .set_nonblocking(true)
                                .and_then(|()| TcpStream::from_std(socket));
                            if let (Ok(stream), Ok(peer)) = (stream, peer) {
                                serve.serve(stream, unread, peer, loads.assign(index));
                            }
                        }
                    }
                };
                tokio::select! {
                    _ = accept_loop(listener, index, &loads, &others, &serve) => {}
                    _ = adopting => {}
                }
            }
            Err(error) => shared.reporter.report(&format!(
                "the proxy cannot watch its listening socket: {error}"
            )),
        },
        ConnectionSource::Handoff(inbox) => receive_loop(inbox, &serve).await,
    }
    let _ = accept_stopped.send(());
    tokio::select! {
        _ = shared.tasks.wait() => {}
        _ = shared.hard_stop.cancelled() => {}
    }
}

fn http1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    // The header timeout is enforced by the idle sweeper instead (see idle.rs).
    builder.keep_alive(true);
    // One flat buffer per response instead of a queue of buffers for writev: the
    // same single system call, 2.7 % fewer instructions per request (callgrind).
    builder.writev(false);
    builder
}

/// The stop signals as seen by one proxy thread.
#[derive(Debug, Clone)]
struct ThreadStop {
    /// Stop accepting; finish open requests, then close.
    accepting: CancellationToken,
    /// Close everything now.
    everything: CancellationToken,
}

/// What a proxy thread needs to serve a connection.
struct ThreadServe {
    shared: Arc<ServerShared>,
    sweeper: Arc<IdleSweeper>,
    builder: Arc<http1::Builder>,
    stop: ThreadStop,
    /// The proxy port, for `X-Forwarded-Port`.
    local_port: HeaderValue,
}

impl ThreadServe {
    /// Serves a client connection; `unread` is what an earlier image had read
    /// from it and not yet parsed (empty for a new connection).
    fn serve(&self, stream: TcpStream, unread: Bytes, peer: SocketAddr, load: ConnectionLoad) {
        let peer = peer.ip();
        let trusted = self
            .shared
            .trusted_proxies
            .iter()
            .any(|range| range.contains(peer));
        let context = Arc::new(ConnectionContext {
            server: Arc::clone(&self.shared),
            sweeper: Arc::clone(&self.sweeper),
            client: ClientInfo::new(peer, self.local_port.clone(), trusted),
            client_socket: std::os::fd::AsRawFd::as_raw_fd(&stream),
            activity: Default::default(),
            handover: Default::default(),
        });
        self.shared.tasks.spawn(serve_client(
            stream,
            unread,
            context,
            Arc::clone(&self.builder),
            self.stop.clone(),
            load,
        ));
    }
}

async fn accept_loop(
    listener: TcpListener,
    index: usize,
    loads: &Arc<ThreadLoads>,
    others: &[Option<Handoff>],
    serve: &ThreadServe,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = serve.stop.accepting.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let load = loads.assign(index);
                match others.get(load.thread()).and_then(Option::as_ref) {
                    None => serve.serve(stream, Bytes::new(), peer, load),
                    Some(handoff) => hand_off(handoff, stream, peer, load, serve),
                }
            }
            Err(error) if is_per_connection(&error) => {}
            Err(error) => {
                serve
                    .shared
                    .reporter
                    .report(&format!("accepting a proxy connection failed: {error}"));
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
    // The listener is dropped here, so new connections are refused from now on.
}

/// Passes a connection to another proxy thread; if that is not possible (the
/// thread is gone), this thread serves it after all.
fn hand_off(
    handoff: &Handoff,
    stream: TcpStream,
    peer: SocketAddr,
    load: ConnectionLoad,
    serve: &ThreadServe,
) {
    let std_stream = match stream.into_std() {
        Ok(std_stream) => std_stream,
        // Deregistering failed; the socket is gone with the error.
        Err(_) => return,
    };
    let accepted: Accepted = (std_stream, peer);
    if let Err(returned) = handoff.send((accepted, load)) {
        let ((std_stream, peer), load) = returned.0;
        if let Ok(stream) = TcpStream::from_std(std_stream) {
            serve.serve(stream, Bytes::new(), peer, load);
        }
    }
}

async fn receive_loop(mut inbox: Inbox, serve: &ThreadServe) {
    loop {
        let received = tokio::select! {
            biased;
            _ = serve.stop.accepting.cancelled() => break,
            received = inbox.recv() => received,
        };
        let Some(((std_stream, peer), load)) = received else {
            break;
        };
        // Registering with this thread's runtime; a failure loses only this socket.
        if let Ok(stream) = TcpStream::from_std(std_stream) {
            serve.serve(stream, Bytes::new(), peer, load);
        }
    }
}

/// Accept errors that concern only the connection being accepted.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

async fn serve_client(
    stream: TcpStream,
    unread: Bytes,
    context: Arc<ConnectionContext>,
    builder: Arc<http1::Builder>,
    stop: ThreadStop,
    _load: ConnectionLoad,
) {
    if !cfg!(target_os = "linux") {
        // Streamed bodies (SSE) must not wait for the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
    }
    let _registration = context.sweeper.register(&context);
    let watched = Arc::clone(&context);
    let io = ClientIo::new(stream, unread, Arc::clone(&context));
    let service = service_fn(move |request| forward::handle(Arc::clone(&context), request));
    let mut connection = builder.serve_connection(io, service).with_upgrades();
    loop {
        tokio::select! {
            biased;
            _ = &mut connection => return,
            _ = stop.everything.cancelled() => return,
            _ = stop.accepting.cancelled() => break,
            _ = watched.activity.expired() => {
                // A request may have started right after the sweeper looked.
                if !watched.activity.has_request_in_progress() {
                    return;
                }
            }
        }
    }
    if watched.server.connections.handing_over() {
        // Boxed: only a handover pays for its state, not every connection's task.
        connection = match Box::pin(hand_over(connection, &watched, &stop)).await {
            HandoverEnd::Taken(taken) => return watched.server.connections.deposit(taken),
            HandoverEnd::Done => return,
            HandoverEnd::CloseAsUsual(connection) => connection,
        };
    }
    // Graceful: finish the request in progress, then close instead of keeping alive.
    Pin::new(&mut connection).graceful_shutdown();
    tokio::select! {
        biased;
        _ = &mut connection => {}
        _ = stop.everything.cancelled() => {}
    }
}

/// How a connection's part in a live upgrade ended.
enum HandoverEnd<C> {
    /// Taken from hyper between two requests.
    Taken(IdleConnection),
    /// The connection ended (or the server stopped).
    Done,
    /// Not at a request boundary hyper can be trusted with: it closes after
    /// its response, as at any graceful stop.
    CloseAsUsual(C),
}

/// The client connection as hyper serves it.
type Served<S> = UpgradeableConnection<ClientIo, S>;

/// A live upgrade: the connection reads no new request (see `client_io`);
/// once the one in progress is done it is taken from hyper, to go on in the
/// next image (or at the server serving in this one's place if the upgrade
/// does not happen).
async fn hand_over<S>(
    mut connection: Served<S>,
    context: &ConnectionContext,
    stop: &ThreadStop,
) -> HandoverEnd<Served<S>>
where
    S: HttpService<Incoming, ResBody = ProxyBody> + Unpin,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    Served<S>: Future<Output = hyper::Result<()>> + Unpin,
{
    let state = &context.handover;
    state.hold_reads(true);
    let idle = || !context.activity.has_request_in_progress();
    let settled = || idle() && (state.may_be_mid_body() || state.at_boundary());
    loop {
        if idle() && state.may_be_mid_body() {
            state.hold_reads(false);
            return HandoverEnd::CloseAsUsual(connection);
        }
        if idle() && state.at_boundary() {
            break;
        }
        // The request's end is seen right after the connection is polled; a
        // request body finishing (on the upstream's task) on the next tick.
        let progress = std::future::poll_fn(|cx| match Pin::new(&mut connection).poll(cx) {
            Poll::Ready(_) => Poll::Ready(true),
            Poll::Pending if settled() => Poll::Ready(false),
            Poll::Pending => Poll::Pending,
        });
        tokio::select! {
            biased;
            ended = progress => if ended { return HandoverEnd::Done },
            _ = stop.everything.cancelled() => return HandoverEnd::Done,
            // A client that stopped reading its response: as without an upgrade.
            _ = context.activity.expired() => if idle() { return HandoverEnd::Done },
            _ = tokio::time::sleep(HANDOVER_TICK) => {}
        }
    }
    state.keep_socket();
    Pin::new(&mut connection).graceful_shutdown();
    // Between requests hyper closes on the very next poll; needing more means
    // it is finishing a response after all, and closes as usual.
    match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut connection).poll(cx))).await {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(_)) => return HandoverEnd::Done,
        Poll::Pending => {
            state.release_socket();
            state.hold_reads(false);
            return HandoverEnd::CloseAsUsual(connection);
        }
    }
    let Some(parts) = connection.into_parts() else {
        return HandoverEnd::Done;
    };
    let (socket, unread) = parts.io.into_socket(parts.read_buf);
    match socket.into_std() {
        Ok(socket) => HandoverEnd::Taken(IdleConnection { socket, unread }),
        Err(_) => HandoverEnd::Done,
    }
}
