//! M1, SCALING.md's device profile scaled down to this machine, on one node or two: N devices,
//! each holding a Yjs socket on its person's document and an op-log event stream on its person's
//! vault (two devices per person), a share of them editing and every one of them pushing at the
//! profile's rates, all at once. It reports the servers' CPU and memory over the window and the
//! p99 of every delivery, for `bench/scaling/mixed-run` to set beside what `model.py` predicts for
//! that many devices.
//!
//! Scaled down, not reshaped: the rates per device are the profile's, only the number of devices
//! is what this machine holds. Two simplifications, both cheaper for the server than real devices:
//! a person's two devices share one device token (pairing is one Argon2 check per token), and every
//! Yjs socket uses one session token. With two nodes a person's devices sit on different nodes, so
//! every edit and every push event crosses the bus (a balancer would split them half the time).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::client::{Client, Target};
use crate::fanout::{self, Placement};
use crate::oplog::{self, Device};
use crate::{CONNECT_CONCURRENCY, CONNECT_DEADLINE, PeakRss, connect_all, cpu_seconds, keep_reading, rss_kib};

/// After the last push, how long every event stream may take to show its vault's final head.
const EVENT_DEADLINE: Duration = Duration::from_secs(20);
/// Times one event stream may be ended by the server and opened again before the run fails.
const MAX_RECONNECTS: usize = 5;
/// Between opening the event streams and the Yjs sockets: longer than the server's credential
/// re-check interval (500 ms), so every token the sockets use is known to that check by then.
const SETTLE: Duration = Duration::from_millis(1500);

/// What one connected device does (SCALING.md's profile) and how many there are.
pub struct Profile {
    pub devices: usize,
    pub active_share: f64,
    pub updates_per_s: u32,
    pub push_every_s: f64,
    pub ops_per_push: usize,
    pub seconds: f64,
}

/// One node of the deployment: where its sockets and its HTTP requests go.
pub struct Node<'a> {
    pub ws: &'a Target,
    pub http: &'a str,
}

/// One open event stream: the highest head it has shown; its task returns every head with its
/// arrival time and how often the stream was opened again.
struct EventStream {
    latest: Arc<AtomicI64>,
    task: JoinHandle<Result<(Heard, usize)>>,
}

/// Every head an event stream showed, with its arrival time.
type Heard = Vec<(Instant, i64)>;

/// A push's outcome: its person, the vault head it leaves, when it was due, how long it took.
struct Pushed {
    person: usize,
    head: i64,
    due: Instant,
    took: Duration,
}

