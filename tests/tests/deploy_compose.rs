//! The compose deployment (`deploy/compose.yaml`) as an operator runs it: the service image built
//! offline by `scripts/build-service-image.sh` from the binaries this test run built, two replicas
//! and the controller on one database volume, a user and a key made with ci-admin in the stack,
//! jobs submitted with this machine's `ci`, a job followed across a restart of the replica it
//! streams from, and a teardown that leaves no container, volume or network behind.
//!
//! The stack has a project name of its own, which is also its controller's container prefix, so
//! its job containers never meet those of other tests (and their cleanup never meets its own).

#[path = "support/client.rs"]
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ci_tests::{
    bin, client, docker_lines, fixture, remove_prefix_leftovers, repo_root, require_docker,
    test_image, Output, Proc, WAIT,
};
use support::{job_id_in, run, CiEnv, CiProc, CI_TIMEOUT};

/// How long one docker-compose command or image build may take.
const COMPOSE_TIMEOUT: Duration = Duration::from_secs(300);

/// The Docker socket the controller is given (the compose file's default).
const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Fails the test unless `docker-compose` runs (scripts/test.sh installs it).
fn require_compose() {
    let version = Command::new("docker-compose").arg("version").output();
    assert!(
        version.as_ref().is_ok_and(|out| out.status.success()),
        "docker-compose is not installed or does not run ({version:?}): this test needs it; \
         apt-get install -y docker-compose (scripts/test.sh installs it)"
    );
}

/// Runs `cmd` to its end (killed and failing after [`COMPOSE_TIMEOUT`]), expecting exit 0.
fn ok(name: &str, cmd: Command) -> Output {
    Proc::spawn(name, cmd)
        .finish(COMPOSE_TIMEOUT)
        .expect_code(0)
}

/// Polls `check` every 200 ms until it returns `Some`, failing after `timeout` with `what`.
fn poll<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `docker ARGS` as one trimmed string (stdout), failing unless it exits 0.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A copy of the service's binaries of this test run, so that every build of the image sees the
/// same bytes whatever cargo writes into the target folder meanwhile.
fn copy_binaries() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["ci-server", "ci-controller", "ci-admin"] {
        std::fs::copy(bin(name), dir.path().join(name)).expect("copy a binary");
    }
    dir
}

/// `scripts/build-service-image.sh --tag TAG --bin-dir DIR`.
fn build_service_image(tag: &str, bin_dir: &std::path::Path) -> Output {
    let mut cmd = Command::new(repo_root().join("scripts/build-service-image.sh"));
    cmd.arg("--tag").arg(tag).arg("--bin-dir").arg(bin_dir);
    ok("build-service-image", cmd)
}

/// One compose project: `docker-compose -f deploy/compose.yaml -p PROJECT ...` with the settings
/// of this test. Dropped before [`Compose::down`] (a failed test), it takes everything down.
struct Compose {
    project: String,
    image: String,
    gid: u32,
    taken_down: bool,
}

impl Compose {
    fn command(&self, args: &[&str]) -> Command {
        let file: PathBuf = repo_root().join("deploy/compose.yaml");
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-f")
            .arg(file)
            .args(["-p", &self.project])
            .args(args)
            .env("CI_SERVICE_IMAGE", &self.image)
            .env("CI_RUNNER_IMAGE", test_image())
            .env("CI_CONTAINER_PREFIX", &self.project)
            .env("CI_DOCKER_GID", self.gid.to_string())
            // Ports Docker picks, on 127.0.0.1.
            .env("CI_SERVER1_PORT", "0")
            .env("CI_SERVER2_PORT", "0")
            .env("RUST_LOG", "info")
            .env_remove("CI_ALLOWED_IMAGES")
            .env_remove("CI_DOCKER_SOCKET")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME");
        cmd
    }

    fn ok(&self, args: &[&str]) -> Output {
        ok("docker-compose", self.command(args))
    }

