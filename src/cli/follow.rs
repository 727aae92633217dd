//! The client side of follow streams (`events --follow`, `logs --follow`,
//! deploy progress): one connection that sends a follow request, checks the
//! first line, then yields one line per event or output line.

use super::human::{ColorArg, Mode};
use crate::control::client::{ClientError, connect, error_code};
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// `--follow`, `--retry` and `--color` of `events` and `logs`.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct FollowArgs {
    /// Keep printing as things happen until Ctrl-C: JSON lines when stdout is not
    /// a terminal or with --json, text lines on a terminal.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// With --follow: when the daemon stops or restarts, wait for it and go on.
    #[arg(long, requires = "follow")]
    pub retry: bool,
    #[command(flatten)]
    pub color: ColorArg,
}

/// Prints one streamed line: `json` as is in [`Mode::Plain`], `human`'s text on
/// a terminal; flushed at once so a pipe sees each line as it comes.
pub fn print_streamed(json: &str, mode: Mode, human: impl FnOnce(super::human::Paint) -> String) {
    let mut out = std::io::stdout().lock();
    let _ = match mode {
        Mode::Plain => writeln!(out, "{json}"),
        Mode::Human(paint) => writeln!(out, "{}", human(paint)),
    };
    let _ = out.flush();
}

/// What a follow command does when its stream ended: with `--retry`, say why
/// and wait for a daemon (`None`: go on); without, end — with the daemon's
/// error, or exit 1 and a hint when the daemon closed the stream.
pub fn after_end(
    end: StreamEnd,
    retry: bool,
    socket: &Path,
    what: &str,
) -> anyhow::Result<Option<std::process::ExitCode>> {
    match end {
        StreamEnd::Error(message) if !retry => anyhow::bail!("{message}"),
        StreamEnd::Closed if !retry => {
            eprintln!(
                "The daemon closed the {what} stream (it stopped or restarted); use --retry to wait for it."
            );
            Ok(Some(std::process::ExitCode::FAILURE))
        }
        StreamEnd::Error(message) => {
            eprintln!("{message}");
            Ok(None)
        }
        StreamEnd::Closed => {
            wait_for_daemon(socket, &format!("The daemon closed the {what} stream"));
            Ok(None)
        }
    }
}

/// An open follow stream.
pub struct FollowStream {
    reader: BufReader<UnixStream>,
    /// The daemon's event numbering (see `EventSink::epoch`), for resuming.
    pub epoch: String,
    /// The number of the latest event when the stream started: stored events
    /// sent first (`since`) end with it.
    pub start_seq: u64,
}

/// How a stream ended.
pub enum StreamEnd {
    /// The daemon closed the connection (it stopped or restarted).
    Closed,
    /// The daemon ended the stream with an error line (a too slow reader).
    Error(String),
}

impl FollowStream {
    /// Connects, sends `request` and reads the first line: a success naming the
    /// stream, or the daemon's error.
    pub fn open(socket: &Path, request: &Value) -> Result<FollowStream, ClientError> {
        let mut stream = connect(socket)?;
        let transfer = |source: std::io::Error| ClientError::Transfer {
            path: socket.to_path_buf(),
            source,
        };
        let mut line = request.to_string();
        line.push('\n');
        stream.write_all(line.as_bytes()).map_err(transfer)?;
        // The first line comes at once; a silent peer is not a daemon.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(transfer)?;
        let mut reader = BufReader::new(stream);
        let mut first = String::new();
        if reader.read_line(&mut first).map_err(transfer)? == 0 {
            return Err(ClientError::NoReply {
                path: socket.to_path_buf(),
            });
        }
        let reply = match serde_json::from_str::<Value>(&first) {
            Ok(Value::Object(reply)) => reply,
            _ => {
                return Err(ClientError::InvalidReply {
                    path: socket.to_path_buf(),
                    detail: "the first line of a follow stream is not a JSON object".into(),
                });
            }
        };
        let reply = crate::control::client::into_result(reply)?;
        let Some(epoch) = follow_epoch(&reply) else {
            return Err(ClientError::Daemon(format!(
                "the daemon at {} answered with a one-shot reply instead of a stream: it predates follow streams; upgrade it (\"rollbridge upgrade\" or a restart with this binary)",
                socket.display()
            )));
        };
        reader.get_ref().set_read_timeout(None).map_err(transfer)?;
        let start_seq = reply.get("seq").and_then(Value::as_u64).unwrap_or(0);
        Ok(FollowStream {
            reader,
            epoch,
            start_seq,
        })
    }

    /// The next line (without its LF), or how the stream ended.
    pub fn next_line(&mut self) -> Result<String, StreamEnd> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => Err(StreamEnd::Closed),
            Ok(_) => {
                let line = line.trim_end_matches('\n').to_string();
                match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(object))
                        if object.get("status").and_then(Value::as_str) == Some("error") =>
                    {
                        Err(StreamEnd::Error(
                            crate::control::protocol::reply_error(&object).unwrap_or_default(),
                        ))
                    }
                    _ => Ok(line),
                }
            }
        }
    }

    /// A handle that can end the stream from another thread.
    pub fn closer(&self) -> std::io::Result<UnixStream> {
        self.reader.get_ref().try_clone()
    }

    /// Bounds how long [`FollowStream::next_line`] waits from now on.
    pub fn set_wait(&self, wait: Option<Duration>) {
        let _ = self.reader.get_ref().set_read_timeout(wait);
    }
}

fn follow_epoch(reply: &Map<String, Value>) -> Option<String> {
    reply.get("follow")?;
    Some(reply.get("epoch")?.as_str()?.to_string())
}

/// Ctrl-C ends a follow command at once with exit 0: it holds nothing that
/// needs cleaning up (each line is written and flushed as it comes).
pub fn exit_cleanly_on_interrupt() {
    extern "C" fn exit_zero(_: libc::c_int) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: installs a handler that only calls an async-signal-safe function.
    unsafe {
        libc::signal(libc::SIGINT, exit_zero as *const () as libc::sighandler_t);
    }
}

/// Waits until the daemon's socket accepts connections again (`--retry`),
/// saying so once on stderr.
pub fn wait_for_daemon(socket: &Path, why: &str) {
    eprintln!(
        "{why}; waiting for the daemon at {} (Ctrl-C to stop)…",
        socket.display()
    );
    loop {
        match connect(socket) {
            Ok(_) => return,
            Err(ClientError::Connect { source, .. }) => {
                tracing::debug!(code = %error_code(&source), "control socket not ready");
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
