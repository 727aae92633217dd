//! Lua hooks end to end below the daemon: configs loaded from disk, the Lua
//! provider in a registry, hooks called against real process groups, real
//! commands and real sockets.

mod support_lua;

use rollbridge::plugins::{HealthVerdict, HookError, Stage};
use serde_json::json;
use std::time::Duration;
use support_lua::*;

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
