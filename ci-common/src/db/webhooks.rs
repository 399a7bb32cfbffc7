//! The `webhooks` table (a user's receivers, each with its secret and events) and the
//! `webhook_deliveries` outbox: [`enqueue`] writes a delivery per matching webhook inside the
//! transaction that causes the event ([`super::jobs::claim_next`], a job's end), and the
//! controller's sender reads the [`due`] ones, posts them and records each [`Attempt`].
//! Nothing here talks to the network.

use chrono::{DateTime, Utc};

use super::jobs::Job;
use super::{lease, on_exec, BeginWrite as _, DbError, Exec};
use crate::webhooks::{
    events_from_text, events_text, DeliveryState, DeliveryView, Payload, PayloadJob, WebhookEvent,
    WebhookView,
};
use crate::{DeliveryId, JobId, UserId, WebhookId};

/// A registered webhook. `Debug` leaves its secret out.
#[derive(Clone, PartialEq, sqlx::FromRow)]
pub struct Webhook {
    pub id: WebhookId,
    pub user_id: UserId,
    pub url: String,
    /// Keys the HMAC of every delivery (see [`crate::webhooks::signature`]).
    pub secret: String,
    /// Comma-separated event names ([`crate::webhooks::events_text`]).
    pub events: String,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// The events it is sent.
    pub fn events(&self) -> Vec<WebhookEvent> {
        events_from_text(&self.events)
    }

    /// As the API shows it (without its secret).
    pub fn view(&self) -> WebhookView {
        WebhookView {
            id: self.id,
            url: self.url.clone(),
            events: self.events(),
            created_at: self.created_at,
        }
    }
}

/// Registers a webhook of `user_id` for `events` with `secret` (already checked: the URL
/// against the operator's rules, the events by name).
pub async fn create(
    ex: impl Into<Exec<'_>>,
    user_id: UserId,
    url: &str,
    secret: &str,
    events: &[WebhookEvent],
) -> Result<Webhook, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "INSERT INTO webhooks (id, user_id, url, secret, events, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING *",
    )
    .bind(WebhookId::new())
    .bind(user_id)
    .bind(url)
    .bind(secret)
    .bind(events_text(events))
    .bind(super::now())
    .fetch_one(e)
    .await?))
}

/// The user's webhooks, oldest first.
pub async fn list_for_user(
    ex: impl Into<Exec<'_>>,
    user_id: UserId,
) -> Result<Vec<Webhook>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT * FROM webhooks WHERE user_id = $1 ORDER BY created_at, id"
    )
    .bind(user_id)
    .fetch_all(e)
    .await?))
}

/// The webhook if it belongs to `user_id`; another user's is indistinguishable from none.
pub async fn get_for_user(
    ex: impl Into<Exec<'_>>,
    id: WebhookId,
    user_id: UserId,
) -> Result<Option<Webhook>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT * FROM webhooks WHERE id = $1 AND user_id = $2"
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(e)
    .await?))
}

/// Deletes the user's webhook with its deliveries (those not sent yet are not sent). Returns
/// false when the user has no such webhook.
pub async fn delete_for_user(
    ex: impl Into<Exec<'_>>,
    id: WebhookId,
    user_id: UserId,
) -> Result<bool, DbError> {
    let deleted = on_exec!(ex, |e| sqlx::query(
        "DELETE FROM webhooks WHERE id = $1 AND user_id = $2"
    )
    .bind(id)
    .bind(user_id)
    .execute(e)
    .await?
    .rows_affected());
    Ok(deleted == 1)
}

/// The body of `event`'s delivery `id` about `job` (as the job is now), as sent.
pub fn payload(id: DeliveryId, event: WebhookEvent, job: &Job, now: DateTime<Utc>) -> Payload {
    Payload {
        id,
        event,
        created_at: now,
        job: PayloadJob {
            id: job.id,
            status: job.status,
            success: job.status.success(),
            task: job.task.clone(),
            project: job.project.clone(),
            reason: job.reason.clone(),
            exit_code: job.exit_code,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            api_path: format!("{}/jobs/{}", crate::api::API_PREFIX, job.id),
        },
    }
}

