//! Following a job's event stream to its end, across dropped connections and replicas.
//!
//! Every event carries its seq. The follower remembers the last one it handed on, reconnects
//! with `Last-Event-ID: <that seq>` when the stream breaks (error, or end without `complete`),
//! with bounded exponential backoff, and drops anything at or below it, so no line is printed
//! twice and none is skipped.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ci_common::api::{JobView, StreamEvent};
use ci_common::results::TestCounts;
use ci_common::{JobId, JobStatus};
use futures_util::{Stream, StreamExt};

use crate::api::{Api, ApiError};

/// A job's events, as decoded from one connection.
pub type Events = Pin<Box<dyn Stream<Item = Result<StreamEvent>>>>;

/// Where events come from: the real server, or a fake in tests.
pub trait EventSource {
    /// Opens the stream of events after seq `after`; `reconnect` says a previous one broke
    /// (the real source then moves on to the next replica).
    fn open(&mut self, after: i64, reconnect: bool) -> impl Future<Output = Result<Events>>;
    /// The job as it is now.
    fn job(&mut self) -> impl Future<Output = Result<JobView>>;
}

/// Where followed events go.
pub trait Sink {
    fn event(&mut self, event: &StreamEvent);
    fn reconnecting(&mut self, error: &anyhow::Error, attempt: u32, delay: Duration);
}

/// How a followed job ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub status: JobStatus,
    pub reason: Option<String>,
    pub exit_code: Option<i64>,
    /// The job's test counts, when its results were collected.
    pub tests: Option<TestCounts>,
}

impl Finished {
    pub fn from_view(job: &JobView) -> Self {
        Finished {
            status: job.status,
            reason: job.reason.clone(),
            exit_code: job.exit_code,
            tests: job.tests.clone(),
        }
    }
}

/// Reconnect delays: `first`, doubling up to `max`, for at most `tries` reconnects in a row
/// without receiving anything new.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub tries: u32,
}

impl Default for Backoff {
    /// 0.25 s, 0.5 s, 1 s, 2 s, 4 s, then 5 s: about 30 s over 10 tries.
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(250),
            max: Duration::from_secs(5),
            tries: 10,
        }
    }
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// Follows the events after seq `after` until the job's `complete` event.
pub async fn follow<S: EventSource, O: Sink>(
    source: &mut S,
    sink: &mut O,
    after: i64,
    backoff: Backoff,
) -> Result<Finished> {
    let mut last_seq = after;
    let mut failures = 0u32;
    let mut reconnect = false;
    loop {
        let progress_before = last_seq;
        let error = match source.open(last_seq, reconnect).await {
            Ok(mut events) => loop {
                match events.next().await {
                    Some(Ok(event)) => {
                        let Some(seq) = event.seq() else { continue };
                        if seq <= last_seq {
                            continue;
                        }
                        last_seq = seq;
                        sink.event(&event);
                        if let StreamEvent::Complete {
                            status,
                            reason,
                            exit_code,
                            tests,
                            ..
                        } = event
                        {
                            return Ok(Finished {
                                status,
                                reason,
                                exit_code,
                                tests,
                            });
                        }
                    }
                    Some(Err(e)) => break e,
                    None => {
                        // A clean end without `complete`: if the job is over and everything
                        // has been seen, the end was missed only because it came before `after`.
                        if let Ok(job) = source.job().await {
                            if job.status.is_terminal()
                                && job.last_seq.is_some_and(|s| s <= last_seq)
                            {
                                return Ok(Finished::from_view(&job));
                            }
                        }
                        break anyhow!("the event stream ended before the job did");
                    }
                }
            },
            Err(e) if is_permanent(&e) => return Err(e),
            Err(e) => e,
        };
        if last_seq > progress_before {
            failures = 0;
        }
        failures += 1;
        if failures > backoff.tries {
            return Err(error.context(format!(
                "lost the connection to the server and could not reconnect after {} tries",
                backoff.tries
            )));
        }
        let delay = backoff.delay(failures);
        sink.reconnecting(&error, failures, delay);
        tokio::time::sleep(delay).await;
        reconnect = true;
    }
}

/// Errors no retry can fix (a refused key, an unknown job).
fn is_permanent(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ApiError>()
        .is_some_and(|e| !e.is_transient())
}

/// The real thing: `GET /api/v1/jobs/{id}/events` on the current replica.
pub struct HttpEvents<'a> {
    pub api: &'a Api,
    pub job_id: JobId,
}

