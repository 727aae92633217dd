//! `ctx:exec(cmd, {timeoutMs=, env=})`: a shell command with a bound, its output
//! captured.
//!
//! The command runs as `/bin/sh -c <cmd>` in a session (and process group) of its
//! own, in the process's working directory with the process's full environment
//! plus `env`. On timeout, or when the hook ends first, its whole group is killed.

use super::{millis, raise};
use crate::lua::ctx::HookCtx;
use crate::process::spawn::session_shell;
use crate::util::signals::signal_name_from_number;
use crate::util::sync::Unpoisoned;
use mlua::{Lua, Table, UserDataMethods, Value};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{Instant, timeout_at};

/// The most output kept per stream; the rest is read and dropped, so a chatty
/// command cannot block on a full pipe or fill the Lua state's memory.
pub const MAX_CAPTURE_BYTES: usize = 1024 * 1024;

/// How long output is still collected after the command exited: a background
/// child it left behind may hold the pipes open for much longer.
const OUTPUT_GRACE: Duration = Duration::from_millis(100);

pub(super) fn add_methods<M: UserDataMethods<HookCtx>>(methods: &mut M) {
    methods.add_async_method(
        "exec",
        |lua, this, (command, options): (String, Option<Table>)| {
            let scope = this.scope.clone();
            let request = read_options(options).map(|(timeout, extra_env)| {
                // Set over the inherited daemon environment, whose variables that
                // are not UTF-8 thus still reach the command unchanged.
                let mut env: Vec<(String, String)> = scope
                    .process
                    .as_ref()
                    .map(|p| p.env.clone())
                    .unwrap_or_default();
                env.retain(|(name, _)| !extra_env.iter().any(|(extra, _)| extra == name));
                env.extend(extra_env);
                let bound = timeout.unwrap_or_else(|| scope.remaining());
                Request {
                    command,
                    cwd: scope.cwd.clone(),
                    env,
                    deadline: Instant::now() + bound,
                }
            });
            async move {
                let request = request?;
                let outcome = scope
                    .run_bound(run(request))
                    .await
                    .ok_or_else(|| raise("exec", "the hook ended before the command finished"))?;
                outcome_table(&lua, outcome.map_err(|reason| raise("exec", reason))?)
            }
        },
    );
}

struct Request {
    command: String,
    cwd: PathBuf,
    /// Set over the daemon's own environment.
    env: Vec<(String, String)>,
    deadline: Instant,
}

struct Outcome {
    code: Option<i32>,
    signal: Option<String>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timed_out: bool,
}

/// Extra environment variables, in the order given.
type ExtraEnv = Vec<(String, String)>;

fn read_options(options: Option<Table>) -> mlua::Result<(Option<Duration>, ExtraEnv)> {
    let Some(options) = options else {
        return Ok((None, Vec::new()));
    };
    let timeout = match options.get::<Value>("timeoutMs")? {
        Value::Nil => None,
        Value::Integer(n) => millis("exec", "timeoutMs", Some(n as f64))?,
        Value::Number(n) => millis("exec", "timeoutMs", Some(n))?,
        other => {
            return Err(raise(
                "exec",
                format!(
                    "timeoutMs must be a number of milliseconds, not a {}",
                    other.type_name()
                ),
            ));
        }
    };
    let mut env = Vec::new();
    match options.get::<Value>("env")? {
        Value::Nil => {}
        Value::Table(table) => {
            for pair in table.pairs::<Value, Value>() {
                let (name, value) = pair?;
                let (Value::String(name), Some(value)) = (&name, env_value(&value)) else {
                    return Err(raise(
                        "exec",
                        "env must map variable names to strings or numbers, e.g. {RAILS_ENV = \"production\"}",
                    ));
                };
                env.push((name.to_str()?.to_string(), value));
            }
        }
        other => {
            return Err(raise(
                "exec",
                format!(
                    "env must be a table of variables, not a {}",
                    other.type_name()
                ),
            ));
        }
    }
    Ok((timeout, env))
}

fn env_value(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.to_string_lossy()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Kills the command's group unless disarmed: on timeout, and when the hook ends
/// (the task running this is dropped) before the command finished.
struct GroupKiller(Option<i32>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = kill(Pid::from_raw(-pgid), Signal::SIGKILL);
        }
    }
}

async fn run(request: Request) -> Result<Outcome, String> {
    let mut command = session_shell(&request.command);
    command
        .current_dir(&request.cwd)
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|error| {
        format!(
            "could not start /bin/sh in {}: {}",
            request.cwd.display(),
            crate::util::errno::plain_io_reason(&error)
        )
    })?;
    let mut killer = GroupKiller(child.id().map(|pid| pid as i32));
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let readers = [
        child
            .stdout
            .take()
            .map(|pipe| tokio::spawn(capture(pipe, stdout.clone()))),
        child
            .stderr
            .take()
            .map(|pipe| tokio::spawn(capture(pipe, stderr.clone()))),
    ];
    let status = match timeout_at(request.deadline, child.wait()).await {
        Ok(Ok(status)) => Some(status),
        Ok(Err(error)) => return Err(format!("could not wait for the command: {error}")),
        Err(_) => None,
    };
    if status.is_none() {
        drop(killer);
        let _ = child.wait().await;
    } else {
        killer.0 = None;
    }
    let grace = Instant::now() + OUTPUT_GRACE;
    for reader in readers.into_iter().flatten() {
        let abort = reader.abort_handle();
        if timeout_at(grace, reader).await.is_err() {
            abort.abort();
        }
    }
    let take = |buffer: &Arc<Mutex<Vec<u8>>>| std::mem::take(&mut *buffer.lock().unpoisoned());
    Ok(Outcome {
        code: status.and_then(|s| s.code()),
        signal: status
            .and_then(|s| s.signal())
            .map(|n| signal_name_from_number(n).map_or_else(|| format!("SIG{n}"), str::to_string)),
        stdout: take(&stdout),
        stderr: take(&stderr),
        timed_out: status.is_none(),
    })
}

async fn capture(mut pipe: impl AsyncRead + Unpin, into: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 8192];
    while let Ok(read) = pipe.read(&mut chunk).await {
        if read == 0 {
            break;
        }
        let mut buffer = into.lock().unpoisoned();
        let room = MAX_CAPTURE_BYTES.saturating_sub(buffer.len());
        buffer.extend_from_slice(&chunk[..read.min(room)]);
    }
}

fn outcome_table(lua: &Lua, outcome: Outcome) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, 5)?;
    table.raw_set("code", outcome.code)?;
    table.raw_set("signal", outcome.signal)?;
    table.raw_set("stdout", lua.create_string(&outcome.stdout)?)?;
    table.raw_set("stderr", lua.create_string(&outcome.stderr)?)?;
    table.raw_set("timedOut", outcome.timed_out)?;
    Ok(table)
}
