//! The client side of the control socket, as the CLI uses it: connect, write one
//! JSON request line, read the first reply line, hang up.
//!
//! The daemon's answer is either `{"status":"success", ...payload}` (returned as
//! is, envelope key included) or `{"error": "...", "status":"error"}` (turned into
//! [`ClientError::Daemon`]).

use super::protocol::Request;
use serde_json::{Map, Value};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use super::protocol::UNKNOWN_ERROR;

/// Why a control request did not produce a successful reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing is listening on the socket path: the file is missing (`ENOENT`) or
    /// it exists but nobody accepts on it (`ECONNREFUSED`).
    #[error("connect {code} {}: {}", path.display(), no_daemon_hint(code))]
    NoDaemon { path: PathBuf, code: &'static str },
    /// Any other connect failure (permissions, a path that is not a socket, ...).
    #[error("connect {code} {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        code: String,
        #[source]
        source: io::Error,
    },
    /// The connection broke while the request was written or the reply read.
    #[error("lost the connection to the Rollbridge daemon at {}: {source}", path.display())]
    Transfer {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The reply did not arrive in time.
    #[error(
        "the Rollbridge daemon at {} did not answer within {} ms; check that it is not stuck (its log shows what it is doing)",
        path.display(),
        waited.as_millis()
    )]
    TimedOut { path: PathBuf, waited: Duration },
    /// The peer hung up without sending a reply line.
    #[error(
        "the process listening on {} closed the connection without answering; is it a Rollbridge daemon?",
        path.display()
    )]
    NoReply { path: PathBuf },
    /// The daemon hung up without a reply and no longer accepts connections: it
    /// was shutting down (or died) while the request was in flight.
    #[error(
        "the Rollbridge daemon at {} closed the connection without answering and no longer accepts connections: the daemon is shutting down or has stopped; check its log, then retry once a daemon runs again",
        path.display()
    )]
    Gone { path: PathBuf },
    /// The reply line is not a JSON object.
    #[error(
        "the process listening on {} sent a reply that is not a Rollbridge response ({detail}); is it a Rollbridge daemon?",
        path.display()
    )]
    InvalidReply { path: PathBuf, detail: String },
    /// The daemon answered with `"status":"error"`; the text is its `error`.
    #[error("{0}")]
    Daemon(String),
}

impl ClientError {
    /// True when the failure means "no daemon is running on this path": the cases
    /// where `ensure-daemon` starts one.
    pub fn is_no_daemon(&self) -> bool {
        matches!(self, ClientError::NoDaemon { .. })
    }
}

fn no_daemon_hint(code: &str) -> &'static str {
    if code == "ENOENT" {
        "no Rollbridge daemon is running for this config (start one with \"rollbridge ensure-daemon\")"
    } else {
        "the socket file exists but no daemon accepts connections on it (it may have crashed; \"rollbridge ensure-daemon\" starts a new one)"
    }
}

/// The symbolic errno name of an I/O error (`ENOENT`), or its kind when it has none.
pub fn error_code(error: &io::Error) -> String {
    crate::util::errno::errno_code(error).unwrap_or_else(|| format!("{:?}", error.kind()))
}

/// Connects to a control socket, classifying "nobody there" apart from other
/// connect failures.
pub fn connect(path: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(path).map_err(|source| classify_connect_error(path, source))
}

/// Turns a connect error into [`ClientError::NoDaemon`] for `ENOENT` and
/// `ECONNREFUSED`, and [`ClientError::Connect`] for everything else.
pub fn classify_connect_error(path: &Path, source: io::Error) -> ClientError {
    match source.raw_os_error() {
        Some(libc::ENOENT) => ClientError::NoDaemon {
            path: path.to_path_buf(),
            code: "ENOENT",
        },
        Some(libc::ECONNREFUSED) => ClientError::NoDaemon {
            path: path.to_path_buf(),
            code: "ECONNREFUSED",
        },
        _ => ClientError::Connect {
            path: path.to_path_buf(),
            code: error_code(&source),
            source,
        },
    }
}

