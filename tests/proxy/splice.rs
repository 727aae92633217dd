//! The byte relay of upgraded connections (src/proxy/splice.rs) against real sockets:
//! bytes that ride along with the handshake, half-close in either direction, and
//! large transfers both ways at once (back-pressure).

use crate::support::proxy::*;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const HANDSHAKE: &[u8] =
    b"GET /raw HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: relay-test\r\n\r\n";
const SWITCHED: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: relay-test\r\n\r\n";

/// A proxy that tunnels `relay-test` (not a WebSocket, so it must be allowed).
async fn start_proxy() -> ProxyFixture {
    ProxyFixture::start_with(rollbridge::proxy::ProxyOptions {
        allowed_upgrades: vec!["relay-test".to_string()],
        ..Default::default()
    })
    .await
}

/// An upstream that accepts one connection, answers the upgrade with `SWITCHED`
/// followed by `first_bytes` in the same write, then runs `session` on the socket.
async fn raw_upstream<F, Fut>(
    first_bytes: &'static [u8],
    session: F,
) -> (SocketAddr, JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let head = read_head(&mut socket).await;
        assert!(head.starts_with("GET /raw HTTP/1.1"), "{head}");
        socket
            .write_all(&[SWITCHED, first_bytes].concat())
            .await
            .unwrap();
        session(socket).await;
    });
    (addr, task)
}

/// Reads an HTTP head byte by byte, so nothing after it is consumed.
async fn read_head(socket: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = socket.read_u8().await.expect("a complete HTTP head");
        head.push(byte);
    }
    String::from_utf8(head).unwrap()
}

async fn read_exactly(socket: &mut (impl AsyncRead + Unpin), count: usize) -> Vec<u8> {
    let mut bytes = vec![0; count];
    socket.read_exact(&mut bytes).await.unwrap();
    bytes
}

async fn assert_end_of_stream(socket: &mut (impl AsyncRead + Unpin)) {
    let mut rest = Vec::new();
    socket.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "unexpected bytes: {rest:?}");
}

/// Connects through the proxy and completes the upgrade; `early` is sent in the
/// same write as the handshake.
async fn open_through(proxy: &ProxyFixture, early: &[u8]) -> TcpStream {
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(&[HANDSHAKE, early].concat())
        .await
        .unwrap();
    let head = read_head(&mut client).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_sent_along_with_the_handshake_reach_the_other_side() {
    let proxy = start_proxy().await;
    let (addr, upstream) = raw_upstream(b"from-upstream", |mut socket| async move {
        assert_eq!(read_exactly(&mut socket, 11).await, b"from-client");
        socket.write_all(b"done").await.unwrap();
    })
    .await;
    let target = proxy.activate("blue", addr);

    let mut client = open_through(&proxy, b"from-client").await;
    assert_eq!(read_exactly(&mut client, 13).await, b"from-upstream");
    assert_eq!(read_exactly(&mut client, 4).await, b"done");
    within("upstream session", upstream).await.unwrap();
    within("end of stream", assert_end_of_stream(&mut client)).await;
    // The session lasts until the client's direction ends as well.
    drop(client);
    eventually("upgrade released", || target.counters().total() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_half_close_reaches_the_upstream_which_can_still_answer() {
    let proxy = start_proxy().await;
    let (addr, upstream) = raw_upstream(b"", |mut socket| async move {
        let mut request = Vec::new();
        socket.read_to_end(&mut request).await.unwrap();
        assert_eq!(request, b"last words");
        socket.write_all(b"heard you").await.unwrap();
        socket.shutdown().await.unwrap();
    })
    .await;
    let target = proxy.activate("blue", addr);

    let mut client = open_through(&proxy, b"").await;
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(read_exactly(&mut client, 9).await, b"heard you");
    within("end of stream", assert_end_of_stream(&mut client)).await;
    within("upstream session", upstream).await.unwrap();
    eventually("upgrade released", || target.counters().total() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_half_close_reaches_the_client_which_can_still_send() {
    let proxy = start_proxy().await;
    let (addr, upstream) = raw_upstream(b"no more from me", |mut socket| async move {
        socket.shutdown().await.unwrap();
        let mut rest = Vec::new();
        socket.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"fine, bye");
    })
    .await;
    let target = proxy.activate("blue", addr);

    let mut client = open_through(&proxy, b"").await;
    assert_eq!(read_exactly(&mut client, 15).await, b"no more from me");
    within("end of stream", assert_end_of_stream(&mut client)).await;
    client.write_all(b"fine, bye").await.unwrap();
    client.shutdown().await.unwrap();
    within("upstream session", upstream).await.unwrap();
    eventually("upgrade released", || target.counters().total() == 0).await;
}

/// A byte pattern that differs per direction, so swapped or reordered chunks show.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfers_both_ways_arrive_intact() {
    const SIZE: usize = 8 * 1024 * 1024;
    let proxy = start_proxy().await;
    let (addr, upstream) = raw_upstream(b"", |socket| async move {
        let (mut reader, mut writer) = socket.into_split();
        let sending = tokio::spawn(async move {
            writer.write_all(&pattern(7, SIZE)).await.unwrap();
            writer.shutdown().await.unwrap();
        });
        let mut received = Vec::new();
        reader.read_to_end(&mut received).await.unwrap();
        assert!(received == pattern(3, SIZE), "client bytes arrive in order");
        sending.await.unwrap();
    })
    .await;
    let target = proxy.activate("blue", addr);

    let client = open_through(&proxy, b"").await;
    let (mut reader, mut writer) = client.into_split();
    // Send everything before reading anything: meanwhile the upstream's 8 MiB fill
    // every buffer on the way back, so the relay has to wait for room to write.
    within("client sends", async {
        writer.write_all(&pattern(3, SIZE)).await.unwrap();
        writer.shutdown().await.unwrap();
    })
    .await;
    let mut received = Vec::new();
    within("upstream bytes", reader.read_to_end(&mut received))
        .await
        .unwrap();
    assert!(
        received == pattern(7, SIZE),
        "upstream bytes arrive in order"
    );
    within("upstream session", upstream).await.unwrap();
    eventually("upgrade released", || target.counters().total() == 0).await;
}
