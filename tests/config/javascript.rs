//! Legacy JavaScript configs, evaluated through `node` (skipped when node is absent).

use crate::support::config::*;
use rollbridge::config::load;

const CONFIG_BODY: &str = r#"{
  proxy: { port: 8182 },
  processes: [{ id: "web", policy: "proxied", command: "node app.js", port: { from: 18000, to: 18099 } }],
}"#;

#[test]
fn default_exports_objects_and_functions_sync_or_async() {
    if !node_available("default_exports_objects_and_functions_sync_or_async") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sources = [
        ("esm-object.mjs", format!("export default {CONFIG_BODY};")),
        (
            "esm-function.mjs",
            format!("export default function () {{ return {CONFIG_BODY}; }}"),
        ),
        (
            "esm-async.mjs",
            format!(
                "export default async () => {{ await new Promise(r => setTimeout(r, 5)); return {CONFIG_BODY}; }};"
            ),
        ),
        ("cjs-object.cjs", format!("module.exports = {CONFIG_BODY};")),
        (
            "cjs-function.js",
            format!(
                "module.exports = function () {{ console.log('noise on stdout'); return {CONFIG_BODY}; }};"
            ),
        ),
    ];
    let mut configs = Vec::new();
    for (name, source) in sources {
        let path = write(dir.path(), name, &source);
        let loaded = load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(loaded.lua.is_none());
        configs.push(loaded.config);
    }
    assert!(configs.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(configs[0].processes[0].command, "node app.js");
}

#[test]
fn a_module_without_a_default_export_is_named_by_its_absolute_path() {
    if !node_available("a_module_without_a_default_export_is_named_by_its_absolute_path") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "named.mjs", "export const config = {};");
    let error = load(&path).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "Config module {} must export a default config object or function",
            dir.path().join("named.mjs").display()
        )
    );
}

#[test]
fn functions_inside_the_config_are_refused_with_their_paths() {
    if !node_available("functions_inside_the_config_are_refused_with_their_paths") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "hooks.mjs",
        r#"export default {
  proxy: {},
  processes: [{ id: "web", policy: "proxied", command: "x", port: 0,
    lifecycle: { quiet: () => {}, drain: function () {} } }],
};"#,
    );
    let report = rollbridge::config::check(&path);
    assert_eq!(report.issues.len(), 1);
    let issue = &report.issues[0];
    assert!(
        issue.message.ends_with(
            "holds JavaScript functions, which rollbridge cannot use: processes[0].lifecycle.quiet, processes[0].lifecycle.drain"
        ),
        "{}",
        issue.message
    );
    assert!(issue.fix.contains("Lua"), "{}", issue.fix);
}

#[test]
fn errors_in_the_module_are_one_line() {
    if !node_available("errors_in_the_module_are_one_line") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let syntax = write(
        dir.path(),
        "syntax.mjs",
        "export default {\n  proxy: {,\n};",
    );
    let error = load(&syntax).unwrap_err().to_string();
    assert!(
        error.contains("syntax.mjs") && error.contains("SyntaxError"),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");

    let throws = write(
        dir.path(),
        "throws.mjs",
        "export default () => { throw new Error('no secrets file'); };",
    );
    let error = load(&throws).unwrap_err().to_string();
    assert!(
        error.ends_with("threw an error: Error: no secrets file"),
        "{error}"
    );

    let cycle = write(
        dir.path(),
        "cycle.mjs",
        "const c = { proxy: {} }; c.proxy.back = c; export default c;",
    );
    let error = load(&cycle).unwrap_err().to_string();
    assert!(error.ends_with("refers to itself at proxy.back"), "{error}");
}

#[test]
fn values_json_cannot_hold_are_validated_like_other_formats() {
    if !node_available("values_json_cannot_hold_are_validated_like_other_formats") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "nan.mjs",
        r#"export default { proxy: { port: NaN, healthTimeoutMs: undefined }, processes: [{ id: "web", policy: "proxied", command: "x", port: { from: 18000, to: Infinity } }] };"#,
    );
    assert_eq!(
        check_messages(&path),
        vec![
            "proxy.port must be a number".to_string(),
            "processes[0].port must be a positive port or valid {from, to} range".to_string(),
        ]
    );
}

#[test]
fn an_edited_module_is_read_again() {
    if !node_available("an_edited_module_is_read_again") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = |command: &str| {
        format!(
            "module.exports = {{ proxy: {{}}, processes: [{{ id: 'web', policy: 'proxied', command: '{command}', port: 0 }}] }};"
        )
    };
    let path = write(dir.path(), "rollbridge.js", &config("one"));
    assert_eq!(load(&path).unwrap().config.processes[0].command, "one");
    write(dir.path(), "rollbridge.js", &config("two"));
    assert_eq!(load(&path).unwrap().config.processes[0].command, "two");
}
