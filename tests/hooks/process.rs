//! Managed processes against real children: spawning, exit reporting, output
//! capture, crash restarts, the graceful stop sequence with its hooks, memory
//! supervision, the health loop and the built-in plugins.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rollbridge::config::hook::HookSpec;
use rollbridge::config::model::{
    DeployStrategy, GracefulStop, HealthConfig, Lifecycle, MemoryConfig, Policy, ProcessConfig,
    RestartPolicy,
};
use rollbridge::events::{EventRecord as Event, EventSink};
use rollbridge::plugins::builtin::BuiltinPlugins;
use rollbridge::plugins::builtin::health::http_url;
use rollbridge::plugins::{HookCall, ProcessInfo, Registry, Stage};
use rollbridge::process::proc_table::scan_stats;
use rollbridge::process::{
    HealthError, ManagedProcess, ProcessDefinition, ProcessState, SpawnError, StartReason,
    Supervision, group_alive, proc_table, wait_healthy,
};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep, timeout};

use crate::support::wait::{PATIENCE, eventually};

// ---------------------------------------------------------------------------
// helpers

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/process")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A real interpreter, not a version-manager shim that forks helpers.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn config(id: &str, command: &str) -> ProcessConfig {
    ProcessConfig {
        id: id.into(),
        command: command.into(),
        policy: Policy::Companion,
        deploy_strategy: DeployStrategy::Persistent,
        cwd: None,
        env: Vec::new(),
        port: None,
        health: None,
        stop_signal: "SIGTERM".into(),
        graceful_stop: GracefulStop::Millis(5000),
        lifecycle: Lifecycle::default(),
        non_blocking_drain: false,
        restart_delay_ms: 60_000,
        restart: RestartPolicy::default(),
        memory: None,
        replicas: 1,
        output_lines: 50,
        log_file: None,
    }
}

fn definition(cfg: ProcessConfig, cwd: &Path) -> ProcessDefinition {
    ProcessDefinition {
        instance_id: cfg.id.clone(),
        base_id: cfg.id.clone(),
        release_id: "v1".into(),
        release_path: cwd.to_string_lossy().into_owned(),
        revision: "abc123".into(),
        command: cfg.command.clone(),
        cwd: cwd.to_path_buf(),
        env: vec![("ROLLBRIDGE_PROCESS_ID".into(), cfg.id.clone())],
        port: None,
        replica_index: 0,
        replica_count: 1,
        config: cfg,
        log_file: None,
    }
}

/// One test's world: a temp dir, an event sink, the restart switch, and every
/// process it created (killed by process group on drop).
struct Harness {
    dir: tempfile::TempDir,
    events: EventSink,
    wants_restart: Arc<AtomicBool>,
    processes: Vec<Arc<ManagedProcess>>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            dir: tempfile::tempdir().unwrap(),
            events: EventSink::silent(),
            wants_restart: Arc::new(AtomicBool::new(false)),
            processes: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn supervision(&self) -> Supervision {
        let wants = self.wants_restart.clone();
        Supervision {
            events: self.events.clone(),
            registry: Registry::new(vec![Arc::new(BuiltinPlugins)]),
            should_restart: Arc::new(move || wants.load(Ordering::SeqCst)),
            log_files: Default::default(),
        }
    }

    fn process(&mut self, cfg: ProcessConfig) -> Arc<ManagedProcess> {
        let def = definition(cfg, self.dir.path());
        self.process_from(def)
    }

    fn process_from(&mut self, def: ProcessDefinition) -> Arc<ManagedProcess> {
        let process = ManagedProcess::new(def, self.supervision());
        self.processes.push(process.clone());
        process
    }

    fn events_named(&self, message: &str) -> Vec<Event> {
        self.events
            .recent(None)
            .into_iter()
            .filter(|e| e.message == message)
            .collect()
    }

    fn messages(&self) -> Vec<String> {
        self.events
            .recent(None)
            .into_iter()
            .map(|e| e.message)
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for process in &self.processes {
            if let Some(pgid) = process.pgid()
                && group_alive(pgid)
            {
                let _ = kill(Pid::from_raw(-pgid), Signal::SIGKILL);
            }
        }
    }
}

/// Starts a process whose command prints `ready` once its signal traps are set and
/// then runs a `sleep`; waits for both, so no signal can arrive before the trap or
/// before the sleep is there to receive it.
async fn start_ready(process: &Arc<ManagedProcess>) {
    process.start(StartReason::Deploy).await.unwrap();
    eventually("the process is ready", || {
        process.logs().iter().any(|l| l.line == "ready")
    })
    .await;
    wait_for_sleep(process).await;
}

/// Waits until a `sleep` runs in the process's group.
async fn wait_for_sleep(process: &Arc<ManagedProcess>) {
    let pgid = process.pgid().unwrap();
    eventually("a sleep runs in the group", || {
        scan_stats()
            .unwrap()
            .iter()
            .any(|s| s.pgrp == pgid && s.comm == "sleep" && s.is_live())
    })
    .await;
}

/// Runs a stop, failing the test (instead of hanging) when it never returns.
async fn stop_within_patience(process: &Arc<ManagedProcess>) {
    timeout(PATIENCE, process.stop())
        .await
        .expect("stop returned");
}

