//! The job lifecycle: `queued → running → passed | failed | error | timed_out | cancelled | lost`.
//! Terminal states never change.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "db", derive(sqlx::Type))]
#[cfg_attr(feature = "db", sqlx(type_name = "TEXT", rename_all = "snake_case"))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum JobStatus {
    Queued,
    Running,
    /// pytest exited 0.
    Passed,
    /// Tests failed (pytest exit 1).
    Failed,
    /// Anything else that stopped the job; `reason` says what.
    Error,
    TimedOut,
    Cancelled,
    /// The controller could not find out what happened (its container vanished).
    Lost,
}

impl JobStatus {
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Passed,
        JobStatus::Failed,
        JobStatus::Error,
        JobStatus::TimedOut,
        JobStatus::Cancelled,
        JobStatus::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Passed => "passed",
            JobStatus::Failed => "failed",
            JobStatus::Error => "error",
            JobStatus::TimedOut => "timed_out",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Lost => "lost",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    /// The original system's `success` flag: true only for `passed`.
    pub fn success(self) -> bool {
        self == JobStatus::Passed
    }

    /// The word the original system's API uses for this state: `completed` when the tests ran
    /// (`success` says whether they passed), `failed` when the job could not run (an error, a
    /// timeout, a lost container), and `queued`, `running`, `cancelled` as they are.
    pub fn legacy_word(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Passed | JobStatus::Failed => "completed",
            JobStatus::Error | JobStatus::TimedOut | JobStatus::Lost => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the lifecycle allows going from `self` to `next`.
    pub fn can_become(self, next: JobStatus) -> bool {
        match self {
            JobStatus::Queued => matches!(next, JobStatus::Running | JobStatus::Cancelled),
            JobStatus::Running => next.is_terminal(),
            _ => false,
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown job status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// What a job event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "db", derive(sqlx::Type))]
#[cfg_attr(feature = "db", sqlx(type_name = "TEXT", rename_all = "snake_case"))]
pub enum EventKind {
    /// One line of the job's output.
    Log,
    /// A lifecycle transition.
    Status,
    /// Something the system says about the job ("installing requirements", "log truncated").
    Notice,
    /// A step started or ended (`data`: its name, position, state, exit code and reason).
    Step,
    /// The job's test results (`data`: counts per outcome, the slowest tests).
    Summary,
    /// The final result; always the last event of a job.
    Complete,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Log => "log",
            EventKind::Status => "status",
            EventKind::Notice => "notice",
            EventKind::Step => "step",
            EventKind::Summary => "summary",
            EventKind::Complete => "complete",
        }
    }
}

/// Which output stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "db", derive(sqlx::Type))]
#[cfg_attr(feature = "db", sqlx(type_name = "TEXT", rename_all = "snake_case"))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_never_change() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                assert!(!from.can_become(to), "{from} must not become {to}");
            }
        }
    }

    #[test]
    fn lifecycle_edges() {
        assert!(JobStatus::Queued.can_become(JobStatus::Running));
        assert!(JobStatus::Queued.can_become(JobStatus::Cancelled));
        assert!(!JobStatus::Queued.can_become(JobStatus::Passed));
        assert!(JobStatus::Running.can_become(JobStatus::Lost));
        assert!(!JobStatus::Running.can_become(JobStatus::Queued));
    }

    #[test]
    fn only_passed_is_success() {
        let successes: Vec<_> = JobStatus::ALL.into_iter().filter(|s| s.success()).collect();
        assert_eq!(successes, vec![JobStatus::Passed]);
    }

    #[test]
    fn legacy_words_are_the_original_systems() {
        let words: Vec<_> = JobStatus::ALL
            .into_iter()
            .map(|s| (s, s.legacy_word()))
            .collect();
        assert_eq!(
            words,
            [
                (JobStatus::Queued, "queued"),
                (JobStatus::Running, "running"),
                (JobStatus::Passed, "completed"),
                (JobStatus::Failed, "completed"),
                (JobStatus::Error, "failed"),
                (JobStatus::TimedOut, "failed"),
                (JobStatus::Cancelled, "cancelled"),
                (JobStatus::Lost, "failed"),
            ]
        );
        // Only a finished job is `completed`, `failed` or `cancelled`.
        for status in JobStatus::ALL {
            let ended = matches!(status.legacy_word(), "completed" | "failed" | "cancelled");
            assert_eq!(ended, status.is_terminal(), "{status}");
        }
    }

    #[test]
    fn status_text_round_trips() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>().unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
}
