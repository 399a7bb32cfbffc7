//! Live job events, fanned out on one replica. One tail task per followed job reads new events
//! from the database, renders each one once as SSE frames, and broadcasts them to every follower
//! of that job on this replica; followers only share the rendered bytes. Tails wake only when the
//! replica's one change watcher ([`Watcher`]: a cheap `PRAGMA data_version` check on
//! SQLite, `LISTEN` on PostgreSQL) says that the database changed.
//! A tail also keeps its most recent batches, so that a follower that starts near the tail's
//! position replays from memory instead of querying the database. The database stays the only
//! source of truth: a follower replays what it missed from it, so a slow follower, a new tail or
//! another replica never causes a gap.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use ci_common::db::events::{self, EventRow};
use ci_common::db::{changes::Watcher, Db};
use ci_common::JobId;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::stream::{write_ascii_json, OriginalEvent};

/// Events per database read.
pub const PAGE: i64 = 500;
/// Batches a follower may fall behind before it re-reads from the database instead.
pub const CHANNEL_CAPACITY: usize = 256;
/// How often an idle tail checks whether anyone still follows it.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How many of its latest events a tail keeps for new followers (at most), and reads when it
/// starts.
const RECENT_EVENTS: usize = 1000;
/// How many bytes of rendered frames a tail keeps for new followers (at most).
const RECENT_BYTES: usize = 2 << 20;

/// How events are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `id:`, `event: <type>` and `data:` (the v1 API).
    Named,
    /// The original system's streams: `id:` and `data:` only, so that clients listening for
    /// unnamed messages see every event, with the JSON of [`crate::stream::OriginalEvent`].
    Original,
}

/// One SSE frame without an id or name: `data: <json>` and a blank line.
pub fn data_frame(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

/// A batch of consecutive events, rendered once as SSE frames in both framings: a follower sends it
/// (or its end, from some event on) as one chunk of the response body, without copying it.
#[derive(Debug)]
pub struct Frames {
    /// The seq before the batch's first event: the batch holds every event after `from` up to
    /// and including `upto`. A batch with no events announces where a tail starts.
    pub from: i64,
    pub upto: i64,
    /// Each event's seq, and where its frame starts in `named` and `unnamed`.
    seqs: Vec<i64>,
    named_at: Vec<usize>,
    unnamed_at: Vec<usize>,
    named: Bytes,
    /// The original system's frames.
    unnamed: Bytes,
    /// The index of the job's `complete` event, if the batch holds it.
    complete: Option<usize>,
}

impl Frames {
    /// Renders stored events (in seq order) that follow `from`.
    pub fn render(from: i64, rows: &[EventRow]) -> Self {
        let mut named = Vec::with_capacity(rows.len() * 160);
        let mut unnamed = Vec::with_capacity(rows.len() * 140);
        let mut seqs = Vec::with_capacity(rows.len());
        let mut named_at = Vec::with_capacity(rows.len());
        let mut unnamed_at = Vec::with_capacity(rows.len());
        let mut complete = None;
        let mut number = itoa::Buffer::new();
        for row in rows {
            let event = row.to_stream_event();
            if complete.is_none() && event.is_complete() {
                complete = Some(seqs.len());
            }
            seqs.push(row.seq);
            named_at.push(named.len());
            unnamed_at.push(unnamed.len());
            let seq = number.format(row.seq).as_bytes();
            // `id: <seq>`, `event: <type>`, `data: <json>` (the JSON has no raw newline, so it
            // is one `data:` line), and a blank line.
            named.extend_from_slice(b"id: ");
            named.extend_from_slice(seq);
            named.extend_from_slice(b"\nevent: ");
            named.extend_from_slice(event.type_name().as_bytes());
            named.extend_from_slice(b"\ndata: ");
            serde_json::to_writer(&mut named, &event).expect("stream events serialize");
            named.extend_from_slice(b"\n\n");
            unnamed.extend_from_slice(b"id: ");
            unnamed.extend_from_slice(seq);
            unnamed.extend_from_slice(b"\ndata: ");
            write_ascii_json(&mut unnamed, &OriginalEvent::from(event));
            unnamed.extend_from_slice(b"\n\n");
        }
        Self {
            from,
            upto: rows.last().map_or(from, |r| r.seq),
            seqs,
            named_at,
            unnamed_at,
            named: Bytes::from(named),
            unnamed: Bytes::from(unnamed),
            complete,
        }
    }

    fn empty(at: i64) -> Self {
        Self::render(at, &[])
    }

    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Whether the batch holds the job's `complete` event.
    pub fn completes(&self) -> bool {
        self.complete.is_some()
    }

    fn bytes(&self) -> usize {
        self.named.len() + self.unnamed.len()
    }

    /// The frames of the events after `after`, up to and including a `complete` event, as one
    /// chunk that shares this batch's memory; and whether that chunk ends with `complete`.
    pub fn frames_after(&self, after: i64, framing: Framing) -> (Bytes, bool) {
        let (bytes, at) = match framing {
            Framing::Named => (&self.named, &self.named_at),
            Framing::Original => (&self.unnamed, &self.unnamed_at),
        };
        let first = self.seqs.partition_point(|seq| *seq <= after);
        let start = at.get(first).copied().unwrap_or(bytes.len());
        match self.complete {
            Some(c) if c >= first => {
                let end = at.get(c + 1).copied().unwrap_or(bytes.len());
                (bytes.slice(start..end), true)
            }
            _ => (bytes.slice(start..), false),
        }
    }
}

/// A new follower's view of a job's tail.
pub struct Subscription {
    /// Every batch the tail reads from now on.
    pub live: broadcast::Receiver<Arc<Frames>>,
    /// With `Some`, the tail's recent batches cover every event after the follower's position
    /// up to the tail's position: these batches, then `live`, are the whole stream, without a
    /// database read. With `None`, the follower reads what it missed from the database.
    pub replay: Option<Vec<Arc<Frames>>>,
}

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    tails: Mutex<HashMap<JobId, Tail>>,
    changes: watch::Sender<u64>,
    shutdown: CancellationToken,
    capacity: usize,
}

