//! The HTTP side: submitting jobs, polling them, and a lean SSE follower that timestamps every
//! log line as it arrives.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::stack::now_ns;

/// Statuses a job never leaves.
pub const TERMINAL: &[&str] = &[
    "passed",
    "failed",
    "error",
    "timed_out",
    "cancelled",
    "lost",
];

/// One HTTP client for the whole run (no proxy: all traffic is to 127.0.0.1).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()
        .expect("http client")
}

/// A job the server accepted, and when the 201 arrived.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub job_id: String,
    pub accepted_ns: u64,
}

/// `POST /api/v1/jobs` with `zip` as the `file` field; fails unless 201.
pub async fn submit(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    zip: Vec<u8>,
) -> Result<Accepted> {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(zip).file_name("project.zip"),
    );
    let response = http
        .post(format!("{base}/api/v1/jobs"))
        .bearer_auth(key)
        .multipart(form)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .context("POST /api/v1/jobs")?;
    let accepted_ns = now_ns();
    let status = response.status();
    let body = response.text().await.context("submit response body")?;
    if status.as_u16() != 201 {
        bail!("submit answered {status}: {body}");
    }
    let json: serde_json::Value = serde_json::from_str(&body).context("submit response JSON")?;
    let job_id = json["job_id"]
        .as_str()
        .with_context(|| format!("no job_id in {body}"))?
        .to_owned();
    Ok(Accepted {
        job_id,
        accepted_ns,
    })
}

/// `GET /api/v1/jobs/{id}`.
pub async fn job(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
) -> Result<serde_json::Value> {
    let response = http
        .get(format!("{base}/api/v1/jobs/{id}"))
        .bearer_auth(key)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .context("GET job")?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        bail!("GET /api/v1/jobs/{id} answered {status}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// Polls the job every 20 ms until it is in a terminal state and returns its view.
pub async fn wait_done(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
    timeout: Duration,
) -> Result<serde_json::Value> {
    wait_done_every(http, base, key, id, timeout, Duration::from_millis(20)).await
}

/// [`wait_done`], polling every `interval` (for many jobs at once, whose polls would otherwise
/// take the CPU the jobs run on).
pub async fn wait_done_every(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
    timeout: Duration,
    interval: Duration,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let view = job(http, base, key, id).await?;
        let status = view["status"].as_str().unwrap_or_default();
        if TERMINAL.contains(&status) {
            return Ok(view);
        }
        if Instant::now() >= deadline {
            bail!("job {id} still {status} after {timeout:?}");
        }
        tokio::time::sleep(interval).await;
    }
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    status: Option<String>,
}

/// What one follower saw.
#[derive(Debug, Default)]
pub struct Followed {
    /// Log events received.
    pub log_events: u64,
    /// The final `complete` event's status, if the stream got that far.
    pub complete_status: Option<String>,
    /// SSE ids that were not the previous id + 1.
    pub id_gaps: u64,
    /// When the response headers arrived.
    pub connected_ns: u64,
}

/// Follows `GET /api/v1/jobs/{id}/events?after=0` until the `complete` event, calling `on_log`
/// with every log line's text and the time its chunk arrived.
pub async fn follow(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
    timeout: Duration,
    mut on_log: impl FnMut(&str, u64),
) -> Result<Followed> {
    let run = async {
        let response = http
            .get(format!("{base}/api/v1/jobs/{id}/events?after=0"))
            .bearer_auth(key)
            .header("accept", "text/event-stream")
            .send()
            .await
            .context("GET events")?;
        let status = response.status();
        if status.as_u16() != 200 {
            let body = response.text().await.unwrap_or_default();
            bail!("GET events answered {status}: {body}");
        }
        let mut out = Followed {
            connected_ns: now_ns(),
            ..Followed::default()
        };
        let mut parser = SseParser::default();
        let mut last_id: Option<i64> = None;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.context("reading the event stream")?;
            let arrived = now_ns();
            let mut done = false;
            parser.push(&chunk, |event| {
                if let Ok(id) = event.id.parse::<i64>() {
                    if let Some(prev) = last_id {
                        if id != prev + 1 {
                            out.id_gaps += 1;
                        }
                    }
                    last_id = Some(id);
                }
                let Ok(payload) = serde_json::from_str::<Payload>(&event.data) else {
                    return;
                };
                match payload.kind.as_str() {
                    "log" => {
                        out.log_events += 1;
                        if let Some(serde_json::Value::String(text)) = &payload.data {
                            on_log(text, arrived);
                        }
                    }
                    "complete" => {
                        out.complete_status = Some(payload.status.unwrap_or_default());
                        done = true;
                    }
                    _ => {}
                }
            });
            if done {
                return Ok(out);
            }
        }
        bail!("the event stream ended without a complete event")
    };
    tokio::time::timeout(timeout, run)
        .await
        .with_context(|| format!("following job {id} took longer than {timeout:?}"))?
}

/// One parsed SSE event.
#[derive(Debug, Default, PartialEq)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: String,
}

/// An incremental `text/event-stream` parser (lines end in LF or CRLF; comments skipped).
#[derive(Default)]
pub struct SseParser {
    partial: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&SseEvent)) {
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let (line, tail) = rest.split_at(pos);
            rest = &tail[1..];
            if self.partial.is_empty() {
                self.line(line, &mut emit);
            } else {
                let mut full = std::mem::take(&mut self.partial);
                full.extend_from_slice(line);
                self.line(&full, &mut emit);
            }
        }
        self.partial.extend_from_slice(rest);
    }

    fn line(&mut self, line: &[u8], emit: &mut impl FnMut(&SseEvent)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                emit(&self.current);
            }
            self.current.event.clear();
            self.current.data.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "id" => self.current.id = value.to_owned(),
            "event" => self.current.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_chunks() {
        let mut parser = SseParser::default();
        let mut seen = Vec::new();
        let text = b": keep-alive\n\nid: 1\nevent: log\ndata: {\"a\":1}\n\nid: 2\r\ndata: x\r\ndata: y\r\n\r\n";
        for chunk in text.chunks(5) {
            parser.push(chunk, |e| {
                seen.push((e.id.clone(), e.event.clone(), e.data.clone()))
            });
        }
        assert_eq!(
            seen,
            vec![
                ("1".into(), "log".into(), "{\"a\":1}".into()),
                ("2".into(), "".into(), "x\ny".into()),
            ]
        );
    }
}
