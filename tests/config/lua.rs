//! Lua configs: evaluation, the sandbox, `require`, limits, and the runtime that
//! keeps hook functions.

use crate::support::config::*;
use rollbridge::config::hook::HookSpec;
use rollbridge::config::{LoadOptions, load, load_with};
use rollbridge::lua::Limits;
use std::time::Duration;

fn short_limits() -> LoadOptions {
    LoadOptions {
        lua_limits: Limits {
            time: Duration::from_millis(300),
            memory_bytes: 16 * 1024 * 1024,
        },
        ..Default::default()
    }
}

/// A config table as Lua source, with `extra` inserted into the web process.
fn lua_config(extra: &str) -> String {
    format!(
        r#"return {{
  proxy = {{ port = 8182 }},
  processes = {{
    {{ id = "web", policy = "proxied", command = "run", port = {{ from = 18000, to = 18099 }}, {extra} }},
  }},
}}"#
    )
}

fn load_error(source: &str) -> (String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "rollbridge.lua", source);
    let error = load_with(&path, &short_limits()).unwrap_err().to_string();
    (error, path, dir)
}

#[test]
fn a_lua_config_can_be_a_table_or_a_function() {
    let dir = tempfile::tempdir().unwrap();
    let table = write(dir.path(), "table.lua", &lua_config(""));
    let function = write(
        dir.path(),
        "function.lua",
        &format!("return function() {} end", lua_config("")),
    );
    let from_table = load(&table).unwrap();
    let from_function = load(&function).unwrap();
    assert_eq!(from_table.config, from_function.config);
    assert!(from_table.lua.is_some());
}

#[test]
fn require_finds_sibling_modules_and_the_embedded_library() {
    let loaded = load(&fixture("lua-app/rollbridge.lua")).unwrap();
    let web = &loaded.config.processes[0];
    assert_eq!(
        web.port,
        Some(rollbridge::config::model::PortRange {
            from: 18000,
            to: 18099
        })
    );
    assert_eq!(loaded.config.application, "lua-app");
    assert_eq!(loaded.config.proxy.port, 8182);
    assert!(web.env.is_empty(), "an empty Lua table is an empty env");
}

