//! Concord's Rust load generator (`bench/run --loadgen rust`): thousands of y-protocols clients in
//! one process against any server by URL, open-loop offered rates, connection setup outside the
//! timings, convergence checked in every scenario. Prints one JSON object on stdout.

mod blobs;
mod client;
mod fanout;
mod mixed;
mod oplog;
mod storm;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::watch;

use client::{Client, Protocol, Target};
use fanout::Placement;

/// Open files the load generator asks for: 50k sockets and some to spare.
const WANTED_FILES: u64 = 120_000;
/// Runs of one Y3 rate before it counts as failed.
const Y3_ATTEMPTS: usize = 2;
/// How often [`PeakRss`] samples the server's memory.
const RSS_SAMPLE: Duration = Duration::from_millis(10);

/// How long one client may take from opening its socket to holding the server's state.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);
/// Sockets opened at once: enough to measure the server's accept path rather than our round trips,
/// few enough not to overflow a default listen backlog.
const CONNECT_CONCURRENCY: usize = 64;

#[derive(Parser)]
struct Args {
    /// WebSocket base URL: `ws://host:port/sync` for Concord's y-websocket endpoint, `ws://host:port`
    /// for y-websocket, pycrdt and Hocuspocus servers (with `--protocol hocuspocus`).
    #[arg(long)]
    url: String,
    #[arg(long, value_enum, default_value = "y-websocket")]
    protocol: Protocol,
    /// Concord's HTTP base URL: sign in once through the dev-mode magic link; every client uses
    /// the session token.
    #[arg(long)]
    concord: Option<String>,
    /// The server's process id, for its memory and CPU from `/proc`.
    #[arg(long)]
    pid: Option<u32>,
    /// A second node of the same deployment (one PostgreSQL, one Redis): its WebSocket base URL.
    /// Scenarios given `--across` place clients on both nodes; a token signed in through
    /// `--concord` (the first node) is valid on both.
    #[arg(long)]
    peer_url: Option<String>,
    /// The second node's process id: server CPU and memory are then the sums over both nodes.
    #[arg(long)]
    peer_pid: Option<u32>,
    /// The second node's HTTP base URL (the mixed run's pushes and event streams there).
    #[arg(long)]
    peer_concord: Option<String>,
    /// Prefix of every document name, so runs against one server never share documents.
    #[arg(long, default_value = "loadgen")]
    prefix: String,
    /// Bind the sockets to 127.0.0.1, 127.0.0.2, … 127.0.0.N in turn: one source address has only
    /// ~28k ephemeral ports towards one server port.
    #[arg(long, global = true, default_value_t = 0)]
    sources: u8,
    /// Sign in to Concord as this address (a Y5 build and its cold load must be one user);
    /// default: a fresh one per run.
    #[arg(long)]
    email: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Y1: server RSS per idle connection, then the latency of live edits while they stay connected.
    Idle {
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        /// All connections in one document instead of one document each.
        #[arg(long)]
        one_doc: bool,
        /// Also hold the connections idle this long and report the server's CPU per connection
        /// per second over it (long enough to span its keepalive pings: 15 s each).
        #[arg(long, default_value_t = 0)]
        hold_secs: u64,
    },
    /// Y2: one writer, N observers in one document; p50/p99 from the writer's edit to each observer.
    Propagation {
        #[arg(long, default_value_t = 100)]
        observers: usize,
        /// Edits per second the writer offers.
        #[arg(long, default_value_t = 20)]
        rate: u32,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// X2: the writer on the first node, the observers on `--peer-url`.
        #[arg(long)]
        across: bool,
    },
    /// Y3: W writers in W documents (one observer each) at rising total rates; the highest rate with
    /// every edit delivered, every document converged and p99 under 100 ms.
    Throughput {
        #[arg(long, default_value_t = 50)]
        docs: usize,
        /// Total offered edits per second, tried in this order until one fails.
        #[arg(long, value_delimiter = ',', default_value = "500,1000,2000,4000,8000")]
        rates: Vec<u32>,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// X3: writers spread over both nodes (document `i`'s on node `i % 2`), each document's
        /// observer on the other node, and every document checked on both nodes after each run.
        #[arg(long)]
        across: bool,
    },
    /// Y4: a writer builds one large document, then N clients join it at once.
    JoinStorm {
        #[arg(long, default_value_t = 200)]
        clients: usize,
        #[arg(long, default_value_t = 5_000_000)]
        doc_bytes: usize,
    },
    /// Y5, first half: build document `--doc` from N one-edit updates (restart the server next).
    ColdBuild {
        #[arg(long)]
        doc: String,
        #[arg(long, default_value_t = 100_000)]
        updates: usize,
    },
    /// Y5, second half: connect to synced on the restarted server, checking every edit.
    ColdLoad {
        #[arg(long)]
        doc: String,
        #[arg(long, default_value_t = 100_000)]
        updates: usize,
    },
    /// O1 (Concord only): D devices push batches of 100 ops concurrently, then one pulls them all.
    Oplog {
        #[arg(long, default_value_t = 8)]
        devices: usize,
        /// Pushes per device at most.
        #[arg(long, default_value_t = 250)]
        pushes: usize,
        /// Pushing stops after this long.
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
    /// O1's limit: the same rows straight into SQLite with the same durability (no server).
    OplogLimit {
        /// Directory for the database: on the disk the server's data is on.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 20_000)]
        rows: usize,
    },
    /// The disk's floor: the time of one 4 KiB write + fdatasync, as a database commit pays it.
    Fsync {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 200)]
        rounds: usize,
    },
    /// M1 (Concord only): SCALING.md's device profile scaled down: every device holds a Yjs socket
    /// and an event stream, a share edits and all push at the profile's rates (`bench/scaling/mixed-run`).
    Mixed {
        #[arg(long, default_value_t = 4000)]
        devices: usize,
        /// Share of devices editing at any moment.
        #[arg(long, default_value_t = 0.05)]
        active_share: f64,
        /// Updates per second of an editing device.
        #[arg(long, default_value_t = 2)]
        updates_per_s: u32,
        /// Seconds between two op-log pushes of one device.
        #[arg(long, default_value_t = 300.0)]
        push_every_s: f64,
        #[arg(long, default_value_t = 10)]
        ops_per_push: usize,
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// On both nodes: a person's two devices on different nodes.
        #[arg(long)]
        across: bool,
    },
    /// B1 (Concord only): upload and download one file, beside a plain copy with fsync.
    Blobs {
        /// Directory for the files: on the disk the server's data is on.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 100)]
        mib: usize,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    raise_open_files();
    // The op-log, blob and limit scenarios talk HTTP or to SQLite; no Yjs session needed.
    let yjs = !matches!(
        args.scenario,
        Scenario::Oplog { .. } | Scenario::OplogLimit { .. } | Scenario::Blobs { .. } | Scenario::Fsync { .. }
    );
    let token = match &args.concord {
        Some(base) if yjs => Some(concord_token(base, args.email.as_deref()).await?),
        _ => None,
    };
    let sources = (1..=args.sources).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect();
    let target = Target { url: args.url.clone(), protocol: args.protocol, token, sources };
    let peer = args.peer_url.as_ref().map(|url| Target { url: url.clone(), ..target.clone() });
    let place = |across: bool, spread: bool| match (across, &peer) {
        (false, _) => Ok(Placement::one(&target)),
        (true, Some(peer)) => Ok(Placement::across(&target, peer, spread)),
        (true, None) => bail!("--across needs --peer-url"),
    };
    let pids: Vec<u32> = args.pid.into_iter().chain(args.peer_pid).collect();
    let concord = || args.concord.as_deref().context("this scenario needs --concord");
    // In-memory servers keep documents between runs: every run gets names of its own.
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let prefix = &format!("{}-{nonce}", args.prefix);
    let result = match args.scenario {
        Scenario::Idle { conns, one_doc, hold_secs } => {
            idle(&target, args.pid, prefix, conns, one_doc, hold_secs).await?
        }
        Scenario::Propagation { observers, rate, seconds, across } => {
            let run =
                fanout::run(&place(across, false)?, &pids, &[format!("{prefix}-y2")], observers, rate, seconds).await?;
            json!({
                "scenario": "y2", "across": across, "observers": observers, "rate": rate, "seconds": seconds,
                "run": run.json(),
            })
        }
        Scenario::Throughput { docs, rates, seconds, across } => {
            let mut result = throughput(&place(across, true)?, &pids, prefix, docs, &rates, seconds).await?;
            result["across"] = across.into();
            result
        }
        Scenario::JoinStorm { clients, doc_bytes } => {
            storm::join_storm(&target, args.pid, &format!("{prefix}-y4"), clients, doc_bytes).await?
        }
        Scenario::ColdBuild { doc, updates } => storm::cold_build(&target, &doc, updates).await?,
        Scenario::ColdLoad { doc, updates } => storm::cold_load(&target, &doc, updates).await?,
        Scenario::Oplog { devices, pushes, seconds } => oplog::run(concord()?, devices, pushes, seconds).await?,
        Scenario::OplogLimit { dir, rows } => oplog::limit(&dir, rows).await?,
        Scenario::Fsync { dir, rounds } => fsync_cost(&dir, rounds)?,
        Scenario::Blobs { dir, mib } => blobs::run(concord()?, args.pid, &dir, mib).await?,
        Scenario::Mixed { devices, active_share, updates_per_s, push_every_s, ops_per_push, seconds, across } => {
            let mut nodes = vec![mixed::Node { ws: &target, http: concord()? }];
            if across {
                let (Some(ws), Some(http)) = (&peer, &args.peer_concord) else {
                    bail!("--across needs --peer-url and --peer-concord")
                };
                nodes.push(mixed::Node { ws, http });
            }
            let profile = mixed::Profile { devices, active_share, updates_per_s, push_every_s, ops_per_push, seconds };
            mixed::run(&nodes, &pids, &format!("{prefix}-m1"), &profile).await?
        }
    };
    println!("{result}");
    Ok(())
}

