//! The measured core of Y1-Y3 (and X2/X3, the same across two nodes): one writer per document
//! appending at a fixed, open-loop rate, N observers per document timing every delivery, then the
//! convergence check.
//!
//! Open loop: edit `seq` of a document is due at `start + seq / rate` whatever the server answers,
//! and its latency is measured from that due time (kept in a side table the observers read), so a
//! writer that falls behind shows up as latency instead of silently lowering the offered rate.
//! Every edit is exactly [`EDIT_BYTES`] long and the one writer appends in order, so an observer
//! whose text is `n` bytes long holds edits `0..n / EDIT_BYTES` and nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::client::{Client, Target};
use crate::storm::edits_text;
use crate::{connect_all, cpu_seconds};

/// `{seq:07};`: seven digits and a separator.
const EDIT_BYTES: usize = 8;
/// After the last edit is due, how long every delivery may take before the run counts as lost.
const SETTLE_DEADLINE: Duration = Duration::from_secs(20);
/// Between the last connection's sync and the first edit, so the observers' tasks are all running.
const LEAD_IN: Duration = Duration::from_millis(200);

/// Due times of one document's edits, nanoseconds after `base`; 0 until the writer reaches it.
type Sent = Vec<AtomicU64>;

/// Where one fan-out's clients connect: document `i`'s writer to `writers[i % len]`, its observers
/// to `observers[i % len]`. One server is both lists of one; two nodes of one deployment put the
/// observers on the other node from the writer, so every delivery crosses the bus.
pub struct Placement<'a> {
    writers: Vec<&'a Target>,
    observers: Vec<&'a Target>,
}

impl<'a> Placement<'a> {
    pub fn one(target: &'a Target) -> Placement<'a> {
        Placement { writers: vec![target], observers: vec![target] }
    }

    /// Writers on `a`, observers on `b`; `spread`: document `i`'s writer on node `i % 2`, its
    /// observers on the other, so both nodes take writes and both relay.
    pub fn across(a: &'a Target, b: &'a Target, spread: bool) -> Placement<'a> {
        let writers = if spread { vec![a, b] } else { vec![a] };
        let observers = if spread { vec![b, a] } else { vec![b] };
        Placement { writers, observers }
    }

    /// Document `i`'s writer on `writers[i]`, its observers on `observers[i]` (clients with their
    /// own tokens).
    pub fn per_document(writers: Vec<&'a Target>, observers: Vec<&'a Target>) -> Placement<'a> {
        Placement { writers, observers }
    }

    /// Every node this placement uses, once each.
    fn nodes(&self) -> Vec<&'a Target> {
        let mut nodes: Vec<&Target> = Vec::new();
        for target in self.writers.iter().chain(&self.observers) {
            if !nodes.iter().any(|n| n.url == target.url) {
                nodes.push(target);
            }
        }
        nodes
    }
}

pub struct Fanout {
    docs: usize,
    observers: usize,
    offered_per_s: f64,
    expected: u64,
    delivered: u64,
    /// Delivery latencies in microseconds, sorted.
    latencies: Vec<u32>,
    pub converged: bool,
    /// Nodes on which a fresh client had to find every edit after the run (0: one server, whose
    /// observers are the check).
    nodes_checked: usize,
    server_cpu_s: Option<f64>,
}

impl Fanout {
    pub fn lost(&self) -> u64 {
        self.expected - self.delivered.min(self.expected)
    }

    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1] as f64 / 1000.0
    }

    pub fn json(&self) -> Value {
        json!({
            "docs": self.docs,
            "observers_per_doc": self.observers,
            "offered_per_s": self.offered_per_s,
            "deliveries_expected": self.expected,
            "deliveries": self.delivered,
            "p50_ms": self.percentile_ms(0.50),
            "p99_ms": self.percentile_ms(0.99),
            "max_ms": self.percentile_ms(1.0),
            "converged": self.converged,
            "nodes_checked": self.nodes_checked,
            "server_cpu_s": self.server_cpu_s,
            "server_cpu_us_per_delivery": self.server_cpu_s.map(|s| s * 1e6 / self.delivered.max(1) as f64),
        })
    }
}