fn keys(map: &Map<String, Value>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

fn log_lines(process: &ManagedProcess) -> Vec<(String, &'static str)> {
    process
        .logs()
        .into_iter()
        .map(|l| (l.line, l.stream.as_str()))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// spawning, exit and status

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_before_the_first_start() {
    let mut h = Harness::new();
    let process = h.process(config("idle", "sleep 100"));
    let status = process.status_json();
    assert_eq!(
        keys(&status),
        vec![
            "children",
            "command",
            "cwd",
            "id",
            "logs",
            "memoryRestarts",
            "restarts",
            "state"
        ]
    );
    assert_eq!(status["restarts"], 0);
    assert_eq!(status["state"], "stopped");
    assert_eq!(process.pid(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_process_reports_pid_start_and_uptime() {
    let mut h = Harness::new();
    let process = h.process(config("worker#0", "sleep 100"));
    process.start(StartReason::Deploy).await.unwrap();
    let pid = process.pid().expect("running wrapper has a pid");
    assert_eq!(process.state(), ProcessState::Running);
    let status = process.status_json();
    assert_eq!(
        keys(&status),
        vec![
            "children",
            "command",
            "cwd",
            "id",
            "lastStartReason",
            "logs",
            "memoryRestarts",
            "pid",
            "restarts",
            "startedAt",
            "state",
            "uptimeMs"
        ]
    );
    assert_eq!(status["pid"], pid);
    assert_eq!(status["lastStartReason"], "deploy");
    assert_eq!(status["command"], "sleep 100");
    assert!(status["uptimeMs"].as_u64().is_some());
    // The wrapper leads its own session and group.
    assert_eq!(
        nix::unistd::getpgid(Some(Pid::from_raw(pid)))
            .unwrap()
            .as_raw(),
        pid
    );
    assert_eq!(
        nix::unistd::getsid(Some(Pid::from_raw(pid)))
            .unwrap()
            .as_raw(),
        pid
    );

    let started = h.events_named("process started");
    assert_eq!(started.len(), 1);
    assert_eq!(
        Value::Object(started[0].data.clone()),
        json!({"processId": "worker#0", "releaseId": "v1", "command": "sleep 100",
               "id": "worker#0", "pid": pid, "reason": "deploy"})
    );
    // A second start while running does nothing.
    process.start(StartReason::Manual).await.unwrap();
    assert_eq!(process.pid(), Some(pid));
    stop_within_patience(&process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_is_recorded_and_reported() {
    let mut h = Harness::new();
    let process = h.process(config("once", "echo hi; exit 3"));
    process.start(StartReason::Manual).await.unwrap();
    eventually("the wrapper exits", || {
        process.state() == ProcessState::Failed
    })
    .await;
    let status = process.status_json();
    assert_eq!(status["exitCode"], 3);
    assert_eq!(status["exitSignal"], Value::Null);
    assert_eq!(status["lastStartReason"], "manual");
    assert!(status.get("pid").is_none());
    assert!(status.get("uptimeMs").is_none());
    assert!(status.get("startedAt").is_some());
    // The state is published a moment before its event is recorded.
    eventually("the exit event", || {
        !h.events_named("process exited").is_empty()
    })
    .await;
    let exited = h.events_named("process exited");
    assert_eq!(
        Value::Object(exited[0].data.clone()),
        json!({"processId": "once", "releaseId": "v1", "code": 3, "id": "once", "signal": null})
    );
    // Nobody wants it restarted: it stays failed.
    assert_eq!(process.restarts(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_process_reports_the_signal_that_ended_it() {
    let mut h = Harness::new();
    let process = h.process(config("sleeper", "sleep 100"));
    process.start(StartReason::Deploy).await.unwrap();
    stop_within_patience(&process).await;
    assert_eq!(process.state(), ProcessState::Stopped);
    let status = process.status_json();
    assert_eq!(status["exitCode"], Value::Null);
    assert_eq!(status["exitSignal"], "SIGTERM");
    assert_eq!(
        keys(&status),
        vec![
            "children",
            "command",
            "cwd",
            "exitCode",
            "exitSignal",
            "id",
            "lastStartReason",
            "logs",
            "memoryRestarts",
            "restarts",
            "startedAt",
            "state"
        ]
    );
    // Starting again clears the exit fields.
    process.start(StartReason::Manual).await.unwrap();
    let status = process.status_json();
    assert!(status.get("exitCode").is_none() && status.get("exitSignal").is_none());
    stop_within_patience(&process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_and_working_directory_reach_the_child() {
    let mut h = Harness::new();
    let out = h.path("env.txt");
    let mut def = definition(
        config(
            "envy",
            &format!("pwd > {0}; echo \"$GREETING\" >> {0}", out.display()),
        ),
        h.dir.path(),
    );
    def.env.push(("GREETING".into(), "hello there".into()));
    let process = h.process_from(def);
    process.start(StartReason::Deploy).await.unwrap();
    eventually("the child exits", || {
        process.state() == ProcessState::Failed
    })
    .await;
    let expected = format!(
        "{}\nhello there\n",
        h.dir.path().canonicalize().unwrap().display()
    );
    assert_eq!(read(&out), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_spawn_can_be_retried_once_the_directory_exists() {
    let mut h = Harness::new();
    let missing = h.path("not-yet");
    let def = definition(config("web", "sleep 100"), &missing);
    let process = h.process_from(def);
    let error = process.start(StartReason::Deploy).await.unwrap_err();
    assert!(matches!(error, SpawnError::MissingCwd { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );
    assert_eq!(process.state(), ProcessState::Failed);
    assert!(process.status_json().get("lastStartReason").is_none());
    assert!(h.events_named("process started").is_empty());

    std::fs::create_dir(&missing).unwrap();
    process.start(StartReason::Manual).await.unwrap();
    assert_eq!(process.state(), ProcessState::Running);
    assert_eq!(process.status_json()["lastStartReason"], "manual");
    stop_within_patience(&process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redefine_takes_effect_at_the_next_start() {
    let mut h = Harness::new();
    let process = h.process(config("svc", "sleep 100"));
    process.start(StartReason::Deploy).await.unwrap();
    let first_pid = process.pid().unwrap();
    let mut def = process.definition();
    def.command = "sleep 200".into();
    def.release_id = "v2".into();
    process.redefine(def);
    assert_eq!(process.status_json()["command"], "sleep 200");
    assert_eq!(process.pid(), Some(first_pid), "the running child is kept");
    stop_within_patience(&process).await;
    process.start(StartReason::Manual).await.unwrap();
    let started = h.events_named("process started");
    assert_eq!(started[1].data["command"], "sleep 200");
    assert_eq!(started[1].data["releaseId"], "v2");
    let cmdline = read(Path::new(&format!(
        "/proc/{}/cmdline",
        process.pid().unwrap()
    )));
    assert!(cmdline.contains("sleep 200"), "{cmdline:?}");
    stop_within_patience(&process).await;
}

// ---------------------------------------------------------------------------
// output capture

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_written_in_pieces_are_stored_whole() {
    let mut h = Harness::new();
    let process = h.process(config(
        "talker",
        "printf 'hel'; sleep 0.2; printf 'lo\\r\\n\\nwor'; sleep 0.2; printf 'ld\\n'; \
         printf 'one\\ntwo\\n' >&2; printf 'no newline'",
    ));
    process.start(StartReason::Deploy).await.unwrap();
    eventually("all output captured", || process.logs().len() == 5).await;
    let mut lines = log_lines(&process);
    // stdout and stderr are read independently; compare per stream.
    lines.sort_by_key(|(_, stream)| *stream);
    assert_eq!(
        lines,
        vec![
            ("one".to_string(), "stderr"),
            ("two".to_string(), "stderr"),
            ("hello".to_string(), "stdout"),
            ("world".to_string(), "stdout"),
            ("no newline".to_string(), "stdout"),
        ]
    );
    let log = &process.status_json()["logs"][0];
    assert_eq!(keys(log.as_object().unwrap()), vec!["at", "line", "stream"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_output_lines_are_kept() {
    let mut h = Harness::new();
    let mut cfg = config("chatty", "printf 'a\\nb\\nc\\nd\\ne\\n'; sleep 100");
    cfg.output_lines = 3;
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    eventually("the last line arrives", || {
        process.logs().last().map(|l| l.line.clone()) == Some("e".into())
    })
    .await;
    assert_eq!(
        log_lines(&process),
        vec![
            ("c".to_string(), "stdout"),
            ("d".to_string(), "stdout"),
            ("e".to_string(), "stdout")
        ]
    );
    stop_within_patience(&process).await;
}

// ---------------------------------------------------------------------------
// crash restarts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_restarts_stop_at_the_budget() {
    let mut h = Harness::new();
    h.wants_restart.store(true, Ordering::SeqCst);
    let mut cfg = config("crasher", "exit 1");
    cfg.restart_delay_ms = 10;
    cfg.restart = RestartPolicy {
        max_restarts: Some(2),
        window_ms: 60_000,
        backoff_factor: 2.0,
        max_delay_ms: 0,
    };
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    eventually("the budget runs out", || {
        !h.events_named("restart limit reached").is_empty()
    })
    .await;
    assert_eq!(process.restarts(), 2);
    assert_eq!(process.state(), ProcessState::Failed);
    assert_eq!(process.status_json()["lastStartReason"], "crash");
    let limit = h.events_named("restart limit reached");
    assert_eq!(
        Value::Object(limit[0].data.clone()),
        json!({"processId": "crasher", "releaseId": "v1", "id": "crasher",
               "maxRestarts": 2, "windowMs": 60000})
    );
    let reasons: Vec<Value> = h
        .events_named("process started")
        .iter()
        .map(|e| e.data["reason"].clone())
        .collect();
    assert_eq!(reasons, vec!["deploy", "crash", "crash"]);
    // Settled: no restart is pending.
    sleep(Duration::from_millis(200)).await;
    assert_eq!(h.events_named("process started").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_start_does_not_refill_the_restart_budget() {
    let mut h = Harness::new();
    h.wants_restart.store(true, Ordering::SeqCst);
    let mut cfg = config("spent", "exit 1");
    cfg.restart_delay_ms = 10;
    cfg.restart.max_restarts = Some(1);
    cfg.restart.window_ms = 600_000;
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    eventually("the budget runs out", || {
        h.events_named("restart limit reached").len() == 1
    })
    .await;
    assert_eq!(process.restarts(), 1);
    process.start(StartReason::Manual).await.unwrap();
    eventually("it gives up again at once", || {
        h.events_named("restart limit reached").len() == 2
    })
    .await;
    assert_eq!(process.restarts(), 1);
    assert_eq!(process.state(), ProcessState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_restarts_keep_counting() {
    let mut h = Harness::new();
    h.wants_restart.store(true, Ordering::SeqCst);
    let mut cfg = config("flaky", "exit 1");
    cfg.restart_delay_ms = 20;
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    eventually("several automatic restarts", || process.restarts() >= 3).await;
    h.wants_restart.store(false, Ordering::SeqCst);
    stop_within_patience(&process).await;
    let count = process.restarts();
    sleep(Duration::from_millis(200)).await;
    assert_eq!(
        process.restarts(),
        count,
        "stop cancelled any pending restart"
    );
    assert_eq!(process.state(), ProcessState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_max_restarts_disables_automatic_restarts() {
    let mut h = Harness::new();
    h.wants_restart.store(true, Ordering::SeqCst);
    let mut cfg = config("once", "exit 1");
    cfg.restart_delay_ms = 1;
    cfg.restart.max_restarts = Some(0);
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    eventually("the limit is reported", || {
        !h.events_named("restart limit reached").is_empty()
    })
    .await;
    assert_eq!(process.state(), ProcessState::Failed);
    assert_eq!(process.restarts(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_restart_is_cancelled_by_stop() {
    let mut h = Harness::new();
    h.wants_restart.store(true, Ordering::SeqCst);
    let mut cfg = config("slowpoke", "exit 1");
    cfg.restart_delay_ms = 300;
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    eventually("it crashed", || process.state() == ProcessState::Failed).await;
    stop_within_patience(&process).await;
    sleep(Duration::from_millis(600)).await;
    assert_eq!(process.restarts(), 0);
    assert_eq!(h.events_named("process started").len(), 1);
    assert_eq!(process.state(), ProcessState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_crash_restart_is_reported() {
    let mut h = Harness::new();
    h.wants_restart.store(true, Ordering::SeqCst);
    let workdir = h.path("work");
    std::fs::create_dir(&workdir).unwrap();
    let mut cfg = config("fragile", "sleep 0.2; exit 1");
    cfg.restart_delay_ms = 10;
    let process = h.process_from(definition(cfg, &workdir));
    process.start(StartReason::Deploy).await.unwrap();
    std::fs::remove_dir(&workdir).unwrap();
    eventually("the restart fails", || {
        !h.events_named("process restart failed").is_empty()
    })
    .await;
    let failed = &h.events_named("process restart failed")[0];
    assert_eq!(
        keys(&failed.data),
        vec!["processId", "releaseId", "error", "id"]
    );
    assert!(
        failed.data["error"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    assert_eq!(process.restarts(), 1);
    assert_eq!(process.state(), ProcessState::Failed);
}

// ---------------------------------------------------------------------------
// graceful stop

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_terminates_the_whole_group() {
    let mut h = Harness::new();
    let process = h.process(config("family", "sleep 300 & sleep 300 & wait"));
    process.start(StartReason::Deploy).await.unwrap();
    let pgid = process.pid().unwrap();
    eventually("both children run", || {
        proc_table()
            .unwrap()
            .iter()
            .filter(|p| p.ppid == pgid && p.cmdline == "sleep 300")
            .count()
            == 2
    })
    .await;
    stop_within_patience(&process).await;
    assert!(!group_alive(pgid));
    assert_eq!(process.state(), ProcessState::Stopped);
    assert!(
        h.events_named("process stop timed out; sending SIGKILL")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_ignores_the_stop_signal_is_killed_after_the_window() {
    let mut h = Harness::new();
    let mut cfg = config("stubborn", "trap '' TERM; echo ready; sleep 300");
    cfg.graceful_stop = GracefulStop::Millis(300);
    let process = h.process(cfg);
    start_ready(&process).await;
    let pgid = process.pid().unwrap();
    stop_within_patience(&process).await;
    assert!(!group_alive(pgid));
    let timed_out = h.events_named("process stop timed out; sending SIGKILL");
    assert_eq!(
        Value::Object(timed_out[0].data.clone()),
        json!({"processId": "stubborn", "releaseId": "v1", "id": "stubborn", "pid": pgid})
    );
    assert_eq!(process.status_json()["exitSignal"], "SIGKILL");
    assert_eq!(process.state(), ProcessState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_waits_for_descendants_that_outlive_the_shell() {
    let mut h = Harness::new();
    let marker = h.path("late.txt");
    let command = format!(
        "{} {} {} 0.3 & wait",
        python(),
        fixture("term_late.py"),
        marker.display()
    );
    let process = h.process(config("parent", &command));
    process.start(StartReason::Deploy).await.unwrap();
    let pgid = process.pid().unwrap();
    eventually("the grandchild is ready", || {
        process.logs().iter().any(|l| l.line == "waiting for TERM")
    })
    .await;
    stop_within_patience(&process).await;
    assert_eq!(
        read(&marker),
        "late exit\n",
        "stop returned before the grandchild exited"
    );
    assert!(!group_alive(pgid));
    assert!(
        h.events_named("process stop timed out; sending SIGKILL")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grandchild_that_ignores_the_signal_is_killed_too() {
    let mut h = Harness::new();
    let mut cfg = config("orphaner", "(trap '' TERM; echo ready; sleep 300) & exit 0");
    cfg.graceful_stop = GracefulStop::Millis(200);
    let process = h.process(cfg);
    start_ready(&process).await;
    let pgid = process.pgid().unwrap();
    eventually("the wrapper exits", || process.pid().is_none()).await;
    assert!(group_alive(pgid), "the grandchild lives on in the group");
    stop_within_patience(&process).await;
    assert!(!group_alive(pgid));
    assert_eq!(
        h.events_named("process stop timed out; sending SIGKILL")[0].data["pid"],
        pgid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indefinite_stop_waits_without_sigkill() {
    let mut h = Harness::new();
    let marker = h.path("done.txt");
    let mut cfg = config(
        "patient",
        &format!(
            "trap 'sleep 0.5; echo done > {}; exit 0' TERM; echo ready; sleep 300 & wait",
            marker.display()
        ),
    );
    cfg.graceful_stop = GracefulStop::Indefinite;
    let process = h.process(cfg);
    start_ready(&process).await;
    stop_within_patience(&process).await;
    assert_eq!(read(&marker), "done\n");
    assert!(
        h.events_named("process stop timed out; sending SIGKILL")
            .is_empty()
    );
    assert_eq!(process.status_json()["exitCode"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_stop_signal_is_sent() {
    let mut h = Harness::new();
    let marker = h.path("signal.txt");
    let mut cfg = config(
        "interruptible",
        &format!(
            "trap 'echo INT > {}; exit 0' INT; echo ready; sleep 300",
            marker.display()
        ),
    );
    cfg.stop_signal = "SIGINT".into();
    cfg.graceful_stop = GracefulStop::Millis(60_000);
    let process = h.process(cfg);
    start_ready(&process).await;
    stop_within_patience(&process).await;
    assert_eq!(read(&marker), "INT\n");
    assert_eq!(process.status_json()["exitCode"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_no_child_just_marks_stopped() {
    let mut h = Harness::new();
    let process = h.process(config("never", "sleep 1"));
    stop_within_patience(&process).await;
    assert_eq!(process.state(), ProcessState::Stopped);
    assert!(h.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stops_share_one_run() {
    let mut h = Harness::new();
    let log = h.path("quiet.log");
    let mut cfg = config("shared", "sleep 300");
    cfg.lifecycle.quiet = Some(HookSpec::Command(format!(
        "echo quiet >> {}; sleep 0.2",
        log.display()
    )));
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    let (a, b, c) = (process.clone(), process.clone(), process.clone());
    timeout(PATIENCE, async {
        tokio::join!(a.stop(), b.stop(), c.quiesce());
    })
    .await
    .unwrap();
    assert_eq!(read(&log), "quiet\n");
    assert_eq!(process.state(), ProcessState::Stopped);
    assert_eq!(h.events_named("process exited").len(), 1);
}

// ---------------------------------------------------------------------------
// lifecycle hooks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_drain_and_stop_hooks_run_in_order_with_the_pid() {
    let mut h = Harness::new();
    let log = h.path("hooks.log");
    let mut cfg = config("hooked", "sleep 300");
    cfg.lifecycle = Lifecycle {
        quiet: Some(HookSpec::Command(format!(
            "echo quiet:$ROLLBRIDGE_PID >> {}",
            log.display()
        ))),
        drain: Some(HookSpec::Command(format!(
            "echo drain:$ROLLBRIDGE_PID >> {}",
            log.display()
        ))),
        stop: Some(HookSpec::Command(format!(
            "echo stop:$ROLLBRIDGE_PID >> {}; kill -KILL -$ROLLBRIDGE_PID",
            log.display()
        ))),
        drain_timeout_ms: 2000,
    };
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    let pid = process.pid().unwrap();
    stop_within_patience(&process).await;
    assert_eq!(
        read(&log),
        format!("quiet:{pid}\ndrain:{pid}\nstop:{pid}\n")
    );
    assert_eq!(process.state(), ProcessState::Stopped);
    // The successful stop hook replaced the stop signal: the hook's SIGKILL is
    // what ended the shell.
    assert_eq!(process.status_json()["exitSignal"], "SIGKILL");
    assert!(
        h.events_named("process stop timed out; sending SIGKILL")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_hook_gets_the_retained_group_after_the_shell_died() {
    let mut h = Harness::new();
    let seen = h.path("pgid.txt");
    let mut cfg = config("split", "sleep 300 & wait");
    cfg.lifecycle.quiet = Some(HookSpec::Command("kill -KILL $ROLLBRIDGE_PID".into()));
    cfg.lifecycle.stop = Some(HookSpec::Command(format!(
        "echo $ROLLBRIDGE_PID > {}; kill -KILL -$ROLLBRIDGE_PID",
        seen.display()
    )));
    cfg.graceful_stop = GracefulStop::Millis(5000);
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    wait_for_sleep(&process).await;
    let pgid = process.pid().unwrap();
    stop_within_patience(&process).await;
    assert_eq!(read(&seen).trim(), pgid.to_string());
    assert!(!group_alive(pgid));
    assert!(
        h.events_named("process stop timed out; sending SIGKILL")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_failures_are_reported_and_the_stop_goes_on() {
    let mut h = Harness::new();
    let mut cfg = config("bumpy", "sleep 300");
    cfg.lifecycle = Lifecycle {
        quiet: Some(HookSpec::Command("exit 3".into())),
        drain: Some(HookSpec::Command("sleep 30".into())),
        stop: Some(HookSpec::Command("kill -KILL $$".into())),
        drain_timeout_ms: 300,
    };
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    let pgid = process.pid().unwrap();
    stop_within_patience(&process).await;
    assert!(!group_alive(pgid));
    let data = |message: &str| Value::Object(h.events_named(message)[0].data.clone());
    assert_eq!(
        data("quiet command exited non-zero"),
        json!({"processId": "bumpy", "releaseId": "v1", "code": 3, "id": "bumpy"})
    );
    assert_eq!(
        data("drain command timed out"),
        json!({"processId": "bumpy", "releaseId": "v1", "id": "bumpy", "timeoutMs": 300})
    );
    assert_eq!(
        data("stop command exited on signal"),
        json!({"processId": "bumpy", "releaseId": "v1", "id": "bumpy", "signal": "SIGKILL"})
    );
    // The failed stop hook made the stop signal go out at once.
    assert_eq!(process.status_json()["exitSignal"], "SIGTERM");
    assert!(
        h.events_named("process stop timed out; sending SIGKILL")
            .is_empty()
    );
    assert!(h.events_named("hook failed").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_cannot_start_is_reported() {
    let mut h = Harness::new();
    let workdir = h.path("gone");
    std::fs::create_dir(&workdir).unwrap();
    let mut cfg = config("homeless", "sleep 300");
    cfg.lifecycle.quiet = Some(HookSpec::Command("true".into()));
    let process = h.process_from(definition(cfg, &workdir));
    process.start(StartReason::Deploy).await.unwrap();
    std::fs::remove_dir(&workdir).unwrap();
    stop_within_patience(&process).await;
    let failed = &h.events_named("quiet command failed")[0];
    assert_eq!(
        keys(&failed.data),
        vec!["processId", "releaseId", "error", "id"]
    );
    assert_eq!(process.state(), ProcessState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_plugins_give_hook_failed_and_the_stop_signal() {
    let mut h = Harness::new();
    let mut cfg = config("plugged", "sleep 300");
    cfg.lifecycle.stop = Some(HookSpec::Plugin {
        name: "no-such-plugin".into(),
        options: Map::new(),
    });
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    stop_within_patience(&process).await;
    let failed = &h.events_named("hook failed")[0];
    assert_eq!(
        keys(&failed.data),
        vec!["processId", "releaseId", "stage", "plugin", "reason"]
    );
    assert_eq!(failed.data["stage"], "stop");
    assert_eq!(failed.data["plugin"], "no-such-plugin");
    assert_eq!(process.status_json()["exitSignal"], "SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_and_wait_exit_plugins() {
    let mut h = Harness::new();
    let marker = h.path("usr1.txt");
    let mut cfg = config(
        "polite",
        &format!(
            "trap 'echo USR1 > {}; exit 0' USR1; echo ready; sleep 300 & wait",
            marker.display()
        ),
    );
    let mut options = Map::new();
    options.insert("signal".into(), json!("USR1"));
    cfg.lifecycle.quiet = Some(HookSpec::Plugin {
        name: "signal".into(),
        options,
    });
    cfg.lifecycle.drain = Some(HookSpec::Plugin {
        name: "wait-exit".into(),
        options: Map::new(),
    });
    // Far beyond the test's patience: the stop only returns in time if wait-exit
    // ends as soon as the group is gone.
    cfg.lifecycle.drain_timeout_ms = 120_000;
    let process = h.process(cfg);
    start_ready(&process).await;
    let pgid = process.pid().unwrap();
    stop_within_patience(&process).await;
    assert_eq!(read(&marker), "USR1\n");
    assert!(!group_alive(pgid));
    assert!(
        h.events_named("hook failed").is_empty(),
        "{:?}",
        h.messages()
    );
    assert_eq!(process.status_json()["exitCode"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exit_on_the_stop_stage_falls_back_to_the_signal() {
    let mut h = Harness::new();
    let mut cfg = config("lingering", "sleep 300");
    cfg.lifecycle.stop = Some(plugin("wait-exit"));
    cfg.graceful_stop = GracefulStop::Millis(200);
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    stop_within_patience(&process).await;
    let failed = &h.events_named("hook failed")[0];
    assert_eq!(failed.data["plugin"], "wait-exit");
    assert_eq!(process.status_json()["exitSignal"], "SIGTERM");
}

// ---------------------------------------------------------------------------
// memory supervision

fn memory_config(limit: u64, warn: u64) -> MemoryConfig {
    MemoryConfig {
        limit_bytes: limit,
        warn_bytes: warn,
        check_interval_ms: 50,
    }
}

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_the_memory_limit_restarts_the_process() {
    let mut h = Harness::new();
    h.wants_restart.store(true, Ordering::SeqCst);
    let mut cfg = config(
        "hungry",
        &format!("{} {} 64", python(), fixture("alloc.py")),
    );
    cfg.memory = Some(memory_config(32 * MIB, 0));
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    let first_pid = process.pid().unwrap();
    eventually("a memory restart", || process.memory_restarts() >= 1).await;
    eventually("running again", || process.state() == ProcessState::Running).await;
    assert_ne!(process.pid(), Some(first_pid));
    assert!(!group_alive(first_pid));
    let exceeded = &h.events_named("memory limit exceeded")[0];
    assert_eq!(
        keys(&exceeded.data),
        vec!["processId", "releaseId", "id", "limitBytes", "rssBytes"]
    );
    assert!(exceeded.data["rssBytes"].as_u64().unwrap() > 32 * MIB);
    let status = process.status_json();
    assert_eq!(status["lastStartReason"], "memory");
    assert!(status.get("lastMemoryRestartAt").is_some());
    assert_eq!(
        status["restarts"], 0,
        "memory restarts are not crash restarts"
    );
    // The restarted process is running a moment before its start is recorded.
    eventually("the restart's events", || {
        let messages = h.messages();
        messages
            .iter()
            .position(|m| m == "memory limit exceeded")
            .is_some_and(|at| messages.len() >= at + 3)
    })
    .await;
    let messages = h.messages();
    let at = messages
        .iter()
        .position(|m| m == "memory limit exceeded")
        .unwrap();
    assert_eq!(
        &messages[at..at + 3],
        ["memory limit exceeded", "process exited", "process started"]
    );
    h.wants_restart.store(false, Ordering::SeqCst);
    stop_within_patience(&process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_warning_is_given_once_and_children_are_listed() {
    let mut h = Harness::new();
    let mut cfg = config("heavy", &format!("{} {} 48", python(), fixture("alloc.py")));
    cfg.memory = Some(memory_config(4096 * MIB, 16 * MIB));
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    let pid = process.pid().unwrap();
    eventually("the allocation is done", || {
        process.logs().iter().any(|l| l.line == "allocated 48 MiB")
    })
    .await;
    eventually("a warning", || !h.events_named("memory warning").is_empty()).await;
    // Several more samples above the threshold stay quiet.
    sleep(Duration::from_millis(300)).await;
    let warnings = h.events_named("memory warning");
    assert_eq!(warnings.len(), 1);
    assert_eq!(
        keys(&warnings[0].data),
        vec!["processId", "releaseId", "id", "rssBytes", "warnBytes"]
    );
    let status = process.status_json();
    assert!(status["rssBytes"].as_u64().unwrap() > 16 * MIB);
    let children = status["children"].as_array().unwrap();
    assert!(children.iter().any(|c| c["pid"] == pid), "{children:?}");
    assert!(
        children
            .iter()
            .any(|c| c["command"].as_str().unwrap().starts_with("python")
                && c["rssBytes"].as_u64().unwrap() > 16 * MIB),
        "{children:?}"
    );
    stop_within_patience(&process).await;
    let status = process.status_json();
    assert_eq!(status["children"], json!([]));
    assert!(status.get("rssBytes").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_restart_does_not_respawn_when_the_owner_declines() {
    let mut h = Harness::new();
    let mut cfg = config("declined", "sleep 300");
    cfg.memory = Some(memory_config(4096 * MIB, 0));
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    timeout(PATIENCE, process.memory_restart()).await.unwrap();
    assert_eq!(process.state(), ProcessState::Stopped);
    assert_eq!(process.memory_restarts(), 0);
    h.wants_restart.store(true, Ordering::SeqCst);
    timeout(PATIENCE, process.memory_restart()).await.unwrap();
    assert_eq!(process.state(), ProcessState::Running);
    assert_eq!(process.memory_restarts(), 1);
    h.wants_restart.store(false, Ordering::SeqCst);
    stop_within_patience(&process).await;
}

// ---------------------------------------------------------------------------
// health checks

fn health(timeout_ms: u64, interval_ms: u64, start_delay_ms: u64) -> HealthConfig {
    HealthConfig {
        path: "/ping".into(),
        timeout_ms,
        interval_ms,
        start_delay_ms,
        check: None,
    }
}

fn probe_call(port: u16, options: Value, cwd: &Path) -> HookCall {
    HookCall {
        stage: Stage::Health,
        process: ProcessInfo {
            id: "web".into(),
            instance_id: "web".into(),
            pid: None,
            pgid: None,
            release_id: "v1".into(),
            release_path: cwd.to_string_lossy().into_owned(),
            revision: "abc".into(),
            port: Some(port),
            policy: Policy::Proxied,
            replica_index: 0,
            replica_count: 1,
            env: Vec::new(),
            cwd: cwd.to_path_buf(),
        },
        deadline: Instant::now() + Duration::from_secs(3600),
        options: options.as_object().cloned().unwrap_or_default(),
        events: EventSink::silent(),
    }
}

fn registry() -> Registry {
    Registry::new(vec![Arc::new(BuiltinPlugins)])
}

fn plugin(name: &str) -> HookSpec {
    HookSpec::Plugin {
        name: name.into(),
        options: Map::new(),
    }
}

/// A tiny HTTP server: answers every request with `status`, or holds the
/// connection open without answering when `status` is 0. Records when each
/// connection arrived.
async fn http_server(status: u16) -> (u16, Arc<std::sync::Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            seen.lock().unwrap().push(Instant::now());
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                if status == 0 {
                    sleep(Duration::from_secs(3600)).await;
                    return;
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nlocation: /elsewhere\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, arrivals)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_health_passes_on_2xx_after_the_start_delay() {
    let dir = tempfile::tempdir().unwrap();
    let (port, arrivals) = http_server(204).await;
    let http = registry().health(&plugin("http")).unwrap();
    let began = Instant::now();
    let call = probe_call(port, json!({"path": "/ping"}), dir.path());
    wait_healthy(http, call, &health(5000, 50, 300), "the web process")
        .await
        .unwrap();
    let first = arrivals.lock().unwrap()[0];
    assert!(first >= began + Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_start_delay_the_first_probe_does_not_wait_for_an_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (port, arrivals) = http_server(200).await;
    let http = registry().health(&plugin("http")).unwrap();
    // With a one-hour interval, only a probe sent at once can pass in time.
    let hour_long = health(3_600_000, 3_600_000, 0);
    let check = wait_healthy(
        http,
        probe_call(port, json!({"path": "/ping"}), dir.path()),
        &hour_long,
        "the web process",
    );
    timeout(PATIENCE, check).await.unwrap().unwrap();
    assert_eq!(arrivals.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_health_does_not_follow_redirects() {
    let (url, error) = health_error_for_status(302).await;
    assert_eq!(error, format!("Health check failed for {url}: HTTP 302"));
}

/// The error of an HTTP health check of `/ping` against a server that always
/// answers `status`: the probed URL and the message.
async fn health_error_for_status(status: u16) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (port, _) = http_server(status).await;
    let http = registry().health(&plugin("http")).unwrap();
    let url = http_url("127.0.0.1", port, "/ping");
    let error = wait_healthy(
        http,
        probe_call(port, json!({"path": "/ping"}), dir.path()),
        &health(200, 50, 0),
        &url,
    )
    .await
    .unwrap_err();
    (url, error.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_cannot_hold_the_loop_past_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (port, arrivals) = http_server(0).await;
    let http = registry().health(&plugin("http")).unwrap();
    let began = Instant::now();
    let error = timeout(
        PATIENCE,
        wait_healthy(
            http,
            probe_call(port, json!({}), dir.path()),
            &health(1500, 100, 0),
            "hung",
        ),
    )
    .await
    .expect("the loop ended")
    .unwrap_err();
    assert!(began.elapsed() >= Duration::from_millis(1500));
    // The port accepted the probe's connection: that is a timeout, not silence.
    assert!(error.detail.starts_with("timed out after "), "{error}");
    assert!(
        error
            .detail
            .ends_with("ms (the port accepted the connection, but no HTTP response arrived)"),
        "{error}"
    );
    assert_eq!(
        arrivals.lock().unwrap().len(),
        1,
        "one probe used all the time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_read_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    for name in ["http", "tcp"] {
        let probe = registry().health(&plugin(name)).unwrap();
        let error: HealthError = wait_healthy(
            probe,
            probe_call(port, json!({}), dir.path()),
            &health(100, 20, 0),
            "closed port",
        )
        .await
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "Health check failed for closed port: connection refused"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_health_passes_once_something_listens() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tcp = registry().health(&plugin("tcp")).unwrap();
    wait_healthy(
        tcp,
        probe_call(port, json!({"host": "127.0.0.1"}), dir.path()),
        &health(2000, 20, 0),
        "tcp",
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_hosts_work_when_available() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        return; // no IPv6 loopback on this machine
    };
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind(("::1", port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 1024];
            let _ = socket.read(&mut buffer).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let http = registry().health(&plugin("http")).unwrap();
    wait_healthy(
        http,
        probe_call(port, json!({"host": "::1"}), dir.path()),
        &health(2000, 20, 0),
        &http_url("::1", port, "/"),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_health_uses_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ready");
    let check = HookSpec::Command(format!("test -e {}", flag.display()));
    let probe = registry().health(&check).unwrap();
    let error = wait_healthy(
        probe.clone(),
        probe_call(1, json!({}), dir.path()),
        &health(150, 20, 0),
        "ready file",
    )
    .await
    .unwrap_err();
    assert_eq!(error.detail, "command exited with code 1");
    std::fs::write(&flag, "").unwrap();
    wait_healthy(
        probe,
        probe_call(1, json!({}), dir.path()),
        &health(2000, 20, 0),
        "ready file",
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_one_probe_runs_even_without_time() {
    let dir = tempfile::tempdir().unwrap();
    let (port, arrivals) = http_server(200).await;
    let http = registry().health(&plugin("http")).unwrap();
    wait_healthy(
        http,
        probe_call(port, json!({}), dir.path()),
        &health(0, 0, 0),
        "instant",
    )
    .await
    .unwrap();
    assert_eq!(arrivals.lock().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// matchers over the process table

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmdline_matcher_finds_a_process_by_its_arguments() {
    let unique = format!(
        "{}.{}",
        3000 + std::process::id() % 1000,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let child = KillOnDrop(
        std::process::Command::new("sleep")
            .arg(&unique)
            .spawn()
            .unwrap(),
    );
    let mut options = Map::new();
    options.insert("includes".into(), json!(["sleep", unique]));
    let matcher = registry()
        .matcher(&HookSpec::Plugin {
            name: "cmdline".into(),
            options,
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut found = Vec::new();
    for process in proc_table().unwrap() {
        if matcher.matches(process.clone(), deadline).await.unwrap() {
            found.push(process);
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].pid, child.0.id() as i32);
    assert_eq!(found[0].ppid, std::process::id() as i32);
    assert_eq!(found[0].cmdline, format!("sleep {unique}"));
    assert!(found[0].cwd.is_some());
}

#[test]
fn builtin_plugin_names_are_listed() {
    let names = registry().plugin_names();
    for name in [
        "command",
        "signal",
        "wait-exit",
        "http",
        "tcp",
        "cmdline",
        "screen",
    ] {
        assert!(names.iter().any(|n| n == name), "{name}");
    }
    assert!(registry().matcher(&plugin("http")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_says_the_app_answers_but_lacks_the_route_and_how_to_set_it() {
    let (url, error) = health_error_for_status(404).await;
    assert_eq!(
        error,
        format!(
            "Health check failed for {url}: HTTP 404 (the app answers but has no route /ping; set health.path of the process, or proxy.healthPath for every process, to a route that answers 2xx)"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_recorded_for_an_upgrade_starts_nothing_until_the_upgrade_is_abandoned() {
    let mut h = Harness::new();
    h.wants_restart.store(true, Ordering::SeqCst);
    let gate = h.path("crash-now");
    let command = format!(
        "while [ ! -e '{}' ]; do sleep 0.01; done; exit 1",
        gate.display()
    );
    let mut cfg = config("recorded", &command);
    cfg.restart_delay_ms = 10;
    let process = h.process(cfg);
    process.start(StartReason::Deploy).await.unwrap();
    eventually("it runs", || process.pid().is_some()).await;
    // Recorded in a live upgrade's handover: the next image would not know a
    // child started after this.
    let (_record, _descriptors) = process.handover().unwrap();
    std::fs::write(&gate, "").unwrap();
    eventually("it crashed", || process.state() == ProcessState::Failed).await;
    // Its crash restart is due after 10 ms; nothing may start in this window.
    sleep(Duration::from_millis(300)).await;
    assert_eq!(process.pid(), None);
    assert_eq!(process.restarts(), 0);
    assert_eq!(h.events_named("process started").len(), 1);
    // The upgrade did not happen: the restart is made after all.
    std::fs::remove_file(&gate).unwrap();
    process.handover_abandoned();
    // (Waits for the event: the state is published a moment before it.)
    eventually("restarted", || h.events_named("process started").len() == 2).await;
    assert!(process.pid().is_some());
    assert_eq!(process.restarts(), 1);
    stop_within_patience(&process).await;
}