/// Writes a delivery of `event` about `job` for each webhook of the job's owner that wants it,
/// in the caller's transaction (so that the deliveries exist if and only if the event does).
/// Returns how many.
pub async fn enqueue(
    ex: impl Into<Exec<'_>>,
    job: &Job,
    event: WebhookEvent,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    let mut ex = ex.into();
    let hooks: Vec<(WebhookId, String)> = on_exec!(ex.reborrow(), |e| sqlx::query_as(
        "SELECT id, events FROM webhooks WHERE user_id = $1 ORDER BY created_at, id"
    )
    .bind(job.user_id)
    .fetch_all(e)
    .await?);
    let now = super::timestamp(now);
    let mut written = 0;
    for (webhook, events) in hooks {
        if !events_from_text(&events).contains(&event) {
            continue;
        }
        let id = DeliveryId::new();
        let body = serde_json::to_string(&payload(id, event, job, now)).expect("JSON");
        let body = super::stored_text(ex.is_postgres(), &body).into_owned();
        on_exec!(ex.reborrow(), |e| sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, job_id, event, body, state,
                 attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
        )
        .bind(id)
        .bind(webhook)
        .bind(job.id)
        .bind(event)
        .bind(&body)
        .bind(now)
        .execute(e)
        .await
        .map(drop)?);
        written += 1;
    }
    Ok(written)
}

/// A delivery as stored.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Delivery {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub job_id: JobId,
    pub event: WebhookEvent,
    /// The JSON body, exactly as sent.
    pub body: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl Delivery {
    /// As the API shows it (without the body).
    pub fn view(&self) -> DeliveryView {
        DeliveryView {
            id: self.id,
            event: self.event,
            job_id: self.job_id,
            state: self.state,
            attempts: self.attempts,
            last_status: self.last_status,
            last_error: self.last_error.clone(),
            created_at: self.created_at,
            last_attempt_at: self.last_attempt_at,
            next_attempt_at: self.next_attempt_at,
            delivered_at: self.delivered_at,
        }
    }
}

/// A webhook's latest deliveries (at most `limit`), newest first; nothing for a webhook that
/// is not `user_id`'s.
pub async fn deliveries_for_user(
    ex: impl Into<Exec<'_>>,
    webhook: WebhookId,
    user_id: UserId,
    limit: i64,
) -> Result<Vec<Delivery>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT d.* FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
         WHERE d.webhook_id = $1 AND w.user_id = $2
         ORDER BY d.created_at DESC, d.id DESC LIMIT $3",
    )
    .bind(webhook)
    .bind(user_id)
    .bind(limit)
    .fetch_all(e)
    .await?))
}

/// A delivery to attempt now, with where it goes and the secret that signs it.
#[derive(Clone, PartialEq, sqlx::FromRow)]
pub struct Due {
    pub id: DeliveryId,
    pub job_id: JobId,
    pub event: WebhookEvent,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for Due {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Due")
            .field("id", &self.id)
            .field("job_id", &self.job_id)
            .field("event", &self.event)
            .field("attempts", &self.attempts)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Pending deliveries whose next attempt is at or before `now`, those waiting longest first, at
/// most `limit`.
pub async fn due(
    ex: impl Into<Exec<'_>>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Due>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT d.id, d.job_id, d.event, d.body, d.attempts, d.first_attempt_at, w.url, w.secret
         FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
         WHERE d.state = 'pending' AND d.next_attempt_at <= $1
         ORDER BY d.next_attempt_at, d.id LIMIT $2",
    )
    .bind(super::timestamp(now))
    .bind(limit)
    .fetch_all(e)
    .await?))
}

