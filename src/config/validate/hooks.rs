//! Hook values (`lifecycle.*`, `health.check`, `legacyTakeover.matchers[]`) and the
//! `lifecycle` section with its legacy `*Command` keys.

use super::keys::closest;
use super::{HookKind, Section, Validator, child, millis};
use crate::config::hook::HookSpec;
use crate::config::markers;
use crate::config::model::Lifecycle;
use serde_json::{Map, Value};

const LIFECYCLE_KEYS: &[&str] = &[
    "drain",
    "drainCommand",
    "drainTimeoutMs",
    "quiet",
    "quietCommand",
    "stop",
    "stopCommand",
];

pub(super) struct LifecycleHooks {
    pub lifecycle: Lifecycle,
    /// `"stop"` or `"stopCommand"` when a stop hook is set.
    pub stop_key: Option<&'static str>,
}

/// One stage: its new key and its legacy `*Command` key.
struct StageKeys {
    hook: &'static str,
    command: &'static str,
}

const QUIET: StageKeys = StageKeys {
    hook: "quiet",
    command: "quietCommand",
};
const DRAIN: StageKeys = StageKeys {
    hook: "drain",
    command: "drainCommand",
};
const STOP: StageKeys = StageKeys {
    hook: "stop",
    command: "stopCommand",
};

pub(super) fn validate_lifecycle(
    v: &mut Validator,
    value: Option<&Value>,
    key: &str,
) -> LifecycleHooks {
    let map = match v.section(
        value,
        key,
        &format!("Make {key} a table with any of quiet, drain, stop and drainTimeoutMs (or the older quietCommand, drainCommand and stopCommand)."),
    ) {
        Section::Present(map) => map,
        _ => {
            return LifecycleHooks {
                lifecycle: Lifecycle::default(),
                stop_key: None,
            };
        }
    };
    v.known_keys(map, key, LIFECYCLE_KEYS);
    let (drain, drain_key) = stage_hook(v, map, key, &DRAIN);
    let timeout_key = child(key, "drainTimeoutMs");
    let drain_timeout_ms = v
        .non_negative_number(map.get("drainTimeoutMs"), &timeout_key, 0)
        .map_or(0, millis);
    let (quiet, _) = stage_hook(v, map, key, &QUIET);
    let (stop, stop_key) = stage_hook(v, map, key, &STOP);

    let timeout_given_invalid = map
        .get("drainTimeoutMs")
        .is_some_and(|t| t.as_f64().is_none_or(|ms| ms < 0.0));
    if let Some(drain_key) = drain_key
        && drain_timeout_ms == 0
        && !timeout_given_invalid
    {
        let hook_key = child(key, drain_key);
        v.issue(
            format!("{hook_key} requires a positive {timeout_key}"),
            format!("Give {timeout_key} a positive number of milliseconds to bound the drain hook; with 0 the drain step is skipped and {hook_key} would never run."),
        );
    }
    LifecycleHooks {
        lifecycle: Lifecycle {
            quiet,
            drain,
            stop,
            drain_timeout_ms,
        },
        stop_key,
    }
}

/// Reads one stage from its new or legacy key; setting both is an issue. Returns
/// the hook and the key that set it.
fn stage_hook(
    v: &mut Validator,
    map: &Map<String, Value>,
    lifecycle_key: &str,
    stage: &StageKeys,
) -> (Option<HookSpec>, Option<&'static str>) {
    let legacy = map.get(stage.command).and_then(|value| {
        v.required_string(Some(value), &child(lifecycle_key, stage.command))
            .map(HookSpec::Command)
    });
    let hook = map.get(stage.hook).and_then(|value| {
        validate_hook(
            v,
            value,
            &child(lifecycle_key, stage.hook),
            HookKind::Lifecycle,
        )
    });
    let both_given = map.contains_key(stage.command) && map.contains_key(stage.hook);
    if both_given {
        v.issue(
            format!(
                "{lifecycle_key} sets both {} and {}",
                stage.hook, stage.command
            ),
            format!(
                "Keep only {}: {} is its older spelling for a shell command.",
                stage.hook, stage.command
            ),
        );
    }
    match (hook, legacy) {
        (Some(hook), _) => (Some(hook), Some(stage.hook)),
        (None, Some(command)) => (Some(command), Some(stage.command)),
        (None, None) => (None, None),
    }
}

/// The shapes a hook value may take, for messages.
fn accepted_forms(v: &Validator, kind: HookKind) -> &'static str {
    if v.plugins.contains(kind, "command") {
        "a command string, a Lua function, a plugin table or a Lua script table"
    } else {
        "a Lua function, a plugin table or a Lua script table"
    }
}

