//! An instance's output, kept bounded (the last [`LOG_LINES`] lines of at most
//! [`LOG_LINE_BYTES`] bytes) and shown with every environment value replaced by
//! [`crate::emulator::redact::REDACTED`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

/// An instance's output kept: lines, and bytes per line.
pub const LOG_LINES: usize = 200;
pub const LOG_LINE_BYTES: usize = 1024;

/// Bounded output of an instance.
#[derive(Default)]
pub(super) struct Log {
    lines: VecDeque<String>,
}

impl Log {
    pub(super) fn push(&mut self, line: &[u8]) {
        let end = line.len().min(LOG_LINE_BYTES);
        let text = String::from_utf8_lossy(&line[..end]).trim_end().to_string();
        if self.lines.len() == LOG_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(text);
    }

    pub(super) fn tail(&self, n: usize) -> String {
        let skip = self.lines.len().saturating_sub(n);
        self.lines
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Copies lines of `from` into `log` (bounded: a line longer than
/// [`LOG_LINE_BYTES`] is cut, never buffered whole).
pub(super) async fn drain(mut from: impl AsyncRead + Unpin, log: Arc<Mutex<Log>>) {
    let mut buf = [0u8; 4096];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                crate::lock(&log).push(&line);
                line.clear();
                cut = false;
            } else if line.len() < LOG_LINE_BYTES {
                line.push(b);
            } else if !cut {
                cut = true;
            }
        }
    }
    if !line.is_empty() {
        crate::lock(&log).push(&line);
    }
}

pub(super) fn scrub(text: &str, secrets: &[String]) -> String {
    crate::emulator::redact::scrub(text, secrets)
}

/// The output tail of an instance, scrubbed, as ": …" (empty when none).
pub(super) fn shown_tail(log: &Mutex<Log>, secrets: &[String]) -> String {
    let tail = crate::lock(log).tail(10);
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {}", scrub(&tail, secrets))
    }
}

pub(super) fn tail_chars(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_last_lines_cut() {
        let mut log = Log::default();
        for i in 0..(LOG_LINES + 5) {
            log.push(format!("line {i}").as_bytes());
        }
        assert_eq!(log.lines.len(), LOG_LINES);
        assert_eq!(log.tail(1), format!("line {}", LOG_LINES + 4));
        log.push(&vec![b'x'; LOG_LINE_BYTES * 3]);
        assert_eq!(log.tail(1).len(), LOG_LINE_BYTES);
    }

    #[tokio::test]
    async fn drain_bounds_a_line_without_end() {
        let log = Arc::new(Mutex::new(Log::default()));
        let data = vec![b'y'; 100_000];
        drain(&data[..], log.clone()).await;
        let tail = crate::lock(&log).tail(5);
        assert_eq!(tail.len(), LOG_LINE_BYTES);
    }
}
