//! Finding out who owns a control socket path (protocol "inspection").
//!
//! Daemon startup, `doctor`, `recover` and `predeploy-cleanup` ask the same
//! question: is something listening on this path, and is it a Rollbridge daemon?
//! The probe connects, sends `{"command":"status"}` and waits at most
//! [`PROBE_ANSWER_TIMEOUT`] for the first reply line:
//! - a JSON object with a string `application`: a Rollbridge daemon (its active
//!   release and proxy address are read too);
//! - any other reply, or none in time: alive, owner unknown;
//! - `ENOENT` / `ECONNREFUSED` on connect: not alive;
//! - any other connect error is returned to the caller.

use super::status::Status;
use serde_json::{Map, Value};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the probe waits for the status reply once connected.
pub const PROBE_ANSWER_TIMEOUT: Duration = Duration::from_millis(1000);

/// The request the probe sends.
const PROBE_REQUEST: &[u8] = b"{\"command\":\"status\"}\n";

/// The proxy address a probed daemon reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbedProxy {
    pub host: String,
    /// Kept as the JSON number it was, so comparisons with a config are exact.
    pub port: f64,
}

/// What the probe found on a socket path.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProbeOutcome {
    /// Something accepted the connection.
    pub alive: bool,
    /// The owner's application name, when the owner is a Rollbridge daemon.
    pub application: Option<String>,
    /// The owner's active release, when the owner is a Rollbridge daemon that has one.
    pub active_release_id: Option<String>,
    /// The owner's proxy address, when it reported a usable one.
    pub proxy: Option<ProbedProxy>,
}

impl ProbeOutcome {
    fn not_alive() -> ProbeOutcome {
        ProbeOutcome::default()
    }

    fn unknown_owner() -> ProbeOutcome {
        ProbeOutcome {
            alive: true,
            ..ProbeOutcome::default()
        }
    }

    /// Alive, and the owner answered like a Rollbridge daemon.
    pub fn is_rollbridge(&self) -> bool {
        self.alive && self.application.is_some()
    }

    /// Reads a probe outcome from the first reply line of an alive socket.
    pub fn from_reply_line(line: &[u8]) -> ProbeOutcome {
        let Ok(Value::Object(reply)) = serde_json::from_slice::<Value>(line) else {
            return ProbeOutcome::unknown_owner();
        };
        ProbeOutcome::from_status(&reply)
    }

    /// Reads a probe outcome from a parsed status reply. A Rollbridge daemon
    /// always names its application (config validation requires a name).
    pub fn from_status(reply: &Map<String, Value>) -> ProbeOutcome {
        let status = Status::from_reply(reply);
        if status.application.is_empty() {
            return ProbeOutcome::unknown_owner();
        }
        ProbeOutcome {
            alive: true,
            application: Some(status.application),
            active_release_id: status.active_release_id,
            proxy: status.proxy.map(|proxy| ProbedProxy {
                host: proxy.host,
                port: f64::from(proxy.port),
            }),
        }
    }
}

/// Probes a socket path (blocking; at most about one second once connected).
pub fn probe(path: &Path) -> io::Result<ProbeOutcome> {
    let mut stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(error) if refused_or_missing(&error) => return Ok(ProbeOutcome::not_alive()),
        Err(error) => return Err(error),
    };
    let deadline = Instant::now() + PROBE_ANSWER_TIMEOUT;
    if stream
        .set_write_timeout(Some(PROBE_ANSWER_TIMEOUT))
        .is_err()
        || stream.write_all(PROBE_REQUEST).is_err()
    {
        // It accepted the connection, so it is alive; it just does not talk to us.
        return Ok(ProbeOutcome::unknown_owner());
    }
    let mut line = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Ok(ProbeOutcome::unknown_owner());
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(ProbeOutcome::unknown_owner()),
            Ok(read) => {
                if let Some(end) = chunk[..read].iter().position(|&b| b == b'\n') {
                    line.extend_from_slice(&chunk[..end]);
                    return Ok(ProbeOutcome::from_reply_line(&line));
                }
                line.extend_from_slice(&chunk[..read]);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(ProbeOutcome::unknown_owner()),
        }
    }
}

/// The same probe for async callers (the daemon checks its socket path at
/// startup). It runs [`probe`] on a blocking thread, so both sides of the
/// protocol share one implementation of §7.
pub async fn probe_async(path: &Path) -> io::Result<ProbeOutcome> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || probe(&path))
        .await
        .map_err(io::Error::other)?
}

fn refused_or_missing(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ECONNREFUSED)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    fn answer_with(reply: &'static [u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut request = String::new();
            BufReader::new(stream.try_clone().unwrap())
                .read_line(&mut request)
                .unwrap();
            let mut stream = stream;
            let _ = stream.write_all(reply);
            std::thread::sleep(Duration::from_millis(50));
        });
        (dir, path)
    }

    #[test]
    fn missing_and_refused_paths_are_not_alive() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            probe(&dir.path().join("none.sock")).unwrap(),
            ProbeOutcome::not_alive()
        );
        let stale = dir.path().join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        assert!(!probe(&stale).unwrap().alive);
    }

    #[test]
    fn a_rollbridge_daemon_is_recognised_with_its_release_and_proxy() {
        let (_dir, path) = answer_with(
            b"{\"status\":\"success\",\"activeReleaseId\":\"v1\",\"application\":\"shop\",\"proxy\":{\"host\":\"127.0.0.1\",\"port\":8182,\"upstreamHost\":\"127.0.0.1\"}}\n",
        );
        let outcome = probe(&path).unwrap();
        assert_eq!(
            outcome,
            ProbeOutcome {
                alive: true,
                application: Some("shop".into()),
                active_release_id: Some("v1".into()),
                proxy: Some(ProbedProxy {
                    host: "127.0.0.1".into(),
                    port: 8182.0
                }),
            }
        );
    }

    #[test]
    fn other_replies_and_silence_mean_owner_unknown() {
        let (_dir, path) = answer_with(b"hello\n");
        assert_eq!(probe(&path).unwrap(), ProbeOutcome::unknown_owner());

        let (_dir, path) =
            answer_with(b"{\"error\":\"Unknown command: status\",\"status\":\"error\"}\n");
        assert_eq!(probe(&path).unwrap(), ProbeOutcome::unknown_owner());

        let dir = tempfile::tempdir().unwrap();
        let silent = dir.path().join("silent.sock");
        let _listener = UnixListener::bind(&silent).unwrap();
        assert_eq!(probe(&silent).unwrap(), ProbeOutcome::unknown_owner());
    }

    #[test]
    fn the_async_probe_agrees() {
        let (_dir, path) = answer_with(
            b"{\"status\":\"success\",\"activeReleaseId\":null,\"application\":\"shop\"}\n",
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = runtime.block_on(probe_async(&path)).unwrap();
        assert!(outcome.is_rollbridge());
        assert_eq!(outcome.active_release_id, None);
        assert_eq!(outcome.proxy, None);
    }
}
