//! A container's output into lines: live from the attach stream (raw bytes) or, when resuming,
//! from Docker's timestamped log messages (the 16 KiB piece rule); the resume [`Cursor`]; line
//! splitting that never cuts a UTF-8 character.

use chrono::{DateTime, Utc};
use ci_common::LogStream;

use crate::docker::LogChunk;

/// One line of output.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub stream: LogStream,
    pub ts: DateTime<Utc>,
    pub text: String,
}

/// How far one stream (stdout or stderr) of a container was stored: the lines that ended, and
/// the bytes of the next line already stored (a line longer than the line limit is stored in
/// parts as it arrives).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub lines: u64,
    pub bytes: u64,
}

/// Where a step's log was stored up to, kept with the job (`jobs.log_cursor` and
/// `log_cursor_skip`) so that a controller that takes the job over reads on from there without
/// a line lost or repeated.
#[derive(Clone, Debug, PartialEq)]
pub enum Cursor {
    /// A [`Position`] per stream (stdout, stderr): exact however the log is read, the attach
    /// stream or Docker's log. Stored as `lines out=L+B err=L+B`, skip 0.
    Lines([Position; 2]),
    /// The Docker timestamp of the last log message read and how many messages carry exactly
    /// that timestamp: the cursor of earlier versions, which read only Docker's log. A step
    /// resumed from one goes on with it.
    Time { ts: String, count: i64 },
}

impl Cursor {
    /// The cursor as stored: `(jobs.log_cursor, jobs.log_cursor_skip)`.
    pub fn stored(&self) -> (String, i64) {
        match self {
            Cursor::Lines([out, err]) => (
                format!(
                    "lines out={}+{} err={}+{}",
                    out.lines, out.bytes, err.lines, err.bytes
                ),
                0,
            ),
            Cursor::Time { ts, count } => (ts.clone(), *count),
        }
    }

    /// The cursor a job stored (see [`Cursor::stored`]); `None` if `text` is neither form.
    pub fn from_stored(text: &str, skip: i64) -> Option<Self> {
        if let Some(rest) = text.strip_prefix("lines ") {
            let mut positions = [Position::default(); 2];
            let mut seen = [false; 2];
            for part in rest.split_whitespace() {
                let (name, value) = part.split_once('=')?;
                let i = match name {
                    "out" => 0,
                    "err" => 1,
                    _ => return None,
                };
                let (lines, bytes) = value.split_once('+')?;
                positions[i] = Position {
                    lines: lines.parse().ok()?,
                    bytes: bytes.parse().ok()?,
                };
                seen[i] = true;
            }
            return seen.iter().all(|s| *s).then_some(Cursor::Lines(positions));
        }
        parse_ts(text)?;
        Some(Cursor::Time {
            ts: text.to_owned(),
            count: skip,
        })
    }
}