/// A running tail, as followers see it.
struct Tail {
    sender: broadcast::Sender<Arc<Frames>>,
    /// `None` until the tail read its starting point.
    recent: Option<Recent>,
}

/// A tail's latest batches: every event after `start`, up to the tail's position.
struct Recent {
    start: i64,
    batches: VecDeque<Arc<Frames>>,
    events: usize,
    bytes: usize,
}

impl Recent {
    fn push(&mut self, batch: &Arc<Frames>) {
        if batch.is_empty() {
            return;
        }
        self.events += batch.len();
        self.bytes += batch.bytes();
        self.batches.push_back(batch.clone());
        while self.events > RECENT_EVENTS || self.bytes > RECENT_BYTES {
            let Some(old) = self.batches.pop_front() else {
                break;
            };
            self.events -= old.len();
            self.bytes -= old.bytes();
            self.start = old.upto;
        }
    }

    /// The batches a follower at `after` needs, if they are all here.
    fn after(&self, after: i64) -> Option<Vec<Arc<Frames>>> {
        (after >= self.start).then(|| {
            self.batches
                .iter()
                .filter(|b| b.upto > after)
                .cloned()
                .collect()
        })
    }
}

impl Hub {
    /// Starts the change watcher (polling every `poll`) and returns the hub; each job's channel
    /// holds `capacity` batches.
    pub fn start(
        db: impl Into<Db>,
        poll: Duration,
        shutdown: CancellationToken,
        capacity: usize,
    ) -> Self {
        let (changes, _) = watch::channel(0);
        let hub = Hub {
            inner: Arc::new(Inner {
                db: db.into(),
                tails: Mutex::new(HashMap::new()),
                changes,
                shutdown,
                capacity: capacity.max(1),
            }),
        };
        tokio::spawn(watch_changes(hub.clone(), poll));
        hub
    }

    /// The replica's database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Follows a job's live events from just after `after`: the batches the job's tail reads
    /// from now on and, when the tail still holds them, the recent ones the follower needs.
    pub fn subscribe(&self, job_id: JobId, after: i64) -> Subscription {
        let mut tails = self.inner.tails.lock().expect("hub lock");
        if let Some(tail) = tails.get(&job_id) {
            return Subscription {
                live: tail.sender.subscribe(),
                replay: tail.recent.as_ref().and_then(|r| r.after(after)),
            };
        }
        let (sender, live) = broadcast::channel(self.inner.capacity);
        tails.insert(
            job_id,
            Tail {
                sender: sender.clone(),
                recent: None,
            },
        );
        let span = tracing::debug_span!("tail", job.id = %job_id);
        tokio::spawn(tail(self.clone(), job_id, sender).instrument(span));
        Subscription { live, replay: None }
    }

