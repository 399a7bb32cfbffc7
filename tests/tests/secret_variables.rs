//! Secret variables as users meet them, with the real binaries and Docker: `ci secrets set`
//! (value on standard input), a task that lists the name gets it as an environment variable,
//! the log shows `[masked]` wherever the value was printed (stored log, `ci submit`'s stream,
//! `ci wait --all`), tasks that do not list it do not get it, a missing one ends the job with
//! what to do, and a team's job gets the team's value.

#[path = "support/client.rs"]
mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use ci_tests::ci_common::db::Db;
use ci_tests::ci_common::JobStatus;
use ci_tests::{bin, client, Controller, DbArg as _, Server, TestDb, TestUser};
use sha2::Digest as _;
use support::{job_id_in, run, wait_until_finished, CiEnv, Out};

const MINE: &str = "pypi-AgEIcHlwaS5vcmc-ada-only";
const OURS: &str = "pypi-team-platform-shared-9x";

struct World {
    db: TestDb,
    server: Server,
    _controller: Controller,
    env: CiEnv,
    _keys: tempfile::TempDir,
}

impl World {
    async fn start() -> Self {
        let db = TestDb::new().await;
        let keys = tempfile::tempdir().unwrap();
        let key_file = keys.path().join("secrets.key");
        std::fs::write(&key_file, "5c".repeat(32)).unwrap();
        let key_file = key_file.to_str().unwrap();
        let server = Server::start_with(&db, &["--secrets-key-file", key_file]);
        let controller = Controller::start_with(&db, &["--secrets-key-file", key_file]);
        Self {
            db,
            server,
            _controller: controller,
            env: CiEnv::new(),
            _keys: keys,
        }
    }

    fn ci(&self, user: &TestUser, dir: &Path, args: &[&str]) -> Out {
        run(self.env.ci(&self.server.url, &user.key, dir, args))
    }

