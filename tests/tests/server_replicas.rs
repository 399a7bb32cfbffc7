//! Three replicas of `ci-server` on one database, hammered at once: fifty submitters (ten users,
//! five jobs each, spread over the replicas) get no error, every job exists once and is seen by
//! its owner alone from every replica, and cancelling them all from other replicas works. On
//! SQLite and on PostgreSQL. No controller: the jobs stay queued until cancelled.

use std::collections::BTreeSet;

use ci_tests::{client, fixture, zip_dir, Server, TestDb};
use serde_json::Value;

const USERS: usize = 10;
const JOBS_EACH: usize = 5;

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_submitters_on_three_replicas_get_no_error() {
    fifty_submitters(&TestDb::new().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_submitters_on_three_replicas_get_no_error_on_postgres() {
    fifty_submitters(&TestDb::postgres().await).await;
}

async fn fifty_submitters(db: &TestDb) {
    let replicas: Vec<Server> = (0..3).map(|_| Server::start(db)).collect();
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    // Each replica is ready: it reaches the database.
    for url in &urls {
        let ready = client().get(format!("{url}/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{url}/ready");
    }
    let mut users = Vec::new();
    for n in 0..USERS {
        users.push(db.user(&format!("user{n}")).await);
    }
    let zip = zip_dir(&fixture("passing"));

    let mut submitters = tokio::task::JoinSet::new();
    for (u, user) in users.iter().enumerate() {
        for j in 0..JOBS_EACH {
            let url = urls[(u + j) % urls.len()].clone();
            let (key, zip) = (user.key.clone(), zip.clone());
            submitters.spawn(async move {
                let form = reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(zip).file_name("project.zip"),
                );
                let response = client()
                    .post(format!("{url}/api/v1/jobs"))
                    .bearer_auth(&key)
                    .multipart(form)
                    .send()
                    .await
                    .map_err(|e| format!("{url}: {e}"))?;
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if status != 201 {
                    return Err(format!("{url}: {status} {body}"));
                }
                let body: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
                Ok((u, body["job_id"].as_str().unwrap().to_owned()))
            });
        }
    }
    let mut errors = Vec::new();
    let mut ids: Vec<BTreeSet<String>> = vec![BTreeSet::new(); USERS];
    while let Some(done) = submitters.join_next().await {
        match done.unwrap() {
            Ok((u, id)) => assert!(ids[u].insert(id), "a job id was given twice"),
            Err(e) => errors.push(e),
        }
    }
    assert!(errors.is_empty(), "submissions failed: {errors:#?}");
    assert!(ids.iter().all(|mine| mine.len() == JOBS_EACH), "{ids:?}");

    // Each replica lists each user's jobs, and only those.
    for url in &urls {
        for (u, user) in users.iter().enumerate() {
            let listed: Value = client()
                .get(format!("{url}/api/v1/jobs?limit=100"))
                .bearer_auth(&user.key)
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .json()
                .await
                .unwrap();
            let seen: BTreeSet<String> = listed["jobs"]
                .as_array()
                .unwrap_or_else(|| panic!("a list of jobs: {listed}"))
                .iter()
                .map(|j| j["job_id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(seen, ids[u], "{url} lists user{u}'s jobs");
        }
    }

    // Cancelling on another replica than the one submitted to: each queued job ends at once.
    for (u, user) in users.iter().enumerate() {
        for (j, id) in ids[u].iter().enumerate() {
            let url = &urls[(u + j + 1) % urls.len()];
            let job: Value = client()
                .post(format!("{url}/api/v1/jobs/{id}/cancel"))
                .bearer_auth(&user.key)
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(job["status"], "cancelled", "{job}");
        }
    }
    // Another user's job is not found, not cancelled.
    let other = ids[1].iter().next().unwrap();
    let response = client()
        .post(format!("{}/api/v1/jobs/{other}/cancel", urls[0]))
        .bearer_auth(&users[0].key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
