//! The dependency cache as users see it, with the real `ci`, server, controller and Docker: a
//! job whose install input is exactly an earlier one's (same user, same requirements and wheels)
//! has no install step and gets the packages read-only; anything else installs afresh; failed
//! and duplicate installs keep nothing; the caps evict; a restart keeps the entries; `--no-cache`
//! stays out of it.
//!
//! The projects are `pytest-fixtures/cache_*`, submitted from temporary copies; they install
//! from wheels inside the project (`--no-index --find-links wheels`), so nothing needs the
//! network. Cache volumes carry `ci.cache=<prefix>`, not the `ci.prefix` label the harness
//! cleans up, so every test removes its own (see [`CacheVolumes`]).

#[path = "support/client.rs"]
mod support;

#[path = "support/projects.rs"]
mod projects;

use std::path::Path;
use std::time::Duration;

use ci_tests::ci_common::api::JobView;
use ci_tests::ci_common::db::cache::{self, CacheEntry, CacheState};
use ci_tests::ci_common::db::events;
use ci_tests::ci_common::db::steps;
use ci_tests::ci_common::step::StepCache;
use ci_tests::ci_common::{EventKind, JobId, JobStatus, StepState};
use ci_tests::{docker_lines, wait_for, Controller, Server, TestDb, TestUser};
use projects::{copy_fixture, expect_outcome, job_id, ProjectCopy};
use support::{job_view, run, wait_until_finished, CiEnv, Out, Stack};

/// How long the controller may take to remove a cache volume it gave up: the first sweep at
/// least 10 s after the entry's last use removes it, and sweeps run at the end of a job that
/// gave up an entry and every 30 s (so at most about 40 s after the job that used it ended).
const REMOVAL_WAIT: Duration = Duration::from_secs(45);

/// Removes the dependency cache volumes of a controller prefix when dropped (test cleanup).
struct CacheVolumes {
    prefix: String,
}

impl CacheVolumes {
    fn list(&self) -> Vec<String> {
        cache_volumes(&self.prefix)
    }
}

impl Drop for CacheVolumes {
    fn drop(&mut self) {
        let volumes = self.list();
        if !volumes.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&volumes)
                .output();
        }
    }
}

/// Names of the Docker volumes labelled `ci.cache=<prefix>`, sorted.
fn cache_volumes(prefix: &str) -> Vec<String> {
    let mut names = docker_lines(&[
        "volume",
        "ls",
        "--filter",
        &format!("label=ci.cache={prefix}"),
        "--format",
        "{{.Name}}",
    ]);
    names.sort();
    names
}

/// A stack (database, ada, server, controller) whose cache volumes are removed at the end.
struct World {
    // Dropped in this order: the controller stops before its cache volumes are removed.
    stack: Stack,
    volumes: CacheVolumes,
}

impl World {
    async fn start(controller_args: &[&str]) -> Self {
        let db = TestDb::new().await;
        let ada = db.user("ada").await;
        let server = Server::start(&db);
        let prefix = format!(
            "citest-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let volumes = CacheVolumes {
            prefix: prefix.clone(),
        };
        let controller = Controller::start_with_prefix(&db, &prefix, controller_args);
        Self {
            stack: Stack {
                db,
                server,
                controller,
                ada,
                env: CiEnv::new(),
            },
            volumes,
        }
    }

    fn ada(&self) -> TestUser {
        self.stack.ada.clone()
    }

    /// `ci submit [FLAGS] test` as `user` in `dir`, to completion.
    fn submit(&self, user: &TestUser, dir: &Path, flags: &[&str]) -> Job {
        let mut args = vec!["submit"];
        args.extend_from_slice(flags);
        args.push("test");
        let out = run(self
            .stack
            .env
            .ci(&self.stack.server.url, &user.key, dir, &args));
        let id = job_id(&out);
        Job { out, id }
    }

    /// `ci submit --async test` as ada in `dir`; the job's id.
    fn submit_async(&self, dir: &Path) -> String {
        let out = run(self.stack.ci(dir, &["submit", "--async", "test"])).expect_code(0);
        support::job_id_in(out.stdout.trim())
    }

