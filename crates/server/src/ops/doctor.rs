//! `concord doctor`: what is wrong with a data directory, read without changing anything, so it
//! is safe while the server runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use concord_core::blob::BlobHash;
use concord_store::sqlite::SqliteStore;
use concord_store::{AdminStore, Store};

use crate::ops::backup::Target;

/// Temporary uploads younger than this are uploads in progress, not leftovers.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
/// Below this much free space SQLite may fail to checkpoint its log or a backup cannot be written.
const LOW_SPACE_PROBLEM: u64 = 100 << 20;
const LOW_SPACE_WARNING: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Ok,
    /// Worth knowing, nothing is lost (e.g. orphan files the collector will remove).
    Warning,
    /// Data is damaged or at risk; `doctor` exits non-zero.
    Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub check: &'static str,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn add(&mut self, severity: Severity, check: &'static str, detail: impl Into<String>) {
        self.findings.push(Finding { severity, check, detail: detail.into() });
    }

    pub fn worst(&self) -> Severity {
        self.findings.iter().map(|f| f.severity).max().unwrap_or(Severity::Ok)
    }
}

/// Runs every check on `target` and reports each one.
pub async fn examine(target: &Target) -> Report {
    let mut report = Report::default();
    let referenced = examine_database(&target.database_path, &mut report).await;
    if let Some(referenced) = referenced {
        examine_blobs(&target.data_dir.join("blobs"), &referenced, &mut report).await;
    }
    examine_free_space(&target.data_dir, &mut report);
    report
}

/// Integrity and schema; returns the referenced blob hashes if the database could be read.
async fn examine_database(path: &Path, report: &mut Report) -> Option<BTreeSet<String>> {
    if let Err(err) = std::fs::metadata(path) {
        report.add(Severity::Problem, "database", format!("{}: {err}", path.display()));
        return None;
    }
    let store = match SqliteStore::open_read_only(path).await {
        Ok(store) => store,
        Err(err) => {
            report.add(Severity::Problem, "database", format!("cannot open {}: {err}", path.display()));
            return None;
        }
    };
    match store.integrity_problems().await {
        Ok(problems) if problems.is_empty() => report.add(Severity::Ok, "integrity", "integrity_check: ok"),
        Ok(problems) => report.add(Severity::Problem, "integrity", problems.join("; ")),
        Err(err) => report.add(Severity::Problem, "integrity", err.to_string()),
    }
    let latest = SqliteStore::latest_schema_version();
    match store.schema_version().await {
        Ok(v) if v == latest => report.add(Severity::Ok, "schema", format!("version {v}")),
        Ok(v) if v < latest => {
            report.add(Severity::Warning, "schema", format!("version {v}; the server migrates it to {latest} at start"))
        }
        Ok(v) => report.add(
            Severity::Problem,
            "schema",
            format!("version {v} was written by a newer Concord (this one knows up to {latest})"),
        ),
        Err(err) => report.add(Severity::Problem, "schema", err.to_string()),
    }
    let referenced = store.referenced_blob_hashes().await;
    store.close().await;
    match referenced {
        Ok(hashes) => Some(hashes.into_iter().collect()),
        Err(err) => {
            report.add(Severity::Problem, "blobs", format!("cannot list references: {err}"));
            None
        }
    }
}

async fn examine_blobs(blob_dir: &Path, referenced: &BTreeSet<String>, report: &mut Report) {
    let (stored, misplaced) = match stored_blobs(blob_dir) {
        Ok(found) => found,
        Err(err) => {
            report.add(Severity::Problem, "blobs", format!("cannot read {}: {err}", blob_dir.display()));
            return;
        }
    };
    let mut missing = Vec::new();
    for hash in referenced.difference(&stored) {
        // An upload commits its reference a moment before it renames the file into place.
        let path = BlobHash::parse(hash).map(|h| blob_dir.join(h.relative_path().iter().collect::<PathBuf>()));
        let appeared = match &path {
            Ok(path) => {
                super::wait_for(Duration::from_secs(2), || async { path.is_file().then_some(()) }).await.is_some()
            }
            Err(_) => false,
        };
        if !appeared {
            missing.push(hash.as_str());
        }
    }
    if missing.is_empty() {
        report.add(Severity::Ok, "blobs", format!("all {} referenced blobs present", referenced.len()));
    } else {
        report.add(
            Severity::Problem,
            "blobs",
            format!("{} referenced blobs missing: {}", missing.len(), missing.join(", ")),
        );
    }
    let orphans = stored.difference(referenced).count();
    if orphans > 0 || !misplaced.is_empty() {
        report.add(
            Severity::Warning,
            "orphans",
            format!(
                "{orphans} blob files no scope references and {} misplaced files (the hourly collector removes unreferenced blobs)",
                misplaced.len()
            ),
        );
    } else {
        report.add(Severity::Ok, "orphans", "no orphan blob files");
    }
    let now = SystemTime::now();
    let stale = std::fs::read_dir(blob_dir.join("tmp"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    let modified = e.metadata().and_then(|m| m.modified()).unwrap_or(now);
                    now.duration_since(modified).unwrap_or_default() > STALE_TEMP_AGE
                })
                .count()
        })
        .unwrap_or(0);
    if stale > 0 {
        report.add(
            Severity::Warning,
            "temporary files",
            format!("{stale} abandoned uploads in blobs/tmp older than an hour"),
        );
    } else {
        report.add(Severity::Ok, "temporary files", "no abandoned uploads");
    }
}

/// Hashes of the files at `<aa>/<bb>/<hash>`, and any other files found at that depth.
fn stored_blobs(blob_dir: &Path) -> std::io::Result<(BTreeSet<String>, Vec<PathBuf>)> {
    let mut stored = BTreeSet::new();
    let mut misplaced = Vec::new();
    for a in std::fs::read_dir(blob_dir)? {
        let a = a?;
        if a.file_name() == "tmp" || !a.file_type()?.is_dir() {
            continue;
        }
        for b in std::fs::read_dir(a.path())? {
            let b = b?;
            if !b.file_type()?.is_dir() {
                misplaced.push(b.path());
                continue;
            }
            for file in std::fs::read_dir(b.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                let in_place = BlobHash::parse(&name).is_ok_and(|h| {
                    let [ea, eb, _] = h.relative_path();
                    a.file_name() == ea && b.file_name() == eb
                });
                if in_place {
                    stored.insert(name);
                } else {
                    misplaced.push(file.path());
                }
            }
        }
    }
    Ok((stored, misplaced))
}

fn examine_free_space(data_dir: &Path, report: &mut Report) {
    match rustix::fs::statvfs(data_dir) {
        Ok(stat) => {
            let free = stat.f_bavail.saturating_mul(stat.f_frsize);
            let severity = if free < LOW_SPACE_PROBLEM {
                Severity::Problem
            } else if free < LOW_SPACE_WARNING {
                Severity::Warning
            } else {
                Severity::Ok
            };
            report.add(severity, "free space", format!("{} MiB free on the data directory's filesystem", free >> 20));
        }
        Err(err) => report.add(Severity::Problem, "free space", format!("cannot read {}: {err}", data_dir.display())),
    }
}
