//! The direct HTTP/1.1 exchange with the upstream for the common request: one
//! without a body (GET, HEAD, DELETE, a POST with `Content-Length: 0` …) that is
//! not an upgrade and expects no `100 Continue`.
//!
//! hyper's client runs every upstream connection as a task of its own and passes
//! each request and response through channels to it, which costs about as many
//! instructions as everything else the proxy does per request (callgrind,
//! benches/proxy/README.md). Here the request's own task writes the request head
//! to a pooled connection, reads the response head with `httparse`, and the
//! response body is read from the socket as hyper's server pulls it. Requests
//! with a body, upgrades and `Expect` still go through hyper's client (`pool.rs`).

use super::errors::UpstreamError;
use super::pool::UpstreamPool;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use std::io;
use std::task::{Context, Poll, ready};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The longest response head accepted from an upstream.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header lines accepted in one response head.
const MAX_HEADERS: usize = 128;
/// Read size for response bodies and heads.
const READ_CHUNK: usize = 16 * 1024;
/// The longest chunk-size or trailer line accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;

/// An idle or checked-out upstream connection of the direct path.
#[derive(Debug)]
pub(crate) struct RawConnection {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawConnection {
    pub(crate) fn new(stream: TcpStream) -> RawConnection {
        RawConnection {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// A pooled connection can be reused when nothing arrived on it while idle.
    /// The reactor's readiness is consulted first, so the usual answer costs no
    /// system call; a readable socket is probed (closed, or stray bytes: unusable).
    pub(crate) fn still_open(&self) -> bool {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads what the socket has into `buf`. Through `AsyncRead` rather than
    /// `try_read`: a short read clears the socket's readiness, so an idle pooled
    /// connection shows as not readable and [`Self::still_open`] needs no probe.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        use std::future::Future;
        use tokio::io::AsyncReadExt;
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let read = self.stream.read_buf(&mut self.buf);
        std::pin::pin!(read).poll(cx)
    }

    /// [`Self::poll_fill`] for a response of which some bytes already arrived:
    /// before waiting, the upstream gets its ACK at once (see [`Self::ack_now`]).
    fn poll_fill_more(
        &mut self,
        cx: &mut Context<'_>,
        acked: &mut bool,
    ) -> Poll<io::Result<usize>> {
        let polled = self.poll_fill(cx);
        if polled.is_pending() && !*acked {
            *acked = true;
            self.ack_now();
        }
        polled
    }

    /// No delayed ACK for what already arrived of this response (see `quickack`):
    /// only for responses that have to wait, so one read costs no extra call.
    fn ack_now(&self) {
        super::quickack::ack_now(&self.stream);
    }
}

/// Whether `request` (already rewritten for the upstream) can take the direct path.
pub(crate) fn qualifies(request: &Request<Incoming>) -> bool {
    use http_body::Body as _;
    request.body().is_end_stream()
        && request.method() != Method::CONNECT
        && !request.headers().contains_key(EXPECT)
}

/// Sends a body-less request and reads the response head. A pooled connection
/// found closed is replaced transparently; a request that may have reached the
/// upstream is retried on a fresh connection only when its method is idempotent.
pub(crate) async fn send(
    pool: &UpstreamPool,
    request: Request<Incoming>,
) -> Result<Response<RawBody>, UpstreamError> {
    let mut head = BytesMut::with_capacity(512);
    encode_request_head(&request, &mut head);
    let head = head.freeze();
    let method = request.method().clone();
    drop(request);
    loop {
        let (mut connection, reused) = match pool.take_idle_raw() {
            Some(connection) => (connection, true),
            None => (RawConnection::new(pool.connect_stream().await?), false),
        };
        if let Err(error) = connection.stream.write_all(&head).await {
            if reused {
                continue;
            }
            return Err(exchange_error(pool, &error.to_string()));
        }
        match read_response(connection, &method).await {
            Ok(response) => return Ok(response),
            Err(ReadFailure::ClosedBeforeResponse) if reused && is_idempotent(&method) => continue,
            Err(failure) => return Err(exchange_error(pool, &failure.to_string())),
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn exchange_error(pool: &UpstreamPool, detail: &str) -> UpstreamError {
    UpstreamError::Relay {
        authority: pool.authority().to_string(),
        detail: detail.to_string(),
    }
}

fn encode_request_head(request: &Request<Incoming>, out: &mut BytesMut) {
    out.put_slice(request.method().as_str().as_bytes());
    out.put_u8(b' ');
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    out.put_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in request.headers() {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

#[derive(Debug, thiserror::Error)]
enum ReadFailure {
    #[error("connection closed before message completed")]
    ClosedBeforeResponse,
    #[error("connection closed in the middle of the response head")]
    ClosedInHead,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("invalid response head: {0}")]
    Invalid(String),
}

async fn read_response(
    mut connection: RawConnection,
    method: &Method,
) -> Result<Response<RawBody>, ReadFailure> {
    let mut acked = false;
    loop {
        let parsed = parse_head(&mut connection.buf)?;
        let Some(head) = parsed else {
            if connection.buf.len() > MAX_HEAD_BYTES {
                return Err(ReadFailure::Invalid("response head too large".into()));
            }
            let was_empty = connection.buf.is_empty();
            let read = if was_empty {
                std::future::poll_fn(|cx| connection.poll_fill(cx)).await?
            } else {
                std::future::poll_fn(|cx| connection.poll_fill_more(cx, &mut acked)).await?
            };
            if read == 0 {
                return Err(if was_empty {
                    ReadFailure::ClosedBeforeResponse
                } else {
                    ReadFailure::ClosedInHead
                });
            }
            continue;
        };
        if head.status.is_informational() {
            if head.status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(ReadFailure::Invalid(
                    "101 Switching Protocols to a request without Upgrade".into(),
                ));
            }
            // 100 Continue, 103 Early Hints …: not for a request without a body.
            continue;
        }
        return build_response(head, connection, method);
    }
}

struct Head {
    status: StatusCode,
    version: Version,
    reason: Option<Bytes>,
    headers: HeaderMap,
}

/// Parses a complete response head off the front of `buf`; `None` when more
/// bytes are needed.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, ReadFailure> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let length = match response.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(ReadFailure::Invalid(error.to_string())),
    };
    let status = StatusCode::from_u16(response.code.unwrap_or(0))
        .map_err(|_| ReadFailure::Invalid("bad status code".into()))?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let base = buf.as_ptr() as usize;
    let offset = |part: &[u8]| part.as_ptr() as usize - base;
    let reason = response
        .reason
        .filter(|reason| Some(*reason) != status.canonical_reason())
        .map(|reason| (offset(reason.as_bytes()), reason.len()));
    // Where each header sits in the head, kept on the stack: the head is frozen
    // below and the header values become slices of it without copying.
    let mut ranges = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    let count = response.headers.len();
    for (range, header) in ranges.iter_mut().zip(response.headers.iter()) {
        *range = (
            offset(header.name.as_bytes()),
            header.name.len(),
            offset(header.value),
            header.value.len(),
        );
    }
    let head_bytes = buf.split_to(length).freeze();
    let mut headers = HeaderMap::with_capacity(count + 1);
    for &(name_at, name_len, value_at, value_len) in &ranges[..count] {
        let name = HeaderName::from_bytes(&head_bytes[name_at..name_at + name_len])
            .map_err(|_| ReadFailure::Invalid("bad header name".into()))?;
        let value =
            HeaderValue::from_maybe_shared(head_bytes.slice(value_at..value_at + value_len))
                .map_err(|_| ReadFailure::Invalid("bad header value".into()))?;
        headers.append(name, value);
    }
    Ok(Some(Head {
        status,
        version,
        reason: reason.map(|(at, len)| head_bytes.slice(at..at + len)),
        headers,
    }))
}

fn build_response(
    head: Head,
    connection: RawConnection,
    method: &Method,
) -> Result<Response<RawBody>, ReadFailure> {
    let Head {
        status,
        version,
        reason,
        mut headers,
    } = head;
    let framing = framing(&mut headers, status, method)?;
    let connection_tokens = |token: &str| super::headers::connection_lists(&headers, token);
    let reusable = framing != Framing::UntilClose
        && match version {
            Version::HTTP_10 => connection_tokens("keep-alive"),
            _ => !connection_tokens("close"),
        };
    let body = RawBody {
        acked: false,
        connection: Some(connection),
        state: match framing {
            Framing::Empty | Framing::Length(0) => BodyState::Done,
            Framing::Length(length) => BodyState::Length(length),
            Framing::Chunked => BodyState::ChunkSize,
            Framing::UntilClose => BodyState::UntilClose,
        },
        reusable,
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    if let Some(reason) = reason {
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
            response.extensions_mut().insert(reason);
        }
    }
    Ok(response)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// How the response body is delimited (RFC 9112 §6.3). A `Content-Length` that
/// comes with `Transfer-Encoding` is dropped, as the RFC requires.
fn framing(
    headers: &mut HeaderMap,
    status: StatusCode,
    method: &Method,
) -> Result<Framing, ReadFailure> {
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
        let chunked_last = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|value| value.as_bytes().rsplit(|&b| b == b',').next())
            .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked_last {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let parsed = std::str::from_utf8(item.trim_ascii())
                .ok()
                .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| ReadFailure::Invalid("bad Content-Length".into()))?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(ReadFailure::Invalid("conflicting Content-Length".into()));
            }
            length = Some(parsed);
        }
    }
    Ok(match length {
        Some(length) => Framing::Length(length),
        None => Framing::UntilClose,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    UntilClose,
    Done,
}

/// A response body read straight from the upstream connection.
#[derive(Debug)]
pub(crate) struct RawBody {
    connection: Option<RawConnection>,
    state: BodyState,
    /// The upstream keeps the connection open after this response.
    reusable: bool,
    /// An immediate ACK was asked for while this body waited ([`RawConnection::ack_now`]).
    acked: bool,
}

impl RawBody {
    pub(crate) fn is_done(&self) -> bool {
        self.state == BodyState::Done
    }

    /// The exact remaining length, when the framing says it.
    pub(crate) fn exact_remaining(&self) -> Option<u64> {
        match self.state {
            BodyState::Length(length) => Some(length),
            BodyState::Done => Some(0),
            _ => None,
        }
    }

    /// After the body ended: the connection, if it may serve another request.
    pub(crate) fn take_reusable(&mut self) -> Option<RawConnection> {
        if self.state != BodyState::Done {
            return None;
        }
        let connection = self.connection.take()?;
        (self.reusable && connection.buf.is_empty()).then_some(connection)
    }

    /// The next piece of the body; `None` at its end.
    pub(crate) fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            let Some(connection) = self.connection.as_mut() else {
                return Poll::Ready(None);
            };
            let buf = &mut connection.buf;
            match self.state {
                BodyState::Done => return Poll::Ready(None),
                BodyState::Length(remaining) => {
                    if !buf.is_empty() {
                        let (data, left) = take_counted(buf, remaining);
                        self.state = if left == 0 {
                            BodyState::Done
                        } else {
                            BodyState::Length(left)
                        };
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                BodyState::UntilClose => {
                    if !buf.is_empty() {
                        let data = buf.split().freeze();
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                BodyState::ChunkData(remaining) => {
                    if !buf.is_empty() {
                        let (data, left) = take_counted(buf, remaining);
                        self.state = if left == 0 {
                            BodyState::ChunkDataEnd
                        } else {
                            BodyState::ChunkData(left)
                        };
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                BodyState::ChunkSize | BodyState::ChunkDataEnd | BodyState::Trailers => {
                    match take_line(buf) {
                        Ok(Some(line)) => {
                            if let Err(error) = self.advance_chunk_state(&line) {
                                return Poll::Ready(Some(Err(error)));
                            }
                            continue;
                        }
                        Ok(None) => {}
                        Err(error) => return Poll::Ready(Some(Err(error))),
                    }
                }
            }
            // More bytes are needed.
            let connection = self.connection.as_mut().expect("checked above");
            match ready!(connection.poll_fill_more(cx, &mut self.acked)) {
                Ok(0) if self.state == BodyState::UntilClose => {
                    self.state = BodyState::Done;
                    self.reusable = false;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the response body was complete",
                    ))));
                }
                Ok(_) => {}
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
        }
    }

    fn advance_chunk_state(&mut self, line: &[u8]) -> io::Result<()> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        self.state = match self.state {
            BodyState::ChunkSize => {
                let digits = line
                    .split(|&b| b == b';')
                    .next()
                    .unwrap_or_default()
                    .trim_ascii();
                if digits.is_empty() || digits.len() > 16 {
                    return Err(invalid("bad chunk size"));
                }
                let size = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|text| u64::from_str_radix(text, 16).ok())
                    .ok_or_else(|| invalid("bad chunk size"))?;
                if size == 0 {
                    BodyState::Trailers
                } else {
                    BodyState::ChunkData(size)
                }
            }
            BodyState::ChunkDataEnd => {
                if !line.is_empty() {
                    return Err(invalid("chunk data longer than its size"));
                }
                BodyState::ChunkSize
            }
            // Trailer fields are not passed on; the empty line ends the body.
            BodyState::Trailers if line.is_empty() => BodyState::Done,
            other => other,
        };
        Ok(())
    }
}

/// Up to `remaining` bytes off the front of `buf`, and how many are still due.
fn take_counted(buf: &mut BytesMut, remaining: u64) -> (Bytes, u64) {
    let take = buf
        .len()
        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
    (buf.split_to(take).freeze(), remaining - take as u64)
}

/// Takes one line (without its CRLF) off the front of `buf`. A bare LF is an
/// error: stricter than nginx and haproxy, because an upstream and a client that
/// disagree on where a chunk ends is how responses get smuggled.
fn take_line(buf: &mut BytesMut) -> io::Result<Option<Vec<u8>>> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) => {
            if end == 0 || buf[end - 1] != b'\r' {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bare LF in chunked framing",
                ));
            }
            let mut line = buf.split_to(end + 1);
            line.truncate(end - 1);
            Ok(Some(line.to_vec()))
        }
        None if buf.len() > MAX_CHUNK_LINE => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "chunk line too long",
        )),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn framing_of(
        pairs: &[(&'static str, &'static str)],
        method: Method,
    ) -> Result<Framing, String> {
        framing(&mut headers(pairs), StatusCode::OK, &method).map_err(|e| e.to_string())
    }

    #[test]
    fn framing_follows_rfc_9112() {
        assert_eq!(
            framing_of(&[("content-length", "5")], Method::GET),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing_of(&[("content-length", "5, 5")], Method::GET),
            Ok(Framing::Length(5))
        );
        assert!(framing_of(&[("content-length", "5, 6")], Method::GET).is_err());
        assert!(framing_of(&[("content-length", "+5")], Method::GET).is_err());
        assert_eq!(
            framing_of(&[("content-length", "5")], Method::HEAD),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing_of(
                &[
                    ("transfer-encoding", "gzip, chunked"),
                    ("content-length", "5")
                ],
                Method::GET
            ),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing_of(&[("transfer-encoding", "gzip")], Method::GET),
            Ok(Framing::UntilClose)
        );
        assert_eq!(framing_of(&[], Method::GET), Ok(Framing::UntilClose));
        let mut with_both = headers(&[("transfer-encoding", "chunked"), ("content-length", "5")]);
        framing(&mut with_both, StatusCode::OK, &Method::GET).unwrap();
        assert!(!with_both.contains_key("content-length"));
        for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
            let mut map = headers(&[("content-length", "5")]);
            assert_eq!(
                framing(&mut map, status, &Method::GET).unwrap(),
                Framing::Empty
            );
        }
    }

    #[test]
    fn chunk_lines_accept_extensions_and_upper_case_but_not_bare_newlines() {
        let mut buf = BytesMut::from(&b"1A;name=\"x\"\r\nrest"[..]);
        let line = take_line(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..], b"rest");
        assert!(take_line(&mut BytesMut::from(&b"1A\nrest"[..])).is_err());
        assert!(take_line(&mut BytesMut::from(&b"\nrest"[..])).is_err());
        let mut body = RawBody {
            acked: false,
            connection: None,
            state: BodyState::ChunkSize,
            reusable: true,
        };
        body.advance_chunk_state(&line).unwrap();
        assert_eq!(body.state, BodyState::ChunkData(26));
        body.state = BodyState::ChunkSize;
        assert!(body.advance_chunk_state(b"zz").is_err());
        assert!(body.advance_chunk_state(b"").is_err());
        body.state = BodyState::ChunkDataEnd;
        assert!(
            body.advance_chunk_state(b"x").is_err(),
            "data longer than its size"
        );
        let mut long = BytesMut::from(&[b'1'; MAX_CHUNK_LINE + 1][..]);
        assert!(take_line(&mut long).is_err());
    }

    #[test]
    fn response_heads_parse_incrementally() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(parse_head(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"ngth: 2\r\nX-A: 1\r\nX-A: 2\r\n\r\nok");
        let head = parse_head(&mut buf).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.reason.is_none(), "the canonical reason is not kept");
        assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(&buf[..], b"ok", "the body stays in the buffer");
    }
}
