//! One follower's SSE stream: replay after a given seq (from the job's tail when it still holds
//! the events, else from the database), then the job's live batches from the hub, deduplicated
//! by seq, until the job's `complete` event (or shutdown). Frames are rendered once per event by
//! the tail; a follower sends whatever is ready as one body chunk.
//!
//! The original system's streams ([`follow_original`]) carry the same events in its words: each
//! follower re-renders the shared frames (see [`OriginalEvent`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use ci_common::api::{StepView, StreamEvent};
use ci_common::db::events;
use ci_common::db::jobs::Job;
use ci_common::results::TestSummary;
use ci_common::{JobId, LogStream};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::auth::AuthUser;
pub use crate::hub::Framing;
use crate::hub::{Frames, Hub, Subscription, PAGE};
use crate::metrics::OpenStream;
use crate::AppState;

/// The comment sent on an idle stream.
const KEEP_ALIVE: &[u8] = b":keep-alive\n\n";

/// Every stream's content type. Without the charset, Python's `requests` (the original system's
/// client) decodes the stream as ISO-8859-1 and garbles every non-ASCII line.
pub const EVENT_STREAM: &str = "text/event-stream; charset=utf-8";

struct Follower {
    hub: Hub,
    job_id: JobId,
    framing: Framing,
    /// The last seq sent (or skipped as already seen).
    last: i64,
    live: Option<broadcast::Receiver<Arc<Frames>>>,
    /// Read the database before waiting for live events.
    catch_up: bool,
    /// Frames ready to send, in order.
    pending: Vec<Bytes>,
    done: bool,
    shutdown: CancellationToken,
}

/// The job's events after `after` as SSE frames, in chunks. With `live`, follows the job until
/// its `complete` event; without, ends after the stored events (for a job that already ended).
pub fn follow(
    state: &AppState,
    job_id: JobId,
    after: i64,
    live: bool,
    framing: Framing,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let mut follower = Follower {
        hub: state.hub.clone(),
        job_id,
        framing,
        last: after,
        live: None,
        catch_up: true,
        pending: Vec::new(),
        done: false,
        shutdown: state.shutdown.clone(),
    };
    if live {
        // Subscribe before the first database read, so nothing falls between the two.
        follower.follow(state.hub.subscribe(job_id, after));
    }
    stream::unfold(follower, |mut f| async move {
        let chunk = f.next().await?;
        Some((chunk, f))
    })
}

impl Follower {
    fn follow(&mut self, subscription: Subscription) {
        self.live = Some(subscription.live);
        if let Some(replay) = subscription.replay {
            self.catch_up = false;
            for batch in &replay {
                self.take(batch);
            }
        } else {
            self.catch_up = true;
        }
    }

    /// The next chunk: every frame that is ready, at least one.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if !self.pending.is_empty() {
                return Some(concat(&mut self.pending));
            }
            if self.done || self.shutdown.is_cancelled() {
                return None;
            }
            if self.catch_up {
                self.read_stored().await?;
                continue;
            }
            let live = self.live.as_mut()?;
            let received = tokio::select! {
                () = self.shutdown.cancelled() => return None,
                received = live.recv() => received,
            };
            match received {
                Ok(batch) => {
                    self.take(&batch);
                    self.take_ready();
                }
                Err(RecvError::Lagged(_)) => self.catch_up = true,
                Err(RecvError::Closed) => self.resubscribe(),
            }
        }
    }

    /// Takes the batches that are already waiting, without waiting for more.
    fn take_ready(&mut self) {
        while !self.done && !self.catch_up {
            let Some(live) = self.live.as_mut() else {
                return;
            };
            match live.try_recv() {
                Ok(batch) => self.take(&batch),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Lagged(_)) => self.catch_up = true,
                Err(TryRecvError::Closed) => self.resubscribe(),
            }
        }
    }

    /// The tail stopped (its job completed, or it failed): catch up and, if the job is not over,
    /// follow a new tail.
    fn resubscribe(&mut self) {
        let subscription = self.hub.subscribe(self.job_id, self.last);
        self.follow(subscription);
    }

    /// One page of stored events after `last`; `None` ends the stream (on a database error).
    async fn read_stored(&mut self) -> Option<()> {
        let rows = match events::list_after(self.hub.db(), self.job_id, self.last, PAGE).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::error!(job.id = %self.job_id, error = format!("{err:#}"), "cannot read job events; ending the stream");
                return None;
            }
        };
        if (rows.len() as i64) < PAGE {
            self.catch_up = false;
        }
        if !rows.is_empty() {
            let batch = Frames::render(self.last, &rows);
            self.take(&batch);
        }
        Some(())
    }

    fn take(&mut self, batch: &Frames) {
        if self.done || batch.upto <= self.last {
            return;
        }
        if batch.from > self.last {
            // Events between `last` and this batch were broadcast before we listened.
            self.catch_up = true;
            return;
        }
        let (frames, complete) = batch.frames_after(self.last, self.framing);
        if !frames.is_empty() {
            self.pending.push(frames);
        }
        self.last = batch.upto;
        if complete {
            self.done = true;
        }
    }
}

