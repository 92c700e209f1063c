//! Blob bytes behind one small trait: where an upload is staged while it streams and is hashed,
//! how it is placed under its content address, how blobs are read back, and the collector that
//! removes stale staging and blobs no scope references.
//!
//! - [`fs`]: the filesystem store under `<data>/blobs` (the default).
//! - [`s3`]: an S3-compatible bucket (`--blob-store s3://bucket/prefix`).
//!
//! What the backends share lives here, once: hashing and the size limit while an upload streams,
//! the placement lock between uploads and the collector, and the collector's rule.
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
use concord_store::BlobStore;
use futures_util::stream::BoxStream;
use tokio::sync::{RwLock, RwLockReadGuard};

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
    /// Uploads hold it shared while they add a reference and place the blob; the collector holds
    /// it exclusively while it checks a blob is unreferenced and removes it. Without it the
    /// collector could remove a blob between an upload's reference and its placement. It orders
    /// one process only: several nodes on one bucket need one collecting node (see ARCHITECTURE.md).
    placement: RwLock<()>,
}

/// An upload in progress: bytes go to staging and through the hasher together.
pub struct Upload {
    staging: Box<dyn Staging>,
    hasher: BlobHasher,
    limit: u64,
}

impl Upload {
    /// Appends a chunk. Over the limit, the upload fails and (once dropped) leaves nothing.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), UploadError> {
        if self.hasher.size() + chunk.len() as u64 > self.limit {
            return Err(UploadError::TooLarge);
        }
        self.hasher.update(&chunk);
        self.staging.write(chunk).await?;
        Ok(())
    }

    /// Makes the staged bytes durable and names their content.
    pub async fn finish(self) -> io::Result<FinishedUpload> {
        let staged = self.staging.finish().await?;
        let (hash, size) = self.hasher.finish();
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
        Blobs { backend: Box::new(backend), placement: RwLock::new(()) }
    }

    /// Starts an upload of at most `limit` bytes.
    pub async fn begin_upload(&self, limit: u64) -> io::Result<Upload> {
        Ok(Upload { staging: self.backend.stage().await?, hasher: BlobHasher::new(), limit })
    }

    /// Held by an upload from adding its reference until [`Blobs::place`] returns.
    pub async fn placement(&self) -> RwLockReadGuard<'_, ()> {
        self.placement.read().await
    }

    /// See [`Staged::prepare`]; called before the upload's reference is committed.
    pub async fn prepare_place(&self, upload: &mut FinishedUpload) -> io::Result<()> {
        upload.staged.prepare(&upload.hash).await
    }

    /// Places a finished upload at its content address durably. Call with [`Blobs::placement`]
    /// held.
    pub async fn place(&self, upload: FinishedUpload) -> io::Result<()> {
        upload.staged.place(&upload.hash).await
    }

    /// Reads a placed blob, or `range` of it; `None` when it is not there.
    pub async fn open_blob(&self, hash: &BlobHash, range: Option<Range<u64>>) -> io::Result<Option<BlobRead>> {
        self.backend.read(hash, range).await
    }

    pub async fn probe_writable(&self) -> io::Result<()> {
        self.backend.probe_writable().await
    }

    /// Removes stale staging and every blob no scope references.
    pub async fn collect_garbage(
        &self,
        store: &(dyn BlobStore + Sync),
        stale_after: Duration,
    ) -> io::Result<Collected> {
        let (temp_files, bytes) = self.backend.remove_stale_staging(stale_after).await?;
        let mut collected = Collected { temp_files, blobs: 0, bytes };
        for (hash, size) in self.backend.placed().await? {
            let _exclusive = self.placement.write().await;
            if !store.blob_referenced(&hash).await.map_err(io::Error::other)? {
                self.backend.remove(&hash).await?;
                collected.blobs += 1;
                collected.bytes += size;
            }
        }
        Ok(collected)
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
