//! The offline runner image (`scripts/build-runner-image.sh`): pytest runs in it as a non-root
//! user on a read-only root filesystem, and building it again does nothing.

use std::process::Command;

use ci_tests::{repo_root, require_docker, test_image};

fn run_in_image(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args([
            "run",
            "--rm",
            "--user",
            "1000:1000",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--network",
            "none",
        ])
        .arg(test_image())
        .args(args)
        .output()
        .expect("docker run")
}

#[test]
fn pytest_runs_as_a_non_root_user_on_a_read_only_root() {
    require_docker();
    let out = run_in_image(&["python3", "-m", "pytest", "--version"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pytest --version failed: {text}");
    assert!(text.contains("pytest "), "{text}");

    let out = run_in_image(&[
        "python3",
        "-c",
        "import os; print(os.getuid(), os.getgid())",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000 1000");
}

#[test]
fn building_the_image_again_does_nothing() {
    require_docker();
    let before = image_id();
    let out = Command::new(repo_root().join("scripts/build-runner-image.sh"))
        .args(["--tag", &test_image()])
        .output()
        .expect("build-runner-image.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(image_id(), before, "an existing image is kept as it is");
}

fn image_id() -> String {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &test_image()])
        .output()
        .expect("docker image inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
