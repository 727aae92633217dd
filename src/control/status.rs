//! The `status` object on the wire (docs/cli.md, `status`), as types: the daemon builds
//! it, the `status` and `stop` replies carry it, and every reader (the CLI's
//! `logs`, `ensure-daemon` and `predeploy-cleanup`, the socket probe, the state
//! file) deserialises it instead of looking keys up by name.
//!
//! Field order is the wire order (keys sorted, as the JavaScript tool wrote them);
//! a key that does not apply is absent (`skip_serializing_if`) rather than `null`
//! unless the wire says `null`. Reading is lenient field by field
//! ([`crate::util::lenient`]): the reply of another daemon build with an odd or
//! missing field still yields everything else.
//!
//! A new status field is one field here, in its place in key order, set where the
//! daemon builds the struct (`src/daemon/status.rs`, `src/daemon/release.rs`,
//! `src/process/status.rs`).

use crate::util::lenient::{lenient, lenient_list, present};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The whole `status` object, without the `status` envelope key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Status {
    /// `null` when no release serves traffic.
    #[serde(deserialize_with = "lenient")]
    pub active_release_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub application: String,
    /// Only on a daemon started by `rollbridge daemon --bootstrap-*`.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapStatus>,
    #[serde(deserialize_with = "lenient")]
    pub control: ControlStatus,
    /// Which build answers; absent on daemons that do not report it.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub daemon_runtime: Option<RuntimeIdentity>,
    /// Only while a deploy or rollback runs.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub deploying: Option<DeployingStatus>,
    /// Only after a failed deploy, until the next deploy starts: its release
    /// (stopped), so the processes' output stays readable (`logs --release`).
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub failed_release: Option<ReleaseStatus>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingStatus>,
    #[serde(deserialize_with = "lenient_list")]
    pub orphans: Vec<OrphanStatus>,
    /// Always present on the wire; `None` when read from a reply without a
    /// usable `host` and `port`.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyStatus>,
    #[serde(deserialize_with = "lenient_list")]
    pub releases: Vec<ReleaseStatus>,
    /// Only while a post-switch watch or a canary runs (docs/rollouts.md).
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    #[serde(deserialize_with = "lenient_list")]
    pub services: Vec<NamedProcessStatus>,
    #[serde(deserialize_with = "lenient_list")]
    pub singletons: Vec<NamedProcessStatus>,
    /// Only while traffic is paused or in maintenance.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficStatus>,
}

/// `status.rollout`: the watch or canary in progress and its window's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The new release (the canary, or the release being watched).
    #[serde(deserialize_with = "lenient")]
    pub release_id: String,
    #[serde(deserialize_with = "lenient")]
    pub previous_release_id: Option<String>,
    /// `canary` or `watching`.
    #[serde(deserialize_with = "lenient")]
    pub phase: String,
    /// The share of new requests the new release gets (100 while watching).
    #[serde(deserialize_with = "lenient")]
    pub percent: u8,
    #[serde(deserialize_with = "lenient")]
    pub started_at: String,
    /// Responses of the new release in the window, and how many were 5xx.
    #[serde(deserialize_with = "lenient")]
    pub requests: u64,
    #[serde(deserialize_with = "lenient")]
    pub errors: u64,
    #[serde(deserialize_with = "lenient")]
    pub error_rate: f64,
    /// `null` before the first response.
    #[serde(deserialize_with = "lenient")]
    pub p99_ms: Option<u64>,
}

/// `status.traffic`: pause and maintenance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrafficStatus {
    #[serde(deserialize_with = "lenient")]
    pub paused: bool,
    #[serde(deserialize_with = "lenient")]
    pub maintenance: bool,
    /// Requests waiting right now; only while paused.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub held: Option<u64>,
}

impl Status {
    /// Reads a status reply (the `status` envelope key is ignored); fields with
    /// another shape are left at their defaults.
    pub fn from_reply(reply: &serde_json::Map<String, Value>) -> Status {
        crate::util::lenient::object_or_default(Value::Object(reply.clone()))
    }

    /// Every process the status lists: release processes (in release order), then
    /// services, then singletons.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessStatus> {
        self.releases
            .iter()
            .flat_map(|release| release.processes.iter())
            .chain(
                self.services
                    .iter()
                    .chain(&self.singletons)
                    .filter_map(|entry| entry.process.as_ref()),
            )
    }
}

/// `status.bootstrap`: what `--bootstrap-*` deployed at startup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BootstrapStatus {
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub release_id: String,
    #[serde(deserialize_with = "lenient")]
    pub release_path: String,
    #[serde(deserialize_with = "lenient")]
    pub revision: String,
}

/// `status.control`: the socket and its ownership as configured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlStatus {
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub group: Option<Account>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub owner: Option<Account>,
    #[serde(deserialize_with = "lenient")]
    pub path: String,
}

/// A socket owner or group as configured: a numeric id or a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Account {
    Id(u32),
    Name(String),
}

