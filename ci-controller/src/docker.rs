//! The few Docker operations the controller needs, behind a trait so the job state machine can
//! be tested with a fake; [`BollardDocker`] talks to the real daemon through its API.

use std::collections::HashMap;
use std::future::Future;

use bollard::container::{
    AttachContainerOptions, Config, CreateContainerOptions, DownloadFromContainerOptions,
    KillContainerOptions, ListContainersOptions, LogOutput, LogsOptions, RemoveContainerOptions,
    UploadToContainerOptions,
};
use bollard::image::CreateImageOptions;
use bollard::system::EventsOptions;
use bollard::volume::{CreateVolumeOptions, ListVolumesOptions, RemoveVolumeOptions};
use bytes::Bytes;
use ci_common::LogStream;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

/// A Docker API failure.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Api(String),
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
}

pub type DockerResult<T> = Result<T, DockerError>;

/// Output of one stream: from [`Docker::logs`], one log message as Docker returns it with
/// `timestamps`, `"<RFC 3339 nanos> <text>"`, where the text ends with `\n` unless it is part of
/// a longer line; from [`Docker::attach`], raw bytes as written, cut anywhere.
#[derive(Clone, Debug, PartialEq)]
pub struct LogChunk {
    pub stream: LogStream,
    pub bytes: Bytes,
}

/// What the controller needs to know about a container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerState {
    /// `created`, `running`, `exited`, ...
    pub status: String,
    pub running: bool,
    pub exit_code: i64,
    pub oom_killed: bool,
}

/// A container found by label.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSummary {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub running: bool,
}

/// A volume found by label.
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeSummary {
    pub name: String,
    pub labels: HashMap<String, String>,
}

/// Caps on what [`Docker::download_files`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileCaps {
    pub max_files: usize,
    pub max_bytes: u64,
}

/// Files taken out of a container: `(path relative to the folder, bytes)`, and the paths that
/// matched but were left out past the caps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Downloaded {
    pub files: Vec<(String, Vec<u8>)>,
    pub left_out: Vec<String>,
    /// The paths of `files` with an executable bit in their mode.
    pub executable: Vec<String>,
}

