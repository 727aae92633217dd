//! The proxy's access log (`proxy.accessLog = {path, format}`), written off the
//! hot path: the proxy hands each finished request to a bounded queue without
//! waiting; a writer thread takes what is queued every [`WRITE_TICK`], formats it
//! and appends it in one write. A full queue drops the line and counts it.

use super::access_format::LineFormatter;
use super::log_file::{LogFile, LogFileError, Rotation};
use crate::util::sync::Unpoisoned;
use http::{HeaderValue, Method, Version};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// Finished requests that may wait for the writer before new ones are dropped:
/// with [`WRITE_TICK`], room for over 300 000 requests a second.
pub const ACCESS_LOG_QUEUE: usize = 16_384;
/// How often the writer thread takes what is queued and writes it.
pub const WRITE_TICK: Duration = Duration::from_millis(50);
/// The writer appends at most this much in one write.
const BATCH_BYTES: usize = 64 * 1024;

pub use super::access_format::AccessLogFormat;

/// Records kept for reuse (see [`AccessLog::blank_record`]).
const SPARE_RECORDS: usize = 1024;

/// One finished request. All formatting happens on the writer thread. Its fields
/// are copies, never views into the request: a view would keep hyper's read
/// buffer alive and make it allocate a fresh one for the next request.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// When the request arrived.
    pub at: SystemTime,
    pub client: HeaderValue,
    pub method: Method,
    /// The request target as received (`/search?q=a`).
    pub target: String,
    pub version: Version,
    /// Header values as received (possibly not UTF-8).
    pub referer: Option<Vec<u8>>,
    pub user_agent: Option<Vec<u8>>,
    /// The release that answered; `None` when no release was active.
    pub release: Option<Arc<str>>,
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    pub duration: Duration,
}

impl AccessRecord {
    /// An empty record, to be filled in by the proxy.
    pub fn blank() -> AccessRecord {
        AccessRecord {
            at: SystemTime::UNIX_EPOCH,
            client: HeaderValue::from_static("-"),
            method: Method::GET,
            target: String::new(),
            version: Version::HTTP_11,
            referer: None,
            user_agent: None,
            release: None,
            status: 0,
            bytes: 0,
            duration: Duration::ZERO,
        }
    }
}

enum Message {
    Record(Box<AccessRecord>),
    Reopen,
    Stop,
}

/// Counts of lost access log lines.
#[derive(Debug, Clone, Default)]
pub struct AccessLogStats {
    queue_full: Arc<AtomicU64>,
    file: Option<LogFile>,
}

impl AccessLogStats {
    pub fn dropped_lines(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed)
            + self.file.as_ref().map_or(0, LogFile::failed_lines)
    }
}

/// Written records, handed back by the writer so the proxy can fill them again
/// instead of allocating (and the writer freeing) a record and its texts per
/// request.
type SpareRecords = Arc<Mutex<Vec<Box<AccessRecord>>>>;

/// The proxy's handle: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct AccessLog {
    queue: SyncSender<Message>,
    stats: AccessLogStats,
    spare: SpareRecords,
}

