//! Output capture: the child's stdout and stderr are read line by line into a ring
//! of the newest `outputLines` entries.
//!
//! Unlike the reference, a line that arrives in several reads is stored once, whole.
//! A single line is capped at [`MAX_LINE_BYTES`] so a stream without newlines (a
//! binary blob) cannot grow memory without bound: the rest of such a line, up to
//! the next newline, is dropped.

use crate::control::status::LogLineStatus;
use std::collections::VecDeque;
use std::time::SystemTime;

/// The longest line kept, in bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

crate::util::names::wire_names! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Stream {
        Stdout = "stdout",
        Stderr = "stderr",
    }
}

/// One captured line (`{at, line, stream}` on the wire).
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub at: SystemTime,
    pub line: String,
    pub stream: Stream,
}

impl LogLine {
    /// `{at, line, stream}`, as `status` and the process log files show it.
    pub fn to_status(&self) -> LogLineStatus {
        LogLineStatus {
            at: crate::util::time::iso(self.at),
            line: self.line.clone(),
            stream: self.stream.as_str().to_string(),
        }
    }
}

/// The newest captured lines of one process.
#[derive(Debug, Clone, Default)]
pub struct OutputRing {
    lines: VecDeque<LogLine>,
}

impl OutputRing {
    pub fn push(&mut self, line: LogLine, capacity: usize) {
        let capacity = capacity.max(1);
        while self.lines.len() >= capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub fn lines(&self) -> impl Iterator<Item = &LogLine> {
        self.lines.iter()
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Turns a stream of byte chunks into whole lines: split on `\n`, a trailing `\r`
/// removed, empty lines dropped.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
    /// The current line passed the cap; skip bytes until its newline.
    overflowed: bool,
}

impl LineSplitter {
    /// Feeds one chunk and returns the lines it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(newline) = rest.iter().position(|b| *b == b'\n') {
            self.append(&rest[..newline]);
            if let Some(line) = self.take_line() {
                lines.push(line);
            }
            rest = &rest[newline + 1..];
        }
        self.append(rest);
        lines
    }

    /// Returns the unterminated last line, if any, once the stream has ended.
    pub fn finish(&mut self) -> Option<String> {
        self.take_line()
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.overflowed {
            return;
        }
        let room = MAX_LINE_BYTES - self.pending.len();
        if bytes.len() > room {
            self.pending.extend_from_slice(&bytes[..room]);
            self.overflowed = true;
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn take_line(&mut self) -> Option<String> {
        let mut bytes = std::mem::take(&mut self.pending);
        let overflowed = std::mem::replace(&mut self.overflowed, false);
        // A `\r` only ends a line when it was really the last byte before `\n`.
        if !overflowed && bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        if bytes.is_empty() {
            return None;
        }
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_stay_whole() {
        let mut splitter = LineSplitter::default();
        assert_eq!(splitter.feed(b"hel"), Vec::<String>::new());
        assert_eq!(splitter.feed(b"lo\r"), Vec::<String>::new());
        assert_eq!(splitter.feed(b"\nwor"), vec!["hello"]);
        assert_eq!(splitter.feed(b"ld\n\n\r\nx"), vec!["world"]);
        assert_eq!(splitter.finish(), Some("x".to_string()));
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn overlong_lines_are_capped() {
        let mut splitter = LineSplitter::default();
        let blob = vec![b'a'; MAX_LINE_BYTES * 3];
        assert!(splitter.feed(&blob).is_empty());
        let lines = splitter.feed(b"tail\nnext\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1], "next");
    }

    #[test]
    fn ring_keeps_the_newest_lines() {
        let mut ring = OutputRing::default();
        for name in ["a", "b", "c", "d", "e"] {
            ring.push(
                LogLine {
                    at: SystemTime::now(),
                    line: name.into(),
                    stream: Stream::Stdout,
                },
                3,
            );
        }
        let kept: Vec<&str> = ring.lines().map(|l| l.line.as_str()).collect();
        assert_eq!(kept, vec!["c", "d", "e"]);
        let json = serde_json::to_value(ring.lines().next().unwrap().to_status()).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, vec!["at", "line", "stream"]);
    }
}
