//! One case per validation message: a config snippet and the exact message it
//! must produce (every issue must also carry a fix).

use crate::support::config::*;
use rollbridge::config::{HookKind, KnownPlugins, ValidationContext, validate_value};
use serde_json::{Value, json};
use std::sync::Arc;

/// The base config with `processes[0].<key>` set to an explicit `null` (the
/// merge helpers treat `null` as "remove the key").
fn explicit_null(key: &str) -> Value {
    let mut config = base();
    config["processes"][0][key] = Value::Null;
    config
}

fn check_cases(cases: Vec<(Value, &str)>) {
    for (config, message) in cases {
        assert_issue(&config, message);
    }
}

#[test]
fn root_and_section_shapes() {
    let mut no_proxy = base();
    no_proxy.as_object_mut().unwrap().remove("proxy");
    let mut no_processes = base();
    no_processes.as_object_mut().unwrap().remove("processes");
    check_cases(vec![
        (json!([]), "Config must be an object"),
        (json!(null), "Config must be an object"),
        (json!("text"), "Config must be an object"),
        (
            with_root(json!({"application": 5})),
            "application must be a string",
        ),
        (no_proxy, "proxy is required"),
        (with_root(json!({"proxy": []})), "proxy must be an object"),
        (with_root(json!({"proxy": 8182})), "proxy must be an object"),
        (
            with_root(json!({"control": "x"})),
            "control must be an object",
        ),
        (no_processes, "processes must be an array"),
        (
            with_root(json!({"processes": {}})),
            "processes must be an array",
        ),
    ]);
}

#[test]
fn proxy_fields() {
    let proxy = |fields: Value| with_root(json!({ "proxy": fields }));
    check_cases(vec![
        (proxy(json!({"host": 1})), "proxy.host must be a string"),
        (proxy(json!({"host": null})), "proxy.host is required"),
        (
            proxy(json!({"drainTimeoutMs": -1})),
            "proxy.drainTimeoutMs must be a non-negative number",
        ),
        (
            proxy(json!({"forceStopTimeoutMs": "x"})),
            "proxy.forceStopTimeoutMs must be a number",
        ),
        (
            proxy(json!({"forceStopTimeoutMs": -10})),
            "proxy.forceStopTimeoutMs must be a non-negative number",
        ),
        (
            proxy(json!({"healthPath": false})),
            "proxy.healthPath must be a string",
        ),
        (
            proxy(json!({"healthTimeoutMs": -5})),
            "proxy.healthTimeoutMs must be a non-negative number",
        ),
        (
            proxy(json!({"healthTimeoutMs": null})),
            "proxy.healthTimeoutMs is required",
        ),
        (
            proxy(json!({"port": "8182"})),
            "proxy.port must be a number",
        ),
        (
            proxy(json!({"port": 70000})),
            "proxy.port must be a port number between 0 and 65535",
        ),
        (
            proxy(json!({"port": 80.5})),
            "proxy.port must be a port number between 0 and 65535",
        ),
        (
            proxy(json!({"port": -1})),
            "proxy.port must be a port number between 0 and 65535",
        ),
        (
            proxy(json!({"upstreamHost": []})),
            "proxy.upstreamHost must be a string",
        ),
    ]);
}

#[test]
fn control_fields() {
    let control = |fields: Value| with_root(json!({ "control": fields }));
    let mode = "control.mode must be an octal file mode between 0 and 0o777";
    let owner = "control.owner must be a non-negative integer id or a name";
    let group = "control.group must be a non-negative integer id or a name";
    check_cases(vec![
        (control(json!({"mode": "abc"})), mode),
        (control(json!({"mode": "1777"})), mode),
        (control(json!({"mode": "0o8"})), mode),
        (control(json!({"mode": "07777"})), mode),
        (control(json!({"mode": ""})), mode),
        (control(json!({"mode": 512})), mode),
        (control(json!({"mode": -1})), mode),
        (control(json!({"mode": 4.5})), mode),
        (control(json!({"mode": true})), mode),
        (control(json!({"owner": true})), owner),
        (control(json!({"owner": ""})), owner),
        (control(json!({"owner": 1.5})), owner),
        (control(json!({"group": -1})), group),
        (control(json!({"group": null})), group),
        (control(json!({"path": 5})), "control.path must be a string"),
    ]);
}