const FORMS_FIX: &str = "Use a shell command string, a Lua function (Lua configs only), {plugin = \"<name>\", ...options} for a built-in or native plugin, or {lua = \"file.lua\", fn = \"<name>\", ...options} for a function in a Lua script.";

/// Validates one hook value for the extension point `kind`.
pub(super) fn validate_hook(
    v: &mut Validator,
    value: &Value,
    key: &str,
    kind: HookKind,
) -> Option<HookSpec> {
    if let Value::String(command) = value
        && v.plugins.contains(kind, "command")
    {
        return Some(HookSpec::Command(command.clone()));
    }
    if let Some(id) = markers::as_lua_function(value)
        && v.ctx.lua_function_ids.contains(&id)
    {
        return Some(HookSpec::LuaFunction {
            id,
            options: Map::new(),
        });
    }
    let Some(map) = v.as_object(value).filter(|map| !map.is_empty()) else {
        let forms = accepted_forms(v, kind);
        v.issue(format!("{key} must be {forms}"), FORMS_FIX);
        return None;
    };
    let options = |skip: &[&str]| -> Map<String, Value> {
        map.iter()
            .filter(|(name, _)| !skip.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    };
    match (map.get("plugin"), map.get("lua")) {
        (Some(_), Some(_)) => {
            v.issue(
                format!("{key} sets both plugin and lua"),
                "Keep plugin to run a plugin by name, or lua and fn to run a function from a Lua script, not both.",
            );
            None
        }
        (Some(plugin), None) => {
            let Some(name) = plugin.as_str().filter(|name| !name.is_empty()) else {
                v.wrong_type(
                    Some(plugin),
                    format!("{key}.plugin must be a non-empty string"),
                    "Name the plugin to run, e.g. plugin = \"signal\".".to_string(),
                );
                return None;
            };
            if !v.plugins.contains(kind, name) {
                unknown_plugin(v, key, kind, name);
                return None;
            }
            let options = options(&["plugin"]);
            super::plugin_options::check(v, key, kind, name, &options);
            Some(HookSpec::Plugin {
                name: name.to_string(),
                options,
            })
        }
        (None, Some(file)) => lua_file_hook(v, key, file, map.get("fn"), options(&["lua", "fn"])),
        (None, None) => {
            // `{fn = <Lua function>, ...options}`: a Lua function with options.
            if let Some(id) = map.get("fn").and_then(markers::as_lua_function)
                && v.ctx.lua_function_ids.contains(&id)
            {
                return Some(HookSpec::LuaFunction {
                    id,
                    options: options(&["fn"]),
                });
            }
            let forms = accepted_forms(v, kind);
            v.issue(format!("{key} must be {forms}"), FORMS_FIX);
            None
        }
    }
}

fn unknown_plugin(v: &mut Validator, key: &str, kind: HookKind, name: &str) {
    let names = v.plugins.names(kind);
    let suggestion = closest(name, &names)
        .map(|s| format!(" Did you mean \"{s}\"?"))
        .unwrap_or_default();
    v.issue(
        format!("{key} uses unknown {} plugin \"{name}\"", kind.as_str()),
        format!(
            "Use one of the {} plugins: {}.{suggestion} A plugin of your own can be loaded from a native library listed in plugins.native.",
            kind.as_str(),
            names.join(", ")
        ),
    );
}

fn lua_file_hook(
    v: &mut Validator,
    key: &str,
    file: &Value,
    function: Option<&Value>,
    options: Map<String, Value>,
) -> Option<HookSpec> {
    let file = match file.as_str().filter(|f| !f.is_empty()) {
        Some(file) => Some(v.ctx.config_dir.join(file)),
        None => {
            v.wrong_type(
                Some(file),
                format!("{key}.lua must be a non-empty string"),
                "Set lua to the path of a Lua script, relative to the config's folder.".to_string(),
            );
            None
        }
    };
    let function = match function.and_then(Value::as_str).filter(|f| !f.is_empty()) {
        Some(function) => Some(function.to_string()),
        None => {
            v.wrong_type(
                function,
                format!("{key}.fn must be a non-empty string"),
                "Set fn to the name of the function to call in the Lua script.".to_string(),
            );
            None
        }
    };
    let (file, function) = (file?, function?);
    if !file.is_file() {
        v.issue(
            format!("{key}.lua file {} does not exist", file.display()),
            "Check the path: a relative path is resolved against the folder that holds the config file.",
        );
        return None;
    }
    v.lua_files.push(super::LuaFileRef {
        key: key.to_string(),
        file: file.clone(),
        function: function.clone(),
    });
    Some(HookSpec::LuaFile {
        file,
        function,
        options,
    })
}
