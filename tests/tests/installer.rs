//! Installing a job's requirements with uv or pip, as users see it, with the real `ci`, server,
//! controller and Docker: the install step's driver says which installer it uses on the log's
//! first line (`ci-install: installing with uv ...` / `... with pip ...`), uv and pip give the
//! same packages, requirements files with `-e .`, `-c constraints.txt` and `--hash` install
//! under uv, what uv cannot install is installed by pip after a line that says so, and the
//! operator's `--installer` and an image without uv make pip install.
//!
//! The projects are `pytest-fixtures/installer_projects/*` (see its README), submitted from
//! temporary copies; they install from wheels inside the project (`--no-index --find-links
//! wheels`), so nothing needs the network. The image is the harness's (`CI_TEST_IMAGE`), which
//! must carry uv (`scripts/build-runner-image.sh` puts it in).

#[path = "support/client.rs"]
mod support;

#[path = "support/projects.rs"]
mod projects;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use ci_tests::ci_common::JobStatus;
use ci_tests::{require_docker, test_image};
use projects::{copy_fixture, expect_outcome, job_id, stack_with, submit, submit_all};
use support::{job_view, Out, Stack};

/// What the driver prints first when uv installs (`ci-install: installing with uv 0.13.9 (...)`).
const WITH_UV: &str = "installing with uv ";
/// What the driver prints when pip installs (`ci-install: installing with pip 23.0.1 from ...`).
const WITH_PIP: &str = "installing with pip ";
/// What the driver prints when uv failed and pip takes over.
const UV_FAILED: &str = "uv could not install these requirements (exit ";

/// The driver's lines in a job's log, without their `ci-install: ` prefix, in order.
fn install_lines(out: &Out) -> Vec<&str> {
    out.stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("ci-install: "))
        .collect()
}

/// Fails unless the log starts with the driver's first line and the driver's lines start, one
/// for one, with `expected`.
fn expect_install_log(what: &str, out: &Out, expected: &[&str]) {
    let lines = install_lines(out);
    assert!(
        out.stdout.starts_with("ci-install: ")
            && lines.len() == expected.len()
            && lines.iter().zip(expected).all(|(l, e)| l.starts_with(e)),
        "{what}: expected the install log to say {expected:?}, it said {lines:?}\n--- stdout:\n{}",
        out.stdout
    );
}

/// The packages the tests' Python sees, from the `installed: NAME==VERSION` lines the fixtures'
/// `conftest.py` adds to pytest's header (`pip list --format=freeze`, sorted by pip).
fn installed(out: &Out) -> Vec<&str> {
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("installed: "))
        .collect()
}

/// `[tool.ci] installer = "..."` in the project's pyproject.toml.
fn choose_installer(project: &Path, installer: &str) {
    std::fs::write(
        project.join("pyproject.toml"),
        format!("[tool.ci]\ninstaller = \"{installer}\"\n"),
    )
    .unwrap();
}

/// Submits `installer_projects/<name>` once with the default installer (uv: the image has it)
/// and once with `installer = "pip"`, at once; returns (uv's job, pip's job).
async fn with_uv_and_with_pip(name: &str, change: impl Fn(&Path)) -> (Out, Out) {
    let stack = stack_with(&["--max-concurrent-jobs", "2"]).await;
    let (uv, pip) = (
        copy_fixture("installer_projects"),
        copy_fixture("installer_projects"),
    );
    let (uv_dir, pip_dir) = (uv.path.join(name), pip.path.join(name));
    change(&uv_dir);
    change(&pip_dir);
    choose_installer(&pip_dir, "pip");
    let mut outs = submit_all(&stack, &[(&uv_dir, &[]), (&pip_dir, &[])]).into_iter();
    (outs.next().unwrap(), outs.next().unwrap())
}

/// Acceptance: the same project installed by uv (the default) and by pip (`installer = "pip"`)
/// gives the tests the same packages, the dependency between the local wheels resolved alike.
#[tokio::test(flavor = "multi_thread")]
async fn uv_and_pip_install_the_same_packages() {
    let (uv, pip) = with_uv_and_with_pip("same", |_| {}).await;
    expect_outcome("installed by uv", &uv, 0, "3 passed");
    expect_outcome("installed by pip", &pip, 0, "3 passed");
    expect_install_log("installed by uv", &uv, &[WITH_UV]);
    expect_install_log("installed by pip", &pip, &[WITH_PIP]);

    let (by_uv, by_pip) = (installed(&uv), installed(&pip));
    for package in ["alpha==1.0", "beta==1.1", "greetkit==0.3.0"] {
        assert!(
            by_uv.contains(&package),
            "the tests see {package}: {by_uv:?}"
        );
    }
    assert!(
        by_uv.iter().any(|p| p.starts_with("pytest==")),
        "the tests see the image's packages too: {by_uv:?}"
    );
    assert_eq!(
        by_uv, by_pip,
        "uv and pip give the tests the same packages (left: uv, right: pip)"
    );
}

