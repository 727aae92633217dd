//! HTTP/1.1 `Upgrade` (WebSocket and any other protocol): forward the handshake,
//! relay the upstream's answer, and once both sides switched, copy bytes both ways.

use super::body::ProxyBody;
use super::client_io::ClientIo;
use super::counters::ConnectionGuard;
use super::deadline::ClientBody;
use super::errors::UpstreamError;
use super::forward;
use super::headers;
use super::idle::ActiveRequest;
use super::quickack::QuickAckStream;
use super::splice::{Relay, Side};
use super::target::ReleaseTarget;
use super::tunnel_handover::relay_until_frozen;
use bytes::Bytes;
use http::header::{SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Parts, Upgraded};
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub(crate) const WEBSOCKET_NEEDS_GET_BODY: &str = "WebSocket upgrade requests must use GET\n";

const WEBSOCKET: &str = "websocket";

/// RFC 6455 §1.3: appended to the client's key before hashing.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The protocols of the request's `Upgrade` header that may be tunnelled
/// (`websocket`, and those of `proxy.allowedUpgrades`), lower case; `None` when
/// there is none or `Connection` does not ask for the upgrade. A request that
/// gets `None` is forwarded as a plain request without its `Upgrade`.
pub(crate) fn tunnel_tokens<B>(request: &Request<B>, allowed: &[String]) -> Option<Vec<String>> {
    if !headers::connection_lists(request.headers(), "upgrade") {
        return None;
    }
    let tokens: Vec<String> = request
        .headers()
        .get_all(UPGRADE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(|item| String::from_utf8_lossy(item.trim_ascii()).to_ascii_lowercase())
        .filter(|token| token == WEBSOCKET || allowed.contains(token))
        .collect();
    (!tokens.is_empty()).then_some(tokens)
}

/// Handles a request asking to switch to `tokens` (see [`tunnel_tokens`]).
///
/// `http_count` is the request's HTTP count; if the upstream switches protocols it is
/// exchanged for a WebSocket count that lives as long as the spliced connection.
pub(crate) async fn forward(
    active: ActiveRequest,
    target: Arc<ReleaseTarget>,
    http_count: ConnectionGuard,
    request: Request<Incoming>,
    tokens: Vec<String>,
) -> Response<ProxyBody> {
    if request.method() != Method::GET && tokens.iter().any(|token| token == WEBSOCKET) {
        // RFC 6455 handshakes are GET only. The old tool dropped the socket without a
        // word; a clear 400 tells the client what is wrong.
        return forward::text_response(StatusCode::BAD_REQUEST, WEBSOCKET_NEEDS_GET_BODY);
    }
    let context = active.context();
    let server = &context.server;
    let mut request = request.map(|body| ClientBody::new(body, server.body_timeout, None));
    let client_side = hyper::upgrade::on(&mut request);
    forward::prepare_upstream_request(&mut request, &context.client, true);
    // Only what may be tunnelled is asked for.
    if let Ok(value) = HeaderValue::from_str(&tokens.join(", ")) {
        request.headers_mut().insert(UPGRADE, value);
    }
    let websocket_key = request.headers().get(SEC_WEBSOCKET_KEY).cloned();

    let (mut response, sender) = match target.pool().send(request).await {
        Ok(exchange) => exchange,
        Err(error) => return forward::exchange_failed(&server.reporter, &error),
    };

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The upstream declined the upgrade: relay its answer like any response.
        return forward::relay_response(response, sender, target, active, http_count);
    }
    if let Err(detail) = check_switch(response.headers(), &tokens, websocket_key.as_ref()) {
        // Never a tunnel to something the request did not ask for: the upstream
        // connection is dropped with the sender.
        let error = UpstreamError::Relay {
            authority: target.upstream_authority().to_string(),
            detail: format!("101 Switching Protocols refused: {detail}"),
        };
        return forward::upstream_failed(&server.reporter, &error);
    }

    let upstream_side = hyper::upgrade::on(&mut response);
    // The upstream connection now belongs to the upgraded stream, never to the pool.
    drop(sender);
    // One atomic step: a drain never sees this connection at zero in between.
    let websocket_count = http_count.into_websocket();

    let reporter = Arc::clone(&server.reporter);
    let authority = target.upstream_authority().to_string();
    let hard_stop = server.hard_stop.clone();
    let release_id = target.release_id().to_string();
    let shared = Arc::clone(server);
    // This task lives as long as the WebSocket, so it is kept small: the relay is
    // boxed on its own and nothing else big is held while it runs.
    server.tasks.spawn(async move {
        let _live = shared.tunnels.enter();
        let Some((client, upstream)) = both_switched(client_side, upstream_side, &hard_stop).await
        else {
            return;
        };
        let relay = match (client, upstream) {
            (Ok(client), Ok(upstream)) => relay_between(client, upstream),
            // The client vanished before the switch completed: nothing to report.
            (Err(_), _) => return,
            (Ok(_), Err(error)) => {
                let message = format!(
                    "upstream {authority} upgrade failed: {}",
                    super::errors::error_chain(&error)
                );
                reporter.report(&message);
                return;
            }
        };
        match relay {
            // A live upgrade can hand a spliced tunnel to the next image.
            Relaying::Spliced(relay) => relay_until_frozen(&shared, relay, release_id).await,
            Relaying::Generic(relay) => {
                tokio::select! {
                    _ = relay => {}
                    _ = hard_stop.cancelled() => {}
                }
            }
        }
        drop(websocket_count);
    });

    let (mut parts, _empty) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, true);
    Response::from_parts(parts, ProxyBody::empty())
}

