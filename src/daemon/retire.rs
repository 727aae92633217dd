//! Owner retirement: a replacement daemon has activated the
//! same application and asks this one to step aside. The listeners are released
//! at once; the old processes are quiesced before the reply and stopped in the
//! background, after which this daemon exits.

use super::bootstrap::is_canonical_attestation;
use super::errors::RetireError;
use super::state::Daemon;
use crate::control::reply::MessageReply;
use crate::control::server::ConnectionId;
use crate::events::Event;
use futures_util::future::join_all;
use std::sync::Arc;

impl Daemon {
    pub async fn retire_owner(
        self: &Arc<Self>,
        attestation: String,
        origin: Option<ConnectionId>,
    ) -> Result<MessageReply, RetireError> {
        if !is_canonical_attestation(&attestation) {
            return Err(RetireError::AttestationFormat);
        }
        self.begin_stopping();
        // The state file stays: the replacement reads nothing from it, and a
        // crash during the background stops still leaves a record.
        self.stop_persistence().await;
        let control = self.endpoints().control.clone();
        if let Some(control) = &control {
            control.close_except(origin).await;
        }
        let _operations = self.lock_operations().await;
        let (processes, releases) = {
            let state = self.state();
            let mut processes: Vec<_> = state.services.iter().map(|(_, p)| p.clone()).collect();
            processes.extend(state.singletons.iter().map(|(_, p)| p.clone()));
            let releases: Vec<_> = state
                .starting
                .iter()
                .chain(state.releases.iter())
                .chain(state.detached.iter())
                .cloned()
                .collect();
            (processes, releases)
        };
        let mut everything = processes.clone();
        for release in &releases {
            everything.extend(release.processes().into_iter().map(|p| p.process));
        }
        join_all(everything.iter().map(|p| p.quiesce())).await;
        if let Some(control) = control
            .as_ref()
            .filter(|_| !self.control_socket_activated())
        {
            let _ = std::fs::remove_file(control.path());
        }
        if let Some(observability) = self.observability() {
            observability.close_metrics_listener().await;
        }
        if let Some(proxy) = self.endpoints().proxy.take() {
            let deadline = tokio::time::Instant::now() + super::shutdown::PROXY_CLOSE_GRACE;
            tokio::spawn(proxy.shutdown(deadline));
        }
        let retired = self.retired.clone();
        tokio::spawn(async move {
            let process_stops = join_all(processes.iter().map(|p| p.stop()));
            let release_stops = join_all(releases.iter().map(|r| r.stop_now()));
            futures_util::future::join(process_stops, release_stops).await;
            retired.notify_one();
        });
        self.events.emit(Event::ExternalOwnerRetired {
            attestation: attestation.to_string(),
        });
        Ok(MessageReply::new("owner retired"))
    }
}