#[test]
fn hook_functions_are_kept_in_the_runtime_and_callable() {
    let loaded = load(&fixture("lua-app/rollbridge.lua")).unwrap();
    let runtime = loaded.lua.as_ref().expect("a Lua config has a runtime");
    let web = &loaded.config.processes[0];

    let quiet = web.lifecycle.quiet.as_ref().unwrap();
    assert!(matches!(quiet, HookSpec::LuaFunction { options, .. } if options.is_empty()));
    let result: String = runtime.hook_function(quiet).unwrap().call("ctx").unwrap();
    assert_eq!(result, "quiet from ctx");

    let drain = web.lifecycle.drain.as_ref().unwrap();
    match drain {
        HookSpec::LuaFunction { options, .. } => assert_eq!(options["queue"], "mail"),
        other => panic!("unexpected {other:?}"),
    }
    let result: String = runtime.hook_function(drain).unwrap().call(()).unwrap();
    assert_eq!(result, "drained");

    let check = web.health.as_ref().unwrap().check.as_ref().unwrap();
    assert!(
        runtime
            .hook_function(check)
            .unwrap()
            .call::<bool>(())
            .unwrap()
    );
    let matcher = &loaded.config.legacy_takeover.as_ref().unwrap().matchers[0];
    assert!(
        !runtime
            .hook_function(matcher)
            .unwrap()
            .call::<bool>(())
            .unwrap()
    );
    assert_eq!(runtime.function_count(), 4);

    // The runtime can move to another thread.
    let clone = runtime.clone();
    let quiet = quiet.clone();
    let from_thread = std::thread::spawn(move || {
        clone
            .hook_function(&quiet)
            .unwrap()
            .call::<String>("t")
            .unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(from_thread, "quiet from t");
}

#[test]
fn script_hooks_of_a_json_config_are_loaded_at_load_time() {
    let loaded = load(&fixture("json-with-scripts/rollbridge.json")).unwrap();
    let runtime = loaded.lua.as_ref().expect("script hooks need a runtime");
    let lifecycle = &loaded.config.processes[0].lifecycle;
    let quiet = lifecycle.quiet.as_ref().unwrap();
    assert_eq!(quiet.options()["grace"], 5);
    let result: String = runtime.hook_function(quiet).unwrap().call(()).unwrap();
    assert_eq!(result, "quiet ok");
    let drain = lifecycle.drain.as_ref().unwrap();
    let result: String = runtime.hook_function(drain).unwrap().call(()).unwrap();
    assert_eq!(result, "drain ok");
}

#[test]
fn script_hooks_with_missing_functions_or_errors_are_issues() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hooks.lua", "function quiet() end");
    write(dir.path(), "broken.lua", "error('script exploded')");
    let path = write(
        dir.path(),
        "rollbridge.json",
        r#"{"proxy": {}, "processes": [{"id": "web", "policy": "proxied", "command": "x",
            "port": {"from": 18000, "to": 18099},
            "lifecycle": {"quiet": {"lua": "hooks.lua", "fn": "nope"}, "stop": {"lua": "broken.lua", "fn": "stop"}}}]}"#,
    );
    let messages = check_messages(&path);
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].starts_with("processes[0].lifecycle.quiet.fn \"nope\" cannot be loaded:")
            && messages[0].contains("does not define a function named \"nope\""),
        "{messages:?}"
    );
    assert!(
        messages[1].starts_with("processes[0].lifecycle.stop.fn \"stop\" cannot be loaded: broken.lua:1: script exploded"),
        "{messages:?}"
    );
}

#[test]
fn the_sandbox_refuses_io_and_process_control() {
    for (source, expected) in [
        ("local f = io.open('/etc/passwd')", "global 'io'"),
        (
            "os.execute('touch /tmp/rollbridge-sandbox-escape')",
            "field 'execute'",
        ),
        ("os.exit(1)", "field 'exit'"),
        ("os.remove('/tmp/x')", "field 'remove'"),
        ("os.rename('/tmp/x', '/tmp/y')", "field 'rename'"),
        ("os.tmpname()", "field 'tmpname'"),
        ("dofile('/etc/passwd')", "global 'dofile'"),
        ("loadfile('/etc/passwd')", "global 'loadfile'"),
        ("string.dump(print)", "field 'dump'"),
        ("require('debug')", "module 'debug' not found"),
        ("package.loadlib('libc.so.6', 'system')", "field 'loadlib'"),
        (
            "collectgarbage('stop')",
            "not available in rollbridge's Lua sandbox",
        ),
        ("assert(load('\\27Lua'))", "attempt to load a binary chunk"),
    ] {
        let (error, path, _dir) = load_error(source);
        assert!(error.contains(expected), "{source}: {error}");
        assert!(
            error.starts_with(&format!(
                "Lua config {} failed: rollbridge.lua:1:",
                path.display()
            )),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
    }
    assert!(!std::path::Path::new("/tmp/rollbridge-sandbox-escape").exists());
}

#[test]
fn what_the_sandbox_allows() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "rollbridge.lua",
        &lua_config(
            r#"env = {
                HOME_SET = tostring(os.getenv("HOME") ~= nil),
                YEAR = os.date("!%Y", 0),
                CLOCK = type(os.clock()),
                TIME = math.type(os.time()),
                LOADED = load("return 'text chunks work'")(),
                PCALL = tostring(pcall(error, "caught")),
                UTF8 = tostring(utf8.len("héllo")),
                PRINTED = tostring(print("print goes to the debug log") == nil),
            }"#,
        ),
    );
    let loaded = load(&path).unwrap();
    let env: std::collections::BTreeMap<_, _> =
        loaded.config.processes[0].env.iter().cloned().collect();
    assert_eq!(env["HOME_SET"], "true");
    assert_eq!(env["YEAR"], "1970");
    assert_eq!(env["CLOCK"], "number");
    assert_eq!(env["TIME"], "integer");
    assert_eq!(env["LOADED"], "text chunks work");
    assert_eq!(env["PCALL"], "false");
    assert_eq!(env["UTF8"], "5");
    assert_eq!(env["PRINTED"], "true");
}

