//! The response body the proxy hands to hyper: either a short fixed text, or the
//! upstream body streamed frame by frame while holding the request's drain count.

use super::counters::ConnectionGuard;
use super::errors::error_chain;
use super::idle::ActiveRequest;
use super::pool::Sender;
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
    inner: Incoming,
    sender: Option<Sender>,
    target: Arc<ReleaseTarget>,
    request: ActiveRequest,
    /// Metrics and access log for this request, recorded when the body is dropped.
    observation: Option<RequestObservation>,
    _count: ConnectionGuard,
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
            inner,
            sender: Some(sender),
            target,
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
        let Some(mut sender) = self.sender.take() else {
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

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // hyper may drop a body it knows is empty (HEAD, 204, 304) without polling it.
        if self.inner.is_end_stream() {
            self.recycle_connection();
        }
    }
}

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
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Fixed(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Upstream(body) => {
                let polled = Pin::new(&mut body.inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let (Some(observation), Some(data)) =
                            (&mut body.observation, frame.data_ref())
                        {
                            observation.add_bytes(data.len() as u64);
                        }
                    }
                    Poll::Ready(None) => body.recycle_connection(),
                    Poll::Ready(Some(Err(error))) => {
                        body.sender = None;
                        let message = format!(
                            "upstream {} broke off the response body: {}",
                            body.target.upstream_authority(),
                            error_chain(error)
                        );
                        body.request.context().server.reporter.report(&message);
                    }
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Fixed(data) => data.is_none(),
            ProxyBody::Upstream(body) => body.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Fixed(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Upstream(body) => body.inner.size_hint(),
        }
    }
}
