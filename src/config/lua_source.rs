//! Lua configs: run the file in the sandbox (on a thread of its own, with a
//! watchdog) and convert the returned table to a JSON value. Functions become
//! markers registered in the runtime; the validator decides where they may stand.

use super::error::{ConfigError, Issue};
use super::markers;
use super::validate::child;
use crate::lua::{Limits, RuntimeBuilder, error_line, is_memory_error, sandbox};
use mlua::chunk::ChunkMode;
use serde_json::{Map, Number, Value};
use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Nesting deeper than this is certainly not a config.
const MAX_DEPTH: usize = 64;

/// Extra time the watchdog gives past the Lua time limit before it gives up on a
/// script stuck inside a C function (where the instruction hook cannot fire).
const WATCHDOG_GRACE: Duration = Duration::from_secs(3);

pub(crate) struct EvaluatedLua {
    pub value: Value,
    /// Values that could not be converted (e.g. userdata), reported as issues.
    pub issues: Vec<Issue>,
    pub builder: RuntimeBuilder,
}

/// Runs `source`, the text of the Lua config at `path`.
pub(crate) fn evaluate(
    path: &Path,
    config_dir: &Path,
    source: String,
    limits: Limits,
) -> Result<EvaluatedLua, ConfigError> {
    let (sender, receiver) = mpsc::channel();
    let shown = path.to_path_buf();
    let dir = config_dir.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("rollbridge-lua-config".to_string())
        .spawn(move || {
            let _ = sender.send(evaluate_on_this_thread(&shown, &dir, source, limits));
        });
    if spawned.is_err() {
        return Err(ConfigError::evaluation(
            format!(
                "Cannot evaluate Lua config {}: no thread could be started",
                path.display()
            ),
            "The system is out of resources; try again.",
        ));
    }
    match receiver.recv_timeout(limits.time + WATCHDOG_GRACE) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(time_limit_error(path, limits)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(ConfigError::evaluation(
            format!(
                "Lua config {} stopped the Lua engine unexpectedly",
                path.display()
            ),
            "This is a bug in rollbridge; please report it with the config that triggers it.",
        )),
    }
}

fn time_limit_error(path: &Path, limits: Limits) -> ConfigError {
    ConfigError::evaluation(
        format!(
            "Lua config {} did not finish within {} ms",
            path.display(),
            limits.time.as_millis()
        ),
        "Look for a loop that never ends; a config should only build and return a table.",
    )
}

fn evaluate_on_this_thread(
    path: &Path,
    config_dir: &Path,
    source: String,
    limits: Limits,
) -> Result<EvaluatedLua, ConfigError> {
    let mut builder = RuntimeBuilder::new(config_dir, limits).map_err(|error| {
        ConfigError::evaluation(
            format!(
                "Cannot start Lua for {}: {}",
                path.display(),
                error_line(&error)
            ),
            "This is not a problem with the config; please report it.",
        )
    })?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let chunk_name = sandbox::chunk_name(config_dir, &absolute);
    let outcome = builder.run_limited(|lua| {
        let chunk = lua
            .load(source)
            .set_name(chunk_name)
            .set_mode(ChunkMode::Text)
            .into_function()?;
        let returned: mlua::Value = chunk.call(())?;
        match returned {
            mlua::Value::Function(build) => build.call(()),
            other => Ok(other),
        }
    });
    let returned = outcome.map_err(|error| match error {
        None => time_limit_error(path, limits),
        Some(error) if is_memory_error(&error) => ConfigError::evaluation(
            format!(
                "Lua config {} used more than {} MiB of memory",
                path.display(),
                limits.memory_bytes / (1024 * 1024)
            ),
            "Look for a loop that keeps growing a table or a string; a config should stay small.",
        ),
        Some(error @ mlua::Error::SyntaxError { .. }) => ConfigError::evaluation(
            format!("Lua config {} has a syntax error: {}", path.display(), error_line(&error)),
            "Fix the Lua syntax at the line shown.",
        ),
        Some(error) => ConfigError::evaluation(
            format!("Lua config {} failed: {}", path.display(), error_line(&error)),
            "Fix the error at the line shown; the config must run without errors and return its table.",
        ),
    })?;
    let table = match returned {
        mlua::Value::Table(table) => table,
        other => {
            return Err(ConfigError::evaluation(
                format!(
                    "Lua config {} must return a table, or a function that returns one; it returned {}",
                    path.display(),
                    describe(&other)
                ),
                "End the file with `return { proxy = { ... }, processes = { ... } }`.",
            ));
        }
    };
    let mut converter = Converter {
        builder: &mut builder,
        issues: Vec::new(),
        visiting: HashSet::new(),
    };
    let value = converter.table(&table, "", 0);
    let issues = converter.issues;
    Ok(EvaluatedLua {
        value,
        issues,
        builder,
    })
}

fn describe(value: &mlua::Value) -> &'static str {
    match value {
        mlua::Value::Nil => "nothing (nil)",
        other => other.type_name(),
    }
}

