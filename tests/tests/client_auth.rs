//! Where `ci` finds the server and the API key (flag, environment, config file), and what it
//! says when the key is refused or the server is unreachable. Needs a server, not Docker.

#[path = "support/client.rs"]
mod support;

use ci_tests::ci_common::db::api_keys;
use ci_tests::{Server, TestDb};
use support::{run, CiEnv};

const THREE_WAYS: [&str; 3] = ["--api-key", "CI_API_KEY", "~/.ci/config"];

fn assert_names_the_three_ways(stderr: &str) {
    for way in THREE_WAYS {
        assert!(stderr.contains(way), "the help names {way}:\n{stderr}");
    }
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_from_flag_env_or_config_file() {
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start(&db);
    let env = CiEnv::new();
    let here = env.home.path();

    // Flag.
    let mut cmd = env.command(&["list", "--server", &server.url, "--api-key", &ada.key]);
    cmd.current_dir(here);
    let out = run(cmd).expect_code(0);
    assert_eq!(out.stdout, "No jobs found.\n");

    // Environment.
    let mut cmd = env.command(&["list"]);
    cmd.env("CI_SERVER_URL", &server.url)
        .env("CI_API_KEY", &ada.key);
    run(cmd).expect_code(0);

    // Config file at ~/.ci/config.
    env.write_config(&format!(
        "# written by the test\nserver_url={}\napi_key={}\n",
        server.url, ada.key
    ));
    run(env.command(&["list"])).expect_code(0);

    // Config file named by CI_CONFIG (HOME's file is then not read).
    let other = tempfile::tempdir().unwrap();
    let path = other.path().join("ci.conf");
    std::fs::write(
        &path,
        format!("server_url={}\napi_key={}\n", server.url, ada.key),
    )
    .unwrap();
    env.write_config("api_key=ci_broken\n");
    let mut cmd = env.command(&["list"]);
    cmd.env("CI_CONFIG", &path);
    run(cmd).expect_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn flag_wins_over_env_and_env_over_config() {
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start(&db);
    let env = CiEnv::new();
    let broken = "ci_thisisnotakey";

    env.write_config(&format!("server_url={}\napi_key={broken}\n", server.url));
    let mut cmd = env.command(&["list"]);
    cmd.env("CI_API_KEY", &ada.key);
    run(cmd).expect_code(0);

    let mut cmd = env.command(&["list", "--api-key", &ada.key]);
    cmd.env("CI_API_KEY", broken);
    run(cmd).expect_code(0);

    let mut cmd = env.command(&["list", "--api-key", broken]);
    cmd.env("CI_API_KEY", &ada.key);
    let out = run(cmd).expect_code(1);
    assert!(
        out.stderr
            .contains("from the command line is not a valid key"),
        "{}",
        out.stderr
    );
    assert_names_the_three_ways(&out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_key_says_how_to_give_one() {
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start(&db);
    let key = api_keys::list(&db.pool, Some(ada.id))
        .await
        .unwrap()
        .remove(0);
    api_keys::revoke(&db.pool, key.id, chrono::Utc::now())
        .await
        .unwrap();

    let env = CiEnv::new();
    let mut cmd = env.command(&["list", "--server", &server.url, "--api-key", &ada.key]);
    cmd.current_dir(env.home.path());
    let out = run(cmd).expect_code(1);
    assert!(out.stderr.contains("refused the API key"), "{}", out.stderr);
    assert!(
        out.stderr.contains("server said: "),
        "the server's message:\n{}",
        out.stderr
    );
    assert_names_the_three_ways(&out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_key_at_all_says_how_to_give_one() {
    let env = CiEnv::new();
    let out = run(env.command(&["list", "--server", "http://127.0.0.1:9"])).expect_code(1);
    assert!(out.stderr.contains("no API key"), "{}", out.stderr);
    assert_names_the_three_ways(&out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_named() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let key = ci_tests::ci_common::keys::SecretKey::generate();
    let env = CiEnv::new();
    for args in [
        &["list"][..],
        &["status", &uuid::Uuid::new_v4().to_string()],
    ] {
        let mut cmd = env.command(args);
        cmd.env("CI_SERVER_URL", &url)
            .env("CI_API_KEY", key.expose());
        let out = run(cmd).expect_code(1);
        assert!(
            out.stderr
                .starts_with("error: cannot reach the ci server at "),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(&url), "names the URL:\n{}", out.stderr);
        assert!(
            out.stderr.contains("scripts/up.sh"),
            "says how to start one:\n{}",
            out.stderr
        );
    }

    // `ci submit` too, before anything else happens.
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("tests")).unwrap();
    std::fs::write(
        project.path().join("tests/test_a.py"),
        "def test_a():\n    pass\n",
    )
    .unwrap();
    let mut cmd = env.command(&["submit", "test"]);
    cmd.env("CI_SERVER_URL", &url)
        .env("CI_API_KEY", key.expose())
        .current_dir(project.path());
    let out = run(cmd).expect_code(1);
    assert!(out.stderr.contains(&url), "names the URL:\n{}", out.stderr);
}

#[test]
fn usage_errors_exit_2_and_version_works() {
    let env = CiEnv::new();
    let out = run(env.command(&["wait", "not-a-job-id"]));
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let out = run(env.command(&["--version"])).expect_code(0);
    assert!(out.stdout.starts_with("ci "), "{}", out.stdout);
    let out = run(env.command(&["completions", "bash"])).expect_code(0);
    assert!(
        out.stdout.contains("_ci()") || out.stdout.contains("complete"),
        "a bash completion script"
    );
}
