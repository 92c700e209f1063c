//! Online backup and restore: one tar archive holding a consistent database copy, every blob that
//! copy references and a manifest of SHA-256 checksums; and the scheduled backup job.
//!
//! Consistency: the database is copied first, in one read transaction (`VACUUM INTO`), while the
//! server keeps writing. The blobs to archive are the ones *that copy* references, so the archive
//! never names a blob it lacks. Blobs are immutable (content-addressed), so reading them after the
//! copy is safe; a blob whose reference is committed a moment before it is placed (see
//! `blobstore/`) is waited for briefly. Blobs are read through the blob store, so the server's
//! scheduled backups archive an S3 bucket's blobs too (the `concord backup` command reads
//! `<data>/blobs`); a restore always writes them to `<data>/blobs`.
//!
//! Archive layout: `concord.db`, `blobs/<aa>/<bb>/<sha256>`, then `manifest.json` last (its
//! checksums are known only once everything before it is written).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use concord_core::blob::{BlobHash, BlobHasher};
use concord_store::sqlite::SqliteStore;
use concord_store::{AdminStore, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::blobstore::Blobs;
use crate::config::BackupSchedule;
use crate::ops::create_private_dir;

/// The database's name inside an archive, whatever it is called on disk.
const DB_ENTRY: &str = "concord.db";
const MANIFEST_ENTRY: &str = "manifest.json";
const FORMAT: &str = "concord-backup";
const FORMAT_VERSION: u32 = 1;
/// How long a referenced blob may be missing before the backup fails: its upload commits the
/// reference and then renames the file, so it appears within moments unless it is truly gone.
const MISSING_BLOB_GRACE: Duration = Duration::from_secs(10);
/// Largest manifest a restore reads into memory (about two million blobs).
const MAX_MANIFEST_BYTES: u64 = 256 << 20;
/// File names of scheduled backups: the prefix, then a UTC timestamp that sorts in time order.
const SCHEDULED_PREFIX: &str = "concord-backup-";
const SCHEDULED_SUFFIX: &str = ".tar";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists; choose a new file")]
    Exists(PathBuf),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("blob {0} is referenced by the database but its file is missing")]
    MissingBlob(String),
    #[error("blob file {0} does not match its hash: the stored copy is damaged")]
    DamagedBlob(String),
    #[error("no backup folder is configured (--backup-dir)")]
    NotScheduled,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0} is not empty; restore into an empty directory or pass --force to replace its data")]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("not a Concord backup: {0}")]
    Format(String),
    #[error("checksum mismatch for {0}: the archive is damaged")]
    Checksum(String),
    #[error("the database in the archive fails its integrity check: {0}")]
    Integrity(String),
    #[error("the backup has schema version {0}, newer than this Concord knows ({1}): restore it with that version")]
    Newer(i64, i64),
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_owned(), source }
}

fn rio_at(path: &Path) -> impl FnOnce(io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io { path: path.to_owned(), source }
}

/// One archived file as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ManifestEntry {
    path: String,
    size: u64,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    created_at: String,
    schema_version: i64,
    files: Vec<ManifestEntry>,
}

/// What a backup or restore covered, for the command's output and the job's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub blobs: usize,
    pub bytes: u64,
    pub schema_version: i64,
}

/// Writes a backup of the live store and its blobs to `out`, which must not exist. The archive is
/// written beside it under a temporary name and renamed into place once complete and on disk, so
/// `out` is either a whole backup or absent.
pub async fn create(store: &dyn Store, blobs: Arc<Blobs>, out: &Path) -> Result<Summary, BackupError> {
    if out.exists() {
        return Err(BackupError::Exists(out.to_owned()));
    }
    let partial = with_suffix(out, ".partial");
    let db_copy = with_suffix(out, ".db.partial");
    for stale in [&partial, &db_copy] {
        remove_if_present(stale).map_err(io_at(stale))?;
    }
    let result = create_via(store, blobs, out, &partial, &db_copy).await;
    // Both temporaries go whatever happened; the archive was renamed away on success.
    let _ = remove_if_present(&db_copy);
    let _ = remove_if_present(&partial);
    result
}

