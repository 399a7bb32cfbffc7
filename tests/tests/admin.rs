//! `ci-admin` as users run it: the real binary against a real SQLite file.

#[path = "support/admin.rs"]
mod admin_support;

use std::path::Path;
use std::process::Command;

use admin_support::{text, Admin};
use ci_common::config::DB_PATH_ENV;
use ci_common::db::{self, api_keys, users};
use ci_common::keys::SecretKey;
use ci_tests::bin;

impl Admin {
    fn create_user(&self, name: &str, email: &str) -> String {
        let out = self.ok(&["user", "create", "--name", name, "--email", email]);
        field(&out, "ID: ")
    }
}

/// The value after `prefix` on the line that starts with it.
fn field(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"))
        .trim()
        .to_owned()
}

#[test]
fn user_create_prints_the_original_confirmation() {
    let admin = Admin::new();
    let out = admin.ok(&[
        "user",
        "create",
        "--name",
        "Ada Lovelace",
        "--email",
        "ada@example.com",
    ]);
    let id = field(&out, "ID: ");
    let redacted = out.replace(&id, "[id]");
    insta::assert_snapshot!(redacted, @r"
    ✓ User created successfully
    ID: [id]
    Name: Ada Lovelace
    Email: ada@example.com
    ");
}

#[test]
fn user_create_rejects_invalid_and_duplicate_emails() {
    let admin = Admin::new();
    admin.create_user("Ada", "ada@example.com");
    let err = admin.fails(&[
        "user",
        "create",
        "--name",
        "Again",
        "--email",
        "ADA@example.com",
    ]);
    assert!(err.contains("already exists"), "{err}");
    for bad in ["not-an-email", "a@b", "a b@example.com"] {
        let err = admin.fails(&["user", "create", "--name", "X", "--email", bad]);
        assert!(err.contains("invalid email"), "{bad}: {err}");
    }
    let err = admin.fails(&["user", "create", "--name", " ", "--email", "x@example.com"]);
    assert!(err.contains("--name"), "{err}");
    // Nothing was created by the failures.
    let list: serde_json::Value =
        serde_json::from_str(&admin.ok(&["user", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn user_list_get_deactivate_activate() {
    let admin = Admin::new();
    assert_eq!(admin.ok(&["user", "list"]).trim(), "No users found.");
    let ada = admin.create_user("Ada", "ada@example.com");
    let bob = admin.create_user("Bob", "bob@example.com");

    let table = admin.ok(&["user", "list"]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("EMAIL") && header.contains("STATUS"));
    assert!(table.contains("ada@example.com") && table.contains("bob@example.com"));

    let json: serde_json::Value =
        serde_json::from_str(&admin.ok(&["user", "list", "--json"])).unwrap();
    let emails: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails.len(), 2);
    assert!(emails.contains(&"ada@example.com"));

    let by_id = admin.ok(&["user", "get", &ada]);
    assert_eq!(field(&by_id, "Email: "), "ada@example.com");
    assert_eq!(field(&by_id, "Status: "), "Active");
    let by_email: serde_json::Value =
        serde_json::from_str(&admin.ok(&["user", "get", "--email", "bob@example.com", "--json"]))
            .unwrap();
    assert_eq!(by_email["id"], bob.as_str());
    assert_eq!(by_email["active"], true);
    assert_eq!(by_email["is_active"], true, "the prototype's name too");

    admin.ok(&["user", "deactivate", &ada]);
    assert_eq!(
        field(&admin.ok(&["user", "get", &ada]), "Status: "),
        "Inactive"
    );
    admin.ok(&["user", "activate", &ada]);
    assert_eq!(
        field(&admin.ok(&["user", "get", &ada]), "Status: "),
        "Active"
    );

    let unknown = uuid::Uuid::new_v4().to_string();
    for args in [
        vec!["user", "get", unknown.as_str()],
        vec!["user", "get", "not-a-uuid"],
        vec!["user", "get", "--email", "nobody@example.com"],
        vec!["user", "deactivate", unknown.as_str()],
        vec!["user", "activate", "xyz"],
    ] {
        let err = admin.fails(&args);
        assert!(err.contains("not found"), "{args:?}: {err}");
        assert!(
            err.contains("ci-admin user list"),
            "the error says what to do next: {err}"
        );
    }
}

#[tokio::test]
async fn key_create_list_revoke_and_the_key_works() {
    let admin = Admin::new();
    let ada = admin.create_user("Ada", "ada@example.com");
    admin.create_user("Bob", "bob@example.com");

    let out = admin.ok(&[
        "key",
        "create",
        "--email",
        "ada@example.com",
        "--name",
        "laptop",
    ]);
    let secret = field(&out, "API Key: ");
    assert!(out.contains("shown only once"), "{out}");
    let key_id = field(&out, "Key ID: ");
    let by_id = admin.ok(&["key", "create", "--user-id", &ada, "--name", "ci"]);
    let second = field(&by_id, "API Key: ");
    admin.ok(&[
        "key",
        "create",
        "--email",
        "bob@example.com",
        "--name",
        "bob",
    ]);

    // The secret is a well-formed key and only its hash is stored.
    let parsed = SecretKey::parse(&secret).expect("a valid key is printed");
    // No file of the database holds a secret; the first key's SHA-256 is there. (Read before
    // this process opens the database: closing another descriptor of a file drops SQLite's
    // POSIX locks on it.)
    let mut stored = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(bytes) = std::fs::read(db::sibling(&admin.db(), suffix)) {
            stored.extend(bytes);
        }
    }
    let holds = |text: &str| stored.windows(text.len()).any(|w| w == text.as_bytes());
    assert!(holds(&parsed.hash()), "the key's hash is stored");
    assert!(!holds(&secret) && !holds(&second), "a secret is stored");
    let pool = db::connect(&admin.db(), 1).await.unwrap();
    let (key, owner) = api_keys::find_by_secret(&pool, &parsed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.id.to_string(), key_id);
    assert_eq!(owner.email, "ada@example.com");

    let table = admin.ok(&["key", "list", "--email", "ada@example.com"]);
    assert_eq!(
        table.lines().count(),
        3,
        "header + Ada's two keys:\n{table}"
    );
    let hint = &secret[secret.len() - 4..];
    assert!(
        table.contains(&format!("…{hint}")),
        "the last four characters are the hint:\n{table}"
    );
    assert!(
        !table.contains(&secret[..7]) && !table.contains(&second[..7]),
        "no part of a key's beginning is listed:\n{table}"
    );
    assert!(table.contains("Active"));
    let all: serde_json::Value =
        serde_json::from_str(&admin.ok(&["key", "list", "--json"])).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3);

    let revoked = admin.ok(&["key", "revoke", &key_id]);
    assert!(revoked.contains("revoked"), "{revoked}");
    let json: serde_json::Value =
        serde_json::from_str(&admin.ok(&["key", "list", "--user-id", &ada, "--json"])).unwrap();
    let states: Vec<(&str, &str)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["id"].as_str().unwrap(), k["status"].as_str().unwrap()))
        .collect();
    assert!(states.contains(&(key_id.as_str(), "revoked")), "{states:?}");
    assert!(admin
        .ok(&["key", "list", "--email", "ada@example.com"])
        .contains("Revoked"));
    let (key, _) = api_keys::find_by_secret(&pool, &parsed)
        .await
        .unwrap()
        .unwrap();
    assert!(key.revoked_at.is_some());

    let err = admin.fails(&["key", "revoke", &uuid::Uuid::new_v4().to_string()]);
    assert!(
        err.contains("API key not found") && err.contains("ci-admin key list"),
        "{err}"
    );
    let err = admin.fails(&[
        "key",
        "create",
        "--email",
        "nobody@example.com",
        "--name",
        "x",
    ]);
    assert!(err.contains("user not found"), "{err}");
    let err = admin.fails(&["key", "list", "--user-id", "garbage"]);
    assert!(err.contains("user not found"), "{err}");
}

