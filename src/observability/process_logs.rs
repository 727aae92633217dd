//! Per-process output files (`processes[].logFile`).
//!
//! Every process whose definition names a file gets a [`ProcessLog`] when it
//! starts; its output readers hand each chunk of whole lines to it, next to the
//! in-memory ring. Processes that resolve to the same path share one open file:
//! the registry counts users per path and forgets the file when the last one is
//! gone, and a single writer thread does all the file work (opening, writing,
//! rotating, reopening), so lines from different processes are never torn and a
//! rollover happens once.
//!
//! Nothing here waits on the disk: a process start only records the path and
//! queues the open, a line is only queued, and the queue is bounded by bytes.
//! When it is full (a stalled disk) new lines are dropped; when a write fails
//! (a full disk) its lines are dropped. Both are counted in
//! [`ProcessLogFiles::dropped_lines`].

use super::log_file::{LogFile, Rotation};
use crate::config::model::ProcessLogFormat;
use crate::process::LogLine;
use crate::util::sync::Unpoisoned;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Bytes of formatted lines that may wait for the writer thread before new
/// lines are dropped.
pub const PROCESS_LOG_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// The writer joins queued lines of one file into writes of about this size.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Where one process instance's output goes: the rendered, resolved
/// `logFile` of its definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessLogTarget {
    pub path: PathBuf,
    pub format: ProcessLogFormat,
    /// `None`: the daemon's default (`--log-rotation`).
    pub rotation: Option<Rotation>,
    /// `None`: the daemon's default (`--log-keep`).
    pub keep: Option<usize>,
}

/// Told why a file could not be opened: the path and a readable reason.
pub type OpenFailure = Box<dyn FnOnce(&Path, &str) + Send>;

/// The daemon's registry of process log files. Cloning shares it; when the
/// last clone is dropped the writer thread writes what is queued and ends.
#[derive(Clone)]
pub struct ProcessLogFiles {
    shared: Arc<Shared>,
    _stop_on_drop: Arc<StopOnDrop>,
}

struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl std::fmt::Debug for ProcessLogFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessLogFiles")
            .field("open", &self.shared.files().len())
            .field("dropped_lines", &self.dropped_lines())
            .finish()
    }
}

impl Default for ProcessLogFiles {
    /// No rotation and no pruning unless a process asks for them.
    fn default() -> Self {
        ProcessLogFiles::new(Rotation::Never, None)
    }
}

struct Shared {
    default_rotation: Rotation,
    default_keep: Option<usize>,
    /// The files in use, with their number of users.
    files: Mutex<HashMap<PathBuf, (Arc<Slot>, usize)>>,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Started with the first file, so a daemon without log files has no
    /// thread; it runs until the registry is finished or dropped.
    writer: Mutex<Option<JoinHandle<()>>>,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// Bytes of lines in `jobs`.
    bytes: usize,
    reopen_queued: bool,
    stopped: bool,
}

enum Job {
    Open(Arc<Slot>),
    Write {
        slot: Arc<Slot>,
        bytes: Vec<u8>,
        lines: u64,
    },
    Reopen,
}

/// One path in use. Only the writer thread does I/O on it; the others only
/// look at (and briefly lock) its state.
struct Slot {
    path: PathBuf,
    rotation: Rotation,
    keep: Option<usize>,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    file: Option<LogFile>,
    /// An open is queued or running.
    opening: bool,
    /// Told if the queued open fails.
    waiting: Vec<OpenFailure>,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unpoisoned()
    }
}

impl ProcessLogFiles {
    /// A registry whose files rotate by `rotation` and keep `keep` dated files
    /// unless a process's own settings say otherwise.
    pub fn new(rotation: Rotation, keep: Option<usize>) -> ProcessLogFiles {
        let shared = Arc::new(Shared {
            default_rotation: rotation,
            default_keep: keep,
            files: Mutex::default(),
            queue: Mutex::default(),
            wake: Condvar::new(),
            writer: Mutex::default(),
            dropped: AtomicU64::new(0),
        });
        ProcessLogFiles {
            _stop_on_drop: Arc::new(StopOnDrop(shared.clone())),
            shared,
        }
    }

