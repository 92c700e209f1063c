//! A throwaway S3-compatible server for the tests: moto's server (PyPI `moto[server]`, pinned in
//! `tests/s3/requirements.txt`, in the git-ignored venv `tests/s3/.venv`), one per test process on
//! a free loopback port, a fresh bucket per test; and what the tests read straight from it.
//!
//! Why moto: it installs from PyPI in under two minutes here, where `s3s-fs` is a cargo build of
//! several minutes on two shared cores, and it implements what the blob store uses: multipart
//! uploads (with S3's 5 MiB part minimum), ranged GETs, CopyObject, ListObjectsV2 and
//! ListMultipartUploads. It keeps objects in its own process, which suits tests that kill Concord
//! and never the S3 server. It does not check signatures, so the tests read the bucket with plain
//! requests (Concord signs every request all the same).
//!
//! Lifetime, as for the pg tests' PostgreSQL cluster: moto runs under a shell that waits on a pipe
//! from this process; when the process exits (however it exits) the pipe closes and the shell
//! stops moto.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The secret access key the tests give Concord; no log line may ever show it.
pub const SECRET_ACCESS_KEY: &str = "concord-test-secret-9f2c41d7";
/// The key prefix of every test's store, so that prefixes are exercised (`s3://bucket/concord`).
const PREFIX: &str = "concord";

pub struct Moto {
    port: u16,
    /// Numbers the buckets handed out by this process.
    next: AtomicU32,
    /// moto's log, one line per request it answered (werkzeug's access log).
    log: std::path::PathBuf,
    /// The write end of the shell's pipe: held until the process exits, then moto stops.
    _lifeline: std::process::ChildStdin,
    /// The shell, never waited for: it outlives nothing but this process.
    _shell: std::process::Child,
}

/// The S3 server of this test process, started on first use.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start)
}

impl Moto {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new, empty bucket, as `--blob-store` names it.
    pub fn fresh_store(&self) -> String {
        let bucket = format!("concord-{}-{}", std::process::id(), self.next.fetch_add(1, Ordering::Relaxed));
        let (status, body) = self.request("PUT", &format!("/{bucket}"), b"");
        assert_eq!(status, 200, "create bucket {bucket}: {body}");
        format!("s3://{bucket}/{PREFIX}")
    }

    /// One unsigned HTTP/1.0 request (moto closes the connection after it): status and body.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        conn.set_read_timeout(Some(crate::helpers::DEADLINE)).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\r\n",
            self.port,
            body.len()
        );
        conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(body)).expect("send to moto");
        let mut response = Vec::new();
        conn.read_to_end(&mut response).expect("read moto's answer");
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, body.to_owned())
    }
}

/// The bucket and key prefix of a `--blob-store` URL this module made.
fn bucket_of(store: &str) -> (&str, &str) {
    store.strip_prefix("s3://").and_then(|rest| rest.split_once('/')).expect("an s3://bucket/prefix URL")
}

/// Every object below the store's prefix, as its key below it (`aa/bb/<sha>`, `tmp/<id>`).
pub fn keys(store: &str) -> Vec<String> {
    let mut keys: Vec<String> = objects(store).into_iter().map(|(key, _)| key).collect();
    keys.sort();
    keys
}

/// The size of the object at `key` below the store's prefix, if there is one.
pub fn size(store: &str, key: &str) -> Option<u64> {
    objects(store).into_iter().find(|(k, _)| k == key).map(|(_, size)| size)
}

/// ListObjectsV2 below the prefix (one page: tests store far fewer than 1000 objects): each
/// object's key below the prefix and its size.
fn objects(store: &str) -> Vec<(String, u64)> {
    let (bucket, prefix) = bucket_of(store);
    let (status, body) = moto().request("GET", &format!("/{bucket}?list-type=2&prefix={prefix}/"), b"");
    assert_eq!(status, 200, "{body}");
    let element = |xml: &str, tag: &str| -> String {
        let open = format!("<{tag}>");
        xml.split_once(&open).and_then(|(_, rest)| rest.split_once(&format!("</{tag}>"))).unwrap().0.to_owned()
    };
    body.split("<Contents>")
        .skip(1)
        .map(|object| {
            let key = element(object, "Key");
            let below = key.strip_prefix(&format!("{prefix}/")).unwrap_or(&key).to_owned();
            (below, element(object, "Size").parse().unwrap())
        })
        .collect()
}

/// Multipart uploads begun in the bucket and neither completed nor aborted.
pub fn unfinished_uploads(store: &str) -> usize {
    let (bucket, _) = bucket_of(store);
    let (status, body) = moto().request("GET", &format!("/{bucket}?uploads"), b"");
    assert_eq!(status, 200, "{body}");
    body.matches("<Upload>").count()
}

/// How many `method` requests moto has answered for keys below the store's prefix that start with
/// `key` (a blob's key, or `tmp/.health-` for the readiness probes), from its access log.
pub fn requests(store: &str, method: &str, key: &str) -> usize {
    let (bucket, prefix) = bucket_of(store);
    let line_start = format!("\"{method} /{bucket}/{prefix}/{key}");
    let log = std::fs::read_to_string(&moto().log).expect("moto's log");
    log.lines().filter(|line| line.contains(&line_start)).count()
}

/// Puts an object at `key` below the store's prefix, as another writer (or a crash) leaves one.
pub fn put(store: &str, key: &str, bytes: &[u8]) {
    let (bucket, prefix) = bucket_of(store);
    let (status, body) = moto().request("PUT", &format!("/{bucket}/{prefix}/{key}"), bytes);
    assert_eq!(status, 200, "{body}");
}

fn start() -> Moto {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3");
    let bin = crate::helpers::python_tool(&tools, "moto_server");
    // A port the kernel just handed out and took back: free unless something grabs it meanwhile.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::env::temp_dir().join(format!("concord-moto-{}.log", std::process::id()));
    let script = r#"
        "$1" -H 127.0.0.1 -p "$2" >"$3" 2>&1 &
        moto=$!
        read _ignored
        kill "$moto"
        wait "$moto"
        rm -f "$3"
    "#;
    let mut shell = Command::new("/bin/sh")
        .args(["-c", script, "sh"])
        .arg(&bin)
        .arg(port.to_string())
        .arg(&log)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start moto");
    let lifeline = shell.stdin.take().expect("piped stdin");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let moto = Moto { port, next: AtomicU32::new(0), log, _lifeline: lifeline, _shell: shell };
            assert_eq!(moto.request("GET", "/", b"").0, 200, "moto answers");
            return moto;
        }
        if let Ok(Some(status)) = shell.try_wait() {
            panic!("moto exited ({status}):\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "moto did not answer within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}