/// Owns the writer thread; [`AccessLogWriter::finish`] (or dropping it) writes
/// what is queued and stops it.
#[derive(Debug)]
pub struct AccessLogWriter {
    queue: SyncSender<Message>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl AccessLog {
    /// Opens `path` for appending and starts the writer thread.
    pub fn open(
        path: &Path,
        format: AccessLogFormat,
    ) -> Result<(AccessLog, AccessLogWriter), LogFileError> {
        let file = LogFile::open(path, Rotation::Never, None)?;
        let (queue, receiver) = sync_channel(ACCESS_LOG_QUEUE);
        let writer_file = file.clone();
        let spare = SpareRecords::default();
        let writer_spare = Arc::clone(&spare);
        let thread = std::thread::Builder::new()
            .name("rollbridge-access".into())
            .spawn(move || write_loop(receiver, writer_file, format, writer_spare))
            .map_err(|source| LogFileError {
                path: path.to_path_buf(),
                source,
            })?;
        Ok((
            AccessLog {
                queue: queue.clone(),
                stats: AccessLogStats {
                    queue_full: Arc::default(),
                    file: Some(file),
                },
                spare,
            },
            AccessLogWriter {
                queue,
                thread: Mutex::new(Some(thread)),
            },
        ))
    }

    /// A record to fill in: a written one when there is one to spare (its texts
    /// keep their capacity), else a new one. Never waits for the writer.
    pub fn blank_record(&self) -> Box<AccessRecord> {
        let reused = match self.spare.try_lock() {
            Ok(mut spare) => spare.pop(),
            Err(_) => None,
        };
        reused.unwrap_or_else(|| Box::new(AccessRecord::blank()))
    }

    /// Queues a finished request; drops and counts it when the queue is full.
    /// (Boxed: the proxy builds it in a box when the request arrives.)
    pub fn record(&self, record: Box<AccessRecord>) {
        // Full, or the writer already stopped (shutdown): either way the line is lost.
        if self.queue.try_send(Message::Record(record)).is_err() {
            self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes and reopens the file (logrotate `create` mode) before the next line.
    pub fn reopen(&self) {
        let _ = self.queue.try_send(Message::Reopen);
    }

    pub fn stats(&self) -> AccessLogStats {
        self.stats.clone()
    }
}

impl AccessLogWriter {
    /// Writes every queued line, then stops the thread.
    pub fn finish(&self) {
        let thread = self.thread.lock().unpoisoned().take();
        if let Some(thread) = thread {
            let _ = self.queue.send(Message::Stop);
            let _ = thread.join();
        }
    }
}

impl Drop for AccessLogWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The writer works in ticks instead of waiting on the queue: a thread blocked in
/// `recv` would have to be woken (a system call and a context switch) for every
/// request, which costs the proxy more than everything else the log does. Ticks
/// let records pile up without waking anyone, then write them in one go.
fn write_loop(
    receiver: Receiver<Message>,
    file: LogFile,
    format: AccessLogFormat,
    spare: SpareRecords,
) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut formatter = LineFormatter::default();
    let mut written: Vec<Box<AccessRecord>> = Vec::new();
    let mut lines = 0;
    let flush = |batch: &mut Vec<u8>, lines: &mut u64| {
        file.append_lines(batch, *lines);
        batch.clear();
        *lines = 0;
    };
    loop {
        let mut stop = false;
        loop {
            match receiver.try_recv() {
                Ok(Message::Record(record)) => {
                    formatter.append(&mut batch, &record, format);
                    lines += 1;
                    if written.len() < SPARE_RECORDS {
                        written.push(record);
                    }
                    if batch.len() >= BATCH_BYTES {
                        flush(&mut batch, &mut lines);
                    }
                }
                Ok(Message::Reopen) => {
                    flush(&mut batch, &mut lines);
                    let _ = file.reopen();
                }
                Ok(Message::Stop) | Err(TryRecvError::Disconnected) => {
                    stop = true;
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        flush(&mut batch, &mut lines);
        if !written.is_empty() {
            let mut spare = spare.lock().unpoisoned();
            let room = SPARE_RECORDS.saturating_sub(spare.len());
            spare.extend(written.drain(..).take(room));
            written.clear();
        }
        if stop {
            return;
        }
        std::thread::sleep(WRITE_TICK);
    }
}

/// A request with every field set, for the formatting and queue tests.
#[cfg(test)]
pub(crate) fn sample_record() -> AccessRecord {
    AccessRecord {
        at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_779_546_669_512),
        client: HeaderValue::from_static("10.0.0.7"),
        method: Method::GET,
        target: "/search?q=a%20b".to_string(),
        version: Version::HTTP_11,
        referer: Some(b"https://example.test/".to_vec()),
        user_agent: Some(b"agent \"quoted\"".to_vec()),
        release: Some(Arc::from("v7")),
        status: 200,
        bytes: 512,
        duration: Duration::from_micros(1_234_567),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord {
        sample_record()
    }

    #[test]
    fn records_reach_the_file_and_reopen_follows_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let (log, writer) = AccessLog::open(&path, AccessLogFormat::Json).unwrap();
        log.record(Box::new(record()));
        log.reopen();
        // The reopen message is ordered after the first record; rename before
        // the writer reaches it is not guaranteed, so only check the count here.
        log.record(Box::new(record()));
        writer.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(log.stats().dropped_lines(), 0);

        let (log, writer) = AccessLog::open(&path, AccessLogFormat::Json).unwrap();
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        log.reopen();
        log.record(Box::new(record()));
        writer.finish();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[test]
    fn written_records_come_back_for_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let (log, writer) = AccessLog::open(&path, AccessLogFormat::Json).unwrap();
        log.record(Box::new(record()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while log.spare.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the record never came back"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let reused = log.blank_record();
        assert_eq!(
            reused.target, "/search?q=a%20b",
            "the written record itself"
        );
        assert!(reused.target.capacity() > 0);
        writer.finish();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        // A queue nobody reads stands in for a writer stuck on a slow disk.
        let (queue, _stuck) = sync_channel(2);
        let log = AccessLog {
            queue,
            stats: AccessLogStats::default(),
            spare: SpareRecords::default(),
        };
        for _ in 0..12 {
            log.record(Box::new(record()));
        }
        assert_eq!(log.stats().dropped_lines(), 10);
    }

    #[test]
    fn lines_after_shutdown_are_counted_as_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (log, writer) =
            AccessLog::open(&dir.path().join("a.log"), AccessLogFormat::Combined).unwrap();
        writer.finish();
        log.record(Box::new(record()));
        assert_eq!(log.stats().dropped_lines(), 1);
    }
}
