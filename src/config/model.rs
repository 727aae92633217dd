//! The typed, normalized configuration. Every field has its default applied and
//! has passed validation, so the rest of rollbridge trusts these values as they are.
//!
//! Field names follow the camelCase config keys (`drainTimeoutMs` → `drain_timeout_ms`).

use super::hook::HookSpec;
pub use crate::observability::Rotation;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// A validated, normalized rollbridge config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub application: String,
    pub control: ControlConfig,
    pub proxy: ProxyConfig,
    pub processes: Vec<ProcessConfig>,
    pub legacy_takeover: Option<LegacyTakeover>,
    pub release_retention: ReleaseRetention,
    /// `statePath`; `None` when unset (no persistence).
    pub state_path: Option<String>,
    /// Top-level `plugins` table.
    pub plugins: PluginsConfig,
    /// `metrics`: the Prometheus listener; `None` when not configured.
    pub metrics: Option<MetricsConfig>,
    /// `rollout`: the post-switch watch and canary rules (docs/rollouts.md).
    pub rollout: RolloutConfig,
}

/// `rollout`: how a new release is watched after the switch (and during a canary).
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutConfig {
    /// `watchMs`: how long the previous release stays ready after a switch; 0 = no watch.
    pub watch_ms: u64,
    /// `maxErrorRate`: the share of 5xx responses that fails a rollout.
    pub max_error_rate: f64,
    /// `minRequests`: no error-rate verdict below this many responses.
    pub min_requests: u64,
    /// `maxP99Ms`: a p99 latency bound over the window, if any.
    pub max_p99_ms: Option<u64>,
    /// `healthFailures`: consecutive failed probes of the new release that fail it.
    pub health_failures: u32,
    /// `check`: a hook asked about once a second with the window's stats.
    pub check: Option<HookSpec>,
    /// `stickyBy`: `header:<Name>` or `cookie:<name>`.
    pub sticky_by: Option<String>,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            watch_ms: 0,
            max_error_rate: 0.05,
            min_requests: 20,
            max_p99_ms: None,
            health_failures: 3,
            check: None,
            sticky_by: None,
        }
    }
}

impl Config {
    /// The single `proxied` process (validation guarantees exactly one).
    pub fn proxied(&self) -> &ProcessConfig {
        self.processes
            .iter()
            .find(|p| p.policy == Policy::Proxied)
            .expect("a validated config has exactly one proxied process")
    }

    pub fn process(&self, id: &str) -> Option<&ProcessConfig> {
        self.processes.iter().find(|p| p.id == id)
    }
}

/// A control socket owner or group: a numeric id, or a name resolved at bind time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdOrName {
    Id(u32),
    Name(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    /// Socket path; defaults to `/tmp/rollbridge-<application>.sock`.
    pub path: String,
    /// `chmod` mode as an integer (`"660"` → 432).
    pub mode: Option<u32>,
    pub owner: Option<IdOrName>,
    pub group: Option<IdOrName>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub host: String,
    /// 0 means an ephemeral port.
    pub port: u16,
    pub upstream_host: String,
    pub health_path: String,
    pub health_timeout_ms: u64,
    pub drain_timeout_ms: u64,
    /// Default `gracefulStopMs` and the `recover --force` grace period.
    pub force_stop_timeout_ms: u64,
    /// `proxy.accessLog`; `None` when not configured.
    pub access_log: Option<AccessLogConfig>,
    /// `proxy.trustedProxies`: peers whose `X-Forwarded-*` / `Forwarded` headers
    /// are believed (default: loopback).
    pub trusted_proxies: Vec<IpRange>,
    /// `proxy.bodyTimeoutMs`: the longest a request or response body may go without
    /// progress; 0 means no limit.
    pub body_timeout_ms: u64,
    /// `proxy.allowedUpgrades`: `Upgrade` tokens tunnelled besides `websocket`,
    /// lower case (default: none).
    pub allowed_upgrades: Vec<String>,
    /// `proxy.readinessPath`: answered by the proxy itself for load balancers.
    pub readiness_path: Option<String>,
}

/// An address range of `proxy.trustedProxies`: one address, or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// What `proxy.trustedProxies` holds when unset: IPv4 and IPv6 loopback.
    pub fn loopback() -> Vec<IpRange> {
        vec![
            IpRange {
                network: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            },
            IpRange {
                network: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ]
    }

    /// `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`; `None` when not one of these.
    /// Host bits below the prefix are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn parse(text: &str) -> Option<IpRange> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().ok()?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse::<u8>().ok().filter(|p| *p <= width)?
            }
            Some(_) => return None,
        };
        Some(IpRange { network, prefix })
    }

    /// Whether `address` (IPv4-mapped IPv6 counts as IPv4) lies in the range.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// `proxy.accessLog`: one line per proxied request.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    /// Resolved against the config's folder when relative.
    pub path: PathBuf,
    pub format: AccessLogFormat,
}

/// `proxy.accessLog.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// One JSON object per line (the default).
    #[default]
    Json,
    /// The Apache/nginx "combined" format.
    Combined,
}

impl AccessLogFormat {
    pub const NAMES: [&'static str; 2] = ["json", "combined"];

    pub fn parse(text: &str) -> Option<AccessLogFormat> {
        match text {
            "json" => Some(AccessLogFormat::Json),
            "combined" => Some(AccessLogFormat::Combined),
            _ => None,
        }
    }
}

/// `processes[].logFile`: a file the process's output is appended to, besides
/// the in-memory ring.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessLogFileConfig {
    /// The path, still holding its `{{…}}` placeholders. Rendered for each
    /// instance, then resolved against `base_dir` when relative.
    pub path: String,
    /// The config's folder (relative paths are taken from it, like
    /// `proxy.accessLog.path`).
    pub base_dir: PathBuf,
    pub format: ProcessLogFormat,
    /// `None`: the daemon's `--log-rotation`.
    pub rotation: Option<Rotation>,
    /// `None`: the daemon's `--log-keep`.
    pub keep: Option<usize>,
}

