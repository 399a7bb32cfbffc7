//! One controller, two Docker engines: jobs spread over both within each host's capacity (also
//! across a killed controller); a host that stops answering loses its running job (naming the
//! host) while the other keeps serving, and takes jobs again once it answers; a host back in
//! time has its job reattached. The second engine is a real `dockerd` on this machine
//! ([`ci_tests::docker_engine`]).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ci_common::api::JobView;
use ci_common::JobStatus;
use ci_tests::docker_engine::DockerEngine;
use ci_tests::{
    bin, client, docker_lines, submit, wait_for, zip_dir, Controller, DbArg, Server, TestDb,
};

/// How long a job of these tests may take to end.
const JOB_WAIT: Duration = Duration::from_secs(180);

/// A project whose one test prints a line, then sleeps `secs`.
fn sleeper(dir: &Path, secs: f64) -> Vec<u8> {
    std::fs::write(
        dir.join("test_sleep.py"),
        format!(
            "import time\n\ndef test_sleeps():\n    print('sleeping', flush=True)\n    time.sleep({secs})\n"
        ),
    )
    .unwrap();
    zip_dir(dir)
}

/// A hosts file: each `(name, url, capacity)`.
fn hosts_file(dir: &Path, hosts: &[(&str, &str, usize)]) -> String {
    let text: String = hosts
        .iter()
        .map(|(name, url, capacity)| {
            format!("[[host]]\nname = \"{name}\"\nurl = \"{url}\"\ncapacity = {capacity}\n\n")
        })
        .collect();
    let path = dir.join("hosts.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn view(server: &Server, key: &str, id: &str) -> JobView {
    client()
        .get(server.at(&format!("/api/v1/jobs/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .expect("job")
        .json()
        .await
        .expect("job JSON")
}

async fn finished(server: &Server, key: &str, id: &str) -> JobView {
    wait_for(&format!("job {id} to end"), JOB_WAIT, || async {
        Some(view(server, key, id).await).filter(|v| v.status.is_terminal())
    })
    .await
}

/// A controller on the hosts of `file` that checks them every second and waits `lost_after`
/// for one that stops answering.
fn watching_hosts(db: &TestDb, file: &str, lost_after: &str) -> Controller {
    Controller::start_with(
        db,
        &[
            "--docker-hosts-file",
            file,
            "--host-check-interval",
            "1s",
            "--host-lost-after",
            lost_after,
        ],
    )
}

/// `ci-admin hosts --json`.
fn admin_hosts(db: &TestDb) -> Vec<serde_json::Value> {
    let out = Command::new(bin("ci-admin"))
        .args(db.db_args())
        .args(["hosts", "--json"])
        .output()
        .expect("ci-admin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("hosts JSON")
}

/// Containers of the controller's `prefix` running on the engine at `url` (`None`: the main
/// engine).
fn running_containers(prefix: &str, url: Option<&str>) -> usize {
    let mut args = vec![];
    if let Some(url) = url {
        args.extend(["-H", url]);
    }
    let label = format!("label=ci.prefix={prefix}");
    args.extend(["ps", "-q", "--filter", &label, "--filter", "status=running"]);
    docker_lines(&args).len()
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_jobs_spread_over_two_hosts_never_past_either_capacity() {
    let engine = DockerEngine::start();
    let work = tempfile::tempdir().unwrap();
    let file = hosts_file(
        work.path(),
        &[
            ("one", "unix:///var/run/docker.sock", 1),
            ("two", &engine.url(), 2),
        ],
    );
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let server = Server::start(&db);
    let args = [
        "--docker-hosts-file",
        &file,
        "--host-check-interval",
        "1s",
        "--max-concurrent-jobs",
        "8",
    ];
    let mut controller = Controller::start_with(&db, &args);
    let project = tempfile::tempdir().unwrap();
    let zip = sleeper(project.path(), 1.5);

    // Containers running on each host, sampled until the jobs end.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, url, prefix) = (stop.clone(), engine.url(), controller.prefix.clone());
        std::thread::spawn(move || {
            let mut most = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                most.0 = most.0.max(running_containers(&prefix, None));
                most.1 = most.1.max(running_containers(&prefix, Some(&url)));
                std::thread::sleep(Duration::from_millis(50));
            }
            most
        })
    };
    let mut ids = Vec::new();
    for _ in 0..20 {
        let job = submit(&server, &user.key, zip.clone()).await;
        ids.push(job["job_id"].as_str().unwrap().to_owned());
    }
    // Killed with jobs running on both hosts, the next controller reattaches them to their
    // hosts before it claims more: the capacities hold across the restart too.
    wait_for(
        "six jobs to end and both hosts to be busy",
        JOB_WAIT,
        || async {
            let mut ended = 0;
            for id in &ids {
                ended += usize::from(view(&server, &user.key, id).await.status.is_terminal());
            }
            let busy = running_containers(&controller.prefix, None) == 1
                && running_containers(&controller.prefix, Some(&engine.url())) == 2;
            (ended >= 6 && busy).then_some(())
        },
    )
    .await;
    controller.proc.signal("KILL");
    controller.proc.wait_exit(Duration::from_secs(10));
    let second = Controller::start_with_prefix(&db, &controller.prefix, &args);

    let mut hosts = Vec::new();
    for id in &ids {
        let job = finished(&server, &user.key, id).await;
        assert_eq!(job.status, JobStatus::Passed, "{job:?}");
        hosts.push(job.host.expect("a started job records its host"));
    }
    stop.store(true, Ordering::Relaxed);
    let (most_one, most_two) = sampler.join().unwrap();
    assert!(
        most_one <= 1 && most_two <= 2,
        "at most 1 and 2 jobs at once, saw {most_one} and {most_two}"
    );
    assert!(most_two == 2, "the host of capacity 2 ran two jobs at once");
    for name in ["one", "two"] {
        assert!(
            hosts.iter().any(|h| h == name),
            "host {name} ran none of the jobs: {hosts:?}"
        );
    }

    let listed = admin_hosts(&db);
    let summary: Vec<_> = listed
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap(),
                h["healthy"].as_bool().unwrap(),
                h["capacity"].as_i64(),
            )
        })
        .collect();
    assert_eq!(summary, [("one", true, Some(1)), ("two", true, Some(2))]);
    drop(second);
    drop(controller);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_stops_answering_loses_its_job_and_takes_jobs_again_when_it_returns() {
    let mut engine = DockerEngine::start();
    let work = tempfile::tempdir().unwrap();
    // "two" first: the first job goes there (both are empty; the earlier wins a tie).
    let file = hosts_file(
        work.path(),
        &[
            ("two", &engine.url(), 1),
            ("one", "unix:///var/run/docker.sock", 1),
        ],
    );
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let server = Server::start(&db);
    let controller = watching_hosts(&db, &file, "3s");
    let long = sleeper(tempfile::tempdir().unwrap().path(), 120.0);
    let short = sleeper(tempfile::tempdir().unwrap().path(), 0.1);

    let stranded = submit(&server, &user.key, long).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for("the long job to run on host two", JOB_WAIT, || async {
        let job = view(&server, &user.key, &stranded).await;
        (job.host.as_deref() == Some("two")
            && running_containers(&controller.prefix, Some(&engine.url())) == 1)
            .then_some(())
    })
    .await;

    engine.stop();
    let lost = finished(&server, &user.key, &stranded).await;
    assert_eq!(lost.status, JobStatus::Lost, "{lost:?}");
    let reason = lost.reason.unwrap_or_default();
    assert!(
        reason.contains("Docker host two") && reason.contains("did not answer again"),
        "{reason}"
    );
    let hosts = admin_hosts(&db);
    let two = hosts.iter().find(|h| h["name"] == "two").unwrap();
    assert_eq!(two["healthy"], false, "{two}");

    // The other host keeps serving.
    let served = submit(&server, &user.key, short.clone()).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let served = finished(&server, &user.key, &served).await;
    assert_eq!(
        (served.status, served.host.as_deref()),
        (JobStatus::Passed, Some("one"))
    );

    // Back again: the stranded job's container is removed (its job stays lost) and the host
    // takes jobs. Two jobs at once, one place on each host.
    engine.resume();
    wait_for("host two to answer again", JOB_WAIT, || async {
        let hosts = admin_hosts(&db);
        hosts
            .iter()
            .any(|h| h["name"] == "two" && h["healthy"] == true)
            .then_some(())
    })
    .await;
    wait_for(
        "the lost job's container to be removed",
        JOB_WAIT,
        || async {
            let left = engine.docker_lines(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=ci.prefix={}", controller.prefix),
            ]);
            left.is_empty().then_some(())
        },
    )
    .await;
    assert_eq!(
        view(&server, &user.key, &stranded).await.status,
        JobStatus::Lost
    );
    let pair = sleeper(tempfile::tempdir().unwrap().path(), 2.0);
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(
            submit(&server, &user.key, pair.clone()).await["job_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut hosts = Vec::new();
    for id in &ids {
        let job = finished(&server, &user.key, id).await;
        assert_eq!(job.status, JobStatus::Passed, "{job:?}");
        hosts.push(job.host.unwrap());
    }
    hosts.sort();
    assert_eq!(hosts, ["one", "two"], "both hosts take jobs again");
    drop(controller);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_answers_again_in_time_has_its_job_reattached_with_every_line_once() {
    let mut engine = DockerEngine::start();
    let work = tempfile::tempdir().unwrap();
    let file = hosts_file(work.path(), &[("two", &engine.url(), 1)]);
    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let server = Server::start(&db);
    let controller = watching_hosts(&db, &file, "120s");
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("test_count.py"),
        "import time\n\ndef test_counts():\n    for i in range(80):\n        print(f'line {i}', flush=True)\n        time.sleep(0.1)\n",
    )
    .unwrap();
    std::fs::write(
        project.path().join("pytest.ini"),
        "[pytest]\naddopts = -s\n",
    )
    .unwrap();
    let id = submit(&server, &user.key, zip_dir(project.path())).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for("the job to print", JOB_WAIT, || async {
        let job = view(&server, &user.key, &id).await;
        (job.log_lines > 10).then_some(())
    })
    .await;

    engine.stop();
    wait_for("the controller to see host two down", JOB_WAIT, || async {
        admin_hosts(&db)
            .iter()
            .any(|h| h["name"] == "two" && h["healthy"] == false)
            .then_some(())
    })
    .await;
    engine.resume();

    let job = finished(&server, &user.key, &id).await;
    assert_eq!(job.status, JobStatus::Passed, "{job:?}");
    let events = ci_tests::follow(&server, &user.key, &id).await;
    // pytest -s prints the first line after the test file's name ("test_count.py line 0").
    let counted: Vec<String> = ci_tests::log_lines(&events)
        .into_iter()
        .filter_map(|l| l.find("line ").map(|at| l[at..].to_owned()))
        .collect();
    let expected: Vec<String> = (0..80).map(|i| format!("line {i}")).collect();
    assert_eq!(counted, expected, "every line once, in order");
    drop(controller);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_host_with_tls_runs_jobs_with_the_client_certificate_and_refuses_without_it() {
    let certs = tempfile::tempdir().unwrap();
    let ca = ci_tests::tls::ca(certs.path());
    let (server_cert, server_key) =
        ci_tests::tls::signed(certs.path(), "server", ci_tests::tls::Usage::Server);
    let (client_cert, client_key) =
        ci_tests::tls::signed(certs.path(), "client", ci_tests::tls::Usage::Client);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let shown = |p: &Path| p.display().to_string();
    let _engine = DockerEngine::start_with(&[
        "--host".into(),
        tcp.clone(),
        "--tlsverify".into(),
        format!("--tlscacert={}", shown(&ca)),
        format!("--tlscert={}", shown(&server_cert)),
        format!("--tlskey={}", shown(&server_key)),
    ]);
    let work = tempfile::tempdir().unwrap();
    let with_tls = work.path().join("tls.toml");
    std::fs::write(
        &with_tls,
        format!(
            "[[host]]\nname = \"secure\"\nurl = \"{tcp}\"\ncapacity = 1\n[host.tls]\n\
             ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            shown(&ca),
            shown(&client_cert),
            shown(&client_key)
        ),
    )
    .unwrap();
    let without = work.path().join("plain.toml");
    std::fs::write(
        &without,
        format!("[[host]]\nname = \"secure\"\nurl = \"{tcp}\"\n"),
    )
    .unwrap();

    let db = TestDb::new().await;
    let user = db.user("Ada").await;
    let server = Server::start(&db);

    // Without the client certificate the engine refuses the controller, which says which host.
    let refused = Command::new(bin("ci-controller"))
        .args((&db).db_args())
        .args(["--image", &ci_tests::test_image(), "--docker-hosts-file"])
        .arg(&without)
        .output()
        .expect("ci-controller");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the Docker host secure"),
        "{stderr}"
    );

    let controller = Controller::start_with(
        &db,
        &[
            "--docker-hosts-file",
            &shown(&with_tls),
            "--host-check-interval",
            "1s",
        ],
    );
    let project = tempfile::tempdir().unwrap();
    let id = submit(&server, &user.key, sleeper(project.path(), 0.1)).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = finished(&server, &user.key, &id).await;
    assert_eq!(
        (job.status, job.host.as_deref()),
        (JobStatus::Passed, Some("secure")),
        "{job:?}"
    );
    drop(controller);
}