#[test]
fn process_fields() {
    let web = with_web;
    check_cases(vec![
        (
            with_root(json!({"processes": ["web"]})),
            "processes[0] must be an object",
        ),
        (
            web(json!({"command": null})),
            "processes[0].command is required",
        ),
        (
            web(json!({"command": 5})),
            "processes[0].command must be a string",
        ),
        (web(json!({"cwd": 1})), "processes[0].cwd must be a string"),
        (
            web(json!({"deployStrategy": "rolling"})),
            "processes[0].deployStrategy must be one of: persistent, handoff",
        ),
        (
            web(json!({"env": []})),
            "processes[0].env must be an object",
        ),
        (
            web(json!({"env": "A=1"})),
            "processes[0].env must be an object",
        ),
        (
            web(json!({"env": {"PORT": 1}})),
            "processes[0].env.PORT must be a string",
        ),
        (
            web(json!({"env": {"PORT": null}})),
            "processes[0].env.PORT is required",
        ),
        (
            web(json!({"gracefulStopMs": -1})),
            "processes[0].gracefulStopMs must be a non-negative number",
        ),
        (
            web(json!({"gracefulStopMs": "forever"})),
            "processes[0].gracefulStopMs must be a number",
        ),
        (
            web(json!({"health": "yes"})),
            "processes[0].health must be an object",
        ),
        (
            web(json!({"health": true})),
            "processes[0].health must be an object",
        ),
        (
            web(json!({"health": {"startDelayMs": -1}})),
            "processes[0].health.startDelayMs must be a non-negative number",
        ),
        (
            web(json!({"health": {"intervalMs": -250}})),
            "processes[0].health.intervalMs must be a non-negative number",
        ),
        (
            web(json!({"health": {"timeoutMs": -1}})),
            "processes[0].health.timeoutMs must be a non-negative number",
        ),
        (
            web(json!({"health": {"path": 5}})),
            "processes[0].health.path must be a string",
        ),
        (web(json!({"id": null})), "processes[0].id is required"),
        (web(json!({"id": 7})), "processes[0].id must be a string"),
        (web(json!({"id": ""})), "processes[0].id must not be empty"),
        (
            web(json!({"lifecycle": 5})),
            "processes[0].lifecycle must be an object",
        ),
        (
            web(json!({"lifecycle": {"drainTimeoutMs": -1}})),
            "processes[0].lifecycle.drainTimeoutMs must be a non-negative number",
        ),
        (
            web(json!({"lifecycle": {"drainCommand": "drain.sh"}})),
            "processes[0].lifecycle.drainCommand requires a positive processes[0].lifecycle.drainTimeoutMs",
        ),
        (
            web(json!({"lifecycle": {"drainCommand": "drain.sh", "drainTimeoutMs": 0}})),
            "processes[0].lifecycle.drainCommand requires a positive processes[0].lifecycle.drainTimeoutMs",
        ),
        (
            web(json!({"lifecycle": {"drain": {"plugin": "wait-exit"}}})),
            "processes[0].lifecycle.drain requires a positive processes[0].lifecycle.drainTimeoutMs",
        ),
        (
            web(json!({"lifecycle": {"quietCommand": 5}})),
            "processes[0].lifecycle.quietCommand must be a string",
        ),
        (
            web(json!({"lifecycle": {"stopCommand": null}})),
            "processes[0].lifecycle.stopCommand is required",
        ),
        (
            web(json!({"memory": 5})),
            "processes[0].memory must be an object",
        ),
        (
            explicit_null("memory"),
            "processes[0].memory must be an object",
        ),
        (
            web(json!({"memory": {}})),
            "processes[0].memory.limitBytes must be a positive integer",
        ),
        (
            web(json!({"memory": {"limitBytes": 0}})),
            "processes[0].memory.limitBytes must be a positive integer",
        ),
        (
            web(json!({"memory": {"limitBytes": 1.5}})),
            "processes[0].memory.limitBytes must be a positive integer",
        ),
        (
            web(json!({"memory": {"limitBytes": 1000, "warnBytes": -1}})),
            "processes[0].memory.warnBytes must be a non-negative integer",
        ),
        (
            web(json!({"memory": {"limitBytes": 1000, "checkIntervalMs": 0}})),
            "processes[0].memory.checkIntervalMs must be a positive number",
        ),
        (
            web(json!({"memory": {"limitBytes": 1000, "warnBytes": 1000}})),
            "processes[0].memory.warnBytes must be less than processes[0].memory.limitBytes",
        ),
        (
            web(json!({"memory": {"limitBytes": 1000, "warnBytes": 2000}})),
            "processes[0].memory.warnBytes must be less than processes[0].memory.limitBytes",
        ),
        (
            web(json!({"nonBlockingDrain": "yes"})),
            "processes[0].nonBlockingDrain must be a boolean",
        ),
        (
            web(json!({"outputLines": 0})),
            "processes[0].outputLines must be a positive integer",
        ),
        (
            web(json!({"outputLines": 2.5})),
            "processes[0].outputLines must be a positive integer",
        ),
        (
            web(json!({"policy": "primary"})),
            "processes[0].policy must be one of: proxied, companion, singleton, service",
        ),
        (
            web(json!({"restart": 5})),
            "processes[0].restart must be an object",
        ),
        (
            web(json!({"restart": {"backoffFactor": 0.5}})),
            "processes[0].restart.backoffFactor must be a number greater than or equal to 1",
        ),
        (
            web(json!({"restart": {"maxDelayMs": -1}})),
            "processes[0].restart.maxDelayMs must be a non-negative number",
        ),
        (
            web(json!({"restart": {"maxRestarts": -2}})),
            "processes[0].restart.maxRestarts must be a non-negative integer",
        ),
        (
            web(json!({"restart": {"maxRestarts": 1.5}})),
            "processes[0].restart.maxRestarts must be a non-negative integer",
        ),
        (
            web(json!({"restart": {"windowMs": -3}})),
            "processes[0].restart.windowMs must be a non-negative number",
        ),
        (
            web(json!({"restartDelayMs": -1})),
            "processes[0].restartDelayMs must be a non-negative number",
        ),
        (
            web(json!({"stopSignal": "SIGBOGUS"})),
            "processes[0].stopSignal must be a valid signal name",
        ),
        (
            web(json!({"stopSignal": 15})),
            "processes[0].stopSignal must be a valid signal name",
        ),
        (
            web(json!({"stopSignal": "SIGKILL"})),
            "processes[0].stopSignal must be a signal the process can handle, not SIGKILL",
        ),
        (
            web(json!({"stopSignal": "SIGSTOP"})),
            "processes[0].stopSignal must be a signal the process can handle, not SIGSTOP",
        ),
    ]);
}

