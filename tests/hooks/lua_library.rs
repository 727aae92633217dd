//! The Lua library shipped with rollbridge (`require("rollbridge.hooks")`,
//! `rollbridge.workers`, `rollbridge.match`): every helper run against real
//! processes, files and sockets.

use crate::support::lua::*;
use rollbridge::config::LoadedConfig;
use rollbridge::plugins::{HookError, LegacyProcess, Stage};
use rollbridge::process::{ManagedProcess, ProcessDefinition, StartReason, Supervision};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const PRELUDE: &str = r#"local hooks = require("rollbridge.hooks")
local workers = require("rollbridge.workers")
local match = require("rollbridge.match")"#;

/// Runs the `stage` hook of the worker process in `loaded` against `group`.
async fn run_stage(
    world: &World,
    loaded: &LoadedConfig,
    stage: Stage,
    group: Option<&Group>,
    bound: Duration,
) -> Result<(), HookError> {
    let registry = registry(loaded);
    let spec = lifecycle_spec(loaded, 0, stage);
    let plugin = registry.lifecycle(&spec, stage).unwrap();
    let mut call = world.call(stage, world.process(group), bound);
    call.options = spec.options();
    tokio::time::timeout(PATIENCE, plugin.run(call))
        .await
        .expect("the hook ends")
}

fn worker_command(world: &World, marks: &str) -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lua/worker.py");
    format!(
        "exec python3 {} {}",
        fixture.display(),
        world.path(marks).display()
    )
}

// ---------------------------------------------------------------------------
// rollbridge.hooks

#[tokio::test]
async fn quiet_by_signal_signals_then_waits_for_the_exit() {
    let world = World::new();
    let mut group = start_worker(&world, "marks", "").await;
    let loaded = world.lua_config(&config_with(
        PRELUDE,
        r#"lifecycle = { quiet = { fn = hooks.quiet_by_signal, signal = "TERM", waitMs = 10000 } }"#,
    ));
    let outcome = run_stage(&world, &loaded, Stage::Quiet, Some(&group), PATIENCE).await;
    assert_eq!(outcome, Ok(()));
    // It returned because the group exited, long before waitMs.
    assert!(!rollbridge::process::group_alive(group.pgid));
    assert_eq!(read_lines(&world.path("marks")), vec!["ready", "SIGTERM"]);
    assert!(group.wait_leader().await.is_some());
}

#[tokio::test]
async fn quiet_by_signal_defaults_to_tstp_without_waiting() {
    let world = World::new();
    let group = start_worker(&world, "marks", "").await;
    let loaded = world.lua_config(&config_with(
        PRELUDE,
        "lifecycle = { quiet = hooks.quiet_by_signal }",
    ));
    let outcome = run_stage(&world, &loaded, Stage::Quiet, Some(&group), PATIENCE).await;
    assert_eq!(outcome, Ok(()));
    let marks = world.path("marks");
    eventually("SIGTSTP in the marks file", || {
        read_lines(&marks).contains(&"SIGTSTP".to_string())
    })
    .await;
    assert!(pid_alive(group.pgid));
}

#[tokio::test]
async fn hook_options_of_the_wrong_type_are_reported() {
    let world = World::new();
    let loaded = world.lua_config(&config_with(
        PRELUDE,
        r#"lifecycle = { quiet = { fn = hooks.quiet_by_signal, signal = 15 } }"#,
    ));
    let outcome = run_stage(&world, &loaded, Stage::Quiet, None, PATIENCE).await;
    assert_eq!(
        outcome,
        Err(HookError::Failed(
            "the hook option 'signal' must be a string, not a number".into()
        ))
    );
}

#[tokio::test]
async fn drain_until_idle_polls_until_the_endpoint_says_idle() {
    let world = World::new();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    let server = TinyServer::start(move || {
        let body = if count.fetch_add(1, Ordering::SeqCst) < 2 {
            "busy 3"
        } else {
            "idle"
        };
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    })
    .await;
    let group = start_worker(&world, "marks", "").await;
    let loaded = world.lua_config(&config_with(
        PRELUDE,
        &format!(
            r#"lifecycle = {{
                 drain = {{ fn = function(ctx) ctx:event("drain ended", {{ why = hooks.drain_until_idle(ctx) }}) end,
                           url = "http://127.0.0.1:{}/jobs", intervalMs = 10, idleBody = "^idle" }},
                 drainTimeoutMs = 10000 }}"#,
            server.port
        ),
    ));
    let outcome = run_stage(&world, &loaded, Stage::Drain, Some(&group), PATIENCE).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(answered.load(Ordering::SeqCst), 3);
    assert_eq!(world.events_named("drain ended")[0].data["why"], "idle");
    let requests = server.requests.lock().unwrap().clone();
    assert!(requests.iter().all(|r| r.starts_with("GET /jobs HTTP/1.1")));
}

