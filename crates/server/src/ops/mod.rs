//! Operating a Concord installation: online backup and restore, `doctor`, and the recovery CLI
//! that works on a data directory while the server runs on it.
//!
//! - [`backup`]: archives with a consistent database copy, blobs and a checksum manifest; restore;
//!   the scheduled backup job.
//! - [`doctor`]: what is wrong with a data directory (integrity, schema, orphans, free space).
//! - [`cli`]: the `concord backup|restore|doctor|user|device` commands and their exit codes.
//! - [`jobs`]: the maintenance scheduler (expired credentials, idempotency records, blob
//!   collection, WAL checkpoints, idle-document compaction), with run metrics.
//!
//! Safe beside a running server because SQLite (WAL, `busy_timeout`) lets two processes share the
//! database, and the server re-reads accounts from it: a user blocked here is refused on the next
//! request and their open sockets close at the server's next re-check.

pub mod backup;
pub mod cli;
pub mod doctor;
pub mod jobs;

use std::path::Path;

/// Creates `path` and its parents with mode 0750: the data directory holds the database and every
/// blob, so other users get nothing.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o750).create(path)
}

/// Asks `check` every 50 ms until it answers or `grace` has passed. Blob uploads commit their
/// reference a moment before the blob is placed, so a reader that sees the reference first waits
/// for the blob.
async fn wait_for<T, Fut>(grace: std::time::Duration, mut check: impl FnMut() -> Fut) -> Option<T>
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
