//! The proxy server as its owner sees it: options, starting the proxy threads,
//! shutdown.

use super::distribute::{Handoff, ThreadLoads, handoff_channel};
use super::errors::ErrorReporter;
use super::forward::ServerShared;
use super::router::Router;
use super::worker::{ConnectionSource, WorkerSetup, run_worker};
use crate::config::model::{IpRange, ProxyConfig};
use crate::events::EventSink;
use crate::observability::ProxyObserver;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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
    /// Per-request metrics and/or access log; `None` (or an observer with nothing
    /// to record) skips observing altogether.
    pub observer: Option<Arc<ProxyObserver>>,
    /// Peers whose forwarded headers are believed (`proxy.trustedProxies`).
    pub trusted_proxies: Vec<IpRange>,
    /// The longest a request or response body may make no progress
    /// (`proxy.bodyTimeoutMs`); `None`: no limit.
    pub body_timeout: Option<Duration>,
    /// `Upgrade` tokens tunnelled besides `websocket` (`proxy.allowedUpgrades`).
    pub allowed_upgrades: Vec<String>,
}

/// `proxy.bodyTimeoutMs` when unset.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            idle_timeout: HEADER_READ_TIMEOUT,
            threads: default_threads(),
            observer: None,
            trusted_proxies: IpRange::loopback(),
            body_timeout: Some(BODY_TIMEOUT),
            allowed_upgrades: Vec::new(),
        }
    }
}

impl ProxyOptions {
    /// The defaults with the proxy settings of a validated config, and `observer`.
    pub fn for_config(config: &ProxyConfig, observer: Option<Arc<ProxyObserver>>) -> ProxyOptions {
        ProxyOptions {
            observer,
            trusted_proxies: config.trusted_proxies.clone(),
            body_timeout: (config.body_timeout_ms > 0)
                .then(|| Duration::from_millis(config.body_timeout_ms)),
            allowed_upgrades: config.allowed_upgrades.clone(),
            ..ProxyOptions::default()
        }
    }
}