#[test]
fn replicas_must_be_a_positive_integer() {
    let config = with_process(json!({"id": "worker", "command": "w", "replicas": 0}));
    assert_issue(&config, "processes[1].replicas must be a positive integer");
}

#[test]
fn ports() {
    let message = "processes[0].port must be a positive port or valid {from, to} range";
    for port in [
        json!(-1),
        json!("18000"),
        json!(true),
        json!(70000),
        json!(80.5),
        json!({"from": 200, "to": 100}),
        json!({"from": -5}),
        json!({"from": 18000, "to": 70000}),
        json!({"from": "a"}),
        json!({"from": 1.5, "to": 10}),
    ] {
        assert_issue(&with_web(json!({ "port": port })), message);
    }
}

#[test]
fn legacy_takeover() {
    let legacy = |value: Value| with_root(json!({ "legacyTakeover": value }));
    check_cases(vec![
        (legacy(json!(5)), "legacyTakeover must be an object"),
        (
            legacy(json!({"screens": "app"})),
            "legacyTakeover.screens must be an array",
        ),
        (
            legacy(json!({"screens": ["app", ""]})),
            "legacyTakeover.screens[1] must be a non-empty string",
        ),
        (
            legacy(json!({"screens": [5]})),
            "legacyTakeover.screens[0] must be a non-empty string",
        ),
        (
            legacy(json!({"processes": 5})),
            "legacyTakeover.processes must be an array",
        ),
        (
            legacy(json!({"processes": [5]})),
            "legacyTakeover.processes[0] must be an object",
        ),
        (
            legacy(json!({"processes": [{"includes": "puma"}]})),
            "legacyTakeover.processes[0].includes must be an array",
        ),
        (
            legacy(json!({"processes": [{}]})),
            "legacyTakeover.processes[0].includes must be an array",
        ),
        (
            legacy(json!({"processes": [{"includes": ["puma", ""]}]})),
            "legacyTakeover.processes[0].includes[1] must be a non-empty string",
        ),
        (
            legacy(json!({"processes": [{"includes": [""]}]})),
            "legacyTakeover.processes[0].includes must contain at least one matcher",
        ),
        (
            legacy(json!({"processes": [{"includes": []}]})),
            "legacyTakeover.processes[0].includes must contain at least one matcher",
        ),
        (
            legacy(json!({"processes": [{"includes": ["puma"], "name": 5}]})),
            "legacyTakeover.processes[0].name must be a string",
        ),
        (
            legacy(json!({})),
            "legacyTakeover must define at least one screen or process matcher",
        ),
        (
            legacy(json!({"screens": [], "processes": [], "matchers": []})),
            "legacyTakeover must define at least one screen or process matcher",
        ),
        (
            legacy(json!({"screens": ["app"], "forceStopTimeoutMs": -1})),
            "legacyTakeover.forceStopTimeoutMs must be a non-negative number",
        ),
        (
            legacy(json!({"matchers": {"plugin": "cmdline"}})),
            "legacyTakeover.matchers must be an array",
        ),
        (
            legacy(json!({"matchers": ["pgrep puma"]})),
            "legacyTakeover.matchers[0] must be a Lua function, a plugin table or a Lua script table",
        ),
        (
            legacy(json!({"matchers": [{"plugin": "http"}]})),
            "legacyTakeover.matchers[0] uses unknown matcher plugin \"http\"",
        ),
    ]);
}

