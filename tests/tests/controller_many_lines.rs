//! A job that prints 200,000 lines gets every one of them stored exactly once, in order.

#[path = "support/controller.rs"]
mod support;

use std::time::Instant;

use ci_common::JobStatus;
use ci_tests::{Controller, TestDb};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn every_one_of_200000_lines_is_stored_once_in_order() {
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let _controller = Controller::start(&db);
    let started = Instant::now();
    let id = queue(&db, user.id, "many_lines").await;
    let job = finished(&db, id, JOB_WAIT).await;
    eprintln!("many_lines took {:?}", started.elapsed());
    assert_eq!(job.status, JobStatus::Passed, "reason: {:?}", job.reason);
    let events = all_events(&db, id).await;
    assert_well_formed(&job, &events);
    // (the first one follows pytest's "tests/test_many_lines.py " on the same line)
    let numbered: Vec<&str> = log_texts(&events)
        .into_iter()
        .filter_map(|l| l.get(l.len().saturating_sub(11)..))
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(numbered.len(), 200_000);
    for (i, line) in numbered.iter().enumerate() {
        assert_eq!(*line, format!("line {:06}", i + 1));
    }
    assert_eq!(job.dropped_lines, 0);
}
