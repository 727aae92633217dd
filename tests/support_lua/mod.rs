//! Shared helpers for the Lua hook tests: configs in temp dirs, real process
//! groups killed on drop, hook calls with deadlines.

#![allow(dead_code)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rollbridge::config::hook::HookSpec;
use rollbridge::config::model::Policy;
use rollbridge::config::{LoadOptions, LoadedConfig, load_with};
use rollbridge::daemon::events::{Event, EventSink};
use rollbridge::lua::{Limits, LuaPlugins};
use rollbridge::plugins::builtin::BuiltinPlugins;
use rollbridge::plugins::{HookCall, ProcessInfo, Registry, Stage};
use rollbridge::process::spawn::session_shell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// An upper bound for anything a test waits for; far above the expected time, so
/// it only catches hangs.
pub const PATIENCE: Duration = Duration::from_secs(20);

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

/// Polls `condition` until it holds or PATIENCE runs out.
pub async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// A Lua config with one companion process whose `lifecycle` table is `lifecycle`
/// (Lua source), preceded by `prelude` (Lua statements).
pub fn config_with(prelude: &str, process_fields: &str) -> String {
    format!(
        "{prelude}\nreturn {{\n  proxy = {{ port = 0 }},\n  processes = {{\n    {{ id = \"worker\", command = \"sleep 1000\", {process_fields} }},\n    {{ id = \"web\", command = \"sleep 1000\", policy = \"proxied\", port = {{ from = 4100, to = 4101 }} }},\n  }},\n}}\n"
    )
}
