//! The throwaway PostgreSQL clusters of `ci_tests::postgres`: a cluster answers sqlx, its
//! databases are separate, its settings are the ones asked for, and nothing of it is left once it
//! is dropped or its process exits. Without PostgreSQL's server these tests fail under `CI=true`
//! (scripts/test.sh installs it with scripts/ensure-postgres.sh) and are skipped, saying so,
//! elsewhere.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ci_tests::postgres::{self, Postgres, DURABLE};
use sqlx::postgres::{PgPool, PgPoolOptions};

/// Set for the child process of `the_shared_cluster_is_removed_when_its_process_exits`.
const CHILD_ENV: &str = "CI_TESTS_PG_SHARED_CHILD";

async fn connect(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

async fn show(pool: &PgPool, setting: &str) -> String {
    sqlx::query_scalar(&format!("SHOW {setting}"))
        .fetch_one(pool)
        .await
        .expect(setting)
}

/// Whether a table `name` exists in the pool's database.
async fn has_table(pool: &PgPool, name: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(pool)
        .await
        .expect("to_regclass")
}

/// Whether the process `pid` runs: it has no /proc entry once reaped, and is a zombie ("Z")
/// until then.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "<pid> (<comm>) <state> ...": the command may hold spaces and parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// The real uid of the process `pid`.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .expect("Uid: line")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_serves_separate_databases_and_leaves_nothing_behind() {
    if !postgres::available() {
        return;
    }
    let started = Instant::now();
    let pg = Postgres::start();
    eprintln!("Postgres::start() took {:?}", started.elapsed());
    let (pid, dir) = (pg.pid(), pg.dir().to_owned());
    assert!(dir.join("data/PG_VERSION").is_file());
    if uid_of(std::process::id()) == 0 {
        assert_ne!(uid_of(pid), 0, "the server runs as root");
    }

    let main = connect(&pg.url()).await;
    let (db, user): (String, String) = sqlx::query_as("SELECT current_database(), current_user")
        .fetch_one(&main)
        .await
        .expect("who am I");
    assert_eq!((db.as_str(), user.as_str()), ("ci", "postgres"));
    assert_eq!(show(&main, "fsync").await, "off");
    assert_eq!(show(&main, "synchronous_commit").await, "off");
    assert_eq!(show(&main, "full_page_writes").await, "off");
    assert_eq!(show(&main, "max_connections").await, "200");
    assert_eq!(show(&main, "server_encoding").await, "UTF8");
    assert_eq!(show(&main, "lc_collate").await, "C");
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&main)
        .await
        .expect("backend pid");

    let t = Instant::now();
    let url = pg.fresh_database("cluster_other");
    eprintln!("fresh_database took {:?}", t.elapsed());
    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{}/cluster_other", pg.port())
    );
    let other = connect(&url).await;
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&other)
            .await
            .expect("count tables");
    assert_eq!(tables, 0, "a fresh database has tables");
    sqlx::query("CREATE TABLE jobs (id bigint PRIMARY KEY, name text NOT NULL)")
        .execute(&other)
        .await
        .expect("create table");
    sqlx::query("INSERT INTO jobs VALUES (1, 'first'), (2, 'second')")
        .execute(&other)
        .await
        .expect("insert");
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM jobs ORDER BY id")
        .fetch_all(&other)
        .await
        .expect("select");
    assert_eq!(names, ["first", "second"]);
    assert!(has_table(&other, "jobs").await);
    assert!(
        !has_table(&main, "jobs").await,
        "a table of one database shows in another"
    );

    // Dropped with connections open: they are cut, and the server and its backends end.
    drop(pg);
    assert!(!running(pid), "the server (pid {pid}) still runs");
    assert!(
        !running(backend as u32),
        "the backend (pid {backend}) still runs"
    );
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_can_start_with_durable_settings() {
    if !postgres::available() {
        return;
    }
    let pg = Postgres::start_with(DURABLE);
    assert!(
        !pg.dir().starts_with("/dev/shm"),
        "a durable cluster is in memory: {}",
        pg.dir().display()
    );
    let pool = connect(&pg.url()).await;
    assert_eq!(show(&pool, "fsync").await, "on");
    assert_eq!(show(&pool, "synchronous_commit").await, "on");
    assert_eq!(show(&pool, "full_page_writes").await, "on");
    // What DURABLE does not name stays as for tests.
    assert_eq!(show(&pool, "max_connections").await, "200");
    sqlx::query("CREATE TABLE t (x int)")
        .execute(&pool)
        .await
        .expect("create table");
}

/// The shared cluster is never dropped: when its process exits, its watchdog stops it and
/// removes its folder. The process is this test binary again, running this test with
/// `CHILD_ENV` set, which makes it the child: it starts the shared cluster, uses it, prints it
/// and exits.
#[test]
fn the_shared_cluster_is_removed_when_its_process_exits() {
    if !postgres::available() {
        return;
    }
    if std::env::var(CHILD_ENV).as_deref() == Ok("1") {
        tokio::runtime::Runtime::new()
            .expect("a runtime")
            .block_on(shared_cluster_of_a_child_process());
        return;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "the_shared_cluster_is_removed_when_its_process_exits",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child failed ({})\n--- stdout:\n{stdout}\n--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("shared cluster: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("the child printed no cluster:\n{stdout}"));
    let (pid, dir) = line.split_once(' ').expect("<pid> <dir>");
    let (pid, dir): (u32, PathBuf) = (pid.parse().expect("pid"), dir.into());

    let deadline = Instant::now() + Duration::from_secs(30);
    while running(pid) || dir.exists() {
        assert!(
            Instant::now() < deadline,
            "30 s after its process exited, the shared cluster (pid {pid}, running: {}) or {} \
             (exists: {}) is still there",
            running(pid),
            dir.display(),
            dir.exists()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The child's part of `the_shared_cluster_is_removed_when_its_process_exits`.
async fn shared_cluster_of_a_child_process() {
    let pg = Postgres::shared();
    assert!(std::ptr::eq(pg, Postgres::shared()));
    let pool = connect(&pg.fresh_database("shared_child")).await;
    sqlx::query("SELECT 1").execute(&pool).await.expect("query");
    pool.close().await;
    println!("shared cluster: {} {}", pg.pid(), pg.dir().display());
}
