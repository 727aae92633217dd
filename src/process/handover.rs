//! Handing a managed process from one daemon image to the next (live upgrade,
//! docs/upgrade.md). `execve` keeps the pid, so the wrapper stays our child; what
//! the new image cannot inherit is the tokio `Child` and the tasks around it. The
//! old image writes a [`ProcessHandover`] (state, counters, output ring, the
//! numbers of its output pipes); the new one rebuilds the process from it with
//! [`ManagedProcess::adopt`] and watches the wrapper through a pidfd instead of
//! `Child::wait`.

use super::cgroup::ProcessCgroup;
use super::definition::{ProcessDefinition, ProcessState, StartReason};
use super::group::ProcessGroup;
use super::managed::{ChildSlot, ManagedProcess, Supervision, signal_text};
use super::output::{LogLine, Stream};
use super::pidfd::PidFd;
use super::restart_policy::RestartHistory;
use super::sampler::marker_of;
use super::snapshot::read_one;
use crate::config::model::{ProcessConfig, ProcessLogFormat};
use crate::observability::{ProcessLogTarget, Rotation};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// One managed process as the next image needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessHandover {
    pub definition: DefinitionHandover,
    pub state: String,
    /// The running wrapper, if any.
    pub child: Option<ChildHandover>,
    /// The group of the latest wrapper (kept after it exits, for stragglers).
    pub pgid: Option<i32>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<String>,
    pub exited: bool,
    pub started_at_ms: Option<u64>,
    /// How long the wrapper has been running (for `uptimeMs`).
    pub running_for_ms: Option<u64>,
    pub restarts: u64,
    pub last_start_reason: Option<String>,
    pub memory_restarts: u64,
    pub last_memory_restart_at_ms: Option<u64>,
    pub memory_warned: bool,
    pub logs: Vec<LineHandover>,
    pub intentional: bool,
    /// The restart window's clock: its reading now and the restarts it holds.
    pub clock_ms: u64,
    pub restart_history_ms: Vec<u64>,
    /// A crash restart was scheduled and had not fired yet.
    pub restart_pending: bool,
}

/// The rendered definition; the config entry (`ProcessConfig`) is looked up again
/// by `baseId` in the new image's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionHandover {
    pub instance_id: String,
    pub base_id: String,
    pub release_id: String,
    pub release_path: String,
    pub revision: String,
    pub command: String,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub port: Option<u16>,
    pub replica_index: u32,
    pub replica_count: u32,
    pub log_file: Option<LogFileHandover>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogFileHandover {
    pub path: PathBuf,
    pub format: String,
    pub rotation: Option<String>,
    pub keep: Option<usize>,
}

/// The live wrapper: which process it is and where its output comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildHandover {
    pub pid: i32,
    /// From `/proc/<pid>/stat`: the pid is only trusted with this start time.
    pub start_time: u64,
    pub stdout_fd: Option<RawFd>,
    pub stderr_fd: Option<RawFd>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineHandover {
    pub at_ms: u64,
    pub line: String,
    pub stderr: bool,
}

/// Why a handed-over process cannot be rebuilt.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdoptError {
    #[error("process \"{id}\": unknown state \"{state}\"")]
    State { id: String, state: String },
    #[error("process \"{id}\": {what}")]
    Definition { id: String, what: String },
}

fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn from_epoch_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn state_of(text: &str) -> Option<ProcessState> {
    [
        ProcessState::Starting,
        ProcessState::Running,
        ProcessState::Stopping,
        ProcessState::Stopped,
        ProcessState::Failed,
    ]
    .into_iter()
    .find(|state| state.as_str() == text)
}

fn reason_of(text: &str) -> Option<StartReason> {
    [
        StartReason::Deploy,
        StartReason::Crash,
        StartReason::Manual,
        StartReason::Memory,
    ]
    .into_iter()
    .find(|reason| reason.as_str() == text)
}

