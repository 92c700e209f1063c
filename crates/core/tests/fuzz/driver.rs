//! The bounded fuzz driver of `cargo test`: a target replays its corpus
//! (`<crate>/fuzz-corpus/<target>/`), then runs inputs from a seeded PRNG, half of them
//! mutations of corpus entries, until a case count or a time budget is reached. The server's
//! fuzz tests include this file by path, so both crates drive their targets alike.
//!
//! No coverage guidance here (that needs instrumented builds: see `crates/core/fuzz/`), but the
//! structured targets make random bytes meaningful, and the fixed seed makes a failure
//! reproducible. `CONCORD_FUZZ_SECS` (per target, default 2), `CONCORD_FUZZ_CASES` (default
//! 20000) and `CONCORD_FUZZ_SEED` (a number, or `random`) run it longer or differently. A failing
//! input is written to `target/fuzz-failures/` to be added to the corpus with the fix.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Inputs longer than this are cut: the decoders' limits all bite well below it, and short
/// inputs make many more cases per second.
const MAX_INPUT: usize = 64 * 1024;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed() -> u64 {
    match std::env::var("CONCORD_FUZZ_SEED").as_deref() {
        Ok("random") => rand::rng().random(),
        Ok(n) => n.parse().expect("CONCORD_FUZZ_SEED is a number or `random`"),
        Err(_) => 0x00c0_4c0d,
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus").join(target);
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// One random input: fresh bytes of a length skewed towards short, or a corpus entry mutated by
/// a few byte edits, truncations and splices.
fn input(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    if corpus.is_empty() || rng.random_bool(0.5) {
        let len = match rng.random_range(0..4) {
            0 => rng.random_range(0..16),
            1 => rng.random_range(0..256),
            2 => rng.random_range(0..4096),
            _ => rng.random_range(0..MAX_INPUT),
        };
        let mut bytes = vec![0; len];
        rng.fill_bytes(&mut bytes);
        return bytes;
    }
    let mut bytes = corpus[rng.random_range(0..corpus.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..6) {
            0 if at < bytes.len() => bytes[at] ^= 1 << rng.random_range(0..8),
            1 if at < bytes.len() => bytes[at] = rng.random(),
            2 => bytes.insert(at, rng.random()),
            3 if at < bytes.len() => drop(bytes.remove(at)),
            4 => bytes.truncate(at),
            _ => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                let from = rng.random_range(0..=other.len());
                bytes.splice(at.., other[from..].iter().copied());
            }
        }
    }
    bytes.truncate(MAX_INPUT);
    bytes
}

/// One input taking longer than this is a finding too: every decoder is linear or bounded in
/// its input, and 64 KiB take milliseconds, so only a blow-up (or a machine stalled for seconds)
/// comes near it.
const SLOW_INPUT: Duration = Duration::from_secs(10);

/// Runs `target` on one input; a panic or a slow input is a finding: the input is saved and its
/// hex printed.
fn run_one(name: &str, target: fn(&[u8]), bytes: &[u8]) {
    let started = Instant::now();
    let panicked = std::panic::catch_unwind(|| target(bytes)).is_err();
    let slow = started.elapsed() > SLOW_INPUT;
    if panicked || slow {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:016x}", fnv1a(bytes)));
        std::fs::write(&path, bytes).unwrap();
        let what = if panicked { "failed".to_owned() } else { format!("took over {SLOW_INPUT:?}") };
        panic!("fuzz target {name} {what} on {} bytes, saved to {}: {bytes:02x?}", bytes.len(), path.display());
    }
}

/// A stable name for a failing input (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Replays the corpus, then fuzzes until the case count or the time budget is reached. The
/// budget keeps the suite's time bounded on a loaded machine; the count keeps a quiet one from
/// spending it all, so both bounds are stated by the run's output.
pub fn fuzz(name: &str, target: fn(&[u8])) {
    let corpus = corpus(name);
    for entry in &corpus {
        run_one(name, target, entry);
    }
    let budget = Duration::from_secs(env_number("CONCORD_FUZZ_SECS", 2));
    let cases = env_number("CONCORD_FUZZ_CASES", 20_000);
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed ^ fnv1a(name.as_bytes()));
    let started = Instant::now();
    let mut ran = 0;
    while ran < cases && started.elapsed() < budget {
        run_one(name, target, &input(&mut rng, &corpus));
        ran += 1;
    }
    eprintln!("fuzz {name}: {} corpus entries, {ran} cases, seed {seed}, {:?}", corpus.len(), started.elapsed());
}
