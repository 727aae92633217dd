//! One WebSocket client for every suite (blocking tungstenite over a plain
//! TCP stream; on a tokio runtime call it inside `proxy::blocking`).
#![allow(dead_code)]

use super::wait::PATIENCE;
use http::StatusCode;
use std::net::TcpStream;

pub type Ws = tungstenite::WebSocket<TcpStream>;

/// Why a WebSocket handshake did not open a socket.
#[derive(Debug)]
pub enum WsRefusal {
    /// The handshake got an HTTP answer other than 101.
    Http {
        status: StatusCode,
        body: Vec<u8>,
    },
    Other(String),
}

/// Opens a WebSocket to `url` (`ws://host:port/path`), or says why it was refused.
pub fn try_ws_connect(url: &str) -> Result<Ws, WsRefusal> {
    let addr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let stream = TcpStream::connect(addr).expect("connect to the proxy");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    match tungstenite::client(url, stream) {
        Ok((socket, _response)) => Ok(socket),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(WsRefusal::Http {
                status: response.status(),
                body: response.body().clone().unwrap_or_default(),
            })
        }
        Err(tungstenite::HandshakeError::Failure(error)) => {
            Err(WsRefusal::Other(error.to_string()))
        }
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("blocking handshake interrupted")
        }
    }
}

/// Opens a WebSocket to the echo endpoint `/socket` of the fixture app behind
/// the proxy on `port`; fails the test when the proxy refuses it.
pub fn ws_connect(port: u16) -> Ws {
    try_ws_connect(&format!("ws://127.0.0.1:{port}/socket"))
        .unwrap_or_else(|refusal| panic!("websocket through the proxy refused: {refusal:?}"))
}

/// Sends `text` and returns the echoed reply (control frames are skipped).
pub fn ws_echo(socket: &mut Ws, text: &str) -> String {
    socket
        .send(tungstenite::Message::text(text.to_string()))
        .expect("websocket send");
    loop {
        match socket.read().expect("websocket read") {
            tungstenite::Message::Text(reply) => return reply.as_str().to_string(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => panic!("unexpected websocket message {other:?}"),
        }
    }
}

/// Closes the WebSocket cleanly and waits for the peer's close.
pub fn ws_close(mut socket: Ws) {
    let _ = socket.close(None);
    while socket.read().is_ok() {}
}
