//! The webhook sender: posts the deliveries of the outbox (`webhook_deliveries`, written in the
//! transactions of the events themselves) to their receivers, and records each attempt.
//!
//! It runs beside the scheduler while this controller holds the lease, and nothing waits for
//! it: a job's end, its log, a request never do. It wakes when the database changes (a new
//! delivery) or when the next retry is due, sends at most [`SenderSettings::concurrency`]
//! deliveries at once, each in its own task with its own time limit (a receiver that never
//! answers holds one slot for `--webhook-timeout`, no more), and checks each receiver's URL
//! against the operator's rules again before it connects, to the addresses it checked and only
//! those. An attempt that this controller could not record (it stopped, or lost its lease) is
//! made again by the next one: delivery is at least once, and the delivery id lets receivers
//! drop repeats.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ci_common::db::changes::Watcher;
use ci_common::db::webhooks::{self, Attempt, Due, Then};
use ci_common::db::{Db, DbError};
use ci_common::outbound::Allowlist;
use ci_common::webhooks::{
    signature_header, RetrySchedule, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, USER_AGENT,
};
use ci_common::DeliveryId;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the database watcher looks for changes (SQLite's `data_version`).
const WATCH_EVERY: Duration = Duration::from_millis(50);
/// The longest the sender sleeps without looking at the outbox.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The shortest time between two looks at the outbox (a busy database changes all the time).
const MIN_GAP: Duration = Duration::from_millis(20);
/// The longest wait after the database failed.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How the sender sends (from the controller's flags).
#[derive(Clone, Debug)]
pub struct SenderSettings {
    /// Time limit of one attempt, connecting included (`--webhook-timeout`).
    pub timeout: Duration,
    /// When failed deliveries are tried again (`--webhook-retry-base`,
    /// `--webhook-give-up-after`).
    pub schedule: RetrySchedule,
    /// Most deliveries sent at once.
    pub concurrency: usize,
}

/// Sends due deliveries until `stop` is cancelled or this controller's lease (`epoch`) is lost.
/// Receivers are checked against `allow` (the controller's `--webhook-allow`).
pub async fn run(
    db: Db,
    epoch: i64,
    allow: Allowlist,
    settings: SenderSettings,
    stop: CancellationToken,
) {
    let changed = Arc::new(Notify::new());
    let watching = stop.child_token();
    let _stop_watching = watching.clone().drop_guard();
    tokio::spawn(watch(db.clone(), changed.clone(), watching));
    let allow = Arc::new(allow);
    let mut tasks: JoinSet<(DeliveryId, Result<(), DbError>)> = JoinSet::new();
    let mut in_flight: HashSet<DeliveryId> = HashSet::new();
    let mut backoff = MIN_GAP;
    while !stop.is_cancelled() {
        let wait = match start_due(&db, epoch, &allow, &settings, &mut tasks, &mut in_flight).await
        {
            Ok(wait) => {
                backoff = MIN_GAP;
                wait
            }
            Err(e) => {
                warn!(
                    "the webhook sender cannot read the outbox, trying again in {backoff:?}: {e}"
                );
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
            _ = changed.notified() => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if !finished(done, &mut in_flight) {
                    break;
                }
            }
        }
        while let Some(done) = tasks.try_join_next() {
            if !finished(done, &mut in_flight) {
                tasks.abort_all();
                return;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(MIN_GAP) => {}
        }
    }
    // Attempts under way are dropped unrecorded: the next controller makes them again.
    tasks.abort_all();
}

/// Takes an ended attempt's task out of the books; false when the lease was lost (stop sending).
fn finished(
    done: Result<(DeliveryId, Result<(), DbError>), tokio::task::JoinError>,
    in_flight: &mut HashSet<DeliveryId>,
) -> bool {
    match done {
        Ok((id, result)) => {
            in_flight.remove(&id);
            match result {
                Ok(()) => true,
                Err(DbError::LeaseLost(epoch)) => {
                    warn!(
                        epoch,
                        "the webhook sender stops: another controller took the lease"
                    );
                    false
                }
                Err(e) => {
                    warn!(delivery = %id, "cannot record a webhook delivery's attempt (it is made again): {e}");
                    true
                }
            }
        }
        Err(e) => {
            // A panic in an attempt's task (its id is lost with it): the delivery stays pending
            // and is taken again once the set is cleared.
            warn!("a webhook delivery's task failed: {e}");
            in_flight.clear();
            true
        }
    }
}

/// Starts an attempt of each due delivery a slot is free for; returns how long to wait for the
/// next one that will be due.
async fn start_due(
    db: &Db,
    epoch: i64,
    allow: &Arc<Allowlist>,
    settings: &SenderSettings,
    tasks: &mut JoinSet<(DeliveryId, Result<(), DbError>)>,
    in_flight: &mut HashSet<DeliveryId>,
) -> Result<Duration, DbError> {
    let free = settings.concurrency.max(1).saturating_sub(in_flight.len());
    if free > 0 {
        let limit = i64::try_from(free + in_flight.len()).unwrap_or(i64::MAX);
        let mut due = webhooks::due(db, ci_common::db::now(), limit).await?;
        due.retain(|d| !in_flight.contains(&d.id));
        for delivery in due.into_iter().take(free) {
            in_flight.insert(delivery.id);
            let (db, allow, settings) = (db.clone(), allow.clone(), settings.clone());
            tasks.spawn(async move {
                let id = delivery.id;
                let attempt = attempt(&delivery, &allow, &settings).await;
                (
                    id,
                    webhooks::record_attempt(&db, epoch, id, &attempt)
                        .await
                        .map(drop),
                )
            });
        }
    }
    let now = ci_common::db::now();
    Ok(match webhooks::next_due_at(db).await? {
        // Due already: being sent, or waiting for a free slot (a task's end wakes the loop).
        Some(at) if at > now => (at - now).to_std().unwrap_or(IDLE_POLL).min(IDLE_POLL),
        _ => IDLE_POLL,
    })
}

/// Posts one delivery and says how it went, and when to try again if it did not.
async fn attempt(delivery: &Due, allow: &Allowlist, settings: &SenderSettings) -> Attempt {
    let at = ci_common::db::now();
    match post(delivery, allow, settings.timeout).await {
        Ok(status) => {
            info!(delivery = %delivery.id, event = %delivery.event, job.id = %delivery.job_id, "webhook delivered");
            Attempt {
                at,
                status: Some(status.as_u16()),
                error: None,
                then: Then::Delivered,
            }
        }
        Err((status, error)) => {
            let attempts = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
            let first = delivery.first_attempt_at.unwrap_or(at);
            let next = settings.schedule.next_attempt(attempts, first, at);
            info!(
                delivery = %delivery.id, event = %delivery.event, job.id = %delivery.job_id,
                attempts, error = %error,
                "webhook delivery failed; {}",
                if next.is_some() { "trying again later" } else { "giving up" }
            );
            Attempt {
                at,
                status: status.map(|s| s.as_u16()),
                error: Some(error),
                then: next.map_or(Then::GiveUp, Then::RetryAt),
            }
        }
    }
}

/// One POST of the delivery's body: the 2xx status it was answered with. `Err` carries the answer's status, if one came, and what
/// went wrong, in words for the user who reads `ci webhooks deliveries`.
async fn post(
    delivery: &Due,
    allow: &Allowlist,
    timeout: Duration,
) -> Result<reqwest::StatusCode, (Option<reqwest::StatusCode>, String)> {
    // The rules may have changed since the webhook was added, and the name may lead elsewhere
    // now: checked again, and only the addresses checked are connected to.
    let target = allow
        .check(&delivery.url)
        .await
        .map_err(|refused| (None, refused.to_string()))?;
    let addrs: Vec<SocketAddr> = target
        .addrs
        .iter()
        .map(|ip| SocketAddr::new(*ip, target.port))
        .collect();
    let client = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .resolve_to_addrs(&target.host, &addrs)
        .build()
        .map_err(|e| {
            (
                None,
                format!("cannot set up the HTTP client: {}", chain(&e)),
            )
        })?;
    let now = chrono::Utc::now().timestamp();
    let signature = signature_header(&delivery.secret, now, delivery.body.as_bytes());
    let sent = client
        .post(target.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_HEADER, delivery.event.as_str())
        .header(DELIVERY_HEADER, delivery.id.to_string())
        .header(SIGNATURE_HEADER, signature)
        .body(delivery.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Ok(response.status()),
        Ok(response) => {
            let status = response.status();
            let why = if status.is_redirection() {
                format!(
                    "the receiver answered {status} (redirects are not followed: register the \
                     URL it redirects to)"
                )
            } else {
                format!("the receiver answered {status}")
            };
            Err((Some(status), why))
        }
        Err(e) if e.is_timeout() => Err((
            None,
            format!(
                "no answer within {} (ci-controller --webhook-timeout)",
                human_duration(timeout)
            ),
        )),
        Err(e) if e.is_connect() => Err((
            None,
            format!(
                "cannot connect to {}:{}: {}",
                target.host,
                target.port,
                chain(&e)
            ),
        )),
        Err(e) => Err((None, format!("the request failed: {}", chain(&e)))),
    }
}

/// An error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// `10s`, `1.5s`, `250ms`.
fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// Wakes the sender when the database changed (a delivery may have been written).
async fn watch(db: Db, changed: Arc<Notify>, stop: CancellationToken) {
    let mut watcher: Option<Watcher> = None;
    loop {
        let w = match &mut watcher {
            Some(w) => w,
            None => match Watcher::open(&db, WATCH_EVERY).await {
                Ok(w) => watcher.insert(w),
                Err(e) => {
                    warn!("cannot open the webhook sender's watcher (it still polls): {e}");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(MAX_BACKOFF) => continue,
                    }
                }
            },
        };
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            result = w.changed() => result,
        };
        match result {
            Ok(()) => changed.notify_one(),
            Err(e) => {
                warn!("the webhook sender's watcher failed (it still polls): {e}");
                watcher = None;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(MAX_BACKOFF) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_the_flags_write_them() {
        assert_eq!(human_duration(Duration::from_secs(10)), "10s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_duration(Duration::from_millis(200)), "200ms");
    }
}
