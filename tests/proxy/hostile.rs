//! Hostile input at the proxy's edge (issue 11, docs/proxy.md "Hostile input"):
//! raw bytes from the client, a scripted upstream that records exactly what
//! reaches it. Each test checks what the client gets *and* what the release gets.

use crate::support::proxy::raw::RawClient;
use crate::support::proxy::scripted::{Answer, ScriptedUpstream};
use crate::support::proxy::*;
use rollbridge::proxy::ProxyOptions;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const OK_2: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

async fn start_with(
    options: ProxyOptions,
    answers: Vec<Answer>,
) -> (ProxyFixture, ScriptedUpstream) {
    let proxy = ProxyFixture::start_with(options).await;
    let upstream = ScriptedUpstream::start(answers).await;
    proxy.activate("blue", upstream.addr);
    (proxy, upstream)
}

async fn start(answers: Vec<Answer>) -> (ProxyFixture, ScriptedUpstream) {
    start_with(ProxyOptions::default(), answers).await
}

/// The forwarded headers rollbridge adds for a loopback client that sent none,
/// with `Host: <host>` (no port, so the port is the proxy's).
fn forwarded_for(host: &str, proxy: &ProxyFixture) -> String {
    format!(
        "x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: {host}\r\nx-forwarded-port: {}\r\n",
        proxy.addr.port()
    )
}

/// A request refused at the edge: the status and text, the connection closed,
/// and nothing sent upstream.
async fn assert_refused(proxy: &ProxyFixture, request: &[u8], status: u16, text: &str) {
    let mut client = RawClient::connect(proxy.addr).await;
    client.send(request).await;
    let response = client.response().await.expect("an answer");
    assert_eq!(
        response.status(),
        status,
        "{}",
        String::from_utf8_lossy(request)
    );
    assert_eq!(response.body, text);
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    assert!(client.is_closed_by_proxy().await);
}