pub(super) fn parse_ts(ts: &str) -> Option<DateTime<Utc>> {
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

const STREAMS: [LogStream; 2] = [LogStream::Stdout, LogStream::Stderr];

/// The size of the pieces Docker cuts a long line into (its log copier's buffer): every piece of
/// a line but the last is exactly this long.
pub const DOCKER_PIECE_BYTES: usize = 16 * 1024;

/// One stream's unfinished line and position.
#[derive(Debug, Default)]
struct StreamState {
    /// The bytes of the unfinished line not stored yet.
    pending: Vec<u8>,
    /// What was handed out as lines (see [`Position`]).
    at: Position,
    /// While resuming: whole lines to skip, then bytes of the next line.
    skip: Position,
}

/// The legacy timestamp cursor, for a step resumed from one.
#[derive(Debug)]
struct TimeCursor {
    /// Position after the last message read (including skipped ones).
    consumed: (String, i64),
    /// While resuming: messages at or before this position are skipped.
    skip: Option<(DateTime<Utc>, i64)>,
}

/// Splits a container's output into lines and knows how far it has read.
///
/// Two inputs: raw bytes as they came out of the container ([`LogParser::push_raw`], the attach
/// stream: a line ends at its newline) and Docker's timestamped log messages
/// ([`LogParser::push`], used to read on after a restart). A line longer than
/// [`DOCKER_PIECE_BYTES`] is several messages in Docker's log; their bytes are joined before they
/// are decoded, so a character cut between two pieces comes out whole. Every piece but the last
/// is exactly [`DOCKER_PIECE_BYTES`] long; the last ends with a newline with the `json-file`
/// driver but not with `local`, so a message without a newline that is shorter than a whole
/// piece ends its line. Both inputs count the same lines, so a [`Cursor::Lines`] taken while
/// reading one resumes exactly in the other.
#[derive(Debug)]
pub struct LogParser {
    max_line_bytes: usize,
    piece_bytes: usize,
    streams: [StreamState; 2],
    /// Set when resuming from a [`Cursor::Time`]: the cursor stays a timestamp.
    time: Option<TimeCursor>,
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
            streams: Default::default(),
            time: None,
            last_second: None,
        };
        match cursor {
            Some(Cursor::Lines(positions)) => {
                for (state, at) in parser.streams.iter_mut().zip(positions) {
                    state.at = at;
                }
            }
            Some(Cursor::Time { ts, count }) => {
                parser.time = Some(TimeCursor {
                    consumed: (ts, count),
                    skip: None,
                })
            }
            None => {}
        }
        parser.rewind();
        parser
    }

    /// The same parser for pieces of another size (tests use small ones).
    pub fn with_piece_bytes(mut self, piece_bytes: usize) -> Self {
        self.piece_bytes = piece_bytes.max(1);
        self
    }

    /// Prepares to read the log again from the start: everything already handed out is skipped,
    /// unfinished lines are read again.
    pub fn rewind(&mut self) {
        match &mut self.time {
            Some(time) => {
                time.skip = parse_ts(&time.consumed.0).map(|t| (t, time.consumed.1));
                for state in &mut self.streams {
                    state.pending.clear();
                }
            }
            None => {
                for state in &mut self.streams {
                    state.pending.clear();
                    state.skip = std::mem::take(&mut state.at);
                }
            }
        }
    }

    /// The `since` (UNIX seconds) to ask Docker's log for, so nothing after the cursor is
    /// missed (0: from the beginning).
    pub fn since(&self) -> i64 {
        self.time
            .as_ref()
            .and_then(|t| t.skip)
            .map(|(t, _)| t.timestamp())
            .unwrap_or(0)
    }

    /// Reads raw output of `stream` (the attach stream), received at `ts`, appending finished
    /// lines to `out`. [`LogParser::cursor`] covers exactly the lines handed out.
    pub fn push_raw(
        &mut self,
        stream: LogStream,
        bytes: &[u8],
        ts: DateTime<Utc>,
        out: &mut Vec<LogLine>,
    ) {
        self.feed(stream, bytes, ts, false, out);
    }

    /// Reads one of Docker's timestamped log messages, appending finished lines to `out`.
    /// Returns the cursor to store with those lines, when it may be stored (see
    /// [`LogParser::push_lines`]).
    pub fn push(&mut self, chunk: &LogChunk, out: &mut Vec<LogLine>) -> Option<Cursor> {
        if self.push_lines(chunk, out) {
            self.cursor()
        } else {
            None
        }
    }

    /// Like [`LogParser::push`] without building the cursor: returns whether
    /// [`LogParser::cursor`] may be stored with the lines read so far (always, but for a
    /// timestamp cursor while a line is unfinished or still being skipped).
    pub fn push_lines(&mut self, chunk: &LogChunk, out: &mut Vec<LogLine>) -> bool {
        let bytes = &chunk.bytes[..];
        let (ts_text, content) = match bytes.iter().position(|b| *b == b' ') {
            Some(i) => (std::str::from_utf8(&bytes[..i]).ok(), &bytes[i + 1..]),
            None => (None, bytes),
        };
        let parsed = ts_text.and_then(|t| Some((t, self.parse_time(t)?)));
        let (ts, content) = match parsed {
            Some((text, ts)) => {
                if let Some(time) = &mut self.time {
                    if let Some((skip_ts, left)) = &mut time.skip {
                        if ts < *skip_ts || (ts == *skip_ts && *left > 0) {
                            if ts == *skip_ts {
                                *left -= 1;
                            }
                            time.advance(text);
                            return false;
                        }
                        time.skip = None;
                    }
                    time.advance(text);
                }
                (ts, content)
            }
            // Not timestamped: keep the whole message as text.
            None => (Utc::now(), bytes),
        };
        self.feed(chunk.stream, content, ts, true, out);
        match &self.time {
            Some(_) => self.streams.iter().all(|s| s.pending.is_empty()),
            None => true,
        }
    }

    /// Where the output was read up to: the lines handed out so far.
    pub fn cursor(&self) -> Option<Cursor> {
        match &self.time {
            Some(time) => Some(Cursor::Time {
                ts: time.consumed.0.clone(),
                count: time.consumed.1,
            }),
            None => Some(Cursor::Lines([self.streams[0].at, self.streams[1].at])),
        }
    }

    /// Splits `content` of `stream` into lines. `message`: `content` is one of Docker's log
    /// messages (a short one without a newline ends its line); otherwise raw output.
    fn feed(
        &mut self,
        stream: LogStream,
        content: &[u8],
        ts: DateTime<Utc>,
        message: bool,
        out: &mut Vec<LogLine>,
    ) {
        let max = self.max_line_bytes;
        // A short message without a newline is the end of its line (see the type's doc).
        let mut ends_line =
            message && !content.ends_with(b"\n") && content.len() < self.piece_bytes;
        let state = &mut self.streams[stream_index(stream)];
        let mut rest = content;
        // Resuming: what was handed out before is skipped, whole lines first.
        while state.skip.lines > 0 {
            match rest.iter().position(|b| *b == b'\n') {
                Some(pos) => rest = &rest[pos + 1..],
                None if ends_line => {
                    rest = &[];
                    ends_line = false;
                }
                None => return,
            }
            state.skip.lines -= 1;
            state.at.lines += 1;
        }
        if state.skip.bytes > 0 {
            let n = (state.skip.bytes as usize).min(rest.len());
            rest = &rest[n..];
            state.skip.bytes -= n as u64;
            state.at.bytes += n as u64;
            if state.skip.bytes > 0 {
                return;
            }
        }
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = (&rest[..pos], &rest[pos + 1..]);
            if state.pending.is_empty() {
                emit(line, stream, ts, max, out);
            } else {
                let mut whole = std::mem::take(&mut state.pending);
                whole.extend_from_slice(line);
                emit(&whole, stream, ts, max, out);
                whole.clear();
                state.pending = whole;
            }
            state.at.lines += 1;
            state.at.bytes = 0;
            rest = after;
        }
        if !rest.is_empty() {
            let pending = &mut state.pending;
            pending.extend_from_slice(rest);
            while pending.len() > max {
                let cut = split_point(pending, max);
                out.push(line_of(&pending[..cut], stream, ts));
                pending.drain(..cut);
                state.at.bytes += cut as u64;
            }
        }
        if ends_line {
            let line = std::mem::take(&mut state.pending);
            emit(&line, stream, ts, max, out);
            state.at.lines += 1;
            state.at.bytes = 0;
        }
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
        for (state, stream) in self.streams.iter_mut().zip(STREAMS) {
            let pending = std::mem::take(&mut state.pending);
            if !pending.is_empty() {
                emit(&pending, stream, Utc::now(), self.max_line_bytes, out);
                state.at.lines += 1;
                state.at.bytes = 0;
            }
        }
        self.cursor()
    }
}