async fn idle(
    target: &Target,
    pid: Option<u32>,
    prefix: &str,
    conns: usize,
    one_doc: bool,
    hold_secs: u64,
) -> Result<Value> {
    let pid = pid.context("the idle scenario needs --pid")?;
    let names: Vec<String> =
        (0..conns).map(|i| if one_doc { format!("{prefix}-y1-one") } else { format!("{prefix}-y1-{i}") }).collect();
    let before = rss_kib(&[pid])?;
    let (stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let idlers: Vec<tokio::task::JoinHandle<Result<Client>>> = stream::iter(&names)
        .map(|name| {
            let stopped = stopped.clone();
            async move {
                let mut client = Client::open(target, name).await?;
                tokio::time::timeout(CONNECT_DEADLINE, client.wait_synced())
                    .await
                    .with_context(|| format!("{name}: not synced within {CONNECT_DEADLINE:?}"))??;
                Ok::<_, anyhow::Error>(tokio::spawn(keep_reading(client, stopped)))
            }
        })
        .buffered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    let connect = started.elapsed();
    // Let the server finish what it does after a sync (persisting a new document, sweeping).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(&[pid])?;
    // Server CPU while nothing happens but keepalives: what holding a connection open costs.
    let idle_cpu_us = if hold_secs > 0 {
        let start = cpu_seconds(&[pid])?;
        tokio::time::sleep(Duration::from_secs(hold_secs)).await;
        Some((cpu_seconds(&[pid])? - start) * 1e6 / hold_secs as f64 / conns as f64)
    } else {
        None
    };
    // A live edit while every idle connection is held: one writer, one observer, its own document.
    let live = fanout::run(&Placement::one(target), &[], &[format!("{prefix}-y1-live")], 1, 20, 2.0).await?;
    stop.send(true).context("stop")?;
    // Every idle client completed its sync, stayed connected and still holds the (empty) document.
    let mut converged = live.converged;
    for idler in idlers {
        converged &= idler.await??.len() == 0;
    }
    Ok(json!({
        "scenario": "y1",
        "conns": conns,
        "one_doc": one_doc,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_conn": (after as f64 - before as f64) / conns as f64,
        "connect_per_s": conns as f64 / connect.as_secs_f64(),
        "idle_cpu_us_per_conn_per_s": idle_cpu_us,
        "live_p99_ms": live.percentile_ms(0.99),
        "converged": converged,
    }))
}

/// An idle client still reads, as a real one does: it answers the server's pings (pycrdt's
/// `websockets` closes a client that does not within 20 s) until told to stop.
async fn keep_reading(mut client: Client, mut stopped: watch::Receiver<bool>) -> Result<Client> {
    loop {
        tokio::select! {
            _ = stopped.changed() => return Ok(client),
            frame = client.next_frame() => frame?,
        }
    }
}

async fn throughput(
    place: &Placement<'_>,
    pids: &[u32],
    prefix: &str,
    docs: usize,
    rates: &[u32],
    seconds: f64,
) -> Result<Value> {
    let mut steps = Vec::new();
    let mut best = None;
    let mut converged = true;
    'rates: for &rate in rates {
        let per_doc = (rate as usize).div_ceil(docs) as u32;
        // A rate fails only when it fails twice: on a shared machine one slow second of another
        // process's build can push a single run's p99 over the line, for any server alike.
        for attempt in 0..Y3_ATTEMPTS {
            let names: Vec<String> = (0..docs).map(|i| format!("{prefix}-y3-{rate}-{attempt}-{i}")).collect();
            let run = fanout::run(place, pids, &names, 1, per_doc, seconds).await?;
            let p99 = run.percentile_ms(0.99);
            let ok = run.converged && run.lost() == 0 && p99 < 100.0;
            converged &= run.converged;
            eprintln!(
                "  [loadgen] y3 {} edits/s offered: p99 {p99:.1} ms, lost {}, {}",
                per_doc as usize * docs,
                run.lost(),
                if ok { "ok" } else { "FAILED" }
            );
            steps.push(run.json());
            if ok {
                best = Some(per_doc as usize * docs);
                continue 'rates;
            }
        }
        break;
    }
    Ok(
        json!({ "scenario": "y3", "docs": docs, "seconds": seconds, "best_rate": best, "converged": converged, "steps": steps }),
    )
}