/// A `101` opens a tunnel only when it names one protocol the request asked for,
/// and, for a WebSocket, carries the `Sec-WebSocket-Accept` that matches the
/// client's key.
fn check_switch(
    headers: &HeaderMap,
    tokens: &[String],
    websocket_key: Option<&HeaderValue>,
) -> Result<(), &'static str> {
    let mut upgrades = headers.get_all(UPGRADE).iter();
    let chosen = match (upgrades.next(), upgrades.next()) {
        (Some(value), None) => value.as_bytes().trim_ascii(),
        (None, _) => return Err("no Upgrade header"),
        (Some(_), Some(_)) => return Err("more than one Upgrade header"),
    };
    let Some(chosen) = tokens
        .iter()
        .find(|token| chosen.eq_ignore_ascii_case(token.as_bytes()))
    else {
        return Err("Upgrade names a protocol the request did not ask for");
    };
    if chosen != WEBSOCKET {
        return Ok(());
    }
    let key = websocket_key.ok_or("the request carried no Sec-WebSocket-Key")?;
    let mut accepts = headers.get_all(SEC_WEBSOCKET_ACCEPT).iter();
    match (accepts.next(), accepts.next()) {
        (Some(accept), None)
            if accept.as_bytes() == websocket_accept(key.as_bytes()).as_bytes() =>
        {
            Ok(())
        }
        _ => Err("Sec-WebSocket-Accept missing or not matching the key"),
    }
}

/// RFC 6455 §4.2.2: base64(SHA-1(key + GUID)).
fn websocket_accept(key: &[u8]) -> String {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    hasher.update(key);
    hasher.update(WEBSOCKET_GUID);
    data_encoding::BASE64.encode(&hasher.finalize())
}

type Upgrade = hyper::Result<Upgraded>;

/// Waits until hyper hands over both raw connections (`None` on a hard stop).
async fn both_switched(
    client_side: OnUpgrade,
    upstream_side: OnUpgrade,
    hard_stop: &CancellationToken,
) -> Option<(Upgrade, Upgrade)> {
    tokio::select! {
        both = async { tokio::join!(client_side, upstream_side) } => Some(both),
        _ = hard_stop.cancelled() => None,
    }
}

type RelayFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A tunnel's relay: spliced between two TCP sockets (handed over by a live
/// upgrade), or tokio's copy for other stream types.
enum Relaying {
    Spliced(Box<Relay>),
    Generic(RelayFuture),
}

