//! B1, blobs: one file uploaded to Concord's blob API (`POST /api/v1/blobs/`, streamed multipart)
//! and downloaded again (`GET /api/v1/blobs/{sha256}`, written to disk with fsync), beside a plain
//! copy of the same file on the same disk with fsync, and the server's memory during both.
//!
//! Correctness: the server's SHA-256 must be ours, and the downloaded bytes must hash to it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::PeakRss;

/// Read and write chunk of the upload stream, the download and the plain copy alike.
const CHUNK: usize = 1 << 20;
const MIB: f64 = 1024.0 * 1024.0;
const BOUNDARY: &str = "concord-loadgen-boundary-7f3a";

pub async fn run(base: &str, pid: Option<u32>, dir: &Path, mib: usize) -> Result<Value> {
    let source = dir.join("b1-source.bin");
    let sha = tokio::task::spawn_blocking({
        let source = source.clone();
        move || write_source(&source, mib)
    })
    .await??;
    let bytes = (mib << 20) as f64;

    let copy_s = tokio::task::spawn_blocking({
        let (source, target) = (source.clone(), dir.join("b1-copy.bin"));
        move || plain_copy(&source, &target)
    })
    .await??;

    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let token = crate::oplog::device_token(&http, base).await?;
    let peak = pid.map(|pid| PeakRss::start(&[pid])).transpose()?;
    let started = Instant::now();
    let answer: Value = http
        .post(format!("{base}/api/v1/blobs/"))
        .bearer_auth(&token)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(reqwest::Body::wrap_stream(multipart(source.clone())))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let upload_s = started.elapsed().as_secs_f64();
    let upload_ok = answer["sha256"] == sha.as_str() && answer["size"] == mib << 20;

    let started = Instant::now();
    let mut response =
        http.get(format!("{base}/api/v1/blobs/{sha}")).bearer_auth(&token).send().await?.error_for_status()?;
    let target = dir.join("b1-download.bin");
    let mut file = std::fs::File::create(&target)?;
    let mut hash = Sha256::new();
    while let Some(chunk) = response.chunk().await? {
        hash.update(&chunk);
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    let download_s = started.elapsed().as_secs_f64();
    let download_ok = hex::encode(hash.finalize()) == sha && file.metadata()?.len() == (mib << 20) as u64;
    let (rss_before, rss_peak) = match peak {
        Some(peak) => {
            let (before, max) = peak.stop().await?;
            (Some(before), Some(max))
        }
        None => (None, None),
    };
    for file in ["b1-source.bin", "b1-copy.bin", "b1-download.bin"] {
        std::fs::remove_file(dir.join(file))?;
    }
    let copy = bytes / MIB / copy_s;
    eprintln!(
        "  [loadgen] b1 {mib} MiB: upload {:.0} MiB/s, download {:.0} MiB/s, plain copy {copy:.0} MiB/s{}",
        bytes / MIB / upload_s,
        bytes / MIB / download_s,
        if upload_ok && download_ok { "" } else { ": HASH MISMATCH" }
    );
    Ok(json!({
        "scenario": "b1",
        "mib": mib,
        "upload_mib_per_s": bytes / MIB / upload_s,
        "download_mib_per_s": bytes / MIB / download_s,
        "copy_mib_per_s": copy,
        "server_rss_before_kib": rss_before,
        "server_rss_peak_kib": rss_peak,
        "converged": upload_ok && download_ok,
    }))
}

/// Writes `mib` MiB of pseudo-random bytes (incompressible, so no layer can shortcut them), with
/// fsync; their SHA-256 in hex.
fn write_source(path: &Path, mib: usize) -> Result<String> {
    let mut file = std::fs::File::create(path)?;
    let mut hash = Sha256::new();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut chunk = vec![0u8; CHUNK];
    for _ in 0..mib {
        for word in chunk.chunks_exact_mut(8) {
            // xorshift64: fast, and nothing here needs better randomness.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        hash.update(&chunk);
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    Ok(hex::encode(hash.finalize()))
}

/// Reads `source` and writes it to `target` in [`CHUNK`]s, then fsyncs: what the blob API does at
/// least, minus HTTP and hashing. Seconds taken.
fn plain_copy(source: &Path, target: &Path) -> Result<f64> {
    let started = Instant::now();
    let mut from = std::fs::File::open(source)?;
    let mut to = std::fs::File::create(target)?;
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        to.write_all(&chunk[..n])?;
    }
    to.sync_all()?;
    Ok(started.elapsed().as_secs_f64())
}

/// The upload body, streamed from the file: one multipart part named `file`, as the Verstak
/// client sends it.
fn multipart(path: PathBuf) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b1.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    enum Part {
        Head,
        Body(std::fs::File),
        Tail,
        Done,
    }
    futures_util::stream::unfold((Part::Head, path, head, tail), |(part, path, head, tail)| async move {
        let (item, next) = match part {
            Part::Head => match std::fs::File::open(&path).context("open") {
                Ok(file) => (Ok(head.clone().into_bytes()), Part::Body(file)),
                Err(e) => (Err(std::io::Error::other(e)), Part::Done),
            },
            Part::Body(mut file) => {
                let mut chunk = vec![0u8; CHUNK];
                match file.read(&mut chunk) {
                    Ok(0) => (Ok(tail.clone().into_bytes()), Part::Tail),
                    Ok(n) => {
                        chunk.truncate(n);
                        (Ok(chunk), Part::Body(file))
                    }
                    Err(e) => (Err(e), Part::Done),
                }
            }
            Part::Tail | Part::Done => return None,
        };
        Some((item, (next, path, head, tail)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn the_multipart_body_frames_the_file_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let parts: Vec<Vec<u8>> = multipart(path).map(|p| p.unwrap()).collect().await;
        let body = String::from_utf8(parts.concat()).unwrap();
        assert_eq!(
            body,
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b1.bin\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\nabc\r\n--{BOUNDARY}--\r\n"
            )
        );
    }
}
