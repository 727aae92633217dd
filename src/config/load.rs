//! Finding and loading a config file: format by extension, conversion to a JSON
//! value, validation, and the Lua runtime for Lua hooks.

use super::error::{ConfigError, Issue};
use super::model::Config;
use super::validate::{
    self, KnownPlugins, NativeInspector, Syntax, ValidationContext, ValidationReport,
};
use super::{js, lua_source};
use crate::lua::{Limits, LuaRuntime, RuntimeBuilder};
use crate::util::errno::plain_io_reason;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest config file rollbridge reads.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Default config file names, in the order they are looked for.
pub const DEFAULT_FILE_NAMES: [&str; 3] = ["rollbridge.lua", "rollbridge.json", "rollbridge.js"];

/// A loaded, valid config.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The path as it was given (not made absolute).
    pub path: PathBuf,
    /// The Lua state holding the config's Lua hooks: set for Lua configs and for
    /// configs with `{lua = ..., fn = ...}` hooks.
    pub lua: Option<LuaRuntime>,
}

impl LoadedConfig {
    /// The control socket of this config's daemon.
    pub fn socket_path(&self) -> &std::path::Path {
        std::path::Path::new(&self.config.control.path)
    }
}

/// Knobs for loading. [`LoadOptions::standard`] is what the CLI and the daemon
/// use; `Default` leaves native libraries unopened (only their existence is checked).
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// Plugin names accepted in `{plugin = ...}`; `None` means the built-ins.
    pub plugins: Option<KnownPlugins>,
    /// Checks native plugin libraries listed in `plugins.native`.
    pub native_inspector: Option<NativeInspector>,
    /// Lua time and memory limits.
    pub lua_limits: Limits,
    /// Also report placeholders that can never be filled in (`{{prot}}`), as
    /// `validate` does. Off for loading: a running setup keeps starting, and
    /// `doctor --release-path` reports them among the release checks.
    pub strict_placeholders: bool,
    /// The config's text as it was read earlier, used instead of reading the
    /// file again (Lua and JSON; node always reads a JavaScript config itself).
    pub source: Option<String>,
}

impl LoadOptions {
    /// Built-in plugins, native libraries opened and checked, default Lua limits.
    pub fn standard() -> LoadOptions {
        LoadOptions {
            native_inspector: Some(crate::plugins::native::config_inspector()),
            ..LoadOptions::default()
        }
    }
}

/// The config path: `explicit` as given, else the first regular file among
/// `rollbridge.lua`, `rollbridge.json`, `rollbridge.js` in `cwd`.
pub fn resolve_config_path(explicit: Option<&Path>, cwd: &Path) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    DEFAULT_FILE_NAMES
        .iter()
        .map(|name| cwd.join(name))
        .find(|candidate| std::fs::metadata(candidate).is_ok_and(|m| m.is_file()))
        .ok_or_else(|| ConfigError::NotFound {
            cwd: cwd.to_path_buf(),
        })
}

/// Loads and fully validates a config.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load_with(path, &LoadOptions::standard())
}

/// Loads and fully validates a config from `source`, the text of the file at
/// `path` as it was read earlier (a live upgrade's fallback: the file may have
/// changed since). Relative paths in it are still taken from `path`'s folder.
pub fn load_source(path: &Path, source: String) -> Result<LoadedConfig, ConfigError> {
    let options = LoadOptions {
        source: Some(source),
        ..LoadOptions::standard()
    };
    load_with(path, &options)
}

pub fn load_with(path: &Path, options: &LoadOptions) -> Result<LoadedConfig, ConfigError> {
    let (report, lua) = evaluate(path, options)?;
    match report.config {
        Some(config) if report.issues.is_empty() => Ok(LoadedConfig {
            config,
            path: path.to_path_buf(),
            lua,
        }),
        _ => Err(ConfigError::Invalid(report.issues)),
    }
}

/// Loads a config for `doctor`: every issue, a load error included, as a report.
pub fn check(path: &Path) -> ValidationReport {
    check_with(path, &LoadOptions::standard())
}

/// Like [`check`], for `validate`: placeholders that can never be filled in are
/// issues too.
pub fn check_strictly(path: &Path) -> ValidationReport {
    let options = LoadOptions {
        strict_placeholders: true,
        ..LoadOptions::standard()
    };
    check_with(path, &options)
}

pub fn check_with(path: &Path, options: &LoadOptions) -> ValidationReport {
    match evaluate(path, options) {
        Ok((report, _)) => report,
        Err(error) => ValidationReport {
            config: None,
            issues: error.into_issues(),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Lua,
    Json,
    JavaScript,
}

fn format_of(path: &Path) -> Result<Format, ConfigError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("lua") => Ok(Format::Lua),
        Some("json") => Ok(Format::Json),
        Some("js" | "mjs" | "cjs") => Ok(Format::JavaScript),
        _ => Err(ConfigError::UnknownFormat {
            path: path.to_path_buf(),
        }),
    }
}