/// When the next pending delivery is due (`None`: none is pending).
pub async fn next_due_at(ex: impl Into<Exec<'_>>) -> Result<Option<DateTime<Utc>>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT next_attempt_at FROM webhook_deliveries WHERE state = 'pending'
         ORDER BY next_attempt_at LIMIT 1",
    )
    .fetch_optional(e)
    .await?)
    .flatten())
}

/// How one attempt went, and what follows.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The HTTP status of the answer, if one came.
    pub status: Option<u16>,
    /// What went wrong (`None` when it was delivered).
    pub error: Option<String>,
    pub then: Then,
}

/// What an attempt leaves a delivery to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Then {
    /// The receiver took it (2xx).
    Delivered,
    /// Try again then.
    RetryAt(DateTime<Utc>),
    /// No more attempts: `failed`.
    GiveUp,
}

/// Records an attempt of a pending delivery, for the controller holding `epoch` (fenced: a
/// controller that lost the lease records nothing, and its successor sends the delivery again).
/// Returns false when the delivery is no longer pending (or its webhook was deleted meanwhile).
pub async fn record_attempt(
    ex: impl Into<Exec<'_>>,
    epoch: i64,
    id: DeliveryId,
    attempt: &Attempt,
) -> Result<bool, DbError> {
    let at = super::timestamp(attempt.at);
    let (state, next, delivered) = match attempt.then {
        Then::Delivered => (DeliveryState::Delivered, None, Some(at)),
        Then::RetryAt(next) => (DeliveryState::Pending, Some(super::timestamp(next)), None),
        Then::GiveUp => (DeliveryState::Failed, None, None),
    };
    let ex = ex.into();
    let error = attempt
        .error
        .as_deref()
        .map(|e| super::stored_text(ex.is_postgres(), e).into_owned());
    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        let updated = sqlx::query(
            "UPDATE webhook_deliveries
             SET state = $1, attempts = attempts + 1, next_attempt_at = $2, last_status = $3,
                 last_error = $4, first_attempt_at = COALESCE(first_attempt_at, $5),
                 last_attempt_at = $5, delivered_at = $6
             WHERE id = $7 AND state = 'pending'",
        )
        .bind(state)
        .bind(next)
        .bind(attempt.status.map(i64::from))
        .bind(error)
        .bind(at)
        .bind(delivered)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated == 1)
    })
}