/// Which files [`Docker::download_files`] keeps, by their path relative to the folder.
pub type Select = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The Docker operations of the controller. Names are container or volume names.
pub trait Docker: Send + Sync + 'static {
    /// The image's ID (`sha256:...`) if it exists locally.
    fn image_id(&self, image: &str) -> impl Future<Output = DockerResult<Option<String>>> + Send;
    fn pull_image(&self, image: &str) -> impl Future<Output = DockerResult<()>> + Send;
    fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> impl Future<Output = DockerResult<()>> + Send;
    /// Removes a volume; a missing one is not an error.
    fn remove_volume(&self, name: &str) -> impl Future<Output = DockerResult<()>> + Send;
    fn list_volumes(
        &self,
        label: &str,
    ) -> impl Future<Output = DockerResult<Vec<VolumeSummary>>> + Send;
    fn create_container(
        &self,
        name: &str,
        config: Config<String>,
    ) -> impl Future<Output = DockerResult<()>> + Send;
    /// Extracts a tar archive into `path` of a (created, not necessarily started) container.
    fn upload_archive(
        &self,
        name: &str,
        path: &str,
        tar: Bytes,
    ) -> impl Future<Output = DockerResult<()>> + Send;
    fn start_container(&self, name: &str) -> impl Future<Output = DockerResult<()>> + Send;
    /// The contents of one file of a container (running or not, volumes included), read through
    /// the archive API: `None` if it does not exist, [`DockerError::TooLarge`] past `max_bytes`
    /// (the archive is not read further).
    fn read_file(
        &self,
        name: &str,
        path: &str,
        max_bytes: u64,
    ) -> impl Future<Output = DockerResult<Option<Vec<u8>>>> + Send;
    /// The files under the folder `dir` of a container (running or not, volumes included) that
    /// `select` keeps, read from the archive API as a stream (what is not kept is skipped, not
    /// held), within `caps`. A missing folder is no files.
    fn download_files(
        &self,
        name: &str,
        dir: &str,
        select: Select,
        caps: FileCaps,
    ) -> impl Future<Output = DockerResult<Downloaded>> + Send;
    /// The size in bytes of `path` in a container (a folder with everything in it, volumes
    /// included), measured as the tar archive Docker streams of it (headers count: 512 bytes a
    /// file).
    fn archive_size(
        &self,
        name: &str,
        path: &str,
    ) -> impl Future<Output = DockerResult<u64>> + Send;
    /// The container's state, `None` if there is no such container.
    fn inspect_container(
        &self,
        name: &str,
    ) -> impl Future<Output = DockerResult<Option<ContainerState>>> + Send;
    /// Follows the container's stdout and stderr with timestamps, from `since` (UNIX seconds,
    /// 0 = the beginning); the stream ends when the container stops.
    fn logs(&self, name: &str, since: i64) -> BoxStream<'static, DockerResult<LogChunk>>;
    /// The container's stdout and stderr as they are written from now on: raw bytes, cut
    /// anywhere, without timestamps (Docker's attach stream, which carries no JSON and reads
    /// no file back). Attached before the container starts, it holds all of its output; it
    /// ends when the container's output closes (normally: it exited).
    fn attach(
        &self,
        name: &str,
    ) -> impl Future<Output = DockerResult<BoxStream<'static, DockerResult<LogChunk>>>> + Send;
    /// Sends a signal (`SIGTERM`, `SIGKILL`); a container that is not running is not an error.
    fn kill_container(
        &self,
        name: &str,
        signal: &str,
    ) -> impl Future<Output = DockerResult<()>> + Send;
    /// Removes a container, running or not; a missing one is not an error.
    fn remove_container(&self, name: &str) -> impl Future<Output = DockerResult<()>> + Send;
    /// Whether Docker reported the container out of memory (an `oom` event), waiting up to
    /// `wait` for one still to come. A container's exit can reach Docker before the out of
    /// memory notice of its cgroup (seen under gVisor, where the kernel kills one of the
    /// sandbox's host processes and the sandbox then exits on its own), and Docker then never
    /// sets `OOMKilled`.
    fn oom_event(
        &self,
        name: &str,
        wait: std::time::Duration,
    ) -> impl Future<Output = DockerResult<bool>> + Send;
    /// Every container (running or not) carrying `label` (`key=value`).
    fn list_containers(
        &self,
        label: &str,
    ) -> impl Future<Output = DockerResult<Vec<ContainerSummary>>> + Send;
    /// Whether the daemon answers (its `/_ping`): the host's health check.
    fn ping(&self) -> impl Future<Output = DockerResult<()>> + Send;
    /// A running container's resource use now (Docker's one-shot container stats).
    fn usage(&self, name: &str) -> impl Future<Output = DockerResult<Usage>> + Send;
}

/// What a container uses, from Docker's container stats.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// CPU time used since the container started, in nanoseconds (a counter: the CPU in use is
    /// its change over a wall-clock interval).
    pub cpu_ns: u64,
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
}

/// One frame of Docker's multiplexed stdout/stderr stream (logs or attach) as a [`LogChunk`];
/// stdin frames are dropped.
fn log_chunk(item: Result<LogOutput, bollard::errors::Error>) -> Option<DockerResult<LogChunk>> {
    match item {
        Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
            Some(Ok(LogChunk {
                stream: LogStream::Stdout,
                bytes: message,
            }))
        }
        Ok(LogOutput::StdErr { message }) => Some(Ok(LogChunk {
            stream: LogStream::Stderr,
            bytes: message,
        })),
        Ok(LogOutput::StdIn { .. }) => None,
        Err(e) => Some(Err(api_error(e))),
    }
}

/// The real daemon, through bollard.
#[derive(Clone)]
pub struct BollardDocker {
    docker: bollard::Docker,
}

