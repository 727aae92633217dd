//! HTTP/1.1 `Upgrade` (WebSocket and any other protocol): forward the handshake,
//! relay the upstream's answer, and once both sides switched, copy bytes both ways.

use super::body::ProxyBody;
use super::counters::ConnectionGuard;
use super::forward;
use super::headers;
use super::idle::ActiveRequest;
use super::target::ReleaseTarget;
use http::header::UPGRADE;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(crate) const WEBSOCKET_NEEDS_GET_BODY: &str = "WebSocket upgrade requests must use GET\n";

fn asks_for_websocket(headers: &HeaderMap) -> bool {
    headers.get_all(UPGRADE).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    })
}

/// Handles a request carrying `Connection: upgrade` and an `Upgrade` header.
///
/// `http_count` is the request's HTTP count; if the upstream switches protocols it is
/// exchanged for a WebSocket count that lives as long as the spliced connection.
pub(crate) async fn forward(
    active: ActiveRequest,
    target: Arc<ReleaseTarget>,
    http_count: ConnectionGuard,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    if request.method() != Method::GET && asks_for_websocket(request.headers()) {
        // RFC 6455 handshakes are GET only. The old tool dropped the socket without a
        // word; a clear 400 tells the client what is wrong.
        return forward::text_response(StatusCode::BAD_REQUEST, WEBSOCKET_NEEDS_GET_BODY);
    }
    let context = active.context();
    let client_side = hyper::upgrade::on(&mut request);
    forward::prepare_upstream_request(&mut request, &context.client, &target, true);

    let server = &context.server;
    let (mut response, sender) = match target.pool().send(request).await {
        Ok(exchange) => exchange,
        Err(error) => return forward::upstream_failed(&server.reporter, &error),
    };

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The upstream declined the upgrade: relay its answer like any response.
        return forward::relay_response(response, sender, target, active, http_count);
    }

    let upstream_side = hyper::upgrade::on(&mut response);
    // The upstream connection now belongs to the upgraded stream, never to the pool.
    drop(sender);
    let websocket_count = target.counters().track_websocket();
    drop(http_count);

    let reporter = Arc::clone(&server.reporter);
    let authority = target.upstream_authority().to_string();
    let hard_stop = server.hard_stop.clone();
    server.tasks.spawn(async move {
        splice(client_side, upstream_side, hard_stop, &reporter, &authority).await;
        drop(websocket_count);
    });

    let (mut parts, _empty) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, true);
    Response::from_parts(parts, ProxyBody::empty())
}

/// Waits until hyper hands over both raw connections, then copies bytes both ways
/// until both directions are closed (or the server is stopped for good).
async fn splice(
    client_side: OnUpgrade,
    upstream_side: OnUpgrade,
    hard_stop: CancellationToken,
    reporter: &super::errors::ErrorReporter,
    authority: &str,
) {
    let (client, upstream) = tokio::select! {
        both = async { tokio::join!(client_side, upstream_side) } => both,
        _ = hard_stop.cancelled() => return,
    };
    let (client, upstream) = match (client, upstream) {
        (Ok(client), Ok(upstream)) => (client, upstream),
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
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    tokio::select! {
        // A reset on either side simply ends the session.
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = hard_stop.cancelled() => {}
    }
}