/// `status.daemonRuntime`: the build of rollbridge that answers. `ensure-daemon`
/// compares it with its own and refuses a daemon running different code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeIdentity {
    /// SHA-256 of the executable, 64 lowercase hex digits.
    #[serde(deserialize_with = "lenient")]
    pub digest: String,
    #[serde(deserialize_with = "lenient")]
    pub format: u64,
    /// The directory the daemon executable lives in.
    #[serde(deserialize_with = "lenient")]
    pub path: String,
    #[serde(deserialize_with = "lenient")]
    pub version: String,
}

impl RuntimeIdentity {
    /// Same format, version and digest (the path may differ).
    pub fn same_build(&self, other: &RuntimeIdentity) -> bool {
        self.format == other.format && self.version == other.version && self.digest == other.digest
    }
}

/// `status.deploying`: the deploy or rollback in progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeployingStatus {
    #[serde(deserialize_with = "lenient")]
    pub release_id: String,
    #[serde(deserialize_with = "lenient")]
    pub release_path: String,
    #[serde(deserialize_with = "lenient")]
    pub started_at: String,
}

/// `status.logging`: lines the daemon could not write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LoggingStatus {
    #[serde(deserialize_with = "lenient")]
    pub dropped_lines: u64,
    #[serde(deserialize_with = "lenient")]
    pub process_dropped_lines: u64,
}

/// A process an earlier daemon left behind that is still alive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OrphanStatus {
    #[serde(deserialize_with = "lenient")]
    pub id: String,
    #[serde(deserialize_with = "lenient")]
    pub pid: i32,
    /// `null` for services and singletons.
    #[serde(deserialize_with = "lenient")]
    pub release_id: Option<String>,
}

/// `status.proxy`: where the proxy listens (the bound port once it runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatus {
    pub host: String,
    pub port: u16,
    #[serde(default, deserialize_with = "lenient")]
    pub upstream_host: String,
}

/// One release: identity, state, traffic and processes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReleaseStatus {
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<String>,
    /// `connections.http + connections.websocket`.
    #[serde(deserialize_with = "lenient")]
    pub connection_count: u64,
    #[serde(deserialize_with = "lenient")]
    pub connections: ConnectionsStatus,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub drain_started_at: Option<String>,
    /// Process id → port, in config order.
    #[serde(
        deserialize_with = "ports_from_object",
        serialize_with = "ports_as_object"
    )]
    pub ports: Vec<(String, u16)>,
    #[serde(deserialize_with = "lenient_list")]
    pub processes: Vec<ProcessStatus>,
    #[serde(deserialize_with = "lenient")]
    pub release_id: String,
    #[serde(deserialize_with = "lenient")]
    pub release_path: String,
    #[serde(deserialize_with = "lenient")]
    pub revision: String,
    /// `starting`, `active`, `draining`, `stopped` or `failed`.
    #[serde(deserialize_with = "lenient")]
    pub state: String,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
}

/// Open proxied connections of a release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionsStatus {
    #[serde(deserialize_with = "lenient")]
    pub http: u64,
    #[serde(deserialize_with = "lenient")]
    pub websocket: u64,
}

/// A service or singleton: its entry id and its process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamedProcessStatus {
    #[serde(deserialize_with = "lenient")]
    pub id: String,
    /// Always present on the wire.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessStatus>,
}

/// One managed process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProcessStatus {
    /// The other members of its process group.
    #[serde(deserialize_with = "lenient_list")]
    pub children: Vec<ChildStatus>,
    #[serde(deserialize_with = "lenient")]
    pub command: String,
    #[serde(deserialize_with = "lenient")]
    pub cwd: String,
    /// Present (possibly `null`) once the process has exited, with `exitSignal`.
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<Option<i32>>,
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<Option<String>>,
    /// The instance id (`web`, `worker#0`).
    #[serde(deserialize_with = "lenient")]
    pub id: String,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub last_memory_restart_at: Option<String>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub last_start_reason: Option<String>,
    /// The newest captured output lines.
    #[serde(deserialize_with = "lenient_list")]
    pub logs: Vec<LogLineStatus>,
    #[serde(deserialize_with = "lenient")]
    pub memory_restarts: u64,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(deserialize_with = "lenient")]
    pub restarts: u64,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub state: String,
    /// Only while running.
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
}

/// A member of a managed process's group other than its leader.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ChildStatus {
    #[serde(deserialize_with = "lenient")]
    pub command: String,
    #[serde(deserialize_with = "lenient")]
    pub pid: i32,
    #[serde(deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
}

/// One captured output line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogLineStatus {
    #[serde(deserialize_with = "lenient")]
    pub at: String,
    #[serde(deserialize_with = "lenient")]
    pub line: String,
    /// `stdout` or `stderr`.
    #[serde(deserialize_with = "lenient")]
    pub stream: String,
}

fn ports_as_object<S: Serializer>(
    ports: &[(String, u16)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(ports.len()))?;
    for (id, port) in ports {
        map.serialize_entry(id, port)?;
    }
    map.end()
}

fn ports_from_object<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, u16)>, D::Error> {
    let Value::Object(ports) = Value::deserialize(deserializer)? else {
        return Ok(Vec::new());
    };
    Ok(ports
        .into_iter()
        .filter_map(|(id, port)| Some((id, u16::try_from(port.as_u64()?).ok()?)))
        .collect())
}
