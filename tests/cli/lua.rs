//! A Lua matcher through the real binary: `predeploy-cleanup` stops the legacy
//! process tree a Lua matcher selects, and nothing else.

use crate::support::cli::*;
use serde_json::json;
use std::time::Duration;

/// The pids of the children of `parent`.
fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let ppid: i32 = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

#[test]
fn predeploy_cleanup_stops_the_tree_a_lua_matcher_selects() {
    let legacy_dir = tempfile::Builder::new()
        .prefix("rb-legacy-app-")
        .tempdir()
        .unwrap();
    let legacy_root = legacy_dir.path().canonicalize().unwrap();
    let root = legacy_root.to_string_lossy().into_owned();
    let sandbox = Sandbox::with("lua-legacy-test", |config| {
        config["legacyTakeover"] = json!({
            "forceStopTimeoutMs": 2000,
            "matchers": [{"lua": "legacy.lua", "fn": "old_app", "root": root}]
        });
    });
    // The matcher: anything whose working directory is inside the old checkout.
    std::fs::write(
        sandbox.path().join("legacy.lua"),
        r#"local match = require("rollbridge.match")
           local M = {}
           function M.old_app(proc, ctx)
             return match.test(proc, { cwdUnder = ctx.options.root })
           end
           return M"#,
    )
    .unwrap();
    let script = format!("cd {root} || exit 1; sleep 300 & sleep 300 & wait");
    let mut legacy = GroupGuard::spawn_shell(&script);
    // The shell, its two sleeps: all in the old checkout.
    let shell = legacy.pid();
    wait_until(
        Duration::from_secs(10),
        "the shell's two children to start",
        || children_of(shell).len() == 2,
    );
    let sleeps = children_of(shell);
    // A bystander elsewhere must survive.
    let mut bystander = GroupGuard::spawn_sleep(&["300"]);

    let run = sandbox.run("predeploy-cleanup", &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.ends_with("Stopped 3 legacy processes.\n"),
        "{run:?}"
    );
    for pid in sleeps {
        wait_until(Duration::from_secs(5), "the process to exit", || {
            !pid_alive(pid)
        });
    }
    wait_until(Duration::from_secs(5), "the legacy process to exit", || {
        !legacy.running()
    });
    assert!(bystander.running());
}
