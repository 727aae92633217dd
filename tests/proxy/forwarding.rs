//! The proxy against real sockets on loopback, with upstreams written in Rust.

use crate::support::proxy::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

#[tokio::test]
async fn routes_each_request_to_the_active_release() {
    let proxy = ProxyFixture::start().await;
    let blue = HttpUpstream::start("blue").await;
    let green = HttpUpstream::start("green").await;

    proxy.activate("blue", blue.addr);
    assert_eq!(get(proxy.addr, "/release").await.body, "blue");
    proxy.activate("green", green.addr);
    assert_eq!(get(proxy.addr, "/release").await.body, "green");
    assert_eq!(proxy.router.active().unwrap().release_id(), "green");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_client_follows_a_switch_on_its_next_request() {
    let proxy = ProxyFixture::start().await;
    let blue = HttpUpstream::start("blue").await;
    let green = HttpUpstream::start("green").await;
    proxy.activate("blue", blue.addr);

    let answered = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&answered);
    let addr = proxy.addr;
    let looping = tokio::spawn(async move {
        let mut client = Client::connect(addr).await;
        let mut releases = Vec::new();
        // Keep going on the same connection until green has answered a few times.
        while releases
            .iter()
            .rev()
            .take(5)
            .filter(|r| *r == "green")
            .count()
            < 5
        {
            let reply = client.get("/release").await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "no request fails during a switch"
            );
            releases.push(reply.body);
            seen.fetch_add(1, Ordering::SeqCst);
        }
        assert!(!client.connection_closed.load(Ordering::SeqCst));
        releases
    });

    eventually("a few requests served by blue", || {
        answered.load(Ordering::SeqCst) >= 20
    })
    .await;
    let blue_target = proxy.router.active().unwrap();
    proxy.activate("green", green.addr);
    blue_target.retire();

    let releases = within("client loop", looping).await.unwrap();
    let switch_at = releases.iter().position(|r| r == "green").unwrap();
    assert!(switch_at >= 20);
    assert!(
        releases[..switch_at].iter().all(|r| r == "blue")
            && releases[switch_at..].iter().all(|r| r == "green"),
        "one switch, no going back: {releases:?}"
    );
    // Both upstreams were reached over a single client connection.
    assert_eq!(blue.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(green.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn answers_503_without_an_active_release() {
    let proxy = ProxyFixture::start().await;
    let reply = get(proxy.addr, "/anything").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers["content-type"], TEXT_PLAIN);
    assert_eq!(reply.body, "No active release\n");

    // A WebSocket handshake gets a proper HTTP 503 as well.
    let url = proxy.url("/socket");
    let refused = blocking(move || try_ws_connect(&url)).await;
    match refused {
        Err(WsRefusal::Http { status, body }) => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(body, b"No active release\n");
        }
        other => panic!("expected a 503 answer, got {:?}", other.map(|_| ())),
    }
    assert!(proxy.proxy_errors().is_empty());
}

#[tokio::test]
async fn dead_upstream_gives_502_and_one_event_per_burst() {
    let proxy = ProxyFixture::start().await;
    let dead = dead_port();
    let target = proxy.activate("gone", dead);

    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..25 {
        let reply = client.get("/release").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
        assert_eq!(reply.headers["content-type"], TEXT_PLAIN);
        assert_eq!(reply.body, "Bad gateway\n");
    }
    let errors = proxy.proxy_errors();
    assert_eq!(errors.len(), 1, "a burst is reported once: {errors:?}");
    assert_eq!(
        errors[0].data["error"],
        format!("connect ECONNREFUSED {dead}")
    );
    assert_eq!(target.counters().total(), 0);
}

#[tokio::test]
async fn upstream_reset_before_headers_is_a_502() {
    let proxy = ProxyFixture::start().await;
    let broken = BrokenUpstream::start(Breakage::ResetBeforeHeaders).await;
    let target = proxy.activate("broken", broken.addr);
    let reply = get(proxy.addr, "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.body, "Bad gateway\n");
    let errors = proxy.proxy_errors();
    assert_eq!(errors.len(), 1);
    let message = errors[0].data["error"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("upstream {}: ", broken.addr)) && message.contains("reset"),
        "{message}"
    );
    eventually("count released", || target.counters().total() == 0).await;
}

