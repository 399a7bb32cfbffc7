//! What can end a job task inside the controller (not the job's own outcome: failing tests
//! are a result, not an error here). Whether a failure means that this controller lost its
//! lease is decided here and nowhere else: [`JobError::is_lease_lost`], and [`is_lease_lost`]
//! for an `anyhow` chain.

use ci_common::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Another controller took over the lease: this one must stop writing and stop.
    #[error("this controller's lease (epoch {0}) was taken over by another controller")]
    LeaseLost(i64),
    /// The database failed (a lost lease is [`JobError::LeaseLost`], never this).
    #[error(transparent)]
    Db(DbError),
    /// The task that stores the job's log stopped for a reason other than the database.
    #[error("{0}")]
    LogWriter(String),
}

impl From<DbError> for JobError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::LeaseLost(epoch) => JobError::LeaseLost(epoch),
            e => JobError::Db(e),
        }
    }
}

impl JobError {
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, JobError::LeaseLost(_))
    }
}

/// Whether `e`, or any cause in its chain, is a lost lease: a [`JobError`] (from the log sink)
/// or a [`DbError`] that a database call passed up with `?`.
pub fn is_lease_lost(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<JobError>() {
            return e.is_lease_lost();
        }
        matches!(cause.downcast_ref::<DbError>(), Some(DbError::LeaseLost(_)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    fn finishing_a_step() -> anyhow::Result<()> {
        Err(DbError::LeaseLost(7)).context("finishing step 1")
    }

    #[test]
    fn a_lost_lease_is_found_in_every_shape_it_arrives_in() {
        let from_db = JobError::from(DbError::LeaseLost(7));
        assert!(matches!(from_db, JobError::LeaseLost(7)));
        assert!(from_db.is_lease_lost());
        // Straight from a database call (`?`), under context, or from the sink.
        assert!(is_lease_lost(&anyhow::Error::from(DbError::LeaseLost(7))));
        assert!(is_lease_lost(&finishing_a_step().unwrap_err()));
        let from_sink = anyhow::Error::from(JobError::LeaseLost(7)).context("storing the log");
        assert!(is_lease_lost(&from_sink));
    }

    #[test]
    fn other_failures_are_not_a_lost_lease_and_read_as_before() {
        let db = JobError::from(DbError::Query(sqlx::Error::RowNotFound));
        assert!(!db.is_lease_lost());
        // The database's own message and cause, as when the DbError was reported directly.
        assert_eq!(
            format!("{:#}", anyhow::Error::from(db)),
            format!(
                "{:#}",
                anyhow::Error::from(DbError::Query(sqlx::Error::RowNotFound))
            )
        );
        let writer = JobError::LogWriter("the log writer failed: task 3 panicked".into());
        assert!(!writer.is_lease_lost());
        assert!(!is_lease_lost(&anyhow::Error::from(writer)));
        assert!(!is_lease_lost(&anyhow::anyhow!(
            "could not start the container"
        )));
    }
}