/// Most projects list `pytest` in their requirements, which the image's own pytest (seen
/// through `--system-site-packages`) satisfies. pip leaves it to the image; uv does not count
/// the image's packages (astral-sh/uv#4466), finds no pytest among the local wheels and fails —
/// the case the fallback is for: pip installs, and the tests see what pip alone gives them.
#[tokio::test(flavor = "multi_thread")]
async fn requirements_the_image_already_satisfies_install_alike() {
    let (uv, pip) = with_uv_and_with_pip("same", |project| {
        let file = project.join("requirements.txt");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, format!("{text}pytest>=7\n")).unwrap();
    })
    .await;
    expect_outcome("installed by uv", &uv, 0, "3 passed");
    expect_outcome("installed by pip", &pip, 0, "3 passed");
    expect_install_log("installed by pip", &pip, &[WITH_PIP]);
    assert_eq!(
        installed(&uv),
        installed(&pip),
        "uv and pip give the tests the same packages (left: uv, right: pip)"
    );
    expect_install_log("installed by uv", &uv, &[WITH_UV, UV_FAILED, WITH_PIP]);
}

/// Acceptance: `-e .` of a project whose build backend needs nothing from an index installs
/// under uv, in place (a module added to the working copy later is importable).
#[tokio::test(flavor = "multi_thread")]
async fn an_editable_install_of_the_project_works_under_uv() {
    let stack = Stack::start().await;
    let project = copy_fixture("installer_projects");
    let out = submit(&stack, &project.path.join("editable"), &[]);
    expect_outcome("-e . under uv", &out, 0, "3 passed");
    expect_install_log("-e . under uv", &out, &[WITH_UV]);
}

/// Acceptance: `-c constraints.txt` in requirements.txt, with `--find-links`, picks the older of
/// two local wheels of alpha's dependency under uv.
#[tokio::test(flavor = "multi_thread")]
async fn constraints_choose_the_version_under_uv() {
    let stack = Stack::start().await;
    let project = copy_fixture("installer_projects");
    let out = submit(&stack, &project.path.join("constraints"), &[]);
    expect_outcome("-c constraints.txt under uv", &out, 0, "1 passed");
    expect_install_log("-c constraints.txt under uv", &out, &[WITH_UV]);
}

/// Acceptance: requirements pinned with `--hash` (`--require-hashes`) install under uv; a wheel
/// that is not the one hashed is refused by uv and then by pip, and the job is an error.
#[tokio::test(flavor = "multi_thread")]
async fn hashed_requirements_install_under_uv_and_a_changed_wheel_is_refused() {
    let stack = stack_with(&["--max-concurrent-jobs", "2"]).await;
    let (good, changed) = (
        copy_fixture("installer_projects"),
        copy_fixture("installer_projects"),
    );
    let (good_dir, changed_dir) = (good.path.join("hashes"), changed.path.join("hashes"));
    // Another beta 1.1 than the one hashed: the bytes of beta 1.0 under its name.
    let wheels = changed_dir.join("wheels");
    std::fs::copy(
        wheels.join("beta-1.0-py3-none-any.whl"),
        wheels.join("beta-1.1-py3-none-any.whl"),
    )
    .unwrap();
    let outs = submit_all(&stack, &[(&good_dir, &[]), (&changed_dir, &[])]);

    expect_outcome("--require-hashes under uv", &outs[0], 0, "1 passed");
    expect_install_log("--require-hashes under uv", &outs[0], &[WITH_UV]);

    let refused = &outs[1];
    assert_eq!(
        refused.code,
        Some(1),
        "a wheel that does not match its hash fails the job\n--- stdout:\n{}\n--- stderr:\n{}",
        refused.stdout,
        refused.stderr
    );
    expect_install_log("a changed wheel", refused, &[WITH_UV, UV_FAILED, WITH_PIP]);
    assert!(
        refused
            .stdout
            .contains("THESE PACKAGES DO NOT MATCH THE HASHES"),
        "pip refuses the changed wheel too:\n{}",
        refused.stdout
    );
    let view = job_view(&stack.server.url, &stack.ada.key, &job_id(refused)).await;
    assert_eq!(
        view.status,
        JobStatus::Error,
        "the job is an error (its install failed): {:?}",
        view.reason
    );
}

