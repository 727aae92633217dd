//! The `status` object (protocol.md §4), keys in wire order.

use super::orphans::Orphan;
use super::state::Daemon;
use crate::config::model::IdOrName;
use serde_json::{Map, Value};

impl Daemon {
    /// Drops recorded orphans that have exited; the drop is permanent, so a
    /// recycled pid cannot bring an entry back.
    pub fn recheck_orphans(&self) {
        self.state().orphans.retain(|orphan| orphan.is_live());
    }

    /// The status object without the `status` envelope key.
    pub fn status_map(&self) -> Map<String, Value> {
        let (config, releases, active, services, singletons, orphans, deploying, bootstrap) = {
            let state = self.state();
            (
                state.config.clone(),
                state.releases.clone(),
                state.active.as_ref().map(|r| r.id.clone()),
                state.services.clone(),
                state.singletons.clone(),
                state.orphans.clone(),
                state.deploying.clone(),
                state.bootstrap.clone(),
            )
        };
        let mut map = Map::new();
        map.insert(
            "activeReleaseId".into(),
            active.map(Value::from).unwrap_or(Value::Null),
        );
        map.insert(
            "application".into(),
            Value::from(config.application.clone()),
        );
        if let Some(bootstrap) = bootstrap {
            let mut object = Map::new();
            if let Some(attestation) = bootstrap.attestation {
                object.insert("attestation".into(), Value::from(attestation));
            }
            object.insert("releaseId".into(), Value::from(bootstrap.release_id));
            object.insert("releasePath".into(), Value::from(bootstrap.release_path));
            object.insert("revision".into(), Value::from(bootstrap.revision));
            map.insert("bootstrap".into(), Value::Object(object));
        }
        let mut control = Map::new();
        if let Some(group) = &config.control.group {
            control.insert("group".into(), id_or_name(group));
        }
        if let Some(mode) = config.control.mode {
            control.insert("mode".into(), Value::from(mode));
        }
        if let Some(owner) = &config.control.owner {
            control.insert("owner".into(), id_or_name(owner));
        }
        control.insert("path".into(), Value::from(config.control.path.clone()));
        map.insert("control".into(), Value::Object(control));
        if let Some(runtime) = &self.runtime {
            map.insert("daemonRuntime".into(), runtime.to_json());
        }
        if let Some(deploying) = deploying {
            let mut object = Map::new();
            object.insert("releaseId".into(), Value::from(deploying.release_id));
            object.insert("releasePath".into(), Value::from(deploying.release_path));
            object.insert("startedAt".into(), Value::from(deploying.started_at));
            map.insert("deploying".into(), Value::Object(object));
        }
        if let Some(observability) = self.observability() {
            map.insert("logging".into(), observability.logging_status());
        }
        map.insert(
            "orphans".into(),
            Value::Array(orphans.iter().map(Orphan::to_json).collect()),
        );
        let (host, port) = self
            .proxy_bound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| (config.proxy.host.clone(), config.proxy.port));
        let mut proxy = Map::new();
        proxy.insert("host".into(), Value::from(host));
        proxy.insert("port".into(), Value::from(port));
        proxy.insert(
            "upstreamHost".into(),
            Value::from(config.proxy.upstream_host.clone()),
        );
        map.insert("proxy".into(), Value::Object(proxy));
        map.insert(
            "releases".into(),
            Value::Array(releases.iter().map(|r| r.status_json()).collect()),
        );
        if let Some(rollout) = self.rollout_status() {
            map.insert("rollout".into(), rollout);
        }
        let named = |entries: &[(String, std::sync::Arc<crate::process::ManagedProcess>)]| {
            Value::Array(
                entries
                    .iter()
                    .map(|(id, process)| {
                        let mut entry = Map::new();
                        entry.insert("id".into(), Value::from(id.clone()));
                        entry.insert("process".into(), Value::Object(process.status_json()));
                        Value::Object(entry)
                    })
                    .collect(),
            )
        };
        map.insert("services".into(), named(&services));
        map.insert("singletons".into(), named(&singletons));
        if let Some(traffic) = self.traffic_status() {
            map.insert("traffic".into(), traffic);
        }
        map
    }
}

fn id_or_name(value: &IdOrName) -> Value {
    match value {
        IdOrName::Id(id) => Value::from(*id),
        IdOrName::Name(name) => Value::from(name.clone()),
    }
}
