//! A job's output on its way into `job_events`: [`LogParser`] turns Docker's timestamped log
//! messages into lines (split when too long, lossy UTF-8, `\r\n` handled) and tracks the resume
//! cursor; [`LogSink`] writes them in batches, fenced by the lease epoch, keeping the head and
//! the tail of a log that goes past its cap.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ci_common::db::events::{self, NewEvent};
use ci_common::db::jobs::{self, LogProgress};
use ci_common::db::{lease, DbError, SqlitePool};
use ci_common::{JobId, LogStream};
use tokio::time::Instant;

use crate::docker::LogChunk;

/// A batch is written when it has this many lines...
pub const BATCH_LINES: usize = 1000;
/// ...or when its first line has waited this long.
pub const BATCH_DELAY: Duration = Duration::from_millis(25);

/// One line of output.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub stream: LogStream,
    pub ts: DateTime<Utc>,
    pub text: String,
}

/// Where a log was read up to: the Docker timestamp of the last message and how many messages
/// carry exactly that timestamp (stored as `jobs.log_cursor` / `log_cursor_skip`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cursor {
    pub ts: String,
    pub count: i64,
}

impl Cursor {
    fn time(&self) -> Option<DateTime<Utc>> {
        parse_ts(&self.ts)
    }
}

fn parse_ts(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn stream_index(stream: LogStream) -> usize {
    match stream {
        LogStream::Stdout => 0,
        LogStream::Stderr => 1,
    }
}

/// Splits Docker log messages into lines and knows how far it has read.
#[derive(Debug)]
pub struct LogParser {
    max_line_bytes: usize,
    /// Unfinished line per stream (Docker splits long lines into several messages).
    pending: [Vec<u8>; 2],
    /// Position after the last message read (including skipped ones).
    consumed: Option<Cursor>,
    /// While resuming: messages at or before this position are skipped.
    skip: Option<(DateTime<Utc>, i64)>,
}

impl LogParser {
    /// A parser that resumes after `cursor` (from the database, or `None` for the beginning).
    pub fn new(max_line_bytes: usize, cursor: Option<Cursor>) -> Self {
        let mut parser = Self {
            max_line_bytes: max_line_bytes.max(4),
            pending: [Vec::new(), Vec::new()],
            consumed: cursor,
            skip: None,
        };
        parser.rewind();
        parser
    }

    /// Prepares to read the log again from the start: everything already read is skipped.
    pub fn rewind(&mut self) {
        self.skip = self
            .consumed
            .as_ref()
            .and_then(|c| Some((c.time()?, c.count)));
    }

    /// The `since` (UNIX seconds) to ask Docker for, so nothing after the cursor is missed.
    pub fn since(&self) -> i64 {
        self.skip.map(|(t, _)| t.timestamp()).unwrap_or(0)
    }

    /// Reads one message, appending finished lines to `out`. Returns the cursor to store with
    /// those lines when no partial line is left over (otherwise the stored cursor must not move
    /// past the start of the partial line).
    pub fn push(&mut self, chunk: &LogChunk, out: &mut Vec<LogLine>) -> Option<Cursor> {
        let bytes = &chunk.bytes[..];
        let (ts_text, content) = match bytes.iter().position(|b| *b == b' ') {
            Some(i) => (std::str::from_utf8(&bytes[..i]).ok(), &bytes[i + 1..]),
            None => (None, bytes),
        };
        let parsed = ts_text.and_then(|t| Some((t, parse_ts(t)?)));
        let (ts, content) = match parsed {
            Some((text, ts)) => {
                if let Some((skip_ts, left)) = &mut self.skip {
                    if ts < *skip_ts || (ts == *skip_ts && *left > 0) {
                        if ts == *skip_ts {
                            *left -= 1;
                        }
                        self.advance(text);
                        return None;
                    }
                    self.skip = None;
                }
                self.advance(text);
                (ts, content)
            }
            // Not timestamped: keep the whole message as text.
            None => (Utc::now(), bytes),
        };
        let i = stream_index(chunk.stream);
        let mut rest = content;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = (&rest[..pos], &rest[pos + 1..]);
            if self.pending[i].is_empty() {
                emit(line, chunk.stream, ts, self.max_line_bytes, out);
            } else {
                let mut whole = std::mem::take(&mut self.pending[i]);
                whole.extend_from_slice(line);
                emit(&whole, chunk.stream, ts, self.max_line_bytes, out);
                whole.clear();
                self.pending[i] = whole;
            }
            rest = after;
        }
        if !rest.is_empty() {
            let pending = &mut self.pending[i];
            pending.extend_from_slice(rest);
            while pending.len() > self.max_line_bytes {
                let cut = split_point(pending, self.max_line_bytes);
                out.push(line_of(&pending[..cut], chunk.stream, ts));
                pending.drain(..cut);
            }
        }
        if self.pending.iter().all(Vec::is_empty) {
            self.consumed.clone()
        } else {
            None
        }
    }

    /// The container is done: unfinished lines become lines. Returns the final cursor.
    pub fn finish(&mut self, out: &mut Vec<LogLine>) -> Option<Cursor> {
        for (i, stream) in [LogStream::Stdout, LogStream::Stderr]
            .into_iter()
            .enumerate()
        {
            let pending = std::mem::take(&mut self.pending[i]);
            if !pending.is_empty() {
                emit(&pending, stream, Utc::now(), self.max_line_bytes, out);
            }
        }
        self.consumed.clone()
    }

    fn advance(&mut self, ts: &str) {
        match &mut self.consumed {
            Some(c) if c.ts == ts => c.count += 1,
            Some(c) => {
                c.ts.clear();
                c.ts.push_str(ts);
                c.count = 1;
            }
            None => {
                self.consumed = Some(Cursor {
                    ts: ts.to_owned(),
                    count: 1,
                })
            }
        }
    }
}

