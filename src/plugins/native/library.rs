//! Opening one plugin library and calling into it.

use super::abi::{
    ABI_VERSION, CallFn, DescriptorHeader, DescriptorV1, ENTRY_SYMBOL, EntryFn, FreeFn,
};
use super::error::{NativePluginError, loader_reason};
use super::manifest;
use crate::plugins::Stage;
use libloading::Library;
use std::ffi::{CStr, CString, c_char};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;

/// Responses are small JSON objects; anything larger means the plugin reported a
/// garbage length, and copying it could read far past its buffer.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A loaded plugin. The function pointers point into `_library`, so they live in
/// the same struct and are only reachable while it is alive; callers share it
/// through `Arc`, which keeps the library mapped while any call is in flight.
pub(crate) struct PluginLibrary {
    pub name: String,
    pub path: PathBuf,
    pub hooks: Vec<Stage>,
    call: CallFn,
    free_response: FreeFn,
    /// Calls the host gave up on that are still running inside the plugin.
    pub abandoned_calls: AtomicUsize,
    _library: Library,
}

impl std::fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl PluginLibrary {
    /// Loads the library at `path` and reads its descriptor.
    ///
    /// Loading runs the library's initialisers, which is inherent to native plugins:
    /// only list libraries you trust.
    pub fn open(path: &Path) -> Result<PluginLibrary, NativePluginError> {
        // A bare file name would make dlopen search the system library path; a
        // config names a file, so resolve it against the working directory instead.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        // RTLD_NOW: an unresolved symbol fails here with a message instead of
        // killing the daemon the first time the plugin calls it.
        let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
        // SAFETY: loading runs the library's initialisers; trusting the listed
        // libraries is the documented contract of `plugins.native`.
        let library: Library = unsafe { libloading::os::unix::Library::open(Some(&path), flags) }
            .map_err(|e| NativePluginError::Load {
                path: path.clone(),
                reason: loader_reason(&e),
            })?
            .into();
        // SAFETY: the symbol is declared by the ABI as `EntryFn`; the pointer is
        // copied out and only used while `library` is alive (it moves into `Self`).
        let entry: EntryFn = unsafe { library.get::<EntryFn>(ENTRY_SYMBOL) }
            .map(|symbol| *symbol)
            .map_err(|e| NativePluginError::MissingEntry {
                path: path.clone(),
                symbol: ENTRY_SYMBOL,
                reason: loader_reason(&e),
            })?;
        let invalid = |reason: &str| NativePluginError::InvalidDescriptor {
            path: path.clone(),
            reason: reason.to_string(),
        };
        // SAFETY: calling the plugin's entry point is what loading a plugin means.
        let header = unsafe { entry() };
        if header.is_null() {
            return Err(invalid("the entry point returned NULL"));
        }
        // SAFETY: every descriptor version starts with the `u32` version field.
        let found = unsafe { (*header).abi_version };
        if found != ABI_VERSION {
            return Err(NativePluginError::AbiMismatch {
                path,
                found,
                supported: ABI_VERSION,
            });
        }
        // SAFETY: the plugin declared version 1, whose layout is `DescriptorV1`.
        let descriptor = unsafe { &*header.cast::<DescriptorV1>() };
        let name = read_text(descriptor.name).map_err(|why| invalid(&format!("name {why}")))?;
        manifest::check_name(&name).map_err(|why| invalid(&why))?;
        let manifest_text = read_text(descriptor.manifest_json)
            .map_err(|why| invalid(&format!("manifest_json {why}")))?;
        let call = descriptor
            .call
            .ok_or_else(|| invalid("the call function pointer is NULL"))?;
        let free_response = descriptor
            .free_response
            .ok_or_else(|| invalid("the free_response function pointer is NULL"))?;
        let manifest = manifest::parse(&name, &manifest_text).map_err(|reason| {
            NativePluginError::InvalidManifest {
                path: path.clone(),
                reason,
            }
        })?;
        Ok(PluginLibrary {
            name,
            path,
            hooks: manifest.hooks,
            call,
            free_response,
            abandoned_calls: AtomicUsize::new(0),
            _library: library,
        })
    }

    pub fn provides(&self, kind: Stage) -> bool {
        self.hooks.contains(&kind)
    }

    /// Sends one JSON request and returns the plugin's response text. Blocks for as
    /// long as the plugin runs: call it off the async runtime.
    pub fn call_blocking(&self, request: &str) -> Result<String, String> {
        // NUL-terminated for the convenience of C plugins; serialized JSON never
        // contains a raw NUL, so the length and the terminator agree.
        let request =
            CString::new(request).map_err(|_| "the request contains a NUL byte".to_string())?;
        let mut out_len: usize = 0;
        // SAFETY: the ABI contract: a readable request of `request_len` bytes and a
        // writable `out_len`; the library is alive because `self` is.
        let response = unsafe {
            (self.call)(
                request.as_ptr(),
                request.as_bytes().len(),
                &mut out_len as *mut usize,
            )
        };
        if response.is_null() {
            return Err("the plugin returned a NULL response".to_string());
        }
        let copied = if out_len > MAX_RESPONSE_BYTES {
            Err(format!(
                "the plugin reported a {out_len}-byte response; the limit is {MAX_RESPONSE_BYTES}"
            ))
        } else {
            // SAFETY: the plugin promises `out_len` readable bytes at `response`.
            let bytes = unsafe { std::slice::from_raw_parts(response.cast::<u8>(), out_len) };
            Ok(bytes.to_vec())
        };
        // SAFETY: hand the buffer back to the allocator that made it, exactly once.
        unsafe { (self.free_response)(response, out_len) };
        let bytes = copied?;
        if bytes.is_empty() {
            return Err("the plugin returned an empty response (is *out_len set?)".to_string());
        }
        String::from_utf8(bytes).map_err(|_| "the response is not valid UTF-8".to_string())
    }
}

/// Copies a NUL-terminated UTF-8 string out of the descriptor.
fn read_text(pointer: *const c_char) -> Result<String, &'static str> {
    if pointer.is_null() {
        return Err("is NULL");
    }
    // SAFETY: the ABI requires a NUL-terminated string that lives as long as the
    // library; it is copied before the library could go away.
    let text = unsafe { CStr::from_ptr(pointer) };
    text.to_str()
        .map(str::to_string)
        .map_err(|_| "is not valid UTF-8")
}

// The version field must sit at offset 0 in every descriptor version, so reading a
// `DescriptorHeader` first is valid whatever version the plugin was built for.
const _: () = assert!(std::mem::offset_of!(DescriptorV1, abi_version) == 0);
const _: () = assert!(std::mem::size_of::<DescriptorHeader>() == 4);
