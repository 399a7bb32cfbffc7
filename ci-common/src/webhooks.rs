//! Outgoing webhooks, the parts every crate shares: the events, the JSON a receiver gets, how a
//! delivery is signed (and verified), the retry schedule, the secrets, and the API's wire types.
//!
//! A delivery is an HTTP `POST` of [`Payload`] as JSON with the headers [`EVENT_HEADER`],
//! [`DELIVERY_HEADER`] and [`SIGNATURE_HEADER`]: `t=<unix seconds>,v1=<hex>`, where the hex is
//! HMAC-SHA256, keyed with the webhook's secret, of `<t>.<body>` ([`signature_header`],
//! [`verify`]). Delivery is at least once: a receiver drops a delivery id it has seen.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::{DeliveryId, WebhookId};
use crate::{JobId, JobStatus};

/// The header that names the event (`job.finished`).
pub const EVENT_HEADER: &str = "X-CI-Event";
/// The header that carries the delivery's id (the same as the body's `id`, and the same on every
/// attempt).
pub const DELIVERY_HEADER: &str = "X-CI-Delivery";
/// The header that carries the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "X-CI-Signature";
/// The `User-Agent` of every delivery.
pub const USER_AGENT: &str = "ci-webhooks";
/// How a secret starts (`whsec_` and 64 hex digits).
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;
/// Most webhooks one user may register.
pub const MAX_WEBHOOKS_PER_USER: usize = 20;
/// The longest URL a webhook may have, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// What a webhook can be sent about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "db", derive(sqlx::Type))]
#[cfg_attr(feature = "db", sqlx(type_name = "TEXT"))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WebhookEvent {
    /// A job started running (it was claimed by the controller).
    #[serde(rename = "job.started")]
    #[cfg_attr(feature = "db", sqlx(rename = "job.started"))]
    JobStarted,
    /// A job ended, however it ended: `passed`, `failed`, `error`, `timed_out`, `cancelled`
    /// (also before it started) or `lost`.
    #[serde(rename = "job.finished")]
    #[cfg_attr(feature = "db", sqlx(rename = "job.finished"))]
    JobFinished,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 2] = [WebhookEvent::JobStarted, WebhookEvent::JobFinished];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::JobStarted => "job.started",
            WebhookEvent::JobFinished => "job.finished",
        }
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event name that is not one of [`WebhookEvent::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown webhook event {event:?}: the events are {known}",
    event = .0,
    known = WebhookEvent::ALL.map(WebhookEvent::as_str).join(", ")
)]
pub struct UnknownEvent(pub String);

impl FromStr for WebhookEvent {
    type Err = UnknownEvent;
    fn from_str(s: &str) -> Result<Self, UnknownEvent> {
        let s = s.trim();
        WebhookEvent::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEvent(s.to_owned()))
    }
}

/// The events a webhook asks for, from their names: each once, in [`WebhookEvent::ALL`]'s
/// order; none named means all of them.
///
/// # Errors
///
/// The first name that is not an event.
pub fn parse_events<S: AsRef<str>>(names: &[S]) -> Result<Vec<WebhookEvent>, UnknownEvent> {
    let mut events = names
        .iter()
        .map(|n| n.as_ref().parse())
        .collect::<Result<Vec<WebhookEvent>, _>>()?;
    if events.is_empty() {
        events = WebhookEvent::ALL.to_vec();
    }
    events.sort();
    events.dedup();
    Ok(events)
}

/// Events as the database keeps them: comma-separated (`job.started,job.finished`).
pub fn events_text(events: &[WebhookEvent]) -> String {
    events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The events of [`events_text`]'s text (a name this version does not know is left out).
pub fn events_from_text(text: &str) -> Vec<WebhookEvent> {
    text.split(',').filter_map(|n| n.parse().ok()).collect()
}

/// A fresh secret from the OS's generator: `whsec_` and 64 hex digits.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", crate::keys::hex(&bytes))
}

/// Hex HMAC-SHA256, keyed with `secret` (its UTF-8 bytes, the whole `whsec_...` text), of
/// `<timestamp>.<body>`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any size");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    crate::keys::hex(&mac.finalize().into_bytes())
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp` (unix seconds):
/// `t=<timestamp>,v1=<signature>`.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", signature(secret, timestamp, body))
}