/// `--json` output with the values that change from run to run replaced by placeholders.
fn redacted_json(text: &str) -> String {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    let placeholder = match key.as_str() {
                        "id" | "user_id" => Some("[id]"),
                        "created_at" | "last_used_at" | "expires_at" | "revoked_at" => {
                            Some("[time]")
                        }
                        "hint" => Some("[hint]"),
                        _ => None,
                    };
                    match placeholder {
                        Some(p) if !v.is_null() => *v = serde_json::Value::from(p),
                        _ => walk(v),
                    }
                }
            }
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_str(text).expect("JSON output");
    walk(&mut value);
    serde_json::to_string_pretty(&value).unwrap()
}

#[test]
fn json_output_is_a_superset_of_the_prototypes() {
    let admin = Admin::new();
    let ada = admin.create_user("Ada Lovelace", "ada@example.com");
    admin.create_user("Bob", "bob@example.com");
    admin.ok(&[
        "user",
        "deactivate",
        &admin.create_user("Eve", "eve@example.com"),
    ]);
    let out = admin.ok(&[
        "key",
        "create",
        "--email",
        "ada@example.com",
        "--name",
        "laptop",
    ]);
    admin.ok(&[
        "key",
        "create",
        "--user-id",
        &ada,
        "--name",
        "ci",
        "--expires-in-days",
        "30",
    ]);
    admin.ok(&["key", "revoke", &field(&out, "Key ID: ")]);

    insta::assert_snapshot!(
        "user_list_json",
        redacted_json(&admin.ok(&["user", "list", "--json"]))
    );
    insta::assert_snapshot!(
        "user_get_json",
        redacted_json(&admin.ok(&["user", "get", "--email", "ada@example.com", "--json"]))
    );
    insta::assert_snapshot!(
        "key_list_json",
        redacted_json(&admin.ok(&["key", "list", "--json"]))
    );
}

