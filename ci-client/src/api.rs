//! The HTTP client of the `/api/v1` API, over one or more server replicas.
//!
//! Requests go to the current replica; when it cannot be reached the next one is tried, and the
//! one that answered becomes current. Errors say what to do: start a server, fix the key, ...

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use ci_common::api::TestList;
use ci_common::api::{ErrorBody, JobList, JobView, API_PREFIX};
use ci_common::keys::SecretKey;
use ci_common::results::TestOutcome;
use ci_common::webhooks::{CreatedWebhook, DeliveryList, NewWebhook, WebhookList};
use ci_common::{JobId, WebhookId};
use reqwest::{header, Method, RequestBuilder, Response, StatusCode, Url};

use crate::config::KEY_HELP;

/// How a request failed, so callers (and the reconnect loop) can tell what is worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "cannot reach the ci server at {urls}: start it with scripts/up.sh (or run ci-server), \
         or point --server / CI_SERVER_URL at a running one"
    )]
    Unreachable {
        urls: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the server refused the API key: {KEY_HELP}")]
    Unauthorized {
        #[source]
        message: ServerMessage,
    },
    #[error("{context}")]
    Rejected {
        status: StatusCode,
        context: String,
        #[source]
        message: ServerMessage,
    },
}

impl ApiError {
    /// Whether trying again (perhaps on another replica) may help.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } => true,
            ApiError::Unauthorized { .. } => false,
            ApiError::Rejected { status, .. } => status.is_server_error(),
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Unreachable { .. } => None,
            ApiError::Unauthorized { .. } => Some(StatusCode::UNAUTHORIZED),
            ApiError::Rejected { status, .. } => Some(*status),
        }
    }
}

/// What the server said about a refused request (its `ErrorBody.error`, or the raw body).
#[derive(Debug, thiserror::Error)]
#[error("server said: {0}")]
pub struct ServerMessage(pub String);

/// What a submission asks for besides the project's files (the fields of the upload).
#[derive(Clone, Copy, Debug, Default)]
pub struct Submission<'a> {
    pub task: &'a str,
    /// The image, if not the project's or the operator's default.
    pub image: Option<&'a str>,
    /// Extra pytest arguments.
    pub args: &'a [String],
    /// Re-runs of failed tests (`--retries`).
    pub retries: Option<u32>,
    /// Whether a flaky test fails the job (`--fail-on-flaky`).
    pub fail_on_flaky: bool,
    /// The project's name (`--project`).
    pub project: Option<&'a str>,
    /// The name of the folder submitted (the project's name when nothing else names it).
    pub folder: Option<&'a str>,
    /// Neither use nor fill the dependency cache (`--no-cache`).
    pub no_cache: bool,
    /// The team to submit the job to (`--team`).
    pub team: Option<&'a str>,
}

pub struct Api {
    http: reqwest::Client,
    servers: Vec<Url>,
    current: AtomicUsize,
    key: SecretKey,
}