impl BollardDocker {
    /// Connects to the engine of `host`: its URL (`unix://...`, `tcp://...`, `http://...`;
    /// `tcp://` with client certificates when it has TLS files) or, without one, wherever
    /// bollard looks by default (`DOCKER_HOST`, then the local socket), and negotiates the API
    /// version with the daemon (older daemons refuse newer clients).
    pub async fn connect(host: &crate::hosts::HostSpec) -> Result<Self, bollard::errors::Error> {
        const TIMEOUT_SECS: u64 = 120;
        let version = bollard::API_DEFAULT_VERSION;
        let docker = match (host.url.as_deref(), &host.tls) {
            (None, _) => bollard::Docker::connect_with_local_defaults()?,
            (Some(url), Some(tls)) => bollard::Docker::connect_with_ssl(
                url,
                &tls.key,
                &tls.cert,
                &tls.ca,
                TIMEOUT_SECS,
                version,
            )?,
            (Some(url), None) if url.starts_with("unix://") => {
                bollard::Docker::connect_with_unix(url, TIMEOUT_SECS, version)?
            }
            (Some(url), None) => bollard::Docker::connect_with_http(url, TIMEOUT_SECS, version)?,
        };
        let docker = docker.negotiate_version().await?;
        docker.ping().await?;
        Ok(Self { docker })
    }

    /// The mounts of the container `id` (where each comes from on the Docker host), or `None`
    /// when the daemon has no such container. Used once at start (see [`crate::host_path`]).
    pub async fn container_mounts(
        &self,
        id: &str,
    ) -> DockerResult<Option<Vec<crate::host_path::ContainerMount>>> {
        match self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(api_error)
        {
            Ok(info) => Ok(Some(
                info.mounts
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|m| {
                        Some(crate::host_path::ContainerMount {
                            destination: m.destination?.into(),
                            source: m.source?.into(),
                        })
                    })
                    .collect(),
            )),
            Err(DockerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The daemon's OCI runtimes (`docker info`): each name with the path of its binary (the
    /// name itself when the daemon looks it up on its `PATH`), and the default runtime's name.
    pub async fn runtimes(&self) -> DockerResult<(HashMap<String, String>, Option<String>)> {
        let info = self.docker.info().await.map_err(api_error)?;
        let runtimes = info
            .runtimes
            .unwrap_or_default()
            .into_iter()
            .map(|(name, runtime)| {
                let path = runtime.path.unwrap_or_else(|| name.clone());
                (name, path)
            })
            .collect();
        Ok((runtimes, info.default_runtime))
    }
}

fn api_error(err: bollard::errors::Error) -> DockerError {
    match err {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message,
        } => DockerError::NotFound(message),
        other => DockerError::Api(other.to_string()),
    }
}

fn ignore_not_found(result: Result<(), bollard::errors::Error>) -> DockerResult<()> {
    match result.map_err(api_error) {
        Err(DockerError::NotFound(_)) => Ok(()),
        other => other,
    }
}

fn label_filter(label: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![label.to_owned()])])
}

impl Docker for BollardDocker {
    async fn image_id(&self, image: &str) -> DockerResult<Option<String>> {
        match self.docker.inspect_image(image).await.map_err(api_error) {
            Ok(inspect) => Ok(Some(inspect.id.unwrap_or_else(|| image.to_owned()))),
            Err(DockerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn pull_image(&self, image: &str) -> DockerResult<()> {
        let options = CreateImageOptions {
            from_image: image,
            ..Default::default()
        };
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(api_error)?;
        }
        Ok(())
    }

    async fn create_volume(&self, name: &str, labels: HashMap<String, String>) -> DockerResult<()> {
        let options = CreateVolumeOptions {
            name: name.to_owned(),
            labels,
            ..Default::default()
        };
        self.docker
            .create_volume(options)
            .await
            .map(drop)
            .map_err(api_error)
    }

    async fn remove_volume(&self, name: &str) -> DockerResult<()> {
        ignore_not_found(
            self.docker
                .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
                .await,
        )
    }

    async fn list_volumes(&self, label: &str) -> DockerResult<Vec<VolumeSummary>> {
        let options = ListVolumesOptions {
            filters: label_filter(label),
        };
        let list = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(api_error)?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| VolumeSummary {
                name: v.name,
                labels: v.labels,
            })
            .collect())
    }

    async fn create_container(&self, name: &str, config: Config<String>) -> DockerResult<()> {
        let options = CreateContainerOptions {
            name: name.to_owned(),
            platform: None,
        };
        self.docker
            .create_container(Some(options), config)
            .await
            .map(drop)
            .map_err(api_error)
    }

