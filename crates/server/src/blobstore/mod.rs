//! Blob bytes behind one small trait: where an upload is staged while it streams and is hashed,
//! how it is placed under its content address, how blobs are read back, and the collector that
//! removes stale staging and blobs no scope references.
//!
//! - [`fs`]: the filesystem store under `<data>/blobs` (the default).
//! - [`s3`]: an S3-compatible bucket (`--blob-store s3://bucket/prefix`).
//!
//! What the backends share lives here, once: hashing and the size limit while an upload streams,
//! and the collector's rule, ordered against uploads on every node by claims in the database.
//!
//! Crash safety rests on one ordering, the same on every backend (see `api/blobs.rs`): the bytes
//! are staged durably (fsynced temporary file; completed multipart upload or, for a small blob, a
//! buffer of at most one part) under a name that is not the content address; then the scope's
//! reference is committed; then the blob is placed at its content address durably (rename and
//! directory fsync; S3 PUT or copy returning, which is S3's commit); only then does the client hear
//! success. A crash before placement leaves staging (removed by the collector once stale) and
//! possibly a reference without bytes, which the client's retry repairs because placement always
//! (re)installs the bytes. Staging that is dropped unplaced (an upload rejected, cut off, or
//! refused its reference) removes itself.

mod fs;
mod s3;

use std::io;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use concord_core::blob::{BlobHash, BlobHasher};
use concord_store::{BlobClaim, BlobStore};
use futures_util::stream::BoxStream;
use tokio::time::Instant;

pub use fs::FsBlobs;
pub use s3::{MAX_COPY_BYTES, S3Blobs};

/// A blob's bytes (or a range of them) as they are read.
pub type BlobStream = BoxStream<'static, io::Result<Bytes>>;

/// Where blob bytes live. Implementations only move bytes; every rule is in [`Blobs`].
#[async_trait::async_trait]
pub trait BlobBackend: Send + Sync {
    /// Starts staging an upload under a name that is not a content address.
    async fn stage(&self) -> io::Result<Box<dyn Staging>>;
    /// Reads `range` of the blob (all of it for `None`), with the blob's whole size; `None` when
    /// no blob is placed under `hash`. `range` is never empty.
    async fn read(&self, hash: &BlobHash, range: Option<Range<u64>>) -> io::Result<Option<BlobRead>>;
    /// The placed blob's size, without reading it (`HEAD`); `None` when no blob is placed.
    async fn size(&self, hash: &BlobHash) -> io::Result<Option<u64>>;
    /// Every blob placed at its content address, with its size. Anything else in the store is not
    /// ours to judge and is left out.
    async fn placed(&self) -> io::Result<Vec<(BlobHash, u64)>>;
    /// Removes the blob under `hash`, if there is one.
    async fn remove(&self, hash: &BlobHash) -> io::Result<()>;
    /// Removes staging untouched for `stale_after` (an upload in progress keeps touching its
    /// staging, or holds it only in memory): how many and their bytes.
    async fn remove_stale_staging(&self, stale_after: Duration) -> io::Result<(usize, u64)>;
    /// Writes and removes a small probe: the only honest test of "writable".
    async fn probe_writable(&self) -> io::Result<()>;
}

/// An upload's bytes on their way into staging.
#[async_trait::async_trait]
pub trait Staging: Send {
    async fn write(&mut self, chunk: Bytes) -> io::Result<()>;
    /// Every byte written is now durable in staging (or, for a small S3 blob, held to be put).
    async fn finish(self: Box<Self>) -> io::Result<Box<dyn Staged>>;
}

/// A complete upload in staging; removed when dropped unless placed.
#[async_trait::async_trait]
pub trait Staged: Send {
    /// What placement needs that can fail for lack of space, done before the reference commits,
    /// so that a full disk fails the upload with no reference and no blob.
    async fn prepare(&mut self, hash: &BlobHash) -> io::Result<()>;
    /// Puts the bytes at their content address durably; replacing an intact blob is harmless.
    async fn place(self: Box<Self>, hash: &BlobHash) -> io::Result<()>;
}