/// Runs one fan-out: per document one writer at `rate` edits/s for `seconds`, `observers` observers,
/// placed by `place`. Server CPU is the sum over `pids` (every node of the deployment).
pub async fn run(
    place: &Placement<'_>,
    pids: &[u32],
    names: &[String],
    observers: usize,
    rate: u32,
    seconds: f64,
) -> Result<Fanout> {
    connect(place, names, observers).await?.measure(pids, rate, seconds).await
}

/// A fan-out's clients, connected and synced, before its first edit (the mixed run starts its
/// other load between the two).
pub struct Connected<'a> {
    place: &'a Placement<'a>,
    names: &'a [String],
    observers: usize,
    writers: Vec<Client>,
    watchers: Vec<Client>,
}

/// Connects and syncs every writer and observer of [`run`], untimed.
pub async fn connect<'a>(place: &'a Placement<'a>, names: &'a [String], observers: usize) -> Result<Connected<'a>> {
    // Writers first: pycrdt-websocket 0.16 drops concurrent first joins of a new room.
    let writer_at: Vec<(&Target, &str)> =
        names.iter().enumerate().map(|(i, n)| (place.writers[i % place.writers.len()], n.as_str())).collect();
    let writers = connect_all(&writer_at).await?;
    let observer_at: Vec<(&Target, &str)> = names
        .iter()
        .enumerate()
        .flat_map(|(i, n)| std::iter::repeat_n((place.observers[i % place.observers.len()], n.as_str()), observers))
        .collect();
    let watchers = connect_all(&observer_at).await?;
    Ok(Connected { place, names, observers, writers, watchers })
}

impl Connected<'_> {
    /// The timed part of [`run`]: the writers' open-loop edits, every delivery, the checks.
    pub async fn measure(self, pids: &[u32], rate: u32, seconds: f64) -> Result<Fanout> {
        let Connected { place, names, observers, writers, watchers } = self;
        let edits = (f64::from(rate) * seconds).round() as usize;
        let base = Instant::now();
        let sent: Arc<Vec<Sent>> =
            Arc::new(names.iter().map(|_| (0..edits).map(|_| AtomicU64::new(0)).collect()).collect());
        let delivered = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = watch::channel(false);

        let mut observing = JoinSet::new();
        for (i, client) in watchers.into_iter().enumerate() {
            let doc = i / observers.max(1);
            observing.spawn(observe(client, doc, sent.clone(), base, delivered.clone(), stopped.clone()));
        }
        let cpu_before = cpu_seconds(pids)?;
        let start = tokio::time::Instant::now() + LEAD_IN;
        let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let mut writing = JoinSet::new();
        for (doc, client) in writers.into_iter().enumerate() {
            writing.spawn(write(client, doc, edits, start, period, sent.clone(), base, stopped.clone()));
        }

        let expected = (edits * observers * names.len()) as u64;
        let deadline = start + period * edits as u32 + SETTLE_DEADLINE;
        while delivered.load(Ordering::Acquire) < expected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let server_cpu_s = if pids.is_empty() { None } else { Some(cpu_seconds(pids)? - cpu_before) };
        // Across nodes, each node must hold every edit for a client that joins now, not only the
        // observers' node: the writer's node stored them, the other applied them from the bus. Checked
        // while the writers are still connected, after the timed window.
        let nodes = place.nodes();
        let nodes_checked = if nodes.len() > 1 { nodes.len() } else { 0 };
        let mut held_everywhere = true;
        if nodes_checked > 0 {
            let expected_text = edits_text(edits);
            let checks: Vec<(&Target, &str)> =
                names.iter().flat_map(|n| nodes.iter().map(move |node| (*node, n.as_str()))).collect();
            for checker in connect_all(&checks).await? {
                held_everywhere &= checker.content() == expected_text;
            }
        }
        stop.send(true).context("stop")?;

        let mut reference = vec![String::new(); names.len()];
        while let Some(joined) = writing.join_next().await {
            let (doc, text) = joined??;
            reference[doc] = text;
        }
        let mut converged = held_everywhere && reference.iter().all(|text| text.len() == edits * EDIT_BYTES);
        let mut latencies = Vec::with_capacity(expected as usize);
        while let Some(joined) = observing.join_next().await {
            let (doc, text, mut lat) = joined??;
            converged &= text == reference[doc];
            latencies.append(&mut lat);
        }
        latencies.sort_unstable();
        Ok(Fanout {
            docs: names.len(),
            observers,
            offered_per_s: f64::from(rate) * names.len() as f64,
            expected,
            delivered: delivered.load(Ordering::Acquire),
            latencies,
            converged,
            nodes_checked,
            server_cpu_s,
        })
    }
}

