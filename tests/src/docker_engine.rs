//! A second Docker engine on this machine, for the tests of a controller with many Docker
//! hosts: its own data root, exec root, pid file and unix socket, its own bridge interface and
//! subnet (so install steps have a network; the firewall stays the main engine's, see
//! [`DockerEngine::resume`]), the storage driver of the main engine
//! (fuse-overlayfs), and `--live-restore` (stopping it leaves its containers running, as a
//! host that stops answering does). The runner image is copied into it from the main engine
//! (`docker save | docker load`). Needs root and `dockerd`, as the main engine does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{test_image, Proc, WAIT};

/// A running (or stopped, to be started again) second engine; removed with everything in it
/// when dropped.
pub struct DockerEngine {
    dir: PathBuf,
    bridge: String,
    /// More `dockerd` flags (another listener, TLS).
    extra: Vec<String>,
    proc: Option<Proc>,
}

impl DockerEngine {
    /// Starts a new engine and loads the runner image into it.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Self::start`] with more `dockerd` flags (`--host tcp://…`, `--tlsverify`, …).
    pub fn start_with(extra: &[String]) -> Self {
        for tool in ["dockerd", "ip", "fuse-overlayfs"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{tool} is missing: a second Docker engine needs Docker's own packages \
                 (scripts/ensure-docker.sh)"
            );
        }
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        // A unix socket's path must stay under 108 bytes: a short folder of its own in /tmp.
        let dir = PathBuf::from(format!("/tmp/ci-engine-{id}"));
        std::fs::create_dir_all(&dir).expect("the engine's folder");
        std::fs::write(dir.join("daemon.json"), "{}").expect("daemon.json");
        let bridge = format!("cie{}", &id[..8]);
        let subnet = free_subnet();
        run("ip", &["link", "add", &bridge, "type", "bridge"]);
        run(
            "ip",
            &["addr", "add", &format!("{subnet}.1/24"), "dev", &bridge],
        );
        run("ip", &["link", "set", &bridge, "up"]);
        let mut engine = Self {
            dir,
            bridge,
            extra: extra.to_vec(),
            proc: None,
        };
        engine.resume();
        let image = test_image();
        let mut save = Command::new("docker")
            .args(["save", &image])
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker save");
        let load = Command::new("docker")
            .args(["-H", &engine.url(), "load", "-q"])
            .stdin(save.stdout.take().expect("docker save's output"))
            .output()
            .expect("docker load");
        let saved = save.wait().expect("docker save");
        assert!(saved.success(), "docker save {image} failed");
        assert!(
            load.status.success(),
            "cannot load {image} into the second engine: {}",
            String::from_utf8_lossy(&load.stderr)
        );
        engine
    }

    /// The engine's address (`unix:///tmp/ci-engine-…/docker.sock`).
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// `docker -H <this engine> ARGS`: its non-empty stdout lines.
    pub fn docker_lines(&self, args: &[&str]) -> Vec<String> {
        let url = self.url();
        let mut all = vec!["-H", &url];
        all.extend_from_slice(args);
        crate::docker_lines(&all)
    }

    /// Stops the engine (SIGTERM, as `systemctl stop docker` does) and waits for it to exit;
    /// its containers keep running (`--live-restore`).
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.signal("TERM");
            proc.wait_exit(WAIT);
        }
    }

    /// Starts the engine again (after [`Self::stop`]) and waits until it answers.
    pub fn resume(&mut self) {
        assert!(self.proc.is_none(), "the engine is running");
        let d = &self.dir;
        let mut cmd = Command::new("dockerd");
        cmd.args(["--data-root", &path(&d.join("root"))])
            .args(["--exec-root", &path(&d.join("exec"))])
            .args(["--pidfile", &path(&d.join("dockerd.pid"))])
            .args(["--host", &self.url()])
            .args(["--bridge", &self.bridge])
            .args(["--storage-driver", "fuse-overlayfs"])
            .args(["--mtu", "1400"])
            .args(["--config-file", &path(&d.join("daemon.json"))])
            // The firewall is the main engine's: a second dockerd that set up its own chains
            // would recreate the main engine's `DOCKER` chains while that one creates networks.
            // Containers still get the bridge (an interface, an address, the host); only NAT
            // to other networks is missing, which the tests (local wheels) do not need.
            .arg("--iptables=false")
            .arg("--ip-masq=false")
            .arg("--live-restore")
            .args(&self.extra);
        self.proc = Some(Proc::spawn("dockerd-2", cmd));
        let deadline = Instant::now() + WAIT;
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "the second Docker engine did not answer within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers(&self) -> bool {
        Command::new("docker")
            .args([
                "-H",
                &self.url(),
                "version",
                "--format",
                "{{.Server.Version}}",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        if self.proc.is_some() {
            let all = self.docker_lines(&["ps", "-aq"]);
            if !all.is_empty() {
                let _ = Command::new("docker")
                    .args(["-H", &self.url(), "rm", "-f"])
                    .args(&all)
                    .output();
            }
            let _ = Command::new("docker")
                .args(["-H", &self.url(), "volume", "prune", "-af"])
                .output();
        }
        if let Some(mut proc) = self.proc.take() {
            proc.signal("TERM");
            proc.wait_exit(WAIT);
        }
        // Its containerd (and the shims of containers it kept running) outlive it by design
        // (--live-restore).
        let _ = Command::new("pkill")
            .args(["-f", &path(&self.dir)])
            .status();
        // What a stopped engine's containers left mounted under its folders.
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "grep -o ' {0}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
                    self.dir.display()
                ),
            ])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed (a second Docker engine needs root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A /24 of 10.213.0.0/16 that no interface of this machine uses (`10.213.N`).
fn free_subnet() -> String {
    let used = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "-4", "addr"])
            .output()
            .expect("ip addr")
            .stdout,
    )
    .into_owned();
    let start = std::process::id() as usize % 250;
    (0..250)
        .map(|i| format!("10.213.{}", 1 + (start + i) % 250))
        .find(|subnet| !used.contains(&format!("{subnet}.")))
        .expect("a free 10.213.N.0/24")
}