/// Why a signature does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadSignature {
    #[error("the signature header is not `t=<unix seconds>,v1=<hex>`")]
    Malformed,
    #[error("the signature does not match the body and the secret")]
    Mismatch,
    #[error("the signature is {age}s from now, more than the tolerance of {tolerance}s")]
    Stale { age: i64, tolerance: i64 },
}

/// Checks a delivery as a receiver should: `header` (the [`SIGNATURE_HEADER`]'s value) must
/// sign `body` with `secret`, at a time at most `tolerance` from `now` (unix seconds), so that
/// a recorded delivery cannot be replayed later. Compares in constant time.
///
/// # Errors
///
/// [`BadSignature`] saying which check failed.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), BadSignature> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let (Some(timestamp), false) = (timestamp, signatures.is_empty()) else {
        return Err(BadSignature::Malformed);
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any size");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let matches = signatures.iter().any(|hex| {
        crate::keys::unhex(hex).is_some_and(|bytes| mac.clone().verify_slice(&bytes).is_ok())
    });
    if !matches {
        return Err(BadSignature::Mismatch);
    }
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    let age = (now - timestamp).abs();
    if age > tolerance {
        return Err(BadSignature::Stale { age, tolerance });
    }
    Ok(())
}

/// The JSON body of a delivery (the same bytes on every attempt):
/// `{"id", "event", "created_at", "job": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Payload {
    /// The delivery's id, also in [`DELIVERY_HEADER`]: drop a delivery whose id you have seen.
    pub id: DeliveryId,
    pub event: WebhookEvent,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    pub job: PayloadJob,
}

/// The job a delivery is about, as it was when the event happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PayloadJob {
    pub id: JobId,
    /// `running` for `job.started`; the end state for `job.finished`.
    pub status: JobStatus,
    /// True only for `passed`.
    pub success: bool,
    pub task: String,
    pub project: Option<String>,
    /// Why the job ended as it did (for `job.finished`, but for `passed` and `failed`).
    pub reason: Option<String>,
    pub exit_code: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The job in the API: `GET` it with a key (`/api/v1/jobs/<id>`, relative to the server).
    pub api_path: String,
}

/// When a failed delivery is tried again: `base · 2^(n−1)` after its `n`th attempt failed (30 s,
/// 1 min, 2 min, ... by default), until `give_up_after` has passed since its first attempt. The
/// last attempt is made at that point (a delay that would pass it is cut short); when it fails
/// too, the delivery is `failed`. The defaults give 8 attempts over an hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The delay after the first failed attempt (`ci-controller --webhook-retry-base`).
    pub base: Duration,
    /// How long after the first attempt the last one is made (`ci-controller
    /// --webhook-give-up-after`).
    pub give_up_after: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            give_up_after: Duration::from_secs(3600),
        }
    }
}

impl RetrySchedule {
    /// When to try again after the `attempts`th attempt (from 1), made at `now`, failed, for a
    /// delivery first attempted at `first_attempt_at`; `None`: give up.
    pub fn next_attempt(
        &self,
        attempts: u32,
        first_attempt_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let deadline = first_attempt_at + to_chrono(self.give_up_after);
        if now >= deadline {
            return None;
        }
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(31));
        let delay = self.base.saturating_mul(factor);
        Some((now + to_chrono(delay)).min(deadline))
    }
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Where a delivery is: `pending` (waiting for its next attempt, or being attempted),
/// `delivered` (the receiver answered 2xx) or `failed` (it gave up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "db", derive(sqlx::Type))]
#[cfg_attr(feature = "db", sqlx(type_name = "TEXT", rename_all = "snake_case"))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /api/v1/webhooks`: a receiver's URL and the events it wants (none: all of them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewWebhook {
    /// Where deliveries are POSTed: a URL the operator's rules allow (`ci-controller
    /// --webhook-allow`; any public HTTPS host by default).
    pub url: String,
    /// Event names (`job.started`, `job.finished`); absent or empty: all of them.
    #[serde(default)]
    pub events: Vec<String>,
}