#[test]
fn error_messages_say_not_found_and_what_to_do() {
    let admin = Admin::new();
    admin.create_user("Ada", "ada@example.com");
    let unknown = "6f1c2b9e-0000-4000-8000-000000000000";
    let cases: &[(&str, &[&str])] = &[
        ("user_get_unknown_id", &["user", "get", unknown]),
        ("user_get_malformed_id", &["user", "get", "not-a-uuid"]),
        (
            "user_get_unknown_email",
            &["user", "get", "--email", "nobody@example.com"],
        ),
        ("user_deactivate_unknown", &["user", "deactivate", unknown]),
        ("user_activate_unknown", &["user", "activate", unknown]),
        (
            "user_create_duplicate",
            &[
                "user",
                "create",
                "--name",
                "A",
                "--email",
                "ADA@example.com",
            ],
        ),
        (
            "user_create_invalid_email",
            &["user", "create", "--name", "A", "--email", "a@b"],
        ),
        (
            "user_create_empty_name",
            &["user", "create", "--name", " ", "--email", "x@example.com"],
        ),
        (
            "key_create_unknown_email",
            &[
                "key",
                "create",
                "--email",
                "nobody@example.com",
                "--name",
                "x",
            ],
        ),
        (
            "key_create_unknown_user_id",
            &["key", "create", "--user-id", unknown, "--name", "x"],
        ),
        (
            "key_create_empty_name",
            &["key", "create", "--email", "ada@example.com", "--name", " "],
        ),
        (
            "key_list_unknown_user",
            &["key", "list", "--user-id", "garbage"],
        ),
        ("key_revoke_unknown", &["key", "revoke", unknown]),
    ];
    for (name, args) in cases {
        insta::assert_snapshot!(*name, admin.fails(args));
    }
}

