//! Where the Docker host finds the controller's own files.
//!
//! Job containers bind-mount files the controller writes into its state folder (the job user's
//! `passwd` and `group`, ci's pytest plugin and install driver). Docker takes a bind mount's
//! source on its own host, so when the controller itself runs in a container (the compose
//! deployment), the path it writes to is not the path Docker knows. The controller then finds
//! its container (from its mount table), asks Docker for that container's mounts, and gives job
//! containers the host side of the mount that holds each file: its state folder must be on a
//! volume or a bind mount of its container. Outside a container, and in a container the Docker
//! daemon does not know (a controller talking to another host's Docker), paths stay as they are.

use std::path::{Path, PathBuf};

use anyhow::bail;
use tracing::info;

use crate::docker::BollardDocker;

/// A mount of the controller's own container: where it is inside the container, and where it
/// comes from on the Docker host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerMount {
    pub destination: PathBuf,
    pub source: PathBuf,
}

/// Files Docker bind-mounts into every container from `<data-root>/containers/<id>/`.
const DOCKER_FILES: [&str; 3] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

/// The id of the Docker container this process runs in, read from its mount table
/// (`/proc/self/mountinfo`): the folder Docker mounts `/etc/hostname`, `/etc/hosts` and
/// `/etc/resolv.conf` from is named after it. `None` outside a Docker container.
pub fn own_container_id(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        // id parent major:minor root mount-point ...
        let mut fields = line.split_whitespace().skip(3);
        let (root, mount_point) = (fields.next()?, fields.next()?);
        if !DOCKER_FILES.contains(&mount_point) {
            return None;
        }
        let (_, after) = root.split_once("/containers/")?;
        let id = after.split('/').next()?;
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
    })
}

/// `path` as the Docker host sees it: through the deepest mount of the container that holds it.
/// `None` when no mount holds it (it is in the container's own file system).
pub fn on_host(mounts: &[ContainerMount], path: &Path) -> Option<PathBuf> {
    let mount = mounts
        .iter()
        .filter(|m| path.starts_with(&m.destination))
        .max_by_key(|m| m.destination.components().count())?;
    let rest = path.strip_prefix(&mount.destination).ok()?;
    Some(if rest.as_os_str().is_empty() {
        mount.source.clone()
    } else {
        mount.source.join(rest)
    })
}

/// How paths of the controller's file system translate to the Docker host's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPaths {
    /// The controller's container (its id) and its mounts; `None`: the paths are the host's.
    container: Option<(String, Vec<ContainerMount>)>,
}

impl HostPaths {
    /// Paths that are the same for the controller and the Docker host.
    pub fn same() -> Self {
        Self::default()
    }

    /// The mounts of the container `id` translate paths.
    pub fn in_container(id: &str, mounts: Vec<ContainerMount>) -> Self {
        Self {
            container: Some((id.to_owned(), mounts)),
        }
    }

