//! `ci-admin cache list` and `ci-admin cache prune` as users run them: the real binary against a
//! real SQLite file whose cache entries are written through `ci_common::db::cache`, as the
//! controller writes them (no Docker needed: only the database is read and changed).

#[path = "support/admin.rs"]
mod admin_support;

use admin_support::{text, Admin};
use chrono::{DateTime, Duration, Utc};
use ci_common::db::cache::{self, CacheEntry};
use ci_common::db::{self, users, SqlitePool};
use ci_common::testing::claimed_job_with_steps;
use ci_common::{JobId, UserId};
use sha2::{Digest, Sha256};

impl Admin {
    /// `cache list --json` (with extra arguments): the entries' `(volume, state)`.
    fn states(&self, args: &[&str]) -> Vec<(String, String)> {
        let mut all = vec!["cache", "list", "--json"];
        all.extend_from_slice(args);
        let json: serde_json::Value = serde_json::from_str(&self.ok(&all)).unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["volume"].as_str().unwrap().to_owned(),
                    e["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// `cache prune --json` (with extra arguments): how many entries it marked.
    fn prune(&self, args: &[&str]) -> u64 {
        let mut all = vec!["cache", "prune", "--json"];
        all.extend_from_slice(args);
        let json: serde_json::Value = serde_json::from_str(&self.ok(&all)).unwrap();
        json["marked"].as_u64().expect("{\"marked\": n}")
    }
}

/// The database of `admin` with Ada and Bob, and a job claimed under a controller's lease (its
/// epoch): what the cache functions need to write entries as the controller does.
struct Seeded {
    pool: SqlitePool,
    ada: UserId,
    bob: UserId,
    job: JobId,
    epoch: i64,
}

impl Seeded {
    async fn new(admin: &Admin) -> Self {
        let pool = db::connect(&admin.db(), 1).await.unwrap();
        let ada = users::create(&pool, "Ada", "ada@example.com")
            .await
            .unwrap()
            .id;
        let bob = users::create(&pool, "Bob", "bob@example.com")
            .await
            .unwrap()
            .id;
        let (job, epoch) = claimed_job_with_steps(&pool).await;
        Self {
            pool,
            ada,
            bob,
            job: job.id,
            epoch,
        }
    }

    /// Starts an entry of `user` in `volume`, keyed on `input`, as a job's install step does.
    async fn building(&self, user: UserId, input: &str, volume: &str) -> CacheEntry {
        let key = format!("{:x}", Sha256::digest(input));
        cache::begin(
            &self.pool,
            self.epoch,
            "local",
            user.into(),
            &key,
            self.job,
            volume,
        )
        .await
        .unwrap()
    }

    /// A published entry, as after an install step that passed.
    async fn ready(&self, user: UserId, input: &str, volume: &str, size: u64) -> CacheEntry {
        let entry = self.building(user, input, volume).await;
        let published = cache::publish(&self.pool, self.epoch, volume, size)
            .await
            .unwrap();
        assert_eq!(published, cache::Published::Ready);
        entry
    }

    /// Sets when an entry was last used. The cache functions stamp "now"; a test of eviction by
    /// age needs entries used long ago, so this one write is by hand.
    async fn last_used(&self, volume: &str, at: DateTime<Utc>) {
        let done = sqlx::query("UPDATE cache_entries SET last_used_at = ? WHERE volume = ?")
            .bind(at)
            .bind(volume)
            .execute(&self.pool)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1, "{volume}");
    }

    /// Closes the pool, so that only `ci-admin` has the database open from here on.
    async fn close(self) {
        self.pool.close().await;
    }
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    rfc3339.parse().unwrap()
}

#[test]
fn an_empty_cache_says_so() {
    let admin = Admin::new();
    assert_eq!(admin.ok(&["cache", "list"]), "No cache entries found.\n");
    assert_eq!(admin.ok(&["cache", "list", "--json"]).trim(), "[]");
    assert_eq!(
        admin.ok(&["cache", "prune"]),
        "No ready cache entries matched: nothing marked for removal.\n"
    );
    assert_eq!(admin.prune(&[]), 0);
}

#[tokio::test]
async fn list_shows_every_entry_most_recently_used_first_with_the_ready_total() {
    let admin = Admin::new();
    let seed = Seeded::new(&admin).await;
    seed.ready(seed.ada, "numpy==2.1.0", "ci-cache-ada-numpy", 48_234_496)
        .await;
    let pandas = seed
        .ready(seed.ada, "pandas==2.2.3", "ci-cache-ada-pandas", 1536)
        .await;
    cache::hit(&seed.pool, seed.epoch, &pandas.id)
        .await
        .unwrap();
    cache::hit(&seed.pool, seed.epoch, &pandas.id)
        .await
        .unwrap();
    seed.ready(seed.bob, "requests==2.32.3", "ci-cache-bob-requests", 2048)
        .await;
    seed.building(seed.bob, "flask==3.1.0", "ci-cache-bob-flask")
        .await;
    seed.ready(seed.bob, "old==1.0", "ci-cache-bob-old", 4096)
        .await;
    assert_eq!(
        cache::prune(&seed.pool, Some(seed.bob), None)
            .await
            .unwrap(),
        2,
        "Bob's two ready entries"
    );
    seed.ready(
        seed.bob,
        "requests==2.32.3",
        "ci-cache-bob-requests-2",
        2048,
    )
    .await;
    for (volume, time) in [
        ("ci-cache-ada-numpy", "2026-11-20T08:00:00Z"),
        ("ci-cache-ada-pandas", "2026-11-30T09:15:00Z"),
        ("ci-cache-bob-requests", "2026-11-01T12:00:00Z"),
        ("ci-cache-bob-flask", "2026-11-30T10:00:00Z"),
        ("ci-cache-bob-old", "2026-10-01T12:00:00Z"),
        ("ci-cache-bob-requests-2", "2026-11-29T18:30:00Z"),
    ] {
        seed.last_used(volume, at(time)).await;
    }
    let ada = seed.ada.to_string();
    seed.close().await;

    insta::assert_snapshot!(admin.ok(&["cache", "list"]), @r"
    USER             KEY           STATE     SIZE      HITS  LAST USED            VOLUME
    bob@example.com  8ef593591946  Building  -         0     2026-11-30 10:00:00  ci-cache-bob-flask
    ada@example.com  8590757f2df6  Ready     1.5 KiB   2     2026-11-30 09:15:00  ci-cache-ada-pandas
    bob@example.com  426739742007  Ready     2.0 KiB   0     2026-11-29 18:30:00  ci-cache-bob-requests-2
    ada@example.com  a0837d848729  Ready     46.0 MiB  0     2026-11-20 08:00:00  ci-cache-ada-numpy
    bob@example.com  426739742007  Removing  2.0 KiB   0     2026-11-01 12:00:00  ci-cache-bob-requests
    bob@example.com  5c91b6121d9d  Removing  4.0 KiB   0     2026-10-01 12:00:00  ci-cache-bob-old
    Total: 6 cache entries; 3 ready, 46.0 MiB
    ");
    let adas = admin.ok(&["cache", "list", "--user", "ada@example.com"]);
    assert_eq!(
        adas.lines().count(),
        4,
        "header, Ada's two entries, total:\n{adas}"
    );
    assert!(
        adas.ends_with("Total: 2 cache entries; 2 ready, 46.0 MiB\n"),
        "{adas}"
    );

    // The JSON is the stored entry plus its owner's email; the key is whole.
    let json: serde_json::Value =
        serde_json::from_str(&admin.ok(&["cache", "list", "--json", "--user-id", &ada])).unwrap();
    let first = &json.as_array().unwrap()[0];
    let mut redacted = first.clone();
    for field in ["id", "user_id", "job_id", "created_at"] {
        assert!(!first[field].is_null(), "{field}: {first}");
        redacted[field] = serde_json::Value::from(format!("[{field}]"));
    }
    insta::assert_json_snapshot!(redacted, @r#"
    {
      "created_at": "[created_at]",
      "hits": 2,
      "host": "local",
      "id": "[id]",
      "job_id": "[job_id]",
      "key": "8590757f2df60ffe8568afd4ea9bf97e5f82b9dd27208b55a3ae79718f0a37c5",
      "last_used_at": "2026-11-30T09:15:00Z",
      "size_bytes": 1536,
      "state": "ready",
      "team_id": null,
      "user_email": "ada@example.com",
      "user_id": "[user_id]",
      "volume": "ci-cache-ada-pandas"
    }
    "#);
}

#[tokio::test]
async fn prune_marks_only_the_users_entries_and_spares_recently_used_ones() {
    let admin = Admin::new();
    let seed = Seeded::new(&admin).await;
    let (ada, bob) = (seed.ada, seed.bob);
    seed.ready(ada, "a-old", "ada-old", 100).await;
    seed.ready(ada, "a-new", "ada-new", 100).await;
    seed.ready(bob, "b-old", "bob-old", 100).await;
    seed.ready(bob, "b-new", "bob-new", 100).await;
    seed.building(bob, "b-building", "bob-building").await;
    let ten_days_ago = Utc::now() - Duration::days(10);
    seed.last_used("ada-old", ten_days_ago).await;
    seed.last_used("bob-old", ten_days_ago).await;
    // Used 6 days ago: not unused for longer than 7 days, but for longer than 12 hours.
    seed.last_used("ada-new", Utc::now() - Duration::days(6))
        .await;
    seed.close().await;
    let state_of = |volume: &str| {
        admin
            .states(&[])
            .into_iter()
            .find(|(v, _)| v == volume)
            .unwrap_or_else(|| panic!("{volume} is listed"))
            .1
    };

    // One user's entries unused for a week: Bob's old one stays, as do Ada's recent one.
    let out = admin.ok(&[
        "cache",
        "prune",
        "--user",
        "ada@example.com",
        "--unused-for",
        "7d",
    ]);
    insta::assert_snapshot!(out, @"✓ Marked 1 cache entry for removal; the controller removes their volumes within 30 s (once no running job uses them).");
    assert_eq!(state_of("ada-old"), "removing");
    assert_eq!(state_of("ada-new"), "ready");
    assert_eq!(state_of("bob-old"), "ready", "another user's entry");

    // Everyone's entries unused for a week: Bob's old one.
    assert_eq!(admin.prune(&["--unused-for", "7d"]), 1);
    assert_eq!(state_of("bob-old"), "removing");
    assert_eq!(state_of("bob-new"), "ready");
    assert_eq!(state_of("ada-new"), "ready");
    // Hours and minutes work too: Ada's entry used 6 days ago, not Bob's used just now.
    assert_eq!(admin.prune(&["--unused-for", "12h"]), 1);
    assert_eq!(state_of("ada-new"), "removing");
    assert_eq!(admin.prune(&["--unused-for", "30m"]), 0);
    assert_eq!(state_of("bob-new"), "ready");

    // All of one user's (by ID), then nothing is left to mark; a building entry is not touched.
    let out = admin.ok(&["cache", "prune", "--user-id", &bob.to_string()]);
    assert!(
        out.starts_with("✓ Marked 1 cache entry for removal"),
        "{out}"
    );
    assert_eq!(state_of("bob-new"), "removing");
    assert_eq!(admin.prune(&[]), 0);
    assert_eq!(state_of("bob-building"), "building");
    let bobs: Vec<String> = admin
        .states(&["--user", "bob@example.com"])
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    assert_eq!(bobs.len(), 3, "{bobs:?}");
    assert!(bobs.iter().all(|v| v.starts_with("bob-")), "{bobs:?}");
}

#[tokio::test]
async fn prune_without_filters_marks_every_ready_entry() {
    let admin = Admin::new();
    let seed = Seeded::new(&admin).await;
    for (user, name) in [(seed.ada, "a1"), (seed.ada, "a2"), (seed.bob, "b1")] {
        seed.ready(user, name, name, 1).await;
    }
    seed.close().await;
    assert_eq!(
        admin.ok(&["cache", "prune"]),
        "✓ Marked 3 cache entries for removal; the controller removes their volumes within 30 s \
         (once no running job uses them).\n"
    );
    assert!(admin
        .states(&[])
        .iter()
        .all(|(_, state)| state == "removing"));
    assert!(admin
        .ok(&["cache", "list"])
        .ends_with("Total: 3 cache entries; 0 ready, 0 B\n"));
}

#[test]
fn an_unknown_user_is_not_found_and_says_what_to_do() {
    let admin = Admin::new();
    let unknown = "6f1c2b9e-0000-4000-8000-000000000000";
    let err = admin.fails(&["cache", "list", "--user", "nobody@example.com"]);
    insta::assert_snapshot!(err, @r#"error: user not found with email: "nobody@example.com" (see `ci-admin user list`, or create one with `ci-admin user create`)"#);
    let err = admin.fails(&["cache", "prune", "--user-id", unknown]);
    insta::assert_snapshot!(err, @r#"error: user not found: no user with the ID "6f1c2b9e-0000-4000-8000-000000000000" (see `ci-admin user list`)"#);
    let err = admin.fails(&["cache", "prune", "--user-id", "garbage", "--json"]);
    assert!(err.contains("user not found"), "{err}");
    // `--email`, as `ci-admin key list` spells it, works too.
    let err = admin.fails(&["cache", "list", "--email", "nobody@example.com"]);
    assert!(err.contains("user not found"), "{err}");
}

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    let admin = Admin::new();
    let usage = |args: &[&str]| {
        let out = admin.run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stderr)
    };
    let err = usage(&["cache", "prune", "--unused-for", "7"]);
    assert!(
        err.contains("\"7\" has no unit: use s, m, h or d, e.g. 7d"),
        "{err}"
    );
    let err = usage(&["cache", "prune", "--unused-for", "2w"]);
    assert!(err.contains("unknown unit"), "{err}");
    // Not a panic, and not everything: a duration longer than the calendar is refused.
    let err = usage(&["cache", "prune", "--unused-for", "1000000000d"]);
    assert!(err.contains("too long"), "{err}");
    let err = usage(&[
        "cache",
        "list",
        "--user",
        "ada@example.com",
        "--user-id",
        "6f1c2b9e-0000-4000-8000-000000000000",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
    usage(&["cache", "frobnicate"]);
    usage(&["cache"]);
    assert!(
        !admin.db().exists(),
        "a usage error does not create the database"
    );
}