/// The chunks as one (without copying when there is only one).
fn concat(chunks: &mut Vec<Bytes>) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().expect("one chunk");
    }
    let mut all = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
    for chunk in chunks.drain(..) {
        all.extend_from_slice(&chunk);
    }
    Bytes::from(all)
}

/// The job's events after `after`, as the original system's streams carry them: `id:` and
/// `data:` lines, with the JSON of [`OriginalEvent`].
pub fn follow_original(
    state: &AppState,
    job_id: JobId,
    after: i64,
    live: bool,
) -> impl Stream<Item = Bytes> + Send + 'static {
    follow(state, job_id, after, live, Framing::Original)
}

/// An event as the original system's streams carry it: the v1 event's JSON (a superset of the
/// original's `{"type":"log","data":...}` and `{"type":"complete","success":...}`), but with
/// the original's status words ([`ci_common::JobStatus::legacy_word`]), and each line's text
/// ending with its newline, as the original sent it and as its client prints it
/// (`print(data, end="")`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OriginalEvent {
    /// The first event of `/submit-stream`.
    JobId { job_id: JobId },
    Log {
        data: String,
        seq: i64,
        stream: LogStream,
        ts: DateTime<Utc>,
    },
    /// A line the server itself says (such as `Job already completed.`), as a log line.
    #[serde(rename = "log")]
    Message { data: String },
    Status {
        seq: i64,
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        ts: DateTime<Utc>,
    },
    Notice {
        data: String,
        seq: i64,
        ts: DateTime<Utc>,
    },
    /// The job's test results (the original's client ignores the type).
    Summary {
        seq: i64,
        #[serde(flatten)]
        summary: TestSummary,
        ts: DateTime<Utc>,
    },
    /// A step started or ended (the original's client ignores the type).
    Step {
        seq: i64,
        #[serde(flatten)]
        step: StepView,
        ts: DateTime<Utc>,
    },
    Complete {
        success: bool,
        seq: i64,
        status: &'static str,
        reason: Option<String>,
        exit_code: Option<i64>,
        ts: DateTime<Utc>,
    },
}

impl OriginalEvent {
    /// A line the server says to the original client; it ends with a newline.
    pub fn message(text: &str) -> Self {
        OriginalEvent::Message {
            data: with_newline(text.to_owned()),
        }
    }

    /// The event as one SSE frame without an id: `data: <json>` and a blank line.
    pub fn frame(&self) -> Bytes {
        Bytes::from(format!("data: {}\n\n", ascii_json(self)))
    }
}

