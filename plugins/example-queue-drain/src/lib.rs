//! `queue-drain`: an example rollbridge native plugin.
//!
//! - `drain` waits until the number in the file named by option `depthFile` drops to
//!   0, re-reading it every `pollMs` (default 100), and gives up shortly before the
//!   request's `deadlineMs` so the daemon hears why.
//! - `health` reports ready once the file named by option `readyFile` exists and is
//!   empty or says `ready`.
//!
//! This file is the ABI glue (descriptor, entry point, panic guard, buffer
//! ownership) and is meant to be copied into new plugins; `drain.rs` and
//! `health.rs` are the plugin's own logic.

mod drain;
mod health;

use serde_json::{Map, Value, json};
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

const PLUGIN_NAME: &str = "queue-drain";

/// Mirrors `rollbridge_plugin_v1` in plugins/include/rollbridge_plugin.h.
#[repr(C)]
pub struct PluginDescriptorV1 {
    abi_version: u32,
    name: *const c_char,
    manifest_json: *const c_char,
    call: unsafe extern "C" fn(*const c_char, usize, *mut usize) -> *mut c_char,
    free_response: unsafe extern "C" fn(*mut c_char, usize),
}

// SAFETY: the descriptor is immutable and its pointers refer to static strings.
unsafe impl Sync for PluginDescriptorV1 {}

static DESCRIPTOR: PluginDescriptorV1 = PluginDescriptorV1 {
    abi_version: 1,
    name: c"queue-drain".as_ptr(),
    manifest_json: cr#"{"name":"queue-drain","hooks":["drain","health"]}"#.as_ptr(),
    call: plugin_call,
    free_response: plugin_free_response,
};

/// The one exported symbol. It only returns a pointer to a static, so nothing in
/// it can panic.
#[unsafe(no_mangle)]
pub extern "C" fn rollbridge_plugin_entry() -> *const PluginDescriptorV1 {
    &DESCRIPTOR
}

/// # Safety
/// `request` must point to `request_len` readable bytes and `out_len` must be
/// writable, as the ABI promises.
unsafe extern "C" fn plugin_call(
    request: *const c_char,
    request_len: usize,
    out_len: *mut usize,
) -> *mut c_char {
    // A panic must never unwind into the host (it would abort the daemon), so it
    // becomes an ordinary error response.
    let response = catch_unwind(AssertUnwindSafe(|| {
        if request.is_null() {
            return error_response("the request pointer is NULL");
        }
        // SAFETY: guaranteed by the caller (see the function's contract).
        let bytes = unsafe { std::slice::from_raw_parts(request.cast::<u8>(), request_len) };
        handle(bytes)
    }))
    .unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        error_response(&format!("{PLUGIN_NAME} panicked: {detail}"))
    });
    let buffer: Box<[u8]> = response.into_bytes().into_boxed_slice();
    if !out_len.is_null() {
        // SAFETY: guaranteed by the caller.
        unsafe { *out_len = buffer.len() };
    }
    Box::into_raw(buffer).cast::<c_char>()
}

/// # Safety
/// `response` must come from `plugin_call` with the length it reported.
unsafe extern "C" fn plugin_free_response(response: *mut c_char, len: usize) {
    let _ = catch_unwind(|| {
        if response.is_null() {
            return;
        }
        let slice = std::ptr::slice_from_raw_parts_mut(response.cast::<u8>(), len);
        // SAFETY: this is the `Box<[u8]>` leaked by `plugin_call`, returned once.
        drop(unsafe { Box::from_raw(slice) });
    });
}

/// Parses one request and dispatches on its hook kind.
fn handle(bytes: &[u8]) -> String {
    let request: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(error) => return error_response(&format!("the request is not valid JSON: {error}")),
    };
    let empty = Map::new();
    let options = request
        .get("options")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let deadline_ms = request
        .get("deadlineMs")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_millis(deadline_ms);
    match request.get("kind").and_then(Value::as_str) {
        Some("drain") => match drain::run(options, deadline) {
            Ok(()) => json!({ "ok": true }).to_string(),
            Err(reason) => error_response(&reason),
        },
        Some("health") => match health::probe(options) {
            Ok(()) => json!({ "healthy": true }).to_string(),
            Err(detail) => json!({ "healthy": false, "detail": detail }).to_string(),
        },
        Some(other) => error_response(&format!("{PLUGIN_NAME} has no \"{other}\" hook")),
        None => error_response("the request has no \"kind\""),
    }
}

fn error_response(reason: &str) -> String {
    json!({ "ok": false, "error": reason }).to_string()
}

/// Reads a required string option naming a file.
fn path_option<'a>(
    options: &'a Map<String, Value>,
    key: &str,
    purpose: &str,
) -> Result<&'a str, String> {
    match options.get(key) {
        Some(Value::String(path)) if !path.is_empty() => Ok(path),
        Some(_) => Err(format!(
            "option {key} must be a non-empty string ({purpose})"
        )),
        None => Err(format!("option {key} is required ({purpose})")),
    }
}
