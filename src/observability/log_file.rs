//! The daemon's log file: appended line by line, rolled over by the hour or day,
//! old files pruned, and reopened on request (SIGHUP).
//!
//! The live file is always at the configured path, so `tail -F PATH` and tools
//! that read the last line keep working. At a rollover the live file is renamed to
//! `PATH.<period>` (`PATH.2026-05-23` daily, `PATH.2026-05-23-14` hourly, UTC),
//! where `<period>` is the period whose lines it holds, and a fresh file is opened.
//! A file left from an earlier period (a restart after midnight) is rolled over by
//! the first line written into the new period.

use crate::util::sync::Unpoisoned;
use chrono::{DateTime, Utc};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

crate::util::names::wire_names! {
    /// How often the log file rolls over (`--log-rotation`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Rotation {
        #[default]
        Never = "never",
        Hourly = "hourly",
        Daily = "daily",
    }
}

impl Rotation {
    pub const NAMES: [&'static str; 3] = ["never", "hourly", "daily"];

    /// The suffix naming the period `at` falls in; `None` when not rotating.
    fn period(self, at: DateTime<Utc>) -> Option<String> {
        match self {
            Rotation::Never => None,
            Rotation::Hourly => Some(at.format("%Y-%m-%d-%H").to_string()),
            Rotation::Daily => Some(at.format("%Y-%m-%d").to_string()),
        }
    }
}

/// After a failed open, the file is not tried again for this long, so a missing
/// directory does not cost a system call per line.
const REOPEN_RETRY: Duration = Duration::from_secs(1);

type Clock = Box<dyn Fn() -> DateTime<Utc> + Send>;

struct State {
    path: PathBuf,
    rotation: Rotation,
    keep: Option<usize>,
    file: Option<File>,
    /// The period the live file's lines belong to.
    period: Option<String>,
    last_open_failure: Option<Instant>,
    clock: Clock,
}

/// A shared handle on the log file. The writer thread writes through it; any
/// thread may ask it to reopen.
#[derive(Clone)]
pub struct LogFile {
    state: Arc<Mutex<State>>,
    /// Lines that could not be written (full disk, removed directory, ...).
    failed_lines: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFile").finish_non_exhaustive()
    }
}

/// The log file could not be opened at startup.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the log file {path}: {source}. Check that the directory exists and that this user may write to it"
)]
pub struct LogFileError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl LogFile {
    /// Opens (creating if needed) the log file at `path` for appending. With
    /// `keep`, only that many rolled-over files are kept (`0` keeps none).
    pub fn open(
        path: &Path,
        rotation: Rotation,
        keep: Option<usize>,
    ) -> Result<LogFile, LogFileError> {
        LogFile::open_with_clock(path, rotation, keep, Box::new(Utc::now))
    }

    fn open_with_clock(
        path: &Path,
        rotation: Rotation,
        keep: Option<usize>,
        clock: Clock,
    ) -> Result<LogFile, LogFileError> {
        let mut state = State {
            path: path.to_path_buf(),
            rotation,
            keep,
            file: None,
            period: None,
            last_open_failure: None,
            clock,
        };
        state.open().map_err(|source| LogFileError {
            path: path.to_path_buf(),
            source,
        })?;
        state.prune();
        Ok(LogFile {
            state: Arc::new(Mutex::new(state)),
            failed_lines: Arc::default(),
        })
    }

    /// Closes the file and opens the configured path again: after logrotate
    /// renamed the file (its `create` mode) this starts a new one.
    pub fn reopen(&self) -> io::Result<()> {
        let mut state = self.lock();
        state.file = None;
        state.open()
    }

    /// Lines lost because writing them failed.
    pub fn failed_lines(&self) -> u64 {
        self.failed_lines.load(Ordering::Relaxed)
    }

    pub fn path(&self) -> PathBuf {
        self.lock().path.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unpoisoned()
    }

    /// Appends `lines` complete lines (each with its newline) in one write; on
    /// failure they all count as lost.
    pub(crate) fn append_lines(&self, batch: &[u8], lines: u64) {
        if self.try_append(batch).is_err() {
            self.failed_lines.fetch_add(lines, Ordering::Relaxed);
        }
    }

    /// Appends complete lines in one write, rolling over first when a new period
    /// began; the caller decides what a failure costs.
    pub(crate) fn try_append(&self, batch: &[u8]) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.lock().append(batch)
    }
}

