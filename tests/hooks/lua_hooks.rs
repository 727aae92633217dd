//! Lua hooks end to end below the daemon: configs loaded from disk, the Lua
//! provider in a registry, hooks called against real process groups, real
//! commands and real sockets.

use crate::support::lua::*;
use rollbridge::plugins::{HealthVerdict, HookError, Stage};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn ctx_describes_the_process_stage_and_options() {
    let world = World::new();
    let loaded = world.lua_config(&config_with(
        "",
        r#"lifecycle = { quiet = { fn = function(ctx)
            local p = ctx.process
            local n = 0
            for _ in pairs(ctx.options) do n = n + 1 end
            ctx:event("seen", {
              id = p.id, instanceId = p.instanceId, pid = p.pid, pgid = p.pgid,
              releaseId = p.releaseId, releasePath = p.releasePath, revision = p.revision,
              port = p.port, policy = p.policy, replicaIndex = p.replicaIndex,
              replicaCount = p.replicaCount, mode = p.env.APP_MODE, stage = ctx.stage,
              flavour = ctx.options.flavour, optionCount = n,
            })
          end, flavour = "mint" } }"#,
    ));
    let registry = registry(&loaded);
    let spec = lifecycle_spec(&loaded, 0, Stage::Quiet);
    let hook = registry.lifecycle(&spec, Stage::Quiet).unwrap();
    let mut call = world.call(Stage::Quiet, world.process(None), Duration::from_secs(5));
    call.options = spec.options();
    hook.run(call).await.unwrap();
    let seen = world.events_named("seen");
    assert_eq!(seen.len(), 1);
    let data = serde_json::Value::Object(seen[0].data.clone());
    assert_eq!(data["processId"], "worker#1");
    assert_eq!(data["releaseId"], "r42");
    assert_eq!(data["id"], "worker");
    assert_eq!(data["instanceId"], "worker#1");
    assert_eq!(data["revision"], "abc123");
    assert_eq!(data["port"], 4100);
    assert_eq!(data["policy"], "companion");
    assert_eq!(data["replicaIndex"], 1);
    assert_eq!(data["replicaCount"], 3);
    assert_eq!(data["mode"], "test");
    assert_eq!(data["stage"], "quiet");
    assert_eq!(data["flavour"], "mint");
    assert_eq!(data["optionCount"], 1);
    assert!(
        data.get("pid").is_none(),
        "no pid without a running process"
    );
    assert_eq!(
        data["releasePath"],
        json!(world.dir.path().to_string_lossy())
    );
}

#[tokio::test]
async fn an_endless_loop_is_interrupted_at_the_deadline() {
    let world = World::new();
    let loaded = world.lua_config(&config_with(
        "",
        r#"lifecycle = { quiet = function(ctx) while true do end end }"#,
    ));
    let registry = registry(&loaded);
    let spec = lifecycle_spec(&loaded, 0, Stage::Quiet);
    let hook = registry.lifecycle(&spec, Stage::Quiet).unwrap();
    let call = world.call(
        Stage::Quiet,
        world.process(None),
        Duration::from_millis(300),
    );
    let outcome = tokio::time::timeout(PATIENCE, hook.run(call))
        .await
        .unwrap();
    assert_eq!(outcome, Err(HookError::TimedOut(300)));
}

#[tokio::test]
async fn a_health_hook_answers_true_or_false_with_a_detail() {
    let world = World::new();
    let loaded = world.lua_config(&config_with(
        "local calls = 0",
        r#"health = { check = function(ctx)
            calls = calls + 1
            if calls < 3 then return false, "warming up " .. calls end
            return true
          end }"#,
    ));
    let registry = registry(&loaded);
    let spec = health_spec(&loaded, 0);
    let hook = registry.health(&spec).unwrap();
    let probe = || world.call(Stage::Health, world.process(None), Duration::from_secs(5));
    assert_eq!(
        hook.probe(probe()).await,
        Ok(HealthVerdict::NotYet("warming up 1".into()))
    );
    assert_eq!(
        hook.probe(probe()).await,
        Ok(HealthVerdict::NotYet("warming up 2".into()))
    );
    assert_eq!(hook.probe(probe()).await, Ok(HealthVerdict::Healthy));
}

// ---------------------------------------------------------------------------
// bounds, errors, memory

async fn run_quiet(
    world: &World,
    prelude: &str,
    hook: &str,
    bound: Duration,
) -> Result<(), HookError> {
    let loaded = world.lua_config(&config_with(
        prelude,
        &format!("lifecycle = {{ quiet = {hook} }}"),
    ));
    let registry = registry(&loaded);
    let spec = lifecycle_spec(&loaded, 0, Stage::Quiet);
    let plugin = registry.lifecycle(&spec, Stage::Quiet).unwrap();
    let mut call = world.call(Stage::Quiet, world.process(None), bound);
    call.options = spec.options();
    tokio::time::timeout(PATIENCE, plugin.run(call))
        .await
        .expect("the hook ends by its deadline")
}

