//! Pause, maintenance and the readiness answer: switches in the proxy's routing
//! table that survive deploys (a deploy only replaces the active release).

use super::state::Daemon;
use crate::config::model::Config;
use crate::control::reply::{MaintenanceReply, PauseReply, ResumeReply};
use crate::control::status::TrafficStatus;
use crate::events::{Event, TrafficEvent};
use crate::proxy::Hold;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// `pause` without `maxMs`: the longest a request is held.
pub const DEFAULT_PAUSE_MAX_MS: u64 = 30_000;
/// On resume, the longest one held request may hold up the next one.
pub const RELEASE_STEP: Duration = Duration::from_millis(50);
/// The maintenance answer when no message is given.
pub const DEFAULT_MAINTENANCE_MESSAGE: &str = "Down for maintenance";

impl Daemon {
    /// Holds new requests in the proxy, each for at most `max_ms`.
    pub fn pause_traffic(&self, max_ms: Option<u64>) -> PauseReply {
        let max_ms = max_ms.unwrap_or(DEFAULT_PAUSE_MAX_MS);
        let mut started = false;
        self.router.update(|table| {
            if table.hold.is_none() {
                table.hold = Some(Hold::new(Duration::from_millis(max_ms)));
                started = true;
            }
        });
        if started {
            self.events.emit(Event::Traffic(TrafficEvent::Paused));
        }
        let max_ms = self
            .router
            .table()
            .hold
            .as_ref()
            .map_or(max_ms, |hold| hold.max_wait.as_millis() as u64);
        PauseReply {
            paused: true,
            max_ms,
        }
    }

    /// Ends a pause: new requests flow at once, held ones are routed in arrival
    /// order (in the background: each waits for the one before it, briefly).
    pub fn resume_traffic(&self) -> ResumeReply {
        let previous = self.router.update(|table| table.hold = None);
        let Some(hold) = previous.hold.clone() else {
            return ResumeReply {
                paused: false,
                held: 0,
            };
        };
        let held = hold.waiting();
        tokio::spawn(async move { hold.release_in_order(RELEASE_STEP).await });
        self.events
            .emit(Event::Traffic(TrafficEvent::Resumed { held }));
        ResumeReply {
            paused: false,
            held: held as u64,
        }
    }

    /// Turns maintenance on (every request gets 503 with `message`) or off.
    pub fn set_maintenance(&self, enabled: bool, message: Option<String>) -> MaintenanceReply {
        let text = message.unwrap_or_else(|| DEFAULT_MAINTENANCE_MESSAGE.to_string());
        let body = enabled.then(|| Bytes::from(format!("{}\n", text.trim_end_matches('\n'))));
        let previous = self.router.update(|table| table.maintenance = body);
        if previous.maintenance.is_some() != enabled {
            self.events.emit(Event::Traffic(if enabled {
                TrafficEvent::MaintenanceOn
            } else {
                TrafficEvent::MaintenanceOff
            }));
        }
        MaintenanceReply {
            maintenance: enabled,
            message: enabled.then_some(text),
        }
    }

    /// The config's part of the routing table (`proxy.readinessPath`).
    pub fn apply_traffic_config(&self, config: &Config) {
        let path = config.proxy.readiness_path.as_deref().map(Arc::from);
        self.router.update(|table| table.readiness_path = path);
    }

    /// Readiness answers 503 from now on; requests held by a pause are let go so
    /// they are answered before the proxy closes.
    pub fn traffic_stopping(&self) {
        let previous = self.router.update(|table| {
            table.stopping = true;
            table.hold = None;
        });
        if let Some(hold) = &previous.hold {
            hold.release_all();
        }
    }

    /// `status.traffic` while paused or in maintenance (`held` while paused).
    pub fn traffic_status(&self) -> Option<TrafficStatus> {
        let table = self.router.table();
        if table.hold.is_none() && table.maintenance.is_none() {
            return None;
        }
        Some(TrafficStatus {
            paused: table.hold.is_some(),
            maintenance: table.maintenance.is_some(),
            // Requests waiting right now: an operator's first question during a pause.
            held: table.hold.as_ref().map(|hold| hold.waiting() as u64),
        })
    }
}
