//! An in-memory Docker (a test double of [`crate::docker::Docker`]) for the runner's and the
//! scheduler's tests: containers follow a [`Script`] instead of running anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bollard::container::Config;
use bytes::Bytes;
use ci_common::LogStream;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::docker::{
    ContainerState, ContainerSummary, Docker, DockerError, DockerResult, LogChunk, Usage,
    VolumeSummary,
};
use crate::sandbox::LABEL_STEP;

/// How a fake container of one step behaves.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// Docker log messages (`"<ts> <text>\n"`).
    pub messages: Vec<String>,
    pub exit_code: i64,
    pub oom: bool,
    /// Out of memory as only an `oom` event says (not `inspect`).
    pub oom_event: bool,
    /// Runs until killed instead of exiting at once.
    pub runs_until_killed: bool,
    /// SIGTERM does nothing (only SIGKILL stops it).
    pub ignores_term: bool,
    /// Files the container holds (path → contents), as `read_file` finds them.
    pub files: HashMap<String, Vec<u8>>,
    /// The attach stream breaks (an error) after this many of the messages, as a dropped
    /// connection to the daemon would.
    pub attach_breaks_after: Option<usize>,
}

struct Container {
    config: Config<String>,
    script: Script,
    status: String,
    exit_code: i64,
    oom: bool,
    exited: watch::Sender<bool>,
    uploads: usize,
}

#[derive(Default)]
struct State {
    containers: HashMap<String, Container>,
    volumes: HashMap<String, HashMap<String, String>>,
    scripts: HashMap<String, Script>,
    signals: Vec<String>,
    /// How many times Docker's log was read (`logs`), as opposed to the attach stream.
    log_reads: usize,
    /// The daemon does not answer its ping.
    down: bool,
}

#[derive(Clone, Default)]
pub struct FakeDocker {
    state: Arc<Mutex<State>>,
    pub missing_image: bool,
}

impl FakeDocker {
    /// Sets how containers of the step named `step` ("install", "test", ...) behave.
    pub fn script(&self, step: &str, script: Script) {
        self.state
            .lock()
            .unwrap()
            .scripts
            .insert(step.to_owned(), script);
    }

    pub fn container_names(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .containers
            .keys()
            .cloned()
            .collect()
    }

    pub fn volume_names(&self) -> Vec<String> {
        self.state.lock().unwrap().volumes.keys().cloned().collect()
    }

    /// How many times a container's log was read through `logs` (not `attach`).
    pub fn log_reads(&self) -> usize {
        self.state.lock().unwrap().log_reads
    }

    /// The scripted messages of a container, then the end of the stream once it exited.
    fn messages(&self, name: &str) -> BoxStream<'static, DockerResult<LogChunk>> {
        let state = self.state.lock().unwrap();
        let Some(c) = state.containers.get(name) else {
            return futures_util::stream::iter([Err(DockerError::NotFound(name.into()))]).boxed();
        };
        let chunks: Vec<DockerResult<LogChunk>> = c
            .script
            .messages
            .iter()
            .map(|m| {
                Ok(LogChunk {
                    stream: LogStream::Stdout,
                    bytes: Bytes::from(m.clone()),
                })
            })
            .collect();
        let mut exited = c.exited.subscribe();
        let until_exit = futures_util::stream::once(async move {
            let _ = exited.wait_for(|done| *done).await;
        })
        .filter_map(|()| async { None });
        futures_util::stream::iter(chunks).chain(until_exit).boxed()
    }

    pub fn signals(&self) -> Vec<String> {
        self.state.lock().unwrap().signals.clone()
    }

    pub fn config(&self, name: &str) -> Option<Config<String>> {
        self.state
            .lock()
            .unwrap()
            .containers
            .get(name)
            .map(|c| c.config.clone())
    }

    pub fn uploads(&self, name: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .containers
            .get(name)
            .map_or(0, |c| c.uploads)
    }

    /// Puts an already running container in place (as a crashed controller left it).
    pub fn existing(&self, name: &str, config: Config<String>, script: Script) {
        let (exited, _) = watch::channel(false);
        self.state.lock().unwrap().containers.insert(
            name.to_owned(),
            Container {
                config,
                script,
                status: "running".into(),
                exit_code: 0,
                oom: false,
                exited,
                uploads: 0,
            },
        );
    }

    /// Makes a running container exit now with `code` (as if its command ended).
    /// Makes the daemon stop answering its ping (`true`) or answer again.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub fn exit_now(&self, name: &str, code: i64) {
        let mut state = self.state.lock().unwrap();
        if let Some(c) = state.containers.get_mut(name) {
            Self::exit(c, code, false);
        }
    }

    fn exit(c: &mut Container, code: i64, oom: bool) {
        c.status = "exited".into();
        c.exit_code = code;
        c.oom = oom;
        c.exited.send_replace(true);
    }
}