/// A placed blob being read: its whole size and the requested bytes.
pub struct BlobRead {
    pub size: u64,
    pub body: BlobStream,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("blob exceeds the size limit")]
    TooLarge,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What one collection pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    pub temp_files: usize,
    pub blobs: usize,
    /// Bytes removed, for the reclaimed-bytes metric.
    pub bytes: u64,
}

/// The blob store the server uses: a backend and the rules every backend shares.
pub struct Blobs {
    backend: Box<dyn BlobBackend>,
    /// The last writability probe: when it started and what it found (see [`PROBE_FRESH_FOR`]).
    /// Held across a probe, so callers arriving meanwhile wait for its answer instead of probing.
    probed: tokio::sync::Mutex<Option<(Instant, ProbeAnswer)>>,
}

/// A probe's outcome, kept to be answered again (an `io::Error` cannot be cloned).
type ProbeAnswer = Result<(), (io::ErrorKind, String)>;

/// How long a writability probe's answer is reused: `/readyz` is polled by load balancers, often
/// several times a second, and each probe is a write and a delete in the blob store (two S3
/// requests). So readiness reports the blob store as it was at most this long ago (plus one
/// probe's duration).
pub const PROBE_FRESH_FOR: Duration = Duration::from_secs(2);

/// How long the collector's claim on a blob lasts, by the database's clock (see
/// [`Blobs::collect_garbage`]): long enough for [`DELETE_WITHIN`] plus [`CLAIM_MARGIN`] plus the
/// round trips around them, short enough that a collector dying while it holds a claim keeps
/// uploads of that one blob waiting ([`UPLOAD_WAITS_FOR_CLAIM`], then 503) for a minute at most.
const CLAIM_FOR: Duration = Duration::from_secs(60);
/// The longest one delete may run: it is abandoned then (and its claim kept to expire).
const DELETE_WITHIN: Duration = Duration::from_secs(20);
/// What must still be left of the claim when an abandoned delete's deadline passes: covers a
/// request the client gave up on that the store still applies, and the clocks of the node and the
/// database running at slightly different rates (NTP slews them by at most 0.05 %).
const CLAIM_MARGIN: Duration = Duration::from_secs(20);
/// How long an upload whose blob is claimed waits for the claim to end before answering 503:
/// a claim normally lasts one delete (milliseconds); one left by a collector that died expires
/// after [`CLAIM_FOR`], and the client's retry then goes through.
pub const UPLOAD_WAITS_FOR_CLAIM: Duration = Duration::from_secs(10);

/// Bytes hashed per blocking call while an upload streams.
const HASH_BATCH: usize = 1 << 20;

/// An upload in progress: bytes go to staging and through the hasher together. The hashing runs in
/// a blocking thread, a batch of [`HASH_BATCH`] at a time, while the next batch is received and
/// staged: SHA-256 is the costliest step per byte, and on the async thread it delayed receiving.
/// The batch holds the same `Bytes` that staging holds, so it costs no copy.
pub struct Upload {
    staging: Box<dyn Staging>,
    hasher: Hasher,
    /// Chunks received since the last batch was handed to the hasher.
    batch: Vec<Bytes>,
    batch_len: usize,
    /// Bytes received so far, for the size limit.
    size: u64,
    limit: u64,
}

/// The hasher, idle or busy with one batch.
enum Hasher {
    Idle(BlobHasher),
    Hashing(tokio::task::JoinHandle<BlobHasher>),
}

impl Upload {
    /// Appends a chunk. Over the limit, the upload fails and (once dropped) leaves nothing.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), UploadError> {
        if self.size + chunk.len() as u64 > self.limit {
            return Err(UploadError::TooLarge);
        }
        self.size += chunk.len() as u64;
        self.batch_len += chunk.len();
        self.batch.push(chunk.clone());
        self.staging.write(chunk).await?;
        if self.batch_len >= HASH_BATCH {
            let hasher = self.idle_hasher().await?;
            let batch = std::mem::take(&mut self.batch);
            self.batch_len = 0;
            self.hasher = Hasher::Hashing(tokio::task::spawn_blocking(move || {
                let mut hasher = hasher;
                batch.iter().for_each(|chunk| hasher.update(chunk));
                hasher
            }));
        }
        Ok(())
    }

    /// The hasher once its batch is done.
    async fn idle_hasher(&mut self) -> io::Result<BlobHasher> {
        match std::mem::replace(&mut self.hasher, Hasher::Idle(BlobHasher::new())) {
            Hasher::Idle(hasher) => Ok(hasher),
            Hasher::Hashing(hashing) => hashing.await.map_err(io::Error::other),
        }
    }

    /// Makes the staged bytes durable and names their content.
    pub async fn finish(mut self) -> io::Result<FinishedUpload> {
        // The rest (under one batch) is hashed here: for a small blob, a thread hand-off would
        // cost more than the hashing.
        let mut hasher = self.idle_hasher().await?;
        self.batch.iter().for_each(|chunk| hasher.update(chunk));
        let staged = self.staging.finish().await?;
        let (hash, size) = hasher.finish();
        Ok(FinishedUpload { hash, size, staged })
    }
}