#[tokio::test]
async fn a_loop_that_catches_errors_is_still_interrupted() {
    let world = World::new();
    let outcome = run_quiet(
        &world,
        "",
        r#"function(ctx)
            while true do
              pcall(function() while true do end end)
              local co = coroutine.create(function() while true do end end)
              coroutine.resume(co)
            end
          end"#,
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(outcome, Err(HookError::TimedOut(300)));
}

#[tokio::test]
async fn a_hook_waiting_past_its_bound_times_out() {
    let world = World::new();
    let outcome = run_quiet(
        &world,
        "",
        "function(ctx) ctx:sleep(60000) end",
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(outcome, Err(HookError::TimedOut(200)));
}

#[tokio::test]
async fn a_lua_error_fails_the_hook_with_its_message() {
    let world = World::new();
    let outcome = run_quiet(
        &world,
        "",
        "function(ctx)\n  error(\"queue is jammed\")\nend",
        Duration::from_secs(5),
    )
    .await;
    match outcome {
        Err(HookError::Failed(reason)) => {
            assert!(reason.contains("queue is jammed"), "{reason}");
            assert!(
                reason.contains("rollbridge.lua:"),
                "names the place: {reason}"
            );
            assert!(!reason.contains("traceback"), "{reason}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn lua_memory_is_bounded_and_the_state_survives() {
    let mut world = World::new();
    world.limits.memory_bytes = 16 * 1024 * 1024;
    let loaded = world.lua_config(&config_with(
        "",
        r#"lifecycle = {
            quiet = function(ctx)
              local hoard = {}
              for i = 1, 1e9 do hoard[i] = string.rep("x", 4096) .. i end
            end,
            drain = function(ctx) ctx:event("still fine") end,
            drainTimeoutMs = 1000,
          }"#,
    ));
    let registry = registry(&loaded);
    let quiet = registry
        .lifecycle(&lifecycle_spec(&loaded, 0, Stage::Quiet), Stage::Quiet)
        .unwrap();
    let call = world.call(Stage::Quiet, world.process(None), Duration::from_secs(10));
    match quiet.run(call).await {
        Err(HookError::Failed(reason)) => {
            assert!(reason.contains("out of memory"), "{reason}");
            assert!(reason.contains("16 MiB"), "{reason}");
        }
        other => panic!("expected a memory failure, got {other:?}"),
    }
    let drain = registry
        .lifecycle(&lifecycle_spec(&loaded, 0, Stage::Drain), Stage::Drain)
        .unwrap();
    let call = world.call(Stage::Drain, world.process(None), Duration::from_secs(5));
    drain.run(call).await.unwrap();
    assert_eq!(world.events_named("still fine").len(), 1);
}

#[tokio::test]
async fn health_errors_and_wrong_answers_are_not_yet() {
    let world = World::new();
    let loaded = world.lua_config(&config_with(
        "local round = 0",
        r#"health = { check = function(ctx)
            round = round + 1
            if round == 1 then error("database not reachable") end
            if round == 2 then return "yes" end
            if round == 3 then return false end
            while true do end
          end }"#,
    ));
    let registry = registry(&loaded);
    let hook = registry.health(&health_spec(&loaded, 0)).unwrap();
    let probe = |ms| {
        world.call(
            Stage::Health,
            world.process(None),
            Duration::from_millis(ms),
        )
    };
    match hook.probe(probe(5000)).await {
        Err(HookError::Failed(reason)) => assert!(reason.contains("database not reachable")),
        other => panic!("{other:?}"),
    }
    match hook.probe(probe(5000)).await {
        Err(HookError::Failed(reason)) => assert_eq!(
            reason,
            "the health hook returned a string; it must return true, or false and a detail"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        hook.probe(probe(5000)).await,
        Ok(HealthVerdict::NotYet(
            "the health hook returned false".into()
        ))
    );
    assert_eq!(hook.probe(probe(200)).await, Err(HookError::TimedOut(200)));
}

// ---------------------------------------------------------------------------
// concurrency

#[tokio::test]
async fn fifty_hooks_run_at_once_on_one_config() {
    let world = World::new();
    // Each hook arrives, then waits until all 50 have arrived. If hooks ran one
    // after the other, the first would wait forever (and time out).
    let loaded = world.lua_config(&config_with(
        "arrived = 0",
        r#"lifecycle = { quiet = function(ctx)
            arrived = arrived + 1
            while arrived < 50 do ctx:sleep(5) end
          end }"#,
    ));
    let registry = registry(&loaded);
    let spec = lifecycle_spec(&loaded, 0, Stage::Quiet);
    let hook = registry.lifecycle(&spec, Stage::Quiet).unwrap();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let call = world.call(Stage::Quiet, world.process(None), PATIENCE);
            tokio::spawn(hook.run(call))
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), Ok(()));
    }
}

#[tokio::test]
async fn a_busy_hook_is_paused_so_others_get_a_turn() {
    let world = World::new();
    // The quiet hook computes until the drain hook sets the flag. Without time
    // slices the drain hook could only run after the quiet hook's deadline.
    let loaded = world.lua_config(&config_with(
        "released = false",
        r#"lifecycle = {
            quiet = function(ctx)
              local spins = 0
              ctx:event("spinning")
              while not released do spins = spins + 1 end
              ctx:event("released after spinning")
            end,
            drain = function(ctx) released = true end,
            drainTimeoutMs = 1000,
          }"#,
    ));
    let registry = registry(&loaded);
    let quiet = registry
        .lifecycle(&lifecycle_spec(&loaded, 0, Stage::Quiet), Stage::Quiet)
        .unwrap();
    let drain = registry
        .lifecycle(&lifecycle_spec(&loaded, 0, Stage::Drain), Stage::Drain)
        .unwrap();
    let busy = tokio::spawn(quiet.run(world.call(Stage::Quiet, world.process(None), PATIENCE)));
    // The quiet hook must be spinning before the drain hook starts.
    eventually("a spinning event", || {
        !world.events_named("spinning").is_empty()
    })
    .await;
    drain
        .run(world.call(Stage::Drain, world.process(None), PATIENCE))
        .await
        .unwrap();
    assert_eq!(busy.await.unwrap(), Ok(()));
    assert_eq!(world.events_named("released after spinning").len(), 1);
}

#[tokio::test]
async fn a_script_coroutine_is_not_cut_short_by_time_slices() {
    let world = World::new();
    // A long computation inside the script's own coroutine must run to its end:
    // pausing it would make coroutine.resume return early.
    let outcome = run_quiet(
        &world,
        "",
        r#"function(ctx)
            local co = coroutine.create(function()
              local x = 0
              for i = 1, 3e7 do x = x + 1 end
              return x
            end)
            local ok, value = coroutine.resume(co)
            if not ok or value ~= 3e7 then error("coroutine was cut short: " .. tostring(value)) end
          end"#,
        PATIENCE,
    )
    .await;
    assert_eq!(outcome, Ok(()));
}

