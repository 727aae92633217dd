//! Per-request handling: pick the active release and count the request on it (one
//! step, see `router.rs`), rewrite the headers and relay the exchange.

use super::body::{ProxyBody, UpstreamBody};
use super::counters::ConnectionGuard;
use super::deadline::{ClientBody, ClientBodyError};
use super::edge::{self, Refusal};
use super::errors::{ErrorReporter, UpstreamError};
use super::headers::{self, ClientInfo};
use super::idle::{ActiveRequest, ConnectionActivity, IdleSweeper};
use super::pool::Sender;
use super::relay::{self, RawBody};
use super::router::{Route, Router};
use super::target::ReleaseTarget;
use super::traffic_answers;
use super::upgrade;
use crate::config::model::IpRange;
use crate::observability::{ProxyObserver, RequestObservation};
use http::header::{ALLOW, CONNECTION, CONTENT_TYPE, UPGRADE};
use http::uri::{PathAndQuery, Uri};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) const NO_ACTIVE_RELEASE_BODY: &str = "No active release\n";
pub(crate) const BAD_GATEWAY_BODY: &str = "Bad gateway\n";
pub(crate) const BODY_TIMEOUT_BODY: &str = "Request body timed out\n";
pub(crate) const BAD_BODY_BODY: &str = "Malformed request body\n";

/// State shared by every connection of one proxy server.
#[derive(Debug)]
pub(crate) struct ServerShared {
    pub(crate) router: Arc<Router>,
    pub(crate) reporter: Arc<ErrorReporter>,
    /// Spliced upgraded connections are tracked with the client connections so a
    /// shutdown waits for (and finally ends) them too.
    pub(crate) tasks: TaskTracker,
    pub(crate) hard_stop: CancellationToken,
    pub(crate) idle_timeout: std::time::Duration,
    /// Metrics and access log, when either is on.
    pub(crate) observer: Option<Arc<ProxyObserver>>,
    /// `proxy.trustedProxies`.
    pub(crate) trusted_proxies: Vec<IpRange>,
    /// `proxy.bodyTimeoutMs` (`None`: no limit).
    pub(crate) body_timeout: Option<Duration>,
    /// `proxy.allowedUpgrades`: tunnelled besides `websocket`, lower case.
    pub(crate) allowed_upgrades: Vec<String>,
    /// Where a live upgrade collects the tunnels.
    pub(crate) tunnels: super::tunnel_handover::TunnelFreezer,
    /// Where a live upgrade collects the keep-alive connections.
    pub(crate) connections: super::connection_handover::ConnectionHandover,
}

/// What one client connection's requests share.
#[derive(Debug)]
pub(crate) struct ConnectionContext {
    pub(crate) server: Arc<ServerShared>,
    /// The idle sweeper of the proxy thread serving this connection.
    pub(crate) sweeper: Arc<IdleSweeper>,
    pub(crate) client: ClientInfo,
    /// The client connection's socket (owned by the connection, which outlives
    /// its requests); read for the local address only.
    pub(crate) client_socket: RawFd,
    pub(crate) activity: ConnectionActivity,
    /// What a live upgrade needs to know to take the connection between
    /// requests (shared with the connection's socket, see `client_io`).
    pub(crate) handover: super::client_io::HandoverState,
}

pub(crate) async fn handle(
    context: Arc<ConnectionContext>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    // The release the request went to and when, for its per-release stats
    // (rollouts); recorded at the response head.
    let mut routed: Routed = None;
    let Some(observer) = context.server.observer.clone() else {
        let response = route(context, request, None, &mut routed).await;
        record_stats(routed, &response);
        return Ok(response);
    };
    // Metrics / access log: the observation is recorded when it is dropped, which
    // for a streamed body is when the body ends.
    let mut observation = observer.begin(&request, &context.client.address);
    let mut response = route(context, request, Some(&mut observation), &mut routed).await;
    record_stats(routed, &response);
    observation.responded(response.status());
    match response.body_mut() {
        ProxyBody::Upstream(body) => body.observe(observation),
        ProxyBody::Fixed(data) => {
            observation.add_bytes(data.as_ref().map_or(0, |d| d.len() as u64));
        }
    }
    Ok(response)
}

/// Where a request was routed and when.
type Routed = Option<(Arc<ReleaseTarget>, std::time::Instant)>;

fn record_stats(routed: Routed, response: &Response<ProxyBody>) {
    if let Some((target, at)) = routed {
        target.stats().record(response.status(), at.elapsed());
    }
}

