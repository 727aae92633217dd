//! The HTTP/WebSocket proxy in front of the active release.
//!
//! Every request is routed on arrival to the release the [`Router`] points at, over a
//! keep-alive pool owned by that release's [`ReleaseTarget`]; a switch affects the
//! very next request, even on a client connection that stays open. Each release's
//! [`ConnectionCounters`] track its in-flight HTTP requests and open upgraded
//! connections so the daemon can wait for a retired release to drain; the router
//! counts a request in the same step that picks its release, and closes a release's
//! counters when it switches away, so a drain's count is never missing a request.
//!
//! Layout: `server` (options, starting the threads, shutdown), `worker` (one proxy
//! thread: taking and serving client connections), `distribute` (one thread
//! accepts, the least busy thread serves), `edge` (the request rules checked
//! before routing), `forward` (one request), `deadline` (body progress limits),
//! `upgrade` (WebSocket and other upgrades), `splice` (the byte relay of an
//! upgraded connection), `headers` (hop-by-hop and `X-Forwarded-*`), `body`
//! (streamed response bodies holding the drain count), `pool` (upstream keep-alive
//! connections), `quickack` (no delayed-ACK stall on pooled connections),
//! `relay` (the direct upstream exchange for requests without a body), `idle` (closing idle and slow client connections), `counters`,
//! `client_io` (the client socket as hyper sees it, and what a live upgrade
//! needs to take it between requests), `connection_handover` and `tunnel_handover`
//! (keep-alive connections and tunnels handed to the next image), `router`, `target`, `traffic` (canary, pause, maintenance, readiness rules),
//! `traffic_answers` (the proxy's own answers under those rules), `stats`
//! (per-release responses for rollouts), `errors`.
//!
//! The server runs on threads of its own (one or two, by machine size), each with a
//! single-threaded tokio runtime, so the daemon's other work (hooks, supervision,
//! Lua) can never delay a request, and a request and its upstream exchange never
//! hop between threads. The public types are safe to use from any thread/runtime.

mod body;
mod client_io;
mod connection_handover;
mod counters;
mod deadline;
mod distribute;
mod edge;
mod errors;
mod forward;
mod headers;
mod idle;
mod pool;
mod quickack;
mod relay;
mod router;
mod server;
mod splice;
mod stats;
mod target;
mod traffic;
mod traffic_answers;
mod tunnel_handover;
mod upgrade;
mod worker;

pub use connection_handover::IdleConnection;
pub use counters::{ConnectionCounters, ConnectionGuard};
pub use errors::{ERROR_REPORT_INTERVAL, UpstreamError};
pub use pool::{MAX_IDLE_PER_RELEASE, UPSTREAM_CONNECT_TIMEOUT};
pub use router::Router;
pub use server::{BODY_TIMEOUT, HEADER_READ_TIMEOUT, ProxyOptions, ProxyServer};
pub use stats::{LATENCY_BOUNDS_MS, StatsSnapshot, TrafficStats};
pub use target::ReleaseTarget;
pub use traffic::{Canary, Hold, RoutingTable, StickyBy};
pub use traffic_answers::RETRY_AFTER_SECONDS;
pub use tunnel_handover::FrozenTunnel;
