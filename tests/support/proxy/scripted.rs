//! An upstream written with raw TCP that answers with scripted bytes and records
//! exactly what it received (`tests/proxy/relay.rs`, `tests/proxy/hostile.rs`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the upstream does after reading one request (head, and the body its
/// `Content-Length` or chunked framing announces).
pub enum Answer {
    /// Writes these pieces (with a short pause between them, so the proxy sees
    /// them in separate reads), then waits for the next request.
    Pieces(Vec<&'static [u8]>),
    /// Writes the pieces, then closes the connection.
    PiecesThenClose(Vec<&'static [u8]>),
    /// Writes each piece with its own system call and no pause, Nagle left on,
    /// like an app that writes its head and body separately.
    Writes(Vec<&'static [u8]>),
    /// Closes the connection without answering.
    Close,
}

/// An upstream that hands out scripted answers in order, whatever connection
/// the request arrives on.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedUpstream {
    pub async fn start(answers: Vec<Answer>) -> ScriptedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Mutex::new(VecDeque::from(answers)));
        let (accepted_in, closed_in, received_in) = (
            Arc::clone(&accepted),
            Arc::clone(&closed),
            Arc::clone(&received),
        );
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted_in.fetch_add(1, Ordering::SeqCst);
                let (queue, received, closed) = (
                    Arc::clone(&queue),
                    Arc::clone(&received_in),
                    Arc::clone(&closed_in),
                );
                tokio::spawn(async move {
                    serve(stream, queue, received).await;
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        ScriptedUpstream {
            addr,
            accepted,
            closed,
            received,
            task,
        }
    }

    /// Connections this upstream has closed (the socket is dropped by then).
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Each request as received, head and body, byte for byte; a request whose
    /// connection ended early is recorded with what had arrived.
    pub fn received(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .collect()
    }

    /// The request heads received (through the blank line).
    pub fn heads(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .map(|request| match request.find("\r\n\r\n") {
                Some(end) => request[..end + 4].to_string(),
                None => request,
            })
            .collect()
    }
}

/// Reads more into `pending`; false at the end of the stream.
async fn read_more(stream: &mut TcpStream, pending: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            pending.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Where the request at the front of `pending` ends, once it is all there.
fn request_end(pending: &[u8]) -> Option<usize> {
    let head_end = pending.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")).map(str::trim))
            .map(str::to_string)
    };
    if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        let body = &pending[head_end..];
        let last = body.windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(head_end + last + 5);
    }
    let length: usize = header("content-length").map_or(0, |cl| cl.parse().unwrap_or(0));
    (pending.len() >= head_end + length).then_some(head_end + length)
}

async fn serve(
    mut stream: TcpStream,
    queue: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    let mut pending = Vec::new();
    loop {
        let end = loop {
            if let Some(end) = request_end(&pending) {
                break end;
            }
            if !read_more(&mut stream, &mut pending).await {
                if !pending.is_empty() {
                    received.lock().unwrap().push(pending);
                }
                return;
            }
        };
        let request: Vec<u8> = pending.drain(..end).collect();
        received.lock().unwrap().push(request);
        let answer = queue.lock().unwrap().pop_front().expect("an answer left");
        let (pieces, pause, close) = match answer {
            Answer::Pieces(pieces) => (pieces, true, false),
            Answer::PiecesThenClose(pieces) => (pieces, true, true),
            Answer::Writes(pieces) => (pieces, false, false),
            Answer::Close => return,
        };
        for (index, piece) in pieces.iter().enumerate() {
            if index > 0 && pause {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if stream.write_all(piece).await.is_err() {
                return;
            }
        }
        if close {
            return;
        }
    }
}
