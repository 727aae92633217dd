//! The `drain` hook: wait for a queue to empty.

use serde_json::{Map, Value};
use std::io::ErrorKind;
use std::time::{Duration, Instant};

const DEFAULT_POLL: Duration = Duration::from_millis(100);
const MIN_POLL: Duration = Duration::from_millis(5);
/// Answer a little before the deadline: the daemon stops listening at the deadline
/// itself, and a reply that arrives late is lost along with its explanation.
const MAX_MARGIN: Duration = Duration::from_millis(50);

/// Polls the depth file until it reads 0 or the time is up.
pub fn run(options: &Map<String, Value>, deadline: Instant) -> Result<(), String> {
    let depth_file = crate::path_option(
        options,
        "depthFile",
        "the file holding the current queue depth",
    )?;
    let poll = match options.get("pollMs") {
        None => DEFAULT_POLL,
        Some(value) => value
            .as_u64()
            .map(Duration::from_millis)
            .ok_or_else(|| "option pollMs must be a whole number of milliseconds".to_string())?
            .max(MIN_POLL),
    };
    let started = Instant::now();
    let margin = MAX_MARGIN.min(deadline.saturating_duration_since(started) / 10);
    let give_up_at = deadline.checked_sub(margin).unwrap_or(deadline);
    loop {
        let depth = match std::fs::read_to_string(depth_file) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(0) => return Ok(()),
                Ok(depth) => depth.to_string(),
                // A writer may be half-way through rewriting the file: look again.
                Err(_) => format!("{:?} (not a number)", text.trim()),
            },
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(format!(
                    "depth file {depth_file} does not exist; check the depthFile option"
                ));
            }
            Err(error) => return Err(format!("cannot read depth file {depth_file}: {error}")),
        };
        let now = Instant::now();
        if now >= give_up_at {
            return Err(format!(
                "queue depth in {depth_file} is still {depth} after {} ms; the drain deadline ran out",
                now.duration_since(started).as_millis()
            ));
        }
        std::thread::sleep(poll.min(give_up_at - now));
    }
}