    /// The job as `GET /api/v1/jobs/{id}` shows it to `user`.
    async fn view(&self, user: &TestUser, id: &str) -> JobView {
        job_view(&self.stack.server.url, &user.key, id).await
    }

    /// The names of the job's steps, from the API, in order.
    async fn step_names(&self, user: &TestUser, id: &str) -> Vec<String> {
        self.view(user, id)
            .await
            .steps
            .expect("the job view has its steps")
            .into_iter()
            .map(|s| s.name)
            .collect()
    }

    /// The cache mount of each of the job's steps, as the controller planned it (name, mount).
    async fn mounts(&self, id: &str) -> Vec<(String, Option<StepCache>)> {
        steps::list(&self.stack.db.pool, job_uuid(id))
            .await
            .expect("list steps")
            .into_iter()
            .map(|row| {
                let spec = row.spec().expect("the stored step spec");
                (row.name, spec.cache)
            })
            .collect()
    }

    /// The cache mount of the job's `test` step.
    async fn test_mount(&self, id: &str) -> StepCache {
        self.mounts(id)
            .await
            .into_iter()
            .find(|(name, _)| name == "test")
            .and_then(|(_, mount)| mount)
            .unwrap_or_else(|| panic!("the test step of job {id} mounts no cache volume"))
    }

    /// Every cache entry of `user`, most recently used first.
    async fn entries(&self, user: &TestUser) -> Vec<CacheEntry> {
        cache::list(&self.stack.db.pool, Some(user.id))
            .await
            .expect("list cache entries")
    }

    /// The notices of a job's log, in order (from the database: for jobs followed with
    /// `--async`).
    async fn notices(&self, id: &str) -> Vec<String> {
        events::list_after(&self.stack.db.pool, job_uuid(id), 0, 1_000_000)
            .await
            .expect("events")
            .into_iter()
            .filter(|e| e.kind == EventKind::Notice)
            .map(|e| e.text)
            .collect()
    }

    fn cache_volumes(&self) -> Vec<String> {
        self.volumes.list()
    }
}

fn job_uuid(id: &str) -> JobId {
    id.parse().expect("a job id")
}

/// A finished `ci submit` and its job's id.
struct Job {
    out: Out,
    id: String,
}

impl Job {
    /// The `[ci] ...` notice on stderr that starts with `start`.
    fn notice(&self, start: &str) -> Option<&str> {
        self.out
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("[ci] ").filter(|n| n.starts_with(start)))
    }

    fn says(&self, start: &str) -> bool {
        self.notice(start).is_some()
    }

    /// The short key of a `dependency cache miss` notice; fails unless the job says it missed
    /// (and nothing about a hit).
    fn missed(&self, what: &str) -> String {
        assert!(
            !self.says("dependency cache hit"),
            "{what}: expected a cache miss, got a hit\n--- stderr:\n{}",
            self.out.stderr
        );
        let notice = self
            .notice("dependency cache miss (key ")
            .unwrap_or_else(|| {
                panic!(
                    "{what}: no `[ci] dependency cache miss` notice\n--- stderr:\n{}",
                    self.out.stderr
                )
            });
        key_in(notice)
    }

    /// The short key of a `dependency cache hit` notice; fails unless the job says it hit (and
    /// nothing about a miss or an install).
    fn hit(&self, what: &str) -> String {
        assert!(
            !self.says("dependency cache miss") && !self.says("installing"),
            "{what}: expected a cache hit, the job installed\n--- stderr:\n{}",
            self.out.stderr
        );
        let notice = self
            .notice("dependency cache hit (key ")
            .unwrap_or_else(|| {
                panic!(
                    "{what}: no `[ci] dependency cache hit` notice\n--- stderr:\n{}",
                    self.out.stderr
                )
            });
        key_in(notice)
    }

    /// The short key of the `dependency cache: kept the installed packages` notice.
    fn kept(&self, what: &str) -> String {
        let notice = self
            .notice("dependency cache: kept the installed packages")
            .unwrap_or_else(|| {
                panic!(
                    "{what}: no `[ci] dependency cache: kept the installed packages` notice\n\
                     --- stderr:\n{}",
                    self.out.stderr
                )
            });
        key_in(notice)
    }
}