impl Docker for FakeDocker {
    async fn image_id(&self, image: &str) -> DockerResult<Option<String>> {
        Ok((!self.missing_image).then(|| format!("sha256:{image}")))
    }

    async fn pull_image(&self, image: &str) -> DockerResult<()> {
        Err(DockerError::Api(format!("pull access denied for {image}")))
    }

    async fn create_volume(&self, name: &str, labels: HashMap<String, String>) -> DockerResult<()> {
        self.state
            .lock()
            .unwrap()
            .volumes
            .insert(name.to_owned(), labels);
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> DockerResult<()> {
        self.state.lock().unwrap().volumes.remove(name);
        Ok(())
    }

    async fn list_volumes(&self, _label: &str) -> DockerResult<Vec<VolumeSummary>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .volumes
            .iter()
            .map(|(name, labels)| VolumeSummary {
                name: name.clone(),
                labels: labels.clone(),
            })
            .collect())
    }

    async fn create_container(&self, name: &str, config: Config<String>) -> DockerResult<()> {
        let mut state = self.state.lock().unwrap();
        let step = config
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_STEP))
            .cloned()
            .unwrap_or_default();
        let script = state.scripts.get(&step).cloned().unwrap_or_default();
        let (exited, _) = watch::channel(false);
        state.containers.insert(
            name.to_owned(),
            Container {
                config,
                script,
                status: "created".into(),
                exit_code: 0,
                oom: false,
                exited,
                uploads: 0,
            },
        );
        Ok(())
    }

    async fn upload_archive(&self, name: &str, _path: &str, _tar: Bytes) -> DockerResult<()> {
        let mut state = self.state.lock().unwrap();
        let c = state
            .containers
            .get_mut(name)
            .ok_or_else(|| DockerError::NotFound(name.into()))?;
        c.uploads += 1;
        Ok(())
    }

    async fn read_file(
        &self,
        name: &str,
        path: &str,
        max_bytes: u64,
    ) -> DockerResult<Option<Vec<u8>>> {
        let state = self.state.lock().unwrap();
        let c = state
            .containers
            .get(name)
            .ok_or_else(|| DockerError::NotFound(name.into()))?;
        match c.script.files.get(path) {
            Some(bytes) if bytes.len() as u64 > max_bytes => {
                Err(DockerError::TooLarge { limit: max_bytes })
            }
            Some(bytes) => Ok(Some(bytes.clone())),
            None => Ok(None),
        }
    }

    async fn download_files(
        &self,
        name: &str,
        dir: &str,
        select: crate::docker::Select,
        caps: crate::docker::FileCaps,
    ) -> DockerResult<crate::docker::Downloaded> {
        let state = self.state.lock().unwrap();
        let c = state
            .containers
            .get(name)
            .ok_or_else(|| DockerError::NotFound(name.into()))?;
        let mut out = crate::docker::Downloaded::default();
        let mut paths: Vec<&String> = c.script.files.keys().collect();
        paths.sort();
        let mut bytes = 0u64;
        for path in paths {
            let Some(relative) = path.strip_prefix(&format!("{dir}/")) else {
                continue;
            };
            if !select(relative) {
                continue;
            }
            let data = &c.script.files[path];
            if out.files.len() >= caps.max_files || bytes + data.len() as u64 > caps.max_bytes {
                out.left_out.push(relative.to_owned());
                continue;
            }
            bytes += data.len() as u64;
            out.files.push((relative.to_owned(), data.clone()));
        }
        Ok(out)
    }

    async fn archive_size(&self, name: &str, _path: &str) -> DockerResult<u64> {
        let state = self.state.lock().unwrap();
        state
            .containers
            .get(name)
            .map(|_| 4096)
            .ok_or_else(|| DockerError::NotFound(name.into()))
    }

    async fn start_container(&self, name: &str) -> DockerResult<()> {
        let mut state = self.state.lock().unwrap();
        let c = state
            .containers
            .get_mut(name)
            .ok_or_else(|| DockerError::NotFound(name.into()))?;
        c.status = "running".into();
        if !c.script.runs_until_killed {
            let (code, oom) = (c.script.exit_code, c.script.oom);
            Self::exit(c, code, oom);
        }
        Ok(())
    }

    async fn inspect_container(&self, name: &str) -> DockerResult<Option<ContainerState>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .containers
            .get(name)
            .map(|c| ContainerState {
                status: c.status.clone(),
                running: c.status == "running",
                exit_code: c.exit_code,
                oom_killed: c.oom,
            }))
    }

    async fn oom_event(&self, name: &str, _wait: std::time::Duration) -> DockerResult<bool> {
        let state = self.state.lock().unwrap();
        Ok(state
            .containers
            .get(name)
            .is_some_and(|c| c.script.oom_event && c.status == "exited"))
    }

    fn logs(&self, name: &str, _since: i64) -> BoxStream<'static, DockerResult<LogChunk>> {
        self.state.lock().unwrap().log_reads += 1;
        self.messages(name)
    }

    async fn attach(&self, name: &str) -> DockerResult<BoxStream<'static, DockerResult<LogChunk>>> {
        // The scripted messages without their timestamps, as the container wrote them.
        let breaks_after = {
            let state = self.state.lock().unwrap();
            state
                .containers
                .get(name)
                .and_then(|c| c.script.attach_breaks_after)
        };
        let messages = self.messages(name);
        let messages = match breaks_after {
            Some(n) => messages
                .take(n)
                .chain(futures_util::stream::iter([Err(DockerError::Api(
                    "the attach connection broke".into(),
                ))]))
                .boxed(),
            None => messages,
        };
        Ok(messages
            .map(|item| {
                item.map(|chunk| {
                    let raw = match chunk.bytes.iter().position(|b| *b == b' ') {
                        Some(i) => chunk.bytes.slice(i + 1..),
                        None => chunk.bytes,
                    };
                    LogChunk {
                        stream: chunk.stream,
                        bytes: raw,
                    }
                })
            })
            .boxed())
    }

    async fn kill_container(&self, name: &str, signal: &str) -> DockerResult<()> {
        let mut state = self.state.lock().unwrap();
        state.signals.push(signal.to_owned());
        if let Some(c) = state.containers.get_mut(name) {
            if c.status == "running" {
                match signal {
                    "SIGKILL" => Self::exit(c, 137, false),
                    _ if !c.script.ignores_term => Self::exit(c, 143, false),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    async fn remove_container(&self, name: &str) -> DockerResult<()> {
        if let Some(mut c) = self.state.lock().unwrap().containers.remove(name) {
            Self::exit(&mut c, 137, false);
        }
        Ok(())
    }

    async fn list_containers(&self, label: &str) -> DockerResult<Vec<ContainerSummary>> {
        let (key, value) = label.split_once('=').unwrap_or((label, ""));
        Ok(self
            .state
            .lock()
            .unwrap()
            .containers
            .iter()
            .filter(|(_, c)| {
                label.is_empty()
                    || c.config
                        .labels
                        .as_ref()
                        .is_some_and(|l| l.get(key).map(String::as_str) == Some(value))
            })
            .map(|(name, c)| ContainerSummary {
                name: name.clone(),
                labels: c.config.labels.clone().unwrap_or_default(),
                running: c.status == "running",
            })
            .collect())
    }

    async fn ping(&self) -> DockerResult<()> {
        if self.state.lock().unwrap().down {
            return Err(DockerError::Api("connection refused".into()));
        }
        Ok(())
    }

    async fn usage(&self, name: &str) -> DockerResult<Usage> {
        match self.state.lock().unwrap().containers.get(name) {
            Some(_) => Ok(Usage {
                cpu_ns: 1_000_000,
                memory_bytes: 1 << 20,
            }),
            None => Err(DockerError::NotFound(name.to_owned())),
        }
    }
}