async fn create_via(
    store: &dyn Store,
    blobs: Arc<Blobs>,
    out: &Path,
    partial: &Path,
    db_copy: &Path,
) -> Result<Summary, BackupError> {
    // Both files hold every password hash and document: created private before anything is
    // written to them (SQLite accepts an empty file as the target of VACUUM INTO).
    drop(create_private_file(db_copy).map_err(io_at(db_copy))?);
    store.copy_database_to(db_copy).await?;
    let copy = SqliteStore::open_read_only(db_copy).await?;
    let listed = (copy.referenced_blob_hashes().await, copy.schema_version().await);
    copy.close().await;
    let (hashes, schema_version) = (listed.0?, listed.1?);
    let hashes = hashes
        .into_iter()
        .map(|hash| BlobHash::parse(&hash).map_err(|_| BackupError::DamagedBlob(hash.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let (partial_owned, db_owned) = (partial.to_owned(), db_copy.to_owned());
    let runtime = tokio::runtime::Handle::current();
    let summary = tokio::task::spawn_blocking(move || {
        let source = BlobSource { blobs: &blobs, runtime: &runtime };
        write_archive(&partial_owned, &db_owned, &hashes, &source, schema_version)
    })
    .await
    .map_err(|e| BackupError::Io { path: partial.to_owned(), source: io::Error::other(e) })??;
    std::fs::rename(partial, out).map_err(io_at(out))?;
    sync_parent(out).map_err(io_at(out))?;
    Ok(summary)
}

/// Where the archive's blobs are read from: the blob store, from the blocking thread that writes
/// the archive.
struct BlobSource<'a> {
    blobs: &'a Blobs,
    runtime: &'a tokio::runtime::Handle,
}

impl BlobSource<'_> {
    /// The blob and its size, read as a `Read`; waited for briefly if it is not placed yet.
    fn open(&self, hash: &BlobHash, entry_path: &str) -> Result<(u64, impl Read + use<>), BackupError> {
        let blobs = self.blobs;
        let placed = self.runtime.block_on(super::wait_for(MISSING_BLOB_GRACE, || async move {
            blobs.open_blob(hash, None).await.transpose()
        }));
        match placed {
            Some(Ok(read)) => {
                let stream = tokio_util::io::StreamReader::new(read.body);
                Ok((read.size, tokio_util::io::SyncIoBridge::new_with_handle(stream, self.runtime.clone())))
            }
            Some(Err(source)) => Err(BackupError::Io { path: entry_path.into(), source }),
            None => Err(BackupError::MissingBlob(hash.as_str().to_owned())),
        }
    }
}

fn write_archive(
    partial: &Path,
    db_copy: &Path,
    hashes: &[BlobHash],
    blobs: &BlobSource<'_>,
    schema_version: i64,
) -> Result<Summary, BackupError> {
    let file = create_private_file(partial).map_err(io_at(partial))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    let mut files = Vec::with_capacity(hashes.len() + 1);
    let db = File::open(db_copy).map_err(io_at(db_copy))?;
    let db_size = db.metadata().map_err(io_at(db_copy))?.len();
    files.push(append_reader(&mut tar, DB_ENTRY, db_size, db, db_copy)?.0);
    for hash in hashes {
        let entry_path = format!("blobs/{}", relative_blob_path(hash).to_string_lossy());
        let (size, reader) = blobs.open(hash, &entry_path)?;
        let (entry, actual) = append_reader(&mut tar, &entry_path, size, reader, Path::new(&entry_path))?;
        if actual != *hash {
            return Err(BackupError::DamagedBlob(hash.as_str().to_owned()));
        }
        files.push(entry);
    }
    let bytes = files.iter().map(|f| f.size).sum();
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        version: FORMAT_VERSION,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        schema_version,
        files,
    };
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io { path: partial.into(), source: e.into() })?;
    let mut header = entry_header(json.len() as u64);
    tar.append_data(&mut header, MANIFEST_ENTRY, json.as_slice()).map_err(io_at(partial))?;
    let file = tar
        .into_inner()
        .map_err(io_at(partial))?
        .into_inner()
        .map_err(|e| BackupError::Io { path: partial.to_owned(), source: e.into_error() })?;
    file.sync_all().map_err(io_at(partial))?;
    Ok(Summary { blobs: hashes.len(), bytes, schema_version })
}