#[tokio::test]
async fn upstream_reset_mid_body_aborts_the_client_and_releases_the_count() {
    let proxy = ProxyFixture::start().await;
    let broken = BrokenUpstream::start(Breakage::ResetMidBody).await;
    let target = proxy.activate("broken", broken.addr);

    let mut client = Client::connect(proxy.addr).await;
    let response = client
        .send(Request::get("/").body(Full::default()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = within("body outcome", response.into_body().collect()).await;
    assert!(body.is_err(), "a broken body must not look complete");
    eventually("count released", || target.counters().total() == 0).await;
    eventually("error reported", || proxy.proxy_errors().len() == 1).await;
    let message = proxy.proxy_errors()[0].data["error"].to_string();
    assert!(
        message.contains(&format!(
            "upstream {} broke off the response body",
            broken.addr
        )),
        "{message}"
    );
}

#[tokio::test]
async fn client_abort_releases_the_count_and_is_not_an_error() {
    let proxy = ProxyFixture::start().await;
    let upstream = HttpUpstream::start("blue").await;
    let target = proxy.activate("blue", upstream.addr);

    // Gone while the upstream is still thinking (before any response header).
    let mut waiting = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    waiting
        .write_all(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    upstream.wait_arrivals(1).await;
    assert_eq!(target.counters().http(), 1);
    drop(waiting);
    eventually("count released after abort before headers", || {
        target.counters().total() == 0
    })
    .await;

    // Gone in the middle of a streamed body.
    let mut reading = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    reading
        .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&head).contains("start") {
        let n = within("first chunk", reading.read(&mut buf)).await.unwrap();
        assert!(n > 0, "proxy closed early");
        head.extend_from_slice(&buf[..n]);
    }
    assert_eq!(target.counters().http(), 1);
    drop(reading);
    eventually("count released after abort mid-body", || {
        target.counters().total() == 0
    })
    .await;
    assert!(
        proxy.proxy_errors().is_empty(),
        "a client that leaves is not a proxy error: {:?}",
        proxy.proxy_errors()
    );
}

#[tokio::test]
async fn slow_body_is_counted_until_it_finishes() {
    let proxy = ProxyFixture::start().await;
    let upstream = HttpUpstream::start("blue").await;
    let target = proxy.activate("blue", upstream.addr);

    let mut client = Client::connect(proxy.addr).await;
    let response = client
        .send(Request::get("/slow").body(Full::default()).unwrap())
        .await;
    let mut body = response.into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), "start\n");
    assert_eq!(target.counters().http(), 1);
    upstream.open_gate();
    assert_eq!(next_data(&mut body).await.unwrap(), "end\n");
    assert!(next_data(&mut body).await.is_none());
    eventually("count released at body end", || {
        target.counters().total() == 0
    })
    .await;
    // The upstream connection was read to its end and went back to the pool.
    eventually("connection pooled", || {
        target.idle_upstream_connections() == 1
    })
    .await;
}

#[tokio::test]
async fn drain_waiter_resolves_at_zero_or_at_its_deadline() {
    let proxy = ProxyFixture::start().await;
    let upstream = HttpUpstream::start("blue").await;
    let target = proxy.activate("blue", upstream.addr);

    let addr = proxy.addr;
    let held = tokio::spawn(async move { get(addr, "/hold").await });
    upstream.wait_arrivals(1).await;

    let counters = Arc::clone(target.counters());
    let soon = tokio::time::Instant::now() + Duration::from_millis(100);
    assert!(
        !counters.wait_drained(soon).await,
        "deadline passes first while a request is in flight"
    );

    let waiter = tokio::spawn(async move {
        let far = tokio::time::Instant::now() + PATIENCE;
        counters.wait_drained(far).await
    });
    upstream.open_gate();
    assert_eq!(within("held request", held).await.unwrap().body, "held\n");
    assert!(
        within("drain waiter", waiter).await.unwrap(),
        "waiter sees zero"
    );
}

#[tokio::test]
async fn server_sent_events_arrive_incrementally() {
    let proxy = ProxyFixture::start().await;
    let upstream = HttpUpstream::start("blue").await;
    proxy.activate("blue", upstream.addr);

    let mut client = Client::connect(proxy.addr).await;
    let response = client
        .send(Request::get("/sse").body(Full::default()).unwrap())
        .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    // The upstream holds the second event until the gate opens: the first one must
    // already be here.
    assert_eq!(next_data(&mut body).await.unwrap(), "data: one\n\n");
    upstream.open_gate();
    assert_eq!(next_data(&mut body).await.unwrap(), "data: two\n\n");
    assert!(next_data(&mut body).await.is_none());
}