impl DefinitionHandover {
    fn of(def: &ProcessDefinition) -> DefinitionHandover {
        DefinitionHandover {
            instance_id: def.instance_id.clone(),
            base_id: def.base_id.clone(),
            release_id: def.release_id.clone(),
            release_path: def.release_path.clone(),
            revision: def.revision.clone(),
            command: def.command.clone(),
            cwd: def.cwd.clone(),
            env: def.env.clone(),
            port: def.port,
            replica_index: def.replica_index,
            replica_count: def.replica_count,
            log_file: def.log_file.as_ref().map(|target| LogFileHandover {
                path: target.path.clone(),
                format: match target.format {
                    ProcessLogFormat::Raw => "raw".into(),
                    ProcessLogFormat::Json => "json".into(),
                },
                rotation: target.rotation.map(|r| r.as_str().to_string()),
                keep: target.keep,
            }),
        }
    }

    /// The definition again, with `config` (the entry of the same base id in the
    /// new image's config).
    pub fn rebuild(&self, config: ProcessConfig) -> Result<ProcessDefinition, AdoptError> {
        let invalid = |what: String| AdoptError::Definition {
            id: self.instance_id.clone(),
            what,
        };
        let log_file = match &self.log_file {
            None => None,
            Some(file) => Some(ProcessLogTarget {
                path: file.path.clone(),
                format: ProcessLogFormat::parse(&file.format)
                    .ok_or_else(|| invalid(format!("unknown log format \"{}\"", file.format)))?,
                rotation: match &file.rotation {
                    None => None,
                    Some(text) => Some(
                        Rotation::parse(text)
                            .ok_or_else(|| invalid(format!("unknown rotation \"{text}\"")))?,
                    ),
                },
                keep: file.keep,
            }),
        };
        Ok(ProcessDefinition {
            instance_id: self.instance_id.clone(),
            base_id: self.base_id.clone(),
            release_id: self.release_id.clone(),
            release_path: self.release_path.clone(),
            revision: self.revision.clone(),
            command: self.command.clone(),
            cwd: self.cwd.clone(),
            env: self.env.clone(),
            port: self.port,
            replica_index: self.replica_index,
            replica_count: self.replica_count,
            config,
            log_file,
        })
    }
}

/// Duplicates `fd` with close-on-exec set: the copy stays valid whatever the
/// task reading the original does, and is made inheritable only right before
/// `execve` (see `daemon::upgrade::exec`).
pub fn duplicate(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: the caller names a descriptor it knows to be open; the borrow lasts
    // for this call only.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    borrowed.as_fd().try_clone_to_owned()
}

impl ProcessHandover {
    /// What [`ManagedProcess::adopt`] would refuse, checked up front.
    pub fn check(&self) -> Result<(), AdoptError> {
        match state_of(&self.state) {
            Some(_) => Ok(()),
            None => Err(AdoptError::State {
                id: self.definition.instance_id.clone(),
                state: self.state.clone(),
            }),
        }
    }
}

