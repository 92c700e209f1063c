//! Blob bytes on the filesystem: uploads stream into `<data>/blobs/tmp`, are fsynced, and are
//! placed at `blobs/<aa>/<bb>/<sha256>` by an atomic rename whose directory is fsynced.
//!
//! Every temporary file is owned by a guard that deletes it when dropped, so an upload that
//! fails, is rejected, or is cut off mid-stream (its future dropped) leaves nothing behind.
//!
//! Bytes move in batches of [`IO_BATCH`], one batch in a blocking thread while the next one is
//! received and hashed (upload) or sent (download): a system call and a thread hand-off per MiB
//! instead of per network chunk, and the disk and the socket work at the same time. An upload or a
//! download holds at most two batches. An upload's written batches are sent on to the disk while
//! the rest arrives ([`start_writeback`]), so its fsync has little left to wait for.

use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use concord_core::blob::BlobHash;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::{BlobBackend, BlobRead, Staged, Staging};

/// Bytes written or read per blocking call. 1 MiB: B1 showed per-chunk writes (hyper's chunks of
/// 16-64 KiB) and 64 KiB reads costing half a plain copy's speed; larger batches gain little more
/// and only add memory per transfer.
const IO_BATCH: usize = 1 << 20;

/// Name of the temporary directory under the blob root; never a valid two-hex-digit fan-out name.
const TMP_DIR: &str = "tmp";

pub struct FsBlobs {
    /// `<data>/blobs`.
    root: PathBuf,
    /// `<data>/blobs/tmp`: on the same filesystem as the root, so placement is an atomic rename.
    tmp: PathBuf,
}

/// Deletes its file when dropped unless [`TempPath::keep`] took the path.
struct TempPath(Option<PathBuf>);

impl TempPath {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Best effort: if this fails the collector removes the file once it is stale.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An upload streaming into its temporary file.
struct FsStaging {
    /// Shared with the batch being written; only one batch is written at a time, so the file's
    /// cursor moves in order.
    file: Arc<std::fs::File>,
    /// Chunks received since the last batch was handed off, kept as they came (no copy).
    batch: Vec<Bytes>,
    batch_len: usize,
    /// Bytes handed off to be written: where the next batch starts in the file.
    written: u64,
    /// Bytes from which no writeback has been started yet ([`start_writeback`]), and the one
    /// writeback that may be running: at most one, so a disk slower than the network never piles
    /// up blocking threads.
    flushed_to: u64,
    writeback: Option<JoinHandle<()>>,
    /// The batch being written. Dropped with the upload, it still finishes into the unlinked file.
    writing: Option<JoinHandle<io::Result<()>>>,
    temp: TempPath,
    root: PathBuf,
}

impl FsStaging {
    /// Waits for the batch being written, then hands off the one collected since.
    async fn hand_off(&mut self) -> io::Result<()> {
        self.wait_for_write().await?;
        if self.writeback.as_ref().is_none_or(JoinHandle::is_finished) {
            // Everything written so far is in the file: have the disk start on it.
            self.writeback = start_writeback(self.file.clone(), self.flushed_to, self.written - self.flushed_to);
            self.flushed_to = self.written;
        }
        let (file, batch) = (self.file.clone(), std::mem::take(&mut self.batch));
        self.written += self.batch_len as u64;
        self.batch_len = 0;
        self.writing =
            Some(tokio::task::spawn_blocking(move || batch.iter().try_for_each(|chunk| (&*file).write_all(chunk))));
        Ok(())
    }

