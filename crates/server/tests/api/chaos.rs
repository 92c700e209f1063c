//! Chaos: real clients of every kind (Yjs editors and observers, op-log pushers and a puller, a
//! blob uploader, sign-ins) work against the server while it is killed with SIGKILL at random
//! moments, paused with SIGSTOP and run out of disk, and restarted on the same data each time.
//! The clients reconnect and retry as real ones do. Afterwards every acknowledged op, blob and
//! session and every Yjs update any client observed is there, op sequences are gap-free, the
//! database passes `PRAGMA integrity_check`, and after blob collection no temporary file and no
//! unreferenced blob is left. It lives in the `api` test binary, not its own, because its clients
//! are the ones the other tests already use (`TestApp`, `RawClient`, the desktop op-log client),
//! and one binary links once.
//!
//! The schedule is drawn from a seed: fixed in CI, so a failure can be rerun with the same event
//! order (thread timing still varies). `CONCORD_CHAOS_SEED` (a number, or `random`) picks
//! another and `CONCORD_CHAOS_SECS` (default 15) starts rounds of events until that many seconds
//! have passed, e.g. `CONCORD_CHAOS_SECS=600 CONCORD_CHAOS_SEED=random cargo test -p
//! concord-server --test api chaos -- --nocapture`; the seed is printed either way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use yrs::Doc;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, Transact};

use concord_store::AdminStore;
use concord_store::sqlite::SqliteStore;

use crate::disk_full::{Tmpfs, fill_to_the_brim};
use crate::helpers::{DEADLINE, TestApp, eventually, send_signal};
use crate::metrics::scrape;
use crate::oplog_client::{
    BOUNDARY, Device, blob_files, device, download_verified, multipart_body, op, pull_all, sha256_hex,
};
use crate::yjs_client::RawClient;

/// The CI seed; any other is as good, this one is simply fixed.
const SEED: u64 = 0xc4a0_5e11;
/// Rounds of events start until this many seconds have passed (at least one round). A round
/// takes 7-25 s on this 2-core machine, depending on its load, so CI sees one or two.
const CI_SECS: u64 = 15;
/// One round, in an order the seed shuffles: five kills (one of a paused server, one on a full
/// disk), two pauses, one full disk.
const ROUND: [Event; 6] =
    [Event::Kill, Event::Kill, Event::Kill, Event::Pause, Event::PauseThenKill, Event::DiskFullThenKill];
/// Documents, with two editors and one observer each: enough for rooms to share group commits
/// and for a relay to reach another client, few enough for two loaded cores.
const DOCS: usize = 3;
const EDITORS_PER_DOC: usize = 2;
/// Op-log pushers on one vault: one sends an idempotency key, one (as the desktop does) relies
/// on op ids alone.
const PUSHERS: usize = 2;
/// A client gives up on a request after this long and retries, so a paused server is noticed
/// within seconds; long enough that a loaded machine rarely trips it otherwise (a spurious
/// timeout only means one more retry).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// The data directory's tmpfs: room for a long run's megabytes, filled on purpose once a round.
const DISK_MIB: usize = 64;
/// Blob sizes: several filesystem blocks, and many uploads in a run.
const BLOB_BYTES: std::ops::Range<usize> = 1024..48 * 1024;
/// Client progress (acknowledged requests, observed Yjs frames) between two events: the range
/// makes the moment of each kill random relative to what the clients are doing.
const PROGRESS_BETWEEN_EVENTS: std::ops::Range<u64> = 20..200;

#[derive(Clone, Copy, Debug)]
enum Event {
    /// SIGKILL, then a restart on the same data.
    Kill,
    /// SIGSTOP until a client has timed out, then SIGCONT.
    Pause,
    /// SIGSTOP until a client has timed out, then SIGKILL and a restart.
    PauseThenKill,
    /// Fill the filesystem until a client is refused with 507, SIGKILL and restart on the full
    /// disk, wait for a refusal again, then free the space.
    DiskFullThenKill,
}

