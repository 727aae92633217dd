//! One proxy thread: its accept loop, one task per client connection, and how a
//! connection ends (done, idle too long, graceful or hard stop).

use super::forward::{self, ConnectionContext, ServerShared};
use super::headers::ClientInfo;
use super::idle::IdleSweeper;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Pause after an accept error that is not about one connection (such as running out
/// of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The life of one proxy thread: accept until told to stop, then keep serving the
/// connections already open until they are done or the server is stopped for good.
pub(crate) async fn run_worker(
    listener: TcpListener,
    shared: Arc<ServerShared>,
    stop: CancellationToken,
    accept_stopped: oneshot::Sender<()>,
) {
    // Connections wait on this thread's own child tokens, so registering and
    // dropping those waits never contends with the other proxy threads.
    let stop = ThreadStop {
        accepting: stop.child_token(),
        everything: shared.hard_stop.child_token(),
    };
    let sweeper = IdleSweeper::new(shared.idle_timeout);
    tokio::spawn(Arc::clone(&sweeper).run(stop.everything.clone()));
    accept_loop(listener, Arc::clone(&shared), sweeper, &stop).await;
    let _ = accept_stopped.send(());
    tokio::select! {
        _ = shared.tasks.wait() => {}
        _ = shared.hard_stop.cancelled() => {}
    }
}

fn http1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    // The header timeout is enforced by the idle sweeper instead (see idle.rs).
    builder.keep_alive(true);
    builder
}

/// The stop signals as seen by one proxy thread.
#[derive(Debug, Clone)]
struct ThreadStop {
    /// Stop accepting; finish open requests, then close.
    accepting: CancellationToken,
    /// Close everything now.
    everything: CancellationToken,
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<ServerShared>,
    sweeper: Arc<IdleSweeper>,
    stop: &ThreadStop,
) {
    let builder = Arc::new(http1_builder());
    let local_port =
        hyper::header::HeaderValue::from(listener.local_addr().map_or(0, |a| a.port()));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.accepting.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let context = Arc::new(ConnectionContext {
                    server: Arc::clone(&shared),
                    sweeper: Arc::clone(&sweeper),
                    client: ClientInfo::new(peer.ip(), local_port.clone()),
                    activity: Default::default(),
                });
                shared.tasks.spawn(serve_client(
                    stream,
                    context,
                    Arc::clone(&builder),
                    stop.clone(),
                ));
            }
            Err(error) if is_per_connection(&error) => {}
            Err(error) => {
                shared
                    .reporter
                    .report(&format!("accepting a proxy connection failed: {error}"));
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
    // The listener is dropped here, so new connections are refused from now on.
}

/// Accept errors that concern only the connection being accepted.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

async fn serve_client(
    stream: TcpStream,
    context: Arc<ConnectionContext>,
    builder: Arc<http1::Builder>,
    stop: ThreadStop,
) {
    if !cfg!(target_os = "linux") {
        // Streamed bodies (SSE) must not wait for the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
    }
    let _registration = context.sweeper.register(&context);
    let watched = Arc::clone(&context);
    let service = service_fn(move |request| forward::handle(Arc::clone(&context), request));
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    loop {
        tokio::select! {
            biased;
            _ = connection.as_mut() => return,
            _ = stop.everything.cancelled() => return,
            _ = stop.accepting.cancelled() => break,
            _ = watched.activity.expired() => {
                // A request may have started right after the sweeper looked.
                if !watched.activity.has_request_in_progress() {
                    return;
                }
            }
        }
    }
    // Graceful: finish the request in progress, then close instead of keeping alive.
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        biased;
        _ = connection.as_mut() => {}
        _ = stop.everything.cancelled() => {}
    }
}
