//! Fixtures for the proxy tests: upstream servers written in Rust (hyper, raw TCP and
//! tungstenite), a small keep-alive HTTP client, and polling helpers.

#![allow(dead_code)]

pub mod raw;
pub mod scripted;

pub use super::host::free_port;
pub use super::wait::*;
pub use super::ws::*;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rollbridge::events::EventSink;
use rollbridge::proxy::{ConnectionCounters, ProxyOptions, ProxyServer, ReleaseTarget, Router};
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// Runs blocking client code (tungstenite, raw sockets) off the runtime threads.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking task")
}

// ---------------------------------------------------------------------------
// The proxy under test

pub struct ProxyFixture {
    pub server: Option<ProxyServer>,
    pub router: Arc<Router>,
    pub events: EventSink,
    pub addr: SocketAddr,
}

impl ProxyFixture {
    pub async fn start() -> ProxyFixture {
        ProxyFixture::start_with(ProxyOptions::default()).await
    }

    pub async fn start_with(options: ProxyOptions) -> ProxyFixture {
        let router = Router::new();
        let events = EventSink::silent();
        let server = ProxyServer::bind_with_options(
            "127.0.0.1",
            0,
            Arc::clone(&router),
            events.clone(),
            options,
        )
        .await
        .expect("proxy binds an ephemeral port");
        let addr = server.local_addr();
        ProxyFixture {
            server: Some(server),
            router,
            events,
            addr,
        }
    }

    /// Makes a target for `upstream` and routes new requests to it.
    pub fn activate(&self, release_id: &str, upstream: SocketAddr) -> Arc<ReleaseTarget> {
        let target = target_for(release_id, upstream);
        self.router.set_active(Some(Arc::clone(&target)));
        target
    }

    pub fn proxy_errors(&self) -> Vec<rollbridge::events::EventRecord> {
        self.events
            .recent(None)
            .into_iter()
            .filter(|event| event.message == "proxy error")
            .collect()
    }

    /// Waits for a `proxy error` event whose message contains `text`.
    pub async fn wait_for_error(&self, text: &str) {
        eventually(&format!("a proxy error event with {text:?}"), || {
            self.proxy_errors().iter().any(|event| {
                event.data["error"]
                    .as_str()
                    .is_some_and(|message| message.contains(text))
            })
        })
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }
}

pub fn target_for(release_id: &str, upstream: SocketAddr) -> Arc<ReleaseTarget> {
    ReleaseTarget::new(
        release_id.to_string(),
        &upstream.ip().to_string(),
        upstream.port(),
        ConnectionCounters::new(),
    )
}

/// A port nobody listens on (bound, then released).
pub fn dead_port() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------------------
// HTTP client: one connection, requests sent one after another on it

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    pub connection_closed: Arc<AtomicBool>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to proxy");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("client handshake");
        let connection_closed = Arc::new(AtomicBool::new(false));
        let closed = Arc::clone(&connection_closed);
        tokio::spawn(async move {
            let _ = connection.await;
            closed.store(true, Ordering::SeqCst);
        });
        Client {
            sender,
            connection_closed,
        }
    }

    /// Sends `request` (with `Host: proxy.test` unless it has a Host: an HTTP/1.1
    /// request without one is refused by the proxy, as real clients always send it).
    pub async fn send(&mut self, mut request: Request<Full<Bytes>>) -> Response<Incoming> {
        if !request.headers().contains_key(http::header::HOST) {
            request.headers_mut().insert(
                http::header::HOST,
                http::HeaderValue::from_static("proxy.test"),
            );
        }
        within("client ready", self.sender.ready())
            .await
            .expect("client connection usable");
        within("response head", self.sender.send_request(request))
            .await
            .expect("response head")
    }

    pub async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(http::Method::GET, path, headers).await
    }

    /// A request without a body (`Host: proxy.test` unless given), answered whole.
    pub async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request = request.header("host", "proxy.test");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.send(request.body(Full::default()).unwrap()).await;
        let (parts, body) = response.into_parts();
        let body = within("response body", body.collect())
            .await
            .expect("complete body")
            .to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.get_with(path, &[]).await
    }
}

/// One request on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    Client::connect(addr).await.get(path).await
}

/// Reads the next data frame of a body (skipping trailers), `None` at the end.
pub async fn next_data(body: &mut Incoming) -> Option<Bytes> {
    loop {
        let frame = within("next body frame", body.frame()).await?;
        if let Ok(data) = frame.expect("body frame").into_data() {
            return Some(data);
        }
    }
}

// ---------------------------------------------------------------------------
// hyper upstream with test routes

/// A release's web process stand-in. Routes:
/// `/release` (its name), `/headers` (the request headers, one `name: value` line
/// each), `/hold` (answers once the gate opens), `/slow` and `/sse` (first chunk at
/// once, the rest after the gate opens), `/upload` (streams the request body in,
/// answers with its length), `/close` (answers with `Connection: close`), `/hop`
/// (answers with hop-by-hop headers), anything else 404. Upgrade requests are
/// declined with 403.
pub struct HttpUpstream {
    pub addr: SocketAddr,
    pub name: String,
    gate: watch::Sender<bool>,
    /// Requests that reached `/hold`, `/slow`, `/sse` or sent a first upload chunk.
    arrivals: watch::Sender<usize>,
    pub accepted: Arc<AtomicUsize>,
    pub open: Arc<AtomicUsize>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

#[derive(Clone)]
struct UpstreamState {
    name: Arc<str>,
    gate: watch::Receiver<bool>,
    arrivals: watch::Sender<usize>,
}

impl HttpUpstream {
    pub async fn start(name: &str) -> HttpUpstream {
        HttpUpstream::start_on(name, "127.0.0.1:0")
            .await
            .expect("bind upstream")
    }

