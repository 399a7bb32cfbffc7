//! A job's output on its way into `job_events`: [`LogParser`] turns Docker's timestamped log
//! messages into lines (split when too long, lossy UTF-8, `\r\n` handled) and tracks the resume
//! cursor; [`LogSink`] batches them for a writer task that stores them, fenced by the lease
//! epoch, while the log is read on; the sink keeps the head and the tail of a log that goes past
//! its cap.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ci_common::db::events::{self, NewEvent};
use ci_common::db::jobs::{self, LogProgress};
use ci_common::db::{lease, DbError, SqlitePool};
use ci_common::{JobId, LogStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::docker::LogChunk;

/// A batch is handed to the writer when it has this many lines...
pub const BATCH_LINES: usize = 1000;
/// ...or this many bytes of text...
pub const BATCH_BYTES: usize = 1 << 20;
/// ...or when its first line has waited this long.
pub const BATCH_DELAY: Duration = Duration::from_millis(25);
/// Batches waiting for the writer (beyond that, reading the log waits for the database).
const WRITER_QUEUE: usize = 6;
/// A writer that is behind commits what is waiting in one transaction of up to this many
/// lines (or bytes).
const WRITE_MAX_LINES: usize = 8000;
const WRITE_MAX_BYTES: usize = 8 << 20;

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

/// The size of the pieces Docker cuts a long line into (its log copier's buffer): every piece of
/// a line but the last is exactly this long.
pub const DOCKER_PIECE_BYTES: usize = 16 * 1024;

/// Splits Docker log messages into lines and knows how far it has read.
///
/// A line longer than [`DOCKER_PIECE_BYTES`] arrives as several messages. Their bytes are joined
/// before they are decoded, so a character cut between two pieces comes out whole. Every piece
/// but the last is exactly [`DOCKER_PIECE_BYTES`] long; the last ends with a newline with the
/// `json-file` driver but not with `local`, so a message without a newline that is shorter than
/// a whole piece ends its line.
#[derive(Debug)]
pub struct LogParser {
    max_line_bytes: usize,
    piece_bytes: usize,
    /// Unfinished line per stream (Docker splits long lines into several messages).
    pending: [Vec<u8>; 2],
    /// Position after the last message read (including skipped ones).
    consumed: Option<Cursor>,
    /// While resuming: messages at or before this position are skipped.
    skip: Option<(DateTime<Utc>, i64)>,
    /// The last timestamp parsed, up to its whole second (`YYYY-MM-DDTHH:MM:SS`, UTC), and
    /// that second: a timestamp in the same second only needs its fraction read.
    last_second: Option<([u8; 19], DateTime<Utc>)>,
}

impl LogParser {
    /// A parser that resumes after `cursor` (from the database, or `None` for the beginning).
    pub fn new(max_line_bytes: usize, cursor: Option<Cursor>) -> Self {
        let mut parser = Self {
            max_line_bytes: max_line_bytes.max(4),
            piece_bytes: DOCKER_PIECE_BYTES,
            pending: [Vec::new(), Vec::new()],
            consumed: cursor,
            skip: None,
            last_second: None,
        };
        parser.rewind();
        parser
    }

    /// The same parser for pieces of another size (tests use small ones).
    pub fn with_piece_bytes(mut self, piece_bytes: usize) -> Self {
        self.piece_bytes = piece_bytes.max(1);
        self
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
        if self.push_lines(chunk, out) {
            self.consumed.clone()
        } else {
            None
        }
    }

    /// Like [`LogParser::push`] without copying the cursor: returns whether
    /// [`LogParser::cursor`] may be stored with the lines read so far.
    pub fn push_lines(&mut self, chunk: &LogChunk, out: &mut Vec<LogLine>) -> bool {
        let bytes = &chunk.bytes[..];
        let (ts_text, content) = match bytes.iter().position(|b| *b == b' ') {
            Some(i) => (std::str::from_utf8(&bytes[..i]).ok(), &bytes[i + 1..]),
            None => (None, bytes),
        };
        let parsed = ts_text.and_then(|t| Some((t, self.parse_time(t)?)));
        let (ts, content) = match parsed {
            Some((text, ts)) => {
                if let Some((skip_ts, left)) = &mut self.skip {
                    if ts < *skip_ts || (ts == *skip_ts && *left > 0) {
                        if ts == *skip_ts {
                            *left -= 1;
                        }
                        self.advance(text);
                        return false;
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
        let last_piece = !content.ends_with(b"\n") && content.len() < self.piece_bytes;
        if last_piece && !self.pending[i].is_empty() {
            let line = std::mem::take(&mut self.pending[i]);
            emit(&line, chunk.stream, ts, self.max_line_bytes, out);
        }
        self.consumed.is_some() && self.pending.iter().all(Vec::is_empty)
    }

    /// Where the log was read up to.
    pub fn cursor(&self) -> Option<&Cursor> {
        self.consumed.as_ref()
    }

    /// Parses a Docker timestamp; one in the same second as the previous one (the usual case
    /// in a busy log) costs only reading its fraction.
    fn parse_time(&mut self, text: &str) -> Option<DateTime<Utc>> {
        let b = text.as_bytes();
        let utc_fraction = b.len() > 20 && b.len() <= 30 && b[19] == b'.' && b[b.len() - 1] == b'Z';
        if utc_fraction {
            if let Some((second, at)) = &self.last_second {
                if b[..19] == second[..] {
                    let digits = &b[20..b.len() - 1];
                    if digits.iter().all(u8::is_ascii_digit) {
                        let mut nanos: i64 = 0;
                        for (i, d) in digits.iter().enumerate().take(9) {
                            nanos += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
                        }
                        return Some(*at + chrono::Duration::nanoseconds(nanos));
                    }
                }
            }
        }
        let ts = parse_ts(text)?;
        if utc_fraction {
            let mut second = [0u8; 19];
            second.copy_from_slice(&b[..19]);
            let at = ts - chrono::Duration::nanoseconds(i64::from(ts.timestamp_subsec_nanos()));
            self.last_second = Some((second, at));
        }
        Some(ts)
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

/// A finished batch on its way to the writer: events, and the job's counters and cursor that
/// go with them (the cursor covers exactly the lines of this and earlier batches).
#[derive(Debug, Default)]
struct Batch {
    events: Vec<NewEvent>,
    progress: LogProgress,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.progress == LogProgress::default()
    }

    /// Appends a later batch: its events after ours, its counters added, its cursor wins.
    fn absorb(&mut self, later: Batch) {
        if self.events.is_empty() {
            self.events = later.events;
        } else {
            self.events.extend(later.events);
        }
        let (mine, theirs) = (&mut self.progress, later.progress);
        mine.lines += theirs.lines;
        mine.bytes += theirs.bytes;
        mine.dropped_lines += theirs.dropped_lines;
        mine.dropped_bytes += theirs.dropped_bytes;
        if theirs.cursor.is_some() {
            mine.cursor = theirs.cursor;
        }
    }
}

enum ToWriter {
    Batch(Batch),
    /// Answered once everything sent before it is committed.
    Sync(oneshot::Sender<()>),
}

/// Writes batches as they come, each in one `BEGIN IMMEDIATE` transaction fenced by the lease
/// epoch. When it is behind, everything waiting (up to [`WRITE_MAX_LINES`]) goes into one
/// transaction. Ends at the first error (the sink then reports it) or when the sink is gone.
async fn write_batches(
    pool: SqlitePool,
    job: JobId,
    epoch: i64,
    mut rx: mpsc::Receiver<ToWriter>,
) -> Result<(), DbError> {
    let mut acks = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut batch = Batch::default();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                ToWriter::Batch(b) => batch.absorb(b),
                ToWriter::Sync(ack) => acks.push(ack),
            }
            if acks.is_empty()
                && batch.events.len() < WRITE_MAX_LINES
                && batch_bytes(&batch) < WRITE_MAX_BYTES
            {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit(&pool, job, epoch, &batch).await?;
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    Ok(())
}

fn batch_bytes(batch: &Batch) -> usize {
    batch.events.iter().map(|e| e.text.len()).sum()
}

async fn commit(pool: &SqlitePool, job: JobId, epoch: i64, batch: &Batch) -> Result<(), DbError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut tx, epoch).await?;
    if !batch.events.is_empty() {
        events::append(&mut tx, job, &batch.events).await?;
    }
    jobs::record_log_progress(&mut tx, job, &batch.progress).await?;
    tx.commit().await?;
    Ok(())
}

/// Collects a job's events into batches and hands them to a writer task, so the log is read
/// while the previous batch commits. The queue to the writer is bounded: a slow database
/// slows the reader down instead of filling memory. [`LogSink::sync`] (and `end_of_log`)
/// wait until everything handed over is committed and report the writer's error, if any.
pub struct LogSink {
    epoch: i64,
    cap: LogCap,
    to_writer: Option<mpsc::Sender<ToWriter>>,
    writer: Option<JoinHandle<Result<(), DbError>>>,
    /// The writer ended with `LeaseLost` (later calls report it again).
    lease_lost: bool,
    batch: Vec<NewEvent>,
    batch_bytes: usize,
    progress: LogProgress,
    first_pending: Option<Instant>,
    /// Lines and bytes of the log stored so far (in the database or on the way there).
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
    /// A sink for a job that already stored `lines` lines of `bytes` bytes. Starts its writer
    /// task (which ends when the sink is dropped, after writing what it was given).
    pub fn new(
        pool: SqlitePool,
        job: JobId,
        epoch: i64,
        cap: LogCap,
        lines: u64,
        bytes: u64,
    ) -> Self {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let writer = tokio::spawn(write_batches(pool, job, epoch, rx));
        Self {
            epoch,
            cap,
            to_writer: Some(tx),
            writer: Some(writer),
            lease_lost: false,
            batch: Vec::with_capacity(BATCH_LINES),
            batch_bytes: 0,
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
            self.batch_bytes += len as usize;
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
    pub fn set_cursor(&mut self, cursor: &Cursor) {
        if !self.truncating {
            match &mut self.progress.cursor {
                Some((ts, count)) => {
                    ts.clear();
                    ts.push_str(&cursor.ts);
                    *count = cursor.count;
                }
                None => self.progress.cursor = Some((cursor.ts.clone(), cursor.count)),
            }
            self.first_pending.get_or_insert_with(Instant::now);
        }
        match &mut self.latest_cursor {
            Some(latest) => latest.clone_from(cursor),
            None => self.latest_cursor = Some(cursor.clone()),
        }
    }

    /// Whether the batch is full and should be handed over now.
    pub fn is_full(&self) -> bool {
        self.batch.len() >= BATCH_LINES || self.batch_bytes >= BATCH_BYTES
    }

    /// When the pending batch must be handed over at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.first_pending.map(|t| t + BATCH_DELAY)
    }

    /// Hands a notice (after every line pushed before it) to the writer at once.
    pub async fn notice(&mut self, text: impl Into<String>) -> Result<(), DbError> {
        self.batch.push(NewEvent::notice(text));
        self.flush().await
    }

    /// Hands the pending batch to the writer; waits only while the writer's queue is full.
    /// Fails if the writer has stopped on an error (with that error).
    pub async fn flush(&mut self) -> Result<(), DbError> {
        self.first_pending = None;
        if self.batch.is_empty() && self.progress == LogProgress::default() {
            return Ok(());
        }
        let batch = Batch {
            events: std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_LINES)),
            progress: std::mem::take(&mut self.progress),
        };
        self.batch_bytes = 0;
        self.send(ToWriter::Batch(batch)).await
    }

    /// Hands over the pending batch and waits until everything handed over is committed.
    pub async fn sync(&mut self) -> Result<(), DbError> {
        self.flush().await?;
        let (ack, done) = oneshot::channel();
        self.send(ToWriter::Sync(ack)).await?;
        match done.await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.writer_error().await),
        }
    }

    async fn send(&mut self, msg: ToWriter) -> Result<(), DbError> {
        let sent = match &self.to_writer {
            Some(tx) => tx.send(msg).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.writer_error().await)
        }
    }

    /// Why the writer stopped (it only stops early on an error).
    async fn writer_error(&mut self) -> DbError {
        self.to_writer = None;
        let ended = match self.writer.take() {
            Some(writer) => writer.await,
            None => Ok(Ok(())),
        };
        match ended {
            Ok(Err(e)) => {
                self.lease_lost = matches!(e, DbError::LeaseLost(_));
                e
            }
            _ if self.lease_lost => DbError::LeaseLost(self.epoch),
            Ok(Ok(())) => DbError::Query(sqlx::Error::Protocol(
                "the log writer stopped after an earlier error".to_owned(),
            )),
            Err(join) => DbError::Query(sqlx::Error::Protocol(format!(
                "the log writer failed: {join}"
            ))),
        }
    }

    /// The container's log is complete: writes what is pending, and for a truncated log one
    /// "log truncated" notice followed by the kept tail, and waits until all of it is stored.
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
        self.sync().await
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
        let mut parser = LogParser::new(8, None).with_piece_bytes(6);
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
    fn a_short_piece_without_a_newline_ends_its_line() {
        // The `local` driver returns every piece of a long line without a newline: the short
        // last piece ends the line; a piece of exactly the piece size does not.
        let mut parser = LogParser::new(100, None).with_piece_bytes(4);
        let mut out = Vec::new();
        for message in ["abcd", "efgh", "ij", "next\n", "wxyz", "", "after\n"] {
            parser.push(
                &chunk(LogStream::Stdout, &format!("{T1} {message}")),
                &mut out,
            );
        }
        assert_eq!(texts(&out), ["abcdefghij", "next", "wxyz", "after"]);
        // Multi-byte characters cut between pieces are joined before decoding.
        let mut parser = LogParser::new(100, None).with_piece_bytes(4);
        let mut out = Vec::new();
        let bytes = "éé日🚀".as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + 4).min(bytes.len());
            let mut message = format!("{T1} ").into_bytes();
            message.extend_from_slice(&bytes[at..end]);
            parser.push(
                &LogChunk {
                    stream: LogStream::Stdout,
                    bytes: Bytes::from(message),
                },
                &mut out,
            );
            at = end;
        }
        parser.finish(&mut out);
        assert_eq!(texts(&out), ["éé日🚀"]);
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

    #[test]
    fn timestamps_in_the_same_second_parse_like_the_full_parser() {
        let mut parser = LogParser::new(100, None);
        for text in [
            "2024-05-01T10:00:00.000000001Z",
            "2024-05-01T10:00:00.5Z",
            "2024-05-01T10:00:00.123456789Z",
            "2024-05-01T10:00:00.12Z",
            "2024-05-01T10:00:01.000000007Z",
            "2024-05-01T10:00:01.999999999Z",
            "2024-05-01T10:00:01+02:00",
            "2024-05-01T10:00:01.25Z",
            "2024-05-01T10:00:01.2x5Z",
        ] {
            assert_eq!(parser.parse_time(text), parse_ts(text), "{text}");
        }
    }

    mod sink {
        use super::*;
        use ci_common::db::{self, users};
        use ci_common::EventKind;

        struct Db {
            _dir: tempfile::TempDir,
            pool: SqlitePool,
            epoch: i64,
            job: JobId,
            /// The job's events before the sink's (from the claim).
            base: i64,
        }

        async fn db() -> Db {
            let dir = tempfile::tempdir().unwrap();
            let pool = db::connect(&dir.path().join("ci.db"), 4).await.unwrap();
            let epoch = lease::acquire(&pool, "test").await.unwrap().epoch;
            let user = users::create(&pool, "Ada", "ada@example.com")
                .await
                .unwrap();
            jobs::create(&pool, user.id, "test", b"zip").await.unwrap();
            let job = jobs::claim_next(&pool, epoch, "img")
                .await
                .unwrap()
                .unwrap()
                .id;
            let base = events::last_seq(&pool, job).await.unwrap();
            Db {
                base,
                _dir: dir,
                pool,
                epoch,
                job,
            }
        }

        fn sink(d: &Db, cap: LogCap) -> LogSink {
            LogSink::new(d.pool.clone(), d.job, d.epoch, cap, 0, 0)
        }

        fn ts_of(i: usize) -> String {
            format!(
                "2024-05-01T10:00:{:02}.{:09}Z",
                i / 1_000_000,
                i % 1_000_000
            )
        }

        /// Pushes lines `0..n` with their cursors the way `follow` does.
        async fn feed(sink: &mut LogSink, range: std::ops::Range<usize>) {
            for i in range {
                let ts = ts_of(i);
                sink.push_line(LogLine {
                    stream: LogStream::Stdout,
                    ts: parse_ts(&ts).unwrap(),
                    text: format!("line {i}"),
                });
                sink.set_cursor(&Cursor { ts, count: 1 });
                if sink.is_full() {
                    sink.flush().await.unwrap();
                }
            }
        }

        async fn stored(d: &Db) -> Vec<events::EventRow> {
            events::list_after(&d.pool, d.job, d.base, 1_000_000)
                .await
                .unwrap()
        }

        #[tokio::test]
        async fn batches_are_stored_in_order_with_their_cursor_once_drained() {
            let d = db().await;
            let mut sink = sink(&d, LogCap { lines: 0, bytes: 0 });
            sink.notice("running tests").await.unwrap();
            let n = 25 * BATCH_LINES + 7;
            feed(&mut sink, 0..n).await;
            sink.end_of_log().await.unwrap();
            let rows = stored(&d).await;
            assert_eq!(rows.len(), n + 1);
            assert_eq!(rows[0].text, "running tests");
            for (i, row) in rows.iter().enumerate() {
                assert_eq!(row.seq, d.base + i as i64 + 1, "gap-free");
            }
            for (i, row) in rows[1..].iter().enumerate() {
                assert_eq!(row.kind, EventKind::Log);
                assert_eq!(row.text, format!("line {i}"));
            }
            let job = jobs::get(&d.pool, d.job).await.unwrap().unwrap();
            assert_eq!(job.log_lines, n as i64);
            assert_eq!(job.log_cursor.as_deref(), Some(ts_of(n - 1).as_str()));
            assert_eq!(job.log_cursor_skip, 1);
        }

        #[tokio::test]
        async fn a_pending_batch_is_stored_within_the_delay_without_a_full_batch() {
            let d = db().await;
            let mut sink = sink(&d, LogCap { lines: 0, bytes: 0 });
            feed(&mut sink, 0..3).await;
            let deadline = sink.deadline().expect("lines are pending");
            assert!(deadline <= Instant::now() + BATCH_DELAY);
            tokio::time::sleep_until(deadline).await;
            sink.flush().await.unwrap();
            // Handed over, not waited for: the writer stores it on its own.
            let wait = async {
                while stored(&d).await.len() < 3 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(5), wait)
                .await
                .expect("stored without end_of_log");
        }

        #[tokio::test]
        async fn a_lost_lease_stops_the_writer_and_every_later_call_reports_it() {
            let d = db().await;
            let mut sink = sink(&d, LogCap { lines: 0, bytes: 0 });
            feed(&mut sink, 0..10).await;
            sink.sync().await.unwrap();
            lease::acquire(&d.pool, "another").await.unwrap();
            feed(&mut sink, 10..20).await;
            let err = sink.end_of_log().await.unwrap_err();
            assert!(
                matches!(err, DbError::LeaseLost(e) if e == d.epoch),
                "{err:?}"
            );
            sink.notice("more").await.unwrap_err();
            let err = sink.sync().await.unwrap_err();
            assert!(matches!(err, DbError::LeaseLost(_)), "{err:?}");
            assert_eq!(stored(&d).await.len(), 10, "nothing after the takeover");
        }

        #[tokio::test]
        async fn a_slow_database_holds_the_reader_back_after_a_few_batches() {
            let d = db().await;
            let mut sink = sink(&d, LogCap { lines: 0, bytes: 0 });
            // Another connection holds the write lock: the writer waits on it.
            let mut blocker = d.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
            sqlx::query("UPDATE jobs SET log_lines = log_lines")
                .execute(&mut *blocker)
                .await
                .unwrap();
            let mut handed = 0;
            let stuck = loop {
                feed(
                    &mut sink,
                    handed * BATCH_LINES..(handed + 1) * BATCH_LINES - 1,
                )
                .await;
                sink.push_line(LogLine {
                    stream: LogStream::Stdout,
                    ts: Utc::now(),
                    text: "x".into(),
                });
                match tokio::time::timeout(Duration::from_millis(200), sink.flush()).await {
                    Ok(result) => result.unwrap(),
                    Err(_) => break handed,
                }
                handed += 1;
                // Queued, plus what the writer took at once into its waiting transaction.
                let bound = WRITER_QUEUE + WRITE_MAX_LINES / BATCH_LINES + 1;
                assert!(handed <= bound, "the queue is bounded");
            };
            assert!(stuck >= WRITER_QUEUE, "a few batches are queued first");
            blocker.rollback().await.unwrap();
            sink.end_of_log().await.unwrap();
        }

        #[tokio::test]
        async fn a_capped_log_keeps_head_notice_and_tail_through_the_writer() {
            let d = db().await;
            let mut sink = sink(
                &d,
                LogCap {
                    lines: 3000,
                    bytes: 0,
                },
            );
            feed(&mut sink, 0..10_000).await;
            sink.end_of_log().await.unwrap();
            let rows = stored(&d).await;
            assert_eq!(rows.len(), 3001);
            assert_eq!(rows[1499].text, "line 1499");
            assert!(rows[1500].text.starts_with("log truncated: 7000 lines"));
            assert_eq!(rows[1501].text, "line 8500");
            assert_eq!(rows[3000].text, "line 9999");
            let job = jobs::get(&d.pool, d.job).await.unwrap().unwrap();
            assert_eq!((job.log_lines, job.dropped_lines), (3000, 7000));
            assert_eq!(job.log_cursor.as_deref(), Some(ts_of(9999).as_str()));
        }
    }
}