#[test]
fn retention_and_state_path() {
    check_cases(vec![
        (
            with_root(json!({"releaseRetention": 5})),
            "releaseRetention must be an object",
        ),
        (
            with_root(json!({"releaseRetention": {"keep": -1}})),
            "releaseRetention.keep must be a non-negative integer",
        ),
        (
            with_root(json!({"releaseRetention": {"keep": 1.5}})),
            "releaseRetention.keep must be a non-negative integer",
        ),
        (
            with_root(json!({"releaseRetention": {"maxAgeMs": -1}})),
            "releaseRetention.maxAgeMs must be a non-negative number",
        ),
        (
            with_root(json!({"statePath": 123})),
            "statePath must be a string",
        ),
        (
            with_root(json!({"statePath": false})),
            "statePath must be a string",
        ),
    ]);
}

#[test]
fn cross_process_rules() {
    let two = |process: Value| with_process(process);
    check_cases(vec![
        (
            two(json!({"id": "web", "command": "x"})),
            "Duplicate process id: web",
        ),
        (
            two(json!({"id": "worker#1", "command": "x"})),
            "Process id \"worker#1\" must not contain \"#\"",
        ),
        (
            two(json!({"id": "worker", "command": "x", "replicas": 2, "port": 0})),
            "Process \"worker\" can only set replicas > 1 on a companion process without a port",
        ),
        (
            two(json!({"id": "svc", "policy": "service", "command": "x", "replicas": 4})),
            "Process \"svc\" can only set replicas > 1 on a companion process without a port",
        ),
        (
            two(
                json!({"id": "svc", "policy": "service", "command": "x", "nonBlockingDrain": true}),
            ),
            "Process \"svc\" can only set nonBlockingDrain on a companion process",
        ),
        (
            two(json!({"id": "jobs", "command": "x", "deployStrategy": "handoff"})),
            "Process \"jobs\" can only set deployStrategy: \"handoff\" on a service process",
        ),
        (
            two(
                json!({"id": "svc", "policy": "service", "command": "x", "deployStrategy": "handoff"}),
            ),
            "Handoff service \"svc\" must define a port range",
        ),
        (
            two(
                json!({"id": "svc", "policy": "service", "command": "x", "deployStrategy": "handoff", "port": 18600}),
            ),
            "Handoff service \"svc\" must use a multi-port range",
        ),
        (
            with_web(json!({"stopSignal": "SIGINT", "lifecycle": {"stopCommand": "stop.sh"}})),
            "Process \"web\" sets both lifecycle.stopCommand and a custom stopSignal, but stopCommand replaces stopSignal",
        ),
        (
            with_web(
                json!({"stopSignal": "SIGQUIT", "lifecycle": {"stop": {"plugin": "signal", "signal": "SIGINT"}}}),
            ),
            "Process \"web\" sets both lifecycle.stop and a custom stopSignal, but stop replaces stopSignal",
        ),
        (
            with_web(json!({"policy": "companion"})),
            "Config must define exactly one proxied process; found 0",
        ),
        (
            two(
                json!({"id": "api", "policy": "proxied", "command": "x", "port": {"from": 19000, "to": 19099}}),
            ),
            "Config must define exactly one proxied process; found 2",
        ),
        (
            with_web(json!({"port": null})),
            "Proxied process web must define a port range",
        ),
        (
            with_web(json!({"port": null, "id": ""})),
            "Proxied process (unnamed) must define a port range",
        ),
        (
            with_web(json!({"port": 18000})),
            "Process \"web\" uses the fixed port 18000, but a proxied process needs a multi-port range",
        ),
        (
            with_web(json!({"port": {"from": 18000, "to": 18000}})),
            "Process \"web\" uses the fixed port 18000, but a proxied process needs a multi-port range",
        ),
        (
            two(json!({"id": "sidecar", "command": "x", "port": 9000})),
            "Process \"sidecar\" uses the fixed port 9000, but a companion process needs a multi-port range",
        ),
    ]);
}