/// What the clients saw, shared with the test's controller.
struct Shared {
    /// Set at the end: each client finishes what it is doing (the server is up) and returns.
    stop: AtomicBool,
    /// Acknowledged requests and observed Yjs frames; the controller waits on it between events.
    progress: AtomicU64,
    /// Requests and connection attempts that timed out (a paused server).
    timeouts: AtomicU64,
    /// 507 answers (a full disk).
    full: AtomicU64,
    /// Op ids some push acknowledged.
    ops: Mutex<BTreeSet<String>>,
    /// Op id → server sequence, as the puller received them; a sequence never changes.
    pulled: Mutex<BTreeMap<String, i64>>,
    /// (sha256, size) of acknowledged uploads.
    blobs: Mutex<Vec<(String, usize)>>,
    /// Session tokens handed out by acknowledged sign-ins.
    sessions: Mutex<Vec<String>>,
    /// Per document: the tokens (`;`-separated edits) observers received from the server.
    observed: Vec<Mutex<BTreeSet<String>>>,
    /// Per document: whether its observer is connected (the controller waits for all to have
    /// noticed a kill before it takes what they observed).
    observing: Vec<AtomicBool>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            progress: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            full: AtomicU64::new(0),
            ops: Mutex::default(),
            pulled: Mutex::default(),
            blobs: Mutex::default(),
            sessions: Mutex::default(),
            observed: (0..DOCS).map(|_| Mutex::default()).collect(),
            observing: (0..DOCS).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn progressed(&self) {
        self.progress.fetch_add(1, Ordering::SeqCst);
    }
}

fn chaos_seed() -> u64 {
    match std::env::var("CONCORD_CHAOS_SEED").as_deref() {
        Ok("random") => rand::rng().random(),
        Ok(n) => n.parse().expect("CONCORD_CHAOS_SEED is a number or `random`"),
        Err(_) => SEED,
    }
}

/// A loopback port below the kernel's ephemeral range (32768 and up), free now. The server keeps
/// it across restarts, as a real server keeps its address, and outgoing connections never take a
/// port from below the range, so the restarted server can bind it again.
fn fixed_port(rng: &mut StdRng) -> u16 {
    loop {
        let port = rng.random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap()
}

/// A client's pause before it retries: growing, capped at half a second (what a real client
/// waits between attempts, not a wait for readiness).
async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt.min(20)))).await;
}

/// Sends a request until the server answers it, as the clients retry: a refused or cut
/// connection, a timeout, 503 and 507 are tried again; any other answer is returned with its
/// JSON body. Every request sent this way is safe to repeat: a read, a push with an idempotency
/// key or with op ids the scope deduplicates, an upload named by its content.
async fn answered(shared: &Shared, request: impl Fn() -> reqwest::RequestBuilder) -> (u16, Value) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match request().send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.text().await {
                    Ok(_) if status == 503 => {}
                    Ok(_) if status == 507 => {
                        shared.full.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(text) => return (status, serde_json::from_str(&text).unwrap_or(Value::String(text))),
                    Err(err) if err.is_timeout() => {
                        shared.timeouts.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => {}
                }
            }
            Err(err) if err.is_timeout() => {
                shared.timeouts.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {}
        }
        backoff(attempt).await;
    }
}

/// Opens a Yjs connection for `doc` (kept across reconnects, as a real editor keeps its
/// document) and greets with SyncStep1; gives the document back if the server cannot be reached
/// in time.
async fn yjs_connect(shared: &Shared, url: &str, doc: Doc) -> Result<RawClient, Doc> {
    match tokio::time::timeout(CLIENT_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((ws, _))) => {
            let mut client = RawClient { ws, doc, closed: None };
            let step1 = Message::Sync(SyncMessage::SyncStep1(client.doc.transact().state_vector())).encode_v1();
            client.send(step1).await;
            Ok(client)
        }
        Ok(Err(_)) => Err(doc),
        Err(_) => {
            shared.timeouts.fetch_add(1, Ordering::SeqCst);
            Err(doc)
        }
    }
}

fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(';').filter(|t| !t.is_empty())
}

/// An editor: appends its own tokens to the document and reconnects whenever the connection
/// ends, keeping its document, so on reconnect the sync exchange sends the server whatever it
/// lacks. It connects only while `gate` is open: after a kill the controller first checks what
/// the restarted server holds, before any editor could restore a lost update. Returns its
/// document.
async fn editor(
    shared: Arc<Shared>,
    url: String,
    name: String,
    mut gate: watch::Receiver<Option<u64>>,
    seed: u64,
) -> Doc {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut doc = Doc::new();
    let (mut n, mut attempt) = (0, 0);
    while !shared.stopping() {
        let epoch = *gate.wait_for(Option::is_some).await.unwrap();
        let mut client = match yjs_connect(&shared, &url, doc).await {
            Ok(client) if *gate.borrow() == epoch => client,
            Ok(client) => {
                doc = client.doc;
                continue;
            }
            Err(kept) => {
                doc = kept;
                attempt += 1;
                backoff(attempt).await;
                continue;
            }
        };
        attempt = 0;
        while client.closed.is_none() && !shared.stopping() {
            client.insert(&format!("{name}n{n};")).await;
            n += 1;
            client.pump_for(Duration::from_millis(rng.random_range(10..60))).await;
        }
        doc = client.doc;
    }
    doc
}

/// An observer: a fresh document on every connection, so what it holds is exactly what the
/// server sent; each token it received is recorded.
async fn observer(shared: Arc<Shared>, url: String, index: usize) {
    let mut attempt = 0;
    while !shared.stopping() {
        let Ok(mut client) = yjs_connect(&shared, &url, Doc::new()).await else {
            attempt += 1;
            backoff(attempt).await;
            continue;
        };
        attempt = 0;
        shared.observing[index].store(true, Ordering::SeqCst);
        while client.closed.is_none() && !shared.stopping() {
            client.pump_for(Duration::from_millis(50)).await;
            let text = client.text();
            let mut observed = shared.observed[index].lock().unwrap();
            let before = observed.len();
            observed.extend(tokens(&text).map(str::to_owned));
            if observed.len() > before {
                shared.progressed();
            }
        }
        shared.observing[index].store(false, Ordering::SeqCst);
    }
}

/// A pusher: batches of one to five ops with fresh ids, each retried until acknowledged.
async fn pusher(shared: Arc<Shared>, base: String, device: Device, index: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let client = http_client();
    let mut n = 0;
    while !shared.stopping() {
        let ids: Vec<String> = (0..rng.random_range(1..=5)).map(|i| format!("p{index}-{n}-{i}")).collect();
        // Mostly new files; now and then the deletion of an earlier one (a tombstone row too).
        let ops: Vec<Value> = ids
            .iter()
            .map(|id| match n {
                1.. if rng.random_bool(0.2) => {
                    let path = format!("p{index}-{}-0.md", rng.random_range(0..n));
                    op(id, &path, "delete", json!({"path": path}), 0)
                }
                _ => op(id, &format!("{id}.md"), "create", json!({"path": format!("{id}.md"), "content": id}), 0),
            })
            .collect();
        let mut body = json!({"device_id": device.device_id, "ops": ops});
        if index.is_multiple_of(2) {
            body["idempotency_key"] = json!(format!("p{index}-{n}"));
        }
        acknowledged_push(&shared, &client, &base, &device, &body, &ids).await;
        n += 1;
    }
}

async fn acknowledged_push(
    shared: &Shared,
    client: &reqwest::Client,
    base: &str,
    device: &Device,
    body: &Value,
    ids: &[String],
) {
    let url = format!("{base}/api/v1/sync/push");
    let (status, answer) = answered(shared, || client.post(&url).bearer_auth(&device.token).json(body)).await;
    assert_eq!(status, 200, "push: {answer}");
    assert_eq!(answer["accepted"], json!(ids), "a push acknowledges each of its ops: {answer}");
    shared.ops.lock().unwrap().extend(ids.iter().cloned());
    shared.progressed();
}

