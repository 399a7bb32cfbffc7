//! The offline runner image (`scripts/build-runner-image.sh`): pytest runs in it as a non-root
//! user on a read-only root filesystem, it carries the hash of its recipe, and building it again
//! does nothing unless the recipe changed. The derived test image without a user for uid 1000
//! (`scripts/build-test-images.sh`) runs pytest as that uid and is rebuilt only with its base.

use std::process::Command;

use ci_tests::{repo_root, require_docker, test_image, test_image_nopasswd, Output};

fn run_in(image: &str, args: &[&str]) -> std::process::Output {
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
        .arg(image)
        .args(args)
        .output()
        .expect("docker run")
}

fn run_in_image(args: &[&str]) -> std::process::Output {
    run_in(&test_image(), args)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `scripts/NAME ARGS` and returns what it printed and its exit code.
fn script(name: &str, args: &[&str]) -> Output {
    let out = Command::new(repo_root().join("scripts").join(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/{name}: {e}"));
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `docker image inspect --format FORMAT IMAGE`, or `None` when the image does not exist.
fn inspect(image: &str, format: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", format, image])
        .output()
        .expect("docker image inspect");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn image_id(image: &str) -> String {
    inspect(image, "{{.Id}}").unwrap_or_else(|| panic!("image {image} does not exist"))
}

fn label(image: &str, name: &str) -> String {
    inspect(image, &format!("{{{{index .Config.Labels {name:?}}}}}"))
        .unwrap_or_else(|| panic!("image {image} does not exist"))
}

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        text(&out)
    );
}

/// The current recipe hash, as the build script computes it.
fn recipe_hash() -> String {
    let out = script("build-runner-image.sh", &["--print-recipe-hash"]).expect_code(0);
    let hash = out.stdout.trim().to_owned();
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "not a SHA-256: {hash:?}"
    );
    hash
}

#[test]
fn pytest_runs_as_a_non_root_user_on_a_read_only_root() {
    require_docker();
    let out = run_in_image(&["python3", "-m", "pytest", "--version"]);
    let text = text(&out);
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
fn the_image_carries_its_recipe_hash() {
    require_docker();
    assert_eq!(
        label(&test_image(), "ci.recipe"),
        recipe_hash(),
        "the image's ci.recipe label is the script's current recipe hash (rebuild it with scripts/build-runner-image.sh)"
    );
}

#[test]
fn building_the_image_again_does_nothing() {
    require_docker();
    let image = test_image();
    let before = image_id(&image);
    let out = script("build-runner-image.sh", &["--tag", &image]).expect_code(0);
    assert!(
        out.stderr
            .contains(&format!("image {image} is up to date (recipe ")),
        "{}",
        out.stderr
    );
    assert_eq!(
        image_id(&image),
        before,
        "an up-to-date image is kept as it is"
    );
}

/// Throwaway copies of the runner image, removed on drop.
struct Throwaway {
    repo: String,
    tags: Vec<String>,
}

impl Throwaway {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            repo: format!("ci-runner-test-{}", &id[..10]),
            tags: Vec::new(),
        }
    }

    /// A tag in this throwaway repository (not created).
    fn tag(&mut self, name: &str) -> String {
        let tag = format!("{}:{name}", self.repo);
        self.tags.push(tag.clone());
        tag
    }

    /// The runner image under another tag (same image id, same labels).
    fn alias(&mut self, name: &str) -> String {
        let tag = self.tag(name);
        docker(&["tag", &test_image(), &tag]);
        tag
    }

    /// The runner image's file system and config with the label `ci.recipe=VALUE`, without
    /// running anything (a created container, committed).
    fn relabelled(&mut self, name: &str, value: &str) -> String {
        let tag = self.tag(name);
        let container = format!("{}-{name}", self.repo);
        docker(&["create", "--name", &container, &test_image()]);
        let commit = Command::new("docker")
            .args(["commit", "--change", &format!("LABEL ci.recipe={value}")])
            .args([&container, &tag])
            .output()
            .expect("docker commit");
        docker(&["rm", &container]);
        assert!(commit.status.success(), "docker commit: {}", text(&commit));
        assert_eq!(label(&tag, "ci.recipe"), value);
        tag
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        for tag in &self.tags {
            let _ = Command::new("docker").args(["image", "rm", tag]).output();
        }
    }
}

#[test]
fn a_changed_recipe_means_a_rebuild() {
    require_docker();
    let current = recipe_hash();
    let mut images = Throwaway::new();

    let same = images.alias("same");
    let out = script("build-runner-image.sh", &["--tag", &same, "--check"]).expect_code(0);
    assert!(
        out.stderr.contains(&format!(
            "image {same} is up to date (recipe {})",
            &current[..12]
        )),
        "{}",
        out.stderr
    );

    let stale = images.relabelled("stale", "0123456789abcdef");
    let before = image_id(&stale);
    let out = script("build-runner-image.sh", &["--tag", &stale, "--check"]).expect_code(3);
    assert!(
        out.stderr.contains(&format!(
            "would rebuild {stale}: the recipe changed: image {stale} has recipe 0123456789ab, the current recipe is {}",
            &current[..12]
        )),
        "{}",
        out.stderr
    );
    assert_eq!(image_id(&stale), before, "--check builds nothing");

    let unlabelled = images.relabelled("unlabelled", "");
    let out = script("build-runner-image.sh", &["--tag", &unlabelled, "--check"]).expect_code(3);
    assert!(
        out.stderr.contains(&format!(
            "would rebuild {unlabelled}: the recipe changed: image {unlabelled} has no ci.recipe label"
        )),
        "{}",
        out.stderr
    );

    let missing = images.tag("missing");
    let out = script("build-runner-image.sh", &["--tag", &missing, "--check"]).expect_code(3);
    assert!(
        out.stderr.contains(&format!(
            "would rebuild {missing}: image {missing} does not exist"
        )),
        "{}",
        out.stderr
    );
    assert!(
        inspect(&missing, "{{.Id}}").is_none(),
        "--check builds nothing"
    );

    let out = script(
        "build-runner-image.sh",
        &["--tag", &same, "--check", "--force"],
    )
    .expect_code(3);
    assert!(out.stderr.contains("--force given"), "{}", out.stderr);
}

/// The no-passwd test image, which must exist (scripts/test.sh builds it).
fn require_nopasswd_image() -> String {
    require_docker();
    let image = test_image_nopasswd();
    assert!(
        inspect(&image, "{{.Id}}").is_some(),
        "the test image {image} is missing: run scripts/build-test-images.sh"
    );
    image
}

#[test]
fn uid_1000_has_no_user_in_the_nopasswd_image_and_pytest_runs_as_it() {
    let image = require_nopasswd_image();
    let out = run_in(&image, &["python3", "-c", "import pwd; pwd.getpwuid(1000)"]);
    let output = text(&out);
    assert!(
        !out.status.success(),
        "uid 1000 has a passwd entry: {output}"
    );
    assert!(output.contains("KeyError"), "{output}");

    let out = run_in(&image, &["python3", "-m", "pytest", "--version"]);
    let output = text(&out);
    assert!(out.status.success(), "pytest --version failed: {output}");
    assert!(output.contains("pytest "), "{output}");

    // A real test session (rootdir, cache, tmp_path) as a uid without a user.
    let out = run_in(
        &image,
        &[
            "sh",
            "-c",
            "cd /tmp && printf 'def test_tmp(tmp_path):\\n    assert tmp_path.is_dir()\\n' >test_x.py && python3 -m pytest -q test_x.py",
        ],
    );
    let output = text(&out);
    assert!(out.status.success(), "pytest failed: {output}");
    assert!(output.contains("1 passed"), "{output}");
}

#[test]
fn building_the_nopasswd_image_again_does_nothing() {
    let image = require_nopasswd_image();
    let before = image_id(&image);
    assert_eq!(
        label(&image, "ci.base"),
        image_id(&test_image()),
        "{image} is built from the current {} (scripts/build-test-images.sh)",
        test_image()
    );
    let out = script(
        "build-test-images.sh",
        &["--base", &test_image(), "--tag", &image],
    )
    .expect_code(0);
    assert!(
        out.stderr.contains(&format!("image {image} is up to date")),
        "{}",
        out.stderr
    );
    assert_eq!(
        image_id(&image),
        before,
        "an up-to-date image is kept as it is"
    );
}
