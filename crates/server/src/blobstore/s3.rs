//! Blob bytes in an S3-compatible bucket, through `object_store`: blobs at
//! `<prefix>/<aa>/<bb>/<sha256>`, uploads staged at `<prefix>/tmp/<uuid>`.
//!
//! An upload is held in memory up to one part ([`PART_SIZE`]); a blob that ends within it is put
//! straight to its content address at placement (one PUT). A larger one becomes a multipart upload
//! to a temporary key, at most [`PARTS_IN_FLIGHT`] parts being sent while the next one fills, so
//! an upload holds at most `(PARTS_IN_FLIGHT + 1) * PART_SIZE` = 15 MiB whatever its size. The
//! multipart upload is completed only once every byte has been hashed, and its object is copied
//! to the content address at placement, so nothing appears under a content address that does not
//! hold those bytes. Staging dropped unplaced aborts its multipart upload or deletes its temporary
//! object (in a spawned task, since drop cannot wait); what a crash leaves is an unfinished
//! multipart upload (the bucket's lifecycle rule `AbortIncompleteMultipartUpload` reclaims it; see
//! README) or a temporary object, which the collector removes once stale.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use concord_core::blob::BlobHash;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, PutPayloadMut, WriteMultipart};

use super::{BlobBackend, BlobRead, Staged, Staging};
use crate::config::S3Settings;

/// Size of every multipart part but the last, and the most a blob is buffered before it becomes a
/// multipart upload: S3's smallest allowed part, so memory per upload is as small as S3 allows.
pub const PART_SIZE: usize = 5 << 20;
/// Parts of one upload being sent at once while the next fills: two keep the link busy while one
/// part's request finishes, without more memory than the bound above.
const PARTS_IN_FLIGHT: usize = 2;
/// The largest object one S3 CopyObject copies, and so the largest blob placement can copy; the
/// configuration refuses a larger BLOB_MAX_BYTES with S3.
pub const MAX_COPY_BYTES: u64 = 5 << 30;
/// The staging folder below the prefix; never a valid two-hex-digit fan-out name.
const TMP_DIR: &str = "tmp";

pub struct S3Blobs {
    store: Arc<AmazonS3>,
    /// The key prefix every blob and staged upload lives under; empty for the bucket's root.
    root: Key,
}

impl S3Blobs {
    /// The client for `settings`; connects lazily (the server's start probes it with a write).
    pub fn new(settings: &S3Settings) -> Result<S3Blobs, object_store::Error> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_allow_http(settings.allow_http);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            builder = builder.with_access_key_id(id).with_secret_access_key(secret.expose());
        }
        Ok(S3Blobs { store: Arc::new(builder.build()?), root: Key::from(settings.prefix.as_str()) })
    }

    fn key(&self, parts: &[&str]) -> Key {
        key_below(&self.root, parts)
    }

    /// Everything below `prefix` (the whole bucket for the empty prefix).
    fn list(
        &self,
        prefix: &Key,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.store.list((prefix.parts_count() > 0).then_some(prefix))
    }
}

fn key_below(root: &Key, parts: &[&str]) -> Key {
    parts.iter().fold(root.clone(), |key, part| key.join(*part))
}

/// Runs a clean-up that a drop cannot wait for; a failure leaves what the collector (or the
/// bucket's lifecycle rule) removes later.
fn clean_up_later<F>(what: &'static str, cleanup: F)
where
    F: Future<Output = object_store::Result<()>> + Send + 'static,
{
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(err) = cleanup.await {
                tracing::warn!(error = %err, what, "blob staging clean-up failed; the collector retries");
            }
        });
    }
}

#[async_trait::async_trait]
impl BlobBackend for S3Blobs {
    async fn stage(&self) -> io::Result<Box<dyn Staging>> {
        Ok(Box::new(S3Staging {
            store: self.store.clone(),
            temp: self.key(&[TMP_DIR, &uuid::Uuid::new_v4().simple().to_string()]),
            root: self.root.clone(),
            buffer: PutPayloadMut::new(),
            multipart: None,
        }))
    }