#[test]
fn require_cannot_leave_the_config_folder() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.lua", "return { leaked = true }");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.lua"),
        dir.path().join("secret.lua"),
    )
    .unwrap();
    let path = write(dir.path(), "rollbridge.lua", "return require('secret')");
    let error = load(&path).unwrap_err().to_string();
    assert!(
        error.contains("resolves outside the config's folder"),
        "{error}"
    );

    let path = write(dir.path(), "dots.lua", "return require('..secret')");
    let error = load(&path).unwrap_err().to_string();
    assert!(error.contains("is not a valid module name"), "{error}");

    let path = write(
        dir.path(),
        "builtin.lua",
        "return require('rollbridge.nope')",
    );
    let error = load(&path).unwrap_err().to_string();
    assert!(
        error.contains("no built-in module 'rollbridge.nope'"),
        "{error}"
    );
}

#[test]
fn lua_errors_are_one_line_with_file_and_line() {
    let (error, path, _dir) = load_error("local x = 1\n\nerror('boom')\n");
    assert_eq!(
        error,
        format!(
            "Lua config {} failed: rollbridge.lua:3: boom",
            path.display()
        )
    );

    let (error, path, _dir) = load_error("return {\n  proxy = {\n");
    assert!(
        error.starts_with(&format!(
            "Lua config {} has a syntax error: rollbridge.lua:3:",
            path.display()
        )),
        "{error}"
    );
    assert!(!error.contains('\n'));

    let (error, _, _dir) = load_error("local t = nil\nreturn t.x");
    assert!(
        error.contains("rollbridge.lua:2: attempt to index a nil value"),
        "{error}"
    );

    let (error, path, _dir) = load_error("return 42");
    assert_eq!(
        error,
        format!(
            "Lua config {} must return a table, or a function that returns one; it returned integer",
            path.display()
        )
    );
    let (error, _, _dir) = load_error("local x = 1");
    assert!(error.ends_with("it returned nothing (nil)"), "{error}");
}

#[test]
fn endless_loops_are_stopped_even_through_pcall_and_coroutines() {
    for source in [
        "while true do end",
        "return function() while true do end end",
        "while true do pcall(function() while true do end end) end",
        "local co = coroutine.wrap(function() while true do end end)\nwhile true do pcall(co) end",
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        "table.sort({3, 1, 2, 5, 4}, function(a, b) while true do end end)",
        "xpcall(function() while true do end end, function() while true do end end)",
    ] {
        let started = std::time::Instant::now();
        let (error, path, _dir) = load_error(source);
        assert_eq!(
            error,
            format!("Lua config {} did not finish within 300 ms", path.display()),
            "{source}"
        );
        // Bounded: the watchdog would give up a few seconds after the limit.
        assert!(started.elapsed() < Duration::from_secs(30), "{source}");
    }
}

#[test]
fn memory_is_bounded() {
    for source in [
        "local s = 'x'\nwhile true do s = s .. s end",
        "local t = {}\nfor i = 1, 1e9 do t[i] = i end",
        "return string.rep('x', 1e9)",
    ] {
        let (error, path, _dir) = load_error(source);
        assert_eq!(
            error,
            format!(
                "Lua config {} used more than 16 MiB of memory",
                path.display()
            ),
            "{source}"
        );
    }
}