    async fn wait_for_write(&mut self) -> io::Result<()> {
        match self.writing.take() {
            Some(writing) => writing.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

/// Has the kernel start writing `len` written bytes from `at` to disk, in a blocking thread
/// that nothing waits for, so the final fsync waits for about the last batch rather than the
/// whole upload (B1: the fsync of a 100 MiB upload left dirty took ~65 ms, a fifth of receiving
/// it; with this, ~5 ms). On Linux, DONTNEED queues a range's dirty pages for writeback without
/// waiting for it and drops only clean pages, which these are not yet, so they stay cached for
/// downloads. Only advice: durability rests on the fsync alone.
#[cfg(target_os = "linux")]
fn start_writeback(file: Arc<std::fs::File>, at: u64, len: u64) -> Option<JoinHandle<()>> {
    let len = std::num::NonZeroU64::new(len)?;
    Some(tokio::task::spawn_blocking(move || {
        let _ = rustix::fs::fadvise(&*file, at, Some(len), rustix::fs::Advice::DontNeed);
    }))
}

/// Elsewhere (macOS has no `fadvise`) the final fsync writes everything, as it did before.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: Arc<std::fs::File>, _at: u64, _len: u64) -> Option<JoinHandle<()>> {
    None
}

/// A complete, fsynced temporary file.
struct FsStaged {
    temp: TempPath,
    root: PathBuf,
}

impl FsBlobs {
    /// Opens the blob root, creating it and its temporary directory if needed, and empties the
    /// temporary directory. Call it only before the server serves: then no upload is in flight, so
    /// every file there was left by a crash (`kill -9` mid-upload) and is garbage, however young.
    pub fn open(root: &Path) -> io::Result<FsBlobs> {
        let tmp = root.join(TMP_DIR);
        std::fs::create_dir_all(&tmp)?;
        let mut cleared = 0;
        for entry in std::fs::read_dir(&tmp)? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?
            } else {
                std::fs::remove_file(&path)?
            }
            cleared += 1;
        }
        if cleared > 0 {
            tracing::info!(cleared, "removed temporary files of uploads cut off by a crash");
        }
        Ok(FsBlobs { root: root.to_owned(), tmp })
    }

    /// The blob root as it is, for a reader beside the running server (`concord backup`): nothing
    /// is created or cleared, since the server's uploads may be in `tmp`.
    pub fn at(root: &Path) -> FsBlobs {
        FsBlobs { root: root.to_owned(), tmp: root.join(TMP_DIR) }
    }
}

fn path_of(root: &Path, hash: &BlobHash) -> PathBuf {
    hash.relative_path().iter().fold(root.to_owned(), |path, part| path.join(part))
}

fn fan_out_dir(root: &Path, hash: &BlobHash) -> PathBuf {
    let [a, b, _] = hash.relative_path();
    root.join(a).join(b)
}

#[async_trait::async_trait]
impl BlobBackend for FsBlobs {
    async fn stage(&self) -> io::Result<Box<dyn Staging>> {
        let path = self.tmp.join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        Ok(Box::new(FsStaging {
            file: Arc::new(file.into_std().await),
            batch: Vec::new(),
            batch_len: 0,
            written: 0,
            flushed_to: 0,
            writeback: None,
            writing: None,
            temp: TempPath(Some(path)),
            root: self.root.clone(),
        }))
    }

    async fn read(&self, hash: &BlobHash, range: Option<Range<u64>>) -> io::Result<Option<BlobRead>> {
        let Some((file, size)) = open_placed(&self.root, hash).await? else { return Ok(None) };
        let range = range.unwrap_or(0..size);
        Ok(Some(BlobRead { size, body: read_ahead(Arc::new(file.into_std().await), range) }))
    }

    async fn size(&self, hash: &BlobHash) -> io::Result<Option<u64>> {
        Ok(open_placed(&self.root, hash).await?.map(|(_, size)| size))
    }

    /// Every correctly placed blob file: `<aa>/<bb>/<hash>` where the hash starts with `aabb`.
    async fn placed(&self) -> io::Result<Vec<(BlobHash, u64)>> {
        let mut placed = Vec::new();
        for level1 in list_dir(&self.root).await? {
            for level2 in list_dir(&level1).await? {
                for file in list_dir(&level2).await? {
                    let name = |p: &Path| p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
                    let Some(hash) = super::placed_name([&name(&level1), &name(&level2), &name(&file)]) else {
                        continue;
                    };
                    // Gone meanwhile (another collection pass): nothing to collect.
                    if let Ok(metadata) = tokio::fs::metadata(&file).await {
                        placed.push((hash, metadata.len()));
                    }
                }
            }
        }
        Ok(placed)
    }