impl From<StreamEvent> for OriginalEvent {
    fn from(event: StreamEvent) -> Self {
        match event {
            StreamEvent::JobId { job_id } => OriginalEvent::JobId { job_id },
            StreamEvent::Log {
                seq,
                data,
                stream,
                ts,
            } => OriginalEvent::Log {
                data: with_newline(data),
                seq,
                stream,
                ts,
            },
            StreamEvent::Status {
                seq,
                status,
                reason,
                ts,
            } => OriginalEvent::Status {
                seq,
                status: status.legacy_word(),
                reason,
                ts,
            },
            StreamEvent::Step { seq, step, ts } => OriginalEvent::Step { seq, step, ts },
            StreamEvent::Summary { seq, summary, ts } => {
                OriginalEvent::Summary { seq, summary, ts }
            }
            StreamEvent::Notice { seq, data, ts } => OriginalEvent::Notice {
                data: with_newline(data),
                seq,
                ts,
            },
            // The original's `complete` stays as it was (no test counts).
            StreamEvent::Complete {
                seq,
                success,
                status,
                reason,
                exit_code,
                ts,
                ..
            } => OriginalEvent::Complete {
                success,
                seq,
                status: status.legacy_word(),
                reason,
                exit_code,
                ts,
            },
        }
    }
}

/// A stored line (which has no newline) as the original sent it: with its newline.
fn with_newline(mut line: String) -> String {
    line.push('\n');
    line
}

/// JSON with every non-ASCII character escaped (`\u00e9`, surrogate pairs beyond U+FFFF), as
/// the original's `json.dumps` wrote it. Its client splits the decoded stream with Python's
/// `str.splitlines`, which also breaks lines at U+0085, U+2028 and U+2029: raw, those would cut a
/// `data:` line in two. (Outside strings JSON is ASCII, so escaping every non-ASCII character
/// keeps it valid.)
pub fn ascii_json(value: &impl Serialize) -> String {
    let mut out = Vec::new();
    write_ascii_json(&mut out, value);
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// Appends `value` as JSON to `out` the way [`ascii_json`] renders it, without a copy when the
/// JSON is ASCII already (the usual case).
pub fn write_ascii_json(out: &mut Vec<u8>, value: &impl Serialize) {
    let start = out.len();
    serde_json::to_writer(&mut *out, value).expect("stream events serialize");
    if out[start..].is_ascii() {
        return;
    }
    let json = String::from_utf8(out.split_off(start)).expect("JSON is UTF-8");
    let mut units = [0u16; 2];
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c as u8);
        } else {
            for unit in c.encode_utf16(&mut units) {
                out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
            }
        }
    }
}

/// An SSE response for `user` whose body is `frames` (complete SSE frames) of `job`, with a
/// keep-alive comment after `keepalive` without one, and headers that stop proxies from
/// buffering it. The stream ends soon after the caller loses access to the job
/// ([`crate::auth::until_access_ends`]).
pub fn sse_response<S>(state: &AppState, user: &AuthUser, job: &Job, frames: S) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let frames = crate::auth::until_access_ends(state, user, job, frames);
    let open = state.metrics.stream_opened();
    let body = KeepAlive::new(frames, state.config.keepalive(), open);
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// A stream of body chunks that sends a keep-alive comment whenever `every` passes without one,
/// and is counted as an open stream until the response body is dropped (the stream ended, or
/// its client left).
struct KeepAlive<S> {
    inner: Pin<Box<S>>,
    sleep: Pin<Box<Sleep>>,
    every: Duration,
    _open: OpenStream,
}

impl<S> KeepAlive<S> {
    fn new(inner: S, every: Duration, open: OpenStream) -> Self {
        Self {
            inner: Box::pin(inner),
            sleep: Box::pin(tokio::time::sleep(every)),
            every,
            _open: open,
        }
    }
}

