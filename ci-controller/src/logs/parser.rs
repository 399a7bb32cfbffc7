//! Docker's log messages into lines: the resume cursor, the 16 KiB piece rule, and line
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
