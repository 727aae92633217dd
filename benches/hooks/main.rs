//! Overhead of a Lua hook call compared with the built-in `command` plugin
//! running `true` (a `/bin/sh -c true` spawn). See benches/hooks/README.md.
//!
//! Run: `cargo bench --bench hooks` (release build). Optional argument: the
//! number of sequential calls per measurement (default 2000).

use rollbridge::config::hook::HookSpec;
use rollbridge::config::model::Policy;
use rollbridge::config::{LoadedConfig, load};
use rollbridge::events::EventSink;
use rollbridge::lua::LuaPlugins;
use rollbridge::plugins::builtin::BuiltinPlugins;
use rollbridge::plugins::{HookCall, LifecyclePlugin, ProcessInfo, Registry, Stage};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
local calls = 0
return {
  proxy = { port = 0 },
  processes = {
    { id = "web", command = "sleep 1000", policy = "proxied", port = { from = 4100, to = 4101 } },
    { id = "worker", command = "sleep 1000",
      lifecycle = { quiet = function(ctx)
        -- What a typical quiet hook touches: the process table, an option and
        -- a helper; no pid, so no signal is actually sent.
        calls = calls + 1
        local id = ctx.process.instanceId
        local left = ctx:remaining_ms()
        ctx:signal("TSTP")
      end } },
    { id = "idle", command = "sleep 1000", lifecycle = { quiet = function(ctx) end } },
  },
}
"#;

fn process(dir: &Path) -> ProcessInfo {
    ProcessInfo {
        id: "worker".into(),
        instance_id: "worker".into(),
        pid: None,
        pgid: None,
        release_id: "bench".into(),
        release_path: dir.to_string_lossy().into_owned(),
        revision: "bench".into(),
        port: None,
        policy: Policy::Companion,
        replica_index: 0,
        replica_count: 1,
        env: std::env::vars().collect(),
        cwd: dir.to_path_buf(),
    }
}

fn call(dir: &Path, events: &EventSink) -> HookCall {
    HookCall {
        stage: Stage::Quiet,
        process: process(dir),
        deadline: tokio::time::Instant::now() + Duration::from_secs(30),
        options: Default::default(),
        events: events.clone(),
    }
}

/// Mean time of `count` sequential calls.
async fn sequential(plugin: &Arc<dyn LifecyclePlugin>, dir: &Path, count: u32) -> Duration {
    let events = EventSink::silent();
    let started = Instant::now();
    for _ in 0..count {
        plugin.run(call(dir, &events)).await.expect("hook succeeds");
    }
    started.elapsed() / count
}

/// Wall time of `count` calls started together.
async fn concurrent(plugin: &Arc<dyn LifecyclePlugin>, dir: &Path, count: usize) -> Duration {
    let events = EventSink::silent();
    let started = Instant::now();
    let calls: Vec<_> = (0..count)
        .map(|_| tokio::spawn(plugin.run(call(dir, &events))))
        .collect();
    for handle in calls {
        handle.await.unwrap().expect("hook succeeds");
    }
    started.elapsed()
}

fn micros(duration: Duration) -> String {
    format!("{:>10.1} µs", duration.as_secs_f64() * 1e6)
}

fn load_config(dir: &Path) -> LoadedConfig {
    load(&dir.join("rollbridge.lua")).expect("bench config loads")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: u32 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rollbridge.lua"), CONFIG).unwrap();

    let loaded = load_config(dir.path());
    let spec = loaded.config.processes[1].lifecycle.quiet.clone().unwrap();
    let registry = Registry::new(vec![
        Arc::new(BuiltinPlugins),
        Arc::new(LuaPlugins::for_config(&loaded).unwrap().unwrap()),
    ]);
    let lua = registry.lifecycle(&spec, Stage::Quiet).unwrap();
    let empty_spec = loaded.config.processes[2].lifecycle.quiet.clone().unwrap();
    let empty = registry.lifecycle(&empty_spec, Stage::Quiet).unwrap();
    let command = registry
        .lifecycle(&HookSpec::Command("true".into()), Stage::Quiet)
        .unwrap();

    // Warm up both paths (page cache, allocator, first thread creation).
    sequential(&lua, dir.path(), 100).await;
    sequential(&command, dir.path(), 20).await;

    // A cold start: load the config, start the engine, make one call.
    let cold_runs = 20;
    let started = Instant::now();
    for _ in 0..cold_runs {
        let loaded = load_config(dir.path());
        let plugins = Arc::new(LuaPlugins::for_config(&loaded).unwrap().unwrap());
        let registry = Registry::new(vec![plugins]);
        let hook = registry.lifecycle(&spec, Stage::Quiet).unwrap();
        hook.run(call(dir.path(), &EventSink::silent()))
            .await
            .unwrap();
    }
    let cold = started.elapsed() / cold_runs;

    let lua_one = sequential(&lua, dir.path(), count).await;
    let empty_one = sequential(&empty, dir.path(), count).await;
    let command_one = sequential(&command, dir.path(), (count / 10).max(50)).await;
    let lua_hundred = concurrent(&lua, dir.path(), 100).await;
    let command_hundred = concurrent(&command, dir.path(), 100).await;

    println!(
        "one call, sequential (mean of {count} Lua / {} command calls)",
        (count / 10).max(50)
    );
    println!("  Lua hook (ctx setup + call)     {}", micros(lua_one));
    println!("  empty Lua hook `function() end` {}", micros(empty_one));
    println!("  command plugin, `true`          {}", micros(command_one));
    println!(
        "  ratio Lua / command             {:>10.3}",
        lua_one.as_secs_f64() / command_one.as_secs_f64()
    );
    println!("100 calls at once (wall time)");
    println!("  Lua hook                        {}", micros(lua_hundred));
    println!(
        "  command plugin, `true`          {}",
        micros(command_hundred)
    );
    println!(
        "  ratio Lua / command             {:>10.3}",
        lua_hundred.as_secs_f64() / command_hundred.as_secs_f64()
    );
    println!("cold start: load config + start engine + first call (mean of {cold_runs})");
    println!("  Lua                             {}", micros(cold));
}