#[test]
fn tables_that_json_cannot_express_are_issues() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "env = { 1, 2, A = 'x' }",
            "processes[0].env mixes list entries and named keys",
        ),
        (
            "env = { [1] = 'a', [3] = 'c' }",
            "processes[0].env is a list with gaps (a nil entry?)",
        ),
        (
            "env = { [true] = 'x' }",
            "processes[0].env has a key of type boolean",
        ),
        (
            "cwd = coroutine.create(function() end)",
            "processes[0].cwd holds a Lua thread, which a config cannot use",
        ),
        (
            "command = function() end",
            "processes[0].command must be a string",
        ),
        (
            "replicas = 0/0",
            "processes[0].replicas must be a positive integer",
        ),
        (
            "restartDelayMs = math.huge",
            "processes[0].restartDelayMs must be a number",
        ),
    ];
    for (extra, expected) in cases {
        let path = write(dir.path(), "rollbridge.lua", &lua_config(extra));
        let messages = check_messages(&path);
        assert!(
            messages.iter().any(|m| m == expected),
            "{extra}: {messages:?}"
        );
    }
    let path = write(
        dir.path(),
        "cycle.lua",
        "local t = { proxy = {}, processes = {} }\nt.proxy.self = t\nreturn t",
    );
    let messages = check_messages(&path);
    assert!(
        messages.contains(&"proxy.self refers to itself or is nested too deeply".to_string()),
        "{messages:?}"
    );
}

#[test]
fn functions_outside_hook_positions_get_a_fix_that_says_where_they_belong() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "rollbridge.lua",
        &lua_config("command = function() return 'x' end"),
    );
    let report = rollbridge::config::check(&path);
    let issue = report
        .issues
        .iter()
        .find(|i| i.message == "processes[0].command must be a string")
        .unwrap();
    assert!(
        issue.fix.contains("only accepted as hook values"),
        "{}",
        issue.fix
    );
}

#[test]
fn a_config_is_read_again_on_every_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "rollbridge.lua", &lua_config("cwd = 'one'"));
    assert_eq!(
        load(&path).unwrap().config.processes[0].cwd.as_deref(),
        Some("one")
    );
    write(dir.path(), "rollbridge.lua", &lua_config("cwd = 'two'"));
    assert_eq!(
        load(&path).unwrap().config.processes[0].cwd.as_deref(),
        Some("two")
    );
}

#[test]
fn the_embedded_library_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "rollbridge.lua",
        r#"
local rb = require("rollbridge")
local base = { policy = "companion", restart = { maxRestarts = 3, windowMs = 1000 }, env = { A = "1" } }
return {
  proxy = { port = 8182 },
  processes = {
    { id = "web", policy = "proxied", command = "x", port = rb.range(18000, 18099),
      lifecycle = { quiet = rb.plugin("signal", { signal = "SIGUSR1" }) } },
    rb.merge(base, { id = "worker", command = "w", restart = { windowMs = 5000 }, env = { B = "2" } }),
  },
  statePath = rb.env("ROLLBRIDGE_TEST_SURELY_UNSET", "/tmp/state.json"),
}
"#,
    );
    let config = load(&path).unwrap().config;
    let worker = &config.processes[1];
    assert_eq!(worker.restart.max_restarts, Some(3));
    assert_eq!(worker.restart.window_ms, 5000);
    assert_eq!(
        worker.env,
        vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "2".to_string())
        ]
    );
    assert_eq!(config.state_path.as_deref(), Some("/tmp/state.json"));
    assert!(matches!(
        &config.processes[0].lifecycle.quiet,
        Some(HookSpec::Plugin { name, options }) if name == "signal" && options["signal"] == "SIGUSR1"
    ));

    let path = write(
        dir.path(),
        "required.lua",
        "local rb = require('rollbridge')\nlocal value = rb.require_env('ROLLBRIDGE_TEST_SURELY_UNSET')\nreturn value",
    );
    let error = load(&path).unwrap_err().to_string();
    assert!(
        error.contains(
            "required.lua:2: environment variable ROLLBRIDGE_TEST_SURELY_UNSET is not set"
        ),
        "{error}"
    );
}
