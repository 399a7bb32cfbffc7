//! A stream cut in the middle: `ci` follows a job on replica 1, replica 1 dies, and `ci`
//! finishes on replica 2 with the same log it would have printed without the cut.

#[path = "support/client.rs"]
mod support;

use ci_tests::{fixture, Controller, Server, TestDb};
use support::{job_id_in, run, CiEnv, CiProc, CI_TIMEOUT};

#[tokio::test(flavor = "multi_thread")]
async fn follows_on_the_next_replica_when_the_first_is_killed() {
    follow_across_a_cut(|replica1| {
        replica1.proc.child.kill().unwrap();
        replica1.proc.child.wait().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_on_the_next_replica_when_the_first_shuts_down_cleanly() {
    // A graceful shutdown ends the stream without `complete`: that is a cut too.
    follow_across_a_cut(|replica1| {
        replica1.proc.signal("TERM");
        replica1.proc.wait_exit(ci_tests::WAIT);
    })
    .await;
}

/// Follows slow_lines through `replica1,replica2`, cuts replica 1 with `cut` after a few
/// lines, and checks that every line was printed exactly once, as `ci wait --all` prints it.
async fn follow_across_a_cut(cut: impl FnOnce(&mut Server)) {
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let mut replica1 = Server::start(&db.path);
    let replica2 = Server::start(&db.path);
    let _controller = Controller::start(&db.path);
    let env = CiEnv::new();
    let servers = format!("{},{}", replica1.url, replica2.url);
    let here = fixture("slow_lines");

    let mut ci = CiProc::spawn(env.ci(&servers, &ada.key, &here, &["submit", "test"]));
    let id = job_id_in(&ci.wait_for_line("Job ID: ", CI_TIMEOUT));
    ci.wait_for_line("tick 3", CI_TIMEOUT);
    cut(&mut replica1);

    let out = ci.finish(CI_TIMEOUT).expect_code(0);
    support::assert_followed_every_tick(&out, &id, "the cut was noticed");

    // The whole log, read afterwards from the surviving replica, is what was printed live.
    let all = run(env.ci(&replica2.url, &ada.key, &here, &["wait", &id, "--all"])).expect_code(0);
    assert_eq!(out.stdout, all.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_first_replica_is_skipped() {
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start(&db.path);
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
