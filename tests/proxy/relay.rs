//! The proxy's direct upstream exchange (requests without a body) against an
//! upstream that answers with scripted bytes: every body framing, interim
//! responses, malformed heads, and when an upstream connection may be reused.

use crate::support::proxy::scripted::{Answer, ScriptedUpstream};
use crate::support::proxy::*;
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn request(_proxy: &ProxyFixture, client: &mut Client, method: Method, path: &str) -> Reply {
    client.request(method, path, &[]).await
}

async fn start(answers: Vec<Answer>) -> (ProxyFixture, ScriptedUpstream, Client) {
    let proxy = ProxyFixture::start().await;
    let upstream = ScriptedUpstream::start(answers).await;
    proxy.activate("blue", upstream.addr);
    let client = Client::connect(proxy.addr).await;
    (proxy, upstream, client)
}

const OK_2: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[tokio::test]
async fn chunked_body_with_extensions_and_trailers_arrives_decoded_and_the_connection_is_reused() {
    let (proxy, upstream, mut client) = start(vec![
        Answer::Pieces(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n4;name=va",
            b"lue\r\nWi",
            b"ki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n",
            b"\r\n",
        ]),
        Answer::Pieces(vec![OK_2]),
    ])
    .await;
    let reply = request(&proxy, &mut client, Method::GET, "/a").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "Wikipedia");
    assert!(
        !reply.headers.contains_key("content-length"),
        "Content-Length next to Transfer-Encoding is dropped"
    );
    assert_eq!(
        request(&proxy, &mut client, Method::GET, "/b").await.body,
        "ok"
    );
    assert_eq!(upstream.accepted(), 1, "the upstream connection was reused");
}

#[tokio::test]
async fn content_length_body_in_several_reads() {
    let (proxy, upstream, mut client) = start(vec![
        Answer::Pieces(vec![
            b"HTTP/1.1 200 OK\r\nContent-",
            b"Length: 11\r\nX-Up: 1\r\n\r\nhello",
            b" world",
        ]),
        Answer::Pieces(vec![OK_2]),
    ])
    .await;
    let reply = request(&proxy, &mut client, Method::GET, "/").await;
    assert_eq!(reply.body, "hello world");
    assert_eq!(reply.headers["content-length"], "11");
    assert_eq!(reply.headers["x-up"], "1");
    assert_eq!(
        request(&proxy, &mut client, Method::GET, "/").await.body,
        "ok"
    );
    assert_eq!(upstream.accepted(), 1);
}