#[test]
fn hook_values() {
    let lifecycle = |value: Value| with_web(json!({ "lifecycle": value }));
    let forms = "a command string, a Lua function, a plugin table or a Lua script table";
    check_cases(vec![
        (
            lifecycle(json!({"quiet": 5})),
            &format!("processes[0].lifecycle.quiet must be {forms}"),
        ),
        (
            lifecycle(json!({"stop": {}})),
            &format!("processes[0].lifecycle.stop must be {forms}"),
        ),
        (
            lifecycle(json!({"stop": {"timeout": 5}})),
            &format!("processes[0].lifecycle.stop must be {forms}"),
        ),
        (
            lifecycle(json!({"quiet": "a", "quietCommand": "b"})),
            "processes[0].lifecycle sets both quiet and quietCommand",
        ),
        (
            lifecycle(json!({"stop": "a", "stopCommand": "b"})),
            "processes[0].lifecycle sets both stop and stopCommand",
        ),
        (
            lifecycle(json!({"drain": "a", "drainCommand": "b", "drainTimeoutMs": 100})),
            "processes[0].lifecycle sets both drain and drainCommand",
        ),
        (
            lifecycle(json!({"quiet": {"plugin": "nope"}})),
            "processes[0].lifecycle.quiet uses unknown lifecycle plugin \"nope\"",
        ),
        (
            lifecycle(json!({"quiet": {"plugin": 5}})),
            "processes[0].lifecycle.quiet.plugin must be a non-empty string",
        ),
        (
            lifecycle(json!({"quiet": {"plugin": "signal", "lua": "x.lua", "fn": "f"}})),
            "processes[0].lifecycle.quiet sets both plugin and lua",
        ),
        (
            lifecycle(json!({"quiet": {"lua": "", "fn": "f"}})),
            "processes[0].lifecycle.quiet.lua must be a non-empty string",
        ),
        (
            lifecycle(json!({"quiet": {"lua": "hooks.lua"}})),
            "processes[0].lifecycle.quiet.fn must be a non-empty string",
        ),
        (
            lifecycle(json!({"quiet": {"lua": "hooks/missing.lua", "fn": "quiet"}})),
            "processes[0].lifecycle.quiet.lua file /srv/shop/hooks/missing.lua does not exist",
        ),
        (
            with_web(json!({"health": {"check": {"plugin": "signal"}}})),
            "processes[0].health.check uses unknown health plugin \"signal\"",
        ),
        (
            with_web(json!({"health": {"check": 5}})),
            &format!("processes[0].health.check must be {forms}"),
        ),
    ]);
}