impl EventSource for HttpEvents<'_> {
    async fn open(&mut self, after: i64, reconnect: bool) -> Result<Events> {
        use eventsource_stream::Eventsource;
        if reconnect {
            self.api.rotate();
        }
        let response = self.api.events(self.job_id, after).await?;
        let events = response.bytes_stream().eventsource().map(|item| {
            let event = item
                .map_err(|e| anyhow!("{e}"))
                .context("the event stream broke")?;
            parse_event(&event.id, &event.data)
        });
        Ok(Box::pin(events))
    }

    async fn job(&mut self) -> Result<JobView> {
        Ok(self.api.job(self.job_id).await?)
    }
}

/// Decodes one SSE event's `data`; the `id:` line fills in a seq the data does not carry.
pub fn parse_event(id: &str, data: &str) -> Result<StreamEvent> {
    let event: StreamEvent = serde_json::from_str(data)
        .with_context(|| format!("the server sent an event ci cannot read: {data:?}"))?;
    if let (Some(seq), Ok(id)) = (event.seq(), id.trim().parse::<i64>()) {
        if seq != id {
            bail!("the server sent event id {id} with seq {seq}");
        }
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use chrono::DateTime;
    use ci_common::LogStream;

    use super::*;

    fn log(seq: i64) -> StreamEvent {
        StreamEvent::Log {
            seq,
            data: format!("line {seq}"),
            stream: LogStream::Stdout,
            ts: DateTime::UNIX_EPOCH,
        }
    }

    fn complete(seq: i64, status: JobStatus) -> StreamEvent {
        StreamEvent::Complete {
            seq,
            success: status.success(),
            status,
            reason: None,
            exit_code: Some(if status.success() { 0 } else { 1 }),
            tests: None,
            ts: DateTime::UNIX_EPOCH,
        }
    }

    enum Step {
        Event(StreamEvent),
        Break,
    }

    enum Connection {
        /// A stream yielding these steps, then ending.
        Stream(Vec<Step>),
        /// Opening fails.
        Refused(ApiError),
        Unreachable,
    }

    #[derive(Default)]
    struct FakeServer {
        connections: VecDeque<Connection>,
        opened: Vec<(i64, bool)>,
        job: Option<JobView>,
    }

    impl EventSource for FakeServer {
        async fn open(&mut self, after: i64, reconnect: bool) -> Result<Events> {
            self.opened.push((after, reconnect));
            match self
                .connections
                .pop_front()
                .expect("no more scripted connections")
            {
                Connection::Stream(steps) => {
                    let items: Vec<Result<StreamEvent>> = steps
                        .into_iter()
                        .map(|s| match s {
                            Step::Event(e) => Ok(e),
                            Step::Break => Err(anyhow!("connection reset")),
                        })
                        .collect();
                    Ok(Box::pin(futures_util::stream::iter(items)))
                }
                Connection::Refused(e) => Err(e.into()),
                Connection::Unreachable => Err(anyhow!("connection refused")),
            }
        }

        async fn job(&mut self) -> Result<JobView> {
            self.job.clone().context("no job")
        }
    }

    #[derive(Default)]
    struct Recorder {
        seqs: Vec<i64>,
        reconnects: Vec<u32>,
    }

    impl Sink for Recorder {
        fn event(&mut self, event: &StreamEvent) {
            self.seqs.push(event.seq().unwrap());
        }
        fn reconnecting(&mut self, _: &anyhow::Error, attempt: u32, _: Duration) {
            self.reconnects.push(attempt);
        }
    }

    const FAST: Backoff = Backoff {
        first: Duration::ZERO,
        max: Duration::ZERO,
        tries: 3,
    };

    fn events(seqs: impl IntoIterator<Item = i64>) -> Vec<Step> {
        seqs.into_iter().map(|s| Step::Event(log(s))).collect()
    }

    #[tokio::test]
    async fn reconnects_after_the_last_seen_seq_without_duplicates() {
        let mut first = events(1..=3);
        first.push(Step::Break);
        // A replica that replays from too early: 2 and 3 must not be printed again.
        let mut second = events(2..=5);
        second.push(Step::Event(complete(6, JobStatus::Passed)));
        let mut server = FakeServer {
            connections: VecDeque::from([Connection::Stream(first), Connection::Stream(second)]),
            ..FakeServer::default()
        };
        let mut out = Recorder::default();
        let finished = follow(&mut server, &mut out, 0, FAST).await.unwrap();
        assert_eq!(finished.status, JobStatus::Passed);
        assert_eq!(out.seqs, [1, 2, 3, 4, 5, 6]);
        assert_eq!(server.opened, [(0, false), (3, true)]);
        assert_eq!(out.reconnects, [1]);
    }

    #[tokio::test]
    async fn a_stream_that_ends_without_complete_is_resumed() {
        let mut second = events(3..=4);
        second.push(Step::Event(complete(5, JobStatus::Failed)));
        let mut server = FakeServer {
            connections: VecDeque::from([
                Connection::Stream(events(1..=2)),
                Connection::Unreachable,
                Connection::Stream(second),
            ]),
            ..FakeServer::default()
        };
        let mut out = Recorder::default();
        let finished = follow(&mut server, &mut out, 0, FAST).await.unwrap();
        assert_eq!(finished.status, JobStatus::Failed);
        assert_eq!(out.seqs, [1, 2, 3, 4, 5]);
        assert_eq!(server.opened, [(0, false), (2, true), (2, true)]);
        assert_eq!(out.reconnects, [1, 2]);
    }

    #[tokio::test]
    async fn starts_after_the_given_seq() {
        let mut stream = events(1..=11);
        stream.push(Step::Event(complete(12, JobStatus::Passed)));
        let mut server = FakeServer {
            connections: VecDeque::from([Connection::Stream(stream)]),
            ..FakeServer::default()
        };
        let mut out = Recorder::default();
        follow(&mut server, &mut out, 10, FAST).await.unwrap();
        assert_eq!(out.seqs, [11, 12]);
        assert_eq!(server.opened, [(10, false)]);
    }

    #[tokio::test]
    async fn gives_up_after_the_retry_budget() {
        let mut server = FakeServer {
            connections: (0..10).map(|_| Connection::Unreachable).collect(),
            ..FakeServer::default()
        };
        let mut out = Recorder::default();
        let error = follow(&mut server, &mut out, 0, FAST).await.unwrap_err();
        assert!(
            format!("{error:#}").contains("could not reconnect after 3 tries"),
            "{error:#}"
        );
        assert_eq!(server.opened.len(), 4);
    }

    #[tokio::test]
    async fn progress_resets_the_retry_budget() {
        // Each connection delivers one new event then breaks: more breaks than `tries` in
        // total, but never more than one in a row without progress.
        let mut connections: VecDeque<_> = (1..=6)
            .map(|s| Connection::Stream(vec![Step::Event(log(s)), Step::Break]))
            .collect();
        connections.push_back(Connection::Stream(vec![Step::Event(complete(
            7,
            JobStatus::Passed,
        ))]));
        let mut server = FakeServer {
            connections,
            ..FakeServer::default()
        };
        let mut out = Recorder::default();
        follow(&mut server, &mut out, 0, FAST).await.unwrap();
        assert_eq!(out.seqs, [1, 2, 3, 4, 5, 6, 7]);
    }

    #[tokio::test]
    async fn refused_requests_are_not_retried() {
        let refused = ApiError::Rejected {
            status: reqwest::StatusCode::NOT_FOUND,
            context: "job x was not found".into(),
            message: crate::api::ServerMessage("job not found".into()),
        };
        let mut server = FakeServer {
            connections: VecDeque::from([Connection::Refused(refused)]),
            ..FakeServer::default()
        };
        let mut out = Recorder::default();
        let error = follow(&mut server, &mut out, 0, FAST).await.unwrap_err();
        assert!(format!("{error:#}").contains("not found"));
        assert_eq!(server.opened.len(), 1);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff::default();
        let delays: Vec<_> = (1..=b.tries).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(
            delays,
            [250, 500, 1000, 2000, 4000, 5000, 5000, 5000, 5000, 5000]
        );
        assert!(delays.iter().sum::<u128>() <= 35_000);
    }

    #[test]
    fn parses_server_events() {
        let event = parse_event(
            "4",
            r#"{"type":"log","seq":4,"data":"hi","stream":"stderr","ts":"2025-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(event.seq(), Some(4));
        assert!(parse_event(
            "5",
            r#"{"type":"log","seq":4,"data":"hi","stream":"stderr","ts":"2025-01-01T00:00:00Z"}"#
        )
        .is_err());
        assert!(parse_event("", "not json").is_err());
    }
}
