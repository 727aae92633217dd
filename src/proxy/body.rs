//! The response body the proxy hands to hyper: either a short fixed text, or the
//! upstream body streamed frame by frame while holding the request's drain count.

use super::counters::ConnectionGuard;
use super::deadline::ProgressDeadline;
use super::errors::error_chain;
use super::idle::ActiveRequest;
use super::pool::Sender;
use super::relay::RawBody;
use super::target::ReleaseTarget;
use crate::observability::RequestObservation;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// An upstream response body in flight.
///
/// Dropping it (body finished, client gone, connection aborted, task cancelled or
/// unwinding) releases the request's count. The upstream connection goes back to the
/// pool only when the body was read to its end; otherwise it is closed.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    source: Source,
    target: Arc<ReleaseTarget>,
    request: ActiveRequest,
    /// Metrics and access log for this request, recorded when the body is dropped.
    observation: Option<RequestObservation>,
    /// `proxy.bodyTimeoutMs` while waiting for the upstream.
    deadline: ProgressDeadline,
    _count: ConnectionGuard,
}

/// Where the body comes from: hyper's client, or the direct exchange.
#[derive(Debug)]
enum Source {
    Hyper {
        inner: Incoming,
        sender: Option<Sender>,
    },
    Direct(RawBody),
}

impl UpstreamBody {
    pub(crate) fn new(
        inner: Incoming,
        sender: Sender,
        target: Arc<ReleaseTarget>,
        request: ActiveRequest,
        count: ConnectionGuard,
    ) -> UpstreamBody {
        UpstreamBody {
            source: Source::Hyper {
                inner,
                sender: Some(sender),
            },
            target,
            deadline: ProgressDeadline::new(request.context().server.body_timeout),
            request,
            observation: None,
            _count: count,
        }
    }

    /// A body read straight from the upstream connection (`relay.rs`).
    pub(crate) fn direct(
        body: RawBody,
        target: Arc<ReleaseTarget>,
        request: ActiveRequest,
        count: ConnectionGuard,
    ) -> UpstreamBody {
        UpstreamBody {
            source: Source::Direct(body),
            target,
            deadline: ProgressDeadline::new(request.context().server.body_timeout),
            request,
            observation: None,
            _count: count,
        }
    }

    /// Records the request (metrics, access log) when this body ends.
    pub(crate) fn observe(&mut self, observation: RequestObservation) {
        self.observation = Some(observation);
    }

    fn recycle_connection(&mut self) {
        let sender = match &mut self.source {
            Source::Hyper { sender, .. } => sender.take(),
            Source::Direct(body) => {
                if let Some(connection) = body.take_reusable() {
                    self.target.pool().put_raw(connection);
                }
                return;
            }
        };
        let Some(mut sender) = sender else {
            return;
        };
        if sender.is_ready() {
            self.target.pool().put(sender);
            return;
        }
        // The connection task has not caught up yet (or is still sending a request
        // body the upstream answered early). Pool it once it is really idle, so a
        // later request never waits behind it.
        let target = Arc::clone(&self.target);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if sender.ready().await.is_ok() {
                    target.pool().put(sender);
                }
            });
        }
    }
}

impl UpstreamBody {
    fn poll_upstream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled: Poll<Option<Result<Frame<Bytes>, String>>> = match &mut self.source {
            Source::Hyper { inner, .. } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Err(error))) => {
                    let text = error_chain(&error);
                    self.fail(&text);
                    return Poll::Ready(Some(Err(error.into())));
                }
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            Source::Direct(body) => match body.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.to_string()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.deadline.progressed();
                if let (Some(observation), Some(data)) = (&mut self.observation, frame.data_ref()) {
                    observation.add_bytes(data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.recycle_connection();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(text))) => {
                // An error ends the body: hyper aborts the response to the client.
                self.fail(&text);
                Poll::Ready(Some(Err(text.into())))
            }
            Poll::Pending => match self.deadline.poll_expired(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    let text = "no data within proxy.bodyTimeoutMs".to_string();
                    self.fail(&text);
                    Poll::Ready(Some(Err(text.into())))
                }
            },
        }
    }

    /// The upstream broke off the body: the connection is not reused, and the
    /// failure is reported.
    fn fail(&mut self, detail: &str) {
        if let Source::Hyper { sender, .. } = &mut self.source {
            *sender = None;
        }
        let message = format!(
            "upstream {} broke off the response body: {}",
            self.target.upstream_authority(),
            detail
        );
        self.request.context().server.reporter.report(&message);
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // hyper may drop a body it knows is empty (HEAD, 204, 304) without polling it.
        let ended = match &self.source {
            Source::Hyper { inner, .. } => inner.is_end_stream(),
            Source::Direct(body) => body.is_done(),
        };
        if ended {
            self.recycle_connection();
        }
    }
}

/// Why a response body broke off (hyper's error, or the direct path's).
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Every response the proxy produces.
#[derive(Debug)]
pub(crate) enum ProxyBody {
    Fixed(Option<Bytes>),
    Upstream(UpstreamBody),
}

impl ProxyBody {
    pub(crate) fn text(text: &'static str) -> ProxyBody {
        ProxyBody::Fixed(Some(Bytes::from_static(text.as_bytes())))
    }

    pub(crate) fn empty() -> ProxyBody {
        ProxyBody::Fixed(None)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Fixed(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Upstream(body) => body.poll_upstream(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Fixed(data) => data.is_none(),
            ProxyBody::Upstream(body) => match &body.source {
                Source::Hyper { inner, .. } => inner.is_end_stream(),
                Source::Direct(direct) => direct.is_done(),
            },
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Fixed(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Upstream(body) => match &body.source {
                Source::Hyper { inner, .. } => inner.size_hint(),
                Source::Direct(direct) => match direct.exact_remaining() {
                    Some(length) => SizeHint::with_exact(length),
                    None => SizeHint::default(),
                },
            },
        }
    }
}