#[test]
fn usage_errors_exit_2() {
    let admin = Admin::new();
    let out = admin.run(&["key", "create", "--name", "x"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing --email/--user-id is a usage error"
    );
    let out = admin.run(&["user", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn migrations_are_safe_when_processes_start_at_once() {
    let admin = Admin::new();
    let children: Vec<_> = (0..4)
        .map(|i| {
            Command::new(bin("ci-admin"))
                .arg("--db-path")
                .arg(admin.db())
                .args([
                    "user",
                    "create",
                    "--name",
                    "N",
                    "--email",
                    &format!("u{i}@example.com"),
                ])
                .output_async()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "concurrent start failed: {}",
            text(&out.stderr)
        );
    }
    let list: serde_json::Value =
        serde_json::from_str(&admin.ok(&["user", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 4);
}

/// Spawns without waiting, so several processes really start together.
trait SpawnNow {
    fn output_async(&mut self) -> std::process::Child;
}

impl SpawnNow for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn every_server_side_binary_takes_the_database_from_ci_db_path() {
    // The flag's line, then its description.
    let flag = |help: &str, name: &str| -> String {
        help.lines()
            .skip_while(|l| !l.trim_start().starts_with(name))
            .take(2)
            .collect::<String>()
    };
    for name in ["ci-admin", "ci-server", "ci-controller"] {
        let out = Command::new(bin(name))
            .arg("--help")
            .env("CI_DATABASE_URL", "postgres://ci:s3cret@db.example.com/ci")
            .output()
            .unwrap();
        let help = text(&out.stdout);
        assert!(
            flag(&help, "--db-path").contains("[env: CI_DB_PATH="),
            "{name}:\n{help}"
        );
        // The URL's variable is named, its value (with a password) never shown.
        assert!(
            flag(&help, "--database-url").contains("[env: CI_DATABASE_URL]"),
            "{name}:\n{help}"
        );
        assert!(!help.contains("s3cret"), "{name}:\n{help}");
    }
}

#[tokio::test]
async fn the_default_database_is_the_same_from_any_working_directory() {
    let home = tempfile::tempdir().unwrap();
    let run_in = |cwd: &Path, args: &[&str]| {
        let out = Command::new(bin("ci-admin"))
            .args(args)
            .current_dir(cwd)
            .env("HOME", home.path())
            .env_remove("XDG_DATA_HOME")
            .env_remove(DB_PATH_ENV)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    run_in(
        a.path(),
        &[
            "user",
            "create",
            "--name",
            "Ada",
            "--email",
            "ada@example.com",
        ],
    );
    let listed = run_in(b.path(), &["user", "list"]);
    assert!(listed.contains("ada@example.com"), "{listed}");
    let expected = home.path().join(".local/share/ci/ci.db");
    assert!(
        expected.exists(),
        "the default database lives at {}",
        expected.display()
    );
    assert!(
        std::fs::read_dir(a.path()).unwrap().next().is_none(),
        "nothing written to the cwd"
    );
    let pool = db::connect(&expected, 1).await.unwrap();
    assert!(users::find_by_email(&pool, "ada@example.com")
        .await
        .unwrap()
        .is_some());

    // ci-server started elsewhere without --db-path serves the same users.
    let key_out = run_in(
        a.path(),
        &["key", "create", "--email", "ada@example.com", "--name", "k"],
    );
    let key = field(&key_out, "API Key: ");
    let c = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin("ci-server"));
    cmd.args(["--host", "127.0.0.1", "--port", "0"])
        .current_dir(c.path())
        .env("HOME", home.path())
        .env_remove("XDG_DATA_HOME")
        .env_remove(DB_PATH_ENV);
    let server = ci_tests::Server::spawn(cmd);
    let response = ci_tests::client()
        .get(server.at("/api/v1/jobs"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "the server reads the database ci-admin wrote"
    );
    assert!(
        std::fs::read_dir(c.path()).unwrap().next().is_none(),
        "nothing written to the cwd"
    );
}
