//! Blob bytes on the filesystem: streaming uploads into `<data>/blobs/tmp`, durable placement at
//! `blobs/<aa>/<bb>/<sha256>`, deduplication, and garbage collection of stale temporary files and
//! of blobs no scope references.
//!
//! Crash safety rests on ordering. An upload is hashed while it streams into a temporary file,
//! which is fsynced; then the scope's reference is committed; then the file is renamed into place
//! and its directory fsynced; only then does the client hear success. A crash before the rename
//! leaves a temporary file (removed by the collector) and possibly a reference without a file,
//! which the client's retry repairs because placement always (re)installs the bytes. Every
//! temporary file is owned by a guard that deletes it when dropped, so an upload that fails, is
//! rejected, or is cut off mid-stream (its future dropped) leaves nothing behind.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use concord_core::blob::{BlobHash, BlobHasher};
use concord_store::BlobStore;
use tokio::io::AsyncWriteExt;
use tokio::sync::{RwLock, RwLockReadGuard};

/// Name of the temporary directory under the blob root; never a valid two-hex-digit fan-out name.
const TMP_DIR: &str = "tmp";

pub struct BlobFiles {
    /// `<data>/blobs`.
    root: PathBuf,
    /// `<data>/blobs/tmp`: on the same filesystem as the root, so placement is an atomic rename.
    tmp: PathBuf,
    /// Uploads hold it shared while they add a reference and place the file; the collector holds
    /// it exclusively while it checks a file is unreferenced and deletes it. Without it the
    /// collector could delete a file between an upload's reference and its rename.
    placement: RwLock<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("blob exceeds the size limit")]
    TooLarge,
    #[error(transparent)]
    Io(#[from] io::Error),
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

/// An upload in progress: bytes go to a temporary file and through the hasher together.
pub struct Upload {
    file: tokio::fs::File,
    temp: TempPath,
    hasher: BlobHasher,
    limit: u64,
}

impl Upload {
    /// Appends a chunk. Over the limit, the upload fails and (once dropped) leaves no file.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        if self.hasher.size() + chunk.len() as u64 > self.limit {
            return Err(UploadError::TooLarge);
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).await?;
        Ok(())
    }

    /// Flushes and fsyncs the temporary file and names its content.
    pub async fn finish(mut self) -> io::Result<FinishedUpload> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        let (hash, size) = self.hasher.finish();
        Ok(FinishedUpload { hash, size, temp: self.temp })
    }
}

/// A complete, durable temporary file whose hash is known; deleted on drop unless placed.
pub struct FinishedUpload {
    pub hash: BlobHash,
    pub size: u64,
    temp: TempPath,
}

/// What one collection pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    pub temp_files: usize,
    pub blobs: usize,
    /// Bytes of the files removed, for the reclaimed-bytes metric.
    pub bytes: u64,
}

impl BlobFiles {
    /// Opens the blob root, creating it and its temporary directory if needed, and empties the
    /// temporary directory. Call it only before the server serves: then no upload is in flight, so
    /// every file there was left by a crash (`kill -9` mid-upload) and is garbage, however young.
    pub fn open(root: &Path) -> io::Result<BlobFiles> {
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
        Ok(BlobFiles { root: root.to_owned(), tmp, placement: RwLock::new(()) })
    }

    pub fn path_of(&self, hash: &BlobHash) -> PathBuf {
        self.fan_out_dir(hash).join(hash.as_str())
    }

    /// Starts an upload of at most `limit` bytes.
    pub async fn begin_upload(&self, limit: u64) -> io::Result<Upload> {
        let path = self.tmp.join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        Ok(Upload { file, temp: TempPath(Some(path)), hasher: BlobHasher::new(), limit })
    }

