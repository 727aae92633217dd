//! The editor annotations in `lua/types/` against the code they describe: the
//! config keys validation accepts, the members registered on a real `ctx`, and
//! the functions of the Lua library compiled into the binary. Each check fails
//! both when the code has something the annotations lack and the reverse.

use crate::support::cli::rollbridge_in;
use rollbridge::config::{ValidationContext, validate_value};
use rollbridge::lua::{Limits, RuntimeBuilder};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn types_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lua/types")
}

fn types_file(name: &str) -> String {
    std::fs::read_to_string(types_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The `---@field` names of `---@class <class>` in `source` (up to the next
/// class or a line that is not an annotation).
fn class_fields(source: &str, class: &str) -> BTreeSet<String> {
    let header = format!("---@class {class}");
    let mut lines = source.lines().skip_while(|line| line.trim() != header);
    assert!(lines.next().is_some(), "no {header}");
    lines
        .take_while(|line| line.starts_with("---@field"))
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|name| !name.starts_with('['))
        .map(|name| name.trim_end_matches('?').to_string())
        .collect()
}

/// Names `x` of `function <prefix>x(` in `source`.
fn functions(source: &str, prefix: &str) -> BTreeSet<String> {
    source
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("function {prefix}")))
        .filter_map(|rest| rest.split('(').next())
        .map(str::to_string)
        .collect()
}

fn set(names: impl IntoIterator<Item = impl Into<String>>) -> BTreeSet<String> {
    names.into_iter().map(Into::into).collect()
}

#[test]
fn ctx_annotations_match_the_registered_ctx() {
    let source = types_file("ctx.lua");
    let (fields, methods) = rollbridge::lua::ctx::registered_members().unwrap();
    assert!(!methods.is_empty(), "the real ctx has methods");
    assert_eq!(
        functions(&source, "Ctx:"),
        set(methods),
        "ctx methods in lua/types/ctx.lua vs registered"
    );
    assert_eq!(
        class_fields(&source, "rollbridge.Ctx"),
        set(fields),
        "ctx fields in lua/types/ctx.lua vs registered"
    );
}

#[test]
fn library_annotations_match_the_embedded_modules() {
    let dir = tempfile::tempdir().unwrap();
    let builder = RuntimeBuilder::new(dir.path(), Limits::default()).unwrap();
    let modules: Vec<&str> = rollbridge::lua::library::module_names().collect();
    assert!(modules.contains(&"rollbridge.workers"));
    for module in &modules {
        let table: mlua::Table = builder
            .lua()
            .load(format!("return require({module:?})"))
            .eval()
            .unwrap_or_else(|e| panic!("require {module}: {e}"));
        let mut real = BTreeSet::new();
        for pair in table.pairs::<String, mlua::Value>() {
            let (name, value) = pair.unwrap();
            if value.is_function() {
                real.insert(name);
            }
        }
        let source = types_file(&format!("{module}.lua"));
        assert!(
            source.starts_with(&format!("---@meta {module}\n")),
            "{module}.lua declares its module"
        );
        assert_eq!(functions(&source, "M."), real, "functions of {module}");
    }
    // And no annotation file for a module that does not exist.
    let annotated: BTreeSet<String> = std::fs::read_dir(types_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("rollbridge"))
        .map(|name| name.trim_end_matches(".lua").to_string())
        .collect();
    assert_eq!(annotated, set(modules));
}

/// A valid config with every section present, so an unknown key can be put
/// into each.
fn full_config() -> Value {
    json!({
        "proxy": { "port": 8182, "accessLog": { "path": "access.log" } },
        "metrics": { "port": 9464 },
        "rollout": {},
        "control": {},
        "releaseRetention": {},
        "plugins": {},
        "legacyTakeover": { "screens": ["old"], "processes": [{ "includes": ["node"] }] },
        "processes": [{
            "id": "web", "policy": "proxied", "command": "app",
            "port": { "from": 18000, "to": 18099 },
            "health": {}, "lifecycle": {}, "restart": {},
            "memory": { "limitBytes": 1000000 },
            "logFile": { "path": "web.log" },
        }],
    })
}

/// The keys validation accepts at `path` (a JSON pointer into `full_config()`),
/// read from its unknown-key report: "the keys accepted here are: a, b, c."
fn accepted_keys(pointer: &str) -> BTreeSet<String> {
    let mut config = full_config();
    config
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no section at {pointer}"))
        .insert("zzqxv".into(), json!(1));
    let report = validate_value(&config, &ValidationContext::for_dir("/srv/shop"));
    let issue = report
        .issues
        .iter()
        .find(|issue| issue.message.ends_with("zzqxv is not a known key"))
        .unwrap_or_else(|| panic!("no unknown-key issue at {pointer}: {:?}", report.issues));
    let list = issue
        .fix
        .split_once("the keys accepted here are: ")
        .unwrap_or_else(|| panic!("no key list in {:?}", issue.fix))
        .1
        .trim_end_matches('.');
    set(list.split(", "))
}