    /// How many jobs have a tail on this replica.
    pub fn tails(&self) -> usize {
        self.inner.tails.lock().expect("hub lock").len()
    }

    /// Sends a batch to the tail's followers and keeps it for new ones, in one step, so that a
    /// follower that subscribes gets each batch exactly once: in its replay or live. `start`
    /// begins the recent batches at the tail's starting point.
    fn publish(
        &self,
        job_id: JobId,
        sender: &broadcast::Sender<Arc<Frames>>,
        batch: Frames,
        start: bool,
    ) {
        let batch = Arc::new(batch);
        let mut tails = self.inner.tails.lock().expect("hub lock");
        if let Some(tail) = tails
            .get_mut(&job_id)
            .filter(|t| t.sender.same_channel(sender))
        {
            if start {
                tail.recent = Some(Recent {
                    start: batch.upto,
                    batches: VecDeque::new(),
                    events: 0,
                    bytes: 0,
                });
            }
            if let Some(recent) = tail.recent.as_mut() {
                recent.push(&batch);
            }
        }
        let _ = sender.send(batch);
    }

    /// Removes the job's tail if it is `sender` and (with `only_if_unfollowed`) nobody follows it.
    fn retire(
        &self,
        job_id: JobId,
        sender: &broadcast::Sender<Arc<Frames>>,
        only_if_unfollowed: bool,
    ) -> bool {
        let mut tails = self.inner.tails.lock().expect("hub lock");
        if only_if_unfollowed && sender.receiver_count() > 0 {
            return false;
        }
        if tails
            .get(&job_id)
            .is_some_and(|t| t.sender.same_channel(sender))
        {
            tails.remove(&job_id);
        }
        true
    }
}

/// Reads a job's new events whenever the database changed, until the job completes or nobody
/// follows it any more. It starts a little before the job's last event, so that new followers
/// of a running job usually find what they missed in its recent batches.
async fn tail(hub: Hub, job_id: JobId, sender: broadcast::Sender<Arc<Frames>>) {
    let mut changes = hub.inner.changes.subscribe();
    changes.borrow_and_update();
    let db = hub.db().clone();
    let mut cursor = loop {
        match events::last_seq(&db, job_id).await {
            Ok(seq) => break (seq - RECENT_EVENTS as i64).max(0),
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), "tail cannot start; retrying");
                tokio::select! {
                    () = hub.inner.shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    };
    hub.publish(job_id, &sender, Frames::empty(cursor), true);
    let mut read_now = true;
    loop {
        if read_now {
            read_now = false;
            loop {
                let rows = match events::list_after(&db, job_id, cursor, PAGE).await {
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
                if rows.is_empty() {
                    break;
                }
                let full = rows.len() as i64 >= PAGE;
                let batch = Frames::render(cursor, &rows);
                drop(rows);
                cursor = batch.upto;
                let complete = batch.completes();
                hub.publish(job_id, &sender, batch, false);
                if complete {
                    hub.retire(job_id, &sender, false);
                    return;
                }
                if !full {
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

/// Watches the database for commits ([`Watcher`]) while any tail listens, and tells the tails
/// when one happened. Without listeners it only checks, every `poll`, whether one came.
async fn watch_changes(hub: Hub, poll: Duration) {
    let shutdown = hub.inner.shutdown.clone();
    let mut watcher: Option<Watcher> = None;
    loop {
        if hub.inner.changes.receiver_count() == 0 {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(poll) => continue,
            }
        }
        let w = match &mut watcher {
            Some(w) => w,
            None => match Watcher::open(hub.db(), poll).await {
                Ok(w) => watcher.insert(w),
                Err(err) => {
                    tracing::warn!(
                        error = format!("{:#}", anyhow::Error::from(err)),
                        "cannot open the change watcher"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            },
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            // Bounded, so that a replica whose followers left stops watching.
            changed = tokio::time::timeout(IDLE_CHECK, w.changed()) => match changed {
                Err(_) => {}
                Ok(Ok(())) => hub.inner.changes.send_modify(|n| *n = n.wrapping_add(1)),
                Ok(Err(err)) => {
                    tracing::warn!(
                        error = format!("{:#}", anyhow::Error::from(err)),
                        "change check failed; reopening the watcher"
                    );
                    watcher = None;
                    hub.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
                }
            },
        }
    }
}