/// Appends the `size` bytes `reader` holds as `name`, hashing them as they are archived; `source`
/// names them in errors.
fn append_reader(
    tar: &mut tar::Builder<BufWriter<File>>,
    name: &str,
    size: u64,
    reader: impl Read,
    source: &Path,
) -> Result<(ManifestEntry, BlobHash), BackupError> {
    let mut reader = HashingReader { inner: reader.take(size), hasher: BlobHasher::new() };
    let mut header = entry_header(size);
    tar.append_data(&mut header, name, &mut reader).map_err(io_at(source))?;
    let (hash, read) = reader.hasher.finish();
    if read != size {
        // The file shrank while it was read; only a damaged or tampered data directory does that.
        return Err(BackupError::Io { path: source.to_owned(), source: io::ErrorKind::UnexpectedEof.into() });
    }
    Ok((ManifestEntry { path: name.to_owned(), size, sha256: hash.as_str().to_owned() }, hash))
}

fn entry_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o640);
    header.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

struct HashingReader<R> {
    inner: R,
    hasher: BlobHasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn relative_blob_path(hash: &BlobHash) -> PathBuf {
    hash.relative_path().iter().collect()
}

/// Where a restore puts things: the data directory and the database file (by default inside it).
#[derive(Debug, Clone)]
pub struct Target {
    pub data_dir: PathBuf,
    pub database_path: PathBuf,
}

impl Target {
    fn blob_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }
}

/// Restores `archive` into `target`. Everything is unpacked into a staging directory inside the
/// data directory and checked there (every checksum, the manifest against the entries, every
/// referenced blob present, the database's integrity check); only then is existing data replaced
/// (with `force`) and the staged files renamed into place. A failed restore leaves the target as
/// it was.
pub async fn restore(archive: &Path, target: &Target, force: bool) -> Result<Summary, RestoreError> {
    let occupied = dir_has_entries(&target.data_dir).map_err(rio_at(&target.data_dir))?;
    if (occupied || target.database_path.exists()) && !force {
        return Err(RestoreError::NotEmpty(target.data_dir.clone()));
    }
    create_private_dir(&target.data_dir).map_err(rio_at(&target.data_dir))?;
    let staging = target.data_dir.join(format!(".restore-{}", std::process::id()));
    remove_dir_if_present(&staging).map_err(rio_at(&staging))?;
    let result = restore_via(archive, target, &staging).await;
    let _ = remove_dir_if_present(&staging);
    result
}

