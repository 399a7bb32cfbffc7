//! A webhook receiver for tests and benchmarks: a real HTTP server on 127.0.0.1 (a port the OS
//! picks) that records every request it gets (headers and body, before it answers) and answers
//! each as its [`Behaviour`] says: a status, or never (it holds the connection open). Stopped
//! when dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

/// How the receiver answers one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Never: the request waits until the sender gives up on it.
    Hang,
}

/// What to answer a request, given how many requests carrying the same delivery id
/// (`X-CI-Delivery`) came before it (0 for a delivery's first attempt).
pub type Behaviour = fn(usize) -> Answer;

/// One request as the receiver got it.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    /// A header's value (the name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Clone)]
struct Shared {
    behaviour: Behaviour,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A running receiver.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`: where to send deliveries.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver that answers as `behaviour` says.
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let shared = Shared {
            behaviour,
            received: Arc::default(),
        };
        let received = shared.received.clone();
        let app = axum::Router::new().fallback(receive).with_state(shared);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/hook"),
            received,
            server,
        }
    }

    /// Every request so far, in the order they came.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("the receiver's lock").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(shared): State<Shared>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let answer = {
        let mut received = shared.received.lock().expect("the receiver's lock");
        let delivery = headers.get("x-ci-delivery").cloned();
        let earlier = received
            .iter()
            .filter(|r| delivery.is_some() && r.headers.get("x-ci-delivery") == delivery.as_ref())
            .count();
        received.push(Received {
            at: Instant::now(),
            method: method.to_string(),
            path: uri.path().to_owned(),
            headers,
            body: body.to_vec(),
        });
        (shared.behaviour)(earlier)
    };
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Answer::Hang => std::future::pending().await,
    }
}