/// A webhook as the API shows it (its secret only once, in [`CreatedWebhook`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookView {
    pub id: WebhookId,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub created_at: DateTime<Utc>,
}

/// The answer to `POST /api/v1/webhooks`: the webhook and its secret, shown this once.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedWebhook {
    pub id: WebhookId,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub created_at: DateTime<Utc>,
    /// Signs every delivery (`X-CI-Signature`): keep it where the receiver can read it; it is
    /// not shown again.
    pub secret: String,
}

impl fmt::Debug for CreatedWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedWebhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("created_at", &self.created_at)
            .field("secret", &"..")
            .finish()
    }
}

/// `GET /api/v1/webhooks`: the caller's webhooks, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// One delivery as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryView {
    /// The delivery's id (the body's `id` and `X-CI-Delivery`).
    pub id: DeliveryId,
    pub event: WebhookEvent,
    pub job_id: JobId,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: i64,
    /// The HTTP status of the last answer; `null` when there was none (no connection, no
    /// answer in time) or no attempt yet.
    pub last_status: Option<i64>,
    /// What went wrong with the last attempt.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When it is tried next, while it is `pending`.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/webhooks/{id}/deliveries`: the webhook's latest deliveries, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_once_each_and_none_means_all() {
        assert_eq!(
            parse_events(&["job.finished", "job.started", "job.finished"]).unwrap(),
            WebhookEvent::ALL
        );
        assert_eq!(
            parse_events::<&str>(&[]).unwrap(),
            WebhookEvent::ALL.to_vec()
        );
        let err = parse_events(&["job.done"]).unwrap_err().to_string();
        assert!(
            err.contains("\"job.done\"") && err.contains("job.started, job.finished"),
            "{err}"
        );
        let text = events_text(&WebhookEvent::ALL);
        assert_eq!(text, "job.started,job.finished");
        assert_eq!(events_from_text(&text), WebhookEvent::ALL);
        assert_eq!(
            serde_json::to_string(&WebhookEvent::JobFinished).unwrap(),
            "\"job.finished\""
        );
    }

    #[test]
    fn a_signature_verifies_with_its_secret_body_and_time_only() {
        let secret = generate_secret();
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == 6 + 64);
        assert_ne!(secret, generate_secret());
        let body = br#"{"id":"x"}"#;
        let header = signature_header(&secret, 1_700_000_000, body);
        let minutes = Duration::from_secs(300);
        assert_eq!(
            verify(&secret, &header, body, 1_700_000_100, minutes),
            Ok(())
        );
        assert_eq!(
            verify(&secret, &header, b"{\"id\":\"y\"}", 1_700_000_000, minutes),
            Err(BadSignature::Mismatch)
        );
        assert_eq!(
            verify(&generate_secret(), &header, body, 1_700_000_000, minutes),
            Err(BadSignature::Mismatch)
        );
        assert!(matches!(
            verify(&secret, &header, body, 1_700_001_000, minutes),
            Err(BadSignature::Stale { age: 1000, .. })
        ));
        for bad in ["", "t=1", "v1=ab", "t=x,v1=ab"] {
            assert_eq!(
                verify(&secret, bad, body, 1_700_000_000, minutes),
                Err(BadSignature::Malformed),
                "{bad:?}"
            );
        }
        // A known value, so that another language's implementation can be checked against it.
        assert_eq!(
            signature("whsec_test", 1, b"{}"),
            "7500d5d4be4b3ef07af1fe56f7d522d135cdaa7530de557e67cc1049c52de094"
        );
    }

    #[test]
    fn retries_double_from_the_base_and_end_an_hour_after_the_first_attempt() {
        let schedule = RetrySchedule::default();
        let first = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let mut now = first;
        let mut at = vec![0];
        let mut attempts = 1;
        while let Some(next) = schedule.next_attempt(attempts, first, now) {
            now = next;
            at.push((now - first).num_seconds());
            attempts += 1;
        }
        assert_eq!(at, [0, 30, 90, 210, 450, 930, 1890, 3600]);
        let quick = RetrySchedule {
            base: Duration::from_millis(50),
            ..RetrySchedule::default()
        };
        let next = quick.next_attempt(2, first, first).unwrap();
        assert_eq!((next - first).num_milliseconds(), 100);
    }
}
