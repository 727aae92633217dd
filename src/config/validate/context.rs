//! What validation needs to know beyond the config value itself.

use crate::config::error::Issue;
use crate::config::model::Config;
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// The three extension points a hook value can plug into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookKind {
    /// `lifecycle.quiet`, `lifecycle.drain`, `lifecycle.stop`.
    Lifecycle,
    /// `health.check`.
    Health,
    /// `legacyTakeover.matchers`.
    Matcher,
}

impl HookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Lifecycle => "lifecycle",
            HookKind::Health => "health",
            HookKind::Matcher => "matcher",
        }
    }
}

/// Plugin names usable in `{plugin = "<name>"}`, per extension point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPlugins {
    lifecycle: BTreeSet<String>,
    health: BTreeSet<String>,
    matcher: BTreeSet<String>,
}

impl Default for KnownPlugins {
    /// The built-in plugins.
    fn default() -> Self {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        KnownPlugins {
            lifecycle: set(&["command", "signal", "wait-exit"]),
            health: set(&["http", "tcp", "command"]),
            matcher: set(&["cmdline", "screen"]),
        }
    }
}

impl KnownPlugins {
    /// No plugins at all (for building a custom set).
    pub fn empty() -> KnownPlugins {
        KnownPlugins {
            lifecycle: BTreeSet::new(),
            health: BTreeSet::new(),
            matcher: BTreeSet::new(),
        }
    }

    fn set(&self, kind: HookKind) -> &BTreeSet<String> {
        match kind {
            HookKind::Lifecycle => &self.lifecycle,
            HookKind::Health => &self.health,
            HookKind::Matcher => &self.matcher,
        }
    }

    pub fn add(&mut self, kind: HookKind, name: impl Into<String>) {
        let set = match kind {
            HookKind::Lifecycle => &mut self.lifecycle,
            HookKind::Health => &mut self.health,
            HookKind::Matcher => &mut self.matcher,
        };
        set.insert(name.into());
    }

    pub fn contains(&self, kind: HookKind, name: &str) -> bool {
        self.set(kind).contains(name)
    }

    /// Sorted names for one extension point.
    pub fn names(&self, kind: HookKind) -> Vec<&str> {
        self.set(kind).iter().map(String::as_str).collect()
    }
}

/// Checks one native plugin library (already resolved to an absolute path) and
/// returns the plugin names it provides, or why it cannot be used. The native
/// plugin loader supplies this; without it, validation only checks that the file
/// exists.
pub type NativeInspector =
    Arc<dyn Fn(&Path) -> Result<Vec<(HookKind, String)>, String> + Send + Sync>;

/// How the config is written, so fixes show examples the user can paste.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Syntax {
    /// Lua is the primary format, and the default of a context not built from a file.
    #[default]
    Lua,
    Json,
    JavaScript,
}

/// Everything validation needs besides the value.
#[derive(Clone)]
pub struct ValidationContext {
    /// The folder holding the config file: relative paths in the config (Lua
    /// scripts, native plugins) are resolved against it.
    pub config_dir: PathBuf,
    /// `application` when the config does not set it: the folder's name.
    pub default_application: String,
    /// Plugin names accepted in `{plugin = "<name>"}` (built-ins by default).
    pub plugins: KnownPlugins,
    /// Ids of the Lua functions the config's Lua runtime registered; a function
    /// marker with any other id is rejected.
    pub lua_function_ids: BTreeSet<u64>,
    /// Lua cannot tell an empty list from an empty table: when set, `[]` is also
    /// accepted where an object is expected.
    pub lenient_empty_tables: bool,
    pub native_inspector: Option<NativeInspector>,
    /// The config's syntax, for examples in fixes.
    pub syntax: Syntax,
}

impl std::fmt::Debug for ValidationContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidationContext")
            .field("config_dir", &self.config_dir)
            .field("default_application", &self.default_application)
            .field("plugins", &self.plugins)
            .field("lua_function_ids", &self.lua_function_ids)
            .field("lenient_empty_tables", &self.lenient_empty_tables)
            .field("native_inspector", &self.native_inspector.is_some())
            .field("syntax", &self.syntax)
            .finish()
    }
}

impl ValidationContext {
    /// A context for a config in `dir`: built-in plugins, no Lua functions.
    pub fn for_dir(dir: impl Into<PathBuf>) -> ValidationContext {
        let config_dir = dir.into();
        let default_application = config_dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        ValidationContext {
            config_dir,
            default_application,
            plugins: KnownPlugins::default(),
            lua_function_ids: BTreeSet::new(),
            lenient_empty_tables: false,
            native_inspector: None,
            syntax: Syntax::default(),
        }
    }

    /// A context for the config file at `path` (relative to the working directory).
    pub fn for_config_file(path: &Path) -> ValidationContext {
        ValidationContext::for_dir(config_dir_of(path))
    }
}

/// The absolute, lexically normalised folder holding `path` (symlinks are not
/// resolved, like the JavaScript tool's `path.resolve`).
pub fn config_dir_of(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut normal = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    match normal.parent() {
        Some(parent) => parent.to_path_buf(),
        None => normal,
    }
}

/// The outcome of validation: the config when there is no issue, and every issue.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationReport {
    pub config: Option<Config>,
    pub issues: Vec<Issue>,
}

impl ValidationReport {
    pub fn is_valid(&self) -> bool {
        self.issues.is_empty() && self.config.is_some()
    }
}