#[tokio::test]
async fn h2c_is_stripped_and_a_101_nobody_asked_for_is_a_502_never_a_tunnel() {
    let (proxy, upstream) = start(vec![
        Answer::Pieces(vec![b"HTTP/1.1 101 Switching Protocols\r\n\r\n"]),
        Answer::Pieces(vec![OK_2]),
    ])
    .await;
    let mut client = RawClient::connect(proxy.addr).await;
    // The campaign's bytes: an h2c upgrade with a second request right behind it.
    client
        .send(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\nX-Second: 1\r\n\r\n")
        .await;
    let first = client.response().await.expect("first answer");
    assert_eq!(first.status(), 502, "{first:?}");
    let second = client.response().await.expect("second answer");
    assert_eq!((second.status(), second.body.as_str()), (200, "ok"));
    // Both requests went through the proxy's rules: no upgrade asked for, and the
    // second one parsed and rewritten, not tunnelled raw.
    let forwarded = forwarded_for("a", &proxy);
    assert_eq!(
        upstream.received(),
        vec![
            format!("GET / HTTP/1.1\r\nhost: a\r\n{forwarded}\r\n"),
            format!("GET /second HTTP/1.1\r\nhost: a\r\nx-second: 1\r\n{forwarded}\r\n"),
        ]
    );
}

const WS_REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

#[tokio::test]
async fn only_a_websocket_answered_by_a_matching_101_opens_a_tunnel() {
    let (proxy, upstream) = start(vec![
        // Wrong accept value.
        Answer::Pieces(vec![
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
        ]),
        // Switching to something else than was asked for.
        Answer::Pieces(vec![
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        ]),
        // The real thing (RFC 6455's example key and accept value).
        Answer::Pieces(vec![
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        ]),
        // What the tunnelled bytes get (the upstream reads them as a request).
        Answer::Pieces(vec![OK_2]),
    ])
    .await;
    for _ in 0..2 {
        let mut client = RawClient::connect(proxy.addr).await;
        client.send(WS_REQUEST).await;
        let refused = client.response().await.expect("an answer");
        assert_eq!(refused.status(), 502, "{refused:?}");
    }
    let mut client = RawClient::connect(proxy.addr).await;
    client.send(WS_REQUEST).await;
    let switched = client.response().await.expect("an answer");
    assert_eq!(switched.status(), 101, "{switched:?}");
    assert_eq!(
        switched.header("sec-websocket-accept").as_deref(),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    // Inside the tunnel bytes pass untouched: no forwarded headers are added.
    client.send(b"GET /inside HTTP/1.1\r\n\r\n").await;
    let inside = client.response().await.expect("tunnelled answer");
    assert_eq!(inside.body, "ok");
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nhost: a\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nconnection: upgrade\r\n{}\r\n",
        forwarded_for("a", &proxy)
    );
    let received = upstream.received();
    assert_eq!(
        received[..3],
        [handshake.clone(), handshake.clone(), handshake]
    );
    assert_eq!(received[3], "GET /inside HTTP/1.1\r\n\r\n");
    // A WebSocket handshake must be a GET.
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(b"POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n")
        .await;
    assert_eq!(client.response().await.expect("an answer").status(), 400);
    assert_eq!(
        upstream.received().len(),
        4,
        "the POST never reached the upstream"
    );
}

#[tokio::test]
async fn other_upgrades_are_dropped_unless_allowed() {
    const ASK_FOR_FOO: &[u8] =
        b"GET /foo HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: foo/2, h2c\r\n\r\n";
    const SWITCHED_TO_FOO: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: foo/2\r\n\r\n";
    // Default: no allow-list, so a plain request without Upgrade.
    let (proxy, upstream) = start(vec![Answer::Pieces(vec![OK_2])]).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client.send(ASK_FOR_FOO).await;
    assert_eq!(client.response().await.expect("an answer").body, "ok");
    assert_eq!(
        upstream.received(),
        vec![format!(
            "GET /foo HTTP/1.1\r\nhost: a\r\n{}\r\n",
            forwarded_for("a", &proxy)
        )]
    );
    // Allowed: only the allowed protocol is asked for, and the tunnel opens.
    let options = ProxyOptions {
        allowed_upgrades: vec!["foo/2".to_string()],
        ..ProxyOptions::default()
    };
    let (proxy, upstream) = start_with(
        options,
        vec![
            Answer::Pieces(vec![SWITCHED_TO_FOO]),
            Answer::Pieces(vec![OK_2]),
        ],
    )
    .await;
    let mut client = RawClient::connect(proxy.addr).await;
    client.send(ASK_FOR_FOO).await;
    assert_eq!(client.response().await.expect("an answer").status(), 101);
    client.send(b"RAW /bytes HTTP/1.1\r\n\r\n").await;
    assert_eq!(client.response().await.expect("tunnelled").body, "ok");
    assert_eq!(
        upstream.received(),
        vec![
            format!(
                "GET /foo HTTP/1.1\r\nhost: a\r\nupgrade: foo/2\r\nconnection: upgrade\r\n{}\r\n",
                forwarded_for("a", &proxy)
            ),
            "RAW /bytes HTTP/1.1\r\n\r\n".to_string(),
        ]
    );
}

#[tokio::test]
async fn http_11_needs_exactly_one_valid_host_and_http_10_gets_the_listener_address() {
    let (proxy, upstream) = start(vec![Answer::Pieces(vec![OK_2])]).await;
    assert_refused(
        &proxy,
        b"GET / HTTP/1.1\r\n\r\n",
        400,
        "Missing Host header\n",
    )
    .await;
    assert_refused(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
        400,
        "More than one Host header\n",
    )
    .await;
    assert_refused(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n",
        400,
        "Invalid Host header\n",
    )
    .await;
    assert_refused(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        400,
        "Invalid Host header\n",
    )
    .await;
    assert_eq!(
        upstream.accepted(),
        0,
        "nothing refused reached the release"
    );

    let mut client = RawClient::connect(proxy.addr).await;
    client.send(b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(client.response().await.expect("an answer").body, "ok");
    let own = proxy.addr.to_string();
    assert_eq!(
        upstream.received(),
        vec![format!(
            "GET /old HTTP/1.1\r\nhost: {own}\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: {own}\r\nx-forwarded-port: {}\r\n\r\n",
            proxy.addr.port()
        )]
    );
}

#[tokio::test]
async fn connect_is_405_and_never_reaches_the_release() {
    let (proxy, upstream) = start(vec![]).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(b"CONNECT internal:22 HTTP/1.1\r\nHost: internal:22\r\n\r\n")
        .await;
    let response = client
        .response()
        .await
        .expect("a status line, not a silent close");
    assert_eq!(response.status(), 405);
    assert_eq!(response.body, "CONNECT is not supported\n");
    assert!(
        response
            .header("allow")
            .is_some_and(|allow| !allow.contains("CONNECT"))
    );
    assert!(client.is_closed_by_proxy().await);
    assert_eq!(upstream.accepted(), 0);
}

#[tokio::test]
async fn asterisk_form_is_for_options_only_and_absolute_form_uses_its_authority() {
    let (proxy, upstream) =
        start(vec![Answer::Pieces(vec![OK_2]), Answer::Pieces(vec![OK_2])]).await;
    assert_refused(
        &proxy,
        b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
        "Invalid request target\n",
    )
    .await;
    assert_refused(
        &proxy,
        b"GET http://user@internal/ HTTP/1.1\r\nHost: public\r\n\r\n",
        400,
        "Invalid request target\n",
    )
    .await;
    assert_refused(
        &proxy,
        b"GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
        "Invalid request target\n",
    )
    .await;

    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\nGET http://internal/x?y=1 HTTP/1.1\r\nHost: public\r\n\r\n")
        .await;
    assert_eq!(client.response().await.expect("an answer").status(), 200);
    assert_eq!(client.response().await.expect("an answer").status(), 200);
    assert_eq!(
        upstream.received(),
        vec![
            format!(
                "OPTIONS * HTTP/1.1\r\nhost: a\r\n{}\r\n",
                forwarded_for("a", &proxy)
            ),
            format!(
                "GET /x?y=1 HTTP/1.1\r\nhost: internal\r\n{}\r\n",
                forwarded_for("internal", &proxy)
            ),
        ]
    );
}

#[tokio::test]
async fn underscore_twins_of_framing_headers_are_dropped_and_content_length_is_normalised() {
    let (proxy, upstream) =
        start(vec![Answer::Pieces(vec![OK_2]), Answer::Pieces(vec![OK_2])]).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(b"POST /twin HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\nContent_Length: 0\r\n\r\nhello")
        .await;
    assert_eq!(client.response().await.expect("an answer").body, "ok");
    client
        .send(b"POST /ten HTTP/1.1\r\nHost: a\r\nContent-Length: 010\r\n\r\n0123456789")
        .await;
    assert_eq!(client.response().await.expect("an answer").body, "ok");
    let forwarded = forwarded_for("a", &proxy);
    assert_eq!(
        upstream.received(),
        vec![
            format!("POST /twin HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n{forwarded}\r\nhello"),
            format!(
                "POST /ten HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n{forwarded}\r\n0123456789"
            ),
        ]
    );
}

#[tokio::test]
async fn a_malformed_request_body_is_a_400_and_the_release_sees_the_request_aborted() {
    let (proxy, upstream) = start(vec![Answer::Pieces(vec![OK_2])]).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(b"POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
        .await;
    let response = client.response().await.expect("an answer");
    assert_eq!(response.status(), 400, "{response:?}");
    assert_eq!(response.body, "Malformed request body\n");
    assert!(client.is_closed_by_proxy().await);
    eventually("the upstream connection to end", || {
        upstream.closed() == upstream.accepted()
    })
    .await;
    // Whatever reached the release is the start of the request, never a whole one.
    let expected = format!(
        "POST /bad HTTP/1.1\r\nhost: a\r\n{}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        forwarded_for("a", &proxy)
    );
    for request in upstream.received() {
        assert!(expected.starts_with(&request), "{request:?}");
    }
}

const SPOOFED: &[u8] = b"GET / HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nForwarded: for=6.6.6.6;proto=https\r\n\r\n";

#[tokio::test]
async fn forwarded_headers_are_believed_only_from_trusted_peers() {
    // The test client is on loopback: trusted by default, untrusted with [].
    let untrusted = ProxyOptions {
        trusted_proxies: vec![],
        ..ProxyOptions::default()
    };
    for (options, trusted) in [(untrusted, false), (ProxyOptions::default(), true)] {
        let (proxy, upstream) = start_with(options, vec![Answer::Pieces(vec![OK_2])]).await;
        let mut client = RawClient::connect(proxy.addr).await;
        client.send(SPOOFED).await;
        assert_eq!(client.response().await.expect("an answer").body, "ok");
        let port = proxy.addr.port();
        let expected = if trusted {
            "GET / HTTP/1.1\r\nhost: shop.test\r\nx-forwarded-for: 6.6.6.6, 127.0.0.1\r\nx-forwarded-host: evil\r\nx-forwarded-proto: https\r\nx-forwarded-port: 443\r\nforwarded: for=6.6.6.6;proto=https, for=127.0.0.1;host=\"shop.test\";proto=http\r\n\r\n".to_string()
        } else {
            format!(
                "GET / HTTP/1.1\r\nhost: shop.test\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-host: shop.test\r\nx-forwarded-proto: http\r\nx-forwarded-port: {port}\r\nforwarded: for=127.0.0.1;host=\"shop.test\";proto=http\r\n\r\n"
            )
        };
        assert_eq!(upstream.received(), vec![expected], "trusted: {trusted}");
    }
}

fn short_body_timeout() -> ProxyOptions {
    ProxyOptions {
        body_timeout: Some(Duration::from_millis(300)),
        ..ProxyOptions::default()
    }
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_and_the_release_sees_the_request_aborted() {
    let (proxy, upstream) =
        start_with(short_body_timeout(), vec![Answer::Pieces(vec![OK_2])]).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        .await;
    let response = client.response().await.expect("an answer");
    assert_eq!(response.status(), 408, "{response:?}");
    assert_eq!(response.body, "Request body timed out\n");
    assert!(client.is_closed_by_proxy().await);
    eventually("the upstream connection to end", || upstream.closed() == 1).await;
    assert_eq!(
        upstream.received(),
        vec![format!(
            "POST /slow HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n{}\r\nabc",
            forwarded_for("a", &proxy)
        )],
        "the head and the 3 bytes, then the connection ended"
    );
}

#[tokio::test]
async fn a_request_body_trickled_a_byte_at_a_time_gets_408() {
    let (proxy, upstream) =
        start_with(short_body_timeout(), vec![Answer::Pieces(vec![OK_2])]).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(b"POST /trickle HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        .await;
    // A byte every 50 ms: never silent for the 300 ms limit, but far from the
    // 1 KiB that counts as progress. Stop as soon as the proxy answers.
    let mut sent = 0;
    let give_up = Instant::now() + Duration::from_secs(20);
    while Instant::now() < give_up && sent < 1000 {
        if client.stream.write_all(b"x").await.is_err() {
            break;
        }
        sent += 1;
        let mut first = [0u8; 1];
        let answered =
            tokio::time::timeout(Duration::from_millis(50), client.stream.peek(&mut first)).await;
        if answered.is_ok() {
            break;
        }
    }
    assert!(sent < 1000, "the whole body went through a byte at a time");
    let response = client.response().await.expect("an answer");
    assert_eq!(response.status(), 408, "{response:?}");
    assert!(client.is_closed_by_proxy().await);
    eventually("the upstream connection to end", || upstream.closed() == 1).await;
}

#[tokio::test]
async fn a_slow_upload_that_keeps_bringing_a_kib_is_not_cut() {
    let options = ProxyOptions {
        body_timeout: Some(Duration::from_millis(1000)),
        ..ProxyOptions::default()
    };
    let (proxy, upstream) = start_with(options, vec![Answer::Pieces(vec![OK_2])]).await;
    let mut client = RawClient::connect(proxy.addr).await;
    client
        .send(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4096\r\n\r\n")
        .await;
    // 1 KiB every 200 ms: 1.6 s in all, longer than the limit, with progress
    // in every window of it.
    let mut pace = tokio::time::interval(Duration::from_millis(200));
    for _ in 0..4 {
        pace.tick().await;
        client.send(&[b'k'; 1024]).await;
    }
    let response = client.response().await.expect("an answer");
    assert_eq!(response.status(), 200, "{response:?}");
    let received = upstream.received();
    assert!(
        received.len() == 1 && received[0].ends_with(&"k".repeat(4096)),
        "the whole body reached the release"
    );
}

#[tokio::test]
async fn a_stalled_response_body_is_aborted_to_the_client_and_closed_upstream() {
    let (proxy, upstream) = start_with(
        short_body_timeout(),
        vec![Answer::Pieces(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        ])],
    )
    .await;
    let mut client = RawClient::connect(proxy.addr).await;
    client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let answer = client.rest().await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nabc"),
        "cut short, never completed: {answer:?}"
    );
    eventually("the upstream connection to end", || upstream.closed() == 1).await;
    proxy.wait_for_error("proxy.bodyTimeoutMs").await;
}

#[tokio::test]
async fn a_bare_lf_in_a_chunked_response_aborts_it() {
    let (proxy, upstream) = start(vec![Answer::Pieces(vec![
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
    ])])
    .await;
    let mut client = RawClient::connect(proxy.addr).await;
    client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    // Whether the head went out before the bad line was seen is a matter of
    // timing; a complete response (re-chunked cleanly) never is.
    assert!(
        client.response().await.is_none(),
        "the response must not complete"
    );
    eventually("the upstream connection to be dropped", || {
        upstream.closed() == 1
    })
    .await;
    proxy.wait_for_error("bare LF").await;
}

#[tokio::test]
async fn an_app_writing_head_and_body_separately_answers_at_fresh_connection_speed_through_the_pool()
 {
    use http_body_util::{BodyExt, Full};
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
    const REQUESTS: usize = 21;
    // GETs take the proxy's direct path, POSTs with a body hyper's client.
    let answers = (0..2 * REQUESTS)
        .map(|_| Answer::Writes(vec![HEAD, b"ok"]))
        .collect();
    let (proxy, upstream) = start(answers).await;
    let mut client = Client::connect(proxy.addr).await;
    for method in [http::Method::GET, http::Method::POST] {
        let mut pooled = Vec::new();
        for _ in 0..REQUESTS {
            let body = if method == http::Method::POST {
                "x"
            } else {
                ""
            };
            let request = http::Request::builder()
                .method(method.clone())
                .uri("/")
                .body(Full::from(body))
                .unwrap();
            let started = Instant::now();
            let response = client.send(request).await;
            let body = within("body", response.into_body().collect())
                .await
                .unwrap();
            assert_eq!(body.to_bytes(), "ok");
            pooled.push(started.elapsed());
        }
        // The first request of each path may have opened a connection.
        pooled.remove(0);
        pooled.sort();
        let median = pooled[pooled.len() / 2];
        // Without an immediate ACK each pooled request waits for Linux's delayed-ACK
        // timer (40 ms) before the app's Nagle lets the body go.
        assert!(
            median < Duration::from_millis(20),
            "{method}: pooled median {median:?}, all: {pooled:?}"
        );
    }
    assert_eq!(
        upstream.accepted(),
        2,
        "one connection per path, then the pool"
    );
}
