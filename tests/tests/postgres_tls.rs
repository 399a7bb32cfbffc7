//! TLS to PostgreSQL, set in the database URL as libpq sets it (`sslmode`, `sslrootcert`): a
//! server with a certificate of its own CA is reached with `sslmode=verify-full` and that CA,
//! and refused when the certificate cannot be verified. Through the real `ci-admin`.

use std::path::Path;
use std::process::Command;

use ci_tests::postgres::{self, Postgres};
use ci_tests::{bin, tls, Output, Proc};

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 signed by it (`server.pem`, `server.key`)
/// in `dir`, readable by the server: owned by the user the cluster runs as.
fn certificates(dir: &Path) {
    tls::ca(dir);
    let (_, key) = tls::signed(dir, "server", tls::Usage::Server);
    // The server refuses a key that others can read (the key is 0600); as root the cluster
    // runs as `postgres`.
    use std::os::unix::fs::MetadataExt as _;
    if std::fs::metadata(dir).unwrap().uid() == 0 {
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        for file in [dir, &dir.join("server.pem"), &key] {
            std::os::unix::fs::chown(file, Some(uid), Some(gid)).unwrap();
        }
    }
}

fn admin(url: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("ci-admin"));
    cmd.arg("--database-url").arg(url).args(args);
    Proc::spawn("ci-admin", cmd).finish(ci_tests::WAIT)
}

#[test]
fn sslmode_verify_full_reaches_a_server_of_a_known_ca_and_refuses_an_unknown_one() {
    assert!(postgres::available(), "run scripts/ensure-postgres.sh");
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    let pg = Postgres::start_with(&[
        ("ssl", "on"),
        ("ssl_cert_file", &cert.display().to_string()),
        ("ssl_key_file", &key.display().to_string()),
    ]);
    let ca = dir.path().join("ca.pem");

    let trusted = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        ca.display()
    );
    let out = admin(
        &trusted,
        &[
            "user",
            "create",
            "--name",
            "Ada",
            "--email",
            "ada@example.com",
        ],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let listed = admin(&trusted, &["user", "list", "--json"]);
    assert!(listed.stdout.contains("ada@example.com"), "{listed:?}");

    // The server's certificate is of a CA this machine does not trust.
    let unknown = format!("{}?sslmode=verify-full", pg.url());
    let out = admin(&unknown, &["user", "list"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("cannot connect to the PostgreSQL database"),
        "{out:?}"
    );
    assert!(out.stderr.to_lowercase().contains("certificate"), "{out:?}");
}
