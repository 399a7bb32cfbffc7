//! A real headless Chromium driven through chromedriver (WebDriver), for the web UI's tests
//! (`tests/ui_browser.rs`) and benchmark, and what they ask of a page: elements by CSS, text,
//! and script results, each polled with a timeout.
//!
//! Chromium and chromedriver are Debian's (`scripts/ensure-browser.sh` installs them). A missing
//! one fails with what to run: the tests never skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::{Proc, WAIT};

/// How long a page may take to show what a test waits for.
pub const PAGE_WAIT: Duration = Duration::from_secs(60);

/// The browser window: large enough for a job's header and a screenful of its log.
const WINDOW: (u32, u32) = (1280, 1000);

/// The first of `names` on PATH, or a failure that says how to install it.
fn program(names: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{} is not installed: the web UI's browser tests need Debian's chromium and \
         chromium-driver (run scripts/ensure-browser.sh as root, or apt-get install -y chromium \
         chromium-driver); CI={}",
        names.join(" or "),
        std::env::var("CI").unwrap_or_default()
    );
}

/// A headless Chromium session; the browser and its driver end when it is dropped.
pub struct Browser {
    pub client: Client,
    /// In a mutex only so that a `&Browser` can be held across `.await` in a spawned task.
    driver: std::sync::Mutex<Proc>,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Self {
        let chromium = program(&["chromium", "chromium-browser"]);
        let chromedriver = program(&["chromedriver"]);
        let mut cmd = Command::new(chromedriver);
        cmd.arg("--port=0");
        let mut driver = Proc::spawn("chromedriver", cmd);
        let line = driver.wait_for_line("started successfully on port", WAIT);
        let port: u16 = line
            .trim_end_matches('.')
            .rsplit(' ')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in chromedriver's line {line:?}"));
        let profile = tempfile::tempdir().expect("browser profile folder");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // As root (CI), Chromium refuses to start with its sandbox.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-extensions",
                    "--no-first-run",
                    "--hide-scrollbars",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("cannot start Chromium through chromedriver: {e}"));
        Self {
            client,
            driver: std::sync::Mutex::new(driver),
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current URL")
            .to_string()
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns what it returns.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something other than null/false/undefined, and returns it.
    pub async fn wait_js(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let value = self.client.execute(script, args.clone()).await;
            match value {
                Ok(Value::Null) | Ok(Value::Bool(false)) | Err(_) => {}
                Ok(value) => return value,
            }
            if Instant::now() >= deadline {
                let url = self.url().await;
                let text = self
                    .js(
                        "return document.body ? document.body.innerText : ''",
                        vec![],
                    )
                    .await;
                panic!(
                    "timed out after {PAGE_WAIT:?} waiting for {what} on {url}\n--- page text:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for an element matching `css` and returns it.
    pub async fn find(&self, css: &str) -> Element {
        self.wait_js(
            &format!("an element {css}"),
            "return document.querySelector(arguments[0]) !== null",
            vec![json!(css)],
        )
        .await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// The text of the element `css` (empty when there is none).
    pub async fn text(&self, css: &str) -> String {
        self.js(
            "const n = document.querySelector(arguments[0]); return n ? n.textContent : ''",
            vec![json!(css)],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until the text of `css` contains `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        self.wait_js(
            &format!("{needle:?} in {css}"),
            "const n = document.querySelector(arguments[0]); \
             return n && n.textContent.includes(arguments[1]) ? n.textContent : null",
            vec![json!(css), json!(needle)],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Milliseconds from navigation start to the performance mark `name` (the log view sets
    /// `ci:first-line` and `ci:last-line` when those lines are first on screen with their text).
    pub async fn mark(&self, name: &str) -> f64 {
        self.wait_js(
            &format!("the performance mark {name}"),
            "const m = performance.getEntriesByName(arguments[0]); \
             return m.length ? m[0].startTime : null;",
            vec![json!(name)],
        )
        .await
        .as_f64()
        .expect("a time")
    }

    /// Signs in on the sign-in page of `server_url` with `key`, and waits for the jobs page.
    pub async fn sign_in(&self, server_url: &str, key: &str) {
        self.goto(&format!("{server_url}/ui/signin")).await;
        self.sign_in_here(key).await;
    }

    /// Signs in with `key` on the sign-in page the browser shows, and waits for the page it
    /// leads to.
    pub async fn sign_in_here(&self, key: &str) {
        let input = self.find("#api-key").await;
        input.send_keys(key).await.expect("type the key");
        self.click("#signin-button").await;
        self.find("body[data-session=signed-in]").await;
    }

    /// Saves a PNG screenshot of the window as `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::create_dir_all(path.parent().expect("folder")).expect("screenshot folder");
        std::fs::write(path, png).expect("write screenshot");
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
        drop(self.driver);
    }
}