/// A blob uploader, as the desktop attaches a file: upload the bytes (named by their hash), then
/// push an op that references them; both retried until acknowledged.
async fn uploader(shared: Arc<Shared>, base: String, device: Device, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let client = http_client();
    let mut n = 0u64;
    while !shared.stopping() {
        let mut content = vec![0u8; rng.random_range(BLOB_BYTES)];
        rng.fill(&mut content[..]);
        content[..8].copy_from_slice(&n.to_be_bytes());
        let sha = sha256_hex(&content);
        let body = multipart_body(&sha, &content);
        let url = format!("{base}/api/v1/blobs/");
        let (status, answer) = answered(&shared, || {
            client
                .post(&url)
                .bearer_auth(&device.token)
                .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
                .body(body.clone())
        })
        .await;
        assert_eq!(status, 200, "upload: {answer}");
        assert_eq!(answer, json!({"sha256": sha, "size": content.len()}));
        shared.blobs.lock().unwrap().push((sha.clone(), content.len()));
        shared.progressed();
        let id = format!("blob-{n}");
        let path = format!("files/{n}.bin");
        let attach = op(&id, &path, "create", json!({"path": path, "blob": {"sha256": sha, "size": content.len()}}), 0);
        let body = json!({"device_id": device.device_id, "idempotency_key": id, "ops": [attach]});
        acknowledged_push(&shared, &client, &base, &device, &body, std::slice::from_ref(&id)).await;
        n += 1;
    }
}