#[tokio::test]
async fn drain_until_idle_uses_the_process_port_and_stops_when_the_group_is_gone() {
    let world = World::new();
    // No process group and nothing listening on the port: the process is gone.
    let loaded = world.lua_config(&config_with(
        PRELUDE,
        r#"lifecycle = {
             drain = { fn = function(ctx) ctx:event("drain ended", { why = hooks.drain_until_idle(ctx) }) end,
                       path = "busy", intervalMs = 10 },
             drainTimeoutMs = 10000 }"#,
    ));
    let outcome = run_stage(&world, &loaded, Stage::Drain, None, PATIENCE).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(world.events_named("drain ended")[0].data["why"], "exited");
}

#[tokio::test]
async fn drain_until_idle_returns_when_the_window_closes() {
    let world = World::new();
    let server = TinyServer::start(|| {
        "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    })
    .await;
    let loaded = world.lua_config(&config_with(
        PRELUDE,
        &format!(
            r#"lifecycle = {{ drain = {{ fn = hooks.drain_until_idle,
                 url = "http://127.0.0.1:{}/", intervalMs = 20 }}, drainTimeoutMs = 400 }}"#,
            server.port
        ),
    ));
    let outcome = run_stage(
        &world,
        &loaded,
        Stage::Drain,
        None,
        Duration::from_millis(400),
    )
    .await;
    assert_eq!(outcome, Ok(()), "closing the window is not a failure");
    let closed = &world.events_named("drain window closed before the process was idle")[0];
    assert_eq!(closed.data["last"], "HTTP 503");
}

#[tokio::test]
async fn stop_escalating_moves_on_until_the_group_exits() {
    let world = World::new();
    let mut group = start_worker(&world, "marks", "").await;
    let loaded = world.lua_config(&config_with(
        PRELUDE,
        r#"lifecycle = { stop = { fn = hooks.stop_escalating, signals = { "INT", "USR1", "TERM" }, stepMs = 200 } }"#,
    ));
    let outcome = run_stage(&world, &loaded, Stage::Stop, Some(&group), PATIENCE).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(
        read_lines(&world.path("marks")),
        vec!["ready", "SIGINT", "SIGUSR1", "SIGTERM"]
    );
    assert!(group.wait_leader().await.is_some());
}