impl Api {
    pub fn new(servers: Vec<Url>, key: SecretKey) -> Result<Self> {
        assert!(!servers.is_empty(), "at least one server URL");
        let http = reqwest::Client::builder()
            .user_agent(concat!("ci/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            // The event stream sends keep-alive comments while idle; this long without a byte
            // means the connection is dead and the follower should reconnect.
            .read_timeout(Duration::from_secs(75))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Api {
            http,
            servers,
            current: AtomicUsize::new(0),
            key,
        })
    }

    /// The replica requests go to now.
    pub fn current_server(&self) -> &Url {
        &self.servers[self.current.load(Ordering::Relaxed) % self.servers.len()]
    }

    /// Moves to the next replica (used when a stream breaks).
    pub fn rotate(&self) {
        if self.servers.len() > 1 {
            self.current.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn url(&self, base: &Url, path: &str) -> Url {
        let relative = format!(
            "{}/{}",
            API_PREFIX.trim_start_matches('/'),
            path.trim_start_matches('/')
        );
        base.join(&relative).expect("API paths are valid URL paths")
    }

    /// Sends a request built by `build` to the current replica, then to the others in order
    /// while none can be reached. Only connection failures move on: a request that reached a
    /// server is never sent twice.
    async fn send(
        &self,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
        method: Method,
    ) -> Result<Response, ApiError> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for offset in 0..self.servers.len() {
            let index = (start + offset) % self.servers.len();
            let url = self.url(&self.servers[index], path);
            let request =
                build(self.http.request(method.clone(), url)).bearer_auth(self.key.expose());
            match request.send().await {
                Ok(response) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(response);
                }
                Err(e) if e.is_connect() || (e.is_timeout() && method == Method::GET) => {
                    last_error = Some(e)
                }
                Err(e) => {
                    return Err(ApiError::Unreachable {
                        urls: self.servers[index].to_string(),
                        source: e,
                    });
                }
            }
        }
        Err(ApiError::Unreachable {
            urls: self.servers_text(),
            source: last_error.expect("at least one server was tried"),
        })
    }

    fn servers_text(&self) -> String {
        self.servers
            .iter()
            .map(|u| u.as_str().trim_end_matches('/'))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Uploads a project as a job, with what the submission asks for (see [`Submission`]).
    pub async fn submit(&self, zip: Vec<u8>, job: &Submission<'_>) -> Result<JobView, ApiError> {
        let Submission {
            task,
            image,
            args,
            retries,
            fail_on_flaky,
            project,
            folder,
            no_cache,
            team,
        } = *job;
        let build = |request: RequestBuilder| {
            let mut form = reqwest::multipart::Form::new()
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(zip.clone())
                        .file_name("project.zip")
                        .mime_str("application/zip")
                        .expect("valid MIME type"),
                )
                .text("task", task.to_owned());
            if let Some(image) = image {
                form = form.text("image", image.to_owned());
            }
            for arg in args {
                form = form.text("arg", arg.clone());
            }
            if let Some(retries) = retries {
                form = form.text("retries", retries.to_string());
            }
            if fail_on_flaky {
                form = form.text("flaky", "fail");
            }
            if let Some(project) = project {
                form = form.text("project", project.to_owned());
            }
            if let Some(folder) = folder {
                form = form.text("folder", folder.to_owned());
            }
            if no_cache {
                form = form.text("cache", "false");
            }
            if let Some(team) = team {
                form = form.text("team", team.to_owned());
            }
            request.multipart(form)
        };
        let response = self.send("jobs", build, Method::POST).await?;
        json(response, "the server rejected the upload").await
    }

    /// `POST`, `GET` or `DELETE` of `/api/v1/{path}` with an optional JSON body, answered with
    /// JSON (the trigger routes, whose shapes the server's OpenAPI document gives).
    pub async fn call_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        context: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let response = self
            .send(
                path,
                |r| match body {
                    Some(body) => r.json(body),
                    None => r,
                },
                method,
            )
            .await?;
        json(response, context).await
    }