impl ManagedProcess {
    /// The upgrade this process was recorded for did not happen: it is
    /// supervised here again, and a start asked for meanwhile (a crash or
    /// memory restart) happens now.
    pub fn handover_abandoned(self: &Arc<Self>) {
        let deferred = {
            let mut inner = self.lock();
            inner.handed_over = false;
            inner.deferred_start.take()
        };
        if let Some(reason) = deferred {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(e) = me.start(reason).await {
                    let id = me.instance_id();
                    me.emit(crate::events::ProcessEvent::RestartFailed {
                        error: e.to_string(),
                        id,
                    });
                }
            });
        }
    }

    /// What the next image needs to take this process over. The output pipes are
    /// duplicated (returned with the record, whose fd numbers are the copies').
    pub fn handover(&self) -> std::io::Result<(ProcessHandover, Vec<OwnedFd>)> {
        let clock_ms = u64::try_from(self.clock_origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut inner = self.lock();
        inner.handed_over = true;
        let mut fds = Vec::new();
        let child = match &inner.child {
            Some(child) => {
                let start_time = read_one(child.pid).map(|e| e.start_time).unwrap_or(0);
                let mut stdout_fd = None;
                let mut stderr_fd = None;
                for (stream, fd) in &inner.output_fds {
                    let copy = duplicate(*fd)?;
                    let number = std::os::fd::AsRawFd::as_raw_fd(&copy);
                    fds.push(copy);
                    match stream {
                        Stream::Stdout => stdout_fd = Some(number),
                        Stream::Stderr => stderr_fd = Some(number),
                    }
                }
                Some(ChildHandover {
                    pid: child.pid,
                    start_time,
                    stdout_fd,
                    stderr_fd,
                })
            }
            None => None,
        };
        let record = ProcessHandover {
            definition: DefinitionHandover::of(&inner.def),
            state: inner.state.as_str().to_string(),
            child,
            pgid: inner.group.as_ref().map(|g| g.pgid()),
            exit_code: inner.exit.as_ref().and_then(|(code, _)| *code),
            exit_signal: inner.exit.as_ref().and_then(|(_, signal)| signal.clone()),
            exited: inner.exit.is_some(),
            started_at_ms: inner.started_at.map(epoch_ms),
            running_for_ms: inner
                .started_instant
                .map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)),
            restarts: inner.restarts,
            last_start_reason: inner.last_start_reason.map(|r| r.as_str().to_string()),
            memory_restarts: inner.memory_restarts,
            last_memory_restart_at_ms: inner.last_memory_restart_at.map(epoch_ms),
            memory_warned: inner.memory_warned,
            logs: inner
                .logs
                .lines()
                .map(|line| LineHandover {
                    at_ms: epoch_ms(line.at),
                    line: line.line.clone(),
                    stderr: line.stream == Stream::Stderr,
                })
                .collect(),
            intentional: inner.intentional,
            clock_ms,
            restart_history_ms: inner.history.recent().to_vec(),
            restart_pending: inner.restart_timer.is_some(),
        };
        Ok((record, fds))
    }

    /// Rebuilds a handed-over process in the new image: the same wrapper (checked
    /// by pid and start time), its output pipes read again, its exit watched
    /// through a pidfd, its counters, ring and restart window carried on. Must
    /// run inside the daemon's tokio runtime. `pipes` holds the inherited
    /// stdout and stderr descriptors named in `record.child`.
    pub fn adopt(
        def: ProcessDefinition,
        supervision: Supervision,
        record: &ProcessHandover,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    ) -> Result<Arc<ManagedProcess>, AdoptError> {
        let id = def.instance_id.clone();
        let state = state_of(&record.state).ok_or_else(|| AdoptError::State {
            id: id.clone(),
            state: record.state.clone(),
        })?;
        // A wrapper that exited (and was reaped) in the instant between the
        // handover and the exec is adopted as exited: its exit is recorded
        // like any other, and supervision restarts it if it should.
        let still_there = record.child.as_ref().is_some_and(|child| {
            read_one(child.pid).is_some_and(|entry| entry.start_time == child.start_time)
        });
        let mut process = ManagedProcess::new(def, supervision);
        let now = Instant::now();
        // The restart window goes on on the same clock: it reads `clock_ms` now,
        // as the old image's did at the handover.
        if let (Some(fresh), Some(origin)) = (
            Arc::get_mut(&mut process),
            now.checked_sub(Duration::from_millis(record.clock_ms)),
        ) {
            fresh.clock_origin = origin;
        }
        let mut exited_tx = None;
        {
            let mut inner = process.lock();
            inner.state = state;
            inner.exit = record
                .exited
                .then(|| (record.exit_code, record.exit_signal.clone()));
            inner.started_at = record.started_at_ms.map(from_epoch_ms);
            inner.started_instant = record
                .running_for_ms
                .and_then(|ms| now.checked_sub(Duration::from_millis(ms)));
            inner.restarts = record.restarts;
            inner.last_start_reason = record.last_start_reason.as_deref().and_then(reason_of);
            inner.memory_restarts = record.memory_restarts;
            inner.last_memory_restart_at = record.last_memory_restart_at_ms.map(from_epoch_ms);
            inner.memory_warned = record.memory_warned;
            inner.intentional = record.intentional;
            inner.history = RestartHistory::from_recent(record.restart_history_ms.clone());
            let capacity = inner.def.config.output_lines;
            for line in &record.logs {
                let line = LogLine {
                    at: from_epoch_ms(line.at_ms),
                    line: line.line.clone(),
                    stream: if line.stderr {
                        Stream::Stderr
                    } else {
                        Stream::Stdout
                    },
                };
                inner.logs.push(line, capacity);
            }
            if let Some(pgid) = record.pgid {
                let cgroup = record
                    .child
                    .as_ref()
                    .and_then(|c| ProcessCgroup::of_process(c.pid));
                let group = ProcessGroup::with_cgroup(pgid, cgroup);
                let env = inner.def.env.clone();
                group.tracked().set_marker(marker_of(|key| {
                    let value = env.iter().rev().find(|(name, _)| name == key);
                    value.map(|(_, value)| value.clone())
                }));
                inner.group = Some(Arc::new(group));
            }
            if let Some(child) = &record.child {
                let (sender, receiver) = watch::channel(false);
                inner.generation += 1;
                inner.child = Some(ChildSlot {
                    pid: child.pid,
                    exited: receiver,
                });
                exited_tx = Some(sender);
            }
        }
        if let (Some(child), Some(exited_tx)) = (&record.child, exited_tx) {
            let def = process.definition();
            let log_file = process.attach_log_file(&def).map(Arc::new);
            for (fd, stream) in [(stdout, Stream::Stdout), (stderr, Stream::Stderr)] {
                let Some(fd) = fd else { continue };
                match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
                    Ok(pipe) => process.capture(pipe, stream, log_file.clone()),
                    Err(error) => tracing::warn!(
                        "process {}: cannot read its {} again after the upgrade: {error}",
                        def.instance_id,
                        stream.as_str()
                    ),
                }
            }
            let generation = process.lock().generation;
            if still_there {
                tokio::spawn(process.clone().watch_adopted_exit(
                    child.pid,
                    child.start_time,
                    generation,
                    exited_tx,
                ));
                process.start_sampling(generation);
            } else {
                process
                    .clone()
                    .record_exit(None, None, generation, exited_tx);
            }
        } else if record.restart_pending && !record.intentional {
            // The crash restart the old image had scheduled: due after the delay.
            let me = process.clone();
            let delay = Duration::from_millis(me.definition().config.restart_delay_ms);
            let timer = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                me.fire_crash_restart().await;
            });
            process.lock().restart_timer = Some(timer.abort_handle());
        }
        Ok(process)
    }

    /// Waits for an adopted wrapper to exit (pidfd, or polling where the kernel
    /// has none), reaps it by pid and records the exit like `watch_exit` does.
    async fn watch_adopted_exit(
        self: Arc<Self>,
        pid: i32,
        start_time: u64,
        generation: u64,
        exited_tx: watch::Sender<bool>,
    ) {
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        if let Some(handle) = PidFd::open(pid, start_time) {
            handle.exited().await;
        }
        let target = nix::unistd::Pid::from_raw(pid);
        let (code, signal) = loop {
            match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => break (Some(code), None),
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    break (None, Some(signal_text(signal as i32)));
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(nix::errno::Errno::EINTR) => {}
                // Reaped elsewhere: the exit happened, its status is unknown.
                Err(_) => break (None, None),
            }
        };
        self.record_exit(code, signal, generation, exited_tx);
    }
}