/// The 12 hex digits after `key ` in a notice.
fn key_in(notice: &str) -> String {
    let at = notice
        .find("key ")
        .unwrap_or_else(|| panic!("no key in {notice:?}"));
    let key: String = notice[at + 4..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(key.len(), 12, "a short key is 12 hex digits: {notice:?}");
    key
}

/// `(state, volume)` of each entry, for messages and comparisons.
fn states(entries: &[CacheEntry]) -> Vec<(CacheState, String)> {
    entries
        .iter()
        .map(|e| (e.state, e.volume.clone()))
        .collect()
}

/// Waits until the controller has removed every cache volume but `keep` (and forgotten their
/// entries).
async fn wait_until_only(w: &World, user: &TestUser, keep: &[&str]) {
    let mut expected: Vec<String> = keep.iter().map(|v| (*v).to_owned()).collect();
    expected.sort();
    wait_for(
        &format!("the cache volumes to be {expected:?} (the others removed)"),
        REMOVAL_WAIT,
        || async {
            let volumes = w.cache_volumes();
            let mut known: Vec<String> = w
                .entries(user)
                .await
                .into_iter()
                .map(|e| e.volume)
                .collect();
            known.sort();
            (volumes == expected && known == expected).then_some(())
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------

/// 1 and 4: the second job of a user with the same requirements has no install step, uses the
/// installed packages (module and console script), and cannot change them.
#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_install_is_skipped_and_its_packages_cannot_be_changed_by_tests() {
    let w = World::start(&[]).await;
    let ada = w.ada();
    let project = copy_fixture("cache_greetkit");

    let first = w.submit(&ada, &project.path, &[]);
    expect_outcome("first job", &first.out, 0, "4 passed");
    let key = first.missed("first job");
    assert_eq!(first.kept("first job"), key);
    let said = |start: &str| {
        first
            .out
            .stderr
            .find(&format!("[ci] {start}"))
            .unwrap_or_else(|| panic!("no `[ci] {start}` in:\n{}", first.out.stderr))
    };
    assert!(
        said("dependency cache miss") < said("installing")
            && said("installing") < said("dependency cache: kept")
            && said("dependency cache: kept") < said("running tests"),
        "miss, install, kept, then the tests:\n{}",
        first.out.stderr
    );
    assert_eq!(w.step_names(&ada, &first.id).await, ["install", "test"]);
    let entries = w.entries(&ada).await;
    assert_eq!(entries.len(), 1, "{:?}", states(&entries));
    let entry = &entries[0];
    assert_eq!(entry.state, CacheState::Ready);
    assert!(entry.key.starts_with(&key), "{} vs {key}", entry.key);
    assert!(
        entry
            .volume
            .starts_with(&format!("{}-deps-", w.volumes.prefix)),
        "{}",
        entry.volume
    );
    assert_eq!(w.cache_volumes(), std::slice::from_ref(&entry.volume));

    // The same project again: no install step, the packages are there.
    let second = w.submit(&ada, &project.path, &[]);
    expect_outcome("second job", &second.out, 0, "4 passed");
    assert_eq!(second.hit("second job"), key);
    for test in [
        "test_the_package_comes_from_the_user_install PASSED",
        "test_the_console_script_runs_by_name PASSED",
    ] {
        assert!(
            second.out.stdout.contains(test),
            "second job: {test:?} missing from the log:\n{}",
            second.out.stdout
        );
    }
    assert_eq!(
        w.step_names(&ada, &second.id).await,
        ["test"],
        "a hit has no install step"
    );
    let status = run(w.stack.ci(&project.path, &["status", &second.id])).expect_code(0);
    let step_lines: Vec<&str> = status
        .stdout
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(". "))
        .collect();
    assert!(
        step_lines.len() == 1 && step_lines[0].trim_start().starts_with("1. test: passed"),
        "`ci status` shows one step, the tests:\n{}",
        status.stdout
    );
    let mount = w.test_mount(&second.id).await;
    assert_eq!(
        (mount.volume.as_str(), mount.write),
        (entry.volume.as_str(), false),
        "the tests mount the entry read-only"
    );

    // Tests that try to change the install fail, each with a read-only file system; the
    // project's requirements and wheels are byte for byte cache_greetkit's, so it is a hit.
    let attacker = copy_fixture("cache_readonly");
    for file in ["requirements.txt", "wheels/greetkit-0.3.0-py3-none-any.whl"] {
        assert_eq!(
            std::fs::read(project.path.join(file)).unwrap(),
            std::fs::read(attacker.path.join(file)).unwrap(),
            "fixtures: cache_readonly/{file} must be cache_greetkit's"
        );
    }
    let attack = w.submit(&ada, &attacker.path, &[]);
    assert_eq!(attack.hit("job whose tests write into the install"), key);
    expect_outcome(
        "job whose tests write into the install",
        &attack.out,
        1,
        "3 failed",
    );
    assert_eq!(w.view(&ada, &attack.id).await.status, JobStatus::Failed);
    let tests = run(w.stack.ci(&attacker.path, &["tests", &attack.id, "--json"])).expect_code(0);
    let tests: serde_json::Value = serde_json::from_str(&tests.stdout).expect("tests JSON");
    let tests = tests["tests"].as_array().expect("tests");
    assert_eq!(tests.len(), 3, "{tests:#?}");
    for test in tests {
        assert!(
            test["outcome"] == "failed"
                && test["longrepr"]
                    .as_str()
                    .is_some_and(|r| r.contains("[Errno 30] Read-only file system")),
            "every write into the installed packages fails as read-only: {test:#}"
        );
    }

    // Nothing was changed: the next job finds the install as the wheel made it.
    let third = w.submit(&ada, &project.path, &[]);
    assert_eq!(third.hit("job after the writes"), key);
    expect_outcome("job after the writes", &third.out, 0, "4 passed");
    let entries = w.entries(&ada).await;
    assert_eq!(
        states(&entries),
        [(CacheState::Ready, entry.volume.clone())]
    );
    assert_eq!(entries[0].hits, 3);
}

/// 2: another wheel in the wheels folder (requirements unchanged) and another pin each install
/// afresh, and the tests get what was asked for, not what an earlier job installed.
#[tokio::test(flavor = "multi_thread")]
async fn changed_requirements_or_wheels_install_afresh() {
    let w = World::start(&[]).await;
    let ada = w.ada();
    let project = copy_fixture("cache_versions");
    let expect_version = |project: &ProjectCopy, version: &str| {
        std::fs::write(
            project.path.join("expected_version.txt"),
            format!("{version}\n"),
        )
        .unwrap();
    };

    let first = w.submit(&ada, &project.path, &[]);
    expect_outcome("greetkit 0.3.0", &first.out, 0, "2 passed");
    let key_first = first.missed("greetkit 0.3.0");

    // The same requirements.txt, and a newer wheel beside the old one.
    std::fs::rename(
        project.path.join("newer/greetkit-0.4.0-py3-none-any.whl"),
        project.path.join("wheels/greetkit-0.4.0-py3-none-any.whl"),
    )
    .unwrap();
    expect_version(&project, "0.4.0");
    let newer = w.submit(&ada, &project.path, &[]);
    let key_newer = newer.missed("a newer wheel in wheels/");
    expect_outcome(
        "a newer wheel in wheels/ (pip takes 0.4.0)",
        &newer.out,
        0,
        "2 passed",
    );
    assert_ne!(key_newer, key_first);
    assert_eq!(w.step_names(&ada, &newer.id).await, ["install", "test"]);

    // A pin back to the old version.
    let requirements = project.path.join("requirements.txt");
    let text = std::fs::read_to_string(&requirements).unwrap();
    std::fs::write(
        &requirements,
        text.replace("\ngreetkit\n", "\ngreetkit==0.3.0\n"),
    )
    .unwrap();
    expect_version(&project, "0.3.0");
    let pinned = w.submit(&ada, &project.path, &[]);
    let key_pinned = pinned.missed("greetkit pinned to 0.3.0");
    expect_outcome("greetkit pinned to 0.3.0", &pinned.out, 0, "2 passed");
    assert!(key_pinned != key_first && key_pinned != key_newer);

    let entries = w.entries(&ada).await;
    assert_eq!(entries.len(), 3, "{:?}", states(&entries));
    assert!(entries.iter().all(|e| e.state == CacheState::Ready));
}

/// 3: another user with byte-identical requirements gets an entry of their own.
#[tokio::test(flavor = "multi_thread")]
async fn users_do_not_share_cache_entries() {
    let w = World::start(&[]).await;
    let ada = w.ada();
    let bob = w.stack.db.user("bob").await;
    let project = copy_fixture("cache_greetkit");

    let theirs = w.submit(&ada, &project.path, &[]);
    expect_outcome("ada's job", &theirs.out, 0, "4 passed");
    let key = theirs.missed("ada's job");
    theirs.kept("ada's job");

    let mine = w.submit(&bob, &project.path, &[]);
    expect_outcome("bob's job", &mine.out, 0, "4 passed");
    assert_eq!(
        mine.missed("bob's job, same project as ada's"),
        key,
        "same input, same key"
    );
    mine.kept("bob's job");
    assert_eq!(w.step_names(&bob, &mine.id).await, ["install", "test"]);

    let ada_volume = w.test_mount(&theirs.id).await.volume;
    let bob_volume = w.test_mount(&mine.id).await.volume;
    assert_ne!(
        ada_volume, bob_volume,
        "bob's tests mount a volume of ada's"
    );
    let ada_entries = w.entries(&ada).await;
    let bob_entries = w.entries(&bob).await;
    assert_eq!(
        states(&ada_entries),
        [(CacheState::Ready, ada_volume.clone())]
    );
    assert_eq!(
        states(&bob_entries),
        [(CacheState::Ready, bob_volume.clone())]
    );
    assert_eq!(ada_entries[0].key, bob_entries[0].key);
    let mut both = vec![ada_volume, bob_volume];
    both.sort();
    assert_eq!(w.cache_volumes(), both);
}

/// 5: an install that fails keeps nothing: no entry is published, the next job misses again,
/// and the volumes go.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_install_publishes_nothing() {
    let w = World::start(&[]).await;
    let ada = w.ada();
    let project = copy_fixture("cache_missing_wheel");

    let mut volumes = Vec::new();
    for attempt in ["first", "second"] {
        let what = format!("{attempt} job with a missing wheel");
        let job = w.submit(&ada, &project.path, &[]);
        assert_eq!(job.out.code, Some(1), "{what}: exit 1\n{}", job.out.stderr);
        job.missed(&what);
        assert!(
            !job.says("dependency cache: kept"),
            "{what}: a failed install is not kept\n{}",
            job.out.stderr
        );
        assert!(
            job.out
                .stdout
                .contains("No matching distribution found for tinyplot==2.0"),
            "{what}: pip's error in the log\n{}",
            job.out.stdout
        );
        let view = w.view(&ada, &job.id).await;
        assert_eq!(view.status, JobStatus::Error, "{what}: {:?}", view.reason);
        let steps = view.steps.expect("steps");
        assert_eq!(steps[0].name, "install");
        assert_eq!(steps[0].state, StepState::Failed, "{what}: {steps:?}");
        let entries = w.entries(&ada).await;
        assert!(
            entries.iter().all(|e| e.state != CacheState::Ready),
            "{what}: nothing is published: {:?}",
            states(&entries)
        );
        let (_, mount) = w
            .mounts(&job.id)
            .await
            .into_iter()
            .find(|(name, _)| name == "install")
            .expect("an install step");
        let mount = mount.expect("the install step fills a cache volume");
        assert!(mount.write);
        volumes.push(mount.volume);
    }
    assert_ne!(volumes[0], volumes[1]);
    wait_until_only(&w, &ada, &[]).await;
}

/// 6: two jobs of one user with the same key at once both install and pass; one entry is kept,
/// the other volume goes, and the next job uses the one kept.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_installs_of_one_key_keep_one_entry() {
    let w = World::start(&["--max-concurrent-jobs", "2"]).await;
    let ada = w.ada();
    let project = copy_fixture("cache_greetkit");

    let ids = [w.submit_async(&project.path), w.submit_async(&project.path)];
    let mut kept = 0;
    for id in &ids {
        let job = wait_until_finished(&w.stack.server.url, &ada.key, id).await;
        assert_eq!(job.status, JobStatus::Passed, "job {id}: {:?}", job.reason);
        let notices = w.notices(id).await;
        assert!(
            notices
                .iter()
                .any(|n| n.starts_with("dependency cache miss (key ")),
            "both jobs miss (they ran at once): job {id} said {notices:#?}"
        );
        kept += notices
            .iter()
            .filter(|n| n.starts_with("dependency cache: kept"))
            .count();
    }
    assert_eq!(kept, 1, "exactly one job keeps its install");
    let entries = w.entries(&ada).await;
    let ready: Vec<&CacheEntry> = entries
        .iter()
        .filter(|e| e.state == CacheState::Ready)
        .collect();
    assert_eq!(ready.len(), 1, "{:?}", states(&entries));
    let volume = ready[0].volume.clone();
    wait_until_only(&w, &ada, &[&volume]).await;

    let next = w.submit(&ada, &project.path, &[]);
    next.hit("the job after the race");
    expect_outcome("the job after the race", &next.out, 0, "4 passed");
    assert_eq!(w.test_mount(&next.id).await.volume, volume);
}