/// One proxy thread on a machine with one or two cores, two otherwise.
///
/// On two cores the second core is busy with the application (and nginx) anyway:
/// measured with `benches/proxy` on such a machine, a second proxy thread gained
/// nothing with keep-alive clients and cost about 15 % of the throughput with
/// `Connection: close` clients (connections handed between threads). With more
/// cores a second thread adds capacity; a deploy supervisor should leave the rest
/// of the machine to the application.
fn default_threads() -> usize {
    match std::thread::available_parallelism() {
        Ok(cores) if cores.get() > 2 => 2,
        _ => 1,
    }
}

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
    /// The listening socket's descriptor (owned by the listening thread).
    listener_fd: std::os::fd::RawFd,
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

    /// [`ProxyServer::bind`] with non-default [`ProxyOptions`] (metrics, access
    /// log, idle timeout).
    pub async fn bind_with_options(
        host: &str,
        port: u16,
        router: Arc<Router>,
        events: EventSink,
        options: ProxyOptions,
    ) -> io::Result<ProxyServer> {
        let bare = crate::util::host::unbracketed(host);
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

    /// [`ProxyServer::serve_listener`] with non-default [`ProxyOptions`].
    pub fn serve_listener_with_options(
        listener: std::net::TcpListener,
        router: Arc<Router>,
        events: EventSink,
        options: ProxyOptions,
    ) -> io::Result<ProxyServer> {
        ProxyServer::start(listener, router, events, options)
    }

    fn start(
        listener: std::net::TcpListener,
        router: Arc<Router>,
        events: EventSink,
        options: ProxyOptions,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let listener_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        // Accepted sockets inherit TCP_NODELAY from the listener on Linux, which
        // saves one system call per client connection.
        let _ = socket2::SockRef::from(&listener).set_nodelay(true);
        let shared = Arc::new(ServerShared {
            router,
            reporter: Arc::new(ErrorReporter::new(events)),
            tasks: tokio_util::task::TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            idle_timeout: options.idle_timeout,
            // Recording happens on the proxy threads but needs no runtime there:
            // metrics are atomics and the access log queues to its own std thread.
            observer: options.observer.filter(|o| !o.is_empty()),
            trusted_proxies: options.trusted_proxies,
            body_timeout: options.body_timeout,
            allowed_upgrades: options.allowed_upgrades,
            tunnels: Default::default(),
            connections: Default::default(),
        });
        let threads = options.threads.max(1);
        // Built up thread by thread: if a later step fails, dropping the partial
        // server stops the threads already running.
        let mut server = ProxyServer {
            local_addr,
            listener_fd,
            shared,
            stop_accepting: CancellationToken::new(),
            workers: Vec::with_capacity(threads),
        };
        let loads = ThreadLoads::new(threads);
        let mut inboxes = Vec::with_capacity(threads);
        let mut others: Vec<Option<Handoff>> = vec![None];
        for _ in 1..threads {
            let (handoff, inbox) = handoff_channel();
            others.push(Some(handoff));
            inboxes.push(inbox);
        }
        let mut sources = vec![ConnectionSource::Listener { listener, others }];
        sources.extend(inboxes.into_iter().map(ConnectionSource::Handoff));
        for (index, source) in sources.into_iter().enumerate() {
            let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
            let (accept_stopped_tx, accept_stopped) = oneshot::channel();
            let (exited_tx, exited) = oneshot::channel();
            let setup = WorkerSetup {
                index,
                local_port: local_addr.port(),
                source,
                loads: Arc::clone(&loads),
                shared: Arc::clone(&server.shared),
                stop: server.stop_accepting.clone(),
                accept_stopped: accept_stopped_tx,
            };
            std::thread::Builder::new()
                .name(format!("rollbridge-proxy-{index}"))
                .spawn(move || {
                    super::pool::set_current_shard(index);
                    // The runtime is created and dropped on this thread only, never
                    // inside the caller's async context.
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(error) => {
                            let _ = ready_tx.send(Err(error));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    runtime.block_on(run_worker(setup));
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

    /// The listening socket's descriptor, open until accepting stops; a live
    /// upgrade duplicates it before [`ProxyServer::pause`] so the socket (and its
    /// backlog) outlives this server.
    pub fn listener_fd(&self) -> std::os::fd::RawFd {
        self.listener_fd
    }

    /// Makes the next [`ProxyServer::pause`] keep client connections for the
    /// next image (see [`ProxyServer::take_idle_connections`]) instead of
    /// closing them: idle ones at once, the others once their request is done.
    pub fn hand_over_idle_connections(&self) {
        self.shared.connections.start();
    }

    /// The client connections kept by the pause, once every connection task has
    /// let go of its socket (waits until `deadline` at most), and how many
    /// connections this server still serves then (a response still being
    /// written).
    pub async fn take_idle_connections(
        &self,
        deadline: tokio::time::Instant,
    ) -> (Vec<super::IdleConnection>, usize) {
        while !self.shared.tasks.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let idle = self.shared.connections.take();
        (idle, self.shared.tasks.len())
    }

    /// Serves a client connection an earlier image handed over.
    pub fn adopt_connection(&self, connection: super::IdleConnection) {
        self.shared.connections.adopt(connection);
    }

    /// After an upgrade that did not happen: the connections this paused
    /// server still serves go on at `successor` once their request is done.
    pub fn pass_late_connections_to(&self, successor: &ProxyServer) {
        let successor = Arc::clone(&successor.shared);
        self.shared.connections.pass_to(successor);
    }

    /// Stops every spliced tunnel and hands over its sockets and unsent bytes
    /// (live upgrade). Call after [`ProxyServer::pause`].
    pub async fn freeze_tunnels(&self, limit: Duration) -> Vec<super::FrozenTunnel> {
        self.shared.tunnels.freeze(limit).await
    }

    /// Relays a tunnel an earlier image froze, on the calling runtime, counted
    /// in `count` (its release's WebSocket count) while it lives.
    pub fn adopt_tunnel(
        &self,
        tunnel: super::FrozenTunnel,
        count: Option<super::ConnectionGuard>,
    ) -> io::Result<()> {
        let release_id = tunnel.release_id.clone();
        let relay = Box::new(super::splice::Relay::resume(tunnel)?);
        let shared = Arc::clone(&self.shared);
        self.shared.tasks.spawn(async move {
            let _live = shared.tunnels.enter();
            super::tunnel_handover::relay_until_frozen(&shared, relay, release_id).await;
            drop(count);
        });
        Ok(())
    }

    /// After [`ProxyServer::pause`]: lets what is still open finish on its own,
    /// however long it takes (an upgrade that did not happen; the proxy serves
    /// again from another server on the same socket).
    pub async fn finish(self) {
        let tasks = self.shared.tasks.clone();
        tasks.close();
        tasks.wait().await;
    }

    /// Stops accepting (the listening thread lets go of the socket) and ends
    /// idle keep-alive connections; requests in flight go on and their
    /// connections close after the response. Returns once no thread accepts.
    pub async fn pause(&mut self) {
        self.stop_accepting.cancel();
        for worker in &mut self.workers {
            if let Some(accept_stopped) = worker.accept_stopped.take() {
                let _ = accept_stopped.await;
            }
        }
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