struct Converter<'b> {
    builder: &'b mut RuntimeBuilder,
    issues: Vec<Issue>,
    /// Tables on the current path, to catch cycles.
    visiting: HashSet<usize>,
}

/// How a Lua table's keys say it should be read.
enum TableShape {
    List(usize),
    Map(Vec<(String, mlua::Value)>),
}

impl Converter<'_> {
    fn issue(&mut self, message: String, fix: &str) {
        self.issues.push(Issue::new(message, fix));
    }

    fn shown(path: &str) -> &str {
        if path.is_empty() {
            "The config table"
        } else {
            path
        }
    }

    /// The converted value; `None` when it has no JSON form (already reported).
    fn value(&mut self, value: mlua::Value, path: &str, depth: usize) -> Option<Value> {
        Some(match value {
            mlua::Value::Nil => Value::Null,
            mlua::Value::Boolean(flag) => Value::Bool(flag),
            mlua::Value::Integer(n) => Value::from(n),
            mlua::Value::Number(n) => match Number::from_f64(n) {
                Some(number) => Value::Number(number),
                None => markers::non_finite(&n.to_string()),
            },
            mlua::Value::String(text) => match text.to_str() {
                Ok(text) => Value::String(text.to_string()),
                Err(_) => {
                    self.issue(
                        format!("{path} is not valid UTF-8 text"),
                        "Use UTF-8 text in config strings.",
                    );
                    return None;
                }
            },
            mlua::Value::Table(table) => self.table(&table, path, depth + 1),
            mlua::Value::Function(function) => {
                markers::lua_function(self.builder.register_function(function))
            }
            other => {
                self.issue(
                    format!("{} holds a Lua {}, which a config cannot use", Self::shown(path), other.type_name()),
                    "Use only strings, numbers, booleans, tables and (for hooks) functions in a config.",
                );
                return None;
            }
        })
    }

    fn table(&mut self, table: &mlua::Table, path: &str, depth: usize) -> Value {
        let identity = table.to_pointer() as usize;
        if depth > MAX_DEPTH || !self.visiting.insert(identity) {
            self.issue(
                format!(
                    "{} refers to itself or is nested too deeply",
                    Self::shown(path)
                ),
                "Build the config as a plain tree of tables; a table must not contain itself.",
            );
            return Value::Null;
        }
        let value = match self.shape(table, path) {
            None => Value::Null,
            Some(TableShape::List(len)) => {
                let mut items = Vec::with_capacity(len);
                for index in 1..=len {
                    let item = table
                        .raw_get::<mlua::Value>(index)
                        .unwrap_or(mlua::Value::Nil);
                    let converted = self.value(item, &format!("{path}[{}]", index - 1), depth);
                    items.push(converted.unwrap_or(Value::Null));
                }
                Value::Array(items)
            }
            Some(TableShape::Map(entries)) => {
                let mut map = Map::new();
                for (key, item) in entries {
                    if let Some(converted) = self.value(item, &child(path, &key), depth) {
                        map.insert(key, converted);
                    }
                }
                Value::Object(map)
            }
        };
        self.visiting.remove(&identity);
        value
    }

    /// Reads the keys: `1..n` is a list, strings are named keys; an empty table is
    /// an empty list (the validator accepts it as an empty object too).
    fn shape(&mut self, table: &mlua::Table, path: &str) -> Option<TableShape> {
        let mut positions = 0usize;
        let mut max_position = 0i64;
        let mut named = Vec::new();
        let mut odd_key = None;
        for pair in table.pairs::<mlua::Value, mlua::Value>() {
            let Ok((key, value)) = pair else {
                odd_key = Some("unreadable");
                break;
            };
            match key {
                mlua::Value::Integer(n) if n >= 1 => {
                    positions += 1;
                    max_position = max_position.max(n);
                }
                mlua::Value::String(text) => match text.to_str() {
                    Ok(text) => named.push((text.to_string(), value)),
                    Err(_) => odd_key = Some("non-UTF-8 string"),
                },
                other => odd_key = Some(other.type_name()),
            }
        }
        let shown = Self::shown(path);
        if let Some(kind) = odd_key {
            self.issue(
                format!("{shown} has a key of type {kind}"),
                "Use string keys for named settings, or list entries without explicit keys.",
            );
            return None;
        }
        if positions > 0 && !named.is_empty() {
            self.issue(
                format!("{shown} mixes list entries and named keys"),
                "Make the table either a list ({ a, b }) or a set of named keys ({ x = 1 }), not both.",
            );
            return None;
        }
        if positions > 0 {
            if max_position as usize != positions {
                self.issue(
                    format!("{shown} is a list with gaps (a nil entry?)"),
                    "Remove nil entries from the list; every position from 1 to the end must hold a value.",
                );
                return None;
            }
            return Some(TableShape::List(positions));
        }
        if named.is_empty() {
            return Some(TableShape::List(0));
        }
        // Lua tables have no key order; sort so every run gives the same result.
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Some(TableShape::Map(named))
    }
}
