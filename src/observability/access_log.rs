//! The proxy's access log (`proxy.accessLog = {path, format}`), written off the
//! hot path: the proxy hands each finished request to a bounded queue without
//! waiting; a writer thread takes what is queued every [`WRITE_TICK`], formats it
//! and appends it in one write. A full queue drops the line and counts it.

use super::log_file::{LogFile, LogFileError, Rotation};
use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, Version};
use serde::Serialize;
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

pub use crate::config::model::AccessLogFormat;

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
    pub referer: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    /// The release that answered; `None` when no release was active.
    pub release: Option<Arc<str>>,
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    pub duration: Duration,
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

/// The proxy's handle: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct AccessLog {
    queue: SyncSender<Message>,
    stats: AccessLogStats,
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
        let thread = std::thread::Builder::new()
            .name("rollbridge-access".into())
            .spawn(move || write_loop(receiver, writer_file, format))
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
            },
            AccessLogWriter {
                queue,
                thread: Mutex::new(Some(thread)),
            },
        ))
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
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
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
fn write_loop(receiver: Receiver<Message>, file: LogFile, format: AccessLogFormat) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
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
                    format_line(&mut batch, &record, format);
                    lines += 1;
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
        if stop {
            return;
        }
        std::thread::sleep(WRITE_TICK);
    }
}

fn text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

fn version_text(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonLine<'a> {
    at: String,
    client: String,
    method: &'a str,
    path: String,
    protocol: &'static str,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    release_id: Option<&'a str>,
    referer: Option<String>,
    user_agent: Option<String>,
}

/// Appends one formatted line (with its newline) to `out`.
pub fn format_line(out: &mut Vec<u8>, record: &AccessRecord, format: AccessLogFormat) {
    match format {
        AccessLogFormat::Json => {
            let line = JsonLine {
                at: crate::util::time::iso(record.at),
                client: text(&record.client),
                method: record.method.as_str(),
                path: record.target.clone(),
                protocol: version_text(record.version),
                status: record.status,
                bytes: record.bytes,
                duration_ms: (record.duration.as_micros() as f64 / 1000.0 * 1000.0).round()
                    / 1000.0,
                release_id: record.release.as_deref(),
                referer: record.referer.as_ref().map(text),
                user_agent: record.user_agent.as_ref().map(text),
            };
            if serde_json::to_writer(&mut *out, &line).is_ok() {
                out.push(b'\n');
            }
        }
        AccessLogFormat::Combined => {
            let at: DateTime<Utc> = record.at.into();
            let bytes = if record.bytes == 0 {
                "-".to_string()
            } else {
                record.bytes.to_string()
            };
            let quoted = |value: Option<&HeaderValue>| {
                value.map_or_else(|| "-".to_string(), |v| escape(v.as_bytes()))
            };
            let request_line = format!(
                "{} {} {}",
                record.method,
                record.target,
                version_text(record.version)
            );
            let line = format!(
                "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\"\n",
                escape(record.client.as_bytes()),
                at.format("%d/%b/%Y:%H:%M:%S %z"),
                escape(request_line.as_bytes()),
                record.status,
                bytes,
                quoted(record.referer.as_ref()),
                quoted(record.user_agent.as_ref()),
            );
            out.extend_from_slice(line.as_bytes());
        }
    }
}

/// Quotes and backslashes escaped, control and non-ASCII bytes as `\xHH`, so a
/// field can never break the line or its quoting.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(byte as char),
            other => out.push_str(&format!("\\x{other:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn record() -> AccessRecord {
        AccessRecord {
            at: UNIX_EPOCH + Duration::from_millis(1_779_546_669_512),
            client: HeaderValue::from_static("10.0.0.7"),
            method: Method::GET,
            target: "/search?q=a%20b".to_string(),
            version: Version::HTTP_11,
            referer: Some(HeaderValue::from_static("https://example.test/")),
            user_agent: Some(HeaderValue::from_static("agent \"quoted\"")),
            release: Some(Arc::from("v7")),
            status: 200,
            bytes: 512,
            duration: Duration::from_micros(1_234_567),
        }
    }

    #[test]
    fn json_lines_have_fixed_keys() {
        let mut out = Vec::new();
        format_line(&mut out, &record(), AccessLogFormat::Json);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"at\":\"2026-05-23T14:31:09.512Z\",\"client\":\"10.0.0.7\",\"method\":\"GET\",\"path\":\"/search?q=a%20b\",\"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":512,\"durationMs\":1234.567,\"releaseId\":\"v7\",\"referer\":\"https://example.test/\",\"userAgent\":\"agent \\\"quoted\\\"\"}\n"
        );
    }

    #[test]
    fn combined_lines_quote_and_dash_missing_fields() {
        let mut out = Vec::new();
        format_line(&mut out, &record(), AccessLogFormat::Combined);
        let mut bare = record();
        bare.referer = None;
        bare.user_agent = None;
        bare.bytes = 0;
        bare.status = 503;
        bare.release = None;
        format_line(&mut out, &bare, AccessLogFormat::Combined);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "10.0.0.7 - - [23/May/2026:14:31:09 +0000] \"GET /search?q=a%20b HTTP/1.1\" 200 512 \"https://example.test/\" \"agent \\\"quoted\\\"\"\n\
             10.0.0.7 - - [23/May/2026:14:31:09 +0000] \"GET /search?q=a%20b HTTP/1.1\" 503 - \"-\" \"-\"\n"
        );
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
    fn a_full_queue_drops_and_counts() {
        // A queue nobody reads stands in for a writer stuck on a slow disk.
        let (queue, _stuck) = sync_channel(2);
        let log = AccessLog {
            queue,
            stats: AccessLogStats::default(),
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
