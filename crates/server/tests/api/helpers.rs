//! `TestApp`: a real `concord` process on a free port with a private data directory, and typed
//! helpers for talking to it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a server may take to start, or a condition to become true, before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct TestApp {
    pub client: reqwest::Client,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    data: tempfile::TempDir,
    /// `--listen`: `127.0.0.1:0` unless the test chose another address.
    listen: String,
    /// `ulimit -n` for the server process, if the test sets one.
    open_file_limit: Option<u64>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    /// Everything the server wrote to stderr (its logs), across restarts.
    logs: Arc<Mutex<String>>,
    /// Accounts `register_confirmed` already made, so fixtures that pair several devices of one
    /// account register it once (repeated registrations count toward the register rate limit).
    registered: Mutex<std::collections::HashSet<String>>,
    /// Storage: a data directory the test provides (e.g. a small filesystem it mounted) instead
    /// of `data`.
    data_override: Option<PathBuf>,
}

#[derive(Default)]
pub struct TestAppBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// Storage: see [`TestAppBuilder::data_dir`].
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    open_file_limit: Option<u64>,
}

impl TestAppBuilder {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Runs the server on `dir` instead of a fresh temporary directory; the test owns `dir`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Listens on `addr` (with port 0) instead of `127.0.0.1:0`; clients still reach it on loopback.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// Starts the server with this soft and hard open-file limit (`ulimit -n`), to run it out of
    /// descriptors on purpose.
    pub fn open_file_limit(mut self, limit: u64) -> Self {
        self.open_file_limit = Some(limit);
        self
    }

    /// Storage (pg): runs the server on a fresh database of this test process's PostgreSQL
    /// cluster instead of the SQLite file; restarts keep the database.
    pub async fn postgres(self) -> Self {
        let url = crate::postgres_cluster::cluster().fresh_database().await;
        self.env("DATABASE_URL", url)
    }

    /// Blob storage (s3): keeps blobs in a fresh bucket of this test process's S3-compatible
    /// server (see `s3_moto`) instead of `<data>/blobs`; restarts keep the bucket.
    pub fn s3(self) -> Self {
        let store = crate::s3_moto::moto().fresh_store();
        self.s3_store(store)
    }

    /// Blob storage (s3) in the given store of this test process's S3-compatible server: nodes
    /// given the same one share their blobs.
    pub fn s3_store(self, store: String) -> Self {
        self.env("CONCORD_BLOB_STORE", store)
            .env("BLOB_S3_ENDPOINT", crate::s3_moto::moto().endpoint())
            .env("BLOB_S3_ALLOW_HTTP", "true")
            .env("BLOB_S3_ACCESS_KEY_ID", "concord-test")
            .env("BLOB_S3_SECRET_ACCESS_KEY", crate::s3_moto::SECRET_ACCESS_KEY)
    }

    pub async fn spawn(self) -> TestApp {
        let mut app = TestApp {
            client: reqwest::Client::builder().timeout(DEADLINE).build().unwrap(),
            base: String::new(),
            data: tempfile::tempdir().unwrap(),
            listen: self.listen.unwrap_or_else(|| "127.0.0.1:0".to_owned()),
            open_file_limit: self.open_file_limit,
            args: self.args,
            envs: self.envs,
            child: None,
            logs: Arc::default(),
            registered: Mutex::default(),
            data_override: self.data_dir,
        };
        app.start().await;
        app
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::builder().spawn().await
    }

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    /// A setting the test gave the server through its environment.
    pub fn env_value(&self, key: &str) -> Option<String> {
        self.envs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    /// Storage (pg): [`TestApp::spawn`] on PostgreSQL (see [`TestAppBuilder::postgres`]).
    pub async fn on_postgres() -> TestApp {
        TestApp::builder().postgres().await.spawn().await
    }

    /// Blob storage (s3): [`TestApp::spawn`] with blobs in S3 (see [`TestAppBuilder::s3`]).
    pub async fn on_s3() -> TestApp {
        TestApp::builder().s3().spawn().await
    }

    /// The command line the server runs with: the test's own data directory on a free port,
    /// with an environment emptied of anything the developer's shell might set.
    fn command(&self) -> Command {
        let mut cmd = Command::from(concord_with_open_file_limit(self.open_file_limit));
        cmd.env_clear()
            .env("CONCORD_LOG", "info")
            .arg("--data")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(&self.listen)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn start(&mut self) {
        let mut child = self.command().spawn().expect("start concord");
        let stderr = child.stderr.take().unwrap();
        let logs = self.logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut logs = logs.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let announced = tokio::time::timeout(DEADLINE, async {
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Some(base) = line.strip_prefix("listening on ") {
                    return Some(base.to_owned());
                }
            }
            None
        })
        .await;
        match announced {
            // A server on every interface is reached on loopback.
            Ok(Some(base)) => self.base = base.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:"),
            _ => panic!("server did not start; logs:\n{}", self.logs()),
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        self.child = Some(child);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.base.replacen("http://", "ws://", 1))
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until the logs contain `needle` (log lines arrive through a pipe, a moment after
    /// the event they describe).
    pub async fn wait_for_log(&self, needle: &str) -> String {
        eventually(|| async { self.logs().contains(needle) }).await;
        self.logs()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).expect("server is running")
    }

    /// How many file descriptors the server process has open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("the server's /proc entry").count()
    }

    pub fn data_dir(&self) -> &Path {
        self.data_override.as_deref().unwrap_or(self.data.path())
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("concord.db")
    }

    /// SIGKILL: the process gets no chance to flush or clean up.
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("server is running");
        child.kill().await.unwrap();
    }

