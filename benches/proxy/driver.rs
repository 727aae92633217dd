//! Runs rollbridge's proxy on its own with one fixed upstream, for the benchmarks
//! in `benches/proxy` and `benches/observability`; optionally with request
//! metrics (and a `/metrics` listener) and an access log.
//!
//! `proxy_driver --listen 127.0.0.1:0 --upstream 127.0.0.1:8080
//!   [--workers N] [--metrics 127.0.0.1:0] [--access-log PATH] [--format json|combined]
//!   [--canary PERCENT]`
//!
//! `--canary` (or `CANARY_PERCENT` in the environment, for scripts that start the
//! driver under valgrind) adds a second release target on the same upstream that
//! gets PERCENT of the requests (the canary split of `docs/rollouts.md`).
//!
//! `--workers` is the number of proxy threads ([`ProxyOptions::threads`]; by
//! default the daemon's choice for this machine). Prints `listening <addr>` (and
//! `metrics <addr>`) once ready, serves until SIGTERM or SIGINT, then prints
//! `access-log-dropped <n>` when there was an access log.

use rollbridge::config::model::AccessLogFormat;
use rollbridge::events::EventSink;
use rollbridge::observability::metrics::{Metrics, MetricsServer};
use rollbridge::observability::{AccessLog, ProxyObserver};
use rollbridge::proxy::{
    Canary, ConnectionCounters, ProxyOptions, ProxyServer, ReleaseTarget, Router,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

struct Options {
    listen: SocketAddr,
    upstream: SocketAddr,
    workers: usize,
    metrics: Option<SocketAddr>,
    access_log: Option<PathBuf>,
    format: AccessLogFormat,
    canary: Option<u8>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: "127.0.0.1:0".parse().unwrap(),
        workers: ProxyOptions::default().threads,
        metrics: None,
        access_log: None,
        format: AccessLogFormat::Json,
        canary: std::env::var("CANARY_PERCENT")
            .ok()
            .and_then(|percent| percent.parse().ok()),
    };
    let mut upstream_given = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let address = |v: &str| v.parse::<SocketAddr>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--listen" => options.listen = address(&value)?,
            "--upstream" => {
                options.upstream = address(&value)?;
                upstream_given = true;
            }
            "--workers" => {
                options.workers = value.parse().map_err(|e| format!("--workers: {e}"))?
            }
            "--metrics" => options.metrics = Some(address(&value)?),
            "--access-log" => options.access_log = Some(PathBuf::from(value)),
            "--format" => {
                options.format = AccessLogFormat::parse(&value)
                    .ok_or_else(|| format!("--format: {value} is not json or combined"))?
            }
            "--canary" => {
                options.canary = Some(value.parse().map_err(|e| format!("--canary: {e}"))?)
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if !upstream_given {
        return Err("--upstream is required".into());
    }
    Ok(options)
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("proxy_driver: {message}");
            std::process::exit(2);
        }
    };
    // The proxy runs on its own threads; this runtime serves /metrics and waits
    // for a signal.
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
        if let Some(percent) = options.canary {
            router.set_canary(Some(Canary {
                target: ReleaseTarget::new(
                    "canary".into(),
                    &options.upstream.ip().to_string(),
                    options.upstream.port(),
                    ConnectionCounters::new(),
                ),
                percent,
                sticky: None,
            }));
        }
        let metrics = Metrics::new();
        metrics.set_router(router.clone());
        let _metrics_server = match options.metrics {
            Some(address) => {
                let server =
                    MetricsServer::bind(&address.ip().to_string(), address.port(), metrics.clone())
                        .await
                        .expect("bind metrics");
                println!("metrics {}", server.local_addr());
                Some(server)
            }
            None => None,
        };
        let access = options
            .access_log
            .as_ref()
            .map(|path| AccessLog::open(path, options.format).expect("open the access log"));
        let observer = Arc::new(ProxyObserver::new(
            options.metrics.map(|_| metrics.proxy().clone()),
            access.as_ref().map(|(log, _)| log.clone()),
        ));
        let server = ProxyServer::bind_with_options(
            &options.listen.ip().to_string(),
            options.listen.port(),
            router,
            EventSink::stdout(),
            ProxyOptions {
                threads: options.workers,
                observer: Some(observer),
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
        if let Some((log, writer)) = access {
            writer.finish();
            println!("access-log-dropped {}", log.stats().dropped_lines());
        }
    });
}
