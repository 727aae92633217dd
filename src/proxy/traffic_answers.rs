//! The answers the proxy gives itself under the traffic rules: maintenance,
//! a pause that held a request too long, and the readiness path.

use super::body::ProxyBody;
use super::forward::text_response;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

/// `Retry-After` (seconds) on maintenance and pause answers.
pub const RETRY_AFTER_SECONDS: u32 = 30;
pub(crate) const HELD_TOO_LONG_BODY: &str = "Service paused; try again shortly\n";
pub(crate) const READY_BODY: &str = "ready\n";
pub(crate) const NOT_READY_BODY: &str = "not ready\n";

/// 503 with the operator's message.
pub(crate) fn maintenance(message: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::Fixed(Some(message)));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    retry_later(response)
}

/// 503 for a request held by a pause past its bound.
pub(crate) fn held_too_long() -> Response<ProxyBody> {
    retry_later(text_response(
        StatusCode::SERVICE_UNAVAILABLE,
        HELD_TOO_LONG_BODY,
    ))
}

/// 200 while this proxy routes traffic, 503 in maintenance, paused or stopping.
pub(crate) fn readiness(ready: bool) -> Response<ProxyBody> {
    if ready {
        text_response(StatusCode::OK, READY_BODY)
    } else {
        text_response(StatusCode::SERVICE_UNAVAILABLE, NOT_READY_BODY)
    }
}

fn retry_later(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}