    async fn remove(&self, hash: &BlobHash) -> io::Result<()> {
        remove_if_present(&path_of(&self.root, hash)).await
    }

    async fn remove_stale_staging(&self, stale_after: Duration) -> io::Result<(usize, u64)> {
        let (mut count, mut bytes) = (0, 0);
        let now = SystemTime::now();
        let mut temps = tokio::fs::read_dir(&self.tmp).await?;
        while let Some(entry) = temps.next_entry().await? {
            let metadata = match entry.metadata().await {
                Ok(metadata) => metadata,
                // Placed (renamed away) or removed since the listing: not staging any more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if now.duration_since(metadata.modified()?).unwrap_or_default() >= stale_after {
                remove_if_present(&entry.path()).await?;
                count += 1;
                bytes += metadata.len();
            }
        }
        Ok((count, bytes))
    }

    /// Permissions, read-only mounts and full disks all show up here.
    async fn probe_writable(&self) -> io::Result<()> {
        let probe = self.root.join(format!(".health-{}", uuid::Uuid::new_v4()));
        let written = tokio::fs::write(&probe, b"ok").await;
        let _ = tokio::fs::remove_file(&probe).await;
        written
    }
}

/// The placed blob's file and size, or `None` when there is none.
async fn open_placed(root: &Path, hash: &BlobHash) -> io::Result<Option<(tokio::fs::File, u64)>> {
    match tokio::fs::File::open(path_of(root, hash)).await {
        Ok(file) => {
            let size = file.metadata().await?.len();
            Ok(Some((file, size)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `range` of `file` in [`IO_BATCH`]es, the next one read while the current one is sent.
fn read_ahead(file: Arc<std::fs::File>, range: Range<u64>) -> super::BlobStream {
    let end = range.end;
    let read_from = move |file: &Arc<std::fs::File>, at: u64| {
        let file = file.clone();
        let len = (end - at).min(IO_BATCH as u64) as usize;
        tokio::task::spawn_blocking(move || read_batch(&file, at, len))
    };
    let first = (range.start < end).then(|| read_from(&file, range.start));
    let state = (file, range.start, first);
    futures_util::stream::try_unfold(state, move |(file, at, reading)| async move {
        let Some(reading) = reading else { return Ok(None) };
        let batch: Bytes = reading.await.map_err(io::Error::other)??;
        let next = at + batch.len() as u64;
        let reading = (next < end).then(|| read_from(&file, next));
        Ok(Some((batch, (file, next, reading))))
    })
    .boxed()
}

/// `len` bytes of `file` from `at`, read into a buffer that is not zeroed first: a reused 1 MiB
/// allocation was filled with zeros before every read (perf, B1), only to be overwritten.
fn read_batch(file: &std::fs::File, at: u64, len: usize) -> io::Result<Bytes> {
    let mut batch = Vec::with_capacity(len);
    while batch.len() < len {
        let offset = at + batch.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut batch), offset) {
            // Placed blobs never change, so a short file means it was damaged: an error.
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The allocator may give more capacity than asked for, and the read fills all of it.
    batch.truncate(len);
    Ok(Bytes::from(batch))
}

#[async_trait::async_trait]
impl Staging for FsStaging {
    async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        self.batch_len += chunk.len();
        self.batch.push(chunk);
        if self.batch_len >= IO_BATCH { self.hand_off().await } else { Ok(()) }
    }

    async fn finish(mut self: Box<Self>) -> io::Result<Box<dyn Staged>> {
        self.hand_off().await?;
        self.wait_for_write().await?;
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.sync_all()).await.map_err(io::Error::other)??;
        let FsStaging { temp, root, .. } = *self;
        Ok(Box::new(FsStaged { temp, root }))
    }
}

#[async_trait::async_trait]
impl Staged for FsStaged {
    /// Creates the fan-out directories: the step of placement that needs free space.
    async fn prepare(&mut self, hash: &BlobHash) -> io::Result<()> {
        tokio::fs::create_dir_all(fan_out_dir(&self.root, hash)).await
    }

    /// Renames the file into place and makes the rename durable, also over a blob that is there
    /// already (the same bytes): placement never trusts that bytes it saw will stay, since a
    /// collector's delete may have been ordered before this upload's reference (`Blobs`).
    async fn place(self: Box<Self>, hash: &BlobHash) -> io::Result<()> {
        let target = path_of(&self.root, hash);
        let dir = fan_out_dir(&self.root, hash);
        let FsStaged { temp, root } = *self;
        tokio::task::spawn_blocking(move || {
            // Normally made by `prepare` already; kept so placement never depends on it.
            std::fs::create_dir_all(&dir)?;
            std::fs::rename(temp.path(), &target)?;
            temp.keep();
            // fsync the new directory entry and, in case the fan-out directories are new, theirs.
            for d in [&dir, dir.parent().unwrap_or(&root), &root] {
                std::fs::File::open(d)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }
}

async fn list_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        // Not a directory (a stray file at the fan-out level) or gone meanwhile: nothing inside.
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(out),
        Err(e) => return Err(e),
    };
    while let Some(entry) = entries.next_entry().await? {
        out.push(entry.path());
    }
    Ok(out)
}

async fn remove_if_present(path: &Path) -> io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use concord_core::blob::{BlobHasher, BlobQuota};
    use concord_store::sqlite::SqliteStore;
    use concord_store::{AccountStore, BlobStore, Scope};
    use futures_util::TryStreamExt;

    use super::super::{Blobs, Collected, FinishedUpload, UploadError};
    use super::*;

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
        }
        out
    }

    fn open(dir: &Path) -> (Blobs, PathBuf) {
        let root = dir.join("blobs");
        (Blobs::new(FsBlobs::open(&root).unwrap()), root)
    }

    async fn upload(blobs: &Blobs, data: &[u8], limit: u64) -> Result<FinishedUpload, UploadError> {
        let mut up = blobs.begin_upload(limit).await?;
        for chunk in data.chunks(1000) {
            up.write(Bytes::copy_from_slice(chunk)).await?;
        }
        Ok(up.finish().await?)
    }

    async fn read_all(blobs: &Blobs, hash: &BlobHash, range: Option<Range<u64>>) -> Option<(u64, Vec<u8>)> {
        let read = blobs.open_blob(hash, range).await.unwrap()?;
        let chunks: Vec<Bytes> = read.body.try_collect().await.unwrap();
        Some((read.size, chunks.concat()))
    }

    #[tokio::test]
    async fn upload_places_by_hash_and_dedupes() {
        let dir = tempfile::tempdir().unwrap();
        let (blobs, root) = open(dir.path());
        let data = vec![7u8; 5000];
        let done = upload(&blobs, &data, 5000).await.unwrap();
        let mut expect = BlobHasher::new();
        expect.update(&data);
        let (hash, size) = expect.finish();
        assert_eq!((done.hash.clone(), done.size), (hash.clone(), size));
        blobs.place(done).await.unwrap();
        let path = path_of(&root, &hash);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert!(path.starts_with(root.join(&hash.as_str()[..2]).join(&hash.as_str()[2..4])));

        // The same bytes again: still one file, and no temporary copy left over.
        blobs.place(upload(&blobs, &data, 5000).await.unwrap()).await.unwrap();
        assert_eq!(files_under(&root), std::slice::from_ref(&path));
        assert_eq!(read_all(&blobs, &hash, None).await, Some((5000, data.clone())));
        assert_eq!(read_all(&blobs, &hash, Some(10..20)).await, Some((5000, data[10..20].to_vec())));
        assert!(read_all(&blobs, &BlobHash::parse(&"0".repeat(64)).unwrap(), None).await.is_none());
    }

    #[tokio::test]
    async fn rejected_and_abandoned_uploads_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (blobs, root) = open(dir.path());
        assert!(matches!(upload(&blobs, &[1u8; 5001], 5000).await, Err(UploadError::TooLarge)));
        // Cut off mid-stream: the upload is dropped before it finishes.
        let mut up = blobs.begin_upload(10_000).await.unwrap();
        up.write(Bytes::from_static(&[1u8; 100])).await.unwrap();
        assert_eq!(files_under(&root).len(), 1);
        drop(up);
        // Finished but never placed (the reference was refused, say).
        drop(upload(&blobs, b"abc", 10).await.unwrap());
        assert_eq!(files_under(&root), Vec::<PathBuf>::new());
    }

    /// Readiness polls reuse a probe's answer for `PROBE_FRESH_FOR`, then probe again.
    #[tokio::test]
    async fn the_writability_probe_is_reused_while_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let (blobs, root) = open(dir.path());
        let start = tokio::time::Instant::now();
        let later = |n: u32| start + super::super::PROBE_FRESH_FOR * n;
        blobs.probe_writable(start).await.unwrap();
        // The blob root gone: a probe now fails, but the fresh answer still stands.
        std::fs::remove_dir_all(&root).unwrap();
        blobs.probe_writable(later(1) - Duration::from_millis(1)).await.unwrap();
        assert!(blobs.probe_writable(later(1)).await.is_err());
        // A failure is reused as well, until the next probe finds the root back.
        std::fs::create_dir_all(&root).unwrap();
        assert!(blobs.probe_writable(later(1)).await.is_err());
        blobs.probe_writable(later(2)).await.unwrap();
    }