    /// `ci secrets set ARGS` with `value` on standard input.
    fn set(&self, user: &TestUser, dir: &Path, args: &[&str], value: &str) -> Out {
        let mut all = vec!["secrets", "set"];
        all.extend_from_slice(args);
        let mut cmd = self.env.ci(&self.server.url, &user.key, dir, &all);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{value}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Every text the database holds about jobs and secrets.
    async fn stored(&self) -> Vec<String> {
        const STORED: &str = "SELECT secret FROM secret_variables
             UNION ALL SELECT spec FROM job_steps
             UNION ALL SELECT text FROM job_events
             UNION ALL SELECT COALESCE(reason, '') FROM jobs";
        match &self.db.pool {
            Db::Sqlite(pool) => sqlx::query_scalar(STORED).fetch_all(pool).await.unwrap(),
            Db::Postgres(pool) => sqlx::query_scalar(STORED).fetch_all(pool).await.unwrap(),
        }
    }
}

fn sha256(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A project whose `publish` task lists PYPI_TOKEN, prints it three ways and checks it against
/// `expected`'s SHA-256; `leak` does not list it; `needs-other` lists one nobody set.
fn project(expected: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let sha = sha256(expected);
    std::fs::write(
        dir.path().join("pyproject.toml"),
        format!(
            r#"[project]
name = "secretive"

[tool.ci.tasks.publish]
install = false
secrets = ["PYPI_TOKEN"]
run = [
  'echo "token is $PYPI_TOKEN"',
  'echo "twice: ${{PYPI_TOKEN}}${{PYPI_TOKEN}} and on stderr" >&2',
  'python3 -c "import os; print(\"héllo\", os.environ[\"PYPI_TOKEN\"])"',
  'test "$(printf %s "$PYPI_TOKEN" | sha256sum | cut -c1-64)" = "{sha}"',
]

[tool.ci.tasks.leak]
install = false
run = 'echo "leak: [${{PYPI_TOKEN:-unset}}]"'

[tool.ci.tasks.needs-other]
install = false
secrets = ["OTHER_TOKEN"]
run = 'echo never'
"#
        ),
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_gets_its_secrets_masked_and_a_team_job_gets_the_teams() {
    let w = World::start().await;
    let ada = w.db.user("ada").await;
    let bob = w.db.user("bob").await;
    let mine = project(MINE);
    let dir = mine.path();

    let stored = w.set(&ada, dir, &["PYPI_TOKEN"], MINE);
    assert_eq!(stored.code, Some(0), "{}", stored.stderr);
    let listed = w.ci(&ada, dir, &["secrets", "list"]).expect_code(0);
    assert!(listed.stdout.contains("PYPI_TOKEN"), "{}", listed.stdout);
    assert!(!listed.stdout.contains(MINE));
    let short = w.set(&ada, dir, &["SHORT"], "abc");
    assert_ne!(short.code, Some(0));
    assert!(short.stderr.contains("8 to 4096 bytes"), "{}", short.stderr);

    // The task gets the value (its check passes) and every place it was printed is masked.
    let out = w.ci(&ada, dir, &["submit", "publish"]).expect_code(0);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("token is [masked]"), "{all}");
    assert!(
        all.contains("twice: [masked][masked] and on stderr"),
        "{all}"
    );
    assert!(all.contains("héllo [masked]"), "{all}");
    assert!(
        all.contains("gets the secret variables PYPI_TOKEN (masked in the log)"),
        "{all}"
    );
    assert!(!all.contains(MINE), "{all}");
    let id = job_id_in(
        out.stderr
            .lines()
            .chain(out.stdout.lines())
            .find(|l| l.contains("Job ID:") || l.contains("Job submitted:"))
            .expect("the job's id"),
    );
    let again = w.ci(&ada, dir, &["wait", &id, "--all"]).expect_code(0);
    assert!(
        again.stdout.contains("token is [masked]"),
        "{}",
        again.stdout
    );
    assert!(!again.stdout.contains(MINE) && !again.stderr.contains(MINE));
    let log = client()
        .get(format!("{}/api/v1/jobs/{id}/log.txt", w.server.url))
        .bearer_auth(&ada.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        log.contains("token is [masked]") && !log.contains(MINE),
        "{log}"
    );

    // A task that does not list it does not get it.
    let out = w.ci(&ada, dir, &["submit", "leak"]).expect_code(0);
    assert!(out.stdout.contains("leak: [unset]"), "{}", out.stdout);

    // A missing secret ends the job at once, saying how to set it.
    let out = w.ci(&ada, dir, &["submit", "needs-other"]);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("ci secrets set OTHER_TOKEN"), "{all}");
    assert!(!all.contains("never"), "{all}");

    // A team's secret is the team's: set by one member, given to every member's team jobs.
    Command::new(bin("ci-admin"))
        .args((&w.db.url).db_args())
        .args(["team", "create", "platform"])
        .status()
        .unwrap();
    for user in [&ada, &bob] {
        let added = Command::new(bin("ci-admin"))
            .args((&w.db.url).db_args())
            .args(["team", "add-member", "platform", "--email", &user.email])
            .status()
            .unwrap();
        assert!(added.success());
    }
    let team_project = project(OURS);
    let stored = w.set(
        &bob,
        team_project.path(),
        &["PYPI_TOKEN", "--team", "platform"],
        OURS,
    );
    assert_eq!(stored.code, Some(0), "{}", stored.stderr);
    let out = w
        .ci(
            &ada,
            team_project.path(),
            &["submit", "--team", "platform", "publish"],
        )
        .expect_code(0);
    assert!(out.stdout.contains("token is [masked]"), "{}", out.stdout);
    assert!(!out.stdout.contains(OURS) && !out.stdout.contains(MINE));
    // Ada's own value is not the team's: her personal job of the team's project fails its check.
    let out = w.ci(&ada, team_project.path(), &["submit", "publish"]);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    let eve = w.db.user("eve").await;
    let refused = w.ci(&eve, dir, &["secrets", "list", "--team", "platform"]);
    assert_ne!(refused.code, Some(0));
    assert!(
        refused.stderr.contains("not a member"),
        "{}",
        refused.stderr
    );

    // Nothing the database holds shows a value; the stored ones are sealed.
    let stored = w.stored().await;
    assert!(stored.iter().filter(|s| s.starts_with("v1:")).count() == 2);
    assert!(
        stored
            .iter()
            .all(|s| !s.contains(MINE) && !s.contains(OURS)),
        "a value is stored in the clear"
    );
    let job = wait_until_finished(&w.server.url, &ada.key, &id).await;
    assert_eq!(job.status, JobStatus::Passed);

    // Removed, it is missing again.
    w.ci(&ada, dir, &["secrets", "remove", "PYPI_TOKEN"])
        .expect_code(0);
    let out = w.ci(&ada, dir, &["submit", "publish"]);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("ci secrets set PYPI_TOKEN"),
        "{}",
        out.stdout
    );
}
