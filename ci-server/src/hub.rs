//! Live job events, fanned out on one replica. One tail task per followed job reads new events
//! from the database and broadcasts them to every follower of that job on this replica; tails
//! wake only when a cheap `PRAGMA data_version` check on one dedicated connection says that the
//! database changed. The database stays the only source of truth: a follower replays what it
//! missed from it, so a slow follower, a new tail or another replica never causes a gap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ci_common::db::events::{self, EventRow};
use ci_common::db::SqlitePool;
use ci_common::JobId;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Events per database read.
pub const PAGE: i64 = 500;
/// Batches a follower may fall behind before it re-reads from the database instead.
pub const CHANNEL_CAPACITY: usize = 256;
/// How often an idle tail checks whether anyone still follows it.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// One event, rendered once for all followers.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub seq: i64,
    pub kind: &'static str,
    pub json: String,
    pub complete: bool,
}

impl Rendered {
    pub fn from_row(row: &EventRow) -> Self {
        let event = row.to_stream_event();
        Self {
            seq: row.seq,
            kind: event.type_name(),
            json: serde_json::to_string(&event).expect("stream events serialize"),
            complete: event.is_complete(),
        }
    }
}

/// What a tail broadcasts: the events after `from` up to and including `upto`. A batch with no
/// events announces where the tail starts.
#[derive(Debug)]
pub struct Batch {
    pub from: i64,
    pub upto: i64,
    pub events: Vec<Rendered>,
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    tails: Mutex<HashMap<JobId, broadcast::Sender<Arc<Batch>>>>,
    changes: watch::Sender<u64>,
    shutdown: CancellationToken,
    capacity: usize,
}

impl Hub {
    /// Starts the change watcher (polling every `poll`) and returns the hub; each job's channel
    /// holds `capacity` batches.
    pub fn start(
        pool: SqlitePool,
        poll: Duration,
        shutdown: CancellationToken,
        capacity: usize,
    ) -> Self {
        let (changes, _) = watch::channel(0);
        let hub = Hub {
            inner: Arc::new(Inner {
                pool,
                tails: Mutex::new(HashMap::new()),
                changes,
                shutdown,
                capacity: capacity.max(1),
            }),
        };
        tokio::spawn(watch_changes(hub.clone(), poll));
        hub
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// Follows a job's live events: receives every batch the job's tail reads from now on.
    pub fn subscribe(&self, job_id: JobId) -> broadcast::Receiver<Arc<Batch>> {
        let mut tails = self.inner.tails.lock().expect("hub lock");
        if let Some(sender) = tails.get(&job_id) {
            return sender.subscribe();
        }
        let (sender, receiver) = broadcast::channel(self.inner.capacity);
        tails.insert(job_id, sender.clone());
        let span = tracing::debug_span!("tail", job.id = %job_id);
        tokio::spawn(tail(self.clone(), job_id, sender).instrument(span));
        receiver
    }

    /// How many jobs have a tail on this replica.
    pub fn tails(&self) -> usize {
        self.inner.tails.lock().expect("hub lock").len()
    }

    /// Removes the job's tail if it is `sender` and (with `only_if_unfollowed`) nobody follows it.
    fn retire(
        &self,
        job_id: JobId,
        sender: &broadcast::Sender<Arc<Batch>>,
        only_if_unfollowed: bool,
    ) -> bool {
        let mut tails = self.inner.tails.lock().expect("hub lock");
        if only_if_unfollowed && sender.receiver_count() > 0 {
            return false;
        }
        if tails.get(&job_id).is_some_and(|s| s.same_channel(sender)) {
            tails.remove(&job_id);
        }
        true
    }
}

/// Reads a job's new events whenever the database changed, until the job completes or nobody
/// follows it any more.
async fn tail(hub: Hub, job_id: JobId, sender: broadcast::Sender<Arc<Batch>>) {
    let mut changes = hub.inner.changes.subscribe();
    changes.borrow_and_update();
    let pool = hub.pool().clone();
    let mut cursor = loop {
        match events::last_seq(&pool, job_id).await {
            Ok(seq) => break seq,
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), "tail cannot start; retrying");
                tokio::select! {
                    () = hub.inner.shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    };
    let _ = sender.send(Arc::new(Batch {
        from: cursor,
        upto: cursor,
        events: Vec::new(),
    }));
    let mut read_now = true;
    loop {
        if read_now {
            read_now = false;
            loop {
                let rows = match events::list_after(&pool, job_id, cursor, PAGE).await {
                    Ok(rows) => rows,
                    Err(err) => {
                        tracing::warn!(
                            error = format!("{err:#}"),
                            "tail cannot read events; retrying"
                        );
                        read_now = true;
                        break;
                    }
                };
                let Some(last) = rows.last() else { break };
                let batch = Batch {
                    from: cursor,
                    upto: last.seq,
                    events: rows.iter().map(Rendered::from_row).collect(),
                };
                cursor = batch.upto;
                let complete = batch.events.iter().any(|e| e.complete);
                let _ = sender.send(Arc::new(batch));
                if complete {
                    hub.retire(job_id, &sender, false);
                    return;
                }
                if (rows.len() as i64) < PAGE {
                    break;
                }
            }
        }
        if hub.retire(job_id, &sender, true) {
            return;
        }
        tokio::select! {
            () = hub.inner.shutdown.cancelled() => {
                hub.retire(job_id, &sender, false);
                return;
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                read_now = true;
            }
            () = tokio::time::sleep(if read_now { Duration::from_millis(200) } else { IDLE_CHECK }) => {}
        }
    }
}

/// Polls `PRAGMA data_version` on a dedicated connection while any tail listens, and tells the
/// tails when another connection committed.
async fn watch_changes(hub: Hub, poll: Duration) {
    let shutdown = hub.inner.shutdown.clone();
    let mut conn: Option<SqliteConnection> = None;
    let mut last: Option<i64> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(poll) => {}
        }
        if hub.inner.changes.receiver_count() == 0 {
            continue;
        }
        if conn.is_none() {
            match SqliteConnection::connect_with(&hub.pool().connect_options()).await {
                Ok(c) => conn = Some(c),
                Err(err) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "cannot open the change-watch connection"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match sqlx::query_scalar::<_, i64>("PRAGMA data_version")
            .fetch_one(&mut *c)
            .await
        {
            Ok(version) => {
                if last != Some(version) {
                    last = Some(version);
                    hub.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    "change check failed; reconnecting"
                );
                conn = None;
                last = None;
                hub.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}