#[tokio::test]
async fn head_204_and_304_have_no_body_and_keep_the_connection() {
    let (proxy, upstream, mut client) = start(vec![
        Answer::Pieces(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"]),
        Answer::Pieces(vec![b"HTTP/1.1 204 No Content\r\n\r\n"]),
        Answer::Pieces(vec![b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"]),
        Answer::Pieces(vec![OK_2]),
    ])
    .await;
    let head = request(&proxy, &mut client, Method::HEAD, "/").await;
    assert_eq!(head.headers["content-length"], "42");
    assert_eq!(head.body, "");
    let no_content = request(&proxy, &mut client, Method::GET, "/").await;
    assert_eq!(no_content.status, StatusCode::NO_CONTENT);
    let not_modified = request(&proxy, &mut client, Method::GET, "/").await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.headers["etag"], "\"x\"");
    assert_eq!(
        request(&proxy, &mut client, Method::GET, "/").await.body,
        "ok"
    );
    assert_eq!(upstream.accepted(), 1);
}

#[tokio::test]
async fn a_body_delimited_by_close_is_read_to_the_end_and_not_reused() {
    let (proxy, upstream, mut client) = start(vec![
        Answer::PiecesThenClose(vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"the end"]),
        Answer::Pieces(vec![OK_2]),
    ])
    .await;
    assert_eq!(
        request(&proxy, &mut client, Method::GET, "/").await.body,
        "until the end"
    );
    assert_eq!(
        request(&proxy, &mut client, Method::GET, "/").await.body,
        "ok"
    );
    assert_eq!(upstream.accepted(), 2);
}

#[tokio::test]
async fn connection_close_and_http_10_answers_are_not_reused() {
    let (proxy, upstream, mut client) = start(vec![
        Answer::Pieces(vec![
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
        ]),
        Answer::Pieces(vec![b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb"]),
        Answer::Pieces(vec![
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nc",
        ]),
        Answer::Pieces(vec![OK_2]),
    ])
    .await;
    for expected in ["a", "b", "c", "ok"] {
        assert_eq!(
            request(&proxy, &mut client, Method::GET, "/").await.body,
            expected
        );
    }
    assert_eq!(
        upstream.accepted(),
        3,
        "new connections after `close` and plain HTTP/1.0; reused after keep-alive"
    );
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let (proxy, _upstream, mut client) = start(vec![Answer::Pieces(vec![
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
    ])])
    .await;
    let reply = request(&proxy, &mut client, Method::GET, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "final");
    assert!(!reply.headers.contains_key("link"));
}

#[tokio::test]
async fn malformed_answers_are_502_and_reported() {
    let (proxy, _upstream, mut client) = start(vec![
        Answer::Pieces(vec![b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n"]),
        Answer::Pieces(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ]),
        Answer::Pieces(vec![b"not http at all\r\n\r\n"]),
    ])
    .await;
    for _ in 0..3 {
        let reply = request(&proxy, &mut client, Method::GET, "/").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
        assert_eq!(reply.body, "Bad gateway\n");
    }
    proxy.wait_for_error("Content-Length").await;
}

#[tokio::test]
async fn a_get_on_a_connection_the_upstream_dropped_is_retried_but_a_post_is_not() {
    let (proxy, upstream, mut client) = start(vec![
        Answer::Pieces(vec![OK_2]),
        // The upstream drops the kept-alive connection as the next request arrives.
        Answer::Close,
        Answer::Pieces(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nretry"]),
        Answer::Close,
    ])
    .await;
    assert_eq!(
        request(&proxy, &mut client, Method::GET, "/").await.body,
        "ok"
    );
    assert_eq!(
        request(&proxy, &mut client, Method::GET, "/").await.body,
        "retry"
    );
    assert_eq!(upstream.accepted(), 2);
    let post = request(&proxy, &mut client, Method::POST, "/").await;
    assert_eq!(
        post.status,
        StatusCode::BAD_GATEWAY,
        "a request that may have had effects is not sent twice"
    );
}

#[tokio::test]
async fn a_body_cut_short_aborts_the_client_response_and_is_reported() {
    let (proxy, _upstream, _client) = start(vec![Answer::PiecesThenClose(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf",
    ])])
    .await;
    let mut raw = TcpStream::connect(proxy.addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
        .await
        .unwrap();
    // The proxy closes the client connection; whether the head went out before
    // the upstream broke off is a matter of timing, a complete answer never is.
    let mut answer = Vec::new();
    within(
        "the proxy closes the connection",
        raw.read_to_end(&mut answer),
    )
    .await
    .ok();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let body_len = answer.split("\r\n\r\n").nth(1).map_or(0, str::len);
    assert!(body_len < 10, "the body cannot be complete: {answer:?}");
    proxy.wait_for_error("broke off the response body").await;
}

#[tokio::test]
async fn the_request_head_carries_the_target_and_forwarded_headers_and_custom_reasons_survive() {
    let (proxy, upstream, _client) = start(vec![Answer::Pieces(vec![
        b"HTTP/1.1 299 Quite Unusual\r\nContent-Length: 0\r\n\r\n",
    ])])
    .await;
    // A raw client, to see the status line as sent.
    let mut raw = TcpStream::connect(proxy.addr).await.unwrap();
    raw.write_all(
        b"DELETE /items/7?force=1 HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    within("status line", async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = raw.read(&mut chunk).await.unwrap();
            assert!(n > 0, "proxy closed early");
            answer.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 299 Quite Unusual\r\n"),
        "{answer}"
    );
    let head = &upstream.heads()[0];
    assert!(
        head.starts_with("DELETE /items/7?force=1 HTTP/1.1\r\n"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nhost: shop.test\r\n"), "{head}");
    assert!(
        lower.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(
        lower.contains("\r\nx-forwarded-host: shop.test\r\n"),
        "{head}"
    );
    assert!(!lower.contains("connection:"), "hop-by-hop removed: {head}");
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_while_idle_is_never_used() {
    let (proxy, upstream, mut client) = start(vec![
        // Announces keep-alive, then closes right after answering.
        Answer::PiecesThenClose(vec![OK_2]),
        Answer::Pieces(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"]),
    ])
    .await;
    assert_eq!(
        request(&proxy, &mut client, Method::GET, "/").await.body,
        "ok"
    );
    eventually("the upstream closed its side", || upstream.closed() == 1).await;
    // A POST is never retried, so it only succeeds if the closed connection is
    // recognised before anything is sent on it.
    let post = request(&proxy, &mut client, Method::POST, "/").await;
    assert_eq!(post.status, StatusCode::OK);
    assert_eq!(post.body, "fresh");
    assert_eq!(upstream.accepted(), 2);
}