/// 7: past the per-user cap, the least recently used entry is evicted and its volume removed,
/// so the project that installed it installs again.
#[tokio::test(flavor = "multi_thread")]
async fn the_per_user_cap_evicts_the_least_recently_used_entry() {
    // Each install is a little over 1 MiB (pytest-fixtures/cache_evict/README.md): one fits
    // under the cap, two do not.
    let w = World::start(&["--cache-max-bytes-per-user", "1.5m"]).await;
    let ada = w.ada();
    let cap: i64 = 3 << 19;
    let projects = copy_fixture("cache_evict");
    let (first_dir, second_dir) = (projects.path.join("first"), projects.path.join("second"));

    let one = w.submit(&ada, &first_dir, &[]);
    expect_outcome("first project", &one.out, 0, "1 passed");
    one.kept("first project");
    let entries = w.entries(&ada).await;
    assert_eq!(entries.len(), 1, "{:?}", states(&entries));
    let first_volume = entries[0].volume.clone();
    assert!(
        (1 << 20..=cap).contains(&entries[0].size_bytes),
        "fixtures: an install of cache_evict should take between 1 MiB and the cap, not {} bytes",
        entries[0].size_bytes
    );

    let two = w.submit(&ada, &second_dir, &[]);
    expect_outcome("second project", &two.out, 0, "1 passed");
    two.kept("second project");
    let second_volume = w.test_mount(&two.id).await.volume;
    // What the cache holds as soon as the job that went past the cap has ended (checked last,
    // so that the eventual eviction is checked too).
    let at_the_end = w.entries(&ada).await;

    // The first project's entry is evicted and its volume removed; the cap holds.
    wait_until_only(&w, &ada, &[&second_volume]).await;
    let entries = w.entries(&ada).await;
    assert_eq!(
        states(&entries),
        [(CacheState::Ready, second_volume.clone())]
    );
    assert!(
        entries[0].size_bytes <= cap,
        "{} bytes kept, more than the cap {cap}",
        entries[0].size_bytes
    );
    let again = w.submit(&ada, &first_dir, &[]);
    again.missed("first project after its entry was evicted");
    expect_outcome("first project again", &again.out, 0, "1 passed");

    // The job that published the second entry brought the cache within its bounds before it
    // ended: the first entry was no longer served by then.
    let ready: Vec<String> = at_the_end
        .iter()
        .filter(|e| e.state == CacheState::Ready)
        .map(|e| e.volume.clone())
        .collect();
    assert_eq!(
        ready,
        [second_volume],
        "when the second project's job ended, the first project's entry ({first_volume}) should \
         have been evicted already (the job that filled an entry sweeps the cache): {:?}",
        states(&at_the_end)
    );
}

