//! The JSON requests sent to plugins and the checks applied to their responses.
//! Key names are part of the plugin ABI (see docs/plugins.md): add keys, never
//! rename or remove them.

use crate::plugins::Stage;
use crate::plugins::{HealthVerdict, HookCall, HookError, LegacyProcess, ProcessInfo};
use serde_json::{Map, Value, json};

/// How much of a malformed response is quoted back in an error.
const QUOTE_LIMIT: usize = 200;

const LIFECYCLE_SHAPE: &str = r#"{"ok":true} or {"ok":false,"error":"..."}"#;
const HEALTH_SHAPE: &str = r#"{"healthy":true|false,"detail":"..."} or {"ok":false,"error":"..."}"#;
const MATCH_SHAPE: &str = r#"{"matches":true|false} or {"ok":false,"error":"..."}"#;

/// The request for a quiet, drain, stop or health hook.
pub fn hook_request(kind: Stage, call: &HookCall, deadline_ms: u64) -> String {
    json!({
        "kind": kind.as_str(),
        "stage": call.stage.as_str(),
        "process": process_json(&call.process),
        "options": Value::Object(call.options.clone()),
        "deadlineMs": deadline_ms,
    })
    .to_string()
}

/// The request asking whether a running process is a legacy process to stop.
pub fn match_request(
    process: &LegacyProcess,
    options: &Map<String, Value>,
    deadline_ms: u64,
) -> String {
    json!({
        "kind": Stage::Match.as_str(),
        "stage": Stage::Match.as_str(),
        "process": {
            "pid": process.pid,
            "ppid": process.ppid,
            "cmdline": process.cmdline,
            "cwd": process.cwd,
            "user": process.user,
        },
        "options": Value::Object(options.clone()),
        "deadlineMs": deadline_ms,
    })
    .to_string()
}

fn process_json(process: &ProcessInfo) -> Value {
    let env: Map<String, Value> = process
        .env
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect();
    json!({
        "id": process.id,
        "instanceId": process.instance_id,
        "pid": process.pid,
        "pgid": process.pgid,
        "releaseId": process.release_id,
        "releasePath": process.release_path,
        "revision": process.revision,
        "port": process.port,
        "policy": process.policy.as_str(),
        "replicaIndex": process.replica_index,
        "replicaCount": process.replica_count,
        "cwd": process.cwd.to_string_lossy(),
        "env": env,
    })
}

/// `{"ok":true}` finishes the stage.
pub fn lifecycle_response(plugin: &str, kind: Stage, text: &str) -> Result<(), HookError> {
    let fields = response_object(plugin, kind, text, LIFECYCLE_SHAPE)?;
    match fields.get("ok") {
        Some(Value::Bool(true)) => Ok(()),
        _ => Err(wrong_shape(plugin, kind, text, LIFECYCLE_SHAPE)),
    }
}

/// `{"healthy":bool,"detail":"..."}`; the detail explains a "not yet".
pub fn health_response(plugin: &str, text: &str) -> Result<HealthVerdict, HookError> {
    let fields = response_object(plugin, Stage::Health, text, HEALTH_SHAPE)?;
    match fields.get("healthy") {
        Some(Value::Bool(true)) => Ok(HealthVerdict::Healthy),
        Some(Value::Bool(false)) => Ok(HealthVerdict::NotYet(match fields.get("detail") {
            Some(Value::String(detail)) if !detail.is_empty() => detail.clone(),
            _ => format!("native plugin {plugin} reports not healthy"),
        })),
        _ => Err(wrong_shape(plugin, Stage::Health, text, HEALTH_SHAPE)),
    }
}

/// `{"matches":bool}`.
pub fn match_response(plugin: &str, text: &str) -> Result<bool, HookError> {
    let fields = response_object(plugin, Stage::Match, text, MATCH_SHAPE)?;
    match fields.get("matches") {
        Some(Value::Bool(matches)) => Ok(*matches),
        _ => Err(wrong_shape(plugin, Stage::Match, text, MATCH_SHAPE)),
    }
}

/// Parses the response as a JSON object and turns an explicit
/// `{"ok":false,"error":…}` into the plugin's own failure, for every hook kind.
fn response_object(
    plugin: &str,
    kind: Stage,
    text: &str,
    shape: &str,
) -> Result<Map<String, Value>, HookError> {
    let value: Value = serde_json::from_str(text).map_err(|error| {
        HookError::Failed(format!(
            "native plugin {plugin} answered the {kind} hook with invalid JSON ({error}); \
             expected {shape}, got: {}",
            quote(text)
        ))
    })?;
    let Value::Object(fields) = value else {
        return Err(wrong_shape(plugin, kind, text, shape));
    };
    if fields.get("ok") == Some(&Value::Bool(false)) {
        return Err(HookError::Failed(match fields.get("error") {
            Some(Value::String(error)) if !error.is_empty() => error.clone(),
            _ => format!("native plugin {plugin} reported a failure without an error message"),
        }));
    }
    Ok(fields)
}

fn wrong_shape(plugin: &str, kind: Stage, text: &str, shape: &str) -> HookError {
    HookError::Failed(format!(
        "native plugin {plugin} answered the {kind} hook with an unexpected response; \
         expected {shape}, got: {}",
        quote(text)
    ))
}

fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_responses() {
        assert_eq!(
            lifecycle_response("p", Stage::Drain, r#"{"ok":true}"#),
            Ok(())
        );
        assert_eq!(
            lifecycle_response("p", Stage::Drain, r#"{"ok":false,"error":"queue busy"}"#),
            Err(HookError::Failed("queue busy".into()))
        );
        let Err(HookError::Failed(reason)) = lifecycle_response("p", Stage::Stop, "nope") else {
            panic!("invalid JSON must fail");
        };
        assert!(
            reason.contains("invalid JSON") && reason.contains("got: nope"),
            "{reason}"
        );
        let Err(HookError::Failed(reason)) = lifecycle_response("p", Stage::Stop, r#"{"done":1}"#)
        else {
            panic!("wrong shape must fail");
        };
        assert!(reason.contains("unexpected response"), "{reason}");
    }

    #[test]
    fn health_and_match_responses() {
        assert_eq!(
            health_response("p", r#"{"healthy":true}"#),
            Ok(HealthVerdict::Healthy)
        );
        assert_eq!(
            health_response("p", r#"{"healthy":false,"detail":"warming"}"#),
            Ok(HealthVerdict::NotYet("warming".into()))
        );
        assert!(health_response("p", r#"{"ok":true}"#).is_err());
        assert_eq!(
            match_response("p", r#"{"matches":false,"extra":1}"#),
            Ok(false)
        );
        assert!(match_response("p", r#"{"matches":"yes"}"#).is_err());
    }

    #[test]
    fn long_responses_are_quoted_briefly() {
        let long = "x".repeat(1000);
        let Err(HookError::Failed(reason)) = match_response("p", &long) else {
            panic!("must fail");
        };
        assert!(reason.len() < 600, "{}", reason.len());
    }
}
