//! The managed process: one supervised `/bin/sh -c <command>` wrapper with its
//! state, output ring (and optional log file), crash restarts and memory
//! supervision. The graceful stop lives in `stop.rs`, memory sampling in
//! `memory.rs`, the status shape in `status.rs`.

use super::definition::{ProcessDefinition, ProcessState, StartReason};
use super::group::ProcessGroup;
use super::output::{LineSplitter, LogLine, OutputRing, Stream};
use super::proc_table::GroupMember;
use super::restart_policy::{RestartDecision, RestartHistory};
use super::sampler::{SampleSubscription, marker_of};
use super::spawn::{SpawnError, spawn_wrapper};

use crate::events::{Event, EventSink, OutputLine, ProcessEvent, ProcessScope};
use crate::observability::{ProcessLog, ProcessLogFiles};
use crate::plugins::{ProcessInfo, Registry};
use crate::util::signals::signal_name_from_number;

use crate::util::sync::Unpoisoned;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// What the owner of a process gives it to be supervised.
#[derive(Clone)]
pub struct Supervision {
    pub events: EventSink,
    /// Resolves lifecycle hooks.
    pub registry: Registry,
    /// The owner's rule for automatic restarts (a release process: its release is
    /// active or starting; a persistent service: the daemon is not stopping).
    pub should_restart: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Where a definition's `logFile` is opened (shared per path).
    pub log_files: ProcessLogFiles,
}

/// The live wrapper child.
pub(super) struct ChildSlot {
    pub(super) pid: i32,
    /// Becomes true once the wrapper has exited and been reaped.
    pub(super) exited: watch::Receiver<bool>,
}

/// A completion flag shared by everyone waiting for one run of a step.
pub(super) type RunFlag = watch::Receiver<bool>;

/// Mutable state, behind one short-held mutex (never held across an await).
pub(super) struct Inner {
    pub(super) def: ProcessDefinition,
    pub(super) state: ProcessState,
    pub(super) child: Option<ChildSlot>,
    /// The group of the latest wrapper, kept after the wrapper exits so stragglers
    /// can still be waited for and signalled.
    pub(super) group: Option<Arc<ProcessGroup>>,
    /// `(exitCode, exitSignal)` of the latest exit since the latest start.
    pub(super) exit: Option<(Option<i32>, Option<String>)>,
    pub(super) started_at: Option<SystemTime>,
    pub(super) started_instant: Option<Instant>,
    pub(super) restarts: u64,
    pub(super) last_start_reason: Option<StartReason>,
    pub(super) memory_restarts: u64,
    pub(super) last_memory_restart_at: Option<SystemTime>,
    pub(super) rss_bytes: Option<u64>,
    pub(super) children: Vec<GroupMember>,
    pub(super) logs: OutputRing,
    /// Set by quiesce/stop: the next exit is expected and must not restart.
    pub(super) intentional: bool,
    pub(super) history: RestartHistory,
    pub(super) restart_timer: Option<AbortHandle>,
    /// Recorded in a live upgrade's handover: nothing is started any more in
    /// this image (the next one would not know the child); a start asked for
    /// meanwhile waits for [`ManagedProcess::handover_abandoned`].
    pub(super) handed_over: bool,
    pub(super) deferred_start: Option<StartReason>,
    /// The sampler subscription of the current child (`children`, memory).
    pub(super) sampling: Option<SampleSubscription>,
    pub(super) memory_restarting: bool,
    pub(super) memory_warned: bool,
    /// The memoised quiet step of the current run cycle (reset by `start`).
    pub(super) quiesce_run: Option<RunFlag>,
    /// The stop sequence in progress, if any.
    pub(super) stop_run: Option<RunFlag>,
    /// Counts spawns, so tasks of an older child can tell they are stale.
    pub(super) generation: u64,
    /// Resolves the hooks of `def`. It changes together with `def`: a Lua hook
    /// value only makes sense in the registry built from the same loaded config.
    pub(super) registry: Registry,
    /// The output pipes of the current wrapper still being read, by descriptor
    /// number: what a live upgrade hands to the next image (`handover.rs`).
    pub(super) output_fds: Vec<(Stream, std::os::fd::RawFd)>,
}

/// One supervised process. Cheap to share (`Arc`); every method is safe to call
/// from any task.
pub struct ManagedProcess {
    pub(super) inner: Mutex<Inner>,
    pub(super) supervision: Supervision,
    /// Origin of the monotonic clock used by the restart window.
    pub(super) clock_origin: Instant,
}

impl std::fmt::Debug for ManagedProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedProcess")
            .field("id", &self.instance_id())
            .field("state", &self.state())
            .field("pid", &self.pid())
            .finish()
    }
}

