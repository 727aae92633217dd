//! `proxy.bodyTimeoutMs`: a body that makes no progress for that long is given up
//! on. [`ProgressDeadline`] is the timer (armed only once a body has to wait, so
//! a body that arrives with its head costs nothing); [`ClientBody`] is the
//! client's request body on its way upstream, which also tells a stalled body
//! from a malformed one so the client gets 408 or 400.

use super::forward::ConnectionContext;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Fires when a body went `limit` without a frame.
#[derive(Debug)]
pub(crate) struct ProgressDeadline {
    limit: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    progressed: bool,
}

impl ProgressDeadline {
    /// `None`: no limit.
    pub(crate) fn new(limit: Option<Duration>) -> ProgressDeadline {
        ProgressDeadline {
            limit,
            timer: None,
            progressed: false,
        }
    }

    /// The body produced something: the clock starts again at the next wait.
    pub(crate) fn progressed(&mut self) {
        self.progressed = true;
    }

    /// Called when the body is waiting: ready once the limit passed without
    /// progress (the caller is woken then).
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(limit) = self.limit else {
            return Poll::Pending;
        };
        let progressed = std::mem::take(&mut self.progressed);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if progressed {
            timer.as_mut().reset(Instant::now() + limit);
        }
        timer.as_mut().poll(cx)
    }
}

/// Why the client's request body could not be passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClientBodyError {
    #[error("the client's request body made no progress (1 KiB) within proxy.bodyTimeoutMs")]
    Stalled,
    #[error("the client's request body is malformed or was cut short")]
    Malformed,
}

impl ClientBodyError {
    /// The client body failure behind a failed upstream exchange, if that was the cause.
    pub(crate) fn behind(error: &(dyn std::error::Error + 'static)) -> Option<ClientBodyError> {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = source {
            if let Some(found) = cause.downcast_ref::<ClientBodyError>() {
                return Some(*found);
            }
            source = cause.source();
        }
        None
    }
}

/// How much of a request body must arrive for the deadline to start again. A
/// slow-POST client that trickles a byte every few seconds never sends this much
/// within `proxy.bodyTimeoutMs`, so it is cut off like a silent one, while a real
/// upload on the slowest link (34 bytes a second at the default) keeps going.
pub(crate) const REQUEST_BODY_PROGRESS_BYTES: usize = 1024;

/// The client's request body, passed upstream frame by frame under the deadline.
#[derive(Debug)]
pub(crate) struct ClientBody {
    inner: Incoming,
    deadline: ProgressDeadline,
    /// Bytes received since the deadline last started again.
    since_progress: usize,
    /// Told while the body is not read to its end (see `client_io`).
    connection: Option<Arc<ConnectionContext>>,
}

impl ClientBody {
    /// `connection`: the client connection's state, told until the body ended.
    pub(crate) fn new(
        inner: Incoming,
        limit: Option<Duration>,
        connection: Option<&Arc<ConnectionContext>>,
    ) -> ClientBody {
        let connection = connection.filter(|_| !inner.is_end_stream()).cloned();
        if let Some(connection) = &connection {
            connection.handover.body_started();
        }
        ClientBody {
            inner,
            deadline: ProgressDeadline::new(limit),
            since_progress: 0,
            connection,
        }
    }

    fn ended(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.handover.body_finished();
        }
    }

    /// Counts a frame; the deadline starts again only once enough has arrived.
    fn received(&mut self, frame: &Frame<Bytes>) {
        match frame.data_ref() {
            Some(data) => self.since_progress += data.len(),
            None => self.since_progress = REQUEST_BODY_PROGRESS_BYTES,
        }
        if self.since_progress >= REQUEST_BODY_PROGRESS_BYTES {
            self.since_progress = 0;
            self.deadline.progressed();
        }
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.handover.body_abandoned();
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.received(&frame);
                if this.inner.is_end_stream() {
                    this.ended();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(ClientBodyError::Malformed))),
            Poll::Ready(None) => {
                this.ended();
                Poll::Ready(None)
            }
            Poll::Pending => match this.deadline.poll_expired(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(ClientBodyError::Stalled))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