async fn restore_via(archive: &Path, target: &Target, staging: &Path) -> Result<Summary, RestoreError> {
    let (archive_owned, staging_owned) = (archive.to_owned(), staging.to_owned());
    let manifest = tokio::task::spawn_blocking(move || unpack_verified(&archive_owned, &staging_owned))
        .await
        .map_err(|e| RestoreError::Io { path: archive.to_owned(), source: io::Error::other(e) })??;

    let staged_db = staging.join(DB_ENTRY);
    let db = SqliteStore::open_read_only(&staged_db).await?;
    let checked = (db.integrity_problems().await, db.referenced_blob_hashes().await);
    db.close().await;
    let problems = checked.0?;
    if !problems.is_empty() {
        return Err(RestoreError::Integrity(problems.join("; ")));
    }
    let archived: std::collections::HashSet<&str> =
        manifest.files.iter().filter_map(|f| f.path.rsplit_once('/').map(|(_, name)| name)).collect();
    if let Some(missing) = checked.1?.into_iter().find(|h| !archived.contains(h.as_str())) {
        return Err(RestoreError::Format(format!("blob {missing} is referenced but not in the archive")));
    }

    adopt_owner(staging, &target.data_dir).map_err(rio_at(staging))?;

    // Verified: replace whatever was there. The write-ahead log and shared memory of an old
    // database belong to it and would corrupt the restored one.
    for old in [with_suffix(&target.database_path, "-wal"), with_suffix(&target.database_path, "-shm")] {
        remove_if_present(&old).map_err(rio_at(&old))?;
    }
    let blob_dir = target.blob_dir();
    remove_dir_if_present(&blob_dir).map_err(rio_at(&blob_dir))?;
    if let Some(parent) = target.database_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent).map_err(rio_at(parent))?;
    }
    std::fs::rename(&staged_db, &target.database_path).map_err(rio_at(&target.database_path))?;
    let staged_blobs = staging.join("blobs");
    if staged_blobs.exists() {
        std::fs::rename(&staged_blobs, &blob_dir).map_err(rio_at(&blob_dir))?;
    } else {
        create_private_dir(&blob_dir).map_err(rio_at(&blob_dir))?;
    }
    sync_parent(&target.database_path).map_err(rio_at(&target.database_path))?;
    sync_parent(&blob_dir).map_err(rio_at(&blob_dir))?;
    let blobs = manifest.files.len().saturating_sub(1);
    Ok(Summary { blobs, bytes: manifest.files.iter().map(|f| f.size).sum(), schema_version: manifest.schema_version })
}

/// Unpacks every entry into `staging`, hashing as it writes, and checks the result against the
/// manifest: the same set of files, each with its size and checksum, blobs named by their hash.
fn unpack_verified(archive: &Path, staging: &Path) -> Result<Manifest, RestoreError> {
    let file = File::open(archive).map_err(rio_at(archive))?;
    let mut tar = tar::Archive::new(io::BufReader::new(file));
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let format_err = |e: io::Error| RestoreError::Format(e.to_string());
    for entry in tar.entries().map_err(format_err)? {
        let mut entry = entry.map_err(format_err)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(RestoreError::Format("archive holds something other than regular files".into()));
        }
        let name = entry.path().map_err(format_err)?.to_string_lossy().into_owned();
        if name == MANIFEST_ENTRY {
            if entry.size() > MAX_MANIFEST_BYTES {
                return Err(RestoreError::Format("manifest too large".into()));
            }
            let mut text = Vec::new();
            entry.read_to_end(&mut text).map_err(format_err)?;
            manifest = Some(serde_json::from_slice(&text).map_err(|e| RestoreError::Format(format!("manifest: {e}")))?);
            continue;
        }
        let relative =
            allowed_entry(&name).ok_or_else(|| RestoreError::Format(format!("unexpected entry {name:?}")))?;
        let path = staging.join(&relative);
        if let Some(parent) = path.parent() {
            create_private_dir(parent).map_err(rio_at(parent))?;
        }
        let out = create_private_file(&path).map_err(rio_at(&path))?;
        let mut writer = BufWriter::new(out);
        let mut hasher = BlobHasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(format_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            writer.write_all(&buf[..n]).map_err(rio_at(&path))?;
        }
        let out = writer.into_inner().map_err(|e| RestoreError::Io { path: path.clone(), source: e.into_error() })?;
        out.sync_all().map_err(rio_at(&path))?;
        let (hash, size) = hasher.finish();
        if seen.insert(name.clone(), (size, hash.as_str().to_owned())).is_some() {
            return Err(RestoreError::Format(format!("{name} appears twice")));
        }
    }
    let manifest = manifest.ok_or_else(|| RestoreError::Format("no manifest.json".into()))?;
    if manifest.format != FORMAT || manifest.version != FORMAT_VERSION {
        return Err(RestoreError::Format(format!("format {} version {}", manifest.format, manifest.version)));
    }
    // A database from a newer Concord would stop this server at start (unknown migrations).
    let latest = SqliteStore::latest_schema_version();
    if manifest.schema_version > latest {
        return Err(RestoreError::Newer(manifest.schema_version, latest));
    }
    let listed: BTreeMap<&str, &ManifestEntry> = manifest.files.iter().map(|f| (f.path.as_str(), f)).collect();
    if listed.len() != seen.len() || !listed.contains_key(DB_ENTRY) {
        return Err(RestoreError::Format("the manifest and the archive's files differ".into()));
    }
    for (name, (size, sha)) in &seen {
        let entry = listed.get(name.as_str()).ok_or_else(|| RestoreError::Format(format!("{name} not in manifest")))?;
        let blob_name_ok = name == DB_ENTRY || name.rsplit('/').next() == Some(sha.as_str());
        if entry.size != *size || entry.sha256 != *sha || !blob_name_ok {
            return Err(RestoreError::Checksum(name.clone()));
        }
    }
    Ok(manifest)
}