/// A puller, as the desktop follows the log: pages from its cursor, each op exactly the next
/// sequence; an op seen twice (after a restart) has the same sequence. A server that forgot
/// acknowledged ops would answer the cursor with `resync_required`, which fails here.
async fn puller(shared: Arc<Shared>, base: String, device: Device) {
    let client = http_client();
    let url = format!("{base}/api/v1/sync/pull");
    let mut cursor = 0;
    while !shared.stopping() {
        let body = json!({"since_sequence": cursor, "page_limit": 0});
        let (status, page) = answered(&shared, || client.post(&url).bearer_auth(&device.token).json(&body)).await;
        assert_eq!(status, 200, "pull from {cursor}: {page}");
        {
            let mut pulled = shared.pulled.lock().unwrap();
            for op in page["ops"].as_array().unwrap() {
                let seq = op["server_sequence"].as_i64().unwrap();
                assert_eq!(seq, cursor + 1, "sequences continue the cursor without gaps: {page}");
                cursor = seq;
                let id = op["op_id"].as_str().unwrap().to_owned();
                let first = *pulled.entry(id.clone()).or_insert(seq);
                assert_eq!(first, seq, "op {id} moved from sequence {first} to {seq}");
            }
        }
        shared.progressed();
        if page["has_more"] != true {
            // The desktop polls; this is its interval, not a wait for readiness.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sign-ins by magic link, each a new person from their own address (so the per-address and
/// per-IP limits, which this is not about, stay out of the way). A verification whose answer was
/// lost cannot be repeated (the link is single-use); like a person, the client then starts over.
async fn signer(shared: Arc<Shared>, base: String) {
    let mut n: u32 = 0;
    while !shared.stopping() {
        n += 1;
        let source = std::net::Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8);
        let client = reqwest::Client::builder()
            .timeout(CLIENT_TIMEOUT)
            .local_address(std::net::IpAddr::V4(source))
            .build()
            .unwrap();
        let email = format!("signer{n}@example.com");
        let url = format!("{base}/auth/magic-link");
        let (status, link) = answered(&shared, || client.post(&url).json(&json!({"email": email}))).await;
        if status != 200 {
            assert_eq!(status, 429, "magic link: {link}");
            continue;
        }
        let token = link["dev_link"].as_str().unwrap().split_once("token=").unwrap().1.to_owned();
        let url = format!("{base}/auth/verify?token={token}&device_name=chaos");
        let (status, verified) = answered(&shared, || client.get(&url)).await;
        if status == 200 {
            shared.sessions.lock().unwrap().push(verified["token"].as_str().unwrap().to_owned());
            shared.progressed();
        } else {
            assert!((400..500).contains(&status), "verify: {status} {verified}");
        }
    }
}

/// The clients, so the controller can tell when one has failed (a finished task before the end
/// is a panic, printed above).
struct Clients {
    editors: Vec<(usize, JoinHandle<Doc>)>,
    others: Vec<JoinHandle<()>>,
}

impl Clients {
    fn any_failed(&self) -> bool {
        self.editors.iter().any(|(_, h)| h.is_finished()) || self.others.iter().any(JoinHandle::is_finished)
    }
}

/// Waits until the clients have made `steps` more progress, failing if one of them failed.
async fn wait_for_progress(shared: &Shared, clients: &Clients, steps: u64) {
    let target = shared.progress.load(Ordering::SeqCst) + steps;
    let deadline = Instant::now() + DEADLINE;
    while shared.progress.load(Ordering::SeqCst) < target {
        assert!(!clients.any_failed(), "a client failed (its panic is printed above)");
        assert!(Instant::now() < deadline, "the clients made no progress within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn doc_url(app: &TestApp, session: &str, d: usize) -> String {
    app.ws_url(&format!("/sync/chaos-{d}?token={session}"))
}

/// A fresh client of each document must come to hold every token in `expected[d]`.
async fn documents_hold(app: &TestApp, session: &str, expected: &[BTreeSet<String>], when: &str) {
    for (d, expected) in expected.iter().enumerate() {
        let mut reader = RawClient::connect(&doc_url(app, session, d)).await;
        let deadline = Instant::now() + DEADLINE;
        loop {
            reader.pump_for(Duration::from_millis(50)).await;
            let text = reader.text();
            let held: BTreeSet<&str> = tokens(&text).collect();
            let missing: Vec<&String> = expected.iter().filter(|t| !held.contains(t.as_str())).collect();
            if missing.is_empty() {
                break;
            }
            assert!(reader.closed.is_none(), "document {d} closed ({:?}) {when}", reader.closed);
            assert!(
                Instant::now() < deadline,
                "document {d} lost {} of {} observed updates {when}, e.g. {:?}",
                missing.len(),
                expected.len(),
                &missing[..missing.len().min(5)]
            );
        }
    }
}

/// The whole log, read from 0 (`pull_all` checks the sequences are 1, 2, 3…): every acknowledged
/// op is there once, and every op the puller saw kept its sequence.
async fn log_holds(app: &TestApp, reader: &Device, acknowledged: &BTreeSet<String>, pulled: &BTreeMap<String, i64>) {
    let (ops, _) = pull_all(app, reader, 0).await;
    let mut stored = BTreeMap::new();
    for op in &ops {
        let id = op["op_id"].as_str().unwrap().to_owned();
        let seq = op["server_sequence"].as_i64().unwrap();
        assert!(stored.insert(id.clone(), seq).is_none(), "op {id} stored twice");
    }
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains_key(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged ops lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    for (id, seq) in pulled {
        assert_eq!(stored.get(id), Some(seq), "op {id} was pulled at sequence {seq}");
    }
}

fn observed_now(shared: &Shared) -> Vec<BTreeSet<String>> {
    shared.observed.iter().map(|o| o.lock().unwrap().clone()).collect()
}

/// SIGKILL with the editors held back; once every observer has noticed, what they saw and what
/// was acknowledged must all be on the restarted server before the editors may reconnect.
async fn kill_and_check(
    app: &mut TestApp,
    shared: &Shared,
    gate: &watch::Sender<Option<u64>>,
    session: &str,
    reader: &Device,
    when: &str,
) {
    let epoch = gate.borrow().unwrap_or_default();
    gate.send_replace(None);
    app.kill9().await;
    eventually(|| async { shared.observing.iter().all(|o| !o.load(Ordering::SeqCst)) }).await;
    let observed = observed_now(shared);
    let acknowledged = shared.ops.lock().unwrap().clone();
    let pulled = shared.pulled.lock().unwrap().clone();
    app.restart().await;
    documents_hold(app, session, &observed, when).await;
    log_holds(app, reader, &acknowledged, &pulled).await;
    gate.send_replace(Some(epoch + 1));
}

/// SIGSTOP, until a client has timed out.
async fn pause(app: &TestApp, shared: &Shared) {
    let before = shared.timeouts.load(Ordering::SeqCst);
    send_signal(app.pid(), "STOP");
    eventually(|| async { shared.timeouts.load(Ordering::SeqCst) > before }).await;
}

/// Waits for a client to be refused for want of space.
async fn refused(shared: &Shared) {
    let before = shared.full.load(Ordering::SeqCst);
    eventually(|| async { shared.full.load(Ordering::SeqCst) > before }).await;
}

#[tokio::test]
async fn under_kills_pauses_and_a_full_disk_nothing_acknowledged_or_observed_is_lost() {
    let seed = chaos_seed();
    let secs: u64 =
        std::env::var("CONCORD_CHAOS_SECS").map_or(CI_SECS, |s| s.parse().expect("CONCORD_CHAOS_SECS is a number"));
    println!("chaos seed {seed} (rerun with CONCORD_CHAOS_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let disk = Tmpfs::mount(DISK_MIB);
    let port = fixed_port(&mut rng);
    // Maintenance every second and compaction every few kilobytes of updates, so WAL
    // checkpoints and snapshot rewrites also meet the kills and the full disk.
    let mut app = TestApp::builder()
        .data_dir(disk.path().join("data"))
        .listen(format!("127.0.0.1:{port}"))
        .env("CONCORD_MAINTENANCE_INTERVAL_SECS", "1")
        .env("SYNC_COMPACT_BYTES", "4096")
        .spawn()
        .await;
    let session = app.sign_in("editor@example.com").await;
    let mut devices = Vec::new();
    for _ in 0..PUSHERS + 2 {
        devices.push(device(&app, "desk", "vault").await);
    }
    let (puller_device, uploader_device) = (devices.pop().unwrap(), devices.pop().unwrap());

    let shared = Arc::new(Shared::new());
    let (gate, gate_rx) = watch::channel(Some(0));
    let mut clients = Clients { editors: Vec::new(), others: Vec::new() };
    for d in 0..DOCS {
        let url = doc_url(&app, &session, d);
        for e in 0..EDITORS_PER_DOC {
            let task = editor(shared.clone(), url.clone(), format!("d{d}e{e}"), gate_rx.clone(), rng.random());
            clients.editors.push((d, tokio::spawn(task)));
        }
        clients.others.push(tokio::spawn(observer(shared.clone(), url, d)));
    }
    for (index, device) in devices.into_iter().enumerate() {
        clients.others.push(tokio::spawn(pusher(shared.clone(), app.base.clone(), device, index, rng.random())));
    }
    clients.others.push(tokio::spawn(uploader(
        shared.clone(),
        app.base.clone(),
        uploader_device.clone(),
        rng.random(),
    )));
    clients.others.push(tokio::spawn(puller(shared.clone(), app.base.clone(), puller_device.clone())));
    clients.others.push(tokio::spawn(signer(shared.clone(), app.base.clone())));

    let started = Instant::now();
    let mut events = Vec::new();
    while events.is_empty() || started.elapsed() < Duration::from_secs(secs) {
        let mut round = ROUND;
        round.shuffle(&mut rng);
        for event in round {
            wait_for_progress(&shared, &clients, rng.random_range(PROGRESS_BETWEEN_EVENTS)).await;
            let when = format!("after event {} ({event:?}) of seed {seed}", events.len());
            match event {
                Event::Kill => kill_and_check(&mut app, &shared, &gate, &session, &puller_device, &when).await,
                Event::Pause => {
                    pause(&app, &shared).await;
                    send_signal(app.pid(), "CONT");
                }
                Event::PauseThenKill => {
                    pause(&app, &shared).await;
                    kill_and_check(&mut app, &shared, &gate, &session, &puller_device, &when).await;
                }
                Event::DiskFullThenKill => {
                    let filler = disk.path().join("filler");
                    fill_to_the_brim(&filler);
                    refused(&shared).await;
                    kill_and_check(&mut app, &shared, &gate, &session, &puller_device, &when).await;
                    refused(&shared).await;
                    std::fs::remove_file(&filler).unwrap();
                }
            }
            events.push(event);
        }
    }
    wait_for_progress(&shared, &clients, PROGRESS_BETWEEN_EVENTS.start).await;

    // The end: each client finishes its request in flight, then one last kill.
    shared.stop.store(true, Ordering::SeqCst);
    let mut editors = Vec::new();
    for (d, handle) in clients.editors {
        editors.push((d, tokio::time::timeout(DEADLINE, handle).await.expect("editor stops").unwrap()));
    }
    for handle in clients.others {
        tokio::time::timeout(DEADLINE, handle).await.expect("client stops").unwrap();
    }
    kill_and_check(&mut app, &shared, &gate, &session, &puller_device, "at the end").await;
    let blobs = shared.blobs.lock().unwrap().clone();
    for (sha, size) in &blobs {
        download_verified(&app, &uploader_device, sha, *size).await;
    }
    let sessions = shared.sessions.lock().unwrap().clone();
    for token in &sessions {
        assert_eq!(app.get_auth("/auth/me", token).await.status(), 200, "an acknowledged sign-in's session works");
    }

    // The editors come back with their documents: the server ends up with every edit they made.
    let mut written = vec![BTreeSet::new(); DOCS];
    let mut reconnected = Vec::new();
    for (d, doc) in editors {
        let text = {
            let txn = doc.transact();
            txn.get_text("body").map(|t| yrs::GetString::get_string(&t, &txn)).unwrap_or_default()
        };
        written[d].extend(tokens(&text).map(str::to_owned));
        let Ok(mut client) = yjs_connect(&shared, &doc_url(&app, &session, d), doc).await else {
            panic!("editor of document {d} cannot reconnect");
        };
        client.pump_for(Duration::from_millis(100)).await;
        reconnected.push(client);
    }
    documents_hold(&app, &session, &written, "after the editors reconnected").await;
    drop(reconnected);

    // Collection ran at start; afterwards blobs/ holds exactly the referenced blobs.
    eventually(|| async {
        scrape(&app).await.sum("concord_maintenance_runs_total", &[("job", "blob_collection"), ("outcome", "ok")])
            >= 1.0
    })
    .await;
    let files = blob_files(&app);
    app.terminate().await;
    let store = SqliteStore::open_read_only(&app.db_path()).await.unwrap();
    assert_eq!(store.integrity_problems().await.unwrap(), Vec::<String>::new());
    let referenced: BTreeSet<String> = store.referenced_blob_hashes().await.unwrap().into_iter().collect();
    let stored: BTreeSet<String> = files
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let expected = app.data_dir().join("blobs").join(&name[0..2]).join(&name[2..4]).join(&name);
            assert_eq!(path, &expected, "only placed blobs remain (no temporary file)");
            name
        })
        .collect();
    assert_eq!(stored, referenced, "every referenced blob has its file and no file is unreferenced");
    let acknowledged: BTreeSet<String> = blobs.iter().map(|(sha, _)| sha.clone()).collect();
    assert!(acknowledged.is_subset(&referenced));
    println!(
        "chaos seed {seed}: {} events in {:?}; {} ops, {} blobs, {} sessions, {} observed Yjs edits, {} timeouts, {} refusals for a full disk",
        events.len(),
        started.elapsed(),
        shared.ops.lock().unwrap().len(),
        blobs.len(),
        sessions.len(),
        shared.observed.iter().map(|o| o.lock().unwrap().len()).sum::<usize>(),
        shared.timeouts.load(Ordering::SeqCst),
        shared.full.load(Ordering::SeqCst),
    );
    drop(store);
    drop(app);
}
