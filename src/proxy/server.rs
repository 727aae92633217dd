//! The listening side: accept loop, one task per client connection, shutdown.

use super::errors::ErrorReporter;
use super::forward::{self, ConnectionContext, ServerShared};
use super::headers::ClientInfo;
use super::idle::IdleSweeper;
use super::router::Router;
use crate::daemon::events::EventSink;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A client connection with no request in progress is closed after this long: a
/// client must deliver a complete request head within it (slowloris guard), and
/// idle keep-alive connections do not stay open forever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Tunables of a proxy server; the defaults are what the daemon uses.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// See [`HEADER_READ_TIMEOUT`]; whole seconds, at least one.
    pub idle_timeout: Duration,
    /// Threads serving the proxy, each with its own single-threaded runtime, its own
    /// share of the client connections and its own upstream connections.
    pub threads: usize,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            idle_timeout: HEADER_READ_TIMEOUT,
            threads: DEFAULT_THREADS,
        }
    }
}

/// Two threads use a second core when there is one; a deploy supervisor should leave
/// the rest of the machine to the application.
const DEFAULT_THREADS: usize = 2;

/// Pause after an accept error that is not about one connection (such as running out
/// of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// One proxy thread, seen from the owner.
#[derive(Debug)]
struct Worker {
    accept_stopped: Option<oneshot::Receiver<()>>,
    exited: Option<oneshot::Receiver<()>>,
}

/// A running proxy listener.
///
/// The proxy runs on threads of its own (see [`ProxyOptions::threads`]), each with a
/// single-threaded tokio runtime: a request and its upstream exchange stay on one
/// thread, and nothing else the daemon does (hooks, supervision) can delay them.
/// Dropping the server stops accepting and ends every connection at once;
/// [`ProxyServer::shutdown`] is the graceful way.
#[derive(Debug)]
pub struct ProxyServer {
    local_addr: SocketAddr,
    shared: Arc<ServerShared>,
    stop_accepting: CancellationToken,
    workers: Vec<Worker>,
}

impl ProxyServer {
    /// Binds `host:port` (an IPv4 or IPv6 address, with or without brackets, or a
    /// name; port 0 picks a free port) and starts serving.
    pub async fn bind(
        host: &str,
        port: u16,
        router: Arc<Router>,
        events: EventSink,
    ) -> io::Result<ProxyServer> {
        ProxyServer::bind_with_options(host, port, router, events, ProxyOptions::default()).await
    }