    /// Starts using `target`'s file: the file already open at that path, or a
    /// new one opened by the writer thread. Never waits on the disk. When the
    /// file cannot be opened `failed` is called (from the writer thread) and
    /// the lines meant for it are dropped and counted; `None` when no writer
    /// thread could be started (`failed` has been called).
    pub fn attach(&self, target: &ProcessLogTarget, failed: OpenFailure) -> Option<ProcessLog> {
        if let Err(error) = self.shared.ensure_writer() {
            failed(
                &target.path,
                &format!("cannot start the thread that writes process log files: {error}"),
            );
            return None;
        }
        let slot = {
            let mut files = self.shared.files();
            let (slot, users) = files.entry(target.path.clone()).or_insert_with(|| {
                let slot = Arc::new(Slot {
                    path: target.path.clone(),
                    rotation: target.rotation.unwrap_or(self.shared.default_rotation),
                    keep: target.keep.or(self.shared.default_keep),
                    state: Mutex::default(),
                });
                (slot, 0)
            });
            *users += 1;
            slot.clone()
        };
        let open = {
            let mut state = slot.state();
            if state.file.is_some() {
                false
            } else {
                // Not open yet, or an earlier open failed: (re)try, and tell
                // this user too if it fails.
                state.waiting.push(failed);
                !std::mem::replace(&mut state.opening, true)
            }
        };
        if open {
            self.shared.push_control(Job::Open(slot.clone()));
        }
        Some(ProcessLog {
            shared: self.shared.clone(),
            slot,
            format: target.format,
        })
    }

    /// Closes every file and opens its path again (after logrotate renamed it);
    /// a file that could not be opened before is tried again.
    pub fn reopen(&self) {
        let mut queue = self.shared.queue();
        if queue.stopped || queue.reopen_queued || self.shared.files().is_empty() {
            return;
        }
        queue.reopen_queued = true;
        queue.jobs.push(Job::Reopen);
        drop(queue);
        self.shared.wake.notify_one();
    }

    /// Lines lost since the daemon started: the queue was full, the file could
    /// not be opened, or writing failed.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Paths in use right now, sorted.
    pub fn open_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.shared.files().keys().cloned().collect();
        paths.sort();
        paths
    }

    /// Writes every queued line, then stops the writer thread. Lines handed in
    /// afterwards are counted as dropped.
    pub fn finish(&self) {
        self.shared.stop();
        let writer = self.shared.writer.lock().unpoisoned().take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

/// One process instance's use of a log file; the file is let go when the last
/// user drops its handle (the process's output has ended).
pub struct ProcessLog {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    format: ProcessLogFormat,
}

impl std::fmt::Debug for ProcessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessLog")
            .field("path", &self.slot.path)
            .field("format", &self.format)
            .finish()
    }
}

impl ProcessLog {
    pub fn path(&self) -> &Path {
        &self.slot.path
    }

    /// Queues `lines` for the file, formatted, in one piece. Never blocks; drops
    /// and counts them when the queue is full.
    pub fn write_lines(&self, lines: &[LogLine]) {
        if lines.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.line.len() + 1).sum());
        for line in lines {
            format_line(&mut bytes, line, self.format);
        }
        let lines = lines.len() as u64;
        let mut queue = self.shared.queue();
        if queue.stopped || queue.bytes + bytes.len() > PROCESS_LOG_QUEUE_BYTES {
            drop(queue);
            self.shared.dropped.fetch_add(lines, Ordering::Relaxed);
            return;
        }
        queue.bytes += bytes.len();
        queue.jobs.push(Job::Write {
            slot: self.slot.clone(),
            bytes,
            lines,
        });
        drop(queue);
        self.shared.wake.notify_one();
    }
}

impl Drop for ProcessLog {
    fn drop(&mut self) {
        let mut files = self.shared.files();
        if let Some((slot, users)) = files.get_mut(&self.slot.path) {
            // The entry may already be a newer slot for the same path.
            if Arc::ptr_eq(slot, &self.slot) {
                *users -= 1;
                if *users == 0 {
                    files.remove(&self.slot.path);
                }
            }
        }
        // Queued writes still hold the slot; the file closes after the last one.
    }
}

/// Appends one line in `format`, newline included.
fn format_line(out: &mut Vec<u8>, line: &LogLine, format: ProcessLogFormat) {
    match format {
        ProcessLogFormat::Raw => out.extend_from_slice(line.line.as_bytes()),
        ProcessLogFormat::Json => {
            // A JSON value always serializes.
            let _ = serde_json::to_writer(&mut *out, &line.to_status());
        }
    }
    out.push(b'\n');
}