/// Connects one client per (server, document name), in order, and waits until each is synced, a
/// bounded number at a time.
async fn connect_all(clients: &[(&Target, &str)]) -> Result<Vec<Client>> {
    stream::iter(clients)
        .map(|&(target, name)| async move {
            let mut client = Client::open(target, name).await?;
            tokio::time::timeout(CONNECT_DEADLINE, client.wait_synced())
                .await
                .with_context(|| format!("{name}: not synced within {CONNECT_DEADLINE:?}"))??;
            Ok::<_, anyhow::Error>(client)
        })
        .buffered(CONNECT_CONCURRENCY)
        .try_collect()
        .await
}

/// `rounds` appends of 4 KiB to one file, each followed by `fdatasync`: p50 and p99 in µs.
fn fsync_cost(dir: &std::path::Path, rounds: usize) -> Result<Value> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let page = [0x5au8; 4096];
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        file.write_all(&page)?;
        file.sync_data()?;
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    std::fs::remove_file(&path)?;
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((q * times.len() as f64) as usize).min(times.len() - 1)];
    Ok(json!({ "scenario": "fsync", "rounds": rounds, "p50_us": at(0.5), "p99_us": at(0.99), "converged": true }))
}

/// Raises this process's open-file limit towards [`WANTED_FILES`]: as root both limits (the kernel
/// allows up to `fs.nr_open`), otherwise the soft limit up to the hard one. Best effort: a scenario
/// that then runs out of descriptors fails with the connect error.
fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let want = WANTED_FILES.max(now.current.unwrap_or(0));
    let raised = Rlimit { current: Some(want), maximum: Some(want.max(now.maximum.unwrap_or(0))) };
    if setrlimit(Resource::Nofile, raised).is_err() {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: now.maximum, maximum: now.maximum });
    }
}

