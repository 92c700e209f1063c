//! Y4 and Y5, large documents: a join storm (N clients join one big document at once) and a cold
//! load (a document of many small stored updates, opened after the server restarted).
//!
//! Convergence: every joiner must hold exactly the writer's text; the cold-loaded document must
//! hold every edit in order.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::client::{Client, Target};
use crate::{CONNECT_DEADLINE, PeakRss};

/// Bytes per update while building the Y4 document: large enough to build 5 MB in 50 frames, far
/// below every server's frame limit (Concord's is 16 MiB).
const STORM_CHUNK: usize = 100_000;
/// How long the server may take to hold a whole built document.
const BUILD_DEADLINE: Duration = Duration::from_secs(300);
/// Checkers [`holds`] starts at most, one after another.
const HOLDS_ATTEMPTS: u32 = 5;

/// Y4: a writer builds a `doc_bytes` document, then `clients` clients connect at once; the time
/// until the last one is synced, each one's join time, and the server's peak RSS meanwhile.
pub async fn join_storm(
    target: &Target,
    pid: Option<u32>,
    name: &str,
    clients: usize,
    doc_bytes: usize,
) -> Result<Value> {
    let mut writer = Client::open(target, name).await?;
    writer.wait_synced().await?;
    for i in 0..doc_bytes.div_ceil(STORM_CHUNK) {
        let chunk = format!("{i:07};").repeat(STORM_CHUNK / 8);
        writer.append(&chunk[..STORM_CHUNK.min(doc_bytes - i * STORM_CHUNK)]).await?;
    }
    let reference = writer.content();
    holds(target, name, reference.len()).await?;

    let peak = pid.map(|pid| PeakRss::start(&[pid])).transpose()?;
    let started = Instant::now();
    let mut joining = JoinSet::new();
    for _ in 0..clients {
        let (target, name) = (target.clone(), name.to_owned());
        joining.spawn(async move {
            let mut client = Client::open(&target, &name).await?;
            tokio::time::timeout(CONNECT_DEADLINE, client.wait_synced()).await.context("join not synced")??;
            Ok::<_, anyhow::Error>((started.elapsed(), client))
        });
    }
    let mut joined = Vec::with_capacity(clients);
    while let Some(result) = joining.join_next().await {
        joined.push(result??);
    }
    let all_s = started.elapsed().as_secs_f64();
    let (rss_before, rss_peak) = match peak {
        Some(peak) => {
            let (before, max) = peak.stop().await?;
            (Some(before), Some(max))
        }
        None => (None, None),
    };
    let converged = joined.iter().all(|(_, client)| client.content() == reference);
    let mut times: Vec<f64> = joined.iter().map(|(t, _)| t.as_secs_f64() * 1e3).collect();
    times.sort_by(f64::total_cmp);
    eprintln!(
        "  [loadgen] y4 {clients} joins of a {:.1} MB document: all synced in {all_s:.2} s{}",
        reference.len() as f64 / 1e6,
        if converged { "" } else { ", MISMATCH" }
    );
    Ok(json!({
        "scenario": "y4",
        "clients": clients,
        "doc_bytes": reference.len(),
        "all_synced_s": all_s,
        "join_p50_ms": times[times.len() / 2],
        "server_rss_before_kib": rss_before,
        "server_rss_peak_kib": rss_peak,
        "converged": converged,
    }))
}

/// The text of a document built by [`cold_build`] (and of every fan-out writer's): edit `i` is
/// `{i:07};`.
pub fn edits_text(updates: usize) -> String {
    (0..updates).map(|i| format!("{i:07};")).collect()
}

/// Y5, first half: one client sends `updates` updates of one 8-byte edit each, then a fresh client
/// must hold them all; the server is restarted after this (by `bench/run`).
pub async fn cold_build(target: &Target, name: &str, updates: usize) -> Result<Value> {
    let started = Instant::now();
    let mut writer = Client::open(target, name).await?;
    writer.wait_synced().await?;
    for i in 0..updates {
        // Read whatever the server sent meanwhile: a server may close a client that never reads
        // (Concord does: "client too slow").
        writer.drain().await?;
        writer.append(&format!("{i:07};")).await?;
    }
    holds(target, name, updates * 8).await?;
    Ok(
        json!({ "scenario": "y5-build", "updates": updates, "build_s": started.elapsed().as_secs_f64(), "converged": true }),
    )
}

/// Y5, second half, on the restarted server: connect to synced for the first client (the document
/// comes from storage) and for a second one (now in memory); both must hold every edit in order.
pub async fn cold_load(target: &Target, name: &str, updates: usize) -> Result<Value> {
    let expected = edits_text(updates);
    let mut times = Vec::new();
    let mut held = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let mut client = Client::open(target, name).await?;
        tokio::time::timeout(CONNECT_DEADLINE, client.wait_synced()).await.context("cold load not synced")??;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        held.push(client.content());
    }
    let converged = held.iter().all(|text| *text == expected);
    // How much survived the restart, for a server that lost some: edits are 8 bytes each.
    let edits_held = held[0].len() / 8;
    eprintln!(
        "  [loadgen] y5 {updates} updates: cold {:.0} ms, warm {:.0} ms{}",
        times[0],
        times[1],
        if converged { String::new() } else { format!(", MISMATCH: {edits_held} edits held") }
    );
    Ok(json!({
        "scenario": "y5", "updates": updates, "cold_ms": times[0], "warm_ms": times[1],
        "edits_held": edits_held, "converged": converged,
    }))
}

/// Waits until a fresh client of `name` holds `len` bytes of text: the server has taken every
/// update sent so far. A checker that joins while the server still relays the writer's backlog
/// gets every update as its own frame, and on a loaded machine may fall behind and be closed as
/// too slow (Concord's 1013, correct behaviour): a fresh checker then joins again, and gets what
/// the server holds by then in one SyncStep2.
async fn holds(target: &Target, name: &str, len: usize) -> Result<()> {
    let deadline = tokio::time::Instant::now() + BUILD_DEADLINE;
    for attempt in 1.. {
        match check_holds(target, name, len, deadline).await {
            Err(err) if attempt < HOLDS_ATTEMPTS && tokio::time::Instant::now() < deadline => {
                eprintln!("  [loadgen] checker of {name} failed ({err:#}); joining again");
            }
            result => return result,
        }
    }
    unreachable!("the last attempt returns")
}

async fn check_holds(target: &Target, name: &str, len: usize, deadline: tokio::time::Instant) -> Result<()> {
    let mut checker = Client::open(target, name).await?;
    tokio::time::timeout_at(deadline, checker.wait_synced()).await.context("the checker did not sync in time")??;
    while (checker.len() as usize) < len {
        tokio::time::timeout_at(deadline, checker.next_frame())
            .await
            .context("the document was not complete in time")??;
    }
    ensure!(checker.len() as usize == len, "the document holds {} bytes, not {len}", checker.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_are_eight_bytes_in_order() {
        assert_eq!(edits_text(0), "");
        assert_eq!(edits_text(3), "0000000;0000001;0000002;");
        assert_eq!(edits_text(100_000).len(), 800_000);
    }
}