/// The byte relay between both sides, until both directions are closed.
///
/// Both sides are plain TCP sockets underneath (the server hands hyper a
/// `ClientIo`, the upstream pool a `TokioIo<QuickAckStream>`). Getting the sockets back lets an idle
/// session wait without holding any copy buffer; see `splice`.
fn relay_between(client: Upgraded, upstream: Upgraded) -> Relaying {
    let client = match client.downcast::<ClientIo>() {
        Ok(parts) => tcp_side(parts),
        Err(client) => {
            return Relaying::Generic(Box::pin(copy_generic(
                TokioIo::new(client),
                TokioIo::new(upstream),
                Bytes::new(),
            )));
        }
    };
    match upstream.downcast::<TokioIo<QuickAckStream>>() {
        Ok(parts) => Relaying::Spliced(Box::new(Relay::new(client, upstream_side(parts)))),
        Err(upstream) => Relaying::Generic(Box::pin(copy_generic(
            client.socket,
            TokioIo::new(upstream),
            client.early_bytes,
        ))),
    }
}

fn tcp_side(parts: Parts<ClientIo>) -> Side {
    let (socket, early_bytes) = parts.io.into_socket(parts.read_buf);
    Side {
        socket,
        early_bytes,
    }
}

/// The pool's connections wrap their socket (see `quickack`); the relay needs
/// only the socket.
fn upstream_side(parts: Parts<TokioIo<QuickAckStream>>) -> Side {
    Side {
        socket: parts.io.into_inner().into_inner(),
        early_bytes: parts.read_buf,
    }
}

/// Sessions that went through [`copy_generic`]; the test below keeps it at zero.
#[cfg(test)]
static GENERIC_RELAYS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The relay for connection types other than plain TCP, which this proxy does not
/// create today: tokio's copy with its two fixed buffers.
async fn copy_generic<C, U>(mut client: C, mut upstream: U, client_early: Bytes) -> io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    #[cfg(test)]
    GENERIC_RELAYS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    upstream.write_all(&client_early).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventSink;
    use crate::proxy::{ConnectionCounters, ProxyServer, Router};
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio::net::TcpStream;

    async fn read_head(socket: &mut TcpStream) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(socket.read_u8().await.expect("a complete HTTP head"));
        }
        String::from_utf8(head).unwrap()
    }

    /// The lean relay depends on the server and the pool giving hyper plain
    /// `TokioIo<TcpStream>`s (the pool's wrapped in `QuickAckStream`). If either ever wraps its socket, sessions would still
    /// work through `copy_generic`, silently costing 16 KiB more each: catch that here.
    #[tokio::test]
    async fn proxy_connections_use_the_lean_relay() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let (mut socket, _) = upstream.accept().await.unwrap();
            read_head(&mut socket).await;
            // The RFC 6455 §1.3 example key and its accept value.
            socket
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                .await
                .unwrap();
            let byte = socket.read_u8().await.unwrap();
            socket.write_u8(byte).await.unwrap();
        });
        let router = Router::new();
        let target = ReleaseTarget::new(
            "blue".to_string(),
            "127.0.0.1",
            upstream_addr.port(),
            ConnectionCounters::new(),
        );
        router.set_active(Some(target));
        let server = ProxyServer::bind("127.0.0.1", 0, router, EventSink::silent())
            .await
            .unwrap();

        let session = async {
            let mut client = TcpStream::connect(server.local_addr()).await.unwrap();
            client
                .write_all(
                    b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                )
                .await
                .unwrap();
            assert!(read_head(&mut client).await.starts_with("HTTP/1.1 101"));
            client.write_u8(b'x').await.unwrap();
            assert_eq!(client.read_u8().await.unwrap(), b'x');
        };
        tokio::time::timeout(Duration::from_secs(10), session)
            .await
            .expect("an echo through the upgraded connection");
        echo.await.unwrap();
        assert_eq!(GENERIC_RELAYS.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_accept_value_is_the_one_rfc_6455_gives() {
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
