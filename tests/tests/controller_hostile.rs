//! Projects that attack the sandbox are contained and end the way a user expects, with Docker's
//! default runtime (`controller_gvisor` runs the same checks under gVisor).

#[path = "support/controller.rs"]
mod support;

#[path = "support/hostile.rs"]
mod hostile;

#[tokio::test(flavor = "multi_thread")]
async fn tests_have_no_network_and_a_read_only_root() {
    hostile::contained_fixtures_pass(&[], &["network_access", "write_outside"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_cannot_kill_pid1() {
    hostile::contained_fixtures_pass(&[], &["kill_pid1"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_is_contained_and_the_job_ends() {
    hostile::fork_bomb_is_contained(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_oom_killed_and_the_reason_names_the_limit() {
    hostile::memory_hog_is_oom_killed(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_output_flood_keeps_head_and_tail_with_one_truncation_notice() {
    hostile::output_flood_keeps_head_and_tail(&[]).await;
}
