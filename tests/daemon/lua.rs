//! Lua hooks through the real `rollbridge daemon` binary: lifecycle hooks during
//! a deploy's drain, a Lua health check gating a deploy, and edited hooks picked
//! up by the reload before each deploy.

use crate::support::daemon::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// A Lua string literal.
fn lua_string(text: &str) -> String {
    format!("{text:?}")
}

/// A harness whose config is the Lua source `build(dir, proxy_port)` returns.
fn lua_harness(build: impl FnOnce(&Path, u16) -> String) -> Harness {
    let mut harness = Harness::new(base_config);
    let source = build(harness.dir.path(), harness.proxy_port);
    let path = harness.path("rollbridge.lua");
    std::fs::write(&path, source).unwrap();
    harness.config_path = path;
    harness
}

/// A Lua config like the JSON base config, with `web_extra` added to the web
/// process and `more` appended to the process list. `dir` is a Lua local.
fn lua_config(dir: &Path, port: u16, web_extra: &str, more: &str) -> String {
    format!(
        r#"local dir = {dir}
return {{
  application = "rollbridge-test",
  control = {{ path = dir .. "/control.sock" }},
  proxy = {{ host = "127.0.0.1", port = {port}, healthTimeoutMs = 10000,
            drainTimeoutMs = 5000, forceStopTimeoutMs = 3000 }},
  processes = {{
    {{ id = "web", policy = "proxied", command = {web},
      port = {{ from = 0, to = 0 }},
      health = {{ path = "/ping", timeoutMs = 10000, intervalMs = 50 }},
      {web_extra} }},
    {more}
  }},
}}
"#,
        dir = lua_string(&dir.to_string_lossy()),
        web = lua_string(&python("app.py")),
    )
}

fn worker_command(dir: &Path) -> String {
    format!(
        "exec python3 {} {}/marks-{{{{releaseId}}}}",
        fixture("lua/worker.py"),
        dir.display()
    )
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn events_named(harness: &Harness, message: &str) -> Vec<Value> {
    harness
        .output()
        .events()
        .into_iter()
        .filter(|e| e["message"] == message)
        .collect()
}

#[test]
fn quiet_and_drain_hooks_run_in_order_before_the_stop_signal_during_a_deploy() {
    let mut harness = lua_harness(|dir, port| {
        let worker = format!(
            r#"{{ id = "worker", policy = "companion", command = {command}, gracefulStopMs = 5000,
                 lifecycle = {{
                   quiet = function(ctx) ctx:signal("TSTP") end,
                   drain = function(ctx)
                     local marker = dir .. "/drained-" .. ctx.process.releaseId
                     repeat ctx:sleep(20) until ctx:file_exists(marker)
                     ctx:event("worker drained", {{ marker = marker }})
                   end,
                   drainTimeoutMs = 20000,
                 }} }},"#,
            command = lua_string(&worker_command(dir))
        );
        lua_config(dir, port, "", &worker)
    });
    harness.start();
    harness.deploy("r1");
    let marks = harness.path("marks-r1");
    wait_until(PATIENCE, "the r1 worker to be ready", || {
        read_lines(&marks).contains(&"ready".to_string())
    });
    harness.deploy("r2");
    wait_until(PATIENCE, "the quiet hook's TSTP", || {
        read_lines(&marks).contains(&"SIGTSTP".to_string())
    });
    // The drain hook waits for its marker: no stop signal yet.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read_lines(&marks), vec!["ready", "SIGTSTP"]);
    assert_eq!(
        harness.process_in("r1", "worker").unwrap()["state"],
        "stopping"
    );
    std::fs::write(harness.path("drained-r1"), "").unwrap();
    wait_until(PATIENCE, "r1 to stop", || {
        harness.release_status("r1").unwrap()["state"] == "stopped"
    });
    assert_eq!(read_lines(&marks), vec!["ready", "SIGTSTP", "SIGTERM"]);
    let drained = events_named(&harness, "worker drained");
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0]["data"]["processId"], "worker");
    assert_eq!(drained[0]["data"]["releaseId"], "r1");
    assert!(events_named(&harness, "hook failed").is_empty());
    // The new release's worker was left alone.
    assert_eq!(read_lines(&harness.path("marks-r2")), vec!["ready"]);
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn a_lua_health_check_gates_the_deploy() {
    let mut harness = lua_harness(|dir, port| {
        let web = r#"health = { timeoutMs = 5000, intervalMs = 50, check = function(ctx)
            local answer = ctx:http("GET", "http://127.0.0.1:" .. ctx.process.port .. "/ping", { timeoutMs = 1000 })
            if answer.status ~= 200 then return false, "ping answered " .. answer.status end
            if not ctx:file_exists(dir .. "/gate-" .. ctx.process.releaseId) then
              return false, "the gate of " .. ctx.process.releaseId .. " is closed"
            end
            return true
          end }"#;
        // `health` given twice would be a Lua syntax error; replace the base one.
        lua_config(dir, port, "", "").replace(
            "health = { path = \"/ping\", timeoutMs = 10000, intervalMs = 50 },\n      ",
            &format!("{web},\n      "),
        )
    });
    harness.start();
    std::fs::write(harness.path("gate-r1"), "").unwrap();
    harness.deploy("r1");
    assert_eq!(harness.get("/release"), (200, "r1".to_string()));
    let error = harness.deploy_err("r2");
    assert!(error.contains("the gate of r2 is closed"), "{error}");
    assert_eq!(harness.get("/release"), (200, "r1".to_string()));
    assert_eq!(harness.release_status("r1").unwrap()["state"], "active");
    let failed = events_named(&harness, "deploy failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["releaseId"], "r2");
    assert!(
        failed[0]["data"]["error"]
            .as_str()
            .unwrap()
            .contains("the gate of r2 is closed")
    );
    std::fs::write(harness.path("gate-r3"), "").unwrap();
    harness.deploy("r3");
    assert_eq!(harness.get("/release"), (200, "r3".to_string()));
    assert_eq!(harness.shutdown(), 0);
}