    async fn read(&self, hash: &BlobHash, range: Option<Range<u64>>) -> io::Result<Option<BlobRead>> {
        let options = GetOptions::new().with_range(range.map(GetRange::Bounded));
        match self.store.get_opts(&self.key(&hash.relative_path()), options).await {
            // With a range, `meta.size` is still the whole object's size (from Content-Range).
            Ok(got) => {
                Ok(Some(BlobRead { size: got.meta.size, body: got.into_stream().map_err(io::Error::from).boxed() }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// A HEAD request: the object's bytes are not fetched.
    async fn size(&self, hash: &BlobHash) -> io::Result<Option<u64>> {
        match self.store.head(&self.key(&hash.relative_path())).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    async fn placed(&self) -> io::Result<Vec<(BlobHash, u64)>> {
        let mut placed = Vec::new();
        let mut listing = self.list(&self.root);
        while let Some(meta) = listing.try_next().await? {
            let Some(parts) = meta.location.prefix_match(&self.root) else { continue };
            let parts: Vec<String> = parts.map(|p| p.as_ref().to_owned()).collect();
            if let [a, b, name] = parts.as_slice()
                && let Some(hash) = super::placed_name([a, b, name])
            {
                placed.push((hash, meta.size));
            }
        }
        Ok(placed)
    }

    async fn remove(&self, hash: &BlobHash) -> io::Result<()> {
        match self.store.delete(&self.key(&hash.relative_path())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Temporary objects exist only between a multipart upload's completion and its placement, so
    /// one older than `stale_after` was left by a crash.
    async fn remove_stale_staging(&self, stale_after: Duration) -> io::Result<(usize, u64)> {
        let (mut count, mut bytes) = (0, 0);
        let now = chrono::Utc::now();
        let mut listing = self.list(&self.key(&[TMP_DIR]));
        while let Some(meta) = listing.try_next().await? {
            if (now - meta.last_modified).to_std().unwrap_or_default() >= stale_after {
                match self.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(err) => return Err(err.into()),
                }
                count += 1;
                bytes += meta.size;
            }
        }
        Ok((count, bytes))
    }

    /// Under the staging folder, so a probe a crash leaves behind is collected like staging.
    async fn probe_writable(&self) -> io::Result<()> {
        let probe = self.key(&[TMP_DIR, &format!(".health-{}", uuid::Uuid::new_v4().simple())]);
        self.store.put(&probe, PutPayload::from_static(b"ok")).await?;
        self.store.delete(&probe).await?;
        Ok(())
    }
}

/// An upload on its way into the bucket.
struct S3Staging {
    store: Arc<AmazonS3>,
    /// Where a multipart upload goes: `<prefix>/tmp/<uuid>`.
    temp: Key,
    root: Key,
    /// The bytes so far while there are fewer than [`PART_SIZE`]; empty once multipart began.
    buffer: PutPayloadMut,
    /// The multipart upload, once the blob outgrew one part; aborted if dropped unfinished.
    multipart: Option<WriteMultipart>,
}

#[async_trait::async_trait]
impl Staging for S3Staging {
    async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        if let Some(multipart) = &mut self.multipart {
            multipart.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            multipart.put(chunk);
            return Ok(());
        }
        self.buffer.push(chunk);
        if self.buffer.content_length() >= PART_SIZE {
            let mut multipart =
                WriteMultipart::new_with_chunk_size(self.store.put_multipart(&self.temp).await?, PART_SIZE);
            for bytes in std::mem::take(&mut self.buffer).freeze() {
                multipart.put(bytes);
            }
            self.multipart = Some(multipart);
        }
        Ok(())
    }

    /// Completes the multipart upload (S3 has every part once this returns), or keeps the small
    /// blob's buffer for its single PUT at placement.
    async fn finish(mut self: Box<Self>) -> io::Result<Box<dyn Staged>> {
        let bytes = match self.multipart.take() {
            Some(multipart) => {
                // On failure `finish` aborts the upload itself.
                multipart.finish().await?;
                StagedBytes::Uploaded(self.temp.clone())
            }
            None => StagedBytes::Buffered(std::mem::take(&mut self.buffer).freeze()),
        };
        Ok(Box::new(S3Staged { store: self.store.clone(), root: self.root.clone(), bytes: Some(bytes) }))
    }
}

impl Drop for S3Staging {
    fn drop(&mut self) {
        if let Some(multipart) = self.multipart.take() {
            clean_up_later("abort multipart upload", multipart.abort());
        }
    }
}

enum StagedBytes {
    /// A blob smaller than one part, in memory.
    Buffered(PutPayload),
    /// A completed multipart upload at this temporary key.
    Uploaded(Key),
}

struct S3Staged {
    store: Arc<AmazonS3>,
    root: Key,
    /// `None` once placed.
    bytes: Option<StagedBytes>,
}

#[async_trait::async_trait]
impl Staged for S3Staged {
    /// Nothing to reserve: a bucket does not fill up the way a disk does.
    async fn prepare(&mut self, _hash: &BlobHash) -> io::Result<()> {
        Ok(())
    }

    /// One PUT or CopyObject to the content address; S3 answers it only once the object is
    /// stored durably, which is what lets the upload answer success after it. Done even when the
    /// blob is there already: the bytes are the same, and it repairs a blob lost to a crash.
    async fn place(mut self: Box<Self>, hash: &BlobHash) -> io::Result<()> {
        let target = key_below(&self.root, &hash.relative_path());
        match self.bytes.take() {
            Some(StagedBytes::Buffered(payload)) => {
                self.store.put(&target, payload).await?;
            }
            Some(StagedBytes::Uploaded(temp)) => {
                if let Err(err) = self.store.copy(&temp, &target).await {
                    self.bytes = Some(StagedBytes::Uploaded(temp)); // dropped with `self`: deleted
                    return Err(err.into());
                }
                if let Err(err) = self.store.delete(&temp).await {
                    tracing::warn!(error = %err, "cannot delete a placed upload's temporary object; the collector will");
                }
            }
            None => {}
        }
        Ok(())
    }
}

impl Drop for S3Staged {
    fn drop(&mut self) {
        if let Some(StagedBytes::Uploaded(temp)) = self.bytes.take() {
            let store = self.store.clone();
            clean_up_later("delete staged upload", async move { store.delete(&temp).await });
        }
    }
}