    /// Held by an upload from adding its reference until [`BlobFiles::place`] returns.
    pub async fn placement(&self) -> RwLockReadGuard<'_, ()> {
        self.placement.read().await
    }

    /// Creates the fan-out directories an upload will be placed in. Called before its reference
    /// is committed, because creating directories is the step of placement that needs free
    /// space: on a full disk the upload then fails with no reference and no file.
    pub async fn prepare_place(&self, upload: &FinishedUpload) -> io::Result<()> {
        tokio::fs::create_dir_all(self.fan_out_dir(&upload.hash)).await
    }

    fn fan_out_dir(&self, hash: &BlobHash) -> PathBuf {
        let [a, b, _] = hash.relative_path();
        self.root.join(a).join(b)
    }

    /// Moves a finished upload to its content address and makes the rename durable. If the file
    /// is already there (another scope uploaded the same bytes) the temporary copy is dropped.
    /// Call with [`BlobFiles::placement`] held.
    pub async fn place(&self, upload: FinishedUpload) -> io::Result<()> {
        let target = self.path_of(&upload.hash);
        let dir = self.fan_out_dir(&upload.hash);
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            if target.is_file() {
                return Ok(()); // `upload.temp` drops here and removes the duplicate.
            }
            // Normally made by `prepare_place` already; kept so placement never depends on it.
            std::fs::create_dir_all(&dir)?;
            std::fs::rename(upload.temp.path(), &target)?;
            upload.temp.keep();
            // fsync the new directory entry and, in case the fan-out directories are new, theirs.
            for d in [&dir, dir.parent().unwrap_or(&root), &root] {
                std::fs::File::open(d)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Opens a stored blob for reading, with its size.
    pub async fn open_blob(&self, hash: &BlobHash) -> io::Result<Option<(tokio::fs::File, u64)>> {
        match tokio::fs::File::open(self.path_of(hash)).await {
            Ok(file) => {
                let size = file.metadata().await?.len();
                Ok(Some((file, size)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes temporary files untouched for `stale_after` (an upload in progress keeps touching
    /// its file) and every blob file no scope references.
    pub async fn collect_garbage(
        &self,
        store: &(dyn BlobStore + Sync),
        stale_after: Duration,
    ) -> io::Result<Collected> {
        let mut collected = Collected::default();
        let now = SystemTime::now();
        let mut temps = tokio::fs::read_dir(&self.tmp).await?;
        while let Some(entry) = temps.next_entry().await? {
            let metadata = entry.metadata().await?;
            if now.duration_since(metadata.modified()?).unwrap_or_default() >= stale_after {
                remove_if_present(&entry.path()).await?;
                collected.temp_files += 1;
                collected.bytes += metadata.len();
            }
        }
        for hash in self.stored_hashes().await? {
            let _exclusive = self.placement.write().await;
            if !store.blob_referenced(&hash).await.map_err(io::Error::other)? {
                let size = tokio::fs::metadata(self.path_of(&hash)).await.map_or(0, |m| m.len());
                remove_if_present(&self.path_of(&hash)).await?;
                collected.blobs += 1;
                collected.bytes += size;
            }
        }
        Ok(collected)
    }

    /// Every correctly placed blob file: `<aa>/<bb>/<hash>` where the hash starts with `aabb`.
    /// Anything else under the root is not ours to judge and is left alone.
    async fn stored_hashes(&self) -> io::Result<Vec<BlobHash>> {
        let mut hashes = Vec::new();
        for level1 in list_dir(&self.root).await? {
            for level2 in list_dir(&level1).await? {
                for file in list_dir(&level2).await? {
                    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    if let Ok(hash) = BlobHash::parse(name)
                        && self.path_of(&hash) == file
                    {
                        hashes.push(hash);
                    }
                }
            }
        }
        Ok(hashes)
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
    use concord_core::blob::BlobQuota;
    use concord_store::sqlite::SqliteStore;
    use concord_store::{AccountStore, Scope};

    use super::*;

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
        }
        out
    }

    async fn upload(files: &BlobFiles, data: &[u8], limit: u64) -> Result<FinishedUpload, UploadError> {
        let mut up = files.begin_upload(limit).await?;
        for chunk in data.chunks(1000) {
            up.write(chunk).await?;
        }
        Ok(up.finish().await?)
    }

    #[tokio::test]
    async fn upload_places_by_hash_and_dedupes() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlobFiles::open(&dir.path().join("blobs")).unwrap();
        let data = vec![7u8; 5000];
        let done = upload(&files, &data, 5000).await.unwrap();
        let mut expect = BlobHasher::new();
        expect.update(&data);
        let (hash, size) = expect.finish();
        assert_eq!((done.hash.clone(), done.size), (hash.clone(), size));
        files.place(done).await.unwrap();
        let path = files.path_of(&hash);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert!(path.starts_with(dir.path().join("blobs").join(&hash.as_str()[..2]).join(&hash.as_str()[2..4])));

        // The same bytes again: still one file, and no temporary copy left over.
        files.place(upload(&files, &data, 5000).await.unwrap()).await.unwrap();
        assert_eq!(files_under(&dir.path().join("blobs")), std::slice::from_ref(&path));
        let (_, len) = files.open_blob(&hash).await.unwrap().unwrap();
        assert_eq!(len, 5000);
        assert!(files.open_blob(&BlobHash::parse(&"0".repeat(64)).unwrap()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rejected_and_abandoned_uploads_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlobFiles::open(&dir.path().join("blobs")).unwrap();
        assert!(matches!(upload(&files, &[1u8; 5001], 5000).await, Err(UploadError::TooLarge)));
        // Cut off mid-stream: the upload is dropped before it finishes.
        let mut up = files.begin_upload(10_000).await.unwrap();
        up.write(&[1u8; 100]).await.unwrap();
        assert_eq!(files_under(&dir.path().join("blobs")).len(), 1);
        drop(up);
        // Finished but never placed (the reference was refused, say).
        drop(upload(&files, b"abc", 10).await.unwrap());
        assert_eq!(files_under(&dir.path().join("blobs")), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn collector_removes_stale_temps_and_unreferenced_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let user = store.user_for_verified_email("a@example.com", 1).await.unwrap();
        let scope = Scope { user_id: user.id, vault_id: "v".into() };
        let files = BlobFiles::open(&dir.path().join("blobs")).unwrap();
        let quota = BlobQuota { per_vault: 100, per_user: 100 };

        let kept = upload(&files, b"kept", 100).await.unwrap();
        let kept_hash = kept.hash.clone();
        store.add_blob_ref(&scope, &kept.hash, kept.size, quota, 1).await.unwrap();
        files.place(kept).await.unwrap();
        let orphan = upload(&files, b"orphan", 100).await.unwrap();
        let orphan_hash = orphan.hash.clone();
        files.place(orphan).await.unwrap();
        // A fresh temp (an upload in progress) and a stale one (left by a crash).
        let fresh = files.begin_upload(100).await.unwrap();
        let stale = dir.path().join("blobs/tmp/crashed.part");
        std::fs::write(&stale, b"x").unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();

        let collected = files.collect_garbage(&store, Duration::from_secs(3600)).await.unwrap();
        assert_eq!(collected, Collected { temp_files: 1, blobs: 1, bytes: 1 + 6 });
        assert!(!stale.exists());
        assert!(fresh.temp.path().exists());
        assert!(files.path_of(&kept_hash).exists());
        assert!(!files.path_of(&orphan_hash).exists());
    }
}
