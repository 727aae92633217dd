//! Rollout gauges: which phase a rollout is in and the new release's share.

use super::text::{Kind, TextWriter};
use crate::util::sync::Unpoisoned;
use std::sync::Mutex;

/// The rollout as the daemon last reported it.
#[derive(Debug, Default)]
pub struct RolloutGauges {
    current: Mutex<Option<(&'static str, u8)>>,
}

/// Every phase a rollout can be in, so each has a sample (0 or 1).
const PHASES: [&str; 2] = ["canary", "watching"];

impl RolloutGauges {
    /// `None` when no rollout runs.
    pub fn set(&self, phase: Option<&'static str>, percent: u8) {
        *self.current.lock().unpoisoned() = phase.map(|p| (p, percent));
    }

    pub fn write(&self, writer: &mut TextWriter) {
        let current = *self.current.lock().unpoisoned();
        writer.family(
            "rollbridge_rollout_phase",
            Kind::Gauge,
            "1 for the phase of the rollout in progress (canary, watching); all 0 when none runs.",
        );
        for phase in PHASES {
            let on = current.is_some_and(|(p, _)| p == phase);
            writer.sample(
                "rollbridge_rollout_phase",
                &[("phase", phase)],
                if on { 1.0 } else { 0.0 },
            );
        }
        writer.family(
            "rollbridge_rollout_percent",
            Kind::Gauge,
            "Share (0-100) of new requests sent to the release under rollout; 0 when none runs.",
        );
        writer.sample(
            "rollbridge_rollout_percent",
            &[],
            current.map_or(0.0, |(_, percent)| f64::from(percent)),
        );
    }
}
