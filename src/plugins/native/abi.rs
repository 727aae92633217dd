//! The C ABI shared with plugin libraries (mirrored by
//! `plugins/include/rollbridge_plugin.h`).
//!
//! Only a tiny descriptor crosses the boundary as a struct; everything else travels
//! as JSON text, so the host and a plugin agree on layout in exactly one place.

use std::ffi::c_char;

/// The descriptor layout this host understands. A library reporting any other
/// version is refused before the rest of its descriptor is read.
pub const ABI_VERSION: u32 = 1;

/// The one symbol every plugin library exports. Its name never changes between ABI
/// versions: the version lives in the descriptor it returns.
pub const ENTRY_SYMBOL: &str = "rollbridge_plugin_entry";

/// `const rollbridge_plugin_v1 *rollbridge_plugin_entry(void)`.
pub type EntryFn = unsafe extern "C" fn() -> *const DescriptorHeader;

/// `char *call(const char *request, size_t request_len, size_t *out_len)`.
pub type CallFn = unsafe extern "C" fn(
    request: *const c_char,
    request_len: usize,
    out_len: *mut usize,
) -> *mut c_char;

/// `void free_response(char *response, size_t len)`.
pub type FreeFn = unsafe extern "C" fn(response: *mut c_char, len: usize);

/// The prefix every descriptor version shares: the host reads this first and only
/// looks further once it knows the layout.
#[repr(C)]
pub struct DescriptorHeader {
    pub abi_version: u32,
}

/// Version 1 of the descriptor. Function pointers are `Option` so a NULL from a
/// careless C plugin is detected instead of called.
#[repr(C)]
pub struct DescriptorV1 {
    pub abi_version: u32,
    pub name: *const c_char,
    pub manifest_json: *const c_char,
    pub call: Option<CallFn>,
    pub free_response: Option<FreeFn>,
}