pub async fn run(nodes: &[Node<'_>], pids: &[u32], prefix: &str, profile: &Profile) -> Result<Value> {
    ensure!(profile.devices >= 2 && profile.devices.is_multiple_of(2), "--devices: an even number, two per person");
    let persons = profile.devices / 2;
    let active = ((profile.devices as f64 * profile.active_share).round() as usize).clamp(1, persons);
    // Person p's device 0 on node p % n, device 1 on the next: across nodes when there are two.
    let node_of = |person: usize, device: usize| &nodes[(person + device) % nodes.len()];
    let rss_idle = rss_kib(pids)?;
    let setup = Instant::now();

    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let vaults: Vec<String> = (0..persons).map(|p| format!("{prefix}-v{p}")).collect();
    let devices = Arc::new(oplog::devices(&http, nodes[0].http, &vaults).await?);
    // Pairing checks passwords with Argon2 (19 MiB each) whose memory the allocator may keep: the
    // connections' share is measured from here.
    let rss_paired = rss_kib(pids)?;
    // Event streams stay open for the whole run: a client without a timeout.
    let streaming = reqwest::Client::new();
    let (stop, stopped) = watch::channel(false);
    let stream_at: Vec<(usize, &str)> =
        (0..persons).flat_map(|p| [(p, node_of(p, 0).http), (p, node_of(p, 1).http)]).collect();
    let streams: Vec<EventStream> = stream::iter(&stream_at)
        .map(|&(p, base)| {
            let url = format!("{base}/api/v1/sync/events");
            open_events(streaming.clone(), url, devices[p].token.clone(), stopped.clone())
        })
        .buffered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    tokio::time::sleep(SETTLE).await;

    // Each device's Yjs socket uses its person's device token, as a client does.
    let targets: Vec<[Target; 2]> = (0..persons)
        .map(|p| {
            let token = Some(devices[p].token.clone());
            [0, 1].map(|d| Target { token: token.clone(), ..node_of(p, d).ws.clone() })
        })
        .collect();
    let names: Vec<String> = (0..persons).map(|p| format!("{prefix}-m{p}")).collect();
    let idle_at: Vec<(&Target, &str)> =
        (active..persons).flat_map(|p| [(&targets[p][0], names[p].as_str()), (&targets[p][1], &names[p])]).collect();
    let idlers: Vec<JoinHandle<Result<Client>>> =
        connect_all(&idle_at).await?.into_iter().map(|c| tokio::spawn(keep_reading(c, stopped.clone()))).collect();
    let writers = targets[..active].iter().map(|t| &t[0]).collect();
    let place = Placement::per_document(writers, targets[..active].iter().map(|t| &t[1]).collect());
    let editors = fanout::connect(&place, &names[..active], 1).await?;
    let setup_s = setup.elapsed().as_secs_f64();
    let rss_connected = rss_kib(pids)?;

    let cpu_before = cpu_seconds(pids)?;
    let peak = PeakRss::start(pids)?;
    let window = Instant::now();
    let pushing = tokio::spawn(push_open_loop(
        http.clone(),
        nodes.iter().map(|n| n.http.to_owned()).collect(),
        devices.clone(),
        profile.devices as f64 / profile.push_every_s,
        (profile.devices as f64 / profile.push_every_s * profile.seconds).round() as usize,
        profile.ops_per_push,
    ));
    let yjs = editors.measure(&[], profile.updates_per_s, profile.seconds).await?;
    let pushes = pushing.await??;
    let window_s = window.elapsed().as_secs_f64();
    let server_cpu_s = cpu_seconds(pids)? - cpu_before;
    let (_, rss_peak) = peak.stop().await?;

    // Every stream must come to its vault's final head: both of the person's devices hear it.
    let mut final_head = vec![0i64; persons];
    for push in &pushes {
        final_head[push.person] = final_head[push.person].max(push.head);
    }
    let deadline = Instant::now() + EVENT_DEADLINE;
    let complete = |streams: &[EventStream]| {
        streams.iter().enumerate().all(|(i, s)| s.latest.load(Ordering::Acquire) >= final_head[i / 2])
    };
    while !complete(&streams) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events_complete = complete(&streams);
    stop.send(true).context("stop")?;
    let (mut heard, mut stream_reconnects) = (Vec::with_capacity(streams.len()), 0);
    for s in streams {
        let (heads, reconnects) = s.task.await??;
        heard.push(heads);
        stream_reconnects += reconnects;
    }
    let mut idle_synced = true;
    for idler in idlers {
        idle_synced &= idler.await??.len() == 0;
    }
    // A push's event latency: from its due time to the person's other device hearing its head.
    let mut events: Vec<f64> = pushes
        .iter()
        .filter_map(|push| {
            let other = &heard[push.person * 2 + 1];
            let (at, _) = other.iter().find(|(_, head)| *head >= push.head)?;
            Some(at.saturating_duration_since(push.due).as_secs_f64() * 1e3)
        })
        .collect();
    let mut took: Vec<f64> = pushes.iter().map(|p| p.took.as_secs_f64() * 1e3).collect();
    let converged = yjs.converged && yjs.lost() == 0 && events_complete && idle_synced && events.len() == pushes.len();
    eprintln!(
        "  [loadgen] m1 {} devices on {} node(s): server {:.2} cores, {:.0} MiB; Yjs p99 {:.1} ms, event p99 {:.1} ms{}",
        profile.devices,
        nodes.len(),
        server_cpu_s / window_s,
        rss_connected as f64 / 1024.0,
        yjs.percentile_ms(0.99),
        percentile(&mut events, 0.99),
        if converged { "" } else { ", NOT CONVERGED" }
    );
    Ok(json!({
        "scenario": "m1",
        "nodes": nodes.len(),
        "devices": profile.devices,
        "persons": persons,
        "connections": profile.devices * 2,
        "active_writers": active,
        "updates_per_s_offered": active as f64 * f64::from(profile.updates_per_s),
        "pushes": pushes.len(),
        "pushes_per_s_offered": profile.devices as f64 / profile.push_every_s,
        "ops_per_push": profile.ops_per_push,
        "setup_s": setup_s,
        "window_s": window_s,
        "server_cpu_s": server_cpu_s,
        "server_cores": server_cpu_s / window_s,
        "rss_idle_kib": rss_idle,
        "rss_connected_kib": rss_connected,
        "rss_peak_kib": rss_peak,
        "rss_paired_kib": rss_paired,
        "kib_per_connection": (rss_connected as f64 - rss_paired as f64) / (profile.devices * 2) as f64,
        "yjs": yjs.json(),
        "push_p50_ms": percentile(&mut took, 0.5),
        "push_p99_ms": percentile(&mut took, 0.99),
        "event_p50_ms": percentile(&mut events, 0.5),
        "event_p99_ms": percentile(&mut events, 0.99),
        "events_complete": events_complete,
        "stream_reconnects": stream_reconnects,
        "converged": converged,
    }))
}

/// Pushes of `ops` ops, `count` of them at `rate` per second whatever the server answers (open
/// loop), push `k` from person `k % persons`'s first device through that device's node; each
/// person's pushes are `persons / rate` seconds apart, so a vault's head after its `j`-th push is
/// `ops * (j + 1)`.
async fn push_open_loop(
    http: reqwest::Client,
    nodes: Vec<String>,
    devices: Arc<Vec<Device>>,
    rate: f64,
    count: usize,
    ops: usize,
) -> Result<Vec<Pushed>> {
    let persons = devices.len();
    let start = tokio::time::Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut pushing = JoinSet::new();
    for k in 0..count {
        let due = start + period * k as u32;
        tokio::time::sleep_until(due).await;
        let (person, round) = (k % persons, k / persons);
        let base = nodes[person % nodes.len()].clone();
        let (http, devices) = (http.clone(), devices.clone());
        pushing.spawn(async move {
            let body = oplog::push_body(&devices[person], person, round * ops..(round + 1) * ops);
            let answer = oplog::post(&http, &base, "/api/v1/sync/push", Some(&devices[person].token), &body).await?;
            ensure!(answer["count"] == ops, "push acknowledged {} of {ops} ops", answer["count"]);
            let due = due.into_std();
            Ok::<_, anyhow::Error>(Pushed { person, head: (ops * (round + 1)) as i64, due, took: due.elapsed() })
        });
    }
    let mut pushed = Vec::with_capacity(count);
    while let Some(joined) = pushing.join_next().await {
        pushed.push(joined??);
    }
    Ok(pushed)
}

/// Opens `GET /api/v1/sync/events` in a task that keeps reading until stopped, and waits for its
/// first event (the current head). A stream the server ends is opened again, as `EventSource`
/// does; the reconnections are counted and reported.
async fn open_events(
    http: reqwest::Client,
    url: String,
    token: String,
    stopped: watch::Receiver<bool>,
) -> Result<EventStream> {
    let latest = Arc::new(AtomicI64::new(-1));
    let task = tokio::spawn(follow_events(http, url, token, latest.clone(), stopped));
    let deadline = Instant::now() + CONNECT_DEADLINE;
    while latest.load(Ordering::Acquire) < 0 {
        ensure!(Instant::now() < deadline && !task.is_finished(), "no first event within {CONNECT_DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(EventStream { latest, task })
}

/// The reading task of [`open_events`]: every head with its arrival time, and how often the stream
/// had to be opened again.
async fn follow_events(
    http: reqwest::Client,
    url: String,
    token: String,
    latest: Arc<AtomicI64>,
    mut stopped: watch::Receiver<bool>,
) -> Result<(Heard, usize)> {
    let mut heard = Vec::new();
    let mut reconnects = 0;
    loop {
        let mut response = http.get(&url).bearer_auth(&token).send().await?.error_for_status()?;
        let mut buffer = String::new();
        loop {
            tokio::select! {
                _ = stopped.changed() => return Ok((heard, reconnects)),
                chunk = response.chunk() => {
                    let Some(chunk) = chunk? else { break };
                    buffer.push_str(std::str::from_utf8(&chunk)?);
                    for head in take_heads(&mut buffer) {
                        heard.push((Instant::now(), head));
                        latest.fetch_max(head, Ordering::AcqRel);
                    }
                }
            }
        }
        reconnects += 1;
        ensure!(reconnects <= MAX_RECONNECTS, "{url}: the event stream ended {reconnects} times");
    }
}

/// Takes every complete server-sent event out of `buffer` and returns the heads of the `head`
/// events among them (`data: {"server_sequence":N}`); keep-alive comments and a partial event at
/// the end stay or go as the format says.
fn take_heads(buffer: &mut String) -> Vec<i64> {
    let mut heads = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let event: String = buffer.drain(..end + 2).collect();
        let data = event.lines().find_map(|line| line.strip_prefix("data:"));
        if let Some(head) = data.and_then(|d| serde_json::from_str::<Value>(d.trim()).ok()?["server_sequence"].as_i64())
        {
            heads.push(head);
        }
    }
    heads
}

/// The nearest-rank percentile of `values` in their unit (NaN when empty); sorts them.
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, heads: &[i64], rest: &str) {
        let mut buffer = input.to_owned();
        assert_eq!(take_heads(&mut buffer), heads, "heads of {input:?}");
        assert_eq!(buffer, rest, "left of {input:?}");
    }

    #[test]
    fn heads_are_read_from_complete_events_only() {
        check("event: head\ndata: {\"server_sequence\":0}\n\n", &[0], "");
        check(
            "event: head\ndata: {\"server_sequence\":10}\n\n:\n\nevent: head\ndata: {\"server_sequence\":20}\n\n",
            &[10, 20],
            "",
        );
        check(
            "event: head\ndata: {\"server_sequence\":30}\n\nevent: head\ndata: {\"ser",
            &[30],
            "event: head\ndata: {\"ser",
        );
        check("", &[], "");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut hundred, 0.99), 99.0);
        assert_eq!(percentile(&mut hundred, 0.5), 50.0);
        assert!(percentile(&mut [], 0.99).is_nan());
    }
}