    /// A request whose success has no body (`204 No Content`).
    pub async fn call_empty(
        &self,
        method: Method,
        path: &str,
        context: &str,
    ) -> Result<(), ApiError> {
        let response = self.send(path, |r| r, method).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(error_from(response, context).await)
        }
    }

    /// Queues a job whose project the service fetches from git (`ci submit --git`).
    pub async fn submit_git(
        &self,
        request: &ci_common::git::GitJobRequest,
    ) -> Result<JobView, ApiError> {
        let response = self.send("jobs", |r| r.json(request), Method::POST).await?;
        json(response, "the server rejected the job").await
    }

    /// The caller's latest job of `task` (in `project` when given).
    pub async fn task_status(
        &self,
        task: &str,
        project: Option<&str>,
    ) -> Result<JobView, ApiError> {
        let build = |r: RequestBuilder| match project {
            Some(project) => r.query(&[("project", project)]),
            None => r,
        };
        let response = self
            .send(&format!("tasks/{task}"), build, Method::GET)
            .await?;
        let what = match project {
            Some(project) => format!("a job of task {task:?} in project {project:?}"),
            None => format!("a job of task {task:?}"),
        };
        json(response, &what).await
    }

    pub async fn job(&self, id: JobId) -> Result<JobView, ApiError> {
        let response = self.send(&format!("jobs/{id}"), |r| r, Method::GET).await?;
        json(response, &not_found_hint(id)).await
    }

    /// One page of the jobs the caller sees (of `team` only, when given), newest first.
    pub async fn list(
        &self,
        limit: u32,
        before: Option<JobId>,
        team: Option<&str>,
    ) -> Result<JobList, ApiError> {
        let build = |r: RequestBuilder| {
            let mut r = r.query(&[("limit", limit.to_string())]);
            if let Some(before) = before {
                r = r.query(&[("before", before.to_string())]);
            }
            if let Some(team) = team {
                r = r.query(&[("team", team)]);
            }
            r
        };
        let response = self.send("jobs", build, Method::GET).await?;
        json(response, "cannot list jobs").await
    }

    /// Queues job `id` again as a new job.
    pub async fn retry(&self, id: JobId) -> Result<JobView, ApiError> {
        let response = self
            .send(&format!("jobs/{id}/retry"), |r| r, Method::POST)
            .await?;
        json(response, &not_found_hint(id)).await
    }

    pub async fn cancel(&self, id: JobId) -> Result<JobView, ApiError> {
        let response = self
            .send(&format!("jobs/{id}/cancel"), |r| r, Method::POST)
            .await?;
        json(response, &not_found_hint(id)).await
    }

    /// One page of the job's test results (only those with `outcome` if given).
    pub async fn tests(
        &self,
        id: JobId,
        outcome: Option<TestOutcome>,
        limit: u32,
        offset: i64,
    ) -> Result<TestList, ApiError> {
        let build = |r: RequestBuilder| {
            let r = r.query(&[("limit", limit.to_string()), ("offset", offset.to_string())]);
            match outcome {
                Some(outcome) => r.query(&[("outcome", outcome.as_str())]),
                None => r,
            }
        };
        let response = self
            .send(&format!("jobs/{id}/tests"), build, Method::GET)
            .await?;
        json(response, &not_found_hint(id)).await
    }

    /// All of the job's results with `outcome` (page by page), and its counts.
    pub async fn all_tests(
        &self,
        id: JobId,
        outcome: Option<TestOutcome>,
    ) -> Result<TestList, ApiError> {
        let mut all = TestList::default();
        let mut offset = 0;
        loop {
            let page = self.tests(id, outcome, TESTS_PAGE, offset).await?;
            all.tests.extend(page.tests);
            all.counts = page.counts;
            match page.next_offset {
                Some(next) if next > offset => offset = next,
                _ => return Ok(all),
            }
        }
    }

    /// Opens the job's event stream with the events after `after`.
    pub async fn events(&self, id: JobId, after: i64) -> Result<Response, ApiError> {
        let build = |r: RequestBuilder| {
            r.query(&[("after", after.to_string())])
                .header(header::ACCEPT, "text/event-stream")
                .header("Last-Event-ID", after.to_string())
        };
        let response = self
            .send(&format!("jobs/{id}/events"), build, Method::GET)
            .await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error_from(response, &not_found_hint(id)).await)
        }
    }
}

/// Results asked for per request when reading them all (the server's cap).
const TESTS_PAGE: u32 = 1000;

/// One artifact of a job, as `GET /api/v1/jobs/{id}/artifacts` lists it.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct Artifact {
    /// Its path in the project, e.g. `dist/pkg-1.0-py3-none-any.whl`.
    pub path: String,
    /// Bytes.
    pub size: i64,
    /// SHA-256, hex.
    pub sha256: String,
}

#[derive(serde::Deserialize)]
struct ArtifactList {
    artifacts: Vec<Artifact>,
}

impl Api {
    /// The job's artifacts.
    pub async fn artifacts(&self, id: JobId) -> Result<Vec<Artifact>, ApiError> {
        let response = self
            .send(&format!("jobs/{id}/artifacts"), |r| r, Method::GET)
            .await?;
        Ok(json::<ArtifactList>(response, &not_found_hint(id))
            .await?
            .artifacts)
    }