impl<S: Stream<Item = Bytes>> Stream for KeepAlive<S> {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(chunk)) => chunk,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {
                ready!(this.sleep.as_mut().poll(cx));
                Bytes::from_static(KEEP_ALIVE)
            }
        };
        let deadline = Instant::now() + this.every;
        this.sleep.as_mut().reset(deadline);
        Poll::Ready(Some(Ok(next)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use ci_common::api::Outcome;
    use ci_common::db::events::NewEvent;
    use ci_common::db::{jobs, lease, users};
    use ci_common::testing::TempDb;
    use ci_common::{JobStatus, LogStream};
    use futures_util::StreamExt;

    use super::*;
    use crate::Config;

    struct Setup {
        _db: TempDb,
        state: AppState,
        job: JobId,
        epoch: i64,
    }

    async fn setup(capacity: usize) -> Setup {
        let db = TempDb::new().await;
        let pool = db.pool.clone();
        let user = users::create(&pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        let job = jobs::create(&pool, user.id, "test", b"zip")
            .await
            .unwrap()
            .id;
        let epoch = lease::acquire(&pool, "test").await.unwrap().epoch;
        jobs::claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
            .unwrap();
        let shutdown = CancellationToken::new();
        let hub = Hub::start(
            pool.clone(),
            Duration::from_millis(5),
            shutdown.clone(),
            capacity,
        );
        let state = AppState {
            db: pool.into(),
            config: Arc::new(Config::for_db(&db.path)),
            shutdown,
            hub,
            touches: Arc::default(),
            metrics: Arc::default(),
            secrets: None,
            key_rate: None,
            sign_in_failures: None,
        };
        Setup {
            _db: db,
            state,
            job,
            epoch,
        }
    }

    async fn log(state: &AppState, job: JobId, text: &str) -> i64 {
        // The one writer of the job: each line commits on its own.
        let line = NewEvent::log(LogStream::Stdout, Utc::now(), text);
        events::append(&state.db, job, &[line]).await.unwrap()
    }

    /// The ids of the SSE frames in a chunk.
    fn ids(chunk: &[u8]) -> Vec<i64> {
        std::str::from_utf8(chunk)
            .unwrap()
            .lines()
            .filter_map(|line| line.strip_prefix("id: "))
            .map(|id| id.parse().unwrap())
            .collect()
    }

    /// Waits until the job's tail has broadcast the events up to `seq`.
    async fn tail_reached(watcher: &mut broadcast::Receiver<Arc<Frames>>, seq: i64) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match watcher.recv().await {
                    Ok(batch) if batch.upto >= seq => break,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => panic!("tail closed"),
                }
            }
        })
        .await
        .expect("the tail read the events");
    }

    #[tokio::test]
    async fn a_follower_that_lags_the_channel_rereads_from_the_database() {
        let Setup {
            _db,
            state,
            job,
            epoch,
        } = setup(2).await;
        let mut follower = Box::pin(follow(&state, job, 0, true, Framing::Named));
        assert_eq!(ids(&follower.next().await.unwrap()), [1]);
        // Another follower that keeps up, to know when each batch was broadcast.
        let mut watcher = state.hub.subscribe(job, 1).live;
        for i in 0..20 {
            let seq = log(&state, job, &format!("line {i}")).await;
            // Wait for each batch, so that the follower, which does not read, lags.
            tail_reached(&mut watcher, seq).await;
        }
        let outcome = Outcome::new(JobStatus::Passed);
        jobs::finish(&state.db, job, Some(epoch), &outcome)
            .await
            .unwrap();
        let rest: Vec<i64> = tokio::time::timeout(
            Duration::from_secs(30),
            follower
                .flat_map(|chunk| stream::iter(ids(&chunk)))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        assert_eq!(rest, (2..=23).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn followers_share_the_frames_the_tail_rendered_once() {
        let Setup {
            _db, state, job, ..
        } = setup(16).await;
        let mut watcher = state.hub.subscribe(job, 0).live;
        tail_reached(&mut watcher, 1).await;
        // Followers that start within the tail's recent events replay them from the tail, and
        // live events reach every follower as the same bytes.
        let mut named: Vec<_> = (0..5)
            .map(|_| Box::pin(follow(&state, job, 0, true, Framing::Named)))
            .collect();
        let mut original = Box::pin(follow(&state, job, 0, true, Framing::Original));
        let mut replayed = Vec::new();
        for follower in &mut named {
            replayed.push(follower.next().await.unwrap());
        }
        log(&state, job, "hello").await;
        let mut live = Vec::new();
        for follower in &mut named {
            live.push(follower.next().await.unwrap());
        }
        for chunks in [&replayed, &live] {
            for chunk in chunks.iter() {
                assert_eq!(chunk.as_ptr(), chunks[0].as_ptr(), "one rendering");
                assert_eq!(chunk, &chunks[0]);
            }
        }
        assert_eq!(ids(&replayed[0]), [1]);
        assert_eq!(ids(&live[0]), [2]);
        let text = std::str::from_utf8(&live[0]).unwrap();
        assert!(text.starts_with("id: 2\nevent: log\ndata: {"), "{text:?}");
        assert!(text.ends_with("}\n\n"), "{text:?}");
        assert!(text.contains(r#""data":"hello""#), "{text:?}");

        // The original system's frames are rendered by the tail too, once for all followers.
        let original = [
            original.next().await.unwrap(),
            original.next().await.unwrap(),
        ];
        let text = std::str::from_utf8(&original[1]).unwrap();
        assert!(text.starts_with("id: 2\ndata: {"), "{text:?}");
        assert!(text.contains(r#""data":"hello\n""#), "{text:?}");
        let mut second = Box::pin(follow(&state, job, 1, true, Framing::Original));
        let again = second.next().await.unwrap();
        assert_eq!(again.as_ptr(), original[1].as_ptr(), "one rendering");
    }

    /// The JSON of every `data:` line of a stream's body.
    fn data(body: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(body)
            .unwrap()
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|json| serde_json::from_str(json).unwrap())
            .collect()
    }

    async fn whole(frames: impl Stream<Item = Bytes>) -> Vec<u8> {
        let chunks: Vec<Bytes> = tokio::time::timeout(Duration::from_secs(30), frames.collect())
            .await
            .expect("the stream ended");
        chunks.concat()
    }

    #[tokio::test]
    async fn every_stream_declares_utf8() {
        let Setup {
            _db, state, job, ..
        } = setup(16).await;
        let user = AuthUser {
            user_id: ci_common::UserId::new(),
            user_name: "Ada".into(),
            key_id: ci_common::ApiKeyId::new(),
            scope: Default::default(),
            session: None,
            source: "127.0.0.1".into(),
        };
        let job = ci_common::db::jobs::get(&state.db, job)
            .await
            .unwrap()
            .unwrap();
        let response = sse_response(&state, &user, &job, stream::empty());
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream; charset=utf-8"
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
    }

    #[tokio::test]
    async fn original_streams_end_each_line_with_its_newline_and_say_completed() {
        let Setup {
            _db,
            state,
            job,
            epoch,
        } = setup(16).await;
        log(&state, job, "caf\u{e9} \u{1f680} \u{4f60}\u{597d}").await;
        log(&state, job, "").await;
        let outcome = Outcome::new(JobStatus::Failed).with_exit_code(1);
        jobs::finish(&state.db, job, Some(epoch), &outcome)
            .await
            .unwrap();

        let original = whole(follow_original(&state, job, 0, false)).await;
        let text = std::str::from_utf8(&original).unwrap();
        assert!(!text.contains("event: "), "{text}");
        assert!(text.is_ascii(), "non-ASCII text is escaped: {text}");
        assert!(
            text.contains(r#""data":"caf\u00e9 \ud83d\ude80 \u4f60\u597d\n""#),
            "{text}"
        );
        let events = data(&original);
        let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["status", "log", "log", "status", "complete"]);
        assert_eq!(events[0]["status"], "running");
        assert_eq!(events[1]["data"], "caf\u{e9} \u{1f680} \u{4f60}\u{597d}\n");
        assert_eq!(events[2]["data"], "\n");
        assert_eq!(events[3]["status"], "completed");
        assert_eq!(events[4]["status"], "completed");
        assert_eq!(events[4]["success"], false);
        assert_eq!(events[4]["exit_code"], 1);
        assert_eq!(ids(&original), [1, 2, 3, 4, 5]);

        // The v1 stream keeps its lines without newline and its precise states.
        let v1 = whole(follow(&state, job, 0, false, Framing::Named)).await;
        let events = data(&v1);
        assert_eq!(events[1]["data"], "caf\u{e9} \u{1f680} \u{4f60}\u{597d}");
        assert_eq!(events[2]["data"], "");
        assert_eq!(events[3]["status"], "failed");
        assert_eq!(events[4]["status"], "failed");
    }

    #[test]
    fn original_json_keeps_whole_lines_for_pythons_splitlines() {
        // `str.splitlines` breaks at these; raw in a `data:` line, they would cut it in two.
        let text = "a\u{85}b\u{2028}c\u{2029}d\u{b}e\u{1c}f";
        let frame = OriginalEvent::message(text).frame();
        let frame = std::str::from_utf8(&frame).unwrap();
        assert!(frame.is_ascii(), "{frame:?}");
        assert_eq!(
            frame.matches('\n').count(),
            2,
            "one line and a blank one: {frame:?}"
        );
        let json: serde_json::Value =
            serde_json::from_str(frame.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "log", "data": format!("{text}\n")})
        );
    }

    #[test]
    fn original_events_keep_the_originals_shapes() {
        let job_id: JobId = "6f1c1f7e-58a4-4c8e-9d36-2a4f8c3e1b10".parse().unwrap();
        let first = OriginalEvent::from(StreamEvent::JobId { job_id }).frame();
        assert_eq!(
            first,
            format!("data: {{\"type\":\"job_id\",\"job_id\":\"{job_id}\"}}\n\n")
        );
        let done = OriginalEvent::message("Job already completed.").frame();
        assert_eq!(
            done,
            "data: {\"type\":\"log\",\"data\":\"Job already completed.\\n\"}\n\n"
        );
        for (status, word, success) in [
            (JobStatus::Passed, "completed", true),
            (JobStatus::Failed, "completed", false),
            (JobStatus::Error, "failed", false),
            (JobStatus::TimedOut, "failed", false),
            (JobStatus::Lost, "failed", false),
            (JobStatus::Cancelled, "cancelled", false),
        ] {
            let complete = OriginalEvent::from(StreamEvent::Complete {
                seq: 7,
                success: status.success(),
                status,
                reason: None,
                exit_code: None,
                tests: Some(Default::default()),
                ts: Utc::now(),
            });
            let json = serde_json::to_value(&complete).unwrap();
            assert!(
                json.get("tests").is_none(),
                "the original's complete is unchanged"
            );
            assert_eq!(json["type"], "complete");
            assert_eq!(json["success"], success, "{status}");
            assert_eq!(json["status"], word, "{status}");
            let text = serde_json::to_string(&complete).unwrap();
            assert!(
                text.starts_with(r#"{"type":"complete","success":"#),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_tail_stops_when_its_last_follower_leaves_and_shutdown_ends_streams() {
        let Setup {
            _db, state, job, ..
        } = setup(16).await;
        let mut follower = Box::pin(follow(&state, job, 0, true, Framing::Named));
        assert_eq!(ids(&follower.next().await.unwrap()), [1]);
        assert_eq!(state.hub.tails(), 1);
        drop(follower);
        tokio::time::timeout(Duration::from_secs(10), async {
            while state.hub.tails() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the tail stopped");

        let mut follower = Box::pin(follow(&state, job, 0, true, Framing::Named));
        assert_eq!(ids(&follower.next().await.unwrap()), [1]);
        state.shutdown.cancel();
        let next = tokio::time::timeout(Duration::from_secs(5), follower.next())
            .await
            .expect("the stream ended on shutdown");
        assert!(next.is_none());
    }
}