impl Shared {
    fn files(&self) -> MutexGuard<'_, HashMap<PathBuf, (Arc<Slot>, usize)>> {
        self.files.lock().unpoisoned()
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unpoisoned()
    }

    /// Lets the writer thread end once it has written what is queued.
    fn stop(&self) {
        self.queue().stopped = true;
        self.wake.notify_one();
    }

    fn ensure_writer(self: &Arc<Self>) -> std::io::Result<()> {
        let mut writer = self.writer.lock().unpoisoned();
        if writer.is_none() {
            let shared = self.clone();
            let thread = std::thread::Builder::new()
                .name("rollbridge-proclog".into())
                .spawn(move || write_loop(&shared))?;
            *writer = Some(thread);
        }
        Ok(())
    }

    /// Queues a job that is not a line: never refused for lack of room (there
    /// is at most one open per path and one reopen pending).
    fn push_control(&self, job: Job) {
        let mut queue = self.queue();
        if queue.stopped {
            return;
        }
        queue.jobs.push(job);
        drop(queue);
        self.wake.notify_one();
    }

    /// Waits for jobs and takes them all; `None` once stopped and drained.
    fn take_jobs(&self) -> Option<Vec<Job>> {
        let mut queue = self.queue();
        while queue.jobs.is_empty() {
            if queue.stopped {
                return None;
            }
            queue = self.wake.wait(queue).unpoisoned();
        }
        queue.bytes = 0;
        queue.reopen_queued = false;
        Some(std::mem::take(&mut queue.jobs))
    }
}

/// Runs until the registry stops: takes everything queued, joins the
/// consecutive lines of one file into one write, and does the opens and
/// reopens in queue order.
fn write_loop(shared: &Shared) {
    while let Some(jobs) = shared.take_jobs() {
        let mut pending: Option<(Arc<Slot>, Vec<u8>, u64)> = None;
        for job in jobs {
            match job {
                Job::Write { slot, bytes, lines } => match &mut pending {
                    Some((current, batch, count))
                        if Arc::ptr_eq(current, &slot) && batch.len() < WRITE_BATCH_BYTES =>
                    {
                        batch.extend_from_slice(&bytes);
                        *count += lines;
                    }
                    _ => {
                        if let Some(done) = pending.replace((slot, bytes, lines)) {
                            write_batch(shared, done);
                        }
                    }
                },
                Job::Open(slot) => {
                    if let Some(done) = pending.take() {
                        write_batch(shared, done);
                    }
                    open_slot(&slot);
                }
                Job::Reopen => {
                    if let Some(done) = pending.take() {
                        write_batch(shared, done);
                    }
                    reopen_all(shared);
                }
            }
        }
        if let Some(done) = pending.take() {
            write_batch(shared, done);
        }
    }
}

fn write_batch(shared: &Shared, (slot, batch, lines): (Arc<Slot>, Vec<u8>, u64)) {
    let file = slot.state().file.clone();
    let written = match file {
        Some(file) => file.try_append(&batch).is_ok(),
        None => false,
    };
    if !written {
        shared.dropped.fetch_add(lines, Ordering::Relaxed);
    }
}

/// Opens the slot's file (creating its folder) and tells every waiting user
/// when that fails.
fn open_slot(slot: &Slot) {
    let already_open = slot.state().file.is_some();
    let opened = (!already_open).then(|| open_file(&slot.path, slot.rotation, slot.keep));
    let mut state = slot.state();
    state.opening = false;
    let waiting = std::mem::take(&mut state.waiting);
    let error = match opened {
        None => return,
        Some(Ok(file)) => {
            state.file = Some(file);
            return;
        }
        Some(Err(error)) => error,
    };
    drop(state);
    for failed in waiting {
        failed(&slot.path, &error);
    }
}

fn open_file(path: &Path, rotation: Rotation, keep: Option<usize>) -> Result<LogFile, String> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|error| {
            format!(
                "cannot create the folder {} for the log file: {error}",
                dir.display()
            )
        })?;
    }
    LogFile::open(path, rotation, keep).map_err(|error| {
        format!(
            "cannot open the log file for appending: {}; check that the path names a file this user may write",
            error.source
        )
    })
}

