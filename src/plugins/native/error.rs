//! Why a native plugin library could not be used.

use std::path::{Path, PathBuf};

/// A library from `plugins.native` that cannot be loaded as a rollbridge plugin.
/// Every variant names the file and says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NativePluginError {
    /// The dynamic loader refused the file (missing, not a shared library, built for
    /// another machine, or one of its own dependencies is missing).
    #[error(
        "cannot load native plugin {}: {reason}; check that the path names a shared library \
         built for this machine and that the libraries it depends on are installed",
        path.display()
    )]
    Load { path: PathBuf, reason: String },

    /// The library loaded but does not export the entry point.
    #[error(
        "{} is not a rollbridge plugin: it does not export `{symbol}` ({reason}); build it \
         against plugins/include/rollbridge_plugin.h or export that function yourself",
        path.display()
    )]
    MissingEntry {
        path: PathBuf,
        symbol: &'static str,
        reason: String,
    },

    /// The library speaks a different plugin ABI version.
    #[error(
        "native plugin {} was built for plugin ABI version {found}, but this rollbridge \
         supports version {supported}; rebuild the plugin against the matching \
         rollbridge_plugin.h",
        path.display()
    )]
    AbiMismatch {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The descriptor is missing a required field or holds an unusable value.
    #[error("native plugin {}: invalid descriptor: {reason}", path.display())]
    InvalidDescriptor { path: PathBuf, reason: String },

    /// The manifest JSON is malformed or declares something the host does not know.
    #[error(
        "native plugin {}: invalid manifest: {reason}; a manifest looks like \
         {{\"name\":\"my-plugin\",\"hooks\":[\"drain\",\"health\"]}}",
        path.display()
    )]
    InvalidManifest { path: PathBuf, reason: String },

    /// Two libraries claim the same plugin name, so `{plugin = "<name>"}` would be
    /// ambiguous.
    #[error(
        "native plugins {} and {} are both named \"{name}\"; plugin names must be unique, \
         so list only one of them under plugins.native",
        first.display(),
        second.display()
    )]
    DuplicateName {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
}

impl NativePluginError {
    /// The library the error is about (for `DuplicateName`, the later one).
    pub fn path(&self) -> &Path {
        match self {
            NativePluginError::Load { path, .. }
            | NativePluginError::MissingEntry { path, .. }
            | NativePluginError::AbiMismatch { path, .. }
            | NativePluginError::InvalidDescriptor { path, .. }
            | NativePluginError::InvalidManifest { path, .. } => path,
            NativePluginError::DuplicateName { second, .. } => second,
        }
    }
}

/// libloading's own `Display` only says which call failed; the loader's actual
/// explanation (`invalid ELF header`, `undefined symbol: …`) sits in `source()`.
pub(crate) fn loader_reason(error: &libloading::Error) -> String {
    match std::error::Error::source(error) {
        Some(source) => source.to_string(),
        None => error.to_string(),
    }
}