    /// [`ProxyServer::bind`] with non-default [`ProxyOptions`].
    pub async fn bind_with_options(
        host: &str,
        port: u16,
        router: Arc<Router>,
        events: EventSink,
        options: ProxyOptions,
    ) -> io::Result<ProxyServer> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let listener = TcpListener::bind((bare, port)).await.map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("cannot listen for proxy traffic on {host}:{port}: {error}"),
            )
        })?;
        let listener = listener.into_std()?;
        // Starting waits (briefly) for the proxy threads: keep that off the caller's
        // runtime threads.
        tokio::task::spawn_blocking(move || ProxyServer::start(listener, router, events, options))
            .await
            .map_err(|error| io::Error::other(format!("starting the proxy failed: {error}")))?
    }

    /// Serves on a listener bound elsewhere (systemd socket activation). Works from
    /// any thread, inside a runtime or not; returns once the proxy threads serve.
    pub fn serve_listener(
        listener: std::net::TcpListener,
        router: Arc<Router>,
        events: EventSink,
    ) -> io::Result<ProxyServer> {
        ProxyServer::start(listener, router, events, ProxyOptions::default())
    }

    fn start(
        listener: std::net::TcpListener,
        router: Arc<Router>,
        events: EventSink,
        options: ProxyOptions,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        // Accepted sockets inherit TCP_NODELAY from the listener on Linux, which
        // saves one system call per client connection.
        let _ = socket2::SockRef::from(&listener).set_nodelay(true);
        let shared = Arc::new(ServerShared {
            router,
            reporter: Arc::new(ErrorReporter::new(events)),
            tasks: tokio_util::task::TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            idle_timeout: options.idle_timeout,
        });
        let threads = options.threads.max(1);
        // Built up thread by thread: if a later step fails, dropping the partial
        // server stops the threads already running.
        let mut server = ProxyServer {
            local_addr,
            shared,
            stop_accepting: CancellationToken::new(),
            workers: Vec::with_capacity(threads),
        };
        let mut original = Some(listener);
        for index in 0..threads {
            let std_listener = if index + 1 == threads {
                original.take().expect("the last thread takes the original")
            } else {
                original
                    .as_ref()
                    .expect("the original outlives the clones")
                    .try_clone()?
            };
            let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
            let (accept_stopped_tx, accept_stopped) = oneshot::channel();
            let (exited_tx, exited) = oneshot::channel();
            let shared = Arc::clone(&server.shared);
            let stop = server.stop_accepting.clone();
            std::thread::Builder::new()
                .name(format!("rollbridge-proxy-{index}"))
                .spawn(move || {
                    super::pool::set_current_shard(index);
                    // The runtime is created and dropped on this thread only, never
                    // inside the caller's async context.
                    let started = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .and_then(|runtime| {
                            let listener = {
                                let _entered = runtime.enter();
                                TcpListener::from_std(std_listener)?
                            };
                            Ok((runtime, listener))
                        });
                    let (runtime, listener) = match started {
                        Ok(started) => started,
                        Err(error) => {
                            let _ = ready_tx.send(Err(error));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    runtime.block_on(run_worker(listener, shared, stop, accept_stopped_tx));
                    // Dropping the runtime ends what is left on it (upstream connections).
                    drop(runtime);
                    let _ = exited_tx.send(());
                })?;
            server.workers.push(Worker {
                accept_stopped: Some(accept_stopped),
                exited: Some(exited),
            });
            ready_rx
                .recv()
                .map_err(|_| io::Error::other("a proxy thread ended while starting"))??;
        }
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting at once (the listening socket is closed before this returns
    /// its first await), lets in-flight requests and upgraded connections finish
    /// until `deadline`, then closes whatever is left. Idle keep-alive client
    /// connections are closed right away. Returns when the proxy threads are gone.
    pub async fn shutdown(mut self, deadline: tokio::time::Instant) {
        self.stop_accepting.cancel();
        for worker in &mut self.workers {
            if let Some(accept_stopped) = worker.accept_stopped.take() {
                let _ = accept_stopped.await;
            }
        }
        let tasks = self.shared.tasks.clone();
        tasks.close();
        if tokio::time::timeout_at(deadline, tasks.wait())
            .await
            .is_err()
        {
            self.shared.hard_stop.cancel();
            tasks.wait().await;
        }
        self.shared.hard_stop.cancel();
        for worker in &mut self.workers {
            if let Some(exited) = worker.exited.take() {
                let _ = exited.await;
            }
        }
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.stop_accepting.cancel();
        self.shared.hard_stop.cancel();
    }
}

/// The life of one proxy thread: accept until told to stop, then keep serving the
/// connections already open until they are done or the server is stopped for good.
async fn run_worker(
    listener: TcpListener,
    shared: Arc<ServerShared>,
    stop: CancellationToken,
    accept_stopped: oneshot::Sender<()>,
) {
    // Connections wait on this thread's own child tokens, so registering and
    // dropping those waits never contends with the other proxy threads.
    let stop = ThreadStop {
        accepting: stop.child_token(),
        everything: shared.hard_stop.child_token(),
    };
    let sweeper = IdleSweeper::new(shared.idle_timeout);
    tokio::spawn(Arc::clone(&sweeper).run(stop.everything.clone()));
    accept_loop(listener, Arc::clone(&shared), sweeper, &stop).await;
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

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<ServerShared>,
    sweeper: Arc<IdleSweeper>,
    stop: &ThreadStop,
) {
    let builder = Arc::new(http1_builder());
    let local_port =
        hyper::header::HeaderValue::from(listener.local_addr().map_or(0, |a| a.port()));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.accepting.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let context = Arc::new(ConnectionContext {
                    server: Arc::clone(&shared),
                    sweeper: Arc::clone(&sweeper),
                    client: ClientInfo::new(peer.ip(), local_port.clone()),
                    activity: Default::default(),
                });
                shared.tasks.spawn(serve_client(
                    stream,
                    context,
                    Arc::clone(&builder),
                    stop.clone(),
                ));
            }
            Err(error) if is_per_connection(&error) => {}
            Err(error) => {
                shared
                    .reporter
                    .report(&format!("accepting a proxy connection failed: {error}"));
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
    // The listener is dropped here, so new connections are refused from now on.
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
    context: Arc<ConnectionContext>,
    builder: Arc<http1::Builder>,
    stop: ThreadStop,
) {
    if !cfg!(target_os = "linux") {
        // Streamed bodies (SSE) must not wait for the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
    }
    let _registration = context.sweeper.register(&context);
    let watched = Arc::clone(&context);
    let service = service_fn(move |request| forward::handle(Arc::clone(&context), request));
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    loop {
        tokio::select! {
            biased;
            _ = connection.as_mut() => return,
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
    // Graceful: finish the request in progress, then close instead of keeping alive.
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        biased;
        _ = connection.as_mut() => {}
        _ = stop.everything.cancelled() => {}
    }
}
