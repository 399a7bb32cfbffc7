//! A stream cut in the middle: `ci` follows a job on replica 1, replica 1 dies, and `ci`
//! finishes on replica 2 with the same log it would have printed without the cut.

#[path = "support/client.rs"]
mod support;

use ci_tests::{Server, TestDb};
use support::{follow_across_a_cut, run, CiEnv};

#[tokio::test(flavor = "multi_thread")]
async fn follows_on_the_next_replica_when_the_first_is_killed() {
    follow_across_a_cut(&TestDb::new().await, 2, |replica1| {
        replica1.proc.child.kill().unwrap();
        replica1.proc.child.wait().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_on_the_next_of_three_replicas_when_the_first_is_killed_on_postgres() {
    follow_across_a_cut(&TestDb::postgres().await, 3, |replica1| {
        replica1.proc.child.kill().unwrap();
        replica1.proc.child.wait().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_on_the_next_replica_when_the_first_shuts_down_cleanly() {
    // A graceful shutdown ends the stream without `complete`: that is a cut too.
    follow_across_a_cut(&TestDb::new().await, 2, |replica1| {
        replica1.proc.signal("TERM");
        replica1.proc.wait_exit(ci_tests::WAIT);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_first_replica_is_skipped() {
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start(&db);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let servers = format!("http://127.0.0.1:{port},{}", server.url);
    let env = CiEnv::new();
    let out = run(env.ci(&servers, &ada.key, env.home.path(), &["list"])).expect_code(0);
    assert_eq!(out.stdout, "No jobs found.\n");
}