    pub async fn start_on(name: &str, bind: &str) -> std::io::Result<HttpUpstream> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let (gate, gate_rx) = watch::channel(false);
        let (arrivals, _) = watch::channel(0usize);
        let state = UpstreamState {
            name: Arc::from(name),
            gate: gate_rx,
            arrivals: arrivals.clone(),
        };
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let accept_task = tokio::spawn(serve_upstream(
            listener,
            state,
            Arc::clone(&accepted),
            Arc::clone(&open),
        ));
        Ok(HttpUpstream {
            addr,
            name: name.to_string(),
            gate,
            arrivals,
            accepted,
            open,
            accept_task,
        })
    }

    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    pub async fn wait_arrivals(&self, count: usize) {
        let mut arrivals = self.arrivals.subscribe();
        within(
            "requests to reach the upstream",
            arrivals.wait_for(|seen| *seen >= count),
        )
        .await
        .expect("upstream alive");
    }
}

async fn serve_upstream(
    listener: TcpListener,
    state: UpstreamState,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        open.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        let open = Arc::clone(&open);
        connections.spawn(async move {
            let service = service_fn(move |request| route(state.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            open.fetch_sub(1, Ordering::SeqCst);
        });
        while connections.try_join_next().is_some() {}
    }
}

/// A response body fed from a channel, so the fixture controls when chunks go out.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

type FixtureBody = http_body_util::Either<Full<Bytes>, ChannelBody>;

fn full(text: impl Into<Bytes>) -> FixtureBody {
    http_body_util::Either::Left(Full::new(text.into()))
}

async fn route(
    state: UpstreamState,
    request: Request<Incoming>,
) -> Result<Response<FixtureBody>, Infallible> {
    let mut gate = state.gate.clone();
    let arrive = || state.arrivals.send_modify(|count| *count += 1);
    if request.headers().contains_key("upgrade") {
        return Ok(Response::builder()
            .status(403)
            .body(full("no upgrades here\n"))
            .unwrap());
    }
    let response = match request.uri().path() {
        "/release" => Response::new(full(state.name.to_string())),
        "/headers" => {
            let mut text = String::new();
            for (name, value) in request.headers() {
                text.push_str(&format!("{}: {}\n", name, value.to_str().unwrap_or("?")));
            }
            Response::new(full(text))
        }
        "/hold" => {
            arrive();
            let _ = gate.wait_for(|open| *open).await;
            Response::new(full("held\n"))
        }
        "/slow" | "/sse" => {
            arrive();
            let sse = request.uri().path() == "/sse";
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                let (first, second) = if sse {
                    ("data: one\n\n", "data: two\n\n")
                } else {
                    ("start\n", "end\n")
                };
                if tx.send(Bytes::from_static(first.as_bytes())).await.is_err() {
                    return;
                }
                let _ = gate.wait_for(|open| *open).await;
                let _ = tx.send(Bytes::from_static(second.as_bytes())).await;
            });
            let mut response = Response::new(http_body_util::Either::Right(ChannelBody(rx)));
            if sse {
                response.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("text/event-stream"),
                );
            }
            response
        }
        "/upload" => {
            let mut body = request.into_body();
            let mut received = 0usize;
            let mut first = true;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Ok(data) = frame.into_data() {
                    received += data.len();
                    if first && !data.is_empty() {
                        first = false;
                        arrive();
                    }
                }
            }
            Response::new(full(format!("received {received}")))
        }
        "/close" => Response::builder()
            .header("connection", "close")
            .body(full(state.name.to_string()))
            .unwrap(),
        "/hop" => Response::builder()
            .header("connection", "x-internal")
            .header("x-internal", "1")
            .header("keep-alive", "timeout=5")
            .header("x-public", "1")
            .body(full("hop\n"))
            .unwrap(),
        _ => Response::builder()
            .status(404)
            .body(full("not found\n"))
            .unwrap(),
    };
    Ok(response)
}

// ---------------------------------------------------------------------------
// Raw TCP upstream that breaks connections on purpose

#[derive(Clone, Copy, PartialEq)]
pub enum Breakage {
    /// Read the request, then reset without answering.
    ResetBeforeHeaders,
    /// Answer with headers and part of the promised body, then reset.
    ResetMidBody,
}

pub struct BrokenUpstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BrokenUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BrokenUpstream {
    pub async fn start(breakage: Breakage) -> BrokenUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    if breakage == Breakage::ResetMidBody {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
                            .await;
                        let _ = stream.flush().await;
                        // Give the proxy the chance to relay the head before the reset.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    drop(stream);
                });
            }
        });
        BrokenUpstream { addr, task }
    }
}

// ---------------------------------------------------------------------------
// WebSocket upstream (tungstenite, one thread per connection)

/// Echoes every text message back as `<name>:<message>`.
pub struct WsUpstream {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl WsUpstream {
    pub fn start(name: &str) -> WsUpstream {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let name = name.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let name = name.clone();
                std::thread::spawn(move || echo_session(stream, &name));
            }
        });
        WsUpstream { addr, stop }
    }
}

impl Drop for WsUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = StdStream::connect(self.addr);
    }
}

fn echo_session(stream: StdStream, name: &str) {
    let _ = stream.set_read_timeout(Some(PATIENCE * 3));
    let Ok(mut socket) = tungstenite::accept(stream) else {
        return;
    };
    while let Ok(message) = socket.read() {
        match message {
            tungstenite::Message::Text(text) => {
                let reply = format!("{name}:{}", text.as_str());
                if socket.send(tungstenite::Message::text(reply)).is_err() {
                    return;
                }
            }
            tungstenite::Message::Close(_) => {
                let _ = socket.close(None);
                let _ = socket.flush();
            }
            _ => {}
        }
    }
}