#[tokio::test]
async fn uploads_stream_through() {
    let proxy = ProxyFixture::start().await;
    let upstream = HttpUpstream::start("blue").await;
    proxy.activate("blue", upstream.addr);

    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
        .await
        .unwrap();
    // The upstream sees the first half before the client sends the rest.
    upstream.wait_arrivals(1).await;
    stream.write_all(b"56789").await.unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&reply).contains("received 10") {
        let n = within("upload reply", stream.read(&mut buf)).await.unwrap();
        assert!(n > 0, "proxy closed before answering");
        reply.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn forwarded_headers_are_added_and_kept() {
    let proxy = ProxyFixture::start().await;
    let upstream = HttpUpstream::start("blue").await;
    proxy.activate("blue", upstream.addr);
    let mut client = Client::connect(proxy.addr).await;

    let plain = header_lines(&client.get("/headers").await.body);
    assert_eq!(plain["x-forwarded-for"], "127.0.0.1");
    assert_eq!(plain["x-forwarded-proto"], "http");
    assert_eq!(plain["x-forwarded-host"], "proxy.test");
    assert_eq!(plain["x-forwarded-port"], proxy.addr.port().to_string());
    assert_eq!(plain["host"], "proxy.test");

    let behind_tls = header_lines(
        &client
            .get_with(
                "/headers",
                &[
                    ("host", "example.test:8443"),
                    ("x-forwarded-for", "203.0.113.9"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-port", "443"),
                    ("connection", "x-hop"),
                    ("x-hop", "secret"),
                    ("keep-alive", "timeout=5"),
                ],
            )
            .await
            .body,
    );
    assert_eq!(behind_tls["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(behind_tls["x-forwarded-proto"], "https");
    assert_eq!(behind_tls["x-forwarded-port"], "443");
    assert_eq!(behind_tls["x-forwarded-host"], "example.test:8443");
    assert_eq!(behind_tls["host"], "example.test:8443");
    for hop in ["connection", "x-hop", "keep-alive"] {
        assert!(!behind_tls.contains_key(hop), "{hop} must not be forwarded");
    }

    let hop = client.get("/hop").await;
    assert_eq!(hop.headers["x-public"], "1");
    for name in ["x-internal", "keep-alive"] {
        assert!(
            !hop.headers.contains_key(name),
            "{name} must not reach the client"
        );
    }
}

fn header_lines(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_closed_on_retire() {
    // One proxy thread: each thread keeps its own upstream connections.
    let proxy = ProxyFixture::start_with(rollbridge::proxy::ProxyOptions {
        threads: 1,
        ..Default::default()
    })
    .await;
    let upstream = HttpUpstream::start("blue").await;
    let target = proxy.activate("blue", upstream.addr);

    for _ in 0..5 {
        // A new client connection each time: the upstream side is still reused.
        assert_eq!(get(proxy.addr, "/release").await.body, "blue");
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
    eventually("idle connection pooled", || {
        target.idle_upstream_connections() == 1
    })
    .await;

    target.retire();
    assert_eq!(target.idle_upstream_connections(), 0);
    eventually("upstream sees the pooled connection close", || {
        upstream.open.load(Ordering::SeqCst) == 0
    })
    .await;
    // A request that still reaches a retired target works, without pooling.
    assert_eq!(get(proxy.addr, "/release").await.body, "blue");
    assert_eq!(target.idle_upstream_connections(), 0);
}

#[tokio::test]
async fn upstream_connection_close_does_not_close_the_client() {
    let proxy = ProxyFixture::start().await;
    let upstream = HttpUpstream::start("blue").await;
    let target = proxy.activate("blue", upstream.addr);
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..3 {
        let reply = client.get("/close").await;
        assert_eq!(reply.body, "blue");
        assert!(!reply.headers.contains_key("connection"));
    }
    assert!(!client.connection_closed.load(Ordering::SeqCst));
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(target.idle_upstream_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echoes_and_is_counted_until_closed() {
    let proxy = ProxyFixture::start().await;
    let ws_upstream = WsUpstream::start("blue");
    let target = proxy.activate("blue", ws_upstream.addr);

    let url = proxy.url("/socket");
    let mut socket =
        blocking(move || try_ws_connect(&url).expect("websocket through the proxy")).await;
    eventually("websocket counted", || target.counters().websocket() == 1).await;
    assert_eq!(target.counters().http(), 0);
    let (socket, reply) = blocking(move || {
        let reply = ws_echo(&mut socket, "hello");
        (socket, reply)
    })
    .await;
    assert_eq!(reply, "blue:hello");
    blocking(move || ws_close(socket)).await;
    eventually("websocket released", || target.counters().total() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_opened_before_a_switch_keeps_its_release() {
    let proxy = ProxyFixture::start().await;
    let blue = WsUpstream::start("blue");
    let green = WsUpstream::start("green");
    let blue_target = proxy.activate("blue", blue.addr);

    let url = proxy.url("/socket");
    let mut old_socket = blocking(move || try_ws_connect(&url).unwrap()).await;
    eventually("blue websocket counted", || {
        blue_target.counters().websocket() == 1
    })
    .await;

    let green_target = proxy.activate("green", green.addr);
    blue_target.retire();

    let url = proxy.url("/socket");
    let (old_socket, old_reply, new_socket, new_reply) = blocking(move || {
        let old_reply = ws_echo(&mut old_socket, "still there?");
        let mut new_socket = try_ws_connect(&url).unwrap();
        let new_reply = ws_echo(&mut new_socket, "hi");
        (old_socket, old_reply, new_socket, new_reply)
    })
    .await;
    assert_eq!(old_reply, "blue:still there?");
    assert_eq!(new_reply, "green:hi");
    assert_eq!(
        blue_target.counters().websocket(),
        1,
        "old release still draining"
    );
    eventually("green websocket counted", || {
        green_target.counters().websocket() == 1
    })
    .await;

    let drained = {
        let counters = Arc::clone(blue_target.counters());
        tokio::spawn(async move {
            counters
                .wait_drained(tokio::time::Instant::now() + PATIENCE)
                .await
        })
    };
    blocking(move || ws_close(old_socket)).await;
    assert!(within("blue drained", drained).await.unwrap());
    assert_eq!(green_target.counters().websocket(), 1);
    blocking(move || ws_close(new_socket)).await;
    eventually("green released", || green_target.counters().total() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_failures_get_http_answers() {
    let proxy = ProxyFixture::start().await;

    // Upstream down: 502 instead of a silently closed socket.
    proxy.activate("gone", dead_port());
    let url = proxy.url("/socket");
    match blocking(move || try_ws_connect(&url)).await {
        Err(WsRefusal::Http { status, .. }) => assert_eq!(status, StatusCode::BAD_GATEWAY),
        other => panic!("expected 502, got {:?}", other.map(|_| ())),
    }

    // Upstream declines the upgrade: its own answer is relayed.
    let http_only = HttpUpstream::start("plain").await;
    let target = proxy.activate("plain", http_only.addr);
    let url = proxy.url("/socket");
    match blocking(move || try_ws_connect(&url)).await {
        Err(WsRefusal::Http { status, body }) => {
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(body, b"no upgrades here\n");
        }
        other => panic!("expected the upstream's 403, got {:?}", other.map(|_| ())),
    }

    // A WebSocket handshake must be GET: 400 with a short explanation.
    let addr = proxy.addr;
    let answer = blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
            .write_all(
                b"POST /socket HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Content-Length: 0\r\n\r\n",
            )
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 512];
        while !String::from_utf8_lossy(&answer).contains("GET\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed without an answer");
            answer.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("WebSocket upgrade requests must use GET\n"));
    eventually("nothing left counted", || target.counters().total() == 0).await;
}

#[tokio::test]
async fn ipv6_upstream_works() {
    let upstream = match HttpUpstream::start_on("six", "[::1]:0").await {
        Ok(upstream) => upstream,
        Err(error) => {
            eprintln!("SKIPPED ipv6_upstream_works: no IPv6 loopback here ({error})");
            return;
        }
    };
    let proxy = ProxyFixture::start().await;
    let target = rollbridge::proxy::ReleaseTarget::new(
        "six".into(),
        "::1",
        upstream.addr.port(),
        rollbridge::proxy::ConnectionCounters::new(),
    );
    assert_eq!(
        target.upstream_authority(),
        format!("[::1]:{}", upstream.addr.port())
    );
    proxy.router.set_active(Some(target));
    assert_eq!(get(proxy.addr, "/release").await.body, "six");

    // The proxy itself listens on IPv6 too.
    let router = rollbridge::proxy::Router::new();
    router.set_active(proxy.router.active());
    let server = rollbridge::proxy::ProxyServer::bind(
        "::1",
        0,
        router,
        rollbridge::events::EventSink::silent(),
    )
    .await
    .unwrap();
    assert!(server.local_addr().is_ipv6());
    assert_eq!(get(server.local_addr(), "/release").await.body, "six");
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    let mut proxy = ProxyFixture::start().await;
    let upstream = HttpUpstream::start("blue").await;
    proxy.activate("blue", upstream.addr);

    let mut idle_client = Client::connect(proxy.addr).await;
    assert_eq!(idle_client.get("/release").await.body, "blue");

    let addr = proxy.addr;
    let held = tokio::spawn(async move { get(addr, "/hold").await });
    upstream.wait_arrivals(1).await;

    let server = proxy.server.take().unwrap();
    let stopping = tokio::spawn(async move {
        server
            .shutdown(tokio::time::Instant::now() + PATIENCE)
            .await
    });
    eventually("new connections refused", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    eventually("idle keep-alive connection closed", || {
        idle_client.connection_closed.load(Ordering::SeqCst)
    })
    .await;
    upstream.open_gate();
    assert_eq!(within("held request", held).await.unwrap().body, "held\n");
    within("shutdown", stopping).await.unwrap();
}

#[tokio::test]
async fn shutdown_deadline_closes_what_is_left() {
    let mut proxy = ProxyFixture::start().await;
    let upstream = HttpUpstream::start("blue").await;
    let target = proxy.activate("blue", upstream.addr);

    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    upstream.wait_arrivals(1).await;

    let server = proxy.server.take().unwrap();
    within(
        "shutdown at its deadline",
        server.shutdown(tokio::time::Instant::now() + Duration::from_millis(100)),
    )
    .await;
    let mut buf = [0u8; 64];
    let read = within("client sees the close", stream.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "connection closed");
    eventually("count released", || target.counters().total() == 0).await;
}

#[tokio::test]
async fn serves_an_inherited_listener() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let router = rollbridge::proxy::Router::new();
    let server = rollbridge::proxy::ProxyServer::serve_listener(
        listener,
        Arc::clone(&router),
        rollbridge::events::EventSink::silent(),
    )
    .unwrap();
    let upstream = HttpUpstream::start("blue").await;
    router.set_active(Some(target_for("blue", upstream.addr)));
    assert_eq!(get(server.local_addr(), "/release").await.body, "blue");
}

#[tokio::test]
async fn slow_or_idle_clients_are_disconnected() {
    let router = rollbridge::proxy::Router::new();
    let upstream = HttpUpstream::start("blue").await;
    router.set_active(Some(target_for("blue", upstream.addr)));
    let server = rollbridge::proxy::ProxyServer::bind_with_options(
        "127.0.0.1",
        0,
        router,
        rollbridge::events::EventSink::silent(),
        rollbridge::proxy::ProxyOptions {
            idle_timeout: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Half a request head, then nothing: the proxy hangs up.
    let mut trickling = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    trickling
        .write_all(b"GET /release HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = within("slow client disconnected", trickling.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "closed without an answer");

    // An idle keep-alive connection is closed as well, after a normal exchange.
    let mut client = Client::connect(server.local_addr()).await;
    assert_eq!(client.get("/release").await.body, "blue");
    eventually("idle keep-alive connection closed", || {
        client.connection_closed.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_proxy_thread_serves_and_shuts_down() {
    let proxy = ProxyFixture::start_with(rollbridge::proxy::ProxyOptions {
        threads: 3,
        ..Default::default()
    })
    .await;
    let upstream = HttpUpstream::start("blue").await;
    let target = proxy.activate("blue", upstream.addr);
    let mut clients = Vec::new();
    for _ in 0..12 {
        let mut client = Client::connect(proxy.addr).await;
        assert_eq!(client.get("/release").await.body, "blue");
        clients.push(client);
    }
    // The listening thread spreads the open connections evenly (4 per thread),
    // and each thread reuses only its own upstream connection: the requests ran
    // one after another, so exactly one upstream connection per thread.
    let upstream_connections = upstream.accepted.load(Ordering::SeqCst);
    assert_eq!(
        upstream_connections, 3,
        "one upstream connection per thread"
    );
    let mut proxy = proxy;
    let server = proxy.server.take().unwrap();
    within(
        "shutdown of all threads",
        server.shutdown(tokio::time::Instant::now() + PATIENCE),
    )
    .await;
    eventually("every client connection closed", || {
        clients
            .iter()
            .all(|client| client.connection_closed.load(Ordering::SeqCst))
    })
    .await;
    assert_eq!(target.counters().total(), 0);
}
