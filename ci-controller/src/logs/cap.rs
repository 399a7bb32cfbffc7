//! How much of a log is kept: its head as it comes and its tail at the end.

use std::collections::VecDeque;

use ci_common::db::events::NewEvent;
use ci_common::db::jobs::LogProgress;

/// How much of a log is kept: the first half of the cap as it comes, the last half at the end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogCap {
    /// 0 = unlimited.
    pub lines: u64,
    /// 0 = unlimited.
    pub bytes: u64,
}

impl LogCap {
    fn head(&self) -> (u64, u64) {
        let half = |cap: u64| if cap == 0 { u64::MAX } else { cap / 2 };
        (half(self.lines), half(self.bytes))
    }

    fn tail(&self) -> (u64, u64) {
        let rest = |cap: u64| {
            if cap == 0 {
                u64::MAX
            } else {
                cap - cap / 2
            }
        };
        (rest(self.lines), rest(self.bytes))
    }
}

/// A job's log going through its [`LogCap`]: the lines of the head are stored as they come;
/// past the head, lines wait in a tail that keeps only the last ones until the log ends, and
/// the older ones are dropped (and counted).
#[derive(Debug)]
pub(super) struct CappedLog {
    cap: LogCap,
    /// Lines and bytes of the log stored so far (in the database or on the way there).
    stored_lines: u64,
    stored_bytes: u64,
    /// Past the head: lines go to `tail` (the last ones are kept, older ones dropped).
    truncating: bool,
    tail: VecDeque<NewEvent>,
    tail_bytes: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl CappedLog {
    /// A log that already stored `lines` lines of `bytes` bytes.
    pub(super) fn new(cap: LogCap, lines: u64, bytes: u64) -> Self {
        Self {
            cap,
            stored_lines: lines,
            stored_bytes: bytes,
            truncating: false,
            tail: VecDeque::new(),
            tail_bytes: 0,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    /// Takes the next line of the log: returns it (counted as stored) when it belongs to the
    /// head and is to be stored now; otherwise keeps it in the tail.
    pub(super) fn admit(&mut self, line: NewEvent) -> Option<NewEvent> {
        let len = line.text.len() as u64;
        let (head_lines, head_bytes) = self.cap.head();
        if !self.truncating
            && self.stored_lines < head_lines
            && self.stored_bytes.saturating_add(len) <= head_bytes
        {
            self.stored_lines += 1;
            self.stored_bytes += len;
            return Some(line);
        }
        self.truncating = true;
        self.tail_bytes += len;
        self.tail.push_back(line);
        let (tail_lines, tail_bytes) = self.cap.tail();
        while self.tail.len() as u64 > tail_lines || self.tail_bytes > tail_bytes {
            let Some(old) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= old.text.len() as u64;
            self.dropped_lines += 1;
            self.dropped_bytes += old.text.len() as u64;
        }
        None
    }

    /// Whether the log went past its head (its lines wait in the tail until it ends).
    pub(super) fn is_truncating(&self) -> bool {
        self.truncating
    }

    /// The log is complete. For a log that went past its head, appends one "log truncated"
    /// notice (when lines were dropped) and the kept tail to `events`, counts them in
    /// `progress`, and returns `true`.
    pub(super) fn end(&mut self, events: &mut Vec<NewEvent>, progress: &mut LogProgress) -> bool {
        if !self.truncating {
            return false;
        }
        if self.dropped_lines > 0 {
            events.push(NewEvent::notice(format!(
                "log truncated: {} lines ({} bytes) dropped",
                self.dropped_lines, self.dropped_bytes
            )));
        }
        progress.lines += self.tail.len() as i64;
        progress.bytes += self.tail_bytes as i64;
        progress.dropped_lines += self.dropped_lines as i64;
        progress.dropped_bytes += self.dropped_bytes as i64;
        self.stored_lines += self.tail.len() as u64;
        self.stored_bytes += self.tail_bytes;
        events.extend(self.tail.drain(..));
        self.truncating = false;
        self.tail_bytes = 0;
        self.dropped_lines = 0;
        self.dropped_bytes = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ci_common::EventKind;

    #[test]
    fn cap_halves() {
        let cap = LogCap {
            lines: 11,
            bytes: 0,
        };
        assert_eq!(cap.head(), (5, u64::MAX));
        assert_eq!(cap.tail(), (6, u64::MAX));
    }

    fn line(i: usize) -> NewEvent {
        NewEvent::notice(format!("line {i}"))
    }

    fn texts(events: &[NewEvent]) -> Vec<&str> {
        events.iter().map(|e| e.text.as_str()).collect()
    }

    #[test]
    fn a_long_log_keeps_its_head_then_a_notice_and_its_tail() {
        let mut log = CappedLog::new(LogCap { lines: 4, bytes: 0 }, 0, 0);
        let head: Vec<_> = (0..10).filter_map(|i| log.admit(line(i))).collect();
        assert_eq!(texts(&head), ["line 0", "line 1"]);
        assert!(log.is_truncating());
        let (mut events, mut progress) = (Vec::new(), LogProgress::default());
        assert!(log.end(&mut events, &mut progress));
        assert_eq!(
            texts(&events),
            [
                "log truncated: 6 lines (36 bytes) dropped",
                "line 8",
                "line 9"
            ]
        );
        assert_eq!(events[0].kind, EventKind::Notice);
        assert_eq!(
            (progress.lines, progress.bytes),
            (2, 12),
            "the tail is counted"
        );
        assert_eq!((progress.dropped_lines, progress.dropped_bytes), (6, 36));
        // The next container's log goes straight to the tail: the head is full.
        assert!(log.admit(line(10)).is_none());
    }

    #[test]
    fn a_short_log_passes_whole_and_bytes_count_too() {
        let mut log = CappedLog::new(LogCap { lines: 0, bytes: 0 }, 0, 0);
        assert!((0..100).all(|i| log.admit(line(i)).is_some()));
        let (mut events, mut progress) = (Vec::new(), LogProgress::default());
        assert!(!log.end(&mut events, &mut progress));
        assert!(events.is_empty());
        assert_eq!(progress, LogProgress::default());
        // A cap of 12 bytes: the head (6 bytes) holds the first 6-byte line, the tail the last.
        let mut log = CappedLog::new(
            LogCap {
                lines: 0,
                bytes: 12,
            },
            0,
            0,
        );
        let head: Vec<_> = (0..3).filter_map(|i| log.admit(line(i))).collect();
        assert_eq!(texts(&head), ["line 0"]);
        log.end(&mut events, &mut progress);
        assert_eq!(
            texts(&events),
            ["log truncated: 1 lines (6 bytes) dropped", "line 2"]
        );
    }
}