#[test]
fn config_annotations_match_the_keys_validation_accepts() {
    let source = types_file("config.lua");
    let sections = [
        ("", "rollbridge.Config"),
        ("/proxy", "rollbridge.Proxy"),
        ("/proxy/accessLog", "rollbridge.AccessLog"),
        ("/metrics", "rollbridge.Metrics"),
        ("/rollout", "rollbridge.Rollout"),
        ("/control", "rollbridge.Control"),
        ("/releaseRetention", "rollbridge.ReleaseRetention"),
        ("/plugins", "rollbridge.Plugins"),
        ("/legacyTakeover", "rollbridge.LegacyTakeover"),
        ("/legacyTakeover/processes/0", "rollbridge.LegacyProcess"),
        ("/processes/0", "rollbridge.Process"),
        ("/processes/0/port", "rollbridge.PortRange"),
        ("/processes/0/health", "rollbridge.Health"),
        ("/processes/0/lifecycle", "rollbridge.Lifecycle"),
        ("/processes/0/restart", "rollbridge.Restart"),
        ("/processes/0/memory", "rollbridge.Memory"),
        ("/processes/0/logFile", "rollbridge.LogFile"),
    ];
    for (pointer, class) in sections {
        assert_eq!(
            class_fields(&source, class),
            accepted_keys(pointer),
            "{class} in lua/types/config.lua vs the keys validation accepts at {pointer:?}"
        );
    }
    // Every config class is one of the sections above, or a hook table.
    let classes: BTreeSet<&str> = source
        .lines()
        .filter_map(|line| line.strip_prefix("---@class "))
        .collect();
    let checked: BTreeSet<&str> = sections.iter().map(|(_, class)| *class).collect();
    let unchecked: Vec<_> = classes.difference(&checked).collect();
    assert_eq!(unchecked, [&"rollbridge.HookTable"]);
}

#[test]
fn lua_types_writes_the_files_of_lua_types() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("editor/types");
    let run = rollbridge_in(dir.path(), &["lua-types", target.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut shipped: Vec<String> = std::fs::read_dir(types_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    shipped.sort();
    let mut printed: Vec<String> = run.stdout.lines().map(str::to_string).collect();
    printed.sort();
    let expected: Vec<String> = shipped
        .iter()
        .map(|name| target.join(name).display().to_string())
        .collect();
    assert_eq!(printed, expected);
    for name in &shipped {
        assert_eq!(
            std::fs::read_to_string(target.join(name)).unwrap(),
            types_file(name),
            "{name} as written"
        );
    }
    // Without a folder: ./rollbridge-types.
    let run = rollbridge_in(dir.path(), &["lua-types"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(dir.path().join("rollbridge-types/ctx.lua").is_file());
}

#[tokio::test]
async fn process_annotations_match_the_table_hooks_receive() {
    use crate::support::lua::{Group, World, config_with, lifecycle_spec, registry};
    let world = World::new();
    let loaded = world.lua_config(&config_with(
        "",
        r#"lifecycle = { quiet = function(ctx)
            local keys = {}
            for key in pairs(ctx.process) do keys[#keys + 1] = key end
            -- env is built on first use, so pairs() does not list it before.
            if ctx.process.env ~= nil then keys[#keys + 1] = "env" end
            ctx:event("process keys", { keys = table.concat(keys, ",") })
          end }"#,
    ));
    let group = Group::start("exec sleep 100", world.dir.path());
    let registry = registry(&loaded);
    let spec = lifecycle_spec(&loaded, 0, rollbridge::plugins::Stage::Quiet);
    let hook = registry
        .lifecycle(&spec, rollbridge::plugins::Stage::Quiet)
        .unwrap();
    let call = world.call(
        rollbridge::plugins::Stage::Quiet,
        world.process(Some(&group)),
        std::time::Duration::from_secs(5),
    );
    hook.run(call).await.unwrap();
    let event = &world.events_named("process keys")[0];
    let keys = event.data["keys"].as_str().unwrap();
    assert_eq!(
        class_fields(&types_file("ctx.lua"), "rollbridge.ProcessInfo"),
        set(keys.split(',')),
        "rollbridge.ProcessInfo in lua/types/ctx.lua vs ctx.process"
    );
}