/// Every delivery about a job, oldest first (for tests and `ci-admin`).
pub async fn for_job(ex: impl Into<Exec<'_>>, job: JobId) -> Result<Vec<Delivery>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT * FROM webhook_deliveries WHERE job_id = $1 ORDER BY created_at, id"
    )
    .bind(job)
    .fetch_all(e)
    .await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Outcome;
    use crate::db::{jobs, users};
    use crate::testing::{backends, take_over_lease, Backend};
    use crate::JobStatus;

    async fn user(db: &Backend, name: &str) -> UserId {
        users::create(db.exec(), name, &format!("{name}@example.com"))
            .await
            .unwrap()
            .id
    }

    #[tokio::test]
    async fn webhooks_are_per_user_and_deleting_one_drops_its_deliveries_on_every_backend() {
        for db in backends().await {
            let ada = user(&db, "ada").await;
            let bob = user(&db, "bob").await;
            let all = WebhookEvent::ALL;
            let hook = create(db.exec(), ada, "https://a.example/h", "whsec_1", &all)
                .await
                .unwrap();
            assert_eq!(hook.events(), all, "{db:?}");
            assert!(
                !format!("{hook:?}").contains("whsec_1"),
                "Debug hides the secret"
            );
            let only_end = [WebhookEvent::JobFinished];
            let second = create(db.exec(), ada, "https://b.example/h", "s2", &only_end)
                .await
                .unwrap();
            let listed = list_for_user(db.exec(), ada).await.unwrap();
            assert_eq!(listed, [hook.clone(), second.clone()], "{db:?}");
            assert!(list_for_user(db.exec(), bob).await.unwrap().is_empty());
            assert_eq!(get_for_user(db.exec(), hook.id, bob).await.unwrap(), None);
            assert!(!delete_for_user(db.exec(), hook.id, bob).await.unwrap());

            // A job of Ada's runs and ends: both hooks hear of its end, the first of its start.
            let job = jobs::create(db.exec(), ada, "test", b"zip").await.unwrap();
            let epoch = lease::acquire(db.exec(), "t").await.unwrap().epoch;
            jobs::claim_next(db.exec(), epoch, "img", "local")
                .await
                .unwrap()
                .unwrap();
            let outcome = Outcome::new(JobStatus::Failed).with_exit_code(1);
            assert!(jobs::finish(db.exec(), job.id, Some(epoch), &outcome)
                .await
                .unwrap());
            let sent = for_job(db.exec(), job.id).await.unwrap();
            let kinds: Vec<(WebhookId, WebhookEvent)> =
                sent.iter().map(|d| (d.webhook_id, d.event)).collect();
            assert_eq!(kinds.len(), 3, "{db:?}: {kinds:?}");
            assert!(kinds.contains(&(hook.id, WebhookEvent::JobStarted)));
            assert!(kinds.contains(&(hook.id, WebhookEvent::JobFinished)));
            assert!(kinds.contains(&(second.id, WebhookEvent::JobFinished)));
            let end = sent
                .iter()
                .find(|d| d.webhook_id == second.id)
                .unwrap()
                .clone();
            let body: Payload = serde_json::from_str(&end.body).unwrap();
            assert_eq!(body.id, end.id);
            assert_eq!(body.event, WebhookEvent::JobFinished);
            assert_eq!(
                (body.job.id, body.job.status, body.job.exit_code),
                (job.id, JobStatus::Failed, Some(1))
            );
            assert!(body.job.finished_at.is_some() && !body.job.success);
            assert_eq!(body.job.api_path, format!("/api/v1/jobs/{}", job.id));
            assert_eq!(
                (end.state, end.attempts, end.next_attempt_at),
                (DeliveryState::Pending, 0, Some(end.created_at))
            );
            let seen = deliveries_for_user(db.exec(), second.id, ada, 10)
                .await
                .unwrap();
            assert_eq!(seen, [end]);
            assert!(deliveries_for_user(db.exec(), second.id, bob, 10)
                .await
                .unwrap()
                .is_empty());

            assert!(delete_for_user(db.exec(), hook.id, ada).await.unwrap());
            assert_eq!(for_job(db.exec(), job.id).await.unwrap().len(), 1);
            // Bob's jobs reach none of Ada's webhooks; a queued job's cancel is an end too.
            let bobs = jobs::create(db.exec(), bob, "test", b"zip").await.unwrap();
            jobs::request_cancel(db.exec(), bobs.id, bob).await.unwrap();
            assert!(for_job(db.exec(), bobs.id).await.unwrap().is_empty());
            let queued = jobs::create(db.exec(), ada, "test", b"zip").await.unwrap();
            jobs::request_cancel(db.exec(), queued.id, ada)
                .await
                .unwrap();
            let cancelled = for_job(db.exec(), queued.id).await.unwrap();
            assert_eq!(cancelled.len(), 1, "{db:?}");
            let body: Payload = serde_json::from_str(&cancelled[0].body).unwrap();
            assert_eq!(body.job.status, JobStatus::Cancelled);
        }
    }

    #[tokio::test]
    async fn attempts_are_recorded_under_the_lease_until_delivered_or_given_up_on_every_backend() {
        for db in backends().await {
            let ada = user(&db, "ada").await;
            create(
                db.exec(),
                ada,
                "https://a.example/h",
                "whsec_1",
                &WebhookEvent::ALL,
            )
            .await
            .unwrap();
            let epoch = lease::acquire(db.exec(), "t").await.unwrap().epoch;
            let first = jobs::create(db.exec(), ada, "test", b"zip").await.unwrap();
            let second = jobs::create(db.exec(), ada, "test", b"zip").await.unwrap();
            jobs::request_cancel(db.exec(), first.id, ada)
                .await
                .unwrap();
            jobs::request_cancel(db.exec(), second.id, ada)
                .await
                .unwrap();
            assert!(next_due_at(db.exec()).await.unwrap().is_some());
            let now = crate::db::now();
            let due_now = due(db.exec(), now, 10).await.unwrap();
            assert_eq!(due_now.len(), 2, "{db:?}");
            assert_eq!(due_now[0].url, "https://a.example/h");
            assert_eq!(due_now[0].secret, "whsec_1");
            assert!(!format!("{:?}", due_now[0]).contains("whsec_1"));
            assert_eq!(due(db.exec(), now, 1).await.unwrap().len(), 1);

            // The first fails twice, then is delivered; the second is given up on.
            let (a, b) = (due_now[0].id, due_now[1].id);
            let later = now + chrono::Duration::seconds(30);
            let failed = Attempt {
                at: now,
                status: Some(500),
                error: Some("the receiver answered 500".into()),
                then: Then::RetryAt(later),
            };
            assert!(record_attempt(db.exec(), epoch, a, &failed).await.unwrap());
            assert!(record_attempt(db.exec(), epoch, b, &failed).await.unwrap());
            assert!(due(db.exec(), now, 10).await.unwrap().is_empty());
            assert_eq!(next_due_at(db.exec()).await.unwrap(), Some(later));
            let again = due(db.exec(), later, 10).await.unwrap();
            assert_eq!(again.len(), 2);
            assert_eq!(
                (again[0].attempts, again[0].first_attempt_at),
                (1, Some(now))
            );
            let timeout = Attempt {
                at: later,
                status: None,
                error: Some("no answer within 10s".into()),
                then: Then::RetryAt(later),
            };
            record_attempt(db.exec(), epoch, a, &timeout).await.unwrap();
            let delivered = Attempt {
                at: later,
                status: Some(204),
                error: None,
                then: Then::Delivered,
            };
            assert!(record_attempt(db.exec(), epoch, a, &delivered)
                .await
                .unwrap());
            assert!(
                !record_attempt(db.exec(), epoch, a, &delivered)
                    .await
                    .unwrap(),
                "no longer pending"
            );
            let gave_up = Attempt {
                then: Then::GiveUp,
                ..failed.clone()
            };
            record_attempt(db.exec(), epoch, b, &gave_up).await.unwrap();
            let rows = for_job(db.exec(), first.id).await.unwrap();
            let row = &rows[0];
            assert_eq!(
                (
                    row.state,
                    row.attempts,
                    row.last_status,
                    row.last_error.as_deref()
                ),
                (DeliveryState::Delivered, 3, Some(204), None),
                "{db:?}"
            );
            assert_eq!(
                (row.first_attempt_at, row.delivered_at, row.next_attempt_at),
                (Some(now), Some(later), None)
            );
            let row = &for_job(db.exec(), second.id).await.unwrap()[0];
            assert_eq!((row.state, row.attempts), (DeliveryState::Failed, 2));
            assert_eq!(next_due_at(db.exec()).await.unwrap(), None);

            // A controller that lost the lease records nothing.
            let third = jobs::create(db.exec(), ada, "test", b"zip").await.unwrap();
            jobs::request_cancel(db.exec(), third.id, ada)
                .await
                .unwrap();
            let pending = for_job(db.exec(), third.id).await.unwrap()[0].id;
            take_over_lease(&db).await;
            let refused = record_attempt(db.exec(), epoch, pending, &delivered).await;
            assert!(matches!(refused, Err(DbError::LeaseLost(_))), "{db:?}");
            let row = &for_job(db.exec(), third.id).await.unwrap()[0];
            assert_eq!((row.state, row.attempts), (DeliveryState::Pending, 0));
        }
    }
}