/// The highest `VmRSS` of processes (summed: every node of a deployment) while they run, sampled
/// every [`RSS_SAMPLE`].
pub struct PeakRss {
    before: u64,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<u64>>,
}

impl PeakRss {
    pub fn start(pids: &[u32]) -> Result<PeakRss> {
        let pids = pids.to_vec();
        let before = rss_kib(&pids)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = before;
            while !stopped.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(&pids)?);
                tokio::time::sleep(RSS_SAMPLE).await;
            }
            Ok(peak.max(rss_kib(&pids)?))
        });
        Ok(PeakRss { before, stop, task })
    }

    /// `VmRSS` at the start and the highest sample, in KiB.
    pub async fn stop(self) -> Result<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        Ok((self.before, self.task.await??))
    }
}

/// `VmRSS` of processes (every node of a deployment), summed, in KiB.
fn rss_kib(pids: &[u32]) -> Result<u64> {
    let mut total = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
        total += line.split_whitespace().nth(1).context("VmRSS value")?.parse::<u64>()?;
    }
    Ok(total)
}

/// utime + stime of processes (every node of a deployment), in seconds (Linux's `USER_HZ` is 100
/// on every architecture it exports to user space).
fn cpu_seconds(pids: &[u32]) -> Result<f64> {
    let mut ticks = 0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name may hold spaces and parentheses; the fields after the last ')' are fixed.
        let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
        ticks += fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    }
    Ok(ticks as f64 / 100.0)
}

/// Dev-mode sign-in on Concord: a magic link whose `dev_link` carries the token, verified once.
async fn concord_token(base: &str, email: Option<&str>) -> Result<String> {
    let http = reqwest::Client::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let email = email.map_or_else(|| format!("loadgen-{}-{now}@example.com", std::process::id()), str::to_owned);
    let link: Value = http
        .post(format!("{base}/auth/magic-link"))
        .json(&json!({ "email": email }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let dev_link = link["dev_link"].as_str().context("no dev_link: is CONCORD_MAIL=dev set?")?;
    let Some((_, query)) = dev_link.split_once("token=") else { bail!("no token in {dev_link}") };
    let magic = query.split('&').next().unwrap_or_default();
    let verified: Value = http
        .get(format!("{base}/auth/verify?token={magic}&device_name=loadgen"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(verified["token"].as_str().context("no session token")?.to_owned())
}