impl ManagedProcess {
    pub fn new(def: ProcessDefinition, supervision: Supervision) -> Arc<ManagedProcess> {
        Arc::new(ManagedProcess {
            inner: Mutex::new(Inner {
                def,
                state: ProcessState::Stopped,
                child: None,
                group: None,
                exit: None,
                started_at: None,
                started_instant: None,
                restarts: 0,
                last_start_reason: None,
                memory_restarts: 0,
                last_memory_restart_at: None,
                rss_bytes: None,
                children: Vec::new(),
                logs: OutputRing::default(),
                intentional: false,
                history: RestartHistory::default(),
                restart_timer: None,
                handed_over: false,
                deferred_start: None,
                sampling: None,
                memory_restarting: false,
                memory_warned: false,
                quiesce_run: None,
                stop_run: None,
                generation: 0,
                registry: supervision.registry.clone(),
                output_fds: Vec::new(),
            }),
            supervision,
            clock_origin: Instant::now(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unpoisoned()
    }

    /// Emits an event of this process (its data starts with `processId`,
    /// `releaseId`).
    pub(super) fn emit(&self, event: ProcessEvent) {
        let scope = {
            let inner = self.lock();
            ProcessScope {
                process_id: inner.def.instance_id.clone(),
                release_id: inner.def.release_id.clone(),
            }
        };
        self.supervision
            .events
            .emit(Event::Process { scope, event });
    }

    /// Spawns the wrapper. Returns once it runs (readiness is not awaited). Does
    /// nothing when a wrapper already exists. A stop in progress is finished first,
    /// so it cannot mistake the new child for the old one. A `Crash` start counts
    /// as an automatic restart and is skipped when a stop began since the crash.
    pub async fn start(self: &Arc<Self>, reason: StartReason) -> Result<(), SpawnError> {
        let pending_stop = self.lock().stop_run.clone();
        if let Some(mut flag) = pending_stop {
            let _ = flag.wait_for(|done| *done).await;
        }
        let (child, generation, exited_tx, def) = {
            let mut inner = self.lock();
            if inner.child.is_some() {
                return Ok(());
            }
            if inner.handed_over {
                inner.deferred_start = Some(reason);
                return Ok(());
            }
            if reason == StartReason::Crash {
                // A stop or quiesce that began after the crash wins over the
                // restart, even when the timer had already fired.
                if inner.intentional {
                    return Ok(());
                }
                inner.restarts += 1;
            }
            inner.intentional = false;
            inner.exit = None;
            inner.state = ProcessState::Starting;
            inner.quiesce_run = None;
            if let Some(timer) = inner.restart_timer.take() {
                timer.abort();
            }
            let def = inner.def.clone();
            let (child, cgroup) = match spawn_wrapper(&def) {
                Ok(spawned) => spawned,
                Err(e) => {
                    inner.state = ProcessState::Failed;
                    return Err(e);
                }
            };
            let pid = child.id().map(|p| p as i32).unwrap_or_default();
            let (exited_tx, exited_rx) = watch::channel(false);
            inner.generation += 1;
            inner.child = Some(ChildSlot {
                pid,
                exited: exited_rx,
            });
            let group = ProcessGroup::with_cgroup(pid, cgroup);
            group.tracked().set_marker(marker_of(|key| {
                let value = def.env.iter().rev().find(|(name, _)| name == key);
                value.map(|(_, value)| value.clone())
            }));
            inner.group = Some(Arc::new(group));
            inner.state = ProcessState::Running;
            inner.started_at = Some(SystemTime::now());
            inner.started_instant = Some(Instant::now());
            inner.last_start_reason = Some(reason);
            inner.rss_bytes = None;
            inner.children.clear();
            (child, inner.generation, exited_tx, def)
        };
        let mut child = child;
        let pid = child.id().map(|p| p as i64);
        // The readers of this run's pipes hold the file: it is let go when the
        // output ends, which may be after the wrapper exits.
        let log_file = self.attach_log_file(&def).map(Arc::new);
        if let Some(stdout) = child.stdout.take() {
            self.capture(stdout, Stream::Stdout, log_file.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            self.capture(stderr, Stream::Stderr, log_file);
        }
        self.emit(ProcessEvent::Started {
            command: def.command.clone(),
            id: def.instance_id.clone(),
            pid,
            reason,
        });
        tokio::spawn(self.clone().watch_exit(child, generation, exited_tx));
        self.start_sampling(generation);
        Ok(())
    }

    /// Reads one output pipe of the current wrapper in a task of its own; its
    /// descriptor is listed in `output_fds` for as long as the task reads it.
    pub(super) fn capture(
        self: &Arc<Self>,
        pipe: impl AsyncRead + std::os::fd::AsRawFd + Unpin + Send + 'static,
        stream: Stream,
        log_file: Option<Arc<ProcessLog>>,
    ) {
        let fd = pipe.as_raw_fd();
        self.lock().output_fds.push((stream, fd));
        tokio::spawn(capture_output(Arc::downgrade(self), pipe, stream, log_file));
    }

    /// Starts using the definition's log file, if it names one. A file that
    /// cannot be opened is reported as `process log file failed`; the output
    /// still reaches the ring.
    pub(super) fn attach_log_file(self: &Arc<Self>, def: &ProcessDefinition) -> Option<ProcessLog> {
        let target = def.log_file.as_ref()?;
        let process = Arc::downgrade(self);
        let id = def.instance_id.clone();
        self.supervision.log_files.attach(
            target,
            Box::new(move |path: &Path, error: &str| {
                if let Some(process) = process.upgrade() {
                    process.emit(ProcessEvent::LogFileFailed {
                        error: error.to_string(),
                        id: id.clone(),
                        path: path.display().to_string(),
                    });
                }
            }),
        )
    }

    /// Waits for the wrapper to exit, records how, and decides on a crash restart.
    async fn watch_exit(
        self: Arc<Self>,
        mut child: Child,
        generation: u64,
        exited_tx: watch::Sender<bool>,
    ) {
        let status = child.wait().await;
        let (code, signal) = match status {
            Ok(status) => (status.code(), status.signal().map(signal_text)),
            Err(_) => (None, None),
        };
        self.record_exit(code, signal, generation, exited_tx);
    }

    /// Records how the wrapper of `generation` ended, releases the waiters and
    /// decides on a crash restart.
    pub(super) fn record_exit(
        self: Arc<Self>,
        code: Option<i32>,
        signal: Option<String>,
        generation: u64,
        exited_tx: watch::Sender<bool>,
    ) {
        let (unexpected, id) = {
            let mut inner = self.lock();
            if inner.generation != generation {
                return;
            }
            inner.child = None;
            inner.exit = Some((code, signal.clone()));
            inner.rss_bytes = None;
            inner.children.clear();
            inner.sampling = None;
            inner.state = match (inner.intentional, inner.stop_run.is_some()) {
                (false, _) => ProcessState::Failed,
                (true, true) => ProcessState::Stopping,
                (true, false) => ProcessState::Stopped,
            };
            (!inner.intentional, inner.def.instance_id.clone())
        };
        // Logged before waiters are released, so a stop that returns (and a start
        // that follows it) can never log ahead of this exit.
        self.emit(ProcessEvent::Exited { code, id, signal });
        let _ = exited_tx.send(true);
        if unexpected && (self.supervision.should_restart)() {
            self.schedule_crash_restart();
        }
    }

    fn clock_ms(&self) -> u64 {
        u64::try_from(self.clock_origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn schedule_crash_restart(self: &Arc<Self>) {
        let now_ms = self.clock_ms();
        let (decision, def) = {
            let mut inner = self.lock();
            let def = inner.def.clone();
            let decision = inner.history.on_unexpected_exit(
                def.config.restart_delay_ms,
                &def.config.restart,
                now_ms,
            );
            (decision, def)
        };
        let Some(delay) = decision.delay() else {
            debug_assert_eq!(decision, RestartDecision::LimitReached);
            self.emit(ProcessEvent::RestartLimitReached {
                id: def.instance_id.clone(),
                max_restarts: def.config.restart.max_restarts,
                window_ms: def.config.restart.window_ms,
            });
            return;
        };
        let me = self.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.fire_crash_restart().await;
        });
        let mut inner = self.lock();
        // A stop that began meanwhile wins over the restart.
        if inner.intentional || inner.child.is_some() {
            timer.abort();
        } else if let Some(old) = inner.restart_timer.replace(timer.abort_handle()) {
            old.abort();
        }
    }

    pub(super) async fn fire_crash_restart(self: Arc<Self>) {
        {
            let mut inner = self.lock();
            inner.restart_timer = None;
            if inner.intentional || inner.child.is_some() {
                return;
            }
        }
        // The owner may have changed its mind while the timer ran (release retired).
        if !(self.supervision.should_restart)() {
            return;
        }
        if let Err(e) = self.start(StartReason::Crash).await {
            let id = self.instance_id();
            self.emit(ProcessEvent::RestartFailed {
                error: e.to_string(),
                id,
            });
        }
    }

    /// Replaces the definition (a template refresh). The running child keeps what
    /// it was started with; the next start uses the new definition. `status` shows
    /// the new command at once, and events carry the new release id.
    pub fn redefine(&self, def: ProcessDefinition) {
        self.lock().def = def;
    }

    /// Like [`redefine`](Self::redefine) for a definition built from a newly
    /// loaded config, whose hooks `registry` (built from the same config)
    /// resolves.
    pub fn redefine_with(&self, def: ProcessDefinition, registry: Registry) {
        let mut inner = self.lock();
        inner.def = def;
        inner.registry = registry;
    }

    pub fn definition(&self) -> ProcessDefinition {
        self.lock().def.clone()
    }

    pub fn instance_id(&self) -> String {
        self.lock().def.instance_id.clone()
    }

    /// The wrapper's pid (also its process-group id) while a wrapper exists.
    pub fn pid(&self) -> Option<i32> {
        self.lock().child.as_ref().map(|c| c.pid)
    }

    /// The group id of the latest wrapper, kept after it exits.
    pub fn pgid(&self) -> Option<i32> {
        self.lock().group.as_ref().map(|g| g.pgid())
    }

    pub fn state(&self) -> ProcessState {
        self.lock().state
    }

    /// Count of automatic crash restarts.
    pub fn restarts(&self) -> u64 {
        self.lock().restarts
    }

    pub fn memory_restarts(&self) -> u64 {
        self.lock().memory_restarts
    }

    /// The captured output lines, oldest first.
    pub fn logs(&self) -> Vec<LogLine> {
        self.lock().logs.lines().cloned().collect()
    }

    /// What hooks are told about this process.
    pub fn process_info(&self) -> ProcessInfo {
        let inner = self.lock();
        let def = &inner.def;
        // Variables that are not UTF-8 reach the process itself but not hooks.
        let mut env: Vec<(String, String)> = crate::util::env::utf8_vars()
            .filter(|(key, _)| !def.env.iter().any(|(k, _)| k == key))
            .collect();
        env.extend(def.env.iter().cloned());
        ProcessInfo {
            id: def.base_id.clone(),
            instance_id: def.instance_id.clone(),
            pid: inner.child.as_ref().map(|c| c.pid),
            pgid: inner.group.as_ref().map(|g| g.pgid()),
            release_id: def.release_id.clone(),
            release_path: def.release_path.clone(),
            revision: def.revision.clone(),
            port: def.port,
            policy: def.config.policy,
            replica_index: def.replica_index,
            replica_count: def.replica_count,
            env,
            cwd: def.cwd.clone(),
        }
    }

    /// Records lines in the ring and hands them to the log file. Both happen
    /// under the state lock, so the file gets stdout and stderr lines in the
    /// ring's order; handing over only queues, it never waits on the disk.
    fn push_lines(&self, lines: Vec<String>, stream: Stream, log_file: Option<&ProcessLog>) {
        if lines.is_empty() {
            return;
        }
        let at = SystemTime::now();
        let lines: Vec<LogLine> = lines
            .into_iter()
            .map(|line| LogLine { at, line, stream })
            .collect();
        let mut inner = self.lock();
        if let Some(log_file) = log_file {
            log_file.write_lines(&lines);
        }
        let capacity = inner.def.config.output_lines;
        if self.supervision.events.output_followed() {
            let at_text = crate::util::time::iso(at);
            self.supervision
                .events
                .publish_output(lines.iter().map(|line| OutputLine {
                    id: inner.def.instance_id.clone(),
                    release_id: inner.def.release_id.clone(),
                    at: at_text.clone(),
                    stream: stream.as_str(),
                    line: line.line.clone(),
                }));
        }
        for line in lines {
            inner.logs.push(line, capacity);
        }
    }
}

/// `SIGTERM` for 15; `SIG<n>` for a number without a name.
pub(super) fn signal_text(number: i32) -> String {
    signal_name_from_number(number)
        .map(str::to_string)
        .unwrap_or_else(|| format!("SIG{number}"))
}

/// Reads one pipe until EOF (which may come long after the wrapper exits, when a
/// grandchild keeps the pipe open). The pipe leaves `output_fds` before it is
/// closed, so its number is never handed over after it was reused.
async fn capture_output(
    process: Weak<ManagedProcess>,
    mut pipe: impl AsyncRead + std::os::fd::AsRawFd + Unpin,
    stream: Stream,
    log_file: Option<Arc<ProcessLog>>,
) {
    let mut buffer = vec![0u8; 8192];
    let mut splitter = LineSplitter::default();
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let lines = splitter.feed(&buffer[..n]);
                match process.upgrade() {
                    Some(process) => process.push_lines(lines, stream, log_file.as_deref()),
                    None => return,
                }
            }
        }
    }
    if let (Some(line), Some(process)) = (splitter.finish(), process.upgrade()) {
        process.push_lines(vec![line], stream, log_file.as_deref());
    }
    if let Some(process) = process.upgrade() {
        let fd = pipe.as_raw_fd();
        process.lock().output_fds.retain(|(_, open)| *open != fd);
    }
    drop(pipe);
}