/// A complete upload whose hash is known; its staging is removed on drop unless placed.
pub struct FinishedUpload {
    pub hash: BlobHash,
    pub size: u64,
    staged: Box<dyn Staged>,
}

impl Blobs {
    pub fn new(backend: impl BlobBackend + 'static) -> Blobs {
        Blobs { backend: Box::new(backend), probed: tokio::sync::Mutex::new(None) }
    }

    /// Starts an upload of at most `limit` bytes.
    pub async fn begin_upload(&self, limit: u64) -> io::Result<Upload> {
        Ok(Upload {
            staging: self.backend.stage().await?,
            hasher: Hasher::Idle(BlobHasher::new()),
            batch: Vec::new(),
            batch_len: 0,
            size: 0,
            limit,
        })
    }

    /// See [`Staged::prepare`]; called before the upload's reference is committed.
    pub async fn prepare_place(&self, upload: &mut FinishedUpload) -> io::Result<()> {
        upload.staged.prepare(&upload.hash).await
    }

    /// Places a finished upload at its content address durably, even when a blob is there already
    /// (call it once the upload's reference is committed, see [`Blobs::collect_garbage`]).
    pub async fn place(&self, upload: FinishedUpload) -> io::Result<()> {
        upload.staged.place(&upload.hash).await
    }

    /// Reads a placed blob, or `range` of it; `None` when it is not there.
    pub async fn open_blob(&self, hash: &BlobHash, range: Option<Range<u64>>) -> io::Result<Option<BlobRead>> {
        self.backend.read(hash, range).await
    }

    /// The placed blob's size without reading its bytes; `None` when it is not there.
    pub async fn blob_size(&self, hash: &BlobHash) -> io::Result<Option<u64>> {
        self.backend.size(hash).await
    }

    /// Whether the store takes a write, as probed at most [`PROBE_FRESH_FOR`] before `now` (passed
    /// in, so that tests can step time).
    pub async fn probe_writable(&self, now: Instant) -> io::Result<()> {
        let mut probed = self.probed.lock().await;
        let answer = match &*probed {
            Some((at, answer)) if now.saturating_duration_since(*at) < PROBE_FRESH_FOR => answer.clone(),
            _ => {
                let at = now;
                let answer = self.backend.probe_writable().await.map_err(|e| (e.kind(), e.to_string()));
                *probed = Some((at, answer.clone()));
                answer
            }
        };
        answer.map_err(|(kind, message)| io::Error::new(kind, message))
    }