#[tokio::test]
async fn stop_escalating_fails_when_the_group_outlasts_every_signal() {
    let world = World::new();
    let group = start_worker(&world, "marks", "").await;
    let loaded = world.lua_config(&config_with(
        PRELUDE,
        r#"lifecycle = { stop = { fn = hooks.stop_escalating, signals = "INT" } }"#,
    ));
    let outcome = run_stage(
        &world,
        &loaded,
        Stage::Stop,
        Some(&group),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(
        outcome,
        Err(HookError::Failed(
            "the process group was still running after INT".into()
        ))
    );
    assert!(pid_alive(group.pgid));
}

#[tokio::test]
async fn library_hooks_work_from_json_configs() {
    let world = World::new();
    let group = start_worker(&world, "marks", "").await;
    world.write("lib.lua", r#"return require("rollbridge.hooks")"#);
    let config = world.write(
        "rollbridge.json",
        r#"{
          "proxy": {"port": 0},
          "processes": [
            {"id": "worker", "command": "sleep 1000",
             "lifecycle": {"quiet": {"lua": "lib.lua", "fn": "quiet_by_signal", "signal": "USR2"}}},
            {"id": "web", "command": "sleep 1000", "policy": "proxied", "port": {"from": 4100, "to": 4101}}
          ]
        }"#,
    );
    let loaded = world.load(&config);
    let outcome = run_stage(&world, &loaded, Stage::Quiet, Some(&group), PATIENCE).await;
    assert_eq!(outcome, Ok(()));
    let marks = world.path("marks");
    eventually("SIGUSR2 in the marks file", || {
        read_lines(&marks).contains(&"SIGUSR2".to_string())
    })
    .await;
}

// ---------------------------------------------------------------------------
// rollbridge.workers

fn managed(world: &World, loaded: &LoadedConfig) -> Arc<ManagedProcess> {
    let cfg = loaded.config.processes[0].clone();
    let def = ProcessDefinition {
        instance_id: cfg.id.clone(),
        base_id: cfg.id.clone(),
        release_id: "r1".into(),
        release_path: world.dir.path().to_string_lossy().into_owned(),
        revision: "abc".into(),
        command: cfg.command.clone(),
        cwd: world.dir.path().to_path_buf(),
        env: Vec::new(),
        port: None,
        replica_index: 0,
        replica_count: 1,
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

struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(-self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tstp_then_term_quiets_drains_busy_jobs_and_stops() {
    let world = World::new();
    world.write("busy", "2\n");
    let loaded = world.lua_config(&config_with(
        PRELUDE,
        &format!(
            r#"command = "{}", gracefulStopMs = 5000,
               lifecycle = workers.tstp_then_term{{ busyFile = "busy", intervalMs = 20, drainTimeoutMs = 10000 }}"#,
            worker_command(&world, "marks")
        ),
    ));
    let lifecycle = &loaded.config.processes[0].lifecycle;
    assert_eq!(lifecycle.drain_timeout_ms, 10000);
    let process = managed(&world, &loaded);
    process.start(StartReason::Deploy).await.unwrap();
    let _kill = KillGroup(process.pid().unwrap());
    let marks = world.path("marks");
    eventually("ready in the marks file", || {
        read_lines(&marks).contains(&"ready".to_string())
    })
    .await;
    let stopping = tokio::spawn({
        let process = process.clone();
        async move { process.stop().await }
    });
    eventually("SIGTSTP in the marks file", || {
        read_lines(&marks).contains(&"SIGTSTP".to_string())
    })
    .await;
    // Two jobs are still busy: the drain has seen them and holds the stop back.
    eventually("the drain to find busy jobs", || {
        !world.events_named("waiting for busy jobs").is_empty()
    })
    .await;
    assert_eq!(
        world.events_named("waiting for busy jobs")[0].data["busy"],
        2
    );
    assert_eq!(read_lines(&marks), vec!["ready", "SIGTSTP"]);
    world.write("busy", "0\n");
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_lines(&marks), vec!["ready", "SIGTSTP", "SIGTERM"]);
    assert!(world.events_named("hook failed").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resque_recipe_falls_back_to_the_stop_signal_when_quit_is_ignored() {
    let world = World::new();
    let loaded = world.lua_config(&config_with(
        PRELUDE,
        &format!(
            r#"command = "{}", gracefulStopMs = 400,
               lifecycle = workers.resque{{ busyCommand = "cat busy 2>/dev/null || echo 0", drainTimeoutMs = 5000 }}"#,
            worker_command(&world, "marks")
        ),
    ));
    let process = managed(&world, &loaded);
    process.start(StartReason::Deploy).await.unwrap();
    let _kill = KillGroup(process.pid().unwrap());
    let marks = world.path("marks");
    eventually("ready in the marks file", || {
        read_lines(&marks).contains(&"ready".to_string())
    })
    .await;
    tokio::time::timeout(PATIENCE, process.stop())
        .await
        .unwrap();
    // The fixture only notes QUIT; the stop hook gives up and the stop signal
    // (TERM) ends it.
    assert_eq!(
        read_lines(&marks),
        vec!["ready", "SIGUSR2", "SIGQUIT", "SIGTERM"]
    );
    let failed = &world.events_named("hook failed")[0];
    assert_eq!(failed.data["stage"], "stop");
    assert_eq!(
        failed.data["reason"],
        "the workers were still running after QUIT"
    );
}

// ---------------------------------------------------------------------------
// rollbridge.match

fn legacy(pid: i32, cmdline: &str, cwd: Option<&str>, user: Option<&str>) -> LegacyProcess {
    LegacyProcess {
        pid,
        ppid: 1,
        cmdline: cmdline.into(),
        cwd: cwd.map(str::to_string),
        user: user.map(str::to_string),
    }
}

fn matcher_config(world: &World, matchers: &str) -> LoadedConfig {
    world.lua_config(&format!(
        "{PRELUDE}\nreturn {{\n  proxy = {{ port = 0 }},\n  processes = {{\n    {{ id = \"web\", command = \"sleep 1000\", policy = \"proxied\", port = {{ from = 4100, to = 4101 }} }},\n  }},\n  legacyTakeover = {{ matchers = {{ {matchers} }} }},\n}}\n"
    ))
}

async fn verdicts(loaded: &LoadedConfig, processes: &[LegacyProcess]) -> Vec<Vec<bool>> {
    let registry = registry(loaded);
    let mut all = Vec::new();
    for spec in &loaded.config.legacy_takeover.as_ref().unwrap().matchers {
        let matcher = registry.matcher(spec).unwrap();
        let mut row = Vec::new();
        for process in processes {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            row.push(matcher.matches(process.clone(), deadline).await.unwrap());
        }
        all.push(row);
    }
    all
}

#[tokio::test]
async fn match_by_cwd_user_and_cmdline_patterns() {
    let world = World::new();
    let loaded = matcher_config(
        &world,
        r#"match.by{ cwdUnder = "/srv/old-app/" },
           match.by{ cwd = "/srv/old-app", user = "deploy" },
           match.by{ cmdline = { "^node ", "server%.js" } },
           match.by{ cmdline = "server.js", plain = true, user = "deploy" }"#,
    );
    let processes = [
        legacy(
            10,
            "node /srv/old-app/server.js",
            Some("/srv/old-app"),
            Some("deploy"),
        ),
        legacy(
            11,
            "node worker.js",
            Some("/srv/old-app/jobs"),
            Some("root"),
        ),
        legacy(
            12,
            "/usr/bin/node serverXjs",
            Some("/srv/old-app-2"),
            Some("deploy"),
        ),
        legacy(13, "node server.js", None, None),
    ];
    assert_eq!(
        verdicts(&loaded, &processes).await,
        vec![
            vec![true, true, false, false],
            vec![true, false, false, false],
            vec![true, false, false, true],
            vec![true, false, false, false],
        ]
    );
}

#[tokio::test]
async fn a_matcher_without_criteria_is_refused_when_the_config_loads() {
    let world = World::new();
    let path = world.write(
        "rollbridge.lua",
        &format!(
            "{PRELUDE}\nreturn {{ proxy = {{ port = 0 }}, processes = {{}}, legacyTakeover = {{ matchers = {{ match.by{{}} }} }} }}"
        ),
    );
    let error = rollbridge::config::load(&path).unwrap_err().to_string();
    assert!(
        error.contains("give at least one of cwd, cwdUnder, user or cmdline"),
        "{error}"
    );
}

#[tokio::test]
async fn match_process_reads_its_criteria_from_json_options() {
    let world = World::new();
    world.write("match.lua", r#"return require("rollbridge.match")"#);
    let config = world.write(
        "rollbridge.json",
        r#"{
          "proxy": {"port": 0},
          "processes": [
            {"id": "web", "command": "sleep 1000", "policy": "proxied", "port": {"from": 4100, "to": 4101}}
          ],
          "legacyTakeover": {"matchers": [
            {"lua": "match.lua", "fn": "process", "user": "deploy", "cmdline": ["unicorn", "master"]}
          ]}
        }"#,
    );
    let loaded = world.load(&config);
    let processes = [
        legacy(
            20,
            "unicorn master -c config.rb",
            Some("/srv/app"),
            Some("deploy"),
        ),
        legacy(21, "unicorn worker[0]", Some("/srv/app"), Some("deploy")),
        legacy(22, "unicorn master", Some("/srv/app"), Some("root")),
    ];
    assert_eq!(
        verdicts(&loaded, &processes).await,
        vec![vec![true, false, false]]
    );
}

#[test]
fn the_worked_example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/workers.lua");
    let loaded = rollbridge::config::load(&example).unwrap_or_else(|e| panic!("{e}"));
    let jobs = &loaded.config.processes[1];
    assert_eq!(jobs.replicas, 2);
    assert_eq!(jobs.lifecycle.drain_timeout_ms, 300000);
    assert!(jobs.lifecycle.quiet.is_some() && jobs.lifecycle.stop.is_some());
    assert_eq!(
        loaded
            .config
            .legacy_takeover
            .as_ref()
            .unwrap()
            .matchers
            .len(),
        2
    );
    assert!(loaded.lua.is_some());
}