// ---------------------------------------------------------------------------
// the ctx helpers

/// Runs `hook` (Lua source of a function) as the quiet hook of a process acting
/// on `group`.
async fn run_on(
    world: &World,
    group: Option<&Group>,
    hook: &str,
    bound: Duration,
) -> Result<(), HookError> {
    let loaded = world.lua_config(&config_with(
        "",
        &format!("lifecycle = {{ quiet = {hook} }}"),
    ));
    let registry = registry(&loaded);
    let spec = lifecycle_spec(&loaded, 0, Stage::Quiet);
    let plugin = registry.lifecycle(&spec, Stage::Quiet).unwrap();
    let call = world.call(Stage::Quiet, world.process(group), bound);
    tokio::time::timeout(PATIENCE, plugin.run(call))
        .await
        .expect("hook ends")
}

fn event_data(world: &World, message: &str) -> serde_json::Value {
    let events = world.events_named(message);
    assert_eq!(events.len(), 1, "one {message:?} event");
    serde_json::Value::Object(events[0].data.clone())
}

#[tokio::test]
async fn signal_reaches_the_group_with_or_without_the_sig_prefix() {
    let world = World::new();
    let mut group = start_worker(&world, "marks", "").await;
    let outcome = run_on(
        &world,
        Some(&group),
        r#"function(ctx)
            local function seen(name)
              repeat ctx:sleep(10) until (ctx:read_file("marks") or ""):find(name)
            end
            local sent = ctx:signal("TSTP")
            seen("SIGTSTP")
            ctx:signal("sigusr1")
            seen("SIGUSR1")
            ctx:signal("SIGTERM")
            local exited = ctx:wait_exit(10000)
            ctx:event("done", { sent = sent, exited = exited, alive = ctx:alive(),
                                again = ctx:signal("TERM") })
          end"#,
        PATIENCE,
    )
    .await;
    assert_eq!(outcome, Ok(()));
    let data = event_data(&world, "done");
    assert_eq!(data["sent"], true);
    assert_eq!(data["exited"], true);
    assert_eq!(data["alive"], false);
    assert_eq!(data["again"], false, "nothing left to signal");
    assert_eq!(
        read_lines(&world.path("marks")),
        vec!["ready", "SIGTSTP", "SIGUSR1", "SIGTERM"]
    );
    assert!(group.wait_leader().await.is_some());
}