    /// SIGTERM, then waits for the process to exit and returns its status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        send_sigterm(self.pid());
        self.wait_exit().await
    }

    /// Waits for the process to exit on its own (after a signal the test sent).
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is running");
        tokio::time::timeout(DEADLINE, child.wait()).await.expect("server exits").unwrap()
    }

    /// Starts the server again on the same data directory (after `kill9` or `terminate`, or
    /// stopping it first if it still runs). The port changes.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.terminate().await;
        }
        self.start().await;
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.unwrap()
    }
}

/// The `concord` binary, run with this soft and hard open-file limit if one is given: the shell
/// sets the limit and then becomes the server (`exec`), so the pid is the server's.
pub fn concord_with_open_file_limit(limit: Option<u64>) -> std::process::Command {
    let Some(limit) = limit else { return std::process::Command::new(env!("CARGO_BIN_EXE_concord")) };
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\"")).arg(env!("CARGO_BIN_EXE_concord"));
    cmd
}

/// Runs `concord` with only these settings (and a fresh data directory), expects it to refuse to
/// start, and returns what it wrote to stderr.
pub fn concord_refuses_to_start(envs: &[(&str, &str)], args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .env_clear()
        .envs(envs.iter().copied())
        .arg("--data")
        .arg(data.path())
        .args(args)
        .output()
        .unwrap();
    assert!(!output.status.success(), "concord should refuse to start with {envs:?} {args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Sends SIGTERM through the `kill` command, since the crate forbids `unsafe` (and so `libc::kill`).
pub fn send_sigterm(pid: u32) {
    send_signal(pid, "TERM");
}

/// Sends the signal named `signal` (`TERM`, `STOP`, `CONT`, ...) through the `kill` command.
pub fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A PyPI tool in the git-ignored venv `<dir>/.venv`, installed from `<dir>/requirements.txt`
/// (pinned) on first use; later runs reuse it.
pub fn python_tool(dir: &Path, bin: &str) -> PathBuf {
    // Tests that share a venv start together on a fresh checkout: one makes it while the others
    // wait, instead of each running `venv` and `pip` over the same folder at once.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let venv = dir.join(".venv");
    let tool = venv.join("bin").join(bin);
    if !tool.exists() {
        let made =
            std::process::Command::new("python3").arg("-m").arg("venv").arg(&venv).status().expect("python3 runs");
        assert!(made.success(), "python3 -m venv failed");
        let pip = std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "-r"])
            .arg(dir.join("requirements.txt"))
            .status()
            .expect("pip runs");
        assert!(pip.success(), "pip install -r {}/requirements.txt failed", dir.display());
    }
    tool
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`]. Readiness is always
/// awaited this way, never with a fixed sleep.
pub async fn eventually<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Parses a JSON response, asserting its status first.
pub async fn json(response: reqwest::Response, status: u16) -> serde_json::Value {
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The password of accounts the helpers create; tests about passwords choose their own.
pub const TEST_PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    /// `GET` with `Authorization: Bearer <token>`.
    pub async fn get_auth(&self, path: &str, token: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    /// `POST` of a JSON body with `Authorization: Bearer <token>`.
    pub async fn post_auth(&self, path: &str, token: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client.post(self.url(path)).bearer_auth(token).json(body).send().await.unwrap()
    }

    /// Signs `email` in through the dev-mode magic link (the server must have no SMTP
    /// credentials, the default) and returns the Diaryx session token. Each call requests a link,
    /// and an address gets 3 links an hour.
    pub async fn sign_in(&self, email: &str) -> String {
        let body = json(self.post_json("/auth/magic-link", &serde_json::json!({ "email": email })).await, 200).await;
        let link = body["dev_link"].as_str().unwrap_or_else(|| panic!("no dev_link (SMTP configured?): {body}"));
        let token = link.split_once("token=").unwrap().1;
        let verified = json(self.get(&format!("/auth/verify?token={token}&device_name=test")).await, 200).await;
        verified["token"].as_str().unwrap().to_owned()
    }

    /// Pairs a Verstak device for `vault_id` and returns `(device_id, device_token)`. For an email,
    /// the account is first registered and confirmed (dev mode, [`TEST_PASSWORD`]) unless it
    /// exists; a login without `@` must name an existing account whose password is
    /// [`TEST_PASSWORD`] (e.g. one made with `--admin-user NAME --admin-pass <TEST_PASSWORD>`).
    pub async fn paired_device(&self, email_or_login: &str, vault_id: &str) -> (String, String) {
        if email_or_login.contains('@') {
            self.register_confirmed(email_or_login).await;
        }
        let body = serde_json::json!({
            "login": email_or_login,
            "password": TEST_PASSWORD,
            "device_name": "test device",
            "client_version": "verstak-desktop/v2",
            "vault_id": vault_id,
        });
        let paired = json(self.post_json("/api/client/pair", &body).await, 200).await;
        (paired["device_id"].as_str().unwrap().to_owned(), paired["device_token"].as_str().unwrap().to_owned())
    }

    /// Registers `email` with [`TEST_PASSWORD`] and confirms it through the dev-mode link; an
    /// account that already exists is left as it is. The username is the email with `@` → `.`.
    pub async fn register_confirmed(&self, email: &str) {
        if !self.registered.lock().unwrap().insert(email.to_owned()) {
            return;
        }
        let username = email.replace('@', ".");
        let body = serde_json::json!({ "username": username, "email": email, "password": TEST_PASSWORD });
        let response = self.post_json("/api/v1/auth/register", &body).await;
        if response.status() == 409 {
            return;
        }
        let registered = json(response, 200).await;
        let link =
            registered["dev_link"].as_str().unwrap_or_else(|| panic!("no dev_link (SMTP configured?): {registered}"));
        let token = link.split_once("token=").unwrap().1;
        let confirmed =
            json(self.post_json("/api/v1/auth/confirm", &serde_json::json!({ "token": token })).await, 200).await;
        assert_eq!(confirmed["status"], "confirmed");
    }
}

impl TestApp {
    /// The server's peak resident memory so far (`VmHWM` of `/proc/<pid>/status`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// A client whose connections come from `source` (any 127.0.0.0/8 address reaches the
    /// server), so a test can be several client IPs for the rate limits.
    pub fn client_from(&self, source: std::net::Ipv4Addr) -> reqwest::Client {
        reqwest::Client::builder().timeout(DEADLINE).local_address(std::net::IpAddr::V4(source)).build().unwrap()
    }
}

/// What one run of an operator command (`concord user …`, `concord backup …`) did.
#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `concord <args>` to completion with an emptied environment, feeding `stdin` to it.
pub async fn concord_cli(args: &[&str], stdin: &str) -> CliRun {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_concord"))
        .env_clear()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start concord");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(DEADLINE * 2, child.wait_with_output()).await.expect("command finishes").unwrap();
    CliRun {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl TestApp {
    /// Blocks a user (id, username or address) through the recovery CLI on the live data
    /// directory, as an operator would, rather than by writing to the database from the test.
    /// Returns once the CLI has exited, so the block is committed.
    pub async fn block_user(&self, user: &str) {
        let data = self.data_dir().to_str().unwrap();
        let mut args = vec!["user", "block", user, "--data", data];
        // Storage (pg): the CLI works on the database the server uses.
        let url = self.env_value("DATABASE_URL");
        if let Some(url) = &url {
            args.extend(["--database-url", url]);
        }
        let run = concord_cli(&args, "").await;
        assert_eq!(run.code, 0, "{run:?}");
    }
}