    /// One artifact's bytes.
    pub async fn artifact(&self, id: JobId, path: &str) -> Result<Vec<u8>, ApiError> {
        let response = self
            .send(&format!("jobs/{id}/artifacts/{path}"), |r| r, Method::GET)
            .await?;
        let what = format!("artifact {path} of job {id}");
        if !response.status().is_success() {
            return Err(error_from(response, &what).await);
        }
        let status = response.status();
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ApiError::Rejected {
                status,
                context: format!("the download of {what} broke off; try again"),
                message: ServerMessage(e.to_string()),
            })
    }
}

impl Api {
    /// Registers a webhook for `url` and `events` (names; none: all); the answer carries its
    /// secret.
    pub async fn add_webhook(
        &self,
        url: &str,
        events: &[String],
    ) -> Result<CreatedWebhook, ApiError> {
        let body = NewWebhook {
            url: url.to_owned(),
            events: events.to_vec(),
        };
        let response = self
            .send("webhooks", |r| r.json(&body), Method::POST)
            .await?;
        json(response, "the server refused the webhook").await
    }

    /// The caller's webhooks.
    pub async fn webhooks(&self) -> Result<WebhookList, ApiError> {
        let response = self.send("webhooks", |r| r, Method::GET).await?;
        json(response, "cannot list webhooks").await
    }

    /// Removes the caller's webhook `id`.
    pub async fn remove_webhook(&self, id: WebhookId) -> Result<(), ApiError> {
        let response = self
            .send(&format!("webhooks/{id}"), |r| r, Method::DELETE)
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(error_from(response, &webhook_hint(id)).await)
        }
    }

    /// The latest deliveries (at most `limit`) of the caller's webhook `id`, newest first.
    pub async fn deliveries(&self, id: WebhookId, limit: u32) -> Result<DeliveryList, ApiError> {
        let build = |r: RequestBuilder| r.query(&[("limit", limit.to_string())]);
        let response = self
            .send(&format!("webhooks/{id}/deliveries"), build, Method::GET)
            .await?;
        json(response, &webhook_hint(id)).await
    }
}

fn webhook_hint(id: WebhookId) -> String {
    format!("webhook {id}")
}

fn not_found_hint(id: JobId) -> String {
    format!("job {id}")
}

async fn json<T: serde::de::DeserializeOwned>(
    response: Response,
    what: &str,
) -> Result<T, ApiError> {
    if !response.status().is_success() {
        return Err(error_from(response, what).await);
    }
    let status = response.status();
    let url = response.url().clone();
    response.json().await.map_err(|e| ApiError::Rejected {
        status,
        context: format!("the server at {url} sent an answer ci cannot read (is it a ci server of the same version?)"),
        message: ServerMessage(e.to_string()),
    })
}

/// Turns a non-2xx answer into an error that says what to do.
async fn error_from(response: Response, what: &str) -> ApiError {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => body.error,
        Err(_) if text.trim().is_empty() => status.to_string(),
        Err(_) => text.trim().chars().take(500).collect(),
    };
    let message = ServerMessage(message);
    if status == StatusCode::UNAUTHORIZED {
        return ApiError::Unauthorized { message };
    }
    let context = match status {
        StatusCode::NOT_FOUND if what.starts_with("job ") => format!(
            "{what} was not found: check the ID (`ci list` shows your jobs; other users' jobs are not visible)"
        ),
        StatusCode::NOT_FOUND if what.starts_with("webhook ") => format!(
            "{what} was not found: check the ID (`ci webhooks list` shows yours; other users' webhooks are not visible)"
        ),
        StatusCode::NOT_FOUND if what.starts_with("a job of task ") => format!(
            "you have no {} yet: submit one with `ci submit TASK`",
            &what[2..]
        ),
        StatusCode::CONFLICT => format!("{what}: the request conflicts with the job's state"),
        s if s.is_server_error() => format!(
            "{what}: the server failed ({s}); try again, or ask its operator to check its log"
        ),
        s => format!("{what} ({s})"),
    };
    ApiError::Rejected {
        status,
        context,
        message,
    }
}