/// 8: the entries survive a controller restart: the next controller's job hits.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_controller_keeps_the_entries() {
    let mut w = World::start(&[]).await;
    let ada = w.ada();
    let project = copy_fixture("cache_greetkit");

    let before = w.submit(&ada, &project.path, &[]);
    expect_outcome("before the restart", &before.out, 0, "4 passed");
    let key = before.kept("before the restart");
    let volume = w.test_mount(&before.id).await.volume;

    let stack = &mut w.stack;
    stack.controller.proc.signal("TERM");
    stack.controller.proc.wait_exit(Duration::from_secs(30));
    let prefix = stack.controller.prefix.clone();
    // The old one's cleanup runs when it is dropped, before the new one has any job; the
    // caches stay, as they do when an operator restarts a controller.
    let mut old = std::mem::replace(
        &mut stack.controller,
        Controller::start_with_prefix(&stack.db, &prefix, &[]),
    );
    old.keep_caches();
    drop(old);
    assert_eq!(w.cache_volumes(), std::slice::from_ref(&volume));

    let after = w.submit(&ada, &project.path, &[]);
    assert_eq!(after.hit("after the restart"), key);
    expect_outcome("after the restart", &after.out, 0, "4 passed");
    assert_eq!(w.test_mount(&after.id).await.volume, volume);
}