    async fn upload_archive(&self, name: &str, path: &str, tar: Bytes) -> DockerResult<()> {
        let options = UploadToContainerOptions {
            path: path.to_owned(),
            ..Default::default()
        };
        self.docker
            .upload_to_container(name, Some(options), tar)
            .await
            .map_err(api_error)
    }

    async fn read_file(
        &self,
        name: &str,
        path: &str,
        max_bytes: u64,
    ) -> DockerResult<Option<Vec<u8>>> {
        let options = DownloadFromContainerOptions { path };
        let mut stream = self.docker.download_from_container(name, Some(options));
        // The tar holds the one file after a header or two; read no more than the cap allows.
        let limit = max_bytes.saturating_add(64 * 1024);
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk.map_err(api_error) {
                Ok(bytes) => {
                    tar.extend_from_slice(&bytes);
                    if tar.len() as u64 > limit {
                        return Err(DockerError::TooLarge { limit: max_bytes });
                    }
                }
                Err(DockerError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries = archive
            .entries()
            .map_err(|e| DockerError::Api(format!("unreadable archive of {path}: {e}")))?;
        for entry in entries {
            let mut entry = entry
                .map_err(|e| DockerError::Api(format!("unreadable archive of {path}: {e}")))?;
            if entry.header().entry_type().is_file() {
                if entry.size() > max_bytes {
                    return Err(DockerError::TooLarge { limit: max_bytes });
                }
                let mut bytes = Vec::with_capacity(entry.size() as usize);
                std::io::Read::read_to_end(&mut entry, &mut bytes)
                    .map_err(|e| DockerError::Api(format!("cannot read {path}: {e}")))?;
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    async fn download_files(
        &self,
        name: &str,
        dir: &str,
        select: Select,
        caps: FileCaps,
    ) -> DockerResult<Downloaded> {
        use tokio_util::io::{StreamReader, SyncIoBridge};
        let options = DownloadFromContainerOptions {
            path: dir.to_owned(),
        };
        let mut stream = self.docker.download_from_container(name, Some(options));
        // The first chunk says whether the folder exists (a missing one is a 404).
        let first = match stream.next().await {
            None => return Ok(Downloaded::default()),
            Some(Err(e)) => match api_error(e) {
                DockerError::NotFound(_) => return Ok(Downloaded::default()),
                e => return Err(e),
            },
            Some(Ok(bytes)) => bytes,
        };
        let rest = futures_util::stream::iter([Ok(first)]).chain(stream);
        let reader = StreamReader::new(rest.map(|r| r.map_err(std::io::Error::other)));
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let unreadable =
                |e: std::io::Error| DockerError::Api(format!("unreadable archive: {e}"));
            let mut archive = tar::Archive::new(SyncIoBridge::new_with_handle(reader, handle));
            let mut out = Downloaded::default();
            let mut bytes = 0u64;
            for entry in archive.entries().map_err(unreadable)? {
                let mut entry = entry.map_err(unreadable)?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let path = entry
                    .path()
                    .map_err(unreadable)?
                    .to_string_lossy()
                    .into_owned();
                // The archive's entries start with the folder's own name.
                let Some((_, relative)) = path.split_once('/') else {
                    continue;
                };
                if !select(relative) {
                    continue;
                }
                let size = entry.size();
                if out.files.len() >= caps.max_files || bytes + size > caps.max_bytes {
                    out.left_out.push(relative.to_owned());
                    continue;
                }
                if entry.header().mode().is_ok_and(|mode| mode & 0o111 != 0) {
                    out.executable.push(relative.to_owned());
                }
                let mut data = Vec::with_capacity(size as usize);
                std::io::Read::read_to_end(&mut entry, &mut data).map_err(unreadable)?;
                bytes += size;
                out.files.push((relative.to_owned(), data));
            }
            Ok(out)
        })
        .await
        .map_err(|e| DockerError::Api(format!("reading the archive stopped: {e}")))?
    }

    async fn archive_size(&self, name: &str, path: &str) -> DockerResult<u64> {
        let options = DownloadFromContainerOptions { path };
        let mut stream = self.docker.download_from_container(name, Some(options));
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            size += chunk.map_err(api_error)?.len() as u64;
        }
        Ok(size)
    }

    async fn start_container(&self, name: &str) -> DockerResult<()> {
        self.docker
            .start_container::<String>(name, None)
            .await
            .map_err(api_error)
    }

    async fn inspect_container(&self, name: &str) -> DockerResult<Option<ContainerState>> {
        match self.docker.inspect_container(name, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                Ok(Some(ContainerState {
                    status: state
                        .status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                    running: state.running.unwrap_or(false),
                    exit_code: state.exit_code.unwrap_or(-1),
                    oom_killed: state.oom_killed.unwrap_or(false),
                }))
            }
            Err(e) => match api_error(e) {
                DockerError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    fn logs(&self, name: &str, since: i64) -> BoxStream<'static, DockerResult<LogChunk>> {
        let options = LogsOptions::<String> {
            follow: true,
            stdout: true,
            stderr: true,
            since,
            timestamps: true,
            tail: "all".to_owned(),
            ..Default::default()
        };
        self.docker
            .logs(name, Some(options))
            .filter_map(|item| async move { log_chunk(item) })
            .boxed()
    }

    async fn attach(&self, name: &str) -> DockerResult<BoxStream<'static, DockerResult<LogChunk>>> {
        let options = AttachContainerOptions::<String> {
            stdout: Some(true),
            stderr: Some(true),
            stream: Some(true),
            logs: Some(false),
            ..Default::default()
        };
        let attached = self
            .docker
            .attach_container(name, Some(options))
            .await
            .map_err(api_error)?;
        Ok(attached
            .output
            .filter_map(|item| async move { log_chunk(item) })
            .boxed())
    }

    async fn kill_container(&self, name: &str, signal: &str) -> DockerResult<()> {
        let options = KillContainerOptions { signal };
        match self.docker.kill_container(name, Some(options)).await {
            // 409: the container is not running (any more).
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            other => ignore_not_found(other),
        }
    }

    async fn remove_container(&self, name: &str) -> DockerResult<()> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        ignore_not_found(self.docker.remove_container(name, Some(options)).await)
    }

    async fn oom_event(&self, name: &str, wait: std::time::Duration) -> DockerResult<bool> {
        // Docker replays the events it keeps (its last few hundred) from `since`, then follows
        // until `until`; the name is the step's own, so any `oom` of it is this container's.
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            + wait;
        let options = EventsOptions::<String> {
            since: Some("1".to_owned()),
            until: Some(format!("{}.{:09}", until.as_secs(), until.subsec_nanos())),
            filters: HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                ("container".to_owned(), vec![name.to_owned()]),
                ("event".to_owned(), vec!["oom".to_owned()]),
            ]),
        };
        let mut events = self.docker.events(Some(options));
        match events.next().await {
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(api_error(e)),
            None => Ok(false),
        }
    }

    async fn ping(&self) -> DockerResult<()> {
        self.docker.ping().await.map(drop).map_err(api_error)
    }

    async fn usage(&self, name: &str) -> DockerResult<Usage> {
        use futures_util::StreamExt as _;
        let options = bollard::container::StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stats = self.docker.stats(name, Some(options));
        match stats.next().await {
            Some(Ok(stats)) => Ok(Usage {
                cpu_ns: stats.cpu_stats.cpu_usage.total_usage,
                memory_bytes: stats.memory_stats.usage.unwrap_or(0),
            }),
            Some(Err(e)) => Err(api_error(e)),
            None => Err(DockerError::NotFound(name.to_owned())),
        }
    }

    async fn list_containers(&self, label: &str) -> DockerResult<Vec<ContainerSummary>> {
        let options = ListContainersOptions {
            all: true,
            filters: label_filter(label),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(api_error)?;
        Ok(list
            .into_iter()
            .map(|c| ContainerSummary {
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_else(|| c.id.clone().unwrap_or_default()),
                labels: c.labels.unwrap_or_default(),
                running: c.state.as_deref() == Some("running"),
            })
            .collect())
    }
}
