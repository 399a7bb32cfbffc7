//! One follower's SSE stream: replay from the database after a given seq, then the job's live
//! batches from the hub, deduplicated by seq, until the job's `complete` event (or shutdown).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use ci_common::db::events;
use ci_common::JobId;
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::hub::{Batch, Hub, Rendered, PAGE};
use crate::AppState;

/// How events are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `id:`, `event: <type>` and `data:` (the v1 API).
    Named,
    /// `id:` and `data:` only, so that clients listening for unnamed messages (the original
    /// system's) see every event.
    Unnamed,
}

impl Framing {
    /// SSE events from rendered job events.
    pub fn frame(
        self,
        events: impl Stream<Item = Rendered> + Send + 'static,
    ) -> impl Stream<Item = Event> + Send + 'static {
        events.map(move |rendered| self.event(&rendered))
    }

    pub fn event(self, rendered: &Rendered) -> Event {
        let event = Event::default()
            .id(rendered.seq.to_string())
            .data(rendered.json.as_str());
        match self {
            Framing::Named => event.event(rendered.kind),
            Framing::Unnamed => event,
        }
    }
}

struct Follower {
    hub: Hub,
    job_id: JobId,
    /// The last seq sent (or skipped as already seen).
    last: i64,
    live: Option<broadcast::Receiver<Arc<Batch>>>,
    /// Read the database before waiting for live events.
    catch_up: bool,
    pending: VecDeque<Rendered>,
    done: bool,
    shutdown: CancellationToken,
}

/// The job's events after `after`. With `live`, follows the job until its `complete` event;
/// without, ends after the stored events (for a job that already ended).
pub fn follow(
    state: &AppState,
    job_id: JobId,
    after: i64,
    live: bool,
) -> impl Stream<Item = Rendered> + Send + 'static {
    let follower = Follower {
        hub: state.hub.clone(),
        job_id,
        last: after,
        // Subscribe before the first database read, so nothing falls between the two.
        live: live.then(|| state.hub.subscribe(job_id)),
        catch_up: true,
        pending: VecDeque::new(),
        done: false,
        shutdown: state.shutdown.clone(),
    };
    stream::unfold(follower, |mut f| async move {
        let event = f.next().await?;
        Some((event, f))
    })
}

impl Follower {
    async fn next(&mut self) -> Option<Rendered> {
        loop {
            if let Some(rendered) = self.pending.pop_front() {
                if rendered.complete {
                    self.done = true;
                    self.pending.clear();
                }
                return Some(rendered);
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
                Ok(batch) => self.take(&batch),
                Err(RecvError::Lagged(_)) => self.catch_up = true,
                Err(RecvError::Closed) => {
                    // The tail stopped (its job completed, or it failed): read what is stored
                    // and, if the job is not over, follow a new tail.
                    self.live = Some(self.hub.subscribe(self.job_id));
                    self.catch_up = true;
                }
            }
        }
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
        for row in &rows {
            self.pending.push_back(Rendered::from_row(row));
            self.last = row.seq;
        }
        Some(())
    }

    fn take(&mut self, batch: &Batch) {
        if batch.upto <= self.last {
            return;
        }
        if batch.from > self.last {
            // Events between `last` and this batch were broadcast before we listened.
            self.catch_up = true;
            return;
        }
        for rendered in batch.events.iter().filter(|e| e.seq > self.last) {
            self.pending.push_back(rendered.clone());
        }
        self.last = batch.upto;
    }
}

/// An SSE response from a stream of events, with keep-alive comments and headers that stop
/// proxies from buffering it.
pub fn sse_response<S>(state: &AppState, events: S) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    let sse = Sse::new(events.map(Ok::<_, Infallible>)).keep_alive(
        KeepAlive::new()
            .interval(state.config.keepalive())
            .text("keep-alive"),
    );
    (
        [
            (
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        sse,
    )
        .into_response()
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

    #[tokio::test]
    async fn a_follower_that_lags_the_channel_rereads_from_the_database() {
        let Setup {
            _dir,
            state,
            job,
            epoch,
        } = setup(2).await;
        let mut follower = Box::pin(follow(&state, job, 0, true));
        assert_eq!(follower.next().await.unwrap().seq, 1);
        // Another follower that keeps up, to know when each batch was broadcast.
        let mut watcher = state.hub.subscribe(job);
        for i in 0..20 {
            let seq = log(&state, job, &format!("line {i}")).await;
            loop {
                match watcher.recv().await {
                    Ok(batch) if batch.upto >= seq => break,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => panic!("tail closed"),
                }
            }
        }
        let outcome = Outcome::new(JobStatus::Passed);
        jobs::finish(&state.pool, job, Some(epoch), &outcome)
            .await
            .unwrap();
        let rest: Vec<i64> = tokio::time::timeout(
            Duration::from_secs(30),
            follower.map(|r| r.seq).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        assert_eq!(rest, (2..=23).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_tail_stops_when_its_last_follower_leaves_and_shutdown_ends_streams() {
        let Setup {
            _dir, state, job, ..
        } = setup(16).await;
        let mut follower = Box::pin(follow(&state, job, 0, true));
        assert_eq!(follower.next().await.unwrap().seq, 1);
        assert_eq!(state.hub.tails(), 1);
        drop(follower);
        tokio::time::timeout(Duration::from_secs(10), async {
            while state.hub.tails() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the tail stopped");

        let mut follower = Box::pin(follow(&state, job, 0, true));
        assert_eq!(follower.next().await.unwrap().seq, 1);
        state.shutdown.cancel();
        let next = tokio::time::timeout(Duration::from_secs(5), follower.next())
            .await
            .expect("the stream ended on shutdown");
        assert!(next.is_none());
    }
}
