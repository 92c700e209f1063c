//! A throwaway PostgreSQL cluster for tests: one per test process, a fresh database per test.
//!
//! Started from Debian's `postgresql` binaries (installed with apt-get when missing and running
//! as root), as the `postgres` system user when the tests run as root (`initdb` refuses root),
//! with its data directory in a temporary folder and only a unix socket in that folder, so no
//! port is taken and no system service is touched. Included by path from the store's contract
//! tests and the server's black-box tests (`#[path]`), so both start it the same way.
//!
//! The cluster lives exactly as long as the test process: the server runs under a shell that
//! waits on a pipe from this process, and when the process exits (however it exits) the pipe
//! closes, the shell stops the server (`SIGQUIT`, immediate shutdown) and removes the folder.
//! `fsync=off`: the tests kill Concord, never PostgreSQL, so PostgreSQL's own crash safety is not
//! under test, and skipping fsync keeps a database per test cheap on a loaded machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct Cluster {
    /// The folder holding the unix socket; also the data directory's parent.
    socket_dir: PathBuf,
    /// Numbers the databases handed out by this process.
    next: AtomicU32,
    /// The write end of the shell's pipe: held until the process exits, then the cluster stops.
    _lifeline: std::process::ChildStdin,
}

/// The cluster of this test process, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(start)
}

impl Cluster {
    /// A URL to a new, empty database of its own.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection;
        let name = format!("concord_{}", self.next.fetch_add(1, Ordering::Relaxed));
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres")).await.expect("connect to the test cluster");
        // Names are generated above, never input, so building this statement is safe.
        let create = format!("CREATE DATABASE {name}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&mut admin).await.expect("create a test database");
        admin.close().await.ok();
        self.url(&name)
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@localhost/{database}?host={}", self.socket_dir.display())
    }
}

fn start() -> Cluster {
    let bin = binaries();
    let root = std::env::temp_dir().join(format!("concord-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir(&root).expect("create the cluster folder");
    let as_root = is_root();
    if as_root {
        run(Command::new("chown").arg("postgres:postgres").arg(&root));
    }
    let data = root.join("data");
    run(as_cluster_owner(as_root, &bin.join("initdb"))
        .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "-D"])
        .arg(&data)
        .stdout(Stdio::null()));
    let script = r#"
        "$1/postgres" -D "$2/data" -k "$2" -c listen_addresses= -c fsync=off -c full_page_writes=off \
            -c synchronous_commit=on -c max_connections=300 -c shared_buffers=32MB >"$2/log" 2>&1 &
        pg=$!
        read _ignored
        kill -QUIT "$pg"
        wait "$pg"
        rm -rf "$2"
    "#;
    let mut shell = as_cluster_owner(as_root, Path::new("/bin/sh"))
        .args(["-c", script, "sh"])
        .arg(&bin)
        .arg(&root)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start the test cluster");
    let lifeline = shell.stdin.take().expect("piped stdin");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-U", "postgres", "-h"])
            .arg(&root)
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        if let Ok(Some(status)) = shell.try_wait() {
            let log = std::fs::read_to_string(root.join("log")).unwrap_or_default();
            panic!("the test cluster exited ({status}):\n{log}");
        }
        assert!(Instant::now() < deadline, "the test cluster did not become ready within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    Cluster { socket_dir: root, next: AtomicU32::new(0), _lifeline: lifeline }
}

/// The newest installed PostgreSQL's binaries, installing Debian's package first if there is none.
fn binaries() -> PathBuf {
    let find = || {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("initdb").is_file())
            .collect();
        found.sort_by_key(|bin| bin.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()));
        found.pop()
    };
    if let Some(bin) = find() {
        return bin;
    }
    assert!(is_root(), "PostgreSQL is not installed: install Debian's `postgresql` package to run these tests");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        run(Command::new("apt-get").arg("update"));
        assert!(install(), "apt-get install postgresql failed");
    }
    find().expect("postgresql installed its binaries under /usr/lib/postgresql")
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `program` as the cluster's owner: the `postgres` system user when running as root.
fn as_cluster_owner(as_root: bool, program: &Path) -> Command {
    if !as_root {
        return Command::new(program);
    }
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"]).arg(program);
    cmd
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}
