//! Built-in health plugins: `http` (GET, 2xx is healthy), `tcp` (a connection is
//! accepted) and `command` (exit status 0).
//!
//! Options of `http` and `tcp`: `host` (default `127.0.0.1`; an IPv6 address may be
//! given with or without brackets), `port` (default: the process's port) and, for
//! `http`, `path` (default `/`). Redirects are not followed: a 3xx answer is "not
//! yet" with the detail `HTTP 302`.

use super::shell::{ShellOutcome, run_bounded};
use crate::plugins::{HealthPlugin, HealthVerdict, HookCall, HookError, HookFuture};
use crate::util::errno::plain_io_reason;
use crate::util::host::unbracketed;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

const DEFAULT_HOST: &str = "127.0.0.1";

/// `http://<host>:<port><path>`, with an IPv6 host in brackets.
pub fn http_url(host: &str, port: u16, path: &str) -> String {
    let slash = if path.starts_with('/') { "" } else { "/" };
    format!("http://{}{slash}{path}", authority(host, port))
}

fn authority(host: &str, port: u16) -> String {
    let bare = unbracketed(host);
    if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    }
}

fn option_str<'a>(
    options: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, HookError> {
    match options.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(HookError::Failed(format!(
            "the health check option `{key}` must be a string"
        ))),
    }
}

/// Host and port to probe, from the options and the process.
fn target(call: &HookCall, plugin: &str) -> Result<(String, u16), HookError> {
    let host = option_str(&call.options, "host")?
        .unwrap_or(DEFAULT_HOST)
        .to_string();
    let port = match call.options.get("port") {
        None | Some(Value::Null) => call.process.port,
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    HookError::Failed(format!(
                        "the {plugin} health check option `port` must be a port number (1-65535)"
                    ))
                })?,
        ),
    };
    let port = port.ok_or_else(|| {
        HookError::Failed(format!(
            "the {plugin} health check has no port to probe; give the process a port or set the `port` option"
        ))
    })?;
    Ok((host, port))
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    TcpStream::connect((unbracketed(host), port))
        .await
        .map_err(|e| plain_io_reason(&e))
}

/// The HTTP probe connected, but no response came before its deadline.
fn timed_out(started: Instant) -> HealthVerdict {
    HealthVerdict::NotYet(format!(
        "timed out after {} ms (the port accepted the connection, but no HTTP response arrived)",
        started.elapsed().as_millis()
    ))
}

fn no_answer(started: Instant) -> HealthVerdict {
    HealthVerdict::NotYet(format!(
        "no answer within {} ms",
        started.elapsed().as_millis()
    ))
}

/// The detail of a 404: the app is up, only the probed route is missing, which
/// a user fixes in the config rather than in the app.
fn no_such_route(path: &str) -> String {
    format!(
        "HTTP 404 (the app answers but has no route {path}; set health.path of the process, or proxy.healthPath for every process, to a route that answers 2xx)"
    )
}

/// GET `http://<host>:<port><path>`; healthy on 2xx.
pub struct HttpHealth;

impl HealthPlugin for HttpHealth {
    fn name(&self) -> &str {
        "http"
    }

    fn probe(&self, call: HookCall) -> HookFuture<HealthVerdict> {
        Box::pin(async move {
            let (host, port) = target(&call, "http")?;
            let path = option_str(&call.options, "path")?
                .unwrap_or("/")
                .to_string();
            let started = Instant::now();
            let connected = timeout_at(call.deadline, connect(&host, port)).await;
            let stream = match connected {
                Err(_) => return Ok(no_answer(started)),
                Ok(Err(detail)) => return Ok(HealthVerdict::NotYet(detail)),
                Ok(Ok(stream)) => stream,
            };
            match timeout_at(call.deadline, http_get_status(stream, &host, port, &path)).await {
                Err(_) => Ok(timed_out(started)),
                Ok(Err(detail)) => Ok(HealthVerdict::NotYet(detail)),
                Ok(Ok(status)) if (200..300).contains(&status) => Ok(HealthVerdict::Healthy),
                Ok(Ok(404)) => Ok(HealthVerdict::NotYet(no_such_route(&path))),
                Ok(Ok(status)) => Ok(HealthVerdict::NotYet(format!("HTTP {status}"))),
            }
        })
    }
}

