//! Wire types of the HTTP API: request and response bodies, the error body, and the JSON carried in
//! each SSE event's `data`. Shared by the server and the client so the two cannot drift apart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::results::{TestCounts, TestResult, TestSummary};
use crate::{JobId, JobStatus, LogStream, StepState};

/// Where the versioned API lives.
pub const API_PREFIX: &str = "/api/v1";

/// The task every upload runs unless it names another.
pub const DEFAULT_TASK: &str = "test";

/// A job as the API shows it. `job_id`, `status`, `success`, `start_time` and `end_time` are the
/// original system's fields; the rest is ours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    pub job_id: JobId,
    pub status: JobStatus,
    /// True only for `passed`.
    pub success: bool,
    pub task: String,
    /// The job's arguments (`ci submit TASK -- ARGS...`): pytest's for `test`, the task's
    /// parameters otherwise; absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The project the job belongs to (`--project`, `project` under `[tool.ci]`,
    /// `[project].name` or the folder's name); absent for jobs from before projects had names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The image the job runs in: the one it asked for until it starts, then the one it runs in
    /// (absent while a job that asked for none is queued).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The Docker host the job runs (or ran) on, by its name in the controller's host list;
    /// absent until it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Where a job from git fetches its project, and the commit once fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub git: Option<crate::git::GitView>,
    /// The team the job was submitted to (`ci submit --team`): every member sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub team: Option<String>,
    /// Who submitted a team's job (its member's name); absent for jobs of no team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub submitted_by: Option<String>,
    /// Why the job ended the way it did, for everything but `passed`/`failed`.
    pub reason: Option<String>,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub created_at: DateTime<Utc>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    /// Log lines stored, and lines dropped past the log cap.
    pub log_lines: i64,
    pub dropped_lines: i64,
    /// The job's last event seq when this view was made (follow with `?after=<last_seq>` to
    /// see only new output). Filled in by endpoints that show a single job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<i64>,
    /// The job's steps in order, by endpoints that show a single job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepView>>,
    /// For a queued job, by endpoints that show a single job: whether a controller is there to
    /// run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<ControllerState>,
    /// Counts of the job's tests per outcome, once its results are collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestCounts>,
}

/// `GET /api/v1/jobs/{id}/tests`: one page of a job's test results in the order the tests
/// finished, the job's counts (`None` until its results are collected) and the `offset` of the
/// next page (`None` on the last).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestList {
    pub tests: Vec<TestResult>,
    pub counts: Option<TestCounts>,
    pub next_offset: Option<i64>,
}

/// A step as the API shows it (in a job's `steps`), and the data of its `step` events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepView {
    pub name: String,
    /// 1, 2, 3, ... in the order the steps run.
    pub position: i64,
    pub state: StepState,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Whether a controller runs jobs: the `controller` of a queued job's view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ControllerState {
    /// A controller holds the lease and its heartbeat is recent.
    pub running: bool,
    /// The last heartbeat of the last controller; `null` when none ever started.
    pub last_seen: Option<DateTime<Utc>>,
}