    /// An upload of several batches (written and hashed batch by batch) names and stores exactly
    /// its bytes, and reads of every length around the batch size, whole and ranged, give them.
    #[tokio::test]
    async fn uploads_and_reads_cross_batches_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (blobs, _root) = open(dir.path());
        let data: Vec<u8> = (0..(2 * IO_BATCH + 7) as u32).map(|i| (i % 251) as u8).collect();
        let done = upload(&blobs, &data, u64::MAX).await.unwrap();
        let mut expect = BlobHasher::new();
        expect.update(&data);
        assert_eq!((done.hash.clone(), done.size), expect.finish());
        let hash = done.hash.clone();
        blobs.place(done).await.unwrap();
        let n = data.len() as u64;
        let batch = IO_BATCH as u64;
        for range in [0..n, 0..batch, 1..batch + 1, batch - 1..2 * batch + 1, n - 1..n] {
            let (size, got) = read_all(&blobs, &hash, Some(range.clone())).await.unwrap();
            assert_eq!((size, got.len()), (n, (range.end - range.start) as usize), "{range:?}");
            assert!(got == data[range.start as usize..range.end as usize], "{range:?}");
        }
        assert_eq!(blobs.blob_size(&hash).await.unwrap(), Some(n));
    }

    #[tokio::test]
    async fn collector_removes_stale_temps_and_unreferenced_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let user = store.user_for_verified_email("a@example.com", 1).await.unwrap();
        let scope = Scope { user_id: user.id, vault_id: "v".into() };
        let (blobs, root) = open(dir.path());
        let quota = BlobQuota { per_vault: 100, per_user: 100 };

        let kept = upload(&blobs, b"kept", 100).await.unwrap();
        let kept_hash = kept.hash.clone();
        store.add_blob_ref(&scope, &kept.hash, kept.size, quota, 1).await.unwrap();
        blobs.place(kept).await.unwrap();
        let orphan = upload(&blobs, b"orphan", 100).await.unwrap();
        let orphan_hash = orphan.hash.clone();
        blobs.place(orphan).await.unwrap();
        // A fresh temp (an upload in progress) and a stale one (left by a crash).
        let _fresh = blobs.begin_upload(100).await.unwrap();
        let stale = root.join("tmp/crashed.part");
        std::fs::write(&stale, b"x").unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();

        let collected = blobs.collect_garbage(&store, Duration::from_secs(3600)).await.unwrap();
        assert_eq!(collected, Collected { temp_files: 1, blobs: 1, bytes: 1 + 6 });
        assert!(!stale.exists());
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 1, "the fresh upload's file stays");
        assert!(path_of(&root, &kept_hash).exists());
        assert!(!path_of(&root, &orphan_hash).exists());
    }
}
