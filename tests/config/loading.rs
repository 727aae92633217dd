//! Finding and loading config files; every failure is one clear line.

use crate::support::config::*;
use rollbridge::config::{
    self, ConfigError, LoadOptions, MAX_CONFIG_BYTES, load, load_with, resolve_config_path,
};
use std::path::{Path, PathBuf};

#[test]
fn an_explicit_path_is_used_as_given() {
    let path =
        resolve_config_path(Some(Path::new("relative/none.lua")), Path::new("/nowhere")).unwrap();
    assert_eq!(path, PathBuf::from("relative/none.lua"));
}

#[test]
fn default_files_are_found_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let error = resolve_config_path(None, dir.path()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "No config file found in {}. Pass --config <path> or add one of: rollbridge.lua, rollbridge.json, rollbridge.js.",
            dir.path().display()
        )
    );
    // A directory with a config's name is not a config file.
    std::fs::create_dir(dir.path().join("rollbridge.lua")).unwrap();
    assert!(resolve_config_path(None, dir.path()).is_err());

    write(dir.path(), "rollbridge.js", "module.exports = {}");
    assert_eq!(
        resolve_config_path(None, dir.path()).unwrap(),
        dir.path().join("rollbridge.js")
    );
    write(dir.path(), "rollbridge.json", "{}");
    assert_eq!(
        resolve_config_path(None, dir.path()).unwrap(),
        dir.path().join("rollbridge.json")
    );
    std::fs::remove_dir(dir.path().join("rollbridge.lua")).unwrap();
    write(dir.path(), "rollbridge.lua", "return {}");
    assert_eq!(
        resolve_config_path(None, dir.path()).unwrap(),
        dir.path().join("rollbridge.lua")
    );
}

#[test]
fn load_returns_the_config_and_the_path_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "rollbridge.json", &minimal_json());
    let loaded = load(&path).unwrap();
    assert_eq!(loaded.path, path);
    assert!(loaded.lua.is_none());
    assert_eq!(loaded.config.processes.len(), 1);
    let folder = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(loaded.config.application, folder);
    assert_eq!(
        loaded.config.control.path,
        format!("/tmp/rollbridge-{folder}.sock")
    );
}

#[test]
fn an_invalid_config_lists_every_issue_one_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "rollbridge.json",
        r#"{"proxy": {}, "processes": [
            {"id": "web", "policy": "proxied", "command": "a", "port": {"from": 1, "to": 9}},
            {"id": "web", "policy": "proxied", "command": "b", "port": {"from": 10, "to": 19}}
        ]}"#,
    );
    let error = load(&path).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Invalid Rollbridge config:\n  - Duplicate process id: web\n  - Config must define exactly one proxied process; found 2"
    );
    assert!(matches!(error, ConfigError::Invalid(ref issues) if issues.len() == 2));
}

#[test]
fn load_errors_are_single_line_issues_in_check() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (dir.path().join("missing.json"), "the file does not exist"),
        (
            write(dir.path(), "broken.json", "{\n  \"proxy\": {,\n}"),
            "is not valid JSON: ",
        ),
        (
            write(dir.path(), "config.yaml", "proxy: {}"),
            "Unsupported config file type",
        ),
        (
            dir.path().to_path_buf().join("folder.json"),
            "it is a directory",
        ),
    ];
    std::fs::create_dir(dir.path().join("folder.json")).unwrap();
    for (path, expected) in cases {
        let report = config::check(&path);
        assert_eq!(report.issues.len(), 1, "{path:?}: {:?}", report.issues);
        let issue = &report.issues[0];
        assert!(
            issue.message.contains(expected),
            "{path:?}: {}",
            issue.message
        );
        assert!(
            issue.message.contains(&path.display().to_string()),
            "{}",
            issue.message
        );
        assert!(!issue.message.contains('\n'), "{}", issue.message);
        assert!(!issue.fix.is_empty());
        assert!(report.config.is_none());
    }
    let report = config::check(&dir.path().join("broken.json"));
    assert!(
        report.issues[0].message.contains("line 2"),
        "{}",
        report.issues[0].message
    );
}

#[test]
fn non_utf8_and_huge_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join("latin1.json");
    std::fs::write(&latin1, b"{\"application\": \"caf\xe9\"}").unwrap();
    let messages = check_messages(&latin1);
    assert!(
        messages[0].ends_with("it is not UTF-8 text"),
        "{messages:?}"
    );

    for name in ["huge.json", "huge.lua"] {
        let path = dir.path().join(name);
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_CONFIG_BYTES + 1).unwrap();
        let messages = check_messages(&path);
        assert_eq!(messages.len(), 1);
        assert!(messages[0].contains("larger than 16 MiB"), "{messages:?}");
        assert!(messages[0].contains(name));
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let path = write(dir.path(), "deep.json", &nested);
    let messages = check_messages(&path);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("is not valid JSON"), "{messages:?}");
}

#[test]
fn the_three_example_formats_give_the_same_config() {
    let root = repo_root().join("examples");
    let from_lua = load(&root.join("rollbridge.lua")).unwrap();
    let from_json = load(&root.join("rollbridge.json")).unwrap();
    assert_eq!(from_lua.config, from_json.config);
    assert_eq!(from_json.config.application, "acme-shop");
    assert_eq!(from_json.config.processes.len(), 4);
    let ids: Vec<&str> = from_json
        .config
        .processes
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(ids, ["cache", "web", "worker", "scheduler"]);
    // Templates are kept as written: they are rendered per release.
    assert_eq!(
        from_json.config.process("web").unwrap().env[1],
        (
            "CACHE_URL".to_string(),
            "http://127.0.0.1:{{ports.cache}}".to_string()
        )
    );
    if node_available("the_three_example_formats_give_the_same_config (JS part)") {
        let from_js = load(&root.join("rollbridge.js")).unwrap();
        assert_eq!(from_js.config, from_json.config);
    }
}

#[test]
fn lua_limits_can_be_tightened_through_load_options() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "rollbridge.lua", "while true do end");
    let options = LoadOptions {
        lua_limits: rollbridge::lua::Limits {
            time: std::time::Duration::from_millis(100),
            ..Default::default()
        },
        ..Default::default()
    };
    let error = load_with(&path, &options).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("Lua config {} did not finish within 100 ms", path.display())
    );
}

#[test]
fn a_config_loads_from_text_read_earlier_even_when_the_file_changed() {
    // What a live upgrade's fallback does (docs/upgrade.md): the previous
    // binary loads the text checked before the exec, whatever the file is now.
    let root = repo_root().join("examples");
    for name in ["rollbridge.lua", "rollbridge.json"] {
        let dir = tempfile::tempdir().unwrap();
        let original = std::fs::read_to_string(root.join(name)).unwrap();
        let path = write(dir.path(), name, "this is not a config");
        assert!(load(&path).is_err());
        let from_text = config::load_source(&path, original).unwrap();
        assert_eq!(from_text.config, load(&root.join(name)).unwrap().config);
        assert_eq!(from_text.path, path);
        std::fs::remove_file(&path).unwrap();
        let source = std::fs::read_to_string(root.join(name)).unwrap();
        assert!(
            config::load_source(&path, source).is_ok(),
            "{name} without its file"
        );
    }
}