/// The only names an archive may hold: the database, and blobs at their content-addressed path
/// (which also rules out absolute paths and `..`).
fn allowed_entry(name: &str) -> Option<PathBuf> {
    if name == DB_ENTRY {
        return Some(PathBuf::from(DB_ENTRY));
    }
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["blobs", a, b, hash] => {
            let parsed = BlobHash::parse(hash).ok()?;
            let expected = parsed.relative_path();
            (expected[0] == *a && expected[1] == *b).then(|| Path::new("blobs").join(relative_blob_path(&parsed)))
        }
        _ => None,
    }
    .filter(|p: &PathBuf| p.components().all(|c| matches!(c, Component::Normal(_))))
}

/// Run as root (the usual way to restore), gives every staged file the data directory's owner,
/// so the service user can open what root unpacked.
fn adopt_owner(staging: &Path, data_dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(data_dir)?;
    if !rustix::process::geteuid().is_root() || owner.uid() == 0 {
        return Ok(());
    }
    let mut pending = vec![staging.to_owned()];
    while let Some(path) = pending.pop() {
        std::os::unix::fs::lchown(&path, Some(owner.uid()), Some(owner.gid()))?;
        if std::fs::symlink_metadata(&path)?.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

fn create_private_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o640).open(path)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn dir_has_entries(dir: &Path) -> io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_dir_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Fsyncs the directory holding `path`, so a rename into it survives a crash.
fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(parent)?.sync_all()
}

/// Starts the scheduled backup job if `--backup-dir` is set: every interval, one archive into
/// the folder, then all but the newest `keep` scheduled archives are deleted. A failed run is
/// logged and retried at the next interval; it never stops the server.
pub fn spawn_scheduled(state: &AppState) {
    let Some(schedule) = state.config.backup.clone() else { return };
    let (store, blobs, shutdown) = (state.store.clone(), state.blobs.clone(), state.shutdown.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(schedule.every) => {}
            }
            // A failure is logged by the run; the next interval tries again.
            run_scheduled(store.as_ref(), &blobs, &schedule).await.ok();
        }
    });
}

async fn run_scheduled(store: &dyn Store, blobs: &Arc<Blobs>, schedule: &BackupSchedule) -> Result<(), BackupError> {
    if let Err(err) = create_private_dir(&schedule.dir) {
        tracing::error!(%err, "scheduled backup failed");
        metrics::gauge!("concord_backup_last_success").set(0.0);
        return Err(BackupError::Io { path: schedule.dir.clone(), source: err });
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let out = schedule.dir.join(format!("{SCHEDULED_PREFIX}{stamp}{SCHEDULED_SUFFIX}"));
    match create(store, blobs.clone(), &out).await {
        Ok(summary) => {
            if let Err(err) = prune(&schedule.dir, schedule.keep) {
                tracing::warn!(%err, dir = %schedule.dir.display(), "cannot delete old backups");
            }
            tracing::info!(file = %out.display(), blobs = summary.blobs, bytes = summary.bytes, "backup written");
            metrics::gauge!("concord_backup_last_success").set(1.0);
            metrics::gauge!("concord_backup_last_success_timestamp_seconds").set(crate::clock::now() as f64);
            Ok(())
        }
        Err(err) => {
            tracing::error!(%err, file = %out.display(), "scheduled backup failed");
            metrics::gauge!("concord_backup_last_success").set(0.0);
            Err(err)
        }
    }
}

/// The newest scheduled archive in `--backup-dir` (its name and size), for the admin dashboard;
/// `None` without a backup folder or before the first backup.
pub fn last_scheduled(state: &AppState) -> Option<(String, u64)> {
    let dir = &state.config.backup.as_ref()?.dir;
    let newest = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_scheduled_name(n))
        .max()?;
    let size = std::fs::metadata(dir.join(&newest)).map(|m| m.len()).unwrap_or(0);
    Some((newest, size))
}