/// `POST /api/v1/session` (sign in with `{"api_key": "ci_..."}`) and `GET /api/v1/session`:
/// who is signed in, and until when (`null` for a caller with an API key, whose key has no
/// session).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionView {
    pub user_id: crate::UserId,
    pub user_name: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/jobs/{id}/log/search`: lines of the log that contain the text, in order. Pass
/// `next_after` as `?after=` for the next page (`null` on the last).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogMatches {
    pub matches: Vec<LogLine>,
    pub next_after: Option<i64>,
}

/// One line of a job's log: its number (the event's `seq`) and text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    pub seq: i64,
    pub text: String,
}

/// `GET /api/v1/jobs`: newest first. Pass `next_before` as `?before=` for the next page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    pub jobs: Vec<JobView>,
    pub next_before: Option<JobId>,
}

/// `POST /submit-async` (the original's answer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmittedJob {
    pub job_id: JobId,
}

/// The one error body of every endpoint. `detail` repeats `error` for the original system's
/// client, which read FastAPI's `detail`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: String,
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
}

/// How a job ended, as carried by its final `status` and `complete` events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: JobStatus,
    pub reason: Option<String>,
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub oom_killed: bool,
    /// The job's test counts, when its results were collected (in its `complete` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestCounts>,
}

impl Outcome {
    pub fn new(status: JobStatus) -> Self {
        Self {
            status,
            reason: None,
            exit_code: None,
            oom_killed: false,
            tests: None,
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_exit_code(mut self, code: i64) -> Self {
        self.exit_code = Some(code);
        self
    }
}

/// The JSON in an SSE event's `data`. Every variant carries `type`; log lines carry the text in
/// `data` and the end is `{"type":"complete","success":...}`, as the original client expects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// First event of `/submit-stream` (original protocol only; has no seq).
    #[cfg_attr(feature = "openapi", schema(title = "JobIdEvent"))]
    JobId { job_id: JobId },
    /// One line of the job's output (without its newline).
    #[cfg_attr(feature = "openapi", schema(title = "LogEvent"))]
    Log {
        seq: i64,
        data: String,
        stream: LogStream,
        ts: DateTime<Utc>,
    },
    /// The job changed state (`running`, then how it ended), with why.
    #[cfg_attr(feature = "openapi", schema(title = "StatusEvent"))]
    Status {
        seq: i64,
        status: JobStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        ts: DateTime<Utc>,
    },
    /// What ci itself says about the job (not its output), e.g. that its log was cut or how
    /// the dependency cache was used.
    #[cfg_attr(feature = "openapi", schema(title = "NoticeEvent"))]
    Notice {
        seq: i64,
        data: String,
        ts: DateTime<Utc>,
    },
    /// The job's test results, before `complete`: counts per outcome, the slowest tests.
    #[cfg_attr(feature = "openapi", schema(title = "SummaryEvent"))]
    Summary {
        seq: i64,
        #[serde(flatten)]
        summary: TestSummary,
        ts: DateTime<Utc>,
    },
    /// A step started (`state: running`) or ended.
    #[cfg_attr(feature = "openapi", schema(title = "StepEvent"))]
    Step {
        seq: i64,
        #[serde(flatten)]
        step: StepView,
        ts: DateTime<Utc>,
    },
    /// The job ended: the last event of its stream.
    #[cfg_attr(feature = "openapi", schema(title = "CompleteEvent"))]
    Complete {
        seq: i64,
        /// True only for `passed`.
        success: bool,
        status: JobStatus,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        exit_code: Option<i64>,
        /// The job's test counts, when its results were collected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tests: Option<TestCounts>,
        ts: DateTime<Utc>,
    },
}

impl StreamEvent {
    /// The SSE `event:` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            StreamEvent::JobId { .. } => "job_id",
            StreamEvent::Log { .. } => "log",
            StreamEvent::Status { .. } => "status",
            StreamEvent::Notice { .. } => "notice",
            StreamEvent::Step { .. } => "step",
            StreamEvent::Summary { .. } => "summary",
            StreamEvent::Complete { .. } => "complete",
        }
    }

    /// The SSE `id:` (the event's seq), if it has one.
    pub fn seq(&self) -> Option<i64> {
        match self {
            StreamEvent::JobId { .. } => None,
            StreamEvent::Log { seq, .. }
            | StreamEvent::Status { seq, .. }
            | StreamEvent::Notice { seq, .. }
            | StreamEvent::Step { seq, .. }
            | StreamEvent::Summary { seq, .. }
            | StreamEvent::Complete { seq, .. } => Some(*seq),
        }
    }

    pub fn is_complete(&self) -> bool {
        matches!(self, StreamEvent::Complete { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_event_speaks_the_original_protocol() {
        let event = StreamEvent::Log {
            seq: 3,
            data: "hello".into(),
            stream: LogStream::Stdout,
            ts: DateTime::UNIX_EPOCH,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "log");
        assert_eq!(json["data"], "hello");
        assert_eq!(event.seq(), Some(3));
    }

    #[test]
    fn complete_event_carries_success() {
        let event = StreamEvent::Complete {
            seq: 9,
            success: false,
            status: JobStatus::Failed,
            reason: None,
            exit_code: Some(1),
            tests: None,
            ts: DateTime::UNIX_EPOCH,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "complete");
        assert_eq!(json["success"], false);
        assert_eq!(json["status"], "failed");
        let back: StreamEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