/// A config whose hooks report `version`; `extra_hooks` adds hook functions
/// ahead of the worker's (so the functions of the two versions are numbered
/// differently inside rollbridge).
fn versioned_config(dir: &Path, port: u16, version: &str, extra_hooks: bool) -> String {
    let web = if extra_hooks {
        format!(r#"lifecycle = {{ quiet = function(ctx) ctx:event("web quiet {version}") end }}"#)
    } else {
        String::new()
    };
    let worker = format!(
        r#"{{ id = "worker", policy = "companion", command = "exec sleep 1000",
             lifecycle = {{ quiet = function(ctx) ctx:event("worker quiet {version}") end }} }},"#
    );
    lua_config(dir, port, &web, &worker)
}

#[test]
fn a_deploy_picks_up_edited_hooks() {
    let mut harness = lua_harness(|dir, port| versioned_config(dir, port, "v1", false));
    harness.start();
    harness.deploy("r1");
    let edited = versioned_config(harness.dir.path(), harness.proxy_port, "v2", true);
    std::fs::write(&harness.config_path, edited).unwrap();
    harness.deploy("r2");
    wait_until(PATIENCE, "r1 to stop", || {
        harness.release_status("r1").unwrap()["state"] == "stopped"
    });
    // r1 retires with the reloaded config's hooks.
    let quiet = events_named(&harness, "worker quiet v2");
    assert_eq!(quiet.len(), 1, "{:?}", harness.output().lines());
    assert_eq!(quiet[0]["data"]["releaseId"], "r1");
    assert_eq!(events_named(&harness, "web quiet v2").len(), 1);
    assert!(events_named(&harness, "worker quiet v1").is_empty());
    assert!(events_named(&harness, "hook failed").is_empty());
    harness.deploy("r3");
    wait_until(PATIENCE, "r2 to stop", || {
        harness.release_status("r2").unwrap()["state"] == "stopped"
    });
    let quiet = events_named(&harness, "worker quiet v2");
    assert_eq!(quiet.len(), 2);
    assert_eq!(quiet[1]["data"]["releaseId"], "r2");
    assert_eq!(harness.shutdown(), 0);
}

#[test]
fn the_proxy_keeps_serving_while_a_lua_hook_burns_cpu() {
    let mut harness = lua_harness(|dir, port| lua_config(dir, port, "", ""));
    harness.start();
    harness.deploy("r1");
    // r2's health check computes until its probe deadline, every time.
    let spinning = lua_config(harness.dir.path(), harness.proxy_port, "", "").replace(
        "health = { path = \"/ping\", timeoutMs = 10000, intervalMs = 50 },\n      ",
        "health = { timeoutMs = 2000, intervalMs = 10, check = function(ctx) while true do end end },\n      ",
    );
    std::fs::write(&harness.config_path, spinning).unwrap();
    let socket = harness.socket.clone();
    let release = harness.release("r2");
    let deploy = std::thread::spawn(move || {
        control(
            &socket,
            json!({"command": "deploy", "releasePath": release, "releaseId": "r2"}),
        )
    });
    wait_until(PATIENCE, "r2's health checks to start", || {
        harness
            .status()
            .get("deploying")
            .is_some_and(|d| !d.is_null())
    });
    for _ in 0..20 {
        assert_eq!(harness.get("/release"), (200, "r1".to_string()));
    }
    let reply = deploy.join().unwrap();
    assert_eq!(reply["status"], "error");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("timed out after"), "{error}");
    assert_eq!(harness.get("/release"), (200, "r1".to_string()));
    assert_eq!(harness.shutdown(), 0);
}
