//! A client written with raw TCP, to send what a well-behaved HTTP library never
//! would and to see the proxy's answer byte for byte.

use super::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as read off the socket.
#[derive(Debug)]
pub struct RawResponse {
    /// Status line and headers, through the blank line.
    pub head: String,
    /// The body, de-chunked when it was chunked.
    pub body: String,
}

impl RawResponse {
    pub fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }
}

/// A client connection speaking raw bytes.
pub struct RawClient {
    pub stream: TcpStream,
    pending: Vec<u8>,
}

impl RawClient {
    pub async fn connect(addr: std::net::SocketAddr) -> RawClient {
        RawClient {
            stream: TcpStream::connect(addr).await.expect("connect to proxy"),
            pending: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send to proxy");
    }

    /// Reads more; false at the end of the stream (or a reset).
    async fn read_more(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next complete response; `None` when the connection ends first.
    pub async fn response(&mut self) -> Option<RawResponse> {
        within("a response from the proxy", self.read_response()).await
    }

    async fn read_response(&mut self) -> Option<RawResponse> {
        let head_end = loop {
            if let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if !self.read_more().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.pending[..head_end]).into_owned();
        self.pending.drain(..head_end);
        let mut response = RawResponse {
            head,
            body: String::new(),
        };
        if response.status() == 101 {
            return Some(response);
        }
        if response
            .header("transfer-encoding")
            .is_some_and(|te| te.contains("chunked"))
        {
            loop {
                let Some(line_end) = self.pending.windows(2).position(|w| w == b"\r\n") else {
                    if !self.read_more().await {
                        return None;
                    }
                    continue;
                };
                let size_text = String::from_utf8_lossy(&self.pending[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.trim(), 16).ok()?;
                while self.pending.len() < line_end + 2 + size + 2 {
                    if !self.read_more().await {
                        return None;
                    }
                }
                let data = &self.pending[line_end + 2..line_end + 2 + size];
                response.body.push_str(&String::from_utf8_lossy(data));
                self.pending.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    return Some(response);
                }
            }
        }
        let length: usize = response
            .header("content-length")
            .map_or(0, |cl| cl.parse().unwrap_or(0));
        while self.pending.len() < length {
            if !self.read_more().await {
                return None;
            }
        }
        let body: Vec<u8> = self.pending.drain(..length).collect();
        response.body = String::from_utf8_lossy(&body).into_owned();
        Some(response)
    }

    /// Whether the proxy closes the connection with nothing more to say.
    pub async fn is_closed_by_proxy(&mut self) -> bool {
        within("the proxy to close the connection", async {
            while self.read_more().await {}
        })
        .await;
        self.pending.is_empty()
    }

    /// Everything until the proxy closes the connection.
    pub async fn rest(&mut self) -> String {
        within("the proxy to close the connection", async {
            while self.read_more().await {}
        })
        .await;
        String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned()
    }
}