/// One HTTP/1.1 GET on a fresh connection; the status code or an error detail.
/// Dropping the future closes the connection.
async fn http_get_status(
    stream: TcpStream,
    host: &str,
    port: u16,
    path: &str,
) -> Result<u16, String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let request = http::Request::get(path)
        .header(http::header::HOST, authority(host, port))
        .header(http::header::USER_AGENT, "rollbridge-health-check")
        // One probe per connection: say so, so the app closes after answering
        // instead of waiting for a next request that ends in a reset (and a
        // traceback in its output for every failed probe).
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid health check request: {e}"))?;
    let mut connection = std::pin::pin!(connection);
    let mut response = std::pin::pin!(sender.send_request(request));
    let response = tokio::select! {
        biased;
        response = &mut response => response,
        ended = &mut connection => match ended {
            // A server that answers and closes ends the connection task at the same
            // moment the response is handed over; collect it.
            Ok(()) => response.await,
            Err(e) => return Err(e.to_string()),
        },
    };
    response
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Healthy as soon as a TCP connection to the port is accepted.
pub struct TcpHealth;

impl HealthPlugin for TcpHealth {
    fn name(&self) -> &str {
        "tcp"
    }

    fn probe(&self, call: HookCall) -> HookFuture<HealthVerdict> {
        Box::pin(async move {
            let (host, port) = target(&call, "tcp")?;
            let started = Instant::now();
            match timeout_at(call.deadline, connect(&host, port)).await {
                Err(_) => Ok(no_answer(started)),
                Ok(Err(detail)) => Ok(HealthVerdict::NotYet(detail)),
                Ok(Ok(_)) => Ok(HealthVerdict::Healthy),
            }
        })
    }
}

/// Runs a shell command (in the process's working directory and environment);
/// exit status 0 is healthy.
pub struct CommandHealth {
    /// `None` when `{plugin = "command"}` came without a `command` option.
    pub command: Option<String>,
}

impl HealthPlugin for CommandHealth {
    fn name(&self) -> &str {
        "command"
    }

    fn probe(&self, call: HookCall) -> HookFuture<HealthVerdict> {
        let command = self.command.clone();
        Box::pin(async move {
            let command = command.ok_or_else(|| {
                HookError::Failed(
                    "the command health check needs a `command` option holding the shell command to run"
                        .into(),
                )
            })?;
            let mut env = call.process.env.clone();
            env.push((
                "ROLLBRIDGE_PID".into(),
                call.process.pid.map(|p| p.to_string()).unwrap_or_default(),
            ));
            let started = Instant::now();
            Ok(
                match run_bounded(&command, &call.process.cwd, &env, call.deadline).await {
                    ShellOutcome::Exited(0) => HealthVerdict::Healthy,
                    ShellOutcome::Exited(code) => {
                        HealthVerdict::NotYet(format!("command exited with code {code}"))
                    }
                    ShellOutcome::Signaled(signal) => {
                        HealthVerdict::NotYet(format!("command was killed by {signal}"))
                    }
                    ShellOutcome::TimedOut => no_answer(started),
                    ShellOutcome::Failed(error) => {
                        return Err(HookError::Failed(format!(
                            "could not run the health command: {error}"
                        )));
                    }
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_bracket_ipv6_hosts() {
        assert_eq!(
            http_url("127.0.0.1", 80, "/ping"),
            "http://127.0.0.1:80/ping"
        );
        assert_eq!(http_url("::1", 8080, "/ping"), "http://[::1]:8080/ping");
        assert_eq!(http_url("[::1]", 8080, "ping"), "http://[::1]:8080/ping");
        assert_eq!(http_url("localhost", 1, ""), "http://localhost:1/");
    }

    #[test]
    fn os_errors_read_plainly() {
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(plain_io_reason(&refused), "connection refused");
    }
}
