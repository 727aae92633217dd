//! The `status` object ([`Status`]): the daemon's state converted into the wire
//! types of `control::status`.

use super::release::Release;
use super::rollout::RolloutRun;
use super::state::Daemon;
use crate::config::model::IdOrName;
use crate::control::status::{
    Account, BootstrapStatus, ControlStatus, DeployingStatus, NamedProcessStatus, ProxyStatus,
    ReleaseStatus, Status,
};
use crate::process::ManagedProcess;
use crate::util::sync::Unpoisoned;
use std::sync::Arc;

impl Daemon {
    /// Drops recorded orphans that have exited; the drop is permanent, so a
    /// recycled pid cannot bring an entry back.
    pub fn recheck_orphans(&self) {
        self.state().orphans.retain(|orphan| orphan.is_live());
    }

    /// The status object (the payload of `status` and `stop`).
    pub fn status(&self) -> Status {
        let failed_release = self.state().failed_release.clone();
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
        let (host, port) = self
            .proxy_bound
            .lock()
            .unpoisoned()
            .clone()
            .unwrap_or_else(|| (config.proxy.host.clone(), config.proxy.port));
        let named = |entries: &[(String, Arc<ManagedProcess>)]| {
            entries
                .iter()
                .map(|(id, process)| NamedProcessStatus {
                    id: id.clone(),
                    process: Some(process.status()),
                })
                .collect()
        };
        Status {
            active_release_id: active,
            application: config.application.clone(),
            bootstrap: bootstrap.map(|bootstrap| BootstrapStatus {
                attestation: bootstrap.attestation,
                release_id: bootstrap.release_id,
                release_path: bootstrap.release_path,
                revision: bootstrap.revision,
            }),
            control: ControlStatus {
                group: config.control.group.as_ref().map(account),
                mode: config.control.mode,
                owner: config.control.owner.as_ref().map(account),
                path: config.control.path.clone(),
            },
            daemon_runtime: self.runtime.clone(),
            deploying: deploying.map(|deploying| DeployingStatus {
                release_id: deploying.release_id,
                release_path: deploying.release_path,
                started_at: deploying.started_at,
            }),
            failed_release: failed_release.map(|release| release.status()),
            logging: self
                .observability()
                .map(|observability| observability.logging_status()),
            orphans: orphans.iter().map(|orphan| orphan.to_status()).collect(),
            proxy: Some(ProxyStatus {
                host,
                port,
                upstream_host: config.proxy.upstream_host.clone(),
            }),
            releases: releases_with_canary(&releases, self.rollout().as_deref()),
            rollout: self.rollout_status(),
            services: named(&services),
            singletons: named(&singletons),
            traffic: self.traffic_status(),
        }
    }
}

fn account(value: &IdOrName) -> Account {
    match value {
        IdOrName::Id(id) => Account::Id(*id),
        IdOrName::Name(name) => Account::Name(name.clone()),
    }
}

/// Every release in status order, plus an open canary (which is not among the
/// releases until it is promoted), so its processes show in `status` and `logs`.
fn releases_with_canary(
    releases: &[Arc<Release>],
    rollout: Option<&RolloutRun>,
) -> Vec<ReleaseStatus> {
    let mut statuses: Vec<ReleaseStatus> =
        releases.iter().map(|release| release.status()).collect();
    if let Some(run) = rollout
        && !releases
            .iter()
            .any(|release| Arc::ptr_eq(release, &run.release))
    {
        statuses.push(run.release.status());
    }
    statuses
}