/// Sends one request and returns the successful reply object (including
/// `"status":"success"`). `timeout` bounds the whole exchange after connecting;
/// `None` waits as long as the daemon needs (deploys and shutdowns can take minutes).
pub fn send(
    path: &Path,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<Map<String, Value>, ClientError> {
    let line = exchange(path, request.to_line().as_bytes(), timeout)?;
    let reply = parse_reply(path, &line)?;
    into_result(reply)
}

/// Writes the request line and reads the first reply line (without its LF).
fn exchange(path: &Path, text: &[u8], timeout: Option<Duration>) -> Result<Vec<u8>, ClientError> {
    let mut stream = connect(path)?;
    let deadline = timeout.map(|t| (Instant::now() + t, t));
    let transfer = |source: io::Error| ClientError::Transfer {
        path: path.to_path_buf(),
        source,
    };
    let timed_out = |waited: Duration| ClientError::TimedOut {
        path: path.to_path_buf(),
        waited,
    };

    if let Some((_, total)) = deadline {
        stream.set_write_timeout(Some(total)).map_err(transfer)?;
    }
    if let Err(error) = stream.write_all(text) {
        return Err(if is_timeout(&error) {
            timed_out(deadline.map(|(_, t)| t).unwrap_or_default())
        } else {
            transfer(error)
        });
    }

    let mut line = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        if let Some((at, total)) = deadline {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out(total));
            }
            stream.set_read_timeout(Some(left)).map_err(transfer)?;
        }
        let read = match stream.read(&mut chunk) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if is_timeout(&error) => {
                return Err(timed_out(deadline.map(|(_, t)| t).unwrap_or_default()));
            }
            Err(error) => return Err(transfer(error)),
        };
        if read == 0 {
            // The peer hung up. A reply that lacks only its final LF is still a reply.
            if line.iter().all(u8::is_ascii_whitespace) {
                return Err(hung_up_without_reply(path));
            }
            return Ok(line);
        }
        if let Some(end) = chunk[..read].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&chunk[..end]);
            return Ok(line);
        }
        line.extend_from_slice(&chunk[..read]);
    }
}

/// Tells a daemon that went away mid-request (shutdown, crash) from a peer that
/// is still there but does not speak the protocol.
fn hung_up_without_reply(path: &Path) -> ClientError {
    match connect(path) {
        Err(error) if error.is_no_daemon() => ClientError::Gone {
            path: path.to_path_buf(),
        },
        _ => ClientError::NoReply {
            path: path.to_path_buf(),
        },
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn parse_reply(path: &Path, line: &[u8]) -> Result<Map<String, Value>, ClientError> {
    let invalid = |detail: String| ClientError::InvalidReply {
        path: path.to_path_buf(),
        detail,
    };
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(reply)) => Ok(reply),
        Ok(other) => Err(invalid(format!(
            "expected a JSON object, got {}",
            kind_of(&other)
        ))),
        Err(error) => Err(invalid(format!("invalid JSON: {error}"))),
    }
}

/// Applies the envelope rule: `"status":"error"` becomes an error carrying the
/// daemon's text; anything else is a success returned whole.
pub fn into_result(reply: Map<String, Value>) -> Result<Map<String, Value>, ClientError> {
    match super::protocol::reply_error(&reply) {
        Some(message) => Err(ClientError::Daemon(message)),
        None => Ok(reply),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    fn serve_once(
        reply: &'static [u8],
    ) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut writer = stream;
            writer.write_all(reply).unwrap();
            request
        });
        (dir, path, handle)
    }

    #[test]
    fn success_reply_is_returned_whole_and_request_is_one_line() {
        let (_dir, path, server) =
            serve_once(b"{\"status\":\"success\",\"message\":\"shutdown\"}\n");
        let reply = send(&path, &Request::Shutdown, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(
            Value::Object(reply),
            json!({"status": "success", "message": "shutdown"})
        );
        assert_eq!(server.join().unwrap(), "{\"command\":\"shutdown\"}\n");
    }

    #[test]
    fn error_reply_carries_the_daemon_text_or_a_fallback() {
        let (_dir, path, _server) =
            serve_once(b"{\"error\":\"Release not found: active\",\"status\":\"error\"}\n");
        let error = send(&path, &Request::Stop { release_id: None }, None).unwrap_err();
        assert_eq!(error.to_string(), "Release not found: active");

        let (_dir, path, _server) = serve_once(b"{\"error\":\"\",\"status\":\"error\"}\n");
        let error = send(&path, &Request::Stop { release_id: None }, None).unwrap_err();
        assert_eq!(error.to_string(), UNKNOWN_ERROR);
    }

    #[test]
    fn missing_socket_and_refused_socket_mean_no_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.sock");
        let error = send(&missing, &Request::Status, None).unwrap_err();
        assert!(error.is_no_daemon());
        assert!(error.to_string().starts_with("connect ENOENT "), "{error}");

        let stale = dir.path().join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        let error = send(&stale, &Request::Status, None).unwrap_err();
        assert!(error.is_no_daemon());
        assert!(
            error.to_string().starts_with("connect ECONNREFUSED "),
            "{error}"
        );
    }

    #[test]
    fn a_silent_listener_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let error = send(&path, &Request::Status, Some(Duration::from_millis(100))).unwrap_err();
        assert!(matches!(error, ClientError::TimedOut { .. }), "{error}");
    }

    #[test]
    fn non_object_replies_are_rejected() {
        let (_dir, path, _server) = serve_once(b"[1,2]\n");
        let error = send(&path, &Request::Status, None).unwrap_err();
        assert!(matches!(error, ClientError::InvalidReply { .. }), "{error}");
    }
}
