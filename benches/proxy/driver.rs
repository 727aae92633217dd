//! Runs rollbridge's proxy on its own with one fixed upstream, for benchmarks.
//!
//! `proxy_driver --listen 127.0.0.1:0 --upstream 127.0.0.1:8080 [--workers N]`
//! prints `listening <addr>` once ready and serves until SIGTERM or SIGINT.
//! `--workers` is the number of proxy threads ([`ProxyOptions::threads`]; by
//! default the daemon's choice for this machine).

use rollbridge::daemon::events::EventSink;
use rollbridge::proxy::{ConnectionCounters, ProxyOptions, ProxyServer, ReleaseTarget, Router};
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
    let mut workers = ProxyOptions::default().threads;
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
    // The proxy runs on its own threads; this runtime only waits for a signal.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let router = Router::new();
        router.set_active(Some(ReleaseTarget::new(
            "bench".into(),
            &options.upstream.ip().to_string(),
            options.upstream.port(),
            ConnectionCounters::new(),
        )));
        let server = ProxyServer::bind_with_options(
            &options.listen.ip().to_string(),
            options.listen.port(),
            router,
            EventSink::stdout(),
            ProxyOptions {
                threads: options.workers,
                ..Default::default()
            },
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
