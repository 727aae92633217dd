//! The optional `metrics = {host, port}` listener: `GET /metrics` answers the
//! Prometheus text format; every other path is 404.

use super::Metrics;
use super::text::CONTENT_TYPE;
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE as CONTENT_TYPE_HEADER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen for metrics on {host}:{port}: {source}. Pick a free port for metrics.port (or 0 for any), or remove the metrics section"
)]
pub struct MetricsServerError {
    pub host: String,
    pub port: u16,
    pub source: std::io::Error,
}

/// A running metrics listener; dropping it stops it.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    listener_fd: std::os::fd::RawFd,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `host:port` and serves `metrics` on the current runtime.
    pub async fn bind(
        host: &str,
        port: u16,
        metrics: Arc<Metrics>,
    ) -> Result<MetricsServer, MetricsServerError> {
        let bare = crate::util::host::unbracketed(host);
        let fail = |source| MetricsServerError {
            host: host.to_string(),
            port,
            source,
        };
        let listener = TcpListener::bind((bare, port)).await.map_err(fail)?;
        MetricsServer::serve_listener(listener, metrics).map_err(fail)
    }

    /// Serves `metrics` on a listener bound elsewhere (a live upgrade's).
    pub fn serve_listener(
        listener: TcpListener,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<MetricsServer> {
        let local_addr = listener.local_addr()?;
        let listener_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, metrics, stop.clone()));
        Ok(MetricsServer {
            local_addr,
            listener_fd,
            stop,
            task: Some(task),
        })
    }

    /// The listening socket's descriptor (open while the server runs).
    pub fn listener_fd(&self) -> std::os::fd::RawFd {
        self.listener_fd
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(metrics.clone(), request));
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

async fn answer(
    metrics: Arc<Metrics>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text_response = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return Ok(text_response(
            StatusCode::NOT_FOUND,
            "Not found: metrics are served at /metrics\n".into(),
        ));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response =
            text_response(StatusCode::METHOD_NOT_ALLOWED, "Use GET /metrics\n".into());
        response
            .headers_mut()
            .insert(ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    // Rendering reads /proc for memory: keep it off the async worker threads.
    let body = tokio::task::spawn_blocking(move || metrics.render())
        .await
        .unwrap_or_default();
    let mut response = text_response(StatusCode::OK, body);
    response.headers_mut().insert(
        CONTENT_TYPE_HEADER,
        http::HeaderValue::from_static(CONTENT_TYPE),
    );
    Ok(response)
}