impl State {
    fn open(&mut self) -> io::Result<()> {
        let file = match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(file) => file,
            Err(error) => {
                self.last_open_failure = Some(Instant::now());
                return Err(error);
            }
        };
        self.last_open_failure = None;
        // A non-empty file keeps the period it was last written in, so lines from
        // yesterday are rolled over under yesterday's name.
        let written_at = file
            .metadata()
            .ok()
            .filter(|meta| meta.len() > 0)
            .and_then(|meta| meta.modified().ok())
            .map(DateTime::<Utc>::from)
            .unwrap_or_else(|| (self.clock)());
        self.period = self.rotation.period(written_at);
        self.file = Some(file);
        Ok(())
    }

    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if let Some(now_period) = self.rotation.period((self.clock)()) {
            if self.period.as_deref().is_some_and(|p| p != now_period) {
                self.roll_over();
            }
        }
        if self.file.is_none() {
            if self
                .last_open_failure
                .is_some_and(|at| at.elapsed() < REOPEN_RETRY)
            {
                return Err(io::Error::other("the log file could not be opened"));
            }
            self.open()?;
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(line)
    }

    /// Renames the live file to its period's name, opens a fresh one, prunes.
    /// A failed rename keeps the lines going to the same file rather than lose them.
    fn roll_over(&mut self) {
        let period = self.period.take().unwrap_or_default();
        self.file = None;
        let _ = std::fs::rename(&self.path, free_name(&self.path, &period));
        let _ = self.open();
        // The open above dates a non-empty file by its last write; whatever it
        // holds now, it belongs to the current period.
        self.period = self.rotation.period((self.clock)());
        self.prune();
    }

    /// Deletes the oldest rolled-over files beyond `keep`.
    fn prune(&self) {
        let Some(keep) = self.keep else { return };
        let mut rolled = rolled_files(&self.path);
        if rolled.len() <= keep {
            return;
        }
        rolled.sort();
        let excess = rolled.len() - keep;
        for old in rolled.into_iter().take(excess) {
            let _ = std::fs::remove_file(old);
        }
    }
}

/// `PATH.<period>`, or `PATH.<period>.N` when that name is taken.
fn free_name(path: &Path, period: &str) -> PathBuf {
    let base = format!("{}.{period}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut counter = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{counter}"));
        counter += 1;
    }
    candidate
}

/// The rolled-over files of `path`, in no particular order.
pub fn rolled_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            file_name
                .strip_prefix(&prefix)
                .is_some_and(is_period_suffix)
        })
        .map(|entry| entry.path())
        .collect()
}

/// `YYYY-MM-DD` or `YYYY-MM-DD-HH`, optionally followed by `.N`.
fn is_period_suffix(suffix: &str) -> bool {
    let (period, counter) = match suffix.split_once('.') {
        Some((period, counter)) => (period, Some(counter)),
        None => (suffix, None),
    };
    let shape_ok = |pattern: &str| {
        period.len() == pattern.len()
            && period.bytes().zip(pattern.bytes()).all(|(c, p)| {
                if p == b'9' {
                    c.is_ascii_digit()
                } else {
                    c == p
                }
            })
    };
    (shape_ok("9999-99-99") || shape_ok("9999-99-99-99"))
        && counter.is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The writer the non-blocking worker thread owns.
pub(crate) struct LogFileWriter {
    file: LogFile,
}

impl LogFileWriter {
    pub(crate) fn new(file: LogFile) -> LogFileWriter {
        LogFileWriter { file }
    }
}

impl Write for LogFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.append_lines(buf, 1);
        Ok(buf.len())
    }

    /// Each queued message is one complete line; a failure is counted, never
    /// returned, so the worker thread goes on with the next line.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.append_lines(buf, 1);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer (stdout) whose failures are counted instead of reported.
pub(crate) struct CountingWriter<W: Write> {
    inner: W,
    failed_lines: Arc<AtomicU64>,
}

