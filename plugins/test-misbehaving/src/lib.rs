//! `misbehaving`: a test fixture for rollbridge's native plugin host. Each hook
//! kind breaks the contract in a different way:
//!
//! - `quiet` answers with text that is not JSON;
//! - `stop` answers with JSON of the wrong shape;
//! - `drain` panics (caught here, as every plugin must, and reported as an error);
//! - `match` sleeps for option `sleepMs`, ignoring `deadlineMs`;
//! - `health` behaves: it answers "not healthy" with the request it received as the
//!   detail, so a test can check exactly what the host sends and show that the
//!   plugin and the host carry on after the other hooks misbehaved.

use serde_json::{Value, json};
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

#[repr(C)]
pub struct PluginDescriptorV1 {
    abi_version: u32,
    name: *const c_char,
    manifest_json: *const c_char,
    call: unsafe extern "C" fn(*const c_char, usize, *mut usize) -> *mut c_char,
    free_response: unsafe extern "C" fn(*mut c_char, usize),
}

// SAFETY: immutable, and its pointers refer to static strings.
unsafe impl Sync for PluginDescriptorV1 {}

static DESCRIPTOR: PluginDescriptorV1 = PluginDescriptorV1 {
    abi_version: 1,
    name: c"misbehaving".as_ptr(),
    manifest_json: cr#"{"hooks":["quiet","drain","stop","health","match"]}"#.as_ptr(),
    call: plugin_call,
    free_response: plugin_free_response,
};

#[unsafe(no_mangle)]
pub extern "C" fn rollbridge_plugin_entry() -> *const PluginDescriptorV1 {
    &DESCRIPTOR
}

/// # Safety
/// `request` points to `request_len` readable bytes; `out_len` is writable.
unsafe extern "C" fn plugin_call(
    request: *const c_char,
    request_len: usize,
    out_len: *mut usize,
) -> *mut c_char {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { std::slice::from_raw_parts(request.cast::<u8>(), request_len) };
    let response = catch_unwind(AssertUnwindSafe(|| handle(bytes))).unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        json!({ "ok": false, "error": format!("misbehaving panicked: {detail}") }).to_string()
    });
    let buffer: Box<[u8]> = response.into_bytes().into_boxed_slice();
    // SAFETY: guaranteed by the caller.
    unsafe { *out_len = buffer.len() };
    Box::into_raw(buffer).cast::<c_char>()
}

/// # Safety
/// `response` comes from `plugin_call` with the length it reported.
unsafe extern "C" fn plugin_free_response(response: *mut c_char, len: usize) {
    let slice = std::ptr::slice_from_raw_parts_mut(response.cast::<u8>(), len);
    // SAFETY: the box leaked by `plugin_call`, handed back once.
    drop(unsafe { Box::from_raw(slice) });
}

fn handle(bytes: &[u8]) -> String {
    let request: Value = serde_json::from_slice(bytes).expect("the host sends JSON");
    match request["kind"].as_str().unwrap_or_default() {
        "quiet" => "this is not json".to_string(),
        "stop" => json!({ "status": "done" }).to_string(),
        "drain" => panic!("drain exploded on purpose"),
        "match" => {
            let sleep_ms = request["options"]["sleepMs"].as_u64().unwrap_or(0);
            std::thread::sleep(Duration::from_millis(sleep_ms));
            json!({ "matches": true }).to_string()
        }
        // The raw text, so the test sees the host's key order untouched.
        "health" => {
            json!({ "healthy": false, "detail": String::from_utf8_lossy(bytes) }).to_string()
        }
        other => json!({ "ok": false, "error": format!("unknown kind {other}") }).to_string(),
    }
}