#[test]
fn built_in_plugin_options() {
    let quiet = |hook: Value| with_web(json!({ "lifecycle": { "quiet": hook } }));
    let check = |hook: Value| with_web(json!({ "health": { "check": hook } }));
    let matcher = |hook: Value| with_root(json!({ "legacyTakeover": { "matchers": [hook] } }));
    check_cases(vec![
        (
            quiet(json!({"plugin": "command"})),
            "processes[0].lifecycle.quiet.command must be a non-empty string",
        ),
        (
            quiet(json!({"plugin": "signal", "signal": "SIGBOGUS"})),
            "processes[0].lifecycle.quiet.signal must be a valid signal name",
        ),
        (
            quiet(json!({"plugin": "signal", "sginal": "TSTP"})),
            "processes[0].lifecycle.quiet.sginal is not a known key",
        ),
        (
            quiet(json!({"plugin": "wait-exit", "timeout": 5})),
            "processes[0].lifecycle.quiet.timeout is not a known key",
        ),
        (
            check(json!({"plugin": "http", "port": 0})),
            "processes[0].health.check.port must be a port number between 1 and 65535",
        ),
        (
            check(json!({"plugin": "http", "path": 5})),
            "processes[0].health.check.path must be a string",
        ),
        (
            check(json!({"plugin": "tcp", "host": ["a"]})),
            "processes[0].health.check.host must be a string",
        ),
        (
            check(json!({"plugin": "command", "command": ""})),
            "processes[0].health.check.command must be a non-empty string",
        ),
        (
            matcher(json!({"plugin": "cmdline", "includes": []})),
            "legacyTakeover.matchers[0].includes must be a non-empty string or list of strings",
        ),
        (
            matcher(json!({"plugin": "screen"})),
            "legacyTakeover.matchers[0].name must be a non-empty string or list of strings",
        ),
    ]);
    // Accepted forms.
    assert_valid(&quiet(json!({"plugin": "signal", "signal": "tstp"})));
    assert_valid(&quiet(json!({"plugin": "signal"})));
    assert_valid(&check(
        json!({"plugin": "http", "host": "::1", "port": 8080, "path": "/up"}),
    ));
    assert_valid(&matcher(json!({"plugin": "screen", "name": "shop"})));
    assert_valid(&matcher(
        json!({"plugin": "cmdline", "includes": ["puma", "shop"]}),
    ));
}

#[test]
fn lua_function_markers_from_json_are_not_functions() {
    // Only ids registered by a Lua runtime count; JSON cannot forge a function.
    let marker = rollbridge::config::markers::lua_function(1);
    let config = with_web(json!({ "lifecycle": { "quiet": marker } }));
    assert_issue(
        &config,
        "processes[0].lifecycle.quiet must be a command string, a Lua function, a plugin table or a Lua script table",
    );
}

#[test]
fn plugins_section() {
    check_cases(vec![
        (
            with_root(json!({"plugins": 5})),
            "plugins must be an object",
        ),
        (
            with_root(json!({"plugins": {"native": "lib.so"}})),
            "plugins.native must be an array",
        ),
        (
            with_root(json!({"plugins": {"native": [""]}})),
            "plugins.native[0] must be a non-empty string",
        ),
        (
            with_root(json!({"plugins": {"native": ["libs/libnope.so"]}})),
            "plugins.native[0] file /srv/shop/libs/libnope.so does not exist",
        ),
        (
            with_root(json!({"plugins": {"natives": []}})),
            "plugins.natives is not a known key",
        ),
    ]);
}

#[test]
fn unknown_keys_name_the_path_and_suggest_the_closest_key() {
    let cases = [
        (
            with_web(json!({"helth": {}})),
            "processes[0].helth",
            Some("health"),
        ),
        (
            with_root(json!({"proces": []})),
            "proces",
            Some("processes"),
        ),
        (
            with_root(json!({"proxy": {"prot": 1}})),
            "proxy.prot",
            Some("port"),
        ),
        (
            with_web(json!({"lifecycle": {"drainTimeout": 5}})),
            "processes[0].lifecycle.drainTimeout",
            Some("drainTimeoutMs"),
        ),
        (
            with_web(json!({"port": {"from": 18000, "too": 18099}})),
            "processes[0].port.too",
            Some("to"),
        ),
        (with_root(json!({"zzzzzz": 1})), "zzzzzz", None),
    ];
    for (config, key, suggestion) in cases {
        let report = report(&config);
        let issue = report
            .issues
            .iter()
            .find(|issue| issue.message == format!("{key} is not a known key"))
            .unwrap_or_else(|| panic!("no unknown-key issue for {key}: {:#?}", report.issues));
        match suggestion {
            Some(suggestion) => assert!(
                issue
                    .fix
                    .contains(&format!("Did you mean \"{suggestion}\"?")),
                "{}",
                issue.fix
            ),
            None => assert!(
                issue.fix.contains("keys accepted here are"),
                "{}",
                issue.fix
            ),
        }
    }
}

