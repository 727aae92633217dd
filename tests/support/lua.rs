//! Shared helpers for the Lua hook tests: configs in temp dirs, real process
//! groups killed on drop, hook calls with deadlines.

#![allow(dead_code)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rollbridge::config::hook::HookSpec;
use rollbridge::config::model::Policy;
use rollbridge::config::{LoadOptions, LoadedConfig, load_with};
use rollbridge::events::{EventRecord as Event, EventSink};
use rollbridge::lua::{Limits, LuaPlugins};
use rollbridge::plugins::builtin::BuiltinPlugins;
use rollbridge::plugins::{HookCall, ProcessInfo, Registry, Stage};
use rollbridge::process::spawn::session_shell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub use super::host::pid_alive;
pub use super::wait::*;

/// A process group started for a test, killed (whole group) on drop.
pub struct Group {
    pub pgid: i32,
    child: Option<tokio::process::Child>,
}

impl Group {
    /// Starts `/bin/sh -c <command>` as the leader of a new session in `cwd`.
    pub fn start(command: &str, cwd: &Path) -> Group {
        let child = session_shell(command)
            .current_dir(cwd)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn test process");
        let pgid = child.id().expect("pid") as i32;
        Group {
            pgid,
            child: Some(child),
        }
    }

    /// Waits (polling) until the leader has exited and been reaped.
    pub async fn wait_leader(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        tokio::time::timeout(PATIENCE, child.wait())
            .await
            .ok()?
            .ok()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(-self.pgid), Signal::SIGKILL);
    }
}

/// One test's world: a temp dir with the config, and an event sink.
pub struct World {
    pub dir: tempfile::TempDir,
    pub events: EventSink,
    pub limits: Limits,
}

impl World {
    pub fn new() -> World {
        World {
            dir: tempfile::tempdir().unwrap(),
            events: EventSink::silent(),
            limits: Limits::default(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes `rollbridge.lua` and loads it.
    pub fn lua_config(&self, source: &str) -> LoadedConfig {
        let path = self.write("rollbridge.lua", source);
        self.load(&path)
    }

    pub fn load(&self, path: &Path) -> LoadedConfig {
        let options = LoadOptions {
            lua_limits: self.limits,
            ..LoadOptions::default()
        };
        match load_with(path, &options) {
            Ok(loaded) => loaded,
            Err(error) => panic!("config does not load: {error}"),
        }
    }

    pub fn events_named(&self, message: &str) -> Vec<Event> {
        self.events
            .recent(None)
            .into_iter()
            .filter(|e| e.message == message)
            .collect()
    }

    /// A process as hooks see it, acting on `group` (if any).
    pub fn process(&self, group: Option<&Group>) -> ProcessInfo {
        ProcessInfo {
            id: "worker".into(),
            instance_id: "worker#1".into(),
            pid: group.map(|g| g.pgid),
            pgid: group.map(|g| g.pgid),
            release_id: "r42".into(),
            release_path: self.dir.path().to_string_lossy().into_owned(),
            revision: "abc123".into(),
            port: Some(4100),
            policy: Policy::Companion,
            replica_index: 1,
            replica_count: 3,
            env: vec![
                ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
                ("APP_MODE".into(), "test".into()),
            ],
            cwd: self.dir.path().to_path_buf(),
        }
    }

    pub fn call(&self, stage: Stage, process: ProcessInfo, bound: Duration) -> HookCall {
        HookCall {
            stage,
            process,
            deadline: Instant::now() + bound,
            options: Default::default(),
            events: self.events.clone(),
        }
    }
}

/// The Lua provider of a loaded config.
pub fn plugins(loaded: &LoadedConfig) -> Arc<LuaPlugins> {
    Arc::new(
        LuaPlugins::for_config(loaded)
            .expect("engine starts")
            .expect("config has Lua hooks"),
    )
}

/// A registry with the built-ins and the config's Lua hooks.
pub fn registry(loaded: &LoadedConfig) -> Registry {
    Registry::new(vec![Arc::new(BuiltinPlugins), plugins(loaded)])
}

/// A lifecycle hook of process `index`.
pub fn lifecycle_spec(loaded: &LoadedConfig, index: usize, stage: Stage) -> HookSpec {
    let lifecycle = &loaded.config.processes[index].lifecycle;
    match stage {
        Stage::Quiet => lifecycle.quiet.clone(),
        Stage::Drain => lifecycle.drain.clone(),
        Stage::Stop => lifecycle.stop.clone(),
        _ => None,
    }
    .expect("hook is set")
}

pub fn health_spec(loaded: &LoadedConfig, index: usize) -> HookSpec {
    loaded.config.processes[index]
        .health
        .as_ref()
        .and_then(|h| h.check.clone())
        .expect("health.check is set")
}

/// A Lua config with one companion process whose `lifecycle` table is `lifecycle`
/// (Lua source), preceded by `prelude` (Lua statements).
pub fn config_with(prelude: &str, process_fields: &str) -> String {
    format!(
        "{prelude}\nreturn {{\n  proxy = {{ port = 0 }},\n  processes = {{\n    {{ id = \"worker\", command = \"sleep 1000\", {process_fields} }},\n    {{ id = \"web\", command = \"sleep 1000\", policy = \"proxied\", port = {{ from = 4100, to = 4101 }} }},\n  }},\n}}\n"
    )
}

/// Starts the worker fixture (records signals in `marks`) and waits until it is
/// ready. `extra` is passed as its second argument.
pub async fn start_worker(world: &World, marks: &str, extra: &str) -> Group {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lua/worker.py");
    let marks_path = world.path(marks);
    let group = Group::start(
        &format!(
            "exec python3 {} {} {extra}",
            fixture.display(),
            marks_path.display()
        ),
        world.dir.path(),
    );
    let path = marks_path.clone();
    eventually("the worker fixture's ready mark", || {
        read_lines(&path).iter().any(|l| l == "ready")
    })
    .await;
    group
}

/// The lines of a file; empty when it does not exist.
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A one-connection-at-a-time HTTP server on 127.0.0.1 that answers every request
/// with `response` (raw HTTP) and records each raw request it got.
pub struct TinyServer {
    pub port: u16,
    pub requests: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TinyServer {
    pub async fn start(response: impl Fn() -> String + Send + Sync + 'static) -> TinyServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut raw = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = socket.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    raw.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&raw).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if raw.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&raw).to_string());
                let _ = socket.write_all(response().as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        TinyServer {
            port,
            requests,
            task,
        }
    }
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