/// `processes[].logFile.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessLogFormat {
    /// Each line as the process wrote it (the default).
    #[default]
    Raw,
    /// One `{"at","line","stream"}` object per line, like `rollbridge logs --json`.
    Json,
}

impl ProcessLogFormat {
    pub const NAMES: [&'static str; 2] = ["raw", "json"];

    pub fn parse(text: &str) -> Option<ProcessLogFormat> {
        match text {
            "raw" => Some(ProcessLogFormat::Raw),
            "json" => Some(ProcessLogFormat::Json),
            _ => None,
        }
    }
}

/// `metrics`: where the Prometheus `/metrics` listener binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub host: String,
    /// 0 picks a free port (reported by the `metrics listening` event).
    pub port: u16,
}

crate::util::names::wire_names! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Policy {
        Proxied = "proxied",
        Companion = "companion",
        Singleton = "singleton",
        Service = "service",
    }
}

crate::util::names::wire_names! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum DeployStrategy {
        /// One daemon-wide instance that survives deploys (services only).
        #[default]
        Persistent = "persistent",
        /// A fresh instance per release, started first and stopped last (services only).
        Handoff = "handoff",
    }
}

/// An inclusive port range; `from == 0` or `to == 0` means "ephemeral".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

impl PortRange {
    pub fn is_ephemeral(&self) -> bool {
        self.from == 0 || self.to == 0
    }
}

/// How long a stop waits for the process group before `SIGKILL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GracefulStop {
    Millis(u64),
    /// `"indefinite"`: wait for the group to exit, never `SIGKILL`.
    Indefinite,
}

impl GracefulStop {
    /// The bound for quiet and stop hooks: the window itself, or 30 s when indefinite.
    pub fn hook_timeout_ms(self) -> u64 {
        match self {
            GracefulStop::Millis(ms) => ms,
            GracefulStop::Indefinite => 30_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub path: String,
    pub timeout_ms: u64,
    pub interval_ms: u64,
    pub start_delay_ms: u64,
    /// `health.check`: a custom readiness hook; when set, the built-in HTTP probe
    /// does not run.
    pub check: Option<HookSpec>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lifecycle {
    /// `lifecycle.quiet` or the legacy `lifecycle.quietCommand`.
    pub quiet: Option<HookSpec>,
    /// `lifecycle.drain` or the legacy `lifecycle.drainCommand`.
    pub drain: Option<HookSpec>,
    /// `lifecycle.stop` or the legacy `lifecycle.stopCommand`; replaces `stopSignal`.
    pub stop: Option<HookSpec>,
    /// 0 skips the drain step.
    pub drain_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    /// `None`: unlimited. `Some(0)` turns automatic restarts off.
    pub max_restarts: Option<u32>,
    /// 0: the budget covers the whole lifetime of the process object.
    pub window_ms: u64,
    pub backoff_factor: f64,
    /// 0: no cap.
    pub max_delay_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: None,
            window_ms: 0,
            backoff_factor: 1.0,
            max_delay_ms: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    pub limit_bytes: u64,
    /// 0: no warning.
    pub warn_bytes: u64,
    pub check_interval_ms: u64,
}

/// One entry of `processes[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessConfig {
    pub id: String,
    /// Shell command, still holding its `{{…}}` placeholders.
    pub command: String,
    pub policy: Policy,
    pub deploy_strategy: DeployStrategy,
    /// Working directory template; `None` means the release path.
    pub cwd: Option<String>,
    /// Environment templates in config order.
    pub env: Vec<(String, String)>,
    pub port: Option<PortRange>,
    /// `None` when health checking is disabled (`health: false` / `null`).
    pub health: Option<HealthConfig>,
    /// Canonical signal name, e.g. `"SIGTERM"`.
    pub stop_signal: String,
    pub graceful_stop: GracefulStop,
    pub lifecycle: Lifecycle,
    pub non_blocking_drain: bool,
    pub restart_delay_ms: u64,
    pub restart: RestartPolicy,
    pub memory: Option<MemoryConfig>,
    pub replicas: u32,
    pub output_lines: usize,
    /// `logFile`; `None` when the output only goes to the ring.
    pub log_file: Option<ProcessLogFileConfig>,
}

impl ProcessConfig {
    pub fn is_handoff_service(&self) -> bool {
        self.policy == Policy::Service && self.deploy_strategy == DeployStrategy::Handoff
    }

    pub fn is_persistent_service(&self) -> bool {
        self.policy == Policy::Service && self.deploy_strategy == DeployStrategy::Persistent
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LegacyProcessMatcher {
    /// Every string must be a substring of a process's command line.
    pub includes: Vec<String>,
    /// A label for messages; defaults to `legacy process <i+1>`.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LegacyTakeover {
    pub force_stop_timeout_ms: u64,
    /// `screens`: the built-in `screen` matcher.
    pub screens: Vec<String>,
    /// `processes`: the built-in `cmdline` matcher.
    pub processes: Vec<LegacyProcessMatcher>,
    /// `matchers`: extra matcher hooks (Lua, native or built-in by name).
    pub matchers: Vec<HookSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRetention {
    pub keep: u64,
    /// 0: off.
    pub max_age_ms: u64,
}

impl Default for ReleaseRetention {
    fn default() -> Self {
        ReleaseRetention {
            keep: 10,
            max_age_ms: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PluginsConfig {
    /// Shared libraries to load, resolved against the config's folder.
    pub native: Vec<PathBuf>,
}
