//! Jobs from git (`ci submit --git URL --ref REF`) with the real `ci`, server and controller: a
//! repository served by `git daemon` in a container on a Docker network this test creates, the
//! controller's fetch step joining that network (`--git-network`) and allowed that one address
//! (`--git-allow git://ADDR`).
//!
//! The repository holds the `kinds_exec_bits` fixture (executables two folders down, plain
//! files, a script without the bit) tagged `v1.0`, and on `main` one more commit that adds a test
//! checking the checkout's `.git` is in the project folder. A job at `main` runs 7 tests, at the
//! tag 6; each records and shows the commit it ran.

#[path = "support/client.rs"]
mod support;

#[path = "support/projects.rs"]
mod projects;

#[path = "common_server/mod.rs"]
mod common_server;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ci_tests::ci_common::results::TestOutcome;
use ci_tests::ci_common::JobStatus;
use ci_tests::{client, docker_lines, fixture, test_image, wait_for, Controller, Server, TestDb};
use projects::job_id;
use support::{run, wait_until_finished, CiEnv, Stack};

/// `git ARGS` in `dir` on this machine, as a fixed author; its trimmed stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The address of a container on its (one) network.
fn container_addr(name: &str) -> String {
    docker_lines(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        name,
    ])
    .pop()
    .unwrap_or_else(|| panic!("the address of container {name}"))
}

/// Waits until `git ls-remote URL` answers from this machine (a container's bridge network is
/// reachable from here), at most 30 s.
fn wait_until_served(url: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !Command::new("git")
        .args(["ls-remote", url])
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the git server at {url} did not answer"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `git daemon` serving a bare repository from a container on a network of its own; both are
/// removed when it is dropped.
struct GitServer {
    network: String,
    container: String,
    addr: String,
    /// Commits of `main` and of the tag `v1.0`.
    main: String,
    tag: String,
    _dir: tempfile::TempDir,
}

impl GitServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        copy_dir(&fixture("kinds_exec_bits"), &work);
        use std::os::unix::fs::PermissionsExt as _;
        for script in ["tools/bin/lint.sh", "scripts/release/bump_version.py"] {
            std::fs::set_permissions(work.join(script), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        for plain in ["data/notes.txt", "data/not_a_tool.sh"] {
            std::fs::set_permissions(work.join(plain), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["add", "-A"]);
        git(
            &work,
            &["commit", "-q", "-m", "Exec bits: ünïcode in the subject"],
        );
        git(&work, &["tag", "-a", "v1.0", "-m", "one point oh"]);
        let tag = git(&work, &["rev-parse", "v1.0^{commit}"]);
        std::fs::write(
            work.join("tests/test_checkout.py"),
            "import pathlib\n\n\ndef test_the_checkout_keeps_its_git_folder():\n    \
             root = pathlib.Path(__file__).resolve().parent.parent\n    \
             assert (root / '.git' / 'HEAD').is_file()\n",
        )
        .unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "A test of the checkout"]);
        let main = git(&work, &["rev-parse", "HEAD"]);
        let srv = dir.path().join("srv");
        std::fs::create_dir_all(&srv).unwrap();
        git(
            dir.path(),
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap(),
                "srv/project.git",
            ],
        );
        // A push webhook names a commit: let clients fetch one by its id, as hosting services do.
        git(
            &srv.join("project.git"),
            &["config", "uploadpack.allowReachableSHA1InWant", "true"],
        );

        let name = format!(
            "citest-git-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let created = docker_lines(&["network", "create", &name]);
        assert!(!created.is_empty(), "docker network create {name}");
        let mount = format!("{}:/srv:ro", srv.display());
        let started = docker_lines(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &name,
            "-v",
            &mount,
            &test_image(),
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--informative-errors",
            "--base-path=/srv",
            "/srv",
        ]);
        assert!(!started.is_empty(), "git daemon container {name} started");
        let addr = container_addr(&name);
        let server = Self {
            network: name.clone(),
            container: name,
            addr,
            main,
            tag,
            _dir: dir,
        };
        wait_until_served(&server.url());
        server
    }

    fn url(&self) -> String {
        format!("git://{}/project.git", self.addr)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.container])
            .output();
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

