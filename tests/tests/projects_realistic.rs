//! Real-world-shaped Python projects (`pytest-fixtures/realistic_*`) through `ci submit test`:
//! each one's pytest summary and exit code are those of `python3 -m pytest` run by hand in the
//! same runner image, and those are the counts the fixture's README promises.
//!
//! One stack serves every project; all projects are submitted at once, and run by hand at the
//! same time.

#[path = "support/client.rs"]
mod support;

#[path = "support/projects.rs"]
mod projects;

use ci_tests::{require_docker, test_image};
use projects::{copy_fixture, manual_pytest, pytest_summary, submit_all, Install, Manual};
use support::{Out, Stack};

/// A realistic project, what installs its requirements, and what pytest says about it.
struct Realistic {
    name: &'static str,
    install: Install,
    summary: &'static str,
    code: i32,
}

const PROJECTS: &[Realistic] = &[
    // src/ layout installed through requirements.txt `-e .` (setup.py only); session and
    // yield fixtures in conftest.py; pytest.ini; .coveragerc.
    Realistic {
        name: "realistic_srclayout",
        install: Install::Requirements("requirements.txt"),
        summary: "14 passed",
        code: 0,
    },
    // pyproject.toml only: [project] with a `test` extra (ci installs `.[test]` through the
    // in-tree backend), [tool.pytest.ini_options] with testpaths, markers and
    // `-ra --strict-markers -m 'not slow'`.
    Realistic {
        name: "realistic_pyproject",
        install: Install::ProjectExtra("test"),
        summary: "11 passed, 1 deselected",
        code: 0,
    },
    // A project plugin through `pytest_plugins`, doctest modules, markers, ids, xfail strict
    // and not, skip, skipif, importorskip.
    Realistic {
        name: "realistic_plugins",
        install: Install::None,
        summary: "14 passed, 5 skipped, 2 xfailed, 1 xpassed",
        code: 0,
    },
    // Data files next to the tests: non-ASCII names and content, a binary file, data-only
    // folders, an empty file.
    Realistic {
        name: "realistic_datafiles",
        install: Install::None,
        summary: "13 passed",
        code: 0,
    },
    // tmp_path, tmp_path_factory, monkeypatch, capsys, capfd, caplog, subprocess (python3 -c
    // and an executable shell script of the project), non-ASCII output.
    Realistic {
        name: "realistic_stdlib_fixtures",
        install: Install::None,
        summary: "12 passed",
        code: 0,
    },
    // A real bug: two tests fail, and ci says so.
    Realistic {
        name: "realistic_failing",
        install: Install::None,
        summary: "2 failed, 5 passed",
        code: 1,
    },
];

#[tokio::test(flavor = "multi_thread")]
async fn realistic_projects_give_the_same_pytest_summary_as_a_manual_run() {
    require_docker();
    let stack = Stack::start().await;
    let image = test_image();

    let copies: Vec<_> = PROJECTS.iter().map(|p| copy_fixture(p.name)).collect();
    let jobs: Vec<(&std::path::Path, &[&str])> =
        copies.iter().map(|c| (c.path.as_path(), &[][..])).collect();
    // The manual runs go on in other threads while `ci` waits for its jobs.
    let (submitted, manual): (Vec<Out>, Vec<Manual>) = std::thread::scope(|s| {
        let manual: Vec<_> = PROJECTS
            .iter()
            .map(|p| {
                let image = image.clone();
                s.spawn(move || manual_pytest(&image, p.name, p.install))
            })
            .collect();
        let submitted = submit_all(&stack, &jobs);
        let manual = manual.into_iter().map(|h| h.join().unwrap()).collect();
        (submitted, manual)
    });

    let mut problems = Vec::new();
    for ((project, out), by_hand) in PROJECTS.iter().zip(&submitted).zip(&manual) {
        let name = project.name;
        let via_ci = pytest_summary(&out.stdout);
        if by_hand.summary.as_deref() != Some(project.summary) || by_hand.code != Some(project.code)
        {
            problems.push(format!(
                "{name}: by hand, expected `{}` (exit {}), got {:?} (exit {:?}): the fixture \
                 does not do what its README says\n{}",
                project.summary, project.code, by_hand.summary, by_hand.code, by_hand.output
            ));
        }
        if via_ci != by_hand.summary || out.code != Some(project.code) {
            problems.push(format!(
                "{name}: through ci {via_ci:?} (exit {:?}), by hand {:?} (exit {:?})\n\
                 --- ci stdout:\n{}\n--- ci stderr:\n{}",
                out.code, by_hand.summary, by_hand.code, out.stdout, out.stderr
            ));
        }
        if out.stderr.contains("panicked") {
            problems.push(format!("{name}: ci panicked:\n{}", out.stderr));
        }
    }
    let table: Vec<String> = PROJECTS
        .iter()
        .zip(&submitted)
        .zip(&manual)
        .map(|((p, out), by_hand)| {
            format!(
                "  {:<28} expected {:<45} by hand {:<45} ci {:<45} ci exit {:?}",
                p.name,
                format!("{} (exit {})", p.summary, p.code),
                format!("{:?} (exit {:?})", by_hand.summary, by_hand.code),
                format!("{:?}", pytest_summary(&out.stdout)),
                out.code
            )
        })
        .collect();
    eprintln!("realistic projects:\n{}", table.join("\n"));
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n\n{}",
        problems.len(),
        table.join("\n"),
        problems.join("\n\n")
    );
}

#[test]
fn pytest_summary_lines_are_read_without_their_duration() {
    assert_eq!(
        pytest_summary("x\n===== 3 passed, 1 skipped in 0.12s =====\n").as_deref(),
        Some("3 passed, 1 skipped")
    );
    assert_eq!(
        pytest_summary("1 failed, 2 passed in 62.01s (0:01:02)").as_deref(),
        Some("1 failed, 2 passed")
    );
    assert_eq!(
        pytest_summary("=== 1 passed, 6 deselected in 0.05s ===\n[ci] done").as_deref(),
        Some("1 passed, 6 deselected")
    );
    assert_eq!(
        pytest_summary("=== no tests ran in 0.01s ===").as_deref(),
        Some("no tests ran")
    );
    assert_eq!(pytest_summary("nothing in 3 days"), None);
    assert_eq!(pytest_summary("printed 5 passed in 0.1s by a test"), None);
}
