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
    framing: Framing,
}

/// The job's events after `after`. With `live`, follows the job until its `complete` event;
/// without, ends after the stored events (for a job that already ended).
pub fn follow(
    state: &AppState,
    job_id: JobId,
    after: i64,
    live: bool,
    framing: Framing,
) -> impl Stream<Item = Event> + Send + 'static {
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
        framing,
    };
    stream::unfold(follower, |mut f| async move {
        let event = f.next().await?;
        Some((event, f))
    })
}

impl Follower {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(rendered) = self.pending.pop_front() {
                if rendered.complete {
                    self.done = true;
                    self.pending.clear();
                }
                return Some(self.framing.event(&rendered));
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