impl<W: Write> CountingWriter<W> {
    pub(crate) fn new(inner: W, failed_lines: Arc<AtomicU64>) -> CountingWriter<W> {
        CountingWriter {
            inner,
            failed_lines,
        }
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.inner.write_all(buf).is_err() {
            self.failed_lines.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.inner.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::sync::atomic::AtomicI64;

    /// A clock the test moves by hand (seconds since the epoch).
    fn manual_clock(start: DateTime<Utc>) -> (Clock, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(start.timestamp()));
        let read = now.clone();
        let clock: Clock = Box::new(move || {
            Utc.timestamp_opt(read.load(Ordering::SeqCst), 0)
                .single()
                .unwrap()
        });
        (clock, now)
    }

    fn write(file: &LogFile, line: &str) {
        LogFileWriter::new(file.clone())
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn hourly_rollover_names_files_by_their_period_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let start = Utc.with_ymd_and_hms(2026, 5, 23, 10, 15, 0).unwrap();
        let (clock, now) = manual_clock(start);
        let file = LogFile::open_with_clock(&path, Rotation::Hourly, Some(2), clock).unwrap();
        write(&file, "ten");
        for hour in 11..=14 {
            now.store(
                Utc.with_ymd_and_hms(2026, 5, 23, hour, 0, 1)
                    .unwrap()
                    .timestamp(),
                Ordering::SeqCst,
            );
            write(&file, &format!("hour {hour}"));
        }
        assert_eq!(
            names(dir.path()),
            [
                "daemon.log",
                "daemon.log.2026-05-23-12",
                "daemon.log.2026-05-23-13"
            ]
        );
        let rolled = std::fs::read_to_string(dir.path().join("daemon.log.2026-05-23-13")).unwrap();
        assert_eq!(rolled, "hour 13\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hour 14\n");
    }

    #[test]
    fn daily_rollover_and_never() {
        let dir = tempfile::tempdir().unwrap();
        let daily = dir.path().join("d.log");
        let (clock, now) = manual_clock(Utc.with_ymd_and_hms(2026, 1, 31, 23, 59, 0).unwrap());
        let file = LogFile::open_with_clock(&daily, Rotation::Daily, None, clock).unwrap();
        write(&file, "jan");
        now.fetch_add(120, Ordering::SeqCst);
        write(&file, "feb");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("d.log.2026-01-31")).unwrap(),
            "jan\n"
        );

        let never = dir.path().join("n.log");
        let (clock, now) = manual_clock(Utc.with_ymd_and_hms(2026, 1, 31, 23, 59, 0).unwrap());
        let file = LogFile::open_with_clock(&never, Rotation::Never, Some(0), clock).unwrap();
        write(&file, "a");
        now.fetch_add(86_400 * 3, Ordering::SeqCst);
        write(&file, "b");
        assert_eq!(std::fs::read_to_string(&never).unwrap(), "a\nb\n");
    }

    #[test]
    fn a_file_from_an_earlier_period_is_rolled_over_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, "old\n").unwrap();
        let yesterday = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(yesterday.into())
            .unwrap();
        let (clock, _) = manual_clock(Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap());
        let file = LogFile::open_with_clock(&path, Rotation::Daily, None, clock).unwrap();
        write(&file, "new");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("app.log.2026-03-01")).unwrap(),
            "old\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    }

    #[test]
    fn a_taken_name_gets_a_counter_and_pruning_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(dir.path().join("x.log.2026-03-01"), "earlier run\n").unwrap();
        std::fs::write(dir.path().join("x.log.unrelated"), "kept\n").unwrap();
        let (clock, now) = manual_clock(Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap());
        let file = LogFile::open_with_clock(&path, Rotation::Daily, Some(5), clock).unwrap();
        write(&file, "first");
        now.fetch_add(86_400, Ordering::SeqCst);
        write(&file, "second");
        assert_eq!(
            names(dir.path()),
            [
                "x.log",
                "x.log.2026-03-01",
                "x.log.2026-03-01.1",
                "x.log.unrelated"
            ]
        );
    }

    #[test]
    fn reopen_after_rename_starts_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let file = LogFile::open(&path, Rotation::Never, None).unwrap();
        write(&file, "before");
        std::fs::rename(&path, dir.path().join("r.log.1")).unwrap();
        write(&file, "still old");
        file.reopen().unwrap();
        write(&file, "after");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("r.log.1")).unwrap(),
            "before\nstill old\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }

    #[test]
    fn failed_writes_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("f.log");
        let file = LogFile::open(&path, Rotation::Never, None).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_dir(&sub).unwrap();
        file.reopen().unwrap_err();
        write(&file, "lost");
        write(&file, "lost too");
        assert_eq!(file.failed_lines(), 2);
    }

    #[test]
    fn an_unopenable_path_is_a_clear_error() {
        let error = LogFile::open(Path::new("/nonexistent-dir/x.log"), Rotation::Never, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("cannot open the log file /nonexistent-dir/x.log:"),
            "{error}"
        );
    }

    #[test]
    fn period_suffixes() {
        assert!(is_period_suffix("2026-05-23"));
        assert!(is_period_suffix("2026-05-23-07"));
        assert!(is_period_suffix("2026-05-23.3"));
        assert!(!is_period_suffix("2026-05-23."));
        assert!(!is_period_suffix("gz"));
        assert!(!is_period_suffix("2026-05-23.gz"));
    }
}
