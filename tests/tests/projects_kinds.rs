//! One fixture per kind of thing real projects need (`pytest-fixtures/kinds_*`), each submitted
//! with the real `ci` against a real server, controller and Docker, asserting what the user
//! sees: the exit code, pytest's summary, and the lines that matter.
//!
//! Every project is submitted from a temporary copy (so that neither the repository's ignore
//! files nor earlier runs play a part, and so that what git cannot store, an empty folder or a
//! 0750 mode, can be set up).

#[path = "support/client.rs"]
mod support;

#[path = "support/projects.rs"]
mod projects;

use ci_tests::{require_docker, test_image_nopasswd};
use projects::{chmod, copy_fixture, expect_outcome, job_id, stack_with, submit, submit_all};
use support::{run, Stack};

// ---------------------------------------------------------------------------------------------
// a. file modes

/// Nested executables keep their executable bit (and run by relative path), plain files stay
/// plain.
#[tokio::test(flavor = "multi_thread")]
async fn executable_bits_survive_the_upload() {
    let stack = Stack::start().await;
    let project = copy_fixture("kinds_exec_bits");
    // git stores only 0755/0644: give the Python script the 0750 a user may well have.
    chmod(&project.path.join("scripts/release/bump_version.py"), 0o750);
    chmod(&project.path.join("tools/bin/lint.sh"), 0o755);
    chmod(&project.path.join("data/notes.txt"), 0o644);
    chmod(&project.path.join("data/not_a_tool.sh"), 0o644);
    let out = submit(&stack, &project.path, &[]);
    expect_outcome("kinds_exec_bits", &out, 0, "6 passed");
}

// ---------------------------------------------------------------------------------------------
// b. multi-byte UTF-8 in long lines

/// `é日🚀` (2 + 3 + 4 bytes) repeated: see pytest-fixtures/kinds_utf8_cuts/README.md.
const UNIT: &str = "é日🚀";
const REPEAT: usize = 5000;

fn long_line(r: usize) -> String {
    format!("BEGIN{r}|{}{}|END{r}", ".".repeat(r), UNIT.repeat(REPEAT))
}

/// Checks one rendering of the kinds_utf8_cuts log (`ci submit`'s or `ci wait --all`'s stdout):
/// every long line arrives whole once its pieces are joined, each piece at most `max_line`
/// bytes, and the only U+FFFD is the one of the invalid byte.
fn check_utf8_log(what: &str, stdout: &str, max_line: usize) {
    let lines: Vec<&str> = stdout.lines().collect();
    for r in 0..9 {
        let begin = format!("BEGIN{r}|");
        let end = format!("|END{r}");
        let first = lines
            .iter()
            .position(|l| l.contains(&begin))
            .unwrap_or_else(|| panic!("{what}: no line with {begin:?} in the log"));
        let mut pieces = vec![&lines[first][lines[first].find(&begin).unwrap()..]];
        let mut i = first;
        while !pieces.last().unwrap().contains(&end) {
            i += 1;
            assert!(
                i < lines.len(),
                "{what}: the end marker {end:?} of line {r} is missing ({} pieces after {begin:?})",
                pieces.len()
            );
            pieces.push(lines[i]);
        }
        let last = pieces.pop().unwrap();
        assert!(
            last.ends_with(&end),
            "{what}: line {r} does not end at its end marker: the next output was joined to it \
             ({:?})",
            last[last.find(&end).unwrap()..]
                .chars()
                .take(40)
                .collect::<String>()
        );
        pieces.push(last);
        let joined = pieces.concat();
        let count = |c: char| joined.chars().filter(|x| *x == c).count();
        assert_eq!(
            (count('\u{FFFD}'), count('é'), count('日'), count('🚀')),
            (0, REPEAT, REPEAT, REPEAT),
            "{what}: line {r} (prefix {} bytes) arrived in {} pieces of {:?} bytes; counts of \
             (U+FFFD, é, 日, 🚀) are wrong",
            7 + r,
            pieces.len(),
            pieces.iter().map(|p| p.len()).collect::<Vec<_>>()
        );
        assert!(
            joined == long_line(r),
            "{what}: line {r} arrived altered ({} bytes instead of {})",
            joined.len(),
            long_line(r).len()
        );
        assert!(
            pieces.len() >= long_line(r).len().div_ceil(max_line),
            "{what}: line {r} ({} bytes) should have been split at {max_line} bytes, arrived in {} \
             piece(s)",
            joined.len(),
            pieces.len()
        );
        for piece in &pieces {
            assert!(
                piece.len() <= max_line,
                "{what}: a piece of line {r} has {} bytes, more than {max_line}",
                piece.len()
            );
        }
    }
    assert!(
        lines.contains(&"BADBYTE|\u{FFFD}|BADBYTE"),
        "{what}: the line with one invalid byte should read BADBYTE|\u{FFFD}|BADBYTE"
    );
    let replacements = stdout.matches('\u{FFFD}').count();
    assert_eq!(
        replacements, 1,
        "{what}: U+FFFD appears {replacements} times; only the invalid byte should give one"
    );
}