/// After SIGHUP: every open file is closed and opened again; a path whose open
/// failed earlier is tried once more.
fn reopen_all(shared: &Shared) {
    let slots: Vec<Arc<Slot>> = shared
        .files()
        .values()
        .map(|(slot, _)| slot.clone())
        .collect();
    for slot in slots {
        let file = slot.state().file.clone();
        match file {
            Some(file) => {
                if let Err(error) = file.reopen() {
                    tracing::warn!(
                        target: "rollbridge::logging",
                        path = %slot.path.display(),
                        error = %error,
                        "could not reopen a process log file; its lines are counted as dropped until it can be opened"
                    );
                }
            }
            None => {
                let retry = !std::mem::replace(&mut slot.state().opening, true);
                if retry {
                    open_slot(&slot);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Stream;
    use std::sync::mpsc;
    use std::time::{Duration, Instant, UNIX_EPOCH};

    fn line(text: &str, stream: Stream) -> LogLine {
        LogLine {
            at: UNIX_EPOCH + Duration::from_millis(1_779_546_669_512),
            line: text.to_string(),
            stream,
        }
    }

    fn target(path: &Path, format: ProcessLogFormat) -> ProcessLogTarget {
        ProcessLogTarget {
            path: path.to_path_buf(),
            format,
            rotation: None,
            keep: None,
        }
    }

    fn wait_for(mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn no_failure() -> OpenFailure {
        Box::new(|path, error| panic!("{} failed: {error}", path.display()))
    }

    #[test]
    fn raw_and_json_lines() {
        let mut out = Vec::new();
        format_line(
            &mut out,
            &line("plain \"text\"", Stream::Stdout),
            ProcessLogFormat::Raw,
        );
        format_line(
            &mut out,
            &line("oops", Stream::Stderr),
            ProcessLogFormat::Json,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain \"text\"\n{\"at\":\"2026-05-23T14:31:09.512Z\",\"line\":\"oops\",\"stream\":\"stderr\"}\n"
        );
    }

    #[test]
    fn users_of_one_path_share_a_file_that_closes_with_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/shared.log");
        let files = ProcessLogFiles::default();
        let first = files
            .attach(&target(&path, ProcessLogFormat::Raw), no_failure())
            .unwrap();
        let second = files
            .attach(&target(&path, ProcessLogFormat::Json), no_failure())
            .unwrap();
        assert!(Arc::ptr_eq(&first.slot, &second.slot));
        first.write_lines(&[line("from first", Stream::Stdout)]);
        second.write_lines(&[line("from second", Stream::Stderr)]);
        drop(first);
        assert_eq!(files.open_paths(), vec![path.clone()]);
        drop(second);
        assert!(files.open_paths().is_empty());
        files.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "from first");
        assert!(lines[1].contains("\"line\":\"from second\""), "{text}");
        assert_eq!(files.dropped_lines(), 0);
    }

    #[test]
    fn an_unopenable_path_is_reported_and_its_lines_counted() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("plain-file");
        std::fs::write(&blocker, "x").unwrap();
        let path = blocker.join("app.log");
        let files = ProcessLogFiles::default();
        let (tx, rx) = mpsc::channel();
        let log = files
            .attach(
                &target(&path, ProcessLogFormat::Raw),
                Box::new(move |path, error| {
                    tx.send((path.to_path_buf(), error.to_string())).unwrap();
                }),
            )
            .unwrap();
        let (reported, error) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reported, path);
        assert!(error.starts_with("cannot create the folder"), "{error}");
        log.write_lines(&[line("a", Stream::Stdout), line("b", Stream::Stdout)]);
        files.finish();
        assert_eq!(files.dropped_lines(), 2);
    }

    #[test]
    fn a_full_queue_drops_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let files = ProcessLogFiles::default();
        let log = files
            .attach(
                &target(&dir.path().join("big.log"), ProcessLogFormat::Raw),
                no_failure(),
            )
            .unwrap();
        // Once the open is done the writer idles; then fill the queue's byte
        // budget as a stalled writer would leave it.
        wait_for(|| dir.path().join("big.log").exists());
        files.shared.queue().bytes = PROCESS_LOG_QUEUE_BYTES;
        log.write_lines(&[line("lost", Stream::Stdout), line("lost", Stream::Stderr)]);
        assert_eq!(files.dropped_lines(), 2);
        files.finish();
        log.write_lines(&[line("after finish", Stream::Stdout)]);
        assert_eq!(files.dropped_lines(), 3);
    }

    #[test]
    fn reopen_follows_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let files = ProcessLogFiles::new(Rotation::Never, None);
        let log = files
            .attach(&target(&path, ProcessLogFormat::Raw), no_failure())
            .unwrap();
        log.write_lines(&[line("before", Stream::Stdout)]);
        wait_for(|| std::fs::read_to_string(&path).unwrap_or_default() == "before\n");
        std::fs::rename(&path, dir.path().join("r.log.1")).unwrap();
        files.reopen();
        log.write_lines(&[line("after", Stream::Stdout)]);
        files.finish();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("r.log.1")).unwrap(),
            "before\n"
        );
    }
}