/// A stack whose controller's fetch step joins the git server's network and may reach it.
async fn stack_for(git_server: &GitServer) -> Stack {
    stack_with(git_server, &[], &[]).await
}

/// [`stack_for`], with more flags for the server and the controller.
async fn stack_with(
    git_server: &GitServer,
    server_args: &[&str],
    controller_args: &[&str],
) -> Stack {
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start_with(&db, server_args);
    let allow = format!("git://{}", git_server.addr);
    let mut args = vec![
        "--git-network",
        &git_server.network,
        "--git-allow",
        &allow,
        "--git-allow",
        "https://*",
    ];
    args.extend_from_slice(controller_args);
    let controller = Controller::start_with(&db, &args);
    Stack {
        db,
        server,
        controller,
        ada,
        env: CiEnv::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_from_git_run_at_a_branch_and_a_tag_and_refuse_what_is_not_allowed() {
    let git_server = GitServer::start();
    let stack = stack_for(&git_server).await;
    let nowhere = tempfile::tempdir().unwrap();
    let url = git_server.url();

    // A branch: the fetched tree runs as an upload of it would, executables and all.
    let out =
        run(stack.ci(nowhere.path(), &["submit", "--git", &url, "--ref", "main"])).expect_code(0);
    assert!(out.stdout.contains("7 passed"), "{}", out.stdout);
    let sha_line = format!("checked out {}", git_server.main);
    assert!(
        out.stdout.contains(&sha_line),
        "the log names the commit: {}",
        out.stdout
    );
    let id = job_id(&out);
    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &id).await;
    assert_eq!(job.status, JobStatus::Passed);
    let git = job.git.expect("the job shows its git source");
    assert_eq!(
        (
            git.url.as_str(),
            git.git_ref.as_str(),
            git.commit.as_deref()
        ),
        (url.as_str(), "main", Some(git_server.main.as_str()))
    );
    let steps: Vec<&str> = job
        .steps
        .as_deref()
        .unwrap()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(steps[0], "fetch", "{steps:?}");
    let status = run(stack.ci(nowhere.path(), &["status", &id])).expect_code(0);
    assert!(
        status
            .stdout
            .contains(&format!("{url} at main ({})", git_server.main)),
        "{}",
        status.stdout
    );

    // A tag, and `ci retry` of it runs the same commit again.
    let out =
        run(stack.ci(nowhere.path(), &["submit", "--git", &url, "--ref", "v1.0"])).expect_code(0);
    assert!(out.stdout.contains("6 passed"), "{}", out.stdout);
    let tag_job = job_id(&out);
    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &tag_job).await;
    assert_eq!(
        job.git.and_then(|g| g.commit).as_deref(),
        Some(git_server.tag.as_str())
    );
    let again = run(stack.ci(nowhere.path(), &["retry", &tag_job])).expect_code(0);
    assert!(again.stdout.contains("6 passed"), "{}", again.stdout);
    let again = job_id(&again);
    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &again).await;
    assert_eq!(
        job.git.and_then(|g| g.commit).as_deref(),
        Some(git_server.tag.as_str())
    );

    // A ref the remote does not have: the job ends with git's own words in its log.
    let out = run(stack.ci(
        nowhere.path(),
        &["submit", "--git", &url, "--ref", "no-such-branch"],
    ));
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("no-such-branch"),
        "git says which ref: {}",
        out.stdout
    );
    let missing = job_id(&out);
    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &missing).await;
    assert_eq!(job.status, JobStatus::Error, "{job:?}");
    assert!(job.git.unwrap().commit.is_none());

    // Refused at submission, nothing queued: a private address no rule names, a loopback one
    // under `https://*`, a scheme no rule has, and a ref that is an option.
    let before = list_count(&stack).await;
    for (url, git_ref, says) in [
        ("git://10.255.0.1/x.git", "main", "--git-allow"),
        (
            "https://127.0.0.1/x.git",
            "main",
            "loopback, private or link-local",
        ),
        ("file:///etc", "main", "not allowed"),
        (url.as_str(), "--upload-pack=touch", "invalid git ref"),
    ] {
        let ref_arg = format!("--ref={git_ref}");
        let out = run(stack.ci(nowhere.path(), &["submit", "--git", url, &ref_arg]));
        assert_ne!(out.code, Some(0), "{url} {git_ref} refused");
        assert!(
            out.stderr.contains(says),
            "{url} {git_ref}: the refusal says {says:?}: {}",
            out.stderr
        );
    }
    assert_eq!(list_count(&stack).await, before, "nothing queued");

    // The API: JSON for a job from git, and a malformed body says what to send.
    let response = client()
        .post(format!("{}/api/v1/jobs", stack.server.url))
        .bearer_auth(&stack.ada.key)
        .json(&serde_json::json!({"git": {"url": url, "ref": "v1.0"}, "args": ["-k", "modes"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let view: serde_json::Value = response.json().await.unwrap();
    assert_eq!(view["git"]["ref"], "v1.0");
    assert_eq!(view["args"], serde_json::json!(["-k", "modes"]));
    let id = view["job_id"].as_str().unwrap().to_owned();
    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &id).await;
    assert_eq!(job.status, JobStatus::Passed, "{job:?}");
    let response = client()
        .post(format!("{}/api/v1/jobs", stack.server.url))
        .bearer_auth(&stack.ada.key)
        .header("content-type", "application/json")
        .body(r#"{"git": "nope"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(body.contains(r#"\"git\": {\"url\""#), "{body}");

    // Everything the jobs made is gone once they ended, the fetch containers included.
    wait_for(
        "the jobs' containers to go",
        Duration::from_secs(30),
        || async { stack.controller.containers().is_empty().then_some(()) },
    )
    .await;
}

async fn list_count(stack: &Stack) -> usize {
    let list: serde_json::Value = client()
        .get(format!("{}/api/v1/jobs?limit=500", stack.server.url))
        .bearer_auth(&stack.ada.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["jobs"].as_array().unwrap().len()
}

/// `ci triggers create ARGS` as ada; the values it printed by label (`URL`, `Token`, ...).
fn create_trigger(
    stack: &Stack,
    dir: &Path,
    args: &[&str],
) -> std::collections::HashMap<String, String> {
    let mut all = vec!["triggers", "create"];
    all.extend_from_slice(args);
    let out = run(stack.ci(dir, &all)).expect_code(0);
    out.stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    ci_tests::ci_common::keys::hex(&mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_tokens_and_signed_push_hooks_start_jobs_until_revoked() {
    let git_server = GitServer::start();
    let stack = stack_for(&git_server).await;
    let nowhere = tempfile::tempdir().unwrap();
    let url = git_server.url();
    let http = client();

    // A run trigger: a POST with the token and no API key starts the task with the args given.
    let run_trigger = create_trigger(&stack, nowhere.path(), &["--git", &url, "--ref", "v1.0"]);
    let trigger_url = run_trigger["URL"].clone();
    assert!(
        trigger_url.starts_with(&stack.server.url),
        "{run_trigger:?}"
    );
    assert!(run_trigger["Token"].starts_with("cit_"), "{run_trigger:?}");
    let response = http
        .post(&trigger_url)
        .json(&serde_json::json!({"args": ["-k", "lint"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let started: serde_json::Value = response.json().await.unwrap();
    let id = started["job_id"].as_str().unwrap().to_owned();
    assert_eq!(started["url"], format!("/api/v1/jobs/{id}"));
    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &id).await;
    assert_eq!(job.status, JobStatus::Passed, "{job:?}");
    assert_eq!(job.args, ["-k", "lint"]);
    assert_eq!(
        job.tests.map(|t| t.get(TestOutcome::Passed)),
        Some(1),
        "only the lint test ran"
    );
    assert_eq!(
        job.git.unwrap().commit.as_deref(),
        Some(git_server.tag.as_str())
    );

    // Listed without its token; revoked, it is refused.
    let list = run(stack.ci(nowhere.path(), &["triggers", "list"])).expect_code(0);
    assert!(
        list.stdout.contains(&run_trigger["Trigger"]),
        "{}",
        list.stdout
    );
    assert!(
        !list.stdout.contains(&run_trigger["Token"]),
        "{}",
        list.stdout
    );
    run(stack.ci(
        nowhere.path(),
        &["triggers", "revoke", &run_trigger["Trigger"]],
    ))
    .expect_code(0);
    let response = http.post(&trigger_url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body = response.text().await.unwrap();
    assert!(body.contains("unknown or revoked trigger token"), "{body}");

    // A push trigger on main: a signed push to main starts the task at the pushed commit.
    let push = create_trigger(
        &stack,
        nowhere.path(),
        &["--git", &url, "--ref", "main", "--push"],
    );
    let hook_url = push["URL"].clone();
    assert!(hook_url.contains("/api/v1/hooks/cit_"), "{push:?}");
    let secret = push["Secret"].clone();
    let event = |git_ref: &str, after: &str| {
        serde_json::to_vec(&serde_json::json!({
            "ref": git_ref,
            "before": "0000000000000000000000000000000000000000",
            "after": after,
            "repository": {"clone_url": url},
            "pusher": {"name": "ada"},
        }))
        .unwrap()
    };
    let send = |body: Vec<u8>, signature: String| {
        http.post(&hook_url)
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
    };
    // The tag's commit is on main too: the job runs it, not main's head.
    let body = event("refs/heads/main", &git_server.tag);
    let response = send(body.clone(), format!("sha256={}", hmac_hex(&secret, &body)))
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let started: serde_json::Value = response.json().await.unwrap();
    let id = started["job_id"].as_str().unwrap().to_owned();
    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &id).await;
    assert_eq!(job.status, JobStatus::Passed, "{job:?}");
    let git = job.git.unwrap();
    assert_eq!(git.commit.as_deref(), Some(git_server.tag.as_str()));
    assert_eq!(job.tests.map(|t| t.get(TestOutcome::Passed)), Some(6));

    // A wrong signature is refused; a push to another branch starts nothing.
    let before = list_count(&stack).await;
    let response = send(
        body.clone(),
        format!("sha256={}", hmac_hex("whsec_wrong", &body)),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("signature does not match"));
    let other = event("refs/heads/feature", &git_server.main);
    let response = send(
        other.clone(),
        format!("sha256={}", hmac_hex(&secret, &other)),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(list_count(&stack).await, before, "nothing started");

    // A token is rate-limited: past its burst, a 429 that says when to come back.
    let mut limited = None;
    for _ in 0..20 {
        let response = http.post(&trigger_url).send().await.unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), 401);
    }
    let limited = limited.expect("a 429 within 20 requests");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body = limited.text().await.unwrap();
    assert!(
        body.contains("too many requests with this trigger token"),
        "{body}"
    );
}

/// A smart-HTTP git server that asks for a user name and password (`git http-backend` behind
/// HTTP basic authentication, in Python), serving the same repositories from a container on the
/// git server's network; removed when dropped.
struct PrivateRemote {
    container: String,
    addr: String,
}

const HTTP_BACKEND: &str = r#"
import base64, os, subprocess, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
DELAY = float(sys.argv[3]) if len(sys.argv) > 3 else 0
EXPECTED = "Basic " + base64.b64encode(f"{sys.argv[1]}:{sys.argv[2]}".encode()).decode()
class Handler(BaseHTTPRequestHandler):
    def serve(self):
        if self.headers.get("Authorization") != EXPECTED:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        if self.command == "POST":
            time.sleep(DELAY)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = dict(os.environ, GIT_PROJECT_ROOT="/srv", GIT_HTTP_EXPORT_ALL="1",
                   PATH_INFO=path, QUERY_STRING=query, REQUEST_METHOD=self.command,
                   CONTENT_TYPE=self.headers.get("Content-Type", ""),
                   CONTENT_LENGTH=str(len(body)), REMOTE_USER=sys.argv[1],
                   HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""),
                   HTTP_GIT_PROTOCOL=self.headers.get("Git-Protocol", ""))
        out = subprocess.run(["git", "http-backend"], input=body, env=env,
                             capture_output=True).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)
    do_GET = do_POST = serve
ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"#;

impl PrivateRemote {
    fn start(git_server: &GitServer, user: &str, password: &str) -> Self {
        Self::start_slow(git_server, user, password, 0.0)
    }

    /// A remote that waits `delay` seconds before each answer to a fetch's POST.
    fn start_slow(git_server: &GitServer, user: &str, password: &str, delay: f64) -> Self {
        let delay = delay.to_string();
        let container = format!(
            "{}-http-{}",
            git_server.container,
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let mount = format!("{}:/srv:ro", git_server._dir.path().join("srv").display());
        let started = docker_lines(&[
            "run",
            "-d",
            "--name",
            &container,
            "--network",
            &git_server.network,
            "-v",
            &mount,
            &test_image(),
            "python3",
            "-c",
            HTTP_BACKEND,
            user,
            password,
            &delay,
        ]);
        assert!(
            !started.is_empty(),
            "the private remote {container} started"
        );
        let addr = container_addr(&container);
        let remote = Self { container, addr };
        wait_until_served(&format!(
            "http://{user}:{password}@{}:8080/project.git",
            remote.addr
        ));
        remote
    }

    fn url(&self) -> String {
        format!("http://{}:8080/project.git", self.addr)
    }
}

impl Drop for PrivateRemote {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.container])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_remote_is_fetched_with_the_owners_sealed_credential_and_never_shows_it() {
    const TOKEN: &str = "glpat-s3cr3t-t0ken-never-logged";
    let git_server = GitServer::start();
    let remote = PrivateRemote::start(&git_server, "ada-bot", TOKEN);
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("secrets.key");
    std::fs::write(&key_file, "7e".repeat(32)).unwrap();
    let key_file = key_file.to_str().unwrap().to_owned();
    let allow = format!("http://{}", remote.addr);
    let stack = stack_with(
        &git_server,
        &["--secrets-key-file", &key_file],
        &["--secrets-key-file", &key_file, "--git-allow", &allow],
    )
    .await;
    let nowhere = tempfile::tempdir().unwrap();
    let url = remote.url();

    // Without a credential the fetch fails at once (no prompt), saying why.
    let out = run(stack.ci(nowhere.path(), &["submit", "--git", &url, "--ref", "main"]));
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("terminal prompts disabled") || out.stdout.contains("Authentication"),
        "git says it needs a credential: {}",
        out.stdout
    );

    // Stored from standard input, the credential fetches the private remote.
    let mut set = stack.ci(
        nowhere.path(),
        &[
            "git-credentials",
            "set",
            &remote.addr,
            "--username",
            "ada-bot",
        ],
    );
    set.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = set.spawn().unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        format!("{TOKEN}\n").as_bytes(),
    )
    .unwrap();
    let stored = child.wait_with_output().unwrap();
    assert!(
        stored.status.success(),
        "{}",
        String::from_utf8_lossy(&stored.stderr)
    );
    let list = run(stack.ci(nowhere.path(), &["git-credentials", "list"])).expect_code(0);
    assert!(list.stdout.contains(&remote.addr) && list.stdout.contains("ada-bot"));
    assert!(!list.stdout.contains(TOKEN));

    let out =
        run(stack.ci(nowhere.path(), &["submit", "--git", &url, "--ref", "main"])).expect_code(0);
    assert!(out.stdout.contains("7 passed"), "{}", out.stdout);
    assert!(!out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN));
    let id = job_id(&out);
    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &id).await;
    assert_eq!(
        job.git.unwrap().commit.as_deref(),
        Some(git_server.main.as_str())
    );

    // The token is nowhere in the job's log, its stored plan or the database but sealed.
    let log = client()
        .get(format!("{}/api/v1/jobs/{id}/log.txt", stack.server.url))
        .bearer_auth(&stack.ada.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(log.contains("checked out"), "{log}");
    assert!(!log.contains(TOKEN));
    const STORED: &str = "SELECT secret FROM git_credentials
         UNION ALL SELECT spec FROM job_steps
         UNION ALL SELECT text FROM job_events";
    let stored: Vec<String> = match &stack.db.pool {
        ci_tests::ci_common::db::Db::Sqlite(pool) => {
            sqlx::query_scalar(STORED).fetch_all(pool).await.unwrap()
        }
        ci_tests::ci_common::db::Db::Postgres(pool) => {
            sqlx::query_scalar(STORED).fetch_all(pool).await.unwrap()
        }
    };
    assert!(
        stored.iter().any(|s| s.starts_with("v1:")),
        "a sealed credential"
    );
    assert!(
        stored.iter().all(|s| !s.contains(TOKEN)),
        "the token is stored sealed only"
    );

    // Another user's jobs do not get it.
    let bob = stack.db.user("bob").await;
    let out = run(stack.env.ci(
        &stack.server.url,
        &bob.key,
        nowhere.path(),
        &["submit", "--git", &url, "--ref", "main"],
    ));
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);

    // Removed, it is no longer used.
    run(stack.ci(nowhere.path(), &["git-credentials", "remove", &remote.addr])).expect_code(0);
    let out = run(stack.ci(nowhere.path(), &["submit", "--git", &url, "--ref", "main"]));
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_during_the_fetch_is_replaced_and_the_job_goes_on_once() {
    let git_server = GitServer::start();
    // Each fetch request waits 3 s at the remote: long enough to kill the controller meanwhile.
    let remote = PrivateRemote::start_slow(&git_server, "ada-bot", "pw", 3.0);
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("secrets.key");
    std::fs::write(&key_file, "3c".repeat(32)).unwrap();
    let key_file = key_file.to_str().unwrap().to_owned();
    let allow = format!("http://{}", remote.addr);
    let controller_args = [
        "--secrets-key-file",
        key_file.as_str(),
        "--git-allow",
        allow.as_str(),
    ];
    let mut stack = stack_with(
        &git_server,
        &["--secrets-key-file", &key_file],
        &controller_args,
    )
    .await;
    let nowhere = tempfile::tempdir().unwrap();
    let mut set = stack.ci(
        nowhere.path(),
        &[
            "git-credentials",
            "set",
            &remote.addr,
            "--username",
            "ada-bot",
        ],
    );
    set.stdin(std::process::Stdio::piped());
    let mut child = set.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"pw\n").unwrap();
    assert!(child.wait().unwrap().success());

    let out = run(stack.ci(
        nowhere.path(),
        &["submit", "--async", "--git", &remote.url(), "--ref", "main"],
    ))
    .expect_code(0);
    let id = support::job_id_in(out.stdout.trim());
    // The fetch step runs: kill -9 the controller while git waits for the remote.
    wait_for("the fetch step to run", Duration::from_secs(60), || async {
        let job = support::job_view(&stack.server.url, &stack.ada.key, &id).await;
        let steps = job.steps.unwrap_or_default();
        steps
            .first()
            .filter(|s| s.name == "fetch" && s.state == ci_tests::ci_common::StepState::Running)
            .map(drop)
    })
    .await;
    let prefix = stack.controller.prefix.clone();
    stack.controller.keep_caches();
    stack.controller.proc.signal("KILL");
    stack.controller.proc.wait_exit(Duration::from_secs(10));
    let mut args = vec![
        "--git-network",
        git_server.network.as_str(),
        "--git-allow",
        "https://*",
    ];
    args.extend_from_slice(&controller_args);
    // The killed one is dropped at the end: dropping it removes its prefix's containers.
    let _killed = std::mem::replace(
        &mut stack.controller,
        Controller::start_with_prefix(&stack.db, &prefix, &args),
    );

    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &id).await;
    let log = client()
        .get(format!("{}/api/v1/jobs/{id}/log.txt", stack.server.url))
        .bearer_auth(&stack.ada.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Passed, "{job:?}\n{log}");
    assert_eq!(
        job.git.unwrap().commit.as_deref(),
        Some(git_server.main.as_str())
    );
    let checked_out = format!("checked out {}", git_server.main);
    assert_eq!(log.matches(&checked_out).count(), 1, "{log}");
    let steps = job.steps.unwrap();
    assert_eq!(
        (steps[0].name.as_str(), steps[0].state),
        ("fetch", ci_tests::ci_common::StepState::Passed)
    );
    assert_eq!(steps.iter().filter(|s| s.name == "fetch").count(), 1);
}