async fn route(
    context: Arc<ConnectionContext>,
    mut request: Request<Incoming>,
    observation: Option<&mut RequestObservation>,
    routed: &mut Routed,
) -> Response<ProxyBody> {
    let active = ActiveRequest::begin(context);
    let context = active.context();
    if let Err(refusal) = edge::admit(&mut request, context.client_socket) {
        return refused(refusal);
    }
    // Picked and counted in one step, so a drain never misses it; the guard
    // follows the request wherever it goes and releases the count when dropped,
    // whichever way the exchange ends.
    // A request a pause held keeps its ticket until its response head, so the
    // next held request is released after it (arrival order).
    let mut _ticket = None;
    let (target, count) = loop {
        match context
            .server
            .router
            .route(request.uri().path(), request.headers())
        {
            Route::Release(target, count) => break (target, count),
            Route::NoRelease => {
                return text_response(StatusCode::SERVICE_UNAVAILABLE, NO_ACTIVE_RELEASE_BODY);
            }
            Route::Maintenance(message) => return traffic_answers::maintenance(message),
            Route::Readiness(ready) => return traffic_answers::readiness(ready),
            Route::Held(hold) => match hold.wait().await {
                Some(ticket) => _ticket = Some(ticket),
                None => return traffic_answers::held_too_long(),
            },
        }
    };
    if let Some(observation) = observation {
        observation.routed(&target);
    }
    *routed = Some((target.clone(), std::time::Instant::now()));

    if request.headers().contains_key(UPGRADE) {
        if let Some(tokens) = upgrade::tunnel_tokens(&request, &context.server.allowed_upgrades) {
            return upgrade::forward(active, target, count, request, tokens).await;
        }
        // Anything else asked for (h2c …) is dropped with the hop-by-hop headers.
    }

    prepare_upstream_request(&mut request, &context.client, false);
    if relay::qualifies(&request) {
        return match relay::send(target.pool(), request).await {
            Ok(response) => relay_direct_response(response, target, active, count),
            Err(error) => upstream_failed(&context.server.reporter, &error),
        };
    }
    let body_timeout = context.server.body_timeout;
    let connection = Some(active.shared_context());
    let request = request.map(|body| ClientBody::new(body, body_timeout, connection));
    match target.pool().send(request).await {
        Ok((response, _)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            // Never a tunnel the request did not ask for (and the proxy allowed).
            let error = UpstreamError::Relay {
                authority: target.upstream_authority().to_string(),
                detail: "101 Switching Protocols to a request without an allowed Upgrade".into(),
            };
            upstream_failed(&context.server.reporter, &error)
        }
        Ok((response, sender)) => relay_response(response, sender, target, active, count),
        Err(error) => exchange_failed(&context.server.reporter, &error),
    }
}

/// The answer to a request refused at the edge; the connection closes after it.
fn refused(refusal: Refusal) -> Response<ProxyBody> {
    let mut response = match refusal {
        Refusal::Connect => {
            let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, edge::CONNECT_REFUSED);
            response.headers_mut().insert(
                ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            response
        }
        Refusal::BadRequest(text) => text_response(StatusCode::BAD_REQUEST, text),
    };
    close_after(&mut response);
    response
}

fn close_after(response: &mut Response<ProxyBody>) {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

/// [`upstream_failed`], unless it was the client's body that failed: 408 when it
/// stalled, 400 when it was malformed (the upstream saw the request aborted).
pub(crate) fn exchange_failed(
    reporter: &ErrorReporter,
    error: &UpstreamError,
) -> Response<ProxyBody> {
    let client_failure = match error {
        UpstreamError::Exchange { source, .. } => ClientBodyError::behind(source),
        _ => None,
    };
    let mut response = match client_failure {
        None => return upstream_failed(reporter, error),
        Some(ClientBodyError::Stalled) => {
            text_response(StatusCode::REQUEST_TIMEOUT, BODY_TIMEOUT_BODY)
        }
        Some(ClientBodyError::Malformed) => text_response(StatusCode::BAD_REQUEST, BAD_BODY_BODY),
    };
    close_after(&mut response);
    response
}

/// Passes an upstream response on to the client: hop-by-hop headers go, and the
/// body keeps the request counted (and the pooled connection checked out) until
/// it has been streamed to the end.
pub(crate) fn relay_response(
    response: Response<Incoming>,
    sender: Sender,
    target: Arc<ReleaseTarget>,
    active: ActiveRequest,
    count: ConnectionGuard,
) -> Response<ProxyBody> {
    let (parts, body) = response.into_parts();
    let body = UpstreamBody::new(body, sender, target, active, count);
    Response::from_parts(for_the_client(parts), ProxyBody::Upstream(body))
}

/// An upstream response head as the client gets it: hop-by-hop headers go, and
/// the upstream's HTTP version (a property of that hop only) is not passed on, so
/// an HTTP/1.0 upstream cannot make the client connection close.
fn for_the_client(mut parts: http::response::Parts) -> http::response::Parts {
    headers::strip_hop_by_hop(&mut parts.headers, false);
    parts.version = Version::HTTP_11;
    parts
}

/// [`relay_response`] for a response of the direct path (`relay.rs`).
fn relay_direct_response(
    response: Response<RawBody>,
    target: Arc<ReleaseTarget>,
    active: ActiveRequest,
    count: ConnectionGuard,
) -> Response<ProxyBody> {
    let (parts, body) = response.into_parts();
    let body = UpstreamBody::direct(body, target, active, count);
    Response::from_parts(for_the_client(parts), ProxyBody::Upstream(body))
}

/// Turns the client's request into the one sent upstream, in place.
pub(crate) fn prepare_upstream_request<B>(
    request: &mut Request<B>,
    client: &ClientInfo,
    keep_upgrade: bool,
) {
    *request.version_mut() = Version::HTTP_11;
    if request.uri().scheme().is_some() || request.uri().authority().is_some() {
        // Absolute-form target (its authority is already the Host, see edge.rs):
        // the upstream gets the origin-form path only.
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
    }
    let headers = request.headers_mut();
    headers::strip_hop_by_hop(headers, keep_upgrade);
    headers::add_forwarded(headers, client);
}

/// 502 for a request whose upstream exchange failed before any response header;
/// the failure is reported unless it was the client that went away.
pub(crate) fn upstream_failed(
    reporter: &ErrorReporter,
    error: &UpstreamError,
) -> Response<ProxyBody> {
    if !error.caused_by_client() {
        reporter.report(error);
    }
    text_response(StatusCode::BAD_GATEWAY, BAD_GATEWAY_BODY)
}

pub(crate) fn text_response(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