/// 9: `ci submit --no-cache` installs, and neither uses nor fills the cache.
#[tokio::test(flavor = "multi_thread")]
async fn no_cache_installs_without_using_or_filling_the_cache() {
    let w = World::start(&[]).await;
    let ada = w.ada();
    let project = copy_fixture("cache_greetkit");

    let cached = w.submit(&ada, &project.path, &[]);
    expect_outcome("with the cache", &cached.out, 0, "4 passed");
    cached.kept("with the cache");
    let before = w.entries(&ada).await;

    let fresh = w.submit(&ada, &project.path, &["--no-cache"]);
    expect_outcome("--no-cache", &fresh.out, 0, "4 passed");
    assert!(
        fresh.says("dependency cache: not used (--no-cache)")
            && !fresh.says("dependency cache hit")
            && !fresh.says("dependency cache miss")
            && !fresh.says("dependency cache: kept"),
        "--no-cache says it does not use the cache, and nothing else about it\n{}",
        fresh.out.stderr
    );
    assert_eq!(w.step_names(&ada, &fresh.id).await, ["install", "test"]);
    let mounts = w.mounts(&fresh.id).await;
    assert!(
        mounts.iter().all(|(_, mount)| mount.is_none()),
        "no step of a --no-cache job mounts a cache volume: {mounts:?}"
    );
    assert_eq!(
        w.entries(&ada).await,
        before,
        "the cache is unchanged (not even a hit counted)"
    );
    assert_eq!(w.cache_volumes(), [before[0].volume.clone()]);
}