fn evaluate(
    path: &Path,
    options: &LoadOptions,
) -> Result<(ValidationReport, Option<LuaRuntime>), ConfigError> {
    let format = format_of(path)?;
    let mut ctx = ValidationContext::for_config_file(path);
    ctx.syntax = match format {
        Format::Lua => Syntax::Lua,
        Format::Json => Syntax::Json,
        Format::JavaScript => Syntax::JavaScript,
    };
    if let Some(plugins) = &options.plugins {
        ctx.plugins = plugins.clone();
    }
    ctx.native_inspector = options.native_inspector.clone();

    let text = || match &options.source {
        Some(source) => Ok(source.clone()),
        None => read_config(path),
    };
    let mut builder: Option<RuntimeBuilder> = None;
    let mut issues: Vec<Issue> = Vec::new();
    let value = match format {
        Format::Json => parse_json(path, &text()?)?,
        Format::JavaScript => js::evaluate(path)?,
        Format::Lua => {
            let evaluated =
                lua_source::evaluate(path, &ctx.config_dir, text()?, options.lua_limits)?;
            ctx.lua_function_ids = evaluated.builder.function_ids();
            ctx.lenient_empty_tables = true;
            issues.extend(evaluated.issues);
            builder = Some(evaluated.builder);
            evaluated.value
        }
    };

    let (mut report, lua_files) = validate::validate_detailed(&value, &ctx);
    issues.append(&mut report.issues);

    if !lua_files.is_empty() {
        if builder.is_none() {
            let created =
                RuntimeBuilder::new(&ctx.config_dir, options.lua_limits).map_err(|error| {
                    ConfigError::evaluation(
                        format!(
                            "Cannot start Lua for the scripts of {}: {}",
                            path.display(),
                            crate::lua::error_line(&error)
                        ),
                        "This is not a problem with the config; please report it.",
                    )
                })?;
            builder = Some(created);
        }
        let runtime = builder.as_mut().expect("created above");
        for script in lua_files {
            if let Err(reason) = runtime.load_script_function(&script.file, &script.function) {
                issues.push(Issue::new(
                    format!("{}.fn \"{}\" cannot be loaded: {reason}", script.key, script.function),
                    format!("Make {} define a global function {} or return a table with a {} field, and check that the script runs.", script.file.display(), script.function, script.function),
                ));
            }
        }
    }

    if options.strict_placeholders
        && issues.is_empty()
        && let Some(config) = &report.config
    {
        issues.extend(super::template::unresolvable_placeholders(config));
    }

    if format == Format::Lua
        && !issues.is_empty()
        && let Ok(source) = text()
    {
        let file_name = path
            .file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy();
        super::lua_paths::locate(&mut issues, &file_name, &source, &value);
    }

    let config = if issues.is_empty() {
        report.config
    } else {
        None
    };
    let lua = builder.map(|builder| {
        let used = config.as_ref().map(used_function_ids).unwrap_or_default();
        builder.finish(&used)
    });
    Ok((ValidationReport { config, issues }, lua))
}

/// Ids of the inline Lua functions the config's hook values refer to.
fn used_function_ids(config: &Config) -> BTreeSet<u64> {
    use super::hook::HookSpec;
    let mut ids = BTreeSet::new();
    let mut note = |hook: &Option<HookSpec>| {
        if let Some(HookSpec::LuaFunction { id, .. }) = hook {
            ids.insert(*id);
        }
    };
    for process in &config.processes {
        note(&process.lifecycle.quiet);
        note(&process.lifecycle.drain);
        note(&process.lifecycle.stop);
        note(&process.health.as_ref().and_then(|h| h.check.clone()));
    }
    if let Some(legacy) = &config.legacy_takeover {
        for matcher in &legacy.matchers {
            note(&Some(matcher.clone()));
        }
    }
    ids
}

/// Reads a config file as UTF-8 text, refusing directories and huge files.
pub(crate) fn read_config(path: &Path) -> Result<String, ConfigError> {
    let unreadable = |reason: String, fix: &str| ConfigError::Unreadable {
        path: path.to_path_buf(),
        reason,
        fix: fix.to_string(),
    };
    let missing_fix =
        "Check the path passed to --config; a relative path is taken from the working directory.";
    let file =
        std::fs::File::open(path).map_err(|e| unreadable(plain_io_reason(&e), missing_fix))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(unreadable(
            "it is a directory".to_string(),
            "Point --config at the config file inside the directory, e.g. <dir>/rollbridge.lua.",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(plain_io_reason(&e), missing_fix))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(unreadable(
            format!("it is larger than {} MiB", MAX_CONFIG_BYTES / (1024 * 1024)),
            "A config is normally a few kilobytes: check that --config points at the config file and not at data or a program.",
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        unreadable(
            "it is not UTF-8 text".to_string(),
            "Save the config as UTF-8 text.",
        )
    })
}

fn parse_json(path: &Path, text: &str) -> Result<Value, ConfigError> {
    serde_json::from_str(text).map_err(|error| {
        ConfigError::evaluation(
            format!("Config file {} is not valid JSON: {error}", path.display()),
            "Fix the JSON syntax at the line and column shown; a trailing comma, a comment or a missing quote is the usual cause.",
        )
    })
}
