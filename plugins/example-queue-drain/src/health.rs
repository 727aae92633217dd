//! The `health` hook: a readiness flag file the application writes.

use serde_json::{Map, Value};
use std::io::ErrorKind;

/// Healthy once the ready file exists and is empty or says `ready`; anything else
/// in it (say `migrating`) is passed on as the reason it is not ready yet.
pub fn probe(options: &Map<String, Value>) -> Result<(), String> {
    let ready_file = crate::path_option(
        options,
        "readyFile",
        "the file the application creates once it is ready",
    )?;
    match std::fs::read_to_string(ready_file) {
        Ok(text) => match text.trim() {
            "" | "ready" => Ok(()),
            other => Err(format!("ready file {ready_file} says {other:?}")),
        },
        Err(error) if error.kind() == ErrorKind::NotFound => {
            Err(format!("ready file {ready_file} does not exist yet"))
        }
        Err(error) => Err(format!("cannot read ready file {ready_file}: {error}")),
    }
}