/// A team's jobs share the team's cache: one member's team job reuses what another member's
/// team job installed, while a personal job of the same requirements installs afresh (team
/// entries are never served to personal jobs).
#[tokio::test(flavor = "multi_thread")]
async fn a_teams_jobs_share_its_cache_and_personal_jobs_do_not() {
    use ci_tests::ci_common::db::teams;
    let w = World::start(&[]).await;
    let ada = w.ada();
    let bob = w.stack.db.user("bob").await;
    let team = teams::create(&w.stack.db.pool, "platform").await.unwrap();
    for user in [&ada, &bob] {
        teams::add_member(&w.stack.db.pool, team.id, user.id)
            .await
            .unwrap();
    }
    let project = copy_fixture("cache_greetkit");

    let first = w.submit(&ada, &project.path, &["--team", "platform"]);
    expect_outcome("ada's team job", &first.out, 0, "4 passed");
    let key = first.missed("ada's team job");
    assert_eq!(first.kept("ada's team job"), key);

    let second = w.submit(&bob, &project.path, &["--team", "platform"]);
    expect_outcome("bob's team job", &second.out, 0, "4 passed");
    assert_eq!(second.hit("bob's team job"), key);
    assert!(
        second
            .out
            .stderr
            .contains("an earlier job of your team installed"),
        "{}",
        second.out.stderr
    );

    let personal = w.submit(&bob, &project.path, &[]);
    expect_outcome("bob's own job", &personal.out, 0, "4 passed");
    assert_eq!(personal.missed("bob's own job"), key);
}