    /// Finds out whether the controller runs in a container of `docker` (see the module's
    /// documentation).
    pub async fn discover(docker: &BollardDocker) -> anyhow::Result<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let Some(id) = own_container_id(&mountinfo) else {
            return Ok(Self::same());
        };
        match docker.container_mounts(&id).await? {
            Some(mounts) => Ok(Self::in_container(&id, mounts)),
            None => {
                info!(
                    container = short(&id),
                    "running in a container the Docker daemon does not know: job containers mount the controller's files at the same paths"
                );
                Ok(Self::same())
            }
        }
    }

    /// `path` (of the controller's file system) as the Docker host sees it.
    pub fn translate(&self, path: &Path) -> anyhow::Result<PathBuf> {
        let Some((id, mounts)) = &self.container else {
            return Ok(path.to_owned());
        };
        match on_host(mounts, path) {
            Some(host) => {
                if host != path {
                    info!(
                        container = short(id),
                        "job containers mount {} from {} on the Docker host",
                        path.display(),
                        host.display()
                    );
                }
                Ok(host)
            }
            None => bail!(
                "ci-controller runs in the container {}, and {} is not on a volume or bind mount of it, so job containers cannot mount the files there: mount a volume at the state folder (--state-dir; by default `controller/` beside the database)",
                short(id),
                path.display()
            ),
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c9a7be2d44c0e8a56b1f0d9e7c3a2b4d6e8f0a1c3e5b7d9f1a3c5e7b9d1f3";

    fn mount(destination: &str, source: &str) -> ContainerMount {
        ContainerMount {
            destination: destination.into(),
            source: source.into(),
        }
    }

    #[test]
    fn the_container_is_named_by_the_folder_of_its_hostname_file() {
        let mountinfo = format!(
            "1210 1190 0:112 / / rw,relatime master:402 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A\n\
             1215 1210 0:118 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755\n\
             1230 1210 8:1 /var/lib/docker/volumes/ci_data/_data /var/lib/ci rw,relatime master:1 - ext4 /dev/sda1 rw\n\
             1231 1210 8:1 /var/lib/docker/containers/{ID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/sda1 rw\n\
             1232 1210 8:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(own_container_id(&mountinfo).as_deref(), Some(ID));
        // Docker's data root on a file system of its own.
        let own_fs =
            format!("44 30 8:17 /containers/{ID}/hosts /etc/hosts rw - ext4 /dev/sdb1 rw\n");
        assert_eq!(own_container_id(&own_fs).as_deref(), Some(ID));
    }

    #[test]
    fn the_host_is_no_container() {
        // On the host, the containers' shm mounts are in the mount table, at their own places.
        let mountinfo = format!(
            "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
             900 22 0:60 / /var/lib/docker/containers/{ID}/mounts/shm rw - tmpfs shm rw,size=65536k\n\
             25 22 0:21 / /proc rw,nosuid - proc proc rw\n"
        );
        assert_eq!(own_container_id(&mountinfo), None);
        assert_eq!(own_container_id(""), None);
        let not_an_id = "1 1 8:1 /var/lib/docker/containers/abc/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n";
        assert_eq!(own_container_id(not_an_id), None);
    }

    #[test]
    fn a_path_is_translated_through_the_deepest_mount_that_holds_it() {
        let mounts = [
            mount("/var/lib/ci", "/var/lib/docker/volumes/ci_data/_data"),
            mount("/var/lib/ci/controller/plugins", "/srv/plugins"),
            mount("/var/run/docker.sock", "/var/run/docker.sock"),
        ];
        assert_eq!(
            on_host(&mounts, Path::new("/var/lib/ci/controller/identity")),
            Some("/var/lib/docker/volumes/ci_data/_data/controller/identity".into())
        );
        assert_eq!(
            on_host(&mounts, Path::new("/var/lib/ci/controller/plugins")),
            Some("/srv/plugins".into())
        );
        assert_eq!(
            on_host(&mounts, Path::new("/var/lib/ci")),
            Some("/var/lib/docker/volumes/ci_data/_data".into())
        );
        // Paths are compared by their components, not their text.
        assert_eq!(on_host(&mounts, Path::new("/var/lib/cidata/x")), None);
        assert_eq!(on_host(&mounts, Path::new("/tmp/state")), None);
    }

    #[test]
    fn outside_a_container_paths_stay_and_inside_one_they_must_be_on_a_mount() {
        let path = Path::new("/var/lib/ci/controller/identity");
        assert_eq!(HostPaths::same().translate(path).unwrap(), path);
        let inside = HostPaths::in_container(
            ID,
            vec![mount("/var/lib/ci", "/var/lib/docker/volumes/x/_data")],
        );
        assert_eq!(
            inside.translate(path).unwrap(),
            Path::new("/var/lib/docker/volumes/x/_data/controller/identity")
        );
        let err = inside
            .translate(Path::new("/state/identity"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("runs in the container 3f1c9a7be2d4")
                && err.contains("/state/identity is not on a volume or bind mount"),
            "{err}"
        );
    }
}
