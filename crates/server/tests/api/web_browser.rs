//! The browser harness: a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed with apt-get when missing) driven over WebDriver with fantoccini. Each [`Browser`]
//! is one chromedriver with one Chrome session and a fresh profile, ended when it drops; a test
//! opens one and walks through pages in it, as a person would. (Sharing one Chrome across tests
//! would need a process that outlives every test's runtime and is never dropped: statics are
//! not, so it would outlive the test binary too.)
//!
//! Screenshots go to `target/screenshots/` (git-ignored with `target/`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::helpers::DEADLINE;

/// The flags of every session: no sandbox (tests run as root), no GPU, and nothing that talks
/// to the network on its own (updates, sync, QUIC), so the only traffic is to the test's server.
const CHROME_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

pub struct Browser {
    pub client: Client,
    driver: Child,
    /// The session's `--user-data-dir`, deleted with the browser.
    _profile: tempfile::TempDir,
}

/// Installs Chromium and its driver once per machine (both come from one apt-get run).
fn ensure_installed() {
    crate::ops_install::tool("chromium", "--version", "chromium");
    crate::ops_install::tool("chromedriver", "--version", "chromium-driver");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    /// Starts chromedriver and opens a session with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Browser {
        ensure_installed();
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let status = reqwest::Client::new();
        crate::helpers::eventually(|| {
            let status = status.get(format!("{url}/status")).send();
            async move { status.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROME_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".to_owned(), json!({ "args": args }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector).capabilities(caps).connect(&url).await.expect("a Chrome session");
        Browser { client, driver, _profile: profile }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Types `text` into the field matched by CSS `selector`.
    pub async fn fill(&self, selector: &str, text: &str) {
        let field =
            self.client.wait().for_element(Locator::Css(selector)).await.unwrap_or_else(|e| panic!("{selector}: {e}"));
        field.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, selector: &str) {
        let element =
            self.client.wait().for_element(Locator::Css(selector)).await.unwrap_or_else(|e| panic!("{selector}: {e}"));
        element.click().await.unwrap_or_else(|e| panic!("click {selector}: {e}"));
    }

    /// Waits until the page's path (and query) is `expected`, e.g. after a form's redirect.
    pub async fn wait_for_path(&self, expected: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let url = self.client.current_url().await.unwrap();
            let got = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            if got == expected {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "still at {got}, not {expected}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page shows `needle`: for a form that posts back to its own address, where
    /// the path says nothing about whether the answer has arrived.
    pub async fn wait_for_text(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            // While a page is being replaced, its body can be missing for a moment.
            let body = self.client.find(Locator::Css("body")).await;
            let text = match body {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(needle) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{needle:?} never shown; the page says:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The page's HTML as the browser holds it.
    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        self.client.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
    }

    /// Saves a PNG of the window as `target/screenshots/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the session (Chrome exits) and then the driver.
    pub async fn close(mut self) {
        self.client.close().await.unwrap();
        let _ = self.driver.kill().await;
    }
}