impl TimeCursor {
    fn advance(&mut self, ts: &str) {
        let (at, count) = &mut self.consumed;
        if at == ts {
            *count += 1;
        } else {
            at.clear();
            at.push_str(ts);
            *count = 1;
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

    fn lines(out: &[Cursor]) -> Vec<[Position; 2]> {
        out.iter()
            .map(|c| match c {
                Cursor::Lines(p) => *p,
                Cursor::Time { .. } => panic!("a timestamp cursor: {c:?}"),
            })
            .collect()
    }

    fn at(out: u64, out_bytes: u64, err: u64) -> [Position; 2] {
        [
            Position {
                lines: out,
                bytes: out_bytes,
            },
            Position {
                lines: err,
                bytes: 0,
            },
        ]
    }

    #[test]
    fn lines_are_split_stripped_and_joined() {
        let mut parser = LogParser::new(8, None).with_piece_bytes(6);
        let mut out = Vec::new();
        let mut cursors = Vec::new();
        cursors.extend(parser.push(
            &chunk(LogStream::Stdout, &format!("{T1} hello\r\n")),
            &mut out,
        ));
        // A long line arrives in two partial messages.
        cursors.extend(parser.push(&chunk(LogStream::Stdout, &format!("{T1} abcdef")), &mut out));
        cursors.extend(parser.push(
            &chunk(LogStream::Stdout, &format!("{T2} ghijkl\n")),
            &mut out,
        ));
        cursors.extend(parser.push(&chunk(LogStream::Stderr, &format!("{T2} \n")), &mut out));
        assert_eq!(texts(&out), ["hello", "abcdefgh", "ijkl", ""]);
        assert_eq!(out[3].stream, LogStream::Stderr);
        // A line without its newline comes out at the end.
        parser.push(&chunk(LogStream::Stdout, &format!("{T3} tail")), &mut out);
        let end = parser.finish(&mut out);
        assert_eq!(texts(&out).last(), Some(&"tail"));
        assert_eq!(
            lines(&cursors),
            [at(1, 0, 0), at(1, 0, 0), at(2, 0, 0), at(2, 0, 1)]
        );
        assert_eq!(lines(&[end.unwrap()]), [at(3, 0, 1)]);
    }

    #[test]
    fn cursors_are_stored_and_read_back() {
        let lines = Cursor::Lines(at(12, 300, 4));
        let (text, skip) = lines.stored();
        assert_eq!((text.as_str(), skip), ("lines out=12+300 err=4+0", 0));
        assert_eq!(Cursor::from_stored(&text, skip), Some(lines));
        let time = Cursor::Time {
            ts: T2.into(),
            count: 3,
        };
        let (text, skip) = time.stored();
        assert_eq!(Cursor::from_stored(&text, skip), Some(time));
        for bad in ["lines out=1+0", "lines out=x+0 err=0+0", "yesterday", ""] {
            assert_eq!(Cursor::from_stored(bad, 0), None, "{bad}");
        }
    }

    /// A log of both streams with what makes lines hard: long lines (several pieces, split by
    /// the line limit), a line of exactly one piece, empty lines, `\r\n`, multi-byte characters
    /// and a last line without a newline.
    fn hard_log() -> Vec<(LogStream, Vec<u8>)> {
        let mut log = Vec::new();
        for i in 0..40 {
            let stream = if i % 3 == 2 {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            };
            let text = match i % 7 {
                0 => format!("line {i}"),
                1 => String::new(),
                2 => format!("{}é日🚀 long {i}", "x".repeat(10 + i)),
                3 => "abcdefgh".to_owned(),
                4 => format!("crlf {i}\r"),
                5 => "日本語のテキスト".repeat(3),
                _ => format!("{i}"),
            };
            log.push((stream, text.into_bytes()));
        }
        log.push((LogStream::Stdout, b"no newline".to_vec()));
        log
    }

    /// The log as the attach stream gives it: frames of a few bytes, cut anywhere.
    fn raw_frames(log: &[(LogStream, Vec<u8>)]) -> Vec<(LogStream, Vec<u8>)> {
        let mut frames = Vec::new();
        for (k, (stream, line)) in log.iter().enumerate() {
            let mut bytes = line.clone();
            if k + 1 < log.len() {
                bytes.push(b'\n');
            }
            for piece in bytes.chunks(1 + k % 5) {
                frames.push((*stream, piece.to_vec()));
            }
        }
        frames
    }

    /// The log as Docker's `local` driver gives it back: every line cut into pieces of
    /// `piece` bytes, without newlines; a line that is a whole number of pieces (an empty
    /// one too) ends with an empty piece.
    fn docker_messages(log: &[(LogStream, Vec<u8>)], piece: usize) -> Vec<LogChunk> {
        let mut messages = Vec::new();
        for (stream, line) in log {
            let mut pieces: Vec<&[u8]> = line.chunks(piece).collect();
            if line.len() % piece == 0 {
                pieces.push(&[]);
            }
            for p in pieces {
                let mut bytes = format!("{T1} ").into_bytes();
                bytes.extend_from_slice(p);
                messages.push(LogChunk {
                    stream: *stream,
                    bytes: Bytes::from(bytes),
                });
            }
        }
        messages
    }

    fn by_stream(lines: &[LogLine]) -> [Vec<String>; 2] {
        let mut split = [Vec::new(), Vec::new()];
        for l in lines {
            split[stream_index(l.stream)].push(l.text.clone());
        }
        split
    }

    #[test]
    fn the_attach_stream_and_dockers_log_give_the_same_lines() {
        let log = hard_log();
        let (max, piece) = (12, 8);
        let mut raw = LogParser::new(max, None).with_piece_bytes(piece);
        let mut from_raw = Vec::new();
        for (stream, bytes) in raw_frames(&log) {
            raw.push_raw(stream, &bytes, Utc::now(), &mut from_raw);
        }
        let raw_end = raw.finish(&mut from_raw);
        let mut messages = LogParser::new(max, None).with_piece_bytes(piece);
        let mut from_messages = Vec::new();
        for m in docker_messages(&log, piece) {
            messages.push(&m, &mut from_messages);
        }
        let messages_end = messages.finish(&mut from_messages);
        assert_eq!(by_stream(&from_raw), by_stream(&from_messages));
        assert_eq!(raw_end, messages_end);
        // Long lines are split, never a character cut, empty lines kept.
        let [out, _] = by_stream(&from_raw);
        assert!(out.iter().all(|l| l.len() <= max), "{out:?}");
        assert!(out.iter().any(String::is_empty));
        assert!(out.iter().any(|l| l == "crlf 4"));
        assert_eq!(out.last().map(String::as_str), Some("no newline"));
    }

    #[test]
    fn a_cursor_taken_anywhere_in_the_attach_stream_resumes_exactly_from_dockers_log() {
        let log = hard_log();
        let (max, piece) = (12, 8);
        let frames = raw_frames(&log);
        let messages = docker_messages(&log, piece);
        let mut whole = LogParser::new(max, None).with_piece_bytes(piece);
        let mut expected = Vec::new();
        for (stream, bytes) in &frames {
            whole.push_raw(*stream, bytes, Utc::now(), &mut expected);
        }
        whole.finish(&mut expected);
        let expected = by_stream(&expected);
        for cut in 0..=frames.len() {
            // Live until `cut`, then a crash: what was handed out was stored with its cursor.
            let mut live = LogParser::new(max, None).with_piece_bytes(piece);
            let mut stored = Vec::new();
            for (stream, bytes) in &frames[..cut] {
                live.push_raw(*stream, bytes, Utc::now(), &mut stored);
            }
            let (text, skip) = live.cursor().unwrap().stored();
            // The next controller reads Docker's log from the start, after that cursor.
            let cursor = Cursor::from_stored(&text, skip);
            let mut resumed = LogParser::new(max, cursor).with_piece_bytes(piece);
            for m in &messages {
                resumed.push(m, &mut stored);
            }
            resumed.finish(&mut stored);
            assert_eq!(
                by_stream(&stored),
                expected,
                "cut after frame {cut}: {text}"
            );
        }
        // Reading Docker's log again after a broken follow (rewind) adds nothing either.
        let mut parser = LogParser::new(max, None).with_piece_bytes(piece);
        let mut out = Vec::new();
        for m in &messages[..messages.len() / 2] {
            parser.push(m, &mut out);
        }
        parser.rewind();
        for m in &messages {
            parser.push(m, &mut out);
        }
        parser.finish(&mut out);
        assert_eq!(by_stream(&out), expected);
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
            Some(Cursor::Time {
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
            Some(Cursor::Time {
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
}