    /// Removes stale staging and every blob no scope references.
    ///
    /// # Why no acknowledged blob is deleted, with any number of nodes on one store
    ///
    /// A blob's bytes are deleted only under a claim in the database
    /// ([`BlobStore::claim_unreferenced_blob`]), taken in one transaction with the check that no
    /// scope references the blob, while `add_blob_ref` refuses in its own transaction as long as a
    /// live claim exists (the store argues why the two cannot both succeed). An upload references
    /// its blob before it places the bytes, and places them even when they look present. So:
    ///
    /// - An upload that referenced the blob before the claim: the claim is refused, nothing is
    ///   deleted, whenever the upload's placement comes.
    /// - An upload that comes after the claim (the blob placed and orphaned, or being placed again):
    ///   its reference is refused, it waits ([`UPLOAD_WAITS_FOR_CLAIM`]) and retries. The delete
    ///   returned before the claim was released, so the reference that then commits, and the
    ///   placement after it, come after the delete: the bytes are put back.
    /// - A collector that dies holding a claim: the claim expires after [`CLAIM_FOR`] and blocks
    ///   nothing after that. Any delete it had issued was abandoned within [`DELETE_WITHIN`] of its
    ///   check and applied within [`CLAIM_MARGIN`] of that, both before the expiry (below).
    /// - A claim that expires while its delete still runs: just before deleting, the collector
    ///   reads how much of its claim is left and deletes only if at least `DELETE_WITHIN +
    ///   CLAIM_MARGIN` is; the database read its clock after the collector asked, so the claim
    ///   lasts at least until `asked + left`. The delete is abandoned at `asked + DELETE_WITHIN`,
    ///   and its claim then kept, not released, so it is still live for `CLAIM_MARGIN` more. A
    ///   claim lost meanwhile (expired, taken over) shows as nothing left, and nothing is deleted.
    ///
    /// What this rests on: the node's and the database's clocks run at the same rate within
    /// `CLAIM_MARGIN` per minute (not that they agree: claims are timed by the database alone), and
    /// a delete the store received is applied within `CLAIM_MARGIN` of the client abandoning it.
    /// A process frozen for longer than the margin between its check and its delete request (a
    /// VM paused mid-step) is beyond any lease without fencing, which S3 deletes do not offer.
    pub async fn collect_garbage(
        &self,
        store: &(dyn BlobStore + Sync),
        stale_after: Duration,
    ) -> io::Result<Collected> {
        let (temp_files, bytes) = self.backend.remove_stale_staging(stale_after).await?;
        let mut collected = Collected { temp_files, blobs: 0, bytes };
        for (hash, size) in self.backend.placed().await? {
            // A read first: nearly every placed blob is referenced, and a claim is a write.
            if store.blob_referenced(&hash).await.map_err(io::Error::other)? {
                continue;
            }
            let Some(claim) = store.claim_unreferenced_blob(&hash, CLAIM_FOR).await.map_err(io::Error::other)? else {
                continue; // referenced meanwhile, or another node's collector holds it
            };
            if self.remove_claimed(store, &claim).await? {
                collected.blobs += 1;
                collected.bytes += size;
            }
        }
        Ok(collected)
    }

    /// Deletes the claimed blob if enough of the claim is left, then releases it: whether it deleted.
    async fn remove_claimed(&self, store: &(dyn BlobStore + Sync), claim: &BlobClaim) -> io::Result<bool> {
        let asked = Instant::now();
        let left = store.blob_claim_left(claim).await.map_err(io::Error::other)?;
        if left.is_none_or(|left| left < DELETE_WITHIN + CLAIM_MARGIN) {
            // Lost, or too little left to delete within: nothing deleted, so releasing is safe.
            store.release_blob_claim(claim).await.map_err(io::Error::other)?;
            return Ok(false);
        }
        let removed =
            tokio::time::timeout_at(asked + DELETE_WITHIN, self.backend.remove(&claim.hash)).await.map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "blob delete abandoned; its claim expires by itself")
            })?;
        // The store has answered, so no delete of ours is in flight any more.
        store.release_blob_claim(claim).await.map_err(io::Error::other)?;
        removed.map(|()| true)
    }
}

/// Whether `[aa, bb, name]` (a key below a store's root) is a correctly placed blob, and which:
/// blobs live at `<aa>/<bb>/<sha256>` ([`BlobHash::relative_path`]) on every backend.
fn placed_name(parts: [&str; 3]) -> Option<BlobHash> {
    let hash = BlobHash::parse(parts[2]).ok()?;
    let in_place = hash.relative_path()[..2] == parts[..2];
    in_place.then_some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_names() {
        let hash = "ab12".to_owned() + &"0".repeat(60);
        let check = |parts: [&str; 3], expected: bool| assert_eq!(placed_name(parts).is_some(), expected, "{parts:?}");
        check(["ab", "12", &hash], true);
        check(["ab", "13", &hash], false);
        check(["tmp", "12", &hash], false);
        check(["ab", "12", "not-a-hash"], false);
        check(["ab", "12", &hash.to_uppercase()], false);
    }
}
