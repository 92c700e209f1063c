//! The measured core of Y1-Y3: one writer per document appending at a fixed, open-loop rate, N
//! observers per document timing every delivery, then the convergence check.
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
use crate::{connect_all, cpu_seconds};

/// `{seq:07};`: seven digits and a separator.
const EDIT_BYTES: usize = 8;
/// After the last edit is due, how long every delivery may take before the run counts as lost.
const SETTLE_DEADLINE: Duration = Duration::from_secs(20);
/// Between the last connection's sync and the first edit, so the observers' tasks are all running.
const LEAD_IN: Duration = Duration::from_millis(200);

/// Due times of one document's edits, nanoseconds after `base`; 0 until the writer reaches it.
type Sent = Vec<AtomicU64>;

pub struct Fanout {
    docs: usize,
    observers: usize,
    offered_per_s: f64,
    expected: u64,
    delivered: u64,
    /// Delivery latencies in microseconds, sorted.
    latencies: Vec<u32>,
    pub converged: bool,
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
            "server_cpu_s": self.server_cpu_s,
            "server_cpu_us_per_delivery": self.server_cpu_s.map(|s| s * 1e6 / self.delivered.max(1) as f64),
        })
    }
}

/// Runs one fan-out: per document one writer at `rate` edits/s for `seconds`, `observers` observers.
pub async fn run(
    target: &Target,
    pid: Option<u32>,
    names: &[String],
    observers: usize,
    rate: u32,
    seconds: f64,
) -> Result<Fanout> {
    let edits = (f64::from(rate) * seconds).round() as usize;
    // Writers first: pycrdt-websocket 0.16 drops concurrent first joins of a new room.
    let writers = connect_all(target, names).await?;
    let observer_names: Vec<String> = names.iter().flat_map(|n| std::iter::repeat_n(n.clone(), observers)).collect();
    let watchers = connect_all(target, &observer_names).await?;

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
    let cpu_before = pid.map(cpu_seconds).transpose()?;
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
    let server_cpu_s = match (pid, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_seconds(pid)? - before),
        _ => None,
    };
    stop.send(true).context("stop")?;

    let mut reference = vec![String::new(); names.len()];
    while let Some(joined) = writing.join_next().await {
        let (doc, text) = joined??;
        reference[doc] = text;
    }
    let mut converged = reference.iter().all(|text| text.len() == edits * EDIT_BYTES);
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
        server_cpu_s,
    })
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