#[tokio::test]
async fn an_unknown_signal_name_raises() {
    let world = World::new();
    let group = start_worker(&world, "marks", "").await;
    let outcome = run_on(
        &world,
        Some(&group),
        r#"function(ctx) ctx:signal("SIGNOPE") end"#,
        PATIENCE,
    )
    .await;
    match outcome {
        Err(HookError::Failed(reason)) => {
            assert!(
                reason.contains("unknown signal name \"SIGNOPE\""),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(pid_alive(group.pgid));
}

#[tokio::test]
async fn wait_exit_gives_up_after_its_bound_while_the_group_runs() {
    let world = World::new();
    let group = start_worker(&world, "marks", "").await;
    let outcome = run_on(
        &world,
        Some(&group),
        r#"function(ctx) ctx:event("waited", { exited = ctx:wait_exit(100), alive = ctx:alive() }) end"#,
        PATIENCE,
    )
    .await;
    assert_eq!(outcome, Ok(()));
    let data = event_data(&world, "waited");
    assert_eq!(data["exited"], false);
    assert_eq!(data["alive"], true);
}

#[tokio::test]
async fn children_lists_every_live_group_member() {
    let world = World::new();
    let group = start_worker(&world, "marks", "children").await;
    let outcome = run_on(
        &world,
        Some(&group),
        r#"function(ctx)
            local list = ctx:children()
            local sleeps, leader, rss = 0, false, true
            for _, child in ipairs(list) do
              if child.command == "sleep" then sleeps = sleeps + 1 end
              if child.pid == ctx.process.pgid then leader = true end
              if type(child.rssBytes) ~= "number" or child.ppid == nil then rss = false end
            end
            ctx:event("children", { count = #list, sleeps = sleeps, leader = leader, rss = rss })
          end"#,
        PATIENCE,
    )
    .await;
    assert_eq!(outcome, Ok(()));
    let data = event_data(&world, "children");
    assert_eq!(data["count"], 3);
    assert_eq!(data["sleeps"], 2);
    assert_eq!(data["leader"], true);
    assert_eq!(data["rss"], true);
}

#[tokio::test]
async fn helpers_without_a_running_process_do_nothing() {
    let world = World::new();
    let outcome = run_on(
        &world,
        None,
        r#"function(ctx)
            ctx:event("nothing", { sent = ctx:signal("TERM"), alive = ctx:alive(),
                                   exited = ctx:wait_exit(10), children = #ctx:children() })
          end"#,
        PATIENCE,
    )
    .await;
    assert_eq!(outcome, Ok(()));
    let data = event_data(&world, "nothing");
    assert_eq!(data["sent"], false);
    assert_eq!(data["alive"], false);
    assert_eq!(data["exited"], true);
    assert_eq!(data["children"], 0);
}

#[tokio::test]
async fn exec_runs_a_shell_command_in_the_process_environment() {
    let world = World::new();
    std::fs::create_dir(world.path("sub")).unwrap();
    let outcome = run_on(
        &world,
        None,
        r#"function(ctx)
            local r = ctx:exec("echo $APP_MODE-$EXTRA; pwd; echo oops >&2; exit 3", { env = { EXTRA = 7 } })
            ctx:event("ran", { code = r.code, stdout = r.stdout, stderr = r.stderr, timedOut = r.timedOut })
          end"#,
        PATIENCE,
    )
    .await;
    assert_eq!(outcome, Ok(()));
    let data = event_data(&world, "ran");
    let cwd = world.dir.path().canonicalize().unwrap();
    assert_eq!(data["code"], 3);
    assert_eq!(data["stdout"], format!("test-7\n{}\n", cwd.display()));
    assert_eq!(data["stderr"], "oops\n");
    assert_eq!(data["timedOut"], false);
}

#[tokio::test]
async fn exec_kills_a_command_that_runs_past_its_timeout() {
    let world = World::new();
    let outcome = run_on(
        &world,
        None,
        r#"function(ctx)
            local r = ctx:exec("sleep 1000 & echo $! > bg.pid; echo started; wait", { timeoutMs = 300 })
            ctx:event("ran", { code = r.code, stdout = r.stdout, timedOut = r.timedOut })
          end"#,
        PATIENCE,
    )
    .await;
    assert_eq!(outcome, Ok(()));
    let data = event_data(&world, "ran");
    assert!(data.get("code").is_none(), "no exit code after a timeout");
    assert_eq!(data["timedOut"], true);
    assert_eq!(data["stdout"], "started\n");
    let pid: i32 = std::fs::read_to_string(world.path("bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually("the command's whole group is killed", || !pid_alive(pid)).await;
}

#[tokio::test]
async fn a_command_started_by_a_hook_ends_with_the_hook() {
    let world = World::new();
    let outcome = run_on(
        &world,
        None,
        r#"function(ctx) ctx:exec("echo $$ > cmd.pid; exec sleep 1000") end"#,
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(outcome, Err(HookError::TimedOut(500)));
    let pid: i32 = std::fs::read_to_string(world.path("cmd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually("the command outlived its hook", || !pid_alive(pid)).await;
}

#[tokio::test]
async fn exec_raises_when_the_shell_cannot_start() {
    let world = World::new();
    let loaded = world.lua_config(&config_with(
        "",
        r#"lifecycle = { quiet = function(ctx)
            local ok, err = pcall(function() return ctx:exec("true") end)
            ctx:event("tried", { ok = ok, err = tostring(err) })
          end }"#,
    ));
    let registry = registry(&loaded);
    let spec = lifecycle_spec(&loaded, 0, Stage::Quiet);
    let plugin = registry.lifecycle(&spec, Stage::Quiet).unwrap();
    let mut process = world.process(None);
    process.cwd = world.path("missing-dir");
    plugin
        .run(world.call(Stage::Quiet, process, PATIENCE))
        .await
        .unwrap();
    let data = event_data(&world, "tried");
    assert_eq!(data["ok"], false);
    let err = data["err"].as_str().unwrap();
    assert!(
        err.contains("ctx:exec: could not start /bin/sh in"),
        "{err}"
    );
    assert!(err.contains("missing-dir"), "{err}");
}

#[tokio::test]
async fn sleep_and_remaining_ms_follow_the_deadline() {
    let world = World::new();
    let outcome = run_on(
        &world,
        None,
        r#"function(ctx)
            local before = ctx:remaining_ms()
            ctx:sleep(50)
            ctx:event("clock", { before = before, after = ctx:remaining_ms() })
          end"#,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(outcome, Ok(()));
    let data = event_data(&world, "clock");
    let before = data["before"].as_u64().unwrap();
    let after = data["after"].as_u64().unwrap();
    assert!(before <= 10_000 && before > 5_000, "{before}");
    assert!(after + 50 <= before, "{before} then {after}");
}

#[tokio::test]
async fn event_data_must_be_plain_values() {
    let world = World::new();
    let outcome = run_on(
        &world,
        None,
        r#"function(ctx)
            ctx:event("empty", {})
            ctx:event("bare")
            local ok, err = pcall(function() ctx:event("bad", { f = print }) end)
            ctx:event("checked", { ok = ok, err = tostring(err) })
            ctx:event("nested", { list = { 1, 2 }, inner = { a = "b" } })
          end"#,
        PATIENCE,
    )
    .await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(
        event_data(&world, "empty"),
        json!({"processId": "worker#1", "releaseId": "r42"})
    );
    assert_eq!(
        event_data(&world, "bare"),
        json!({"processId": "worker#1", "releaseId": "r42"})
    );
    let checked = event_data(&world, "checked");
    assert_eq!(checked["ok"], false);
    assert!(
        checked["err"]
            .as_str()
            .unwrap()
            .contains("ctx:event: data can hold only")
    );
    assert_eq!(
        event_data(&world, "nested"),
        json!({"processId": "worker#1", "releaseId": "r42", "inner": {"a": "b"}, "list": [1, 2]})
    );
}

#[tokio::test]
async fn file_helpers_read_relative_to_the_process_folder() {
    let world = World::new();
    world.write("queue.depth", "17\n");
    let outcome = run_on(
        &world,
        None,
        r#"function(ctx)
            ctx:event("files", {
              exists = ctx:file_exists("queue.depth"),
              missing = ctx:file_exists("nope"),
              depth = tonumber(ctx:read_file("queue.depth"):match("%d+")),
              head = ctx:read_file("queue.depth", 1),
              absent = ctx:read_file("nope") == nil,
            })
          end"#,
        PATIENCE,
    )
    .await;
    assert_eq!(outcome, Ok(()));
    let data = event_data(&world, "files");
    assert_eq!(data["exists"], true);
    assert_eq!(data["missing"], false);
    assert_eq!(data["depth"], 17);
    assert_eq!(data["head"], "1");
    assert_eq!(data["absent"], true);
}

#[tokio::test]
async fn http_sends_a_request_and_returns_status_body_and_headers() {
    let world = World::new();
    let server = TinyServer::start(|| {
        "HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\nX-Queue-Depth: 4\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
            .to_string()
    })
    .await;
    let hook = format!(
        r#"function(ctx)
            local r = ctx:http("post", "http://127.0.0.1:{}/pause?now=1", {{
              body = "drain please", headers = {{ ["X-Token"] = "s3cret" }}, timeoutMs = 5000 }})
            ctx:event("answer", {{ status = r.status, body = r.body,
              type = r.headers["content-type"], depth = r.headers["x-queue-depth"] }})
          end"#,
        server.port
    );
    assert_eq!(run_on(&world, None, &hook, PATIENCE).await, Ok(()));
    let data = event_data(&world, "answer");
    assert_eq!(data["status"], 202);
    assert_eq!(data["body"], "hello");
    assert_eq!(data["type"], "text/plain");
    assert_eq!(data["depth"], "4");
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert!(
        request.starts_with("POST /pause?now=1 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.to_ascii_lowercase().contains("x-token: s3cret"),
        "{request}"
    );
    assert!(request.ends_with("\r\n\r\ndrain please"), "{request}");
}

#[tokio::test]
async fn http_raises_when_it_cannot_connect_or_gets_no_answer() {
    let world = World::new();
    // A listener that accepts but never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let hook = format!(
        r#"function(ctx)
            local ok1, refused = pcall(function() return ctx:http("GET", "http://127.0.0.1:{}/") end)
            local ok2, slow = pcall(function()
              return ctx:http("GET", "http://127.0.0.1:{}/", {{ timeoutMs = 200 }})
            end)
            local ok3, bad = pcall(function() return ctx:http("GET", "https://example.com/") end)
            ctx:event("errors", {{ ok = ok1 or ok2 or ok3, refused = tostring(refused),
                                   slow = tostring(slow), bad = tostring(bad) }})
          end"#,
        closed_port(),
        silent_port
    );
    assert_eq!(run_on(&world, None, &hook, PATIENCE).await, Ok(()));
    let data = event_data(&world, "errors");
    assert_eq!(data["ok"], false);
    let refused = data["refused"].as_str().unwrap();
    assert!(
        refused.contains("ctx:http: cannot connect to http://127.0.0.1:"),
        "{refused}"
    );
    assert!(refused.contains("connection refused"), "{refused}");
    let slow = data["slow"].as_str().unwrap();
    assert!(
        slow.contains("no response from http://127.0.0.1:"),
        "{slow}"
    );
    assert!(slow.contains("within 200 ms"), "{slow}");
    assert!(
        data["bad"]
            .as_str()
            .unwrap()
            .contains("is not an http:// URL")
    );
    drop(silent);
}

// ---------------------------------------------------------------------------
// the stop sequence, config state, reloads, scripts

use rollbridge::process::{
    ManagedProcess, ProcessDefinition, ProcessState, StartReason, Supervision, group_alive,
};
use std::sync::Arc;

fn managed(
    world: &World,
    loaded: &rollbridge::config::LoadedConfig,
    index: usize,
) -> Arc<ManagedProcess> {
    let cfg = loaded.config.processes[index].clone();
    let def = ProcessDefinition {
        instance_id: format!("{}#0", cfg.id),
        base_id: cfg.id.clone(),
        release_id: "r7".into(),
        release_path: world.dir.path().to_string_lossy().into_owned(),
        revision: "feedbeef".into(),
        command: cfg.command.clone(),
        cwd: world.dir.path().to_path_buf(),
        env: vec![("ROLLBRIDGE_PROCESS_ID".into(), cfg.id.clone())],
        port: None,
        replica_index: 0,
        replica_count: 2,
        config: cfg,
        log_file: None,
    };
    ManagedProcess::new(
        def,
        Supervision {
            events: world.events.clone(),
            registry: registry(loaded),
            should_restart: Arc::new(|| false),
            log_files: Default::default(),
        },
    )
}

/// Kills a managed process's group when a test ends early.
struct StopGuard(Option<i32>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(-pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_hooks_are_reported_and_the_stop_sequence_goes_on() {
    let world = World::new();
    let loaded = world.lua_config(&config_with(
        "",
        r#"command = "exec sleep 1000", gracefulStopMs = 400,
           lifecycle = {
             quiet = function(ctx) error("cannot reach the queue") end,
             drain = function(ctx) while true do end end,
             drainTimeoutMs = 300,
             stop = function(ctx) ctx:signal("NOSUCH") end,
           }"#,
    ));
    let process = managed(&world, &loaded, 0);
    process.start(StartReason::Deploy).await.unwrap();
    let pgid = process.pid().unwrap();
    let _guard = StopGuard(Some(pgid));
    tokio::time::timeout(PATIENCE, process.stop())
        .await
        .unwrap();
    assert!(!group_alive(pgid));
    assert_eq!(process.state(), ProcessState::Stopped);
    let failures: Vec<serde_json::Value> = world
        .events_named("hook failed")
        .into_iter()
        .map(|e| serde_json::Value::Object(e.data))
        .collect();
    assert_eq!(failures.len(), 3, "{failures:?}");
    for (failure, stage) in failures.iter().zip(["quiet", "drain", "stop"]) {
        assert_eq!(failure["processId"], "worker#0");
        assert_eq!(failure["releaseId"], "r7");
        assert_eq!(failure["stage"], stage);
        assert_eq!(failure["plugin"], "lua");
    }
    let reason = |i: usize| failures[i]["reason"].as_str().unwrap().to_string();
    assert!(
        reason(0).contains("cannot reach the queue"),
        "{}",
        reason(0)
    );
    assert_eq!(reason(1), "timed out after 300 ms");
    assert!(
        reason(2).contains("unknown signal name \"NOSUCH\""),
        "{}",
        reason(2)
    );
    // The failed stop hook made rollbridge send the stop signal at once.
    assert_eq!(process.status_json()["exitSignal"], "SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_and_drain_hooks_run_in_order_before_the_stop_signal() {
    let world = World::new();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lua/worker.py");
    let marks = world.path("marks");
    let loaded = world.lua_config(&config_with(
        "",
        &format!(
            r#"command = "exec python3 {} {}", gracefulStopMs = 5000,
               lifecycle = {{
                 quiet = function(ctx) ctx:signal("TSTP") end,
                 drain = function(ctx)
                   ctx:event("draining")
                   repeat ctx:sleep(10) until ctx:file_exists("drained")
                   ctx:event("drained")
                 end,
                 drainTimeoutMs = 10000,
               }}"#,
            fixture.display(),
            marks.display()
        ),
    ));
    let process = managed(&world, &loaded, 0);
    process.start(StartReason::Deploy).await.unwrap();
    let pgid = process.pid().unwrap();
    let _guard = StopGuard(Some(pgid));
    let ready = marks.clone();
    eventually("ready in the ready file", || {
        read_lines(&ready).contains(&"ready".to_string())
    })
    .await;
    let stopping = tokio::spawn({
        let process = process.clone();
        async move { process.stop().await }
    });
    let quiet = marks.clone();
    eventually("SIGTSTP in the quiet file", || {
        read_lines(&quiet).contains(&"SIGTSTP".to_string())
    })
    .await;
    // The drain hook runs and holds the stop signal back until the marker appears.
    eventually("the drain hook to start", || {
        !world.events_named("draining").is_empty()
    })
    .await;
    assert_eq!(read_lines(&marks), vec!["ready", "SIGTSTP"]);
    world.write("drained", "");
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_lines(&marks), vec!["ready", "SIGTSTP", "SIGTERM"]);
    assert_eq!(world.events_named("drained").len(), 1);
    assert!(world.events_named("hook failed").is_empty());
}

#[tokio::test]
async fn state_built_at_load_time_is_visible_to_hooks() {
    let world = World::new();
    let loaded = world.lua_config(&config_with(
        r#"local rollbridge = require("rollbridge")
           local tally = { calls = 0 }
           local banner = string.upper("ready") .. ":" .. rollbridge.range(4000, 4009).to"#,
        r#"lifecycle = { quiet = function(ctx)
            tally.calls = tally.calls + 1
            ctx:event("state", { banner = banner, calls = tally.calls })
          end }"#,
    ));
    let registry = registry(&loaded);
    let spec = lifecycle_spec(&loaded, 0, Stage::Quiet);
    let hook = registry.lifecycle(&spec, Stage::Quiet).unwrap();
    for _ in 0..2 {
        hook.run(world.call(Stage::Quiet, world.process(None), PATIENCE))
            .await
            .unwrap();
    }
    let seen: Vec<serde_json::Value> = world
        .events_named("state")
        .into_iter()
        .map(|e| json!([e.data["banner"], e.data["calls"]]))
        .collect();
    assert_eq!(
        seen,
        vec![json!(["READY:4009", 1]), json!(["READY:4009", 2])]
    );
}

#[tokio::test]
async fn reloading_the_config_picks_up_edited_hooks() {
    let world = World::new();
    let version = |v: &str| {
        config_with(
            "",
            &format!(r#"lifecycle = {{ quiet = function(ctx) ctx:event("{v}") end }}"#),
        )
    };
    let first = world.lua_config(&version("hook v1"));
    let old = registry(&first);
    let second = world.lua_config(&version("hook v2"));
    let new = registry(&second);
    let run = |registry: &rollbridge::plugins::Registry,
               loaded: &rollbridge::config::LoadedConfig| {
        let hook = registry
            .lifecycle(&lifecycle_spec(loaded, 0, Stage::Quiet), Stage::Quiet)
            .unwrap();
        hook.run(world.call(Stage::Quiet, world.process(None), PATIENCE))
    };
    run(&new, &second).await.unwrap();
    assert_eq!(world.events_named("hook v2").len(), 1);
    assert!(world.events_named("hook v1").is_empty());
    // A process still holding the old registry keeps the hooks it started with.
    run(&old, &first).await.unwrap();
    assert_eq!(world.events_named("hook v1").len(), 1);
}

#[tokio::test]
async fn script_hooks_work_from_json_configs_with_their_options() {
    let world = World::new();
    std::fs::create_dir(world.path("hooks")).unwrap();
    world.write(
        "hooks/worker.lua",
        r#"local calls = 0
           local M = {}
           function M.quiet(ctx)
             calls = calls + 1
             local keys = {}
             for k in pairs(ctx.options) do keys[#keys + 1] = k end
             table.sort(keys)
             ctx:event("script", { keys = table.concat(keys, ","), signal = ctx.options.signal, calls = calls })
           end
           function ready(ctx) return false, "global functions work too" end
           return M"#,
    );
    let config = world.write(
        "rollbridge.json",
        r#"{
          "proxy": {"port": 0},
          "processes": [
            {"id": "worker", "command": "sleep 1000",
             "lifecycle": {"quiet": {"lua": "hooks/worker.lua", "fn": "quiet", "signal": "USR1"}}},
            {"id": "web", "command": "sleep 1000", "policy": "proxied", "port": {"from": 4100, "to": 4101},
             "health": {"check": {"lua": "hooks/worker.lua", "fn": "ready"}}}
          ]
        }"#,
    );
    let loaded = world.load(&config);
    let registry = registry(&loaded);
    let spec = lifecycle_spec(&loaded, 0, Stage::Quiet);
    assert!(
        spec.plugin_name().starts_with("lua:"),
        "{}",
        spec.plugin_name()
    );
    let hook = registry.lifecycle(&spec, Stage::Quiet).unwrap();
    for _ in 0..2 {
        let mut call = world.call(Stage::Quiet, world.process(None), PATIENCE);
        call.options = spec.options();
        hook.run(call).await.unwrap();
    }
    let events = world.events_named("script");
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].data["keys"], "signal");
    assert_eq!(events[1].data["signal"], "USR1");
    assert_eq!(
        events[1].data["calls"], 2,
        "the script ran once, at load time"
    );
    let health = registry.health(&health_spec(&loaded, 1)).unwrap();
    assert_eq!(
        health
            .probe(world.call(Stage::Health, world.process(None), PATIENCE))
            .await,
        Ok(HealthVerdict::NotYet("global functions work too".into()))
    );
}

// ---------------------------------------------------------------------------
// matchers

use rollbridge::process::proc_table;

fn matcher_config(world: &World, prelude: &str, matcher: &str) -> rollbridge::config::LoadedConfig {
    world.lua_config(&format!(
        "{prelude}\nreturn {{\n  proxy = {{ port = 0 }},\n  processes = {{\n    {{ id = \"web\", command = \"sleep 1000\", policy = \"proxied\", port = {{ from = 4100, to = 4101 }} }},\n  }},\n  legacyTakeover = {{ matchers = {{ {matcher} }} }},\n}}\n"
    ))
}

#[tokio::test]
async fn a_lua_matcher_selects_a_legacy_process_tree() {
    let world = World::new();
    let legacy_dir = world.path("legacy-app");
    std::fs::create_dir(&legacy_dir).unwrap();
    let legacy_dir = legacy_dir.canonicalize().unwrap();
    let tree = Group::start("sleep 1000 & sleep 1000 & wait", &legacy_dir);
    let bystander = Group::start("exec sleep 1000", world.dir.path());
    let live_members = || {
        let mut pids: Vec<i32> = rollbridge::process::proc_table::scan_stats()
            .unwrap()
            .into_iter()
            .filter(|s| s.pgrp == tree.pgid && s.is_live())
            .map(|s| s.pid)
            .collect();
        pids.sort();
        pids
    };
    // The shell forks its two sleeps after it starts: read the table only once
    // both run, or a sleep forked during the scan is missed.
    eventually("the shell and its two sleeps start", || {
        live_members().len() == 3
    })
    .await;
    let loaded = matcher_config(
        &world,
        "",
        r#"{ fn = function(proc, ctx)
              return proc.cwd == ctx.options.dir and proc.user ~= nil and proc.ppid ~= nil
                and ctx.stage == "match" and ctx.process == nil
            end, dir = DIR }"#
            .replace("DIR", &format!("{:?}", legacy_dir.display().to_string()))
            .as_str(),
    );
    let registry = registry(&loaded);
    let spec = loaded.config.legacy_takeover.as_ref().unwrap().matchers[0].clone();
    let matcher = registry.matcher(&spec).unwrap();
    let table = tokio::task::spawn_blocking(proc_table)
        .await
        .unwrap()
        .unwrap();
    let mut selected = Vec::new();
    for process in table {
        let pid = process.pid;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        if matcher.matches(process, deadline).await == Ok(true) {
            selected.push(pid);
        }
    }
    selected.sort();
    let expected = live_members();
    assert_eq!(expected.len(), 3, "the shell and its two sleeps");
    assert_eq!(selected, expected);
    assert!(!selected.contains(&bystander.pgid));
}

#[tokio::test]
async fn a_matcher_must_answer_with_a_boolean() {
    let world = World::new();
    let loaded = matcher_config(
        &world,
        "",
        r#"function(proc, ctx) if proc.pid == 1 then return "yes" end end"#,
    );
    let registry = registry(&loaded);
    let spec = loaded.config.legacy_takeover.as_ref().unwrap().matchers[0].clone();
    let matcher = registry.matcher(&spec).unwrap();
    let process = |pid| rollbridge::plugins::LegacyProcess {
        pid,
        ppid: 0,
        cmdline: "legacy".into(),
        cwd: None,
        user: None,
    };
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(5);
    assert_eq!(
        matcher.matches(process(1), deadline()).await,
        Err(HookError::Failed(
            "the matcher returned a string; it must return true or false".into()
        ))
    );
    assert_eq!(
        matcher.matches(process(2), deadline()).await,
        Err(HookError::Failed(
            "the matcher returned nothing; it must return true or false".into()
        ))
    );
}

#[tokio::test]
async fn matchers_cannot_act_on_a_managed_process() {
    let world = World::new();
    let loaded = matcher_config(
        &world,
        "",
        r#"function(proc, ctx) ctx:signal("TERM") return true end"#,
    );
    let registry = registry(&loaded);
    let spec = loaded.config.legacy_takeover.as_ref().unwrap().matchers[0].clone();
    let matcher = registry.matcher(&spec).unwrap();
    let outcome = matcher
        .matches(
            rollbridge::plugins::LegacyProcess {
                pid: 1,
                ppid: 0,
                cmdline: "init".into(),
                cwd: None,
                user: None,
            },
            tokio::time::Instant::now() + Duration::from_secs(5),
        )
        .await;
    match outcome {
        Err(HookError::Failed(reason)) => {
            assert!(
                reason.contains("matchers have no managed process"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// logging and the proxy path

/// Log output captured from every thread (the Lua engine has its own).
static LOG: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn print_writes_to_the_debug_log() {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("only this test sets a subscriber");
    let world = World::new();
    let outcome = run_on(
        &world,
        None,
        r#"function(ctx) print("draining", ctx.process.instanceId, 3) end"#,
        PATIENCE,
    )
    .await;
    assert_eq!(outcome, Ok(()));
    let log = String::from_utf8(LOG.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|line| line.contains("draining\tworker#1\t3"))
        .unwrap_or_else(|| panic!("print output missing from the log:\n{log}"));
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains("rollbridge::lua"), "{line}");
}

/// The proxy's hot path must never run Lua: nothing under src/proxy may reach the
/// Lua engine or the plugin registry (through which hooks run).
#[test]
fn the_proxy_never_reaches_lua() {
    let proxy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proxy");
    let mut checked = 0;
    for entry in std::fs::read_dir(&proxy).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for forbidden in ["crate::lua", "mlua", "crate::plugins", "rollbridge::lua"] {
            assert!(
                !source.contains(forbidden),
                "{} refers to {forbidden}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 5, "the proxy sources were found");
}

#[tokio::test]
async fn hooks_run_in_the_config_sandbox() {
    let world = World::new();
    let outcome = run_on(
        &world,
        None,
        r#"function(ctx)
            ctx:event("sandbox", {
              io = io == nil, execute = os.execute == nil, exit = os.exit == nil,
              remove = os.remove == nil, rename = os.rename == nil,
              time = type(os.time()) == "number", clock = type(os.clock()) == "number",
              date = type(os.date("%Y")) == "string", getenv = os.getenv("PATH") ~= nil,
            })
          end"#,
        PATIENCE,
    )
    .await;
    assert_eq!(outcome, Ok(()));
    let data = event_data(&world, "sandbox");
    for key in [
        "io", "execute", "exit", "remove", "rename", "time", "clock", "date", "getenv",
    ] {
        assert_eq!(data[key], true, "{key}");
    }
}

#[tokio::test]
async fn a_lua_health_check_gates_readiness_until_its_deadline() {
    use rollbridge::config::model::HealthConfig;
    use rollbridge::process::wait_healthy;
    let world = World::new();
    let loaded = world.lua_config(&config_with(
        "local round = 0",
        r#"health = { check = function(ctx)
            round = round + 1
            if round == 1 then error("boot script still running") end
            if ctx:file_exists("ready") then return true end
            return false, "no ready file yet"
          end }"#,
    ));
    let registry = registry(&loaded);
    let plugin = registry.health(&health_spec(&loaded, 0)).unwrap();
    let health = |timeout_ms| HealthConfig {
        timeout_ms,
        interval_ms: 20,
        start_delay_ms: 0,
        ..loaded.config.processes[0].health.clone().unwrap()
    };
    let call = world.call(Stage::Health, world.process(None), PATIENCE);
    let failed = wait_healthy(plugin.clone(), call.clone(), &health(300), "worker")
        .await
        .unwrap_err();
    assert_eq!(failed.detail, "no ready file yet");
    world.write("ready", "");
    wait_healthy(plugin, call, &health(5000), "worker")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_command_started_by_a_hook_ends_when_the_caller_gives_up() {
    let world = World::new();
    let loaded = world.lua_config(&config_with(
        "",
        r#"lifecycle = { quiet = function(ctx) ctx:exec("echo $$ > cmd.pid; exec sleep 1000") end }"#,
    ));
    let registry = registry(&loaded);
    let spec = lifecycle_spec(&loaded, 0, Stage::Quiet);
    let plugin = registry.lifecycle(&spec, Stage::Quiet).unwrap();
    // A bound far beyond PATIENCE, so only giving up can end the command in time.
    let bound = Duration::from_secs(600);
    let running = plugin.run(world.call(Stage::Quiet, world.process(None), bound));
    let pid_file = world.path("cmd.pid");
    // Give up on the call (drop it) once the command runs.
    let gave_up = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            _ = running => panic!("the hook cannot finish on its own"),
            _ = poll_async(PATIENCE, || {
                std::fs::read_to_string(&pid_file)
                    .is_ok_and(|text| !text.trim().is_empty())
                    .then_some(())
            }) => {}
        }
    })
    .await;
    assert!(gave_up.is_ok());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually("the command outlived the abandoned hook", || {
        !pid_alive(pid)
    })
    .await;
}

/// The line of `config_with("", lifecycle = { quiet = <hook> })` holding `needle`.
fn line_of(hook: &str, needle: &str) -> usize {
    let source = config_with("", &format!("lifecycle = {{ quiet = {hook} }}"));
    source
        .lines()
        .position(|line| line.contains(needle))
        .expect("the needle is in the config")
        + 1
}

#[tokio::test]
async fn a_helper_called_with_a_dot_says_to_use_a_colon_and_where() {
    let world = World::new();
    let hook = "function(ctx)\n  ctx.signal(\"TSTP\")\nend";
    let outcome = run_quiet(&world, "", hook, Duration::from_secs(5)).await;
    let line = line_of(hook, "ctx.signal(");
    match outcome {
        Err(HookError::Failed(reason)) => assert_eq!(
            reason,
            format!(
                "rollbridge.lua:{line}: ctx.signal(...) was called with a dot; call ctx's helpers with a colon, ctx:signal(...), so ctx itself is passed along"
            )
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_ctx_member_names_the_place_the_closest_one_and_the_list() {
    let world = World::new();
    let hook = "function(ctx)\n  ctx:signl(\"TSTP\")\nend";
    let line = line_of(hook, "ctx:signl(");
    match run_quiet(&world, "", hook, Duration::from_secs(5)).await {
        Err(HookError::Failed(reason)) => {
            assert!(
                reason.starts_with(&format!(
                    "rollbridge.lua:{line}: ctx has no method or field \"signl\". Did you mean ctx:signal(...)?"
                )),
                "{reason}"
            );
            for method in rollbridge::lua::ctx::METHODS {
                assert!(reason.contains(method), "lists {method}: {reason}");
            }
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let hook = "function(ctx)\n  return ctx.procss.id\nend";
    match run_quiet(&world, "", hook, Duration::from_secs(5)).await {
        Err(HookError::Failed(reason)) => {
            assert!(reason.contains("Did you mean ctx.process?"), "{reason}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}
