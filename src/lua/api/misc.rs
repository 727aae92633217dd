//! `sleep`, `remaining_ms`, `event`, `file_exists` and `read_file`.

use super::{millis, raise};
use crate::events::{Event, ProcessEvent, ProcessScope};
use crate::lua::ctx::{CallScope, HookCtx};
use crate::util::errno::plain_io_reason;
use mlua::serde::DeserializeOptions;
use mlua::{LuaSerdeExt, UserDataMethods, Value};
use serde_json::Map;
use std::io::Read;
use std::path::PathBuf;

/// The most `ctx:read_file` returns unless told otherwise.
pub const DEFAULT_READ_BYTES: usize = 1024 * 1024;

pub(super) fn add_methods<M: UserDataMethods<HookCtx>>(methods: &mut M) {
    methods.add_async_method("sleep", |_, _this, ms: Option<f64>| async move {
        let pause = millis("sleep", "the pause", ms)?.ok_or_else(|| {
            raise(
                "sleep",
                "give the pause in milliseconds, e.g. ctx:sleep(500)",
            )
        })?;
        tokio::time::sleep(pause).await;
        Ok(())
    });

    methods.add_method("remaining_ms", |_, this, ()| {
        Ok(u64::try_from(this.scope.remaining().as_millis()).unwrap_or(u64::MAX))
    });

    methods.add_method(
        "event",
        |lua, this, (message, data): (String, Option<Value>)| {
            let data = match data {
                None | Some(Value::Nil) => Map::new(),
                Some(value @ Value::Table(_)) => {
                    let options = DeserializeOptions::new().deny_unsupported_types(true);
                    match lua.from_value_with::<serde_json::Value>(value, options) {
                        Ok(serde_json::Value::Object(map)) => map,
                        // An empty Lua table reads as an empty list.
                        Ok(serde_json::Value::Array(items)) if items.is_empty() => Map::new(),
                        Ok(_) => {
                            return Err(raise(
                                "event",
                                "data must be a table with named keys, e.g. {jobs = 3}",
                            ));
                        }
                        Err(error) => {
                            return Err(raise(
                                "event",
                                format!(
                                    "data can hold only strings, numbers, booleans and tables ({})",
                                    crate::lua::error_line(&error)
                                ),
                            ));
                        }
                    }
                }
                Some(other) => {
                    return Err(raise(
                        "event",
                        format!("data must be a table, not a {}", other.type_name()),
                    ));
                }
            };
            record_event(&this.scope, message, data);
            Ok(())
        },
    );

    methods.add_async_method("file_exists", |_, this, path: String| {
        let path = resolve(&this.scope, &path);
        async move {
            tokio::fs::try_exists(&path).await.map_err(|error| {
                raise(
                    "file_exists",
                    format!(
                        "cannot check {}: {}",
                        path.display(),
                        plain_io_reason(&error)
                    ),
                )
            })
        }
    });

    methods.add_async_method(
        "read_file",
        |lua, this, (path, max): (String, Option<f64>)| {
            let path = resolve(&this.scope, &path);
            async move {
                let limit = match max {
                    None => DEFAULT_READ_BYTES,
                    Some(n) if n.is_finite() && n >= 0.0 => n as usize,
                    Some(n) => {
                        return Err(raise(
                            "read_file",
                            format!("the byte limit must be 0 or more, not {n}"),
                        ));
                    }
                };
                let shown = path.clone();
                let read = tokio::task::spawn_blocking(move || read_prefix(&path, limit))
                    .await
                    .map_err(|_| raise("read_file", "the read was interrupted"))?;
                match read {
                    Ok(Some(bytes)) => Ok(Value::String(lua.create_string(&bytes)?)),
                    Ok(None) => Ok(Value::Nil),
                    Err(error) => Err(raise(
                        "read_file",
                        format!(
                            "cannot read {}: {}",
                            shown.display(),
                            plain_io_reason(&error)
                        ),
                    )),
                }
            }
        },
    );
}

/// A path relative to the process's working directory.
fn resolve(scope: &CallScope, path: &str) -> PathBuf {
    scope.cwd.join(path)
}

/// Up to `limit` bytes of a file; `None` when it does not exist.
fn read_prefix(path: &PathBuf, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut bytes = Vec::new();
    file.take(limit as u64).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// `ctx:event`: an event of the hook's process, or a log line for matchers.
fn record_event(scope: &CallScope, message: String, data: Map<String, serde_json::Value>) {
    match (&scope.events, scope.event_prefix()) {
        (Some(events), Some((process_id, release_id))) => events.emit(Event::Process {
            scope: ProcessScope {
                process_id: process_id.to_string(),
                release_id: release_id.to_string(),
            },
            event: ProcessEvent::Hook { message, data },
        }),
        (Some(events), None) => events.emit(Event::Hook { message, data }),
        (None, _) => {
            tracing::info!(
                target: "rollbridge::lua",
                stage = scope.stage.as_str(),
                data = %serde_json::Value::Object(data),
                "{message}"
            );
        }
    }
}
