//! Validation: turns a config value (already converted to JSON, whatever its
//! source format) into the typed [`Config`], collecting *every* issue with a fix.
//!
//! Messages are stable texts that scripts and tests match; fixes are prose.
//! Issues come out in a fixed order: root, application, the proxy /
//! control / processes shapes, proxy fields, control fields, each process, legacy
//! takeover, release retention, statePath, plugins, then the cross-process rules.

mod context;
mod cross;
mod example;
mod hooks;
mod keys;
mod legacy;
mod plugin_options;
mod process;
mod process_log;
mod proxy_edge;
mod rollout;
mod top;

pub use context::{
    HookKind, KnownPlugins, NativeInspector, Syntax, ValidationContext, ValidationReport,
};
pub(crate) use keys::closest;

use super::error::Issue;
use super::markers;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::LazyLock;

/// A `{lua = "file", fn = "name"}` hook found during validation; the loader checks
/// that the file defines the function.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LuaFileRef {
    /// Key path of the hook value, for messages.
    pub key: String,
    pub file: PathBuf,
    pub function: String,
}

/// Validates a config value. Pure apart from reading the file system to check that
/// referenced files (Lua scripts, native plugins) exist.
pub fn validate_value(value: &Value, ctx: &ValidationContext) -> ValidationReport {
    validate_detailed(value, ctx).0
}

pub(crate) fn validate_detailed(
    value: &Value,
    ctx: &ValidationContext,
) -> (ValidationReport, Vec<LuaFileRef>) {
    let mut validator = Validator::new(ctx);
    let config = top::validate_root(&mut validator, value);
    let issues = validator.issues;
    let config = if issues.is_empty() { config } else { None };
    (ValidationReport { config, issues }, validator.lua_files)
}

/// Said in a fix when a Lua function sits where plain data is expected.
const FUNCTION_HINT: &str = "Lua functions are only accepted as hook values (lifecycle.quiet, lifecycle.drain, lifecycle.stop, health.check, rollout.check, legacyTakeover.matchers).";

static EMPTY_MAP: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

/// Collects issues while walking the config value.
pub(crate) struct Validator<'c> {
    pub ctx: &'c ValidationContext,
    /// The context's plugin names plus those of native libraries in `plugins.native`.
    pub plugins: KnownPlugins,
    pub issues: Vec<Issue>,
    pub lua_files: Vec<LuaFileRef>,
}

/// `parent.name`, or `name` at the root.
pub(crate) fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// Milliseconds as the model stores them: fractions round up (so a positive value
/// never becomes 0), huge values saturate.
pub(crate) fn millis(value: f64) -> u64 {
    value.ceil() as u64
}

/// The result of reading an optional object-valued key.
pub(crate) enum Section<'v> {
    Absent,
    Present(&'v Map<String, Value>),
    Invalid,
}

impl<'c> Validator<'c> {
    fn new(ctx: &'c ValidationContext) -> Validator<'c> {
        Validator {
            ctx,
            plugins: ctx.plugins.clone(),
            issues: Vec::new(),
            lua_files: Vec::new(),
        }
    }

    /// `key = value` in the config's own syntax, for examples in fixes.
    pub fn example(&self, key: &str, value: Value) -> String {
        example::assign(self.ctx.syntax, key, &value)
    }

    pub fn issue(&mut self, message: impl Into<String>, fix: impl Into<String>) {
        self.issues.push(Issue::new(message, fix));
    }

    /// Reports a wrong-typed value; when the value is a Lua function the fix says
    /// where functions are allowed.
    pub fn wrong_type(&mut self, value: Option<&Value>, message: String, fix: String) {
        let fix = match value.and_then(markers::as_lua_function) {
            Some(_) => format!("{FUNCTION_HINT} {fix}"),
            None => fix,
        };
        self.issue(message, fix);
    }

    /// The value as an object. Marker objects are not objects; an empty Lua table
    /// (converted to `[]`) counts as an empty object.
    pub fn as_object<'v>(&self, value: &'v Value) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map)
                if markers::as_lua_function(value).is_none() && !markers::is_non_finite(value) =>
            {
                Some(map)
            }
            Value::Array(items) if items.is_empty() && self.ctx.lenient_empty_tables => {
                Some(&EMPTY_MAP)
            }
            _ => None,
        }
    }

    pub fn as_array<'v>(&self, value: &'v Value) -> Option<&'v [Value]> {
        match value {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// An optional object-valued key: `must be an object` (with `fix`) when present
    /// with another type, `null` included.
    pub fn section<'v>(&mut self, value: Option<&'v Value>, key: &str, fix: &str) -> Section<'v> {
        let Some(value) = value else {
            return Section::Absent;
        };
        match self.as_object(value) {
            Some(map) => Section::Present(map),
            None => {
                self.wrong_type(
                    Some(value),
                    format!("{key} must be an object"),
                    fix.to_string(),
                );
                Section::Invalid
            }
        }
    }

    pub fn required_string(&mut self, value: Option<&Value>, key: &str) -> Option<String> {
        match value {
            None | Some(Value::Null) => {
                self.issue(
                    format!("{key} is required"),
                    format!("Add {key} with a string value."),
                );
                None
            }
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => {
                self.wrong_type(
                    Some(other),
                    format!("{key} must be a string"),
                    format!("Change {key} to a string (text in quotes)."),
                );
                None
            }
        }
    }

    /// Absent means `None`; `null` counts as a missing required value.
    pub fn optional_string(&mut self, value: Option<&Value>, key: &str) -> Option<String> {
        value.and_then(|value| self.required_string(Some(value), key))
    }

    /// A finite number. Absent gives `None` without an issue.
    pub fn optional_number(&mut self, value: Option<&Value>, key: &str) -> Option<f64> {
        match value? {
            Value::Null => {
                self.issue(
                    format!("{key} is required"),
                    format!("Add {key} with a number."),
                );
                None
            }
            Value::Number(number) => number.as_f64(),
            other => {
                self.wrong_type(
                    Some(other),
                    format!("{key} must be a number"),
                    format!("Change {key} to a plain number: no quotes, and not NaN or infinity."),
                );
                None
            }
        }
    }

    /// A number ≥ 0; `example` is a sensible value to suggest in the fix.
    pub fn non_negative_number(
        &mut self,
        value: Option<&Value>,
        key: &str,
        example: impl std::fmt::Display,
    ) -> Option<f64> {
        let number = self.optional_number(value, key)?;
        if number < 0.0 {
            self.issue(
                format!("{key} must be a non-negative number"),
                format!("Use 0 or a positive number for {key}, for example {example}."),
            );
            return None;
        }
        Some(number)
    }

    /// A whole number accepted by `accept`; any other value (wrong type and `null`
    /// included) gives the one `message`.
    pub fn integer_where(
        &mut self,
        value: Option<&Value>,
        accept: impl Fn(f64) -> bool,
        message: String,
        fix: String,
    ) -> Option<f64> {
        let value = value?;
        match value.as_f64() {
            Some(number) if number.fract() == 0.0 && accept(number) => Some(number),
            _ => {
                self.wrong_type(Some(value), message, fix);
                None
            }
        }
    }

    /// Reports every key of `map` that is not in `known`, suggesting the closest one.
    pub fn known_keys(&mut self, map: &Map<String, Value>, path: &str, known: &[&str]) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let issue = keys::unknown_key(&child(path, key), key, known);
                self.issues.push(issue);
            }
        }
    }
}