    /// The id of the container of `service`.
    fn container(&self, service: &str) -> String {
        let id = self.ok(&["ps", "-q", service]).stdout.trim().to_owned();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    /// `http://127.0.0.1:PORT` of a replica.
    fn url(&self, service: &str) -> String {
        let address = self.ok(&["port", service, "8000"]).stdout.trim().to_owned();
        assert!(
            address.starts_with("127.0.0.1:"),
            "{service} is published on 127.0.0.1 only, not {address:?}"
        );
        format!("http://{address}")
    }

    /// Waits until Docker's health check says `service` is healthy.
    fn wait_healthy(&self, service: &str) {
        let id = self.container(service);
        poll(&format!("{service} to be healthy"), WAIT, || {
            let status = docker(&["inspect", "-f", "{{.State.Health.Status}}", &id]);
            (status == "healthy").then_some(())
        });
    }

    /// Waits until the controller says it is ready, failing early with its log if it stops.
    fn wait_controller_ready(&self) {
        let id = self.container("controller");
        poll("the controller to be ready", WAIT, || {
            let logs = Command::new("docker")
                .args(["logs", &id])
                .output()
                .expect("docker logs");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
            let state = docker(&["inspect", "-f", "{{.State.Status}}", &id]);
            assert!(
                state == "running",
                "the controller is {state}, not running:\n{text}"
            );
            text.contains("controller ready").then_some(())
        });
    }

    /// `docker-compose down -v`, then checks that nothing of the project is left.
    fn down(&mut self) {
        self.ok(&["down", "-v", "--remove-orphans"]);
        self.taken_down = true;
        let name = format!("name={}", self.project);
        let project = format!("label=com.docker.compose.project={}", self.project);
        for (what, list) in [
            ("container", &["ps", "-a", "-q"][..]),
            ("volume", &["volume", "ls", "-q"][..]),
            ("network", &["network", "ls", "-q"][..]),
        ] {
            for filter in [&name, &project] {
                let left = docker_lines(&[list, &["--filter", filter.as_str()]].concat());
                assert!(left.is_empty(), "{what}s left behind ({filter}): {left:?}");
            }
        }
        // What the stack's controller made on the host's Docker: job containers and volumes, and
        // the dependency and pip caches.
        for filter in ["ci.prefix", "ci.cache", "ci.pip_cache"] {
            let filter = format!("label={filter}={}", self.project);
            let containers = docker_lines(&["ps", "-a", "-q", "--filter", &filter]);
            assert!(
                containers.is_empty(),
                "job containers left behind: {containers:?}"
            );
            let volumes = docker_lines(&["volume", "ls", "-q", "--filter", &filter]);
            assert!(volumes.is_empty(), "job volumes left behind: {volumes:?}");
        }
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if !self.taken_down {
            let _ = self
                .command(&["down", "-v", "--remove-orphans", "-t", "5"])
                .output();
            remove_prefix_leftovers(&self.project);
        }
        let _ = Command::new("docker")
            .args(["image", "rm", &self.image])
            .output();
    }
}

/// Seconds since `start`, for the log of each phase.
fn elapsed(start: Instant) -> String {
    format!("{:.1}s", start.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compose_stack_runs_jobs_across_a_replica_restart_and_leaves_nothing_behind() {
    require_docker();
    require_compose();
    let start = Instant::now();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let id = &id[..10];
    let project = format!("cicompose-{id}");
    let image = format!("ci-service:e2e-{id}");
    let gid = std::fs::metadata(DOCKER_SOCKET)
        .unwrap_or_else(|e| panic!("the Docker socket {DOCKER_SOCKET} is needed here: {e}"))
        .gid();

    // The image, from the binaries already built; a second run has nothing to do.
    let mut stack = Compose {
        project,
        image,
        gid,
        taken_down: false,
    };
    let binaries = copy_binaries();
    build_service_image(&stack.image, binaries.path());
    let again = build_service_image(&stack.image, binaries.path());
    assert!(
        again
            .stderr
            .contains(&format!("image {} is up to date", stack.image)),
        "a second build with the same binaries does nothing:\n{}",
        again.stderr
    );
    eprintln!("[deploy_compose] image built at {}", elapsed(start));

    stack.ok(&["up", "-d"]);
    let (url1, url2) = (stack.url("server1"), stack.url("server2"));
    stack.wait_controller_ready();
    eprintln!("[deploy_compose] stack up at {}", elapsed(start));

    // Who may do what: the replicas have no Docker socket, the controller has it with its group;
    // every service runs as the user ci.
    for service in ["server1", "server2", "controller"] {
        let id = stack.container(service);
        let mounts = docker(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Destination}} {{end}}",
            &id,
        ]);
        assert_eq!(
            mounts.contains(DOCKER_SOCKET),
            service == "controller",
            "{service} mounts {mounts}"
        );
        assert_eq!(docker(&["inspect", "-f", "{{.Config.User}}", &id]), "ci");
    }
    let controller = stack.container("controller");
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{json .HostConfig.GroupAdd}}",
            &controller
        ]),
        format!("[\"{gid}\"]")
    );

    // A user and a key, made with ci-admin in the stack.
    stack.ok(&[
        "run",
        "--rm",
        "-T",
        "admin",
        "user",
        "create",
        "--name",
        "Compose",
        "--email",
        "compose@example.com",
    ]);
    let created = stack.ok(&[
        "run",
        "--rm",
        "-T",
        "admin",
        "key",
        "create",
        "--email",
        "compose@example.com",
        "--name",
        "e2e",
    ]);
    let key = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("API Key: "))
        .unwrap_or_else(|| panic!("no API key in:\n{}", created.stdout))
        .trim()
        .to_owned();

    // A passing and a failing project, with this machine's ci, through both replicas.
    let env = CiEnv::new();
    let servers = format!("{url1},{url2}");
    let passing = CiProc::spawn(env.ci(&servers, &key, &fixture("passing"), &["submit", "test"]));
    let failing = CiProc::spawn(env.ci(&servers, &key, &fixture("failing"), &["submit", "test"]));
    let passed = passing.finish(CI_TIMEOUT).expect_code(0);
    assert!(passed.stderr.contains("passed"), "{}", passed.stderr);
    let failed = failing.finish(CI_TIMEOUT).expect_code(1);
    assert!(failed.stderr.contains("failed"), "{}", failed.stderr);
    eprintln!(
        "[deploy_compose] passing and failing jobs done at {}",
        elapsed(start)
    );

    for service in ["server1", "server2", "controller"] {
        stack.wait_healthy(service);
    }

    // A job followed on replica 1, which restarts: ci continues on replica 2, every line once.
    let here = fixture("slow_lines");
    let mut ci = CiProc::spawn(env.ci(&servers, &key, &here, &["submit", "test"]));
    let job = job_id_in(&ci.wait_for_line("Job ID: ", CI_TIMEOUT));
    ci.wait_for_line("tick 3", CI_TIMEOUT);
    let running = docker_lines(&[
        "ps",
        "--filter",
        &format!("label=ci.prefix={}", stack.project),
        "--format",
        "{{.Names}}",
    ]);
    assert!(
        !running.is_empty() && running.iter().all(|n| n.starts_with(&stack.project)),
        "the job's container is named and labelled with the stack's prefix: {running:?}"
    );
    stack.ok(&["restart", "server1"]);
    let out = ci.finish(CI_TIMEOUT).expect_code(0);
    support::assert_followed_every_tick(&out, &job, "the restart cut the stream");
    let all = run(env.ci(&url2, &key, &here, &["wait", &job, "--all"])).expect_code(0);
    assert_eq!(out.stdout, all.stdout, "the stored log is what was printed");
    eprintln!(
        "[deploy_compose] followed across a restart at {}",
        elapsed(start)
    );

    // The restarted replica serves again.
    let url1 = stack.url("server1");
    let ready = client()
        .get(format!("{url1}/ready"))
        .send()
        .await
        .expect("GET /ready");
    assert_eq!(ready.status(), 200);

    stack.down();
    eprintln!("[deploy_compose] taken down at {}", elapsed(start));
}