#[test]
fn native_plugins_are_checked_by_the_inspector_and_add_plugin_names() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "libgood.so", "not really a library");
    write(dir.path(), "libbad.so", "not really a library");
    let mut ctx = ValidationContext::for_dir(dir.path());
    ctx.native_inspector = Some(Arc::new(|path: &std::path::Path| {
        if path.ends_with("libgood.so") {
            Ok(vec![(HookKind::Lifecycle, "queue-drain".to_string())])
        } else {
            Err("wrong ABI version 7 (expected 1)".to_string())
        }
    }));
    let hook = json!({"drain": {"plugin": "queue-drain", "queue": "mail"}, "drainTimeoutMs": 100});
    let good = with_root(json!({"plugins": {"native": ["libgood.so"]}}));
    let mut good = good;
    merge(&mut good["processes"][0], json!({ "lifecycle": hook }));
    let report = validate_value(&good, &ctx);
    assert!(report.issues.is_empty(), "{:#?}", report.issues);
    let config = report.config.unwrap();
    assert_eq!(config.plugins.native, vec![dir.path().join("libgood.so")]);

    let bad = with_root(json!({"plugins": {"native": ["libbad.so"]}}));
    let messages: Vec<String> = validate_value(&bad, &ctx)
        .issues
        .into_iter()
        .map(|issue| issue.message)
        .collect();
    assert_eq!(
        messages,
        vec!["plugins.native[0] could not be loaded: wrong ABI version 7 (expected 1)"]
    );

    // Without the library the plugin name is unknown.
    let mut without = base();
    merge(&mut without["processes"][0], json!({ "lifecycle": hook }));
    assert_issue(
        &without,
        "processes[0].lifecycle.drain uses unknown lifecycle plugin \"queue-drain\"",
    );
}

#[test]
fn known_plugins_can_be_replaced() {
    let mut ctx = context();
    let mut plugins = KnownPlugins::empty();
    plugins.add(HookKind::Health, "grpc");
    ctx.plugins = plugins;
    let config =
        with_web(json!({"health": {"check": {"plugin": "grpc"}}, "lifecycle": {"quiet": "x"}}));
    let messages: Vec<String> = validate_value(&config, &ctx)
        .issues
        .into_iter()
        .map(|i| i.message)
        .collect();
    // Without a `command` lifecycle plugin, a string is not a lifecycle hook.
    assert_eq!(
        messages,
        vec![
            "processes[0].lifecycle.quiet must be a Lua function, a plugin table or a Lua script table"
        ]
    );
}

#[test]
fn a_wrong_typed_field_gives_exactly_one_issue() {
    for extra in [
        json!({"cwd": 5}),
        json!({"env": 5}),
        json!({"health": 5}),
        json!({"lifecycle": 5}),
        json!({"memory": 5}),
        json!({"restart": 5}),
        json!({"stopSignal": 5}),
        json!({"outputLines": "50"}),
    ] {
        let issues = messages(&with_web(extra.clone()));
        assert_eq!(issues.len(), 1, "{extra}: {issues:?}");
    }
}

#[test]
fn issues_come_out_in_the_documented_order() {
    let config = json!({
        "application": 1,
        "proxy": {"host": 1, "port": "x"},
        "control": {"path": 1, "mode": "x"},
        "processes": [
            {"id": "web", "policy": "proxied", "command": 1, "stopSignal": "SIGBOGUS", "port": {"from": 18000, "to": 18099}},
            {"id": "web", "command": "x", "cwd": 1}
        ],
        "legacyTakeover": {},
        "releaseRetention": {"keep": -1},
        "statePath": 1,
        "plugins": 1
    });
    assert_eq!(
        messages(&config),
        vec![
            "application must be a string",
            "proxy.host must be a string",
            "proxy.port must be a number",
            "control.mode must be an octal file mode between 0 and 0o777",
            "control.path must be a string",
            "processes[0].command must be a string",
            "processes[0].stopSignal must be a valid signal name",
            "processes[1].cwd must be a string",
            "legacyTakeover must define at least one screen or process matcher",
            "releaseRetention.keep must be a non-negative integer",
            "statePath must be a string",
            "plugins must be an object",
            "Duplicate process id: web",
        ]
    );
}

#[test]
fn fixes_mention_what_the_old_tests_looked_for() {
    let report = report(&with_web(json!({"port": null})));
    let issue = report
        .issues
        .iter()
        .find(|i| i.message == "Proxied process web must define a port range")
        .unwrap();
    assert!(
        issue
            .fix
            .starts_with("Add a port range to the proxied process \"web\"")
    );
    let report = self::report(&with_web(json!({"outputLines": 0})));
    assert!(report.issues[0].fix.contains("positive integer"));
}
