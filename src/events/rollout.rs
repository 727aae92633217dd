//! Events of traffic control: rollouts (watch and canary), pause and
//! maintenance. One [`Event::Traffic`](super::Event) variant carries them, so
//! their names and `data` keys are spelled here once.

use crate::data;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum TrafficEvent {
    RolloutStarted {
        release_id: String,
        phase: &'static str,
        percent: u8,
    },
    RolloutUpdated {
        release_id: String,
        percent: u8,
    },
    RolloutPassed {
        release_id: String,
        requests: u64,
        errors: u64,
    },
    RolloutFailed {
        release_id: String,
        reason: String,
    },
    AutomaticRollback {
        release_id: String,
        previous_release_id: String,
        reason: String,
    },
    Paused,
    Resumed {
        held: usize,
    },
    MaintenanceOn,
    MaintenanceOff,
}

impl TrafficEvent {
    /// The event's name and `data`, keys in wire order.
    pub fn to_parts(&self) -> (&'static str, Map<String, Value>) {
        match self {
            TrafficEvent::RolloutStarted {
                release_id,
                phase,
                percent,
            } => (
                "rollout started",
                data! { "releaseId" => release_id, "phase" => phase, "percent" => percent },
            ),
            TrafficEvent::RolloutUpdated {
                release_id,
                percent,
            } => (
                "rollout updated",
                data! { "releaseId" => release_id, "percent" => percent },
            ),
            TrafficEvent::RolloutPassed {
                release_id,
                requests,
                errors,
            } => (
                "rollout passed",
                data! { "releaseId" => release_id, "requests" => requests, "errors" => errors },
            ),
            TrafficEvent::RolloutFailed { release_id, reason } => (
                "rollout failed",
                data! { "releaseId" => release_id, "reason" => reason },
            ),
            TrafficEvent::AutomaticRollback {
                release_id,
                previous_release_id,
                reason,
            } => (
                "automatic rollback",
                data! {
                    "releaseId" => release_id,
                    "previousReleaseId" => previous_release_id,
                    "reason" => reason,
                },
            ),
            TrafficEvent::Paused => ("traffic paused", Map::new()),
            TrafficEvent::Resumed { held } => ("traffic resumed", data! { "held" => held }),
            TrafficEvent::MaintenanceOn => ("maintenance on", Map::new()),
            TrafficEvent::MaintenanceOff => ("maintenance off", Map::new()),
        }
    }
}