/// Acceptance, the fallback: `-e .` of a setup.py-only project without an index. uv would build
/// it in isolation and cannot get setuptools; the driver says so and pip installs it (`setup.py
/// develop` with the image's setuptools), and the job passes.
#[tokio::test(flavor = "multi_thread")]
async fn pip_installs_what_uv_cannot_and_says_so() {
    let stack = Stack::start().await;
    let project = copy_fixture("installer_projects");
    let out = submit(&stack, &project.path.join("fallback"), &[]);
    expect_outcome("setup.py -e . without an index", &out, 0, "2 passed");
    expect_install_log(
        "setup.py -e . without an index",
        &out,
        &[WITH_UV, UV_FAILED, WITH_PIP],
    );
    assert!(
        out.stdout.contains("setuptools"),
        "uv's reason (no setuptools to build the project with) is in the log:\n{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Successfully installed alpha-1.0 beta-1.1 legacy-setup-0.1"),
        "pip installed the project and its dependencies:\n{}",
        out.stdout
    );
}

/// A second identical job of a project installed in place: a dependency cache hit when uv built
/// it (PEP 660, its metadata in the environment), an install again when pip ran `setup.py
/// develop` (its metadata is in the project folder); both pass.
#[tokio::test(flavor = "multi_thread")]
async fn a_project_installed_in_place_is_still_installed_on_a_cache_hit() {
    let stack = stack_with(&["--max-concurrent-jobs", "2"]).await;
    let project = copy_fixture("installer_projects");
    let (pep660, setup_py) = (project.path.join("editable"), project.path.join("fallback"));
    let jobs: [(&Path, &[&str]); 2] = [(&pep660, &[]), (&setup_py, &[])];
    let first = submit_all(&stack, &jobs);
    expect_outcome("-e . (PEP 660), first job", &first[0], 0, "3 passed");
    expect_outcome("-e . (setup.py), first job", &first[1], 0, "2 passed");
    let again = submit_all(&stack, &jobs);
    assert!(
        again[0].stderr.contains("[ci] dependency cache hit (key "),
        "-e . (PEP 660): the second job is a cache hit\n{}",
        again[0].stderr
    );
    // `setup.py develop` writes the project's metadata into the project folder, which a cached
    // install cannot restore: such an install is not cached, and says why.
    assert!(
        again[1].stderr.contains("dependency cache: not used (")
            && again[1].stderr.contains("writes into the project"),
        "-e . (setup.py): not cached\n{}",
        again[1].stderr
    );
    expect_outcome("-e . (PEP 660), from the cache", &again[0], 0, "3 passed");
    expect_outcome("-e . (setup.py), again", &again[1], 0, "2 passed");
}

/// Acceptance: `ci-controller --installer pip` wins over the project's `installer = "uv"`.
#[tokio::test(flavor = "multi_thread")]
async fn the_operators_installer_wins_over_the_projects() {
    let stack = stack_with(&["--installer", "pip"]).await;
    let project = copy_fixture("installer_projects");
    let dir = project.path.join("same");
    choose_installer(&dir, "uv");
    let out = submit(&stack, &dir, &[]);
    expect_outcome("--installer pip", &out, 0, "3 passed");
    expect_install_log("--installer pip", &out, &[WITH_PIP]);
}

/// The harness's image without uv, built for one test and removed afterwards.
struct ImageWithoutUv {
    tag: String,
}

impl ImageWithoutUv {
    fn build() -> Self {
        require_docker();
        let tag = format!(
            "citest-nouv:{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let mut build = Command::new("docker")
            .args(["build", "--quiet", "--tag", &tag, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker build");
        let dockerfile = format!("FROM {}\nRUN rm /usr/local/bin/uv\n", test_image());
        build
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
        let out = build.wait_with_output().expect("docker build");
        assert!(
            out.status.success(),
            "cannot build an image without uv:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { tag }
    }
}

impl Drop for ImageWithoutUv {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", "--force", &self.tag])
            .output();
    }
}

/// Acceptance: in an image without uv, pip installs and the log says so; a project that asks
/// for uv is told the image has none.
#[tokio::test(flavor = "multi_thread")]
async fn an_image_without_uv_installs_with_pip() {
    let image = ImageWithoutUv::build();
    let stack = stack_with(&["--image", &image.tag, "--max-concurrent-jobs", "2"]).await;
    let (auto, uv) = (
        copy_fixture("installer_projects"),
        copy_fixture("installer_projects"),
    );
    let (auto_dir, uv_dir) = (auto.path.join("same"), uv.path.join("same"));
    choose_installer(&uv_dir, "uv");
    let outs = submit_all(&stack, &[(&auto_dir, &[]), (&uv_dir, &[])]);
    expect_outcome("no uv in the image", &outs[0], 0, "3 passed");
    expect_install_log("no uv in the image", &outs[0], &[WITH_PIP]);
    expect_outcome(
        "installer = \"uv\", no uv in the image",
        &outs[1],
        0,
        "3 passed",
    );
    expect_install_log(
        "installer = \"uv\", no uv in the image",
        &outs[1],
        &["uv is not in this image: installing with pip", WITH_PIP],
    );
    // The stack (declared after the image) stops first, then the image is removed.
}
