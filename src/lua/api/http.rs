//! `ctx:http(method, url, {timeoutMs=, body=, headers=})`: one HTTP/1.1 request
//! on a fresh connection. Plain `http://` only: hooks talk to processes on this
//! host, which do not need TLS.

use super::{millis, raise};
use crate::lua::ctx::HookCtx;
use crate::util::errno::plain_io_reason;
use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use mlua::{Lua, Table, UserDataMethods, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// The largest response body a hook may receive.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

pub(super) fn add_methods<M: UserDataMethods<HookCtx>>(methods: &mut M) {
    methods.add_async_method(
        "http",
        |lua, this, (method, url, options): (String, String, Option<Table>)| {
            let scope = this.scope.clone();
            let request = prepare(&method, &url, options).map(|(call, timeout)| {
                let bound = timeout.unwrap_or_else(|| scope.remaining());
                (call, bound)
            });
            async move {
                let (call, bound) = request?;
                let shown = call.url.clone();
                let deadline = Instant::now() + bound;
                let outcome = scope
                    .run_bound(async move { timeout_at(deadline, send(call)).await })
                    .await
                    .ok_or_else(|| raise("http", "the hook ended before the response arrived"))?;
                match outcome {
                    Err(_) => Err(raise(
                        "http",
                        format!("no response from {shown} within {} ms", bound.as_millis()),
                    )),
                    Ok(Err(reason)) => Err(raise("http", reason)),
                    Ok(Ok(response)) => response_table(&lua, response),
                }
            }
        },
    );
}

struct Call {
    url: String,
    host: String,
    port: u16,
    request: Request<Full<Bytes>>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

fn prepare(
    method: &str,
    url: &str,
    options: Option<Table>,
) -> mlua::Result<(Call, Option<Duration>)> {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| raise("http", format!("{method:?} is not an HTTP method")))?;
    let uri: Uri = url.parse().map_err(|_| {
        raise(
            "http",
            format!("{url:?} is not a URL; use e.g. \"http://127.0.0.1:3000/ping\""),
        )
    })?;
    if uri.scheme_str() != Some("http") {
        return Err(raise(
            "http",
            format!("{url:?} is not an http:// URL (https is not supported for hooks)"),
        ));
    }
    let Some(authority) = uri.authority().cloned() else {
        return Err(raise("http", format!("{url:?} has no host")));
    };
    let host = crate::util::host::unbracketed(authority.host()).to_string();
    let port = authority.port_u16().unwrap_or(80);
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());

    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::USER_AGENT, "rollbridge-lua-hook");
    let mut timeout = None;
    let mut body = Bytes::new();
    if let Some(options) = options {
        timeout = match options.get::<Value>("timeoutMs")? {
            Value::Nil => None,
            Value::Integer(n) => millis("http", "timeoutMs", Some(n as f64))?,
            Value::Number(n) => millis("http", "timeoutMs", Some(n))?,
            other => {
                return Err(raise(
                    "http",
                    format!(
                        "timeoutMs must be a number of milliseconds, not a {}",
                        other.type_name()
                    ),
                ));
            }
        };
        match options.get::<Value>("body")? {
            Value::Nil => {}
            Value::String(text) => body = Bytes::copy_from_slice(&text.as_bytes()),
            other => {
                return Err(raise(
                    "http",
                    format!("body must be a string, not a {}", other.type_name()),
                ));
            }
        }
        match options.get::<Value>("headers")? {
            Value::Nil => {}
            Value::Table(headers) => {
                for pair in headers.pairs::<String, Value>() {
                    let (name, value) = pair?;
                    let value = match value {
                        Value::String(text) => text.to_string_lossy(),
                        Value::Integer(n) => n.to_string(),
                        Value::Number(n) => n.to_string(),
                        other => {
                            return Err(raise(
                                "http",
                                format!(
                                    "header {name:?} must be a string, not a {}",
                                    other.type_name()
                                ),
                            ));
                        }
                    };
                    builder = builder.header(name, value);
                }
            }
            other => {
                return Err(raise(
                    "http",
                    format!(
                        "headers must be a table of names and values, not a {}",
                        other.type_name()
                    ),
                ));
            }
        }
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|error| raise("http", format!("invalid request: {error}")))?;
    Ok((
        Call {
            url: url.to_string(),
            host,
            port,
            request,
        },
        timeout,
    ))
}

async fn send(call: Call) -> Result<Response, String> {
    let stream = TcpStream::connect((call.host.as_str(), call.port))
        .await
        .map_err(|error| {
            format!(
                "cannot connect to {}: {}",
                call.url,
                plain_io_reason(&error)
            )
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("cannot talk HTTP to {}: {error}", call.url))?;
    // The connection is driven by a task of its own, which ends with the request.
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(call.request)
            .await
            .map_err(|error| format!("request to {} failed: {error}", call.url))?;
        let status = response.status().as_u16();
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            match headers.iter_mut().find(|(known, _)| known == name.as_str()) {
                Some((_, joined)) => {
                    joined.push_str(", ");
                    joined.push_str(&value);
                }
                None => headers.push((name.as_str().to_ascii_lowercase(), value)),
            }
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    format!(
                        "the response of {} is larger than {} MiB",
                        call.url,
                        MAX_RESPONSE_BYTES / (1024 * 1024)
                    )
                } else {
                    format!("reading the response of {} failed: {error}", call.url)
                }
            })?
            .to_bytes();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
    .await;
    driver.abort();
    result
}

fn response_table(lua: &Lua, response: Response) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 3)?;
    table.raw_set("status", response.status)?;
    table.raw_set("body", lua.create_string(&response.body)?)?;
    let headers = lua.create_table_with_capacity(0, response.headers.len())?;
    for (name, value) in response.headers {
        headers.raw_set(name, value)?;
    }
    table.raw_set("headers", headers)?;
    Ok(table)
}