/// The writer: edit `seq` at `start + seq * period`, reading (and answering) the server in between;
/// then keeps reading until stopped. Returns its text, the reference its observers must match.
#[allow(clippy::too_many_arguments)]
async fn write(
    mut client: Client,
    doc: usize,
    edits: usize,
    start: tokio::time::Instant,
    period: Duration,
    sent: Arc<Vec<Sent>>,
    base: Instant,
    mut stopped: watch::Receiver<bool>,
) -> Result<(usize, String)> {
    for seq in 0..edits {
        let due = start + period * seq as u32;
        loop {
            tokio::select! {
                biased;
                () = sleep_until(due) => break,
                frame = client.next_frame() => frame?,
            }
        }
        if *stopped.borrow() {
            break;
        }
        let due_ns = (due.into_std() - base).as_nanos() as u64;
        sent[doc][seq].store(due_ns.max(1), Ordering::Release);
        client.append(&format!("{seq:07};")).await?;
    }
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            frame = client.next_frame() => frame?,
        }
    }
    Ok((doc, client.content()))
}

/// An observer: after every frame, the edits its text gained are delivered now.
async fn observe(
    mut client: Client,
    doc: usize,
    sent: Arc<Vec<Sent>>,
    base: Instant,
    delivered: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) -> Result<(usize, String, Vec<u32>)> {
    let mut seen = 0;
    let mut latencies = Vec::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            frame = client.next_frame() => frame?,
        }
        let now = base.elapsed().as_nanos() as u64;
        // More text than was ever sent is a mismatch the convergence check reports; never an index.
        let holds = (client.len() as usize / EDIT_BYTES).min(sent[doc].len());
        for seq in seen..holds {
            let due = sent[doc][seq].load(Ordering::Acquire);
            latencies.push((now.saturating_sub(due) / 1000) as u32);
        }
        delivered.fetch_add((holds - seen) as u64, Ordering::Release);
        seen = holds;
    }
    Ok((doc, client.content(), latencies))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(latencies_us: &[u32], q: f64, expected_ms: f64) {
        let mut latencies = latencies_us.to_vec();
        latencies.sort_unstable();
        let run = Fanout {
            docs: 1,
            observers: 1,
            offered_per_s: 1.0,
            expected: 0,
            delivered: 0,
            latencies,
            converged: true,
            nodes_checked: 0,
            server_cpu_s: None,
        };
        let got = run.percentile_ms(q);
        assert!(got == expected_ms || (got.is_nan() && expected_ms.is_nan()), "p{q} of {latencies_us:?}: {got}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let hundred: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        check(&hundred, 0.50, 50.0);
        check(&hundred, 0.99, 99.0);
        check(&hundred, 1.0, 100.0);
        check(&[7000], 0.99, 7.0);
        check(&[3000, 1000, 2000], 0.5, 2.0);
        check(&[], 0.99, f64::NAN);
    }
}