/// Writes one scheduled archive now (the admin console's "back up now"), pruning as the schedule
/// does; the name of the archive, or why there is none.
pub async fn backup_now(state: &AppState) -> Result<String, BackupError> {
    let schedule = state.config.backup.clone().ok_or(BackupError::NotScheduled)?;
    run_scheduled(state.store.as_ref(), &state.blobs, &schedule).await?;
    last_scheduled(state).map(|(name, _)| name).ok_or(BackupError::NotScheduled)
}

/// Deletes all but the newest `keep` scheduled archives in `dir`; other files are left alone.
fn prune(dir: &Path, keep: usize) -> io::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_scheduled_name(n))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for name in &names[..excess] {
        remove_if_present(&dir.join(name))?;
    }
    Ok(())
}

fn is_scheduled_name(name: &str) -> bool {
    name.strip_prefix(SCHEDULED_PREFIX).and_then(|rest| rest.strip_suffix(SCHEDULED_SUFFIX)).is_some_and(|stamp| {
        stamp.len() == "20260101T000000.000Z".len() && stamp.chars().all(|c| c.is_ascii_digit() || "TZ.".contains(c))
    })
}

#[cfg(test)]
mod tests {
    use concord_core::blob::BlobQuota;
    use concord_store::{AccountStore, BlobStore, NewUser, Scope};

    use super::*;

    const BLOB: &[u8] = b"the one blob in this data directory, long enough to find in the archive";

    /// A data directory with one user, one referenced blob on disk, and a backup of it.
    fn blobs_at(dir: &Path) -> Arc<Blobs> {
        Arc::new(Blobs::new(crate::blobstore::FsBlobs::at(dir)))
    }

