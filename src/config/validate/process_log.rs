//! `processes[].logFile`: a path, or `{ path, format, rotation, keep }`.

use super::{Validator, child};
use crate::config::model::{ProcessLogFileConfig, ProcessLogFormat, Rotation};
use serde_json::Value;

const LOG_FILE_KEYS: &[&str] = &["format", "keep", "path", "rotation"];

/// Shown with every shape problem of the key as a whole.
fn shape_fix(v: &Validator) -> String {
    let table = v.example(
        "logFile",
        serde_json::json!({"path": "logs/web.log", "format": "json", "rotation": "daily", "keep": 7}),
    );
    format!(
        "Set logFile to a file path such as \"logs/{{{{processId}}}}-{{{{replicaIndex}}}}.log\", or to a table such as {table}; leave it out to keep output in memory only."
    )
}

pub(super) fn validate_log_file(
    v: &mut Validator,
    value: Option<&Value>,
    key: &str,
) -> Option<ProcessLogFileConfig> {
    let value = value?;
    if let Value::String(path) = value {
        let path = non_empty_path(v, path, key)?;
        return Some(settings(v, path, ProcessLogFormat::default(), None, None));
    }
    let Some(map) = v.as_object(value) else {
        v.wrong_type(
            Some(value),
            format!("{key} must be a string or an object"),
            shape_fix(v),
        );
        return None;
    };
    v.known_keys(map, key, LOG_FILE_KEYS);

    let format_key = child(key, "format");
    let format = match v.optional_string(map.get("format"), &format_key) {
        None => Some(ProcessLogFormat::default()),
        Some(text) => {
            let format = ProcessLogFormat::parse(&text);
            if format.is_none() {
                v.issue(
                    format!("{format_key} \"{text}\" is not a known format"),
                    format!(
                        "Use one of: {}. raw (the default) writes each line as the process printed it; json writes {{\"at\",\"line\",\"stream\"}} objects like `rollbridge logs --json`.",
                        ProcessLogFormat::NAMES.join(", ")
                    ),
                );
            }
            format
        }
    };
    let keep_key = child(key, "keep");
    let keep = match map.get("keep") {
        None => Some(None),
        value => v
            .integer_where(
                value,
                |n| n >= 1.0,
                format!("{keep_key} must be a positive integer"),
                "Use a whole number of dated files to keep, e.g. 7, or leave keep out to follow the daemon's --log-keep.".to_string(),
            )
            .map(|n| Some(n.min(usize::MAX as f64) as usize)),
    };
    let path_key = child(key, "path");
    let path = v
        .required_string(map.get("path"), &path_key)
        .and_then(|path| non_empty_path(v, &path, &path_key));
    let rotation_key = child(key, "rotation");
    let rotation = match v.optional_string(map.get("rotation"), &rotation_key) {
        None => Some(None),
        Some(text) => {
            let rotation = Rotation::parse(&text);
            if rotation.is_none() {
                v.issue(
                    format!("{rotation_key} \"{text}\" is not a known rotation"),
                    format!(
                        "Use one of: {}, or leave rotation out to follow the daemon's --log-rotation.",
                        Rotation::NAMES.join(", ")
                    ),
                );
            }
            rotation.map(Some)
        }
    };
    Some(settings(v, path?, format?, rotation?, keep?))
}

fn non_empty_path(v: &mut Validator, path: &str, key: &str) -> Option<String> {
    if path.is_empty() {
        v.issue(
            format!("{key} must not be empty"),
            "Give the file to append the process's output to; a relative path is resolved against the config's folder, and placeholders such as {{replicaIndex}} give each replica its own file.",
        );
        return None;
    }
    Some(path.to_string())
}

fn settings(
    v: &Validator,
    path: String,
    format: ProcessLogFormat,
    rotation: Option<Rotation>,
    keep: Option<usize>,
) -> ProcessLogFileConfig {
    ProcessLogFileConfig {
        path,
        base_dir: v.ctx.config_dir.clone(),
        format,
        rotation,
        keep,
    }
}