/// The largest cut at or below `max` that does not split a UTF-8 character.
fn split_point(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return bytes.len();
    }
    let mut i = max;
    while i > max.saturating_sub(3) && i > 0 && (bytes[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    if i == 0 || (bytes[i] & 0xC0) == 0x80 {
        max
    } else {
        i
    }
}

fn line_of(bytes: &[u8], stream: LogStream, ts: DateTime<Utc>) -> LogLine {
    LogLine {
        stream,
        ts,
        text: String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// One finished line (without its `\n`): drops a trailing `\r`, splits it if too long.
fn emit(line: &[u8], stream: LogStream, ts: DateTime<Utc>, max: usize, out: &mut Vec<LogLine>) {
    let mut line = line.strip_suffix(b"\r").unwrap_or(line);
    loop {
        let cut = split_point(line, max);
        out.push(line_of(&line[..cut], stream, ts));
        line = &line[cut..];
        if line.is_empty() {
            break;
        }
    }
}

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

/// Writes a job's events in batches, each in one `BEGIN IMMEDIATE` transaction fenced by the
/// controller's lease epoch, together with the job's log counters and cursor.
pub struct LogSink {
    pool: SqlitePool,
    job: JobId,
    epoch: i64,
    cap: LogCap,
    batch: Vec<NewEvent>,
    progress: LogProgress,
    first_pending: Option<Instant>,
    /// Lines and bytes of the log stored so far (in the database or the batch).
    stored_lines: u64,
    stored_bytes: u64,
    /// Past the head: lines go to `tail` (the last ones are kept, older ones dropped).
    truncating: bool,
    tail: VecDeque<NewEvent>,
    tail_bytes: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
    latest_cursor: Option<Cursor>,
}

impl LogSink {
    /// A sink for a job that already stored `lines` lines of `bytes` bytes.
    pub fn new(
        pool: SqlitePool,
        job: JobId,
        epoch: i64,
        cap: LogCap,
        lines: u64,
        bytes: u64,
    ) -> Self {
        Self {
            pool,
            job,
            epoch,
            cap,
            batch: Vec::with_capacity(BATCH_LINES),
            progress: LogProgress::default(),
            first_pending: None,
            stored_lines: lines,
            stored_bytes: bytes,
            truncating: false,
            tail: VecDeque::new(),
            tail_bytes: 0,
            dropped_lines: 0,
            dropped_bytes: 0,
            latest_cursor: None,
        }
    }

    pub fn push_line(&mut self, line: LogLine) {
        let len = line.text.len() as u64;
        let (head_lines, head_bytes) = self.cap.head();
        if !self.truncating
            && self.stored_lines < head_lines
            && self.stored_bytes.saturating_add(len) <= head_bytes
        {
            self.stored_lines += 1;
            self.stored_bytes += len;
            self.progress.lines += 1;
            self.progress.bytes += len as i64;
            self.batch
                .push(NewEvent::log(line.stream, line.ts, line.text));
            self.first_pending.get_or_insert_with(Instant::now);
            return;
        }
        self.truncating = true;
        self.tail_bytes += len;
        self.tail
            .push_back(NewEvent::log(line.stream, line.ts, line.text));
        let (tail_lines, tail_bytes) = self.cap.tail();
        while self.tail.len() as u64 > tail_lines || self.tail_bytes > tail_bytes {
            let Some(old) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= old.text.len() as u64;
            self.dropped_lines += 1;
            self.dropped_bytes += old.text.len() as u64;
        }
    }

    /// Records how far the log has been read, once the lines before it are pushed.
    pub fn set_cursor(&mut self, cursor: Cursor) {
        if !self.truncating {
            self.progress.cursor = Some((cursor.ts.clone(), cursor.count));
            self.first_pending.get_or_insert_with(Instant::now);
        }
        self.latest_cursor = Some(cursor);
    }

    /// Whether the batch is full and should be written now.
    pub fn is_full(&self) -> bool {
        self.batch.len() >= BATCH_LINES
    }

    /// When the pending batch must be written at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.first_pending.map(|t| t + BATCH_DELAY)
    }

    /// Writes a notice (after every line pushed before it) at once.
    pub async fn notice(&mut self, text: impl Into<String>) -> Result<(), DbError> {
        self.batch.push(NewEvent::notice(text));
        self.flush().await
    }

    /// Writes the pending batch.
    pub async fn flush(&mut self) -> Result<(), DbError> {
        self.first_pending = None;
        if self.batch.is_empty() && self.progress == LogProgress::default() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        lease::check(&mut tx, self.epoch).await?;
        if !self.batch.is_empty() {
            events::append(&mut tx, self.job, &self.batch).await?;
        }
        jobs::record_log_progress(&mut tx, self.job, &self.progress).await?;
        tx.commit().await?;
        self.batch.clear();
        self.progress = LogProgress::default();
        Ok(())
    }

    /// The container's log is complete: writes what is pending, and for a truncated log one
    /// "log truncated" notice followed by the kept tail.
    pub async fn end_of_log(&mut self) -> Result<(), DbError> {
        if self.truncating {
            if self.dropped_lines > 0 {
                self.batch.push(NewEvent::notice(format!(
                    "log truncated: {} lines ({} bytes) dropped",
                    self.dropped_lines, self.dropped_bytes
                )));
            }
            self.progress.lines += self.tail.len() as i64;
            self.progress.bytes += self.tail_bytes as i64;
            self.progress.dropped_lines += self.dropped_lines as i64;
            self.progress.dropped_bytes += self.dropped_bytes as i64;
            self.stored_lines += self.tail.len() as u64;
            self.stored_bytes += self.tail_bytes;
            self.batch.extend(self.tail.drain(..));
            self.progress.cursor = self.latest_cursor.as_ref().map(|c| (c.ts.clone(), c.count));
            self.truncating = false;
            self.tail_bytes = 0;
            self.dropped_lines = 0;
            self.dropped_bytes = 0;
        }
        self.flush().await
    }

    /// Forgets the cursor of the previous container (a new phase starts a new log).
    pub fn new_container(&mut self) {
        self.latest_cursor = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn chunk(stream: LogStream, text: &str) -> LogChunk {
        LogChunk {
            stream,
            bytes: Bytes::from(text.to_owned()),
        }
    }

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    const T1: &str = "2024-05-01T10:00:00.000000001Z";
    const T2: &str = "2024-05-01T10:00:00.000000002Z";
    const T3: &str = "2024-05-01T10:00:01.500000000Z";

    #[test]
    fn lines_are_split_stripped_and_joined() {
        let mut parser = LogParser::new(8, None);
        let mut out = Vec::new();
        let c = parser.push(
            &chunk(LogStream::Stdout, &format!("{T1} hello\r\n")),
            &mut out,
        );
        assert_eq!(
            c,
            Some(Cursor {
                ts: T1.into(),
                count: 1
            })
        );
        // A long line arrives in two partial messages.
        assert_eq!(
            parser.push(&chunk(LogStream::Stdout, &format!("{T1} abcdef")), &mut out),
            None
        );
        parser.push(
            &chunk(LogStream::Stdout, &format!("{T2} ghijkl\n")),
            &mut out,
        );
        parser.push(&chunk(LogStream::Stderr, &format!("{T2} \n")), &mut out);
        assert_eq!(texts(&out), ["hello", "abcdefgh", "ijkl", ""]);
        assert_eq!(out[3].stream, LogStream::Stderr);
        // A line without its newline comes out at the end.
        parser.push(&chunk(LogStream::Stdout, &format!("{T3} tail")), &mut out);
        let end = parser.finish(&mut out);
        assert_eq!(texts(&out).last(), Some(&"tail"));
        assert_eq!(
            end,
            Some(Cursor {
                ts: T3.into(),
                count: 1
            })
        );
    }

    #[test]
    fn splitting_never_cuts_a_character_and_bad_bytes_are_replaced() {
        let mut parser = LogParser::new(5, None);
        let mut out = Vec::new();
        // "ééé" is 6 bytes: the cut falls inside the third character.
        parser.push(&chunk(LogStream::Stdout, &format!("{T1} ééé\n")), &mut out);
        assert_eq!(texts(&out), ["éé", "é"]);
        let mut raw = format!("{T1} a").into_bytes();
        raw.extend_from_slice(&[0xff, 0xfe, b'b', b'\n']);
        parser.push(
            &LogChunk {
                stream: LogStream::Stdout,
                bytes: Bytes::from(raw),
            },
            &mut out,
        );
        assert_eq!(out.last().unwrap().text, "a\u{fffd}\u{fffd}b");
    }

    #[test]
    fn resuming_skips_exactly_what_was_stored() {
        // Three messages share T2: the first two were stored before the crash.
        let messages = [
            format!("{T1} one\n"),
            format!("{T2} two\n"),
            format!("{T2} three\n"),
            format!("{T2} four\n"),
            format!("{T3} five\n"),
        ];
        let mut parser = LogParser::new(
            100,
            Some(Cursor {
                ts: T2.into(),
                count: 2,
            }),
        );
        assert_eq!(
            parser.since(),
            chrono::DateTime::parse_from_rfc3339(T2)
                .unwrap()
                .timestamp()
        );
        let mut out = Vec::new();
        let mut last = None;
        for m in &messages {
            last = parser.push(&chunk(LogStream::Stdout, m), &mut out).or(last);
        }
        assert_eq!(texts(&out), ["four", "five"]);
        assert_eq!(
            last,
            Some(Cursor {
                ts: T3.into(),
                count: 1
            })
        );
        // Reading the same log again from the start (a broken follow) adds nothing.
        parser.rewind();
        out.clear();
        for m in &messages {
            parser.push(&chunk(LogStream::Stdout, m), &mut out);
        }
        assert!(out.is_empty());
    }

    #[test]
    fn cap_halves() {
        let cap = LogCap {
            lines: 11,
            bytes: 0,
        };
        assert_eq!(cap.head(), (5, u64::MAX));
        assert_eq!(cap.tail(), (6, u64::MAX));
    }
}