/// Runs kinds_utf8_cuts on a stack whose controller splits lines at `max_line` bytes, and
/// checks the live log of `ci submit` and the stored one of `ci wait --all`.
async fn utf8_cuts(controller_args: &[&str], max_line: usize) {
    let stack = stack_with(controller_args).await;
    let project = copy_fixture("kinds_utf8_cuts");
    let out = submit(&stack, &project.path, &[]);
    expect_outcome("kinds_utf8_cuts", &out, 0, "2 passed");
    check_utf8_log("ci submit", &out.stdout, max_line);
    let id = job_id(&out);
    let all = run(stack.ci(&project.path, &["wait", &id, "--all"])).expect_code(0);
    check_utf8_log("ci wait --all", &all.stdout, max_line);
}

#[tokio::test(flavor = "multi_thread")]
async fn long_utf8_lines_arrive_whole_with_the_default_16k_split() {
    utf8_cuts(&[], 16 << 10).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn long_utf8_lines_arrive_whole_with_a_10000_byte_split() {
    utf8_cuts(&["--max-line-bytes", "10000"], 10_000).await;
}

// ---------------------------------------------------------------------------------------------
// c. the project's pytest configuration wins, cache plugin included

#[tokio::test(flavor = "multi_thread")]
async fn cache_plugin_options_in_addopts_work() {
    let stack = Stack::start().await;
    let project = copy_fixture("kinds_cache_addopts");
    let out = submit(&stack, &project.path, &[]);
    expect_outcome("kinds_cache_addopts", &out, 0, "5 passed");
    assert!(
        out.stdout
            .contains("run-last-failure: no previously failed tests"),
        "--lf from setup.cfg's addopts is in effect:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("cachedir: .cache/pytest"),
        "cache_dir from setup.cfg:\n{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// d. console scripts of installed requirements, from requirements-dev.txt

#[tokio::test(flavor = "multi_thread")]
async fn console_scripts_from_requirements_dev_run_by_name() {
    let stack = Stack::start().await;
    let project = copy_fixture("kinds_console_scripts");
    assert!(!project.path.join("requirements.txt").exists());
    let out = submit(&stack, &project.path, &[]);
    expect_outcome("kinds_console_scripts", &out, 0, "4 passed");
    assert!(
        installed(&out.stdout, "greetkit", Some("0.3.0")),
        "requirements-dev.txt was installed:\n{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// e. identity and environment

/// Runs kinds_identity and checks what it printed: the user name and the job id.
fn check_identity(stack: &Stack) {
    let project = copy_fixture("kinds_identity");
    let out = submit(stack, &project.path, &[]);
    expect_outcome("kinds_identity", &out, 0, "7 passed");
    let id = job_id(&out);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim() == format!("CI_JOB_ID={id}")),
        "the job sees its own id (CI_JOB_ID={id}):\n{}",
        out.stdout
    );
    let identity = out
        .stdout
        .lines()
        .find(|l| l.starts_with("IDENTITY user="))
        .unwrap_or_else(|| panic!("no IDENTITY line:\n{}", out.stdout));
    assert!(
        identity.contains(" uid=1000 gid=1000 "),
        "the job runs as 1000:1000: {identity}"
    );
    assert!(
        !identity.starts_with("IDENTITY user= "),
        "a user name: {identity}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_and_environment_in_the_runner_image() {
    let stack = Stack::start().await;
    check_identity(&stack);
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_and_environment_in_an_image_without_a_passwd_entry() {
    require_docker();
    let image = test_image_nopasswd();
    let present = std::process::Command::new("docker")
        .args(["image", "inspect", &image])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        present,
        "the image {image} (uid 1000 without a passwd entry) is missing: run \
         scripts/build-test-images.sh (or set CI_TEST_IMAGE_NOPASSWD)"
    );
    let stack = stack_with(&["--image", &image]).await;
    check_identity(&stack);
}

// ---------------------------------------------------------------------------------------------
// f. dotfiles, empty folders, .env secrets

#[tokio::test(flavor = "multi_thread")]
async fn dotfiles_and_empty_folders_are_uploaded_but_env_secrets_are_not() {
    let stack = Stack::start().await;
    let project = copy_fixture("kinds_dotfiles");
    // Git cannot store an empty folder: make one.
    std::fs::create_dir(project.path.join("output")).unwrap();
    for name in [
        ".env",
        ".env.local",
        ".env.example",
        ".env.sample",
        ".coveragerc",
    ] {
        assert!(project.path.join(name).is_file(), "{name} in the fixture");
    }
    let out = submit(&stack, &project.path, &[]);
    expect_outcome("kinds_dotfiles", &out, 0, "6 passed");
    let named = |file: &str| {
        out.stderr.lines().any(|l| {
            l.split(|c: char| c.is_whitespace() || ",;:()[]'\"`".contains(c))
                .any(|word| word == file)
        })
    };
    assert!(
        named(".env") && named(".env.local"),
        "stderr names the .env files it left out:\n{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("fake-token") && !out.stdout.contains("fake-password"),
        "no secret in the log:\n{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// g. test discovery through the project's configuration; the pre-upload check

/// No tests/ folder, no test_*.py: tox.ini's [pytest] names `checks/check_*.py`.
#[tokio::test(flavor = "multi_thread")]
async fn tests_found_only_through_tox_ini_are_accepted_and_run() {
    let stack = Stack::start().await;
    let project = copy_fixture("kinds_discovery_tox");
    let out = submit(&stack, &project.path, &[]);
    expect_outcome("kinds_discovery_tox", &out, 0, "6 passed");
    assert!(
        out.stdout
            .contains("checks/check_table.py::CheckTable::check_header PASSED"),
        "python_classes/python_functions from tox.ini:\n{}",
        out.stdout
    );
}

/// No tests/ folder, no test_*.py: Django-style `shop/tests.py`, named in setup.cfg.
#[tokio::test(flavor = "multi_thread")]
async fn django_style_tests_py_is_accepted_and_run() {
    let stack = Stack::start().await;
    let project = copy_fixture("kinds_discovery_testspy");
    let out = submit(&stack, &project.path, &[]);
    expect_outcome("kinds_discovery_testspy", &out, 0, "5 passed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_folder_without_any_python_file_is_refused_before_upload() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("tests")).unwrap();
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::write(root.join("README.md"), "# Not Python\n").unwrap();
    std::fs::write(root.join("data.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(root.join("tests/notes.txt"), "tests go here one day\n").unwrap();
    std::fs::write(root.join("scripts/build.sh"), "#!/bin/sh\necho build\n").unwrap();
    let out = run(stack.ci(root, &["submit", "test"])).expect_code(1);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.to_lowercase().contains("python"),
        "a one-line error saying there is no Python here:\n{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("Job ID"),
        "nothing was uploaded:\n{}",
        out.stderr
    );
    let list = run(stack.ci(root, &["list", "--json"])).expect_code(0);
    assert_eq!(list.stdout.trim(), "[]", "no job was created");
}

// ---------------------------------------------------------------------------------------------
// h. installing the project itself

#[tokio::test(flavor = "multi_thread")]
async fn requirements_with_dash_e_dot_install_the_project_itself() {
    let stack = Stack::start().await;
    let project = copy_fixture("kinds_install_self");
    let out = submit(&stack, &project.path, &[]);
    expect_outcome("kinds_install_self", &out, 0, "4 passed");
    assert!(
        installed(&out.stdout, "unitconv", None),
        "the project was installed:\n{}",
        out.stdout
    );
}

/// Whether the install step's log says it installed `name` (at `version`), as pip says it
/// (`Successfully installed greetkit-0.3.0`) or uv (` + greetkit==0.3.0`).
fn installed(log: &str, name: &str, version: Option<&str>) -> bool {
    let (pip, uv) = match version {
        Some(v) => (format!("{name}-{v}"), format!("+ {name}=={v}")),
        None => (format!("{name}-"), format!("+ {name}==")),
    };
    log.lines().any(|l| {
        (l.starts_with("Successfully installed") && l.contains(&pip))
            || l.trim_start().starts_with(&uv)
    })
}

// ---------------------------------------------------------------------------------------------
// i. extra pytest arguments

#[tokio::test(flavor = "multi_thread")]
async fn extra_pytest_arguments_after_a_double_dash_reach_pytest() {
    let stack = Stack::start().await;
    let project = copy_fixture("kinds_extra_args");
    let outs = submit_all(
        &stack,
        &[
            (project.path.as_path(), &[]),
            (project.path.as_path(), &["-k", "refund_partial"]),
            (project.path.as_path(), &["-x", "tests/test_payments.py"]),
        ],
    );
    expect_outcome("kinds_extra_args, whole", &outs[0], 1, "2 failed, 5 passed");
    expect_outcome(
        "kinds_extra_args -- -k refund_partial",
        &outs[1],
        0,
        "1 passed, 6 deselected",
    );
    assert!(
        outs[1].stdout.contains("test_refund_partial PASSED"),
        "the selected test ran:\n{}",
        outs[1].stdout
    );
    expect_outcome(
        "kinds_extra_args -- -x tests/test_payments.py",
        &outs[2],
        1,
        "1 failed, 3 passed",
    );
    assert!(
        outs[2].stdout.contains("stopping after 1 failures"),
        "-x stopped the run:\n{}",
        outs[2].stdout
    );
    assert!(
        !outs[2].stdout.contains("test_reports.py"),
        "only the given path ran:\n{}",
        outs[2].stdout
    );
}