    async fn backed_up(dir: &Path) -> (PathBuf, PathBuf) {
        let data = dir.join("data");
        let blob_dir = data.join("blobs");
        create_private_dir(&blob_dir).unwrap();
        let store = SqliteStore::open(&data.join("concord.db")).await.unwrap();
        let new = NewUser { email: "a@example.com".into(), username: "alice".into(), password_hash: "h".into() };
        let user = store.create_user(new, 1).await.unwrap();
        let mut hasher = BlobHasher::new();
        hasher.update(BLOB);
        let (hash, size) = hasher.finish();
        let scope = Scope { user_id: user.id, vault_id: "v".into() };
        let quota = BlobQuota { per_vault: 1 << 20, per_user: 1 << 20 };
        store.add_blob_ref(&scope, &hash, size, quota, 1).await.unwrap();
        let path = blob_dir.join(relative_blob_path(&hash));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, BLOB).unwrap();
        let archive = dir.join("backup.tar");
        let summary = create(&store, blobs_at(&blob_dir), &archive).await.unwrap();
        assert_eq!(summary.blobs, 1);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&archive).unwrap().permissions());
        assert_eq!(mode & 0o007, 0, "a backup holds every password hash: not world-readable ({mode:o})");
        (archive, path)
    }

    /// The archive with its manifest claiming schema 99 (same length as today's two digits).
    fn newer_schema(archive: &[u8]) -> Vec<u8> {
        let field = format!("\"schema_version\": {}", SqliteStore::latest_schema_version());
        let at = archive.windows(field.len()).position(|w| w == field.as_bytes()).unwrap();
        let mut bytes = archive.to_vec();
        bytes[at + field.len() - 2..at + field.len()].copy_from_slice(b"99");
        bytes
    }

    fn target(dir: &Path) -> Target {
        Target { data_dir: dir.to_owned(), database_path: dir.join("concord.db") }
    }

    #[tokio::test]
    async fn every_kind_of_damaged_archive_is_refused_and_restores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (archive, _) = backed_up(dir.path()).await;
        let good = std::fs::read(&archive).unwrap();
        let at = good.windows(BLOB.len()).position(|w| w == BLOB).unwrap();
        let flip = |offset: usize| {
            let mut bytes = good.clone();
            bytes[offset] ^= 1;
            bytes
        };
        let needle = b"\"files\"";
        let manifest_at = good.windows(needle.len()).position(|w| w == needle).unwrap();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("blob content", flip(at + 3), "checksum mismatch for blobs/"),
            ("database content", flip(512 + 100), "checksum mismatch for concord.db"),
            (
                "manifest",
                {
                    let mut b = good.clone();
                    b[manifest_at + 1] = b'F';
                    b
                },
                "not a Concord backup",
            ),
            ("truncated", good[..at].to_vec(), "not a Concord backup"),
            ("from a newer Concord", newer_schema(&good), "newer than this Concord knows"),
            ("empty", Vec::new(), "not a Concord backup"),
        ];
        for (name, bytes, expected) in cases {
            let bad = dir.path().join(format!("{name}.tar"));
            std::fs::write(&bad, bytes).unwrap();
            let into = dir.path().join(format!("into-{name}"));
            let err = restore(&bad, &target(&into), false).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{name}: {err}");
            assert_eq!(std::fs::read_dir(&into).unwrap().count(), 0, "{name}: nothing restored");
        }
        let into = dir.path().join("into-good");
        restore(&archive, &target(&into), false).await.unwrap();
        let restored = std::fs::read_dir(into.join("blobs")).unwrap().count();
        assert_eq!(restored, 1);
    }

    #[tokio::test]
    async fn a_backup_refuses_to_overwrite_and_fails_on_a_damaged_blob_leaving_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (archive, blob) = backed_up(dir.path()).await;
        let store = SqliteStore::open(&dir.path().join("data/concord.db")).await.unwrap();
        let blob_dir = dir.path().join("data/blobs");
        let again = create(&store, blobs_at(&blob_dir), &archive).await.unwrap_err();
        assert!(matches!(again, BackupError::Exists(_)), "{again}");
        std::fs::write(&blob, b"bit rot").unwrap();
        let out = dir.path().join("second.tar");
        let damaged = create(&store, blobs_at(&blob_dir), &out).await.unwrap_err();
        assert!(matches!(damaged, BackupError::DamagedBlob(_)), "{damaged}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!left.iter().any(|n| n.to_string_lossy().starts_with("second")), "no partial files: {left:?}");
    }

    #[test]
    fn only_content_addressed_blob_paths_and_the_database_are_accepted() {
        let hash = format!("ab12{}", "0".repeat(60));
        let check = |name: &str, expected: Option<&str>| {
            assert_eq!(allowed_entry(name), expected.map(PathBuf::from), "{name}");
        };
        check("concord.db", Some("concord.db"));
        check(&format!("blobs/ab/12/{hash}"), Some(&format!("blobs/ab/12/{hash}")));
        check(&format!("blobs/ab/13/{hash}"), None);
        check(&format!("blobs/../12/{hash}"), None);
        check(&format!("/blobs/ab/12/{hash}"), None);
        check("blobs/ab/12/../../../etc/passwd", None);
        check("concord.db-wal", None);
        check("manifest.json.bak", None);
    }

    #[test]
    fn pruning_keeps_the_newest_scheduled_archives_only() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "concord-backup-20261201T000000.000Z.tar",
            "concord-backup-20261202T000000.000Z.tar",
            "concord-backup-20261203T000000.000Z.tar",
            "concord-backup-20261203T000000.000Z.tar.partial",
            "notes.txt",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        prune(dir.path(), 2).unwrap();
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, [names[1], names[2], names[3], names[4]]);
    }
}
