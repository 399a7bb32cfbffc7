//! One follower's SSE stream: replay after a given seq (from the job's tail when it still holds
//! the events, else from the database), then the job's live batches from the hub, deduplicated
//! by seq, until the job's `complete` event (or shutdown). Frames are rendered once per event by
//! the tail; a follower sends whatever is ready as one body chunk.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use ci_common::db::events;
use ci_common::JobId;
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

pub use crate::hub::Framing;
use crate::hub::{Batch, Hub, Subscription, PAGE};
use crate::AppState;

/// The comment sent on an idle stream.
const KEEP_ALIVE: &[u8] = b":keep-alive\n\n";

struct Follower {
    hub: Hub,
    job_id: JobId,
    framing: Framing,
    /// The last seq sent (or skipped as already seen).
    last: i64,
    live: Option<broadcast::Receiver<Arc<Batch>>>,
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
        let rows = match events::list_after(self.hub.pool(), self.job_id, self.last, PAGE).await {
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
            let batch = Batch::render(self.last, &rows);
            self.take(&batch);
        }
        Some(())
    }

    fn take(&mut self, batch: &Batch) {
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

/// An SSE response whose body is `frames` (complete SSE frames), with a keep-alive comment
/// after `keepalive` without one, and headers that stop proxies from buffering it.
pub fn sse_response<S>(state: &AppState, frames: S) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let body = KeepAlive::new(frames, state.config.keepalive());
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
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

/// A stream of body chunks that sends a keep-alive comment whenever `every` passes without one.
struct KeepAlive<S> {
    inner: Pin<Box<S>>,
    sleep: Pin<Box<Sleep>>,
    every: Duration,
}

impl<S> KeepAlive<S> {
    fn new(inner: S, every: Duration) -> Self {
        Self {
            inner: Box::pin(inner),
            sleep: Box::pin(tokio::time::sleep(every)),
            every,
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
    use ci_common::db::{self, jobs, lease, users};
    use ci_common::{JobStatus, LogStream};
    use futures_util::StreamExt;

    use super::*;
    use crate::Config;

    struct Setup {
        _dir: tempfile::TempDir,
        state: AppState,
        job: JobId,
        epoch: i64,
    }

    async fn setup(capacity: usize) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ci.db");
        let pool = db::connect(&path, 4).await.unwrap();
        let user = users::create(&pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        let job = jobs::create(&pool, user.id, "test", b"zip")
            .await
            .unwrap()
            .id;
        let epoch = lease::acquire(&pool, "test").await.unwrap().epoch;
        jobs::claim_next(&pool, epoch, "img")
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
            pool,
            config: Arc::new(Config::for_db(path)),
            shutdown,
            hub,
            touches: Arc::default(),
        };
        Setup {
            _dir: dir,
            state,
            job,
            epoch,
        }
    }

    async fn log(state: &AppState, job: JobId, text: &str) -> i64 {
        let mut tx = state.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let line = NewEvent::log(LogStream::Stdout, Utc::now(), text);
        let seq = events::append(&mut tx, job, &[line]).await.unwrap();
        tx.commit().await.unwrap();
        seq
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
    async fn tail_reached(watcher: &mut broadcast::Receiver<Arc<Batch>>, seq: i64) {
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
            _dir,
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
        jobs::finish(&state.pool, job, Some(epoch), &outcome)
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
            _dir, state, job, ..
        } = setup(16).await;
        let mut watcher = state.hub.subscribe(job, 0).live;
        tail_reached(&mut watcher, 1).await;
        // Followers that start within the tail's recent events replay them from the tail, and
        // live events reach every follower as the same bytes.
        let mut named: Vec<_> = (0..5)
            .map(|_| Box::pin(follow(&state, job, 0, true, Framing::Named)))
            .collect();
        let mut unnamed = Box::pin(follow(&state, job, 0, true, Framing::Unnamed));
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

        let unnamed = [unnamed.next().await.unwrap(), unnamed.next().await.unwrap()];
        let text = std::str::from_utf8(&unnamed[1]).unwrap();
        let named = std::str::from_utf8(&live[0]).unwrap();
        assert_eq!(text, named.replace("event: log\n", ""));
    }

    #[tokio::test]
    async fn a_tail_stops_when_its_last_follower_leaves_and_shutdown_ends_streams() {
        let Setup {
            _dir, state, job, ..
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
