//! Runs rollbridge's proxy on its own with one fixed upstream, for benchmarks.
//!
//! `proxy_driver --listen 127.0.0.1:0 --upstream 127.0.0.1:8080 [--workers 2]`
//! prints `listening <addr>` once ready and serves until SIGTERM or SIGINT.

use rollbridge::daemon::events::EventSink;
use rollbridge::proxy::{ConnectionCounters, ProxyServer, ReleaseTarget, Router};
use std::net::SocketAddr;
use std::time::Duration;

struct Options {
    listen: SocketAddr,
    upstream: SocketAddr,
    workers: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut workers = 2;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().map_err(|e| format!("--listen: {e}"))?),
            "--upstream" => upstream = Some(value.parse().map_err(|e| format!("--upstream: {e}"))?),
            "--workers" => workers = value.parse().map_err(|e| format!("--workers: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Options {
        listen: listen.ok_or("--listen is required")?,
        upstream: upstream.ok_or("--upstream is required")?,
        workers,
    })
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("proxy_driver: {message}");
            std::process::exit(2);
        }
    };
    let runtime = if options.workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.workers)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    runtime.block_on(async move {
        let router = Router::new();
        router.set_active(Some(ReleaseTarget::new(
            "bench".into(),
            &options.upstream.ip().to_string(),
            options.upstream.port(),
            ConnectionCounters::new(),
        )));
        let server = ProxyServer::bind(
            &options.listen.ip().to_string(),
            options.listen.port(),
            router,
            EventSink::stdout(),
        )
        .await
        .expect("bind proxy");
        println!("listening {}", server.local_addr());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        server
            .shutdown(tokio::time::Instant::now() + Duration::from_secs(2))
            .await;
    });
}
