//! The maintenance scheduler: every periodic job of the server runs here on its own interval
//! until shutdown, and each run is counted by outcome and timed, so an operator sees in
//! `/metrics` that the jobs run and whether they fail.
//!
//! Jobs: expired tokens and sessions, audit entries past their retention, idempotency records
//! past theirs (`OPLOG_IDEMPOTENCY_RETENTION_SECS`, a day by default: a client retrying later
//! has long since learned the outcome from a pull), stale temporary uploads and unreferenced blobs, WAL checkpoints, and
//! compaction of idle documents. (Scheduled backups keep their own schedule in [`super::backup`].)

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::clock;

/// How often the blob collector runs, and how long a temporary upload file may sit untouched
/// before it counts as abandoned (an upload in progress writes to its file continually).
const COLLECT_EVERY: Duration = Duration::from_secs(3600);
pub const STALE_UPLOAD: Duration = Duration::from_secs(3600);

/// Starts every maintenance job; they stop when the server shuts down.
pub fn spawn_all(state: &AppState) {
    let maintenance = state.config.maintenance_interval;
    let s = state.clone();
    every("expired_credentials", Duration::from_secs(state.config.cleanup_interval_secs), &state.shutdown, move || {
        let store = s.store.clone();
        async move {
            let counts = store.cleanup_expired(clock::now()).await?;
            tracing::info!(
                tokens = counts.tokens,
                magic_tokens = counts.magic_tokens,
                account_tokens = counts.account_tokens,
                devices = counts.devices,
                unconfirmed_users = counts.unconfirmed_users,
                "cleanup removed expired tokens and sessions"
            );
            Ok::<_, concord_store::StoreError>(())
        }
    });
    // The audit log keeps its entries for the retention (`CONCORD_AUDIT_RETENTION_DAYS`); each
    // purge that removed any is itself an entry.
    let s = state.clone();
    every("audit_retention", maintenance, &state.shutdown, move || {
        let (store, audit, retention) = (s.store.clone(), s.audit.clone(), s.config.audit_retention);
        async move {
            let purged = store.purge_audit(clock::now() - retention.as_secs() as i64).await?;
            if purged > 0 {
                let detail = format!("{purged} audit entries older than {} days deleted", retention.as_secs() / 86_400);
                audit.record(crate::audit::Entry::new(
                    crate::audit::Event::RetentionCleanup,
                    &Default::default(),
                    detail,
                ));
            }
            Ok::<_, concord_store::StoreError>(())
        }
    });
    let s = state.clone();
    every("idempotency_keys", maintenance, &state.shutdown, move || {
        let (store, retention) = (s.store.clone(), s.config.oplog_idempotency_retention.as_secs() as i64);
        async move {
            let purged = store.purge_idempotency_keys(clock::now() - retention).await?;
            tracing::debug!(purged, "old idempotency records deleted");
            Ok::<_, concord_store::StoreError>(())
        }
    });
    let s = state.clone();
    every("blob_collection", COLLECT_EVERY, &state.shutdown, move || {
        let (store, blobs) = (s.store.clone(), s.blobs.clone());
        async move {
            let collected = blobs.collect_garbage(store.as_ref(), STALE_UPLOAD).await?;
            metrics::counter!("concord_blob_reclaimed_bytes_total").increment(collected.bytes);
            tracing::info!(?collected, "blob collection done");
            Ok::<_, std::io::Error>(())
        }
    });
    let s = state.clone();
    every("wal_checkpoint", maintenance, &state.shutdown, move || {
        let store = s.store.clone();
        async move { store.checkpoint_wal().await }
    });
    // A document nobody wrote to for a whole interval is compacted by its own room task.
    let s = state.clone();
    every("idle_compaction", maintenance, &state.shutdown, move || {
        let asked = s.sync.compact_idle(maintenance);
        async move {
            tracing::debug!(asked, "open documents asked to compact if idle");
            Ok::<_, std::convert::Infallible>(())
        }
    });
}

/// Runs `job` now and then every `interval` (a run that overruns delays the next) until
/// `shutdown`, counting `concord_maintenance_runs_total{job,outcome}` and timing each run.
fn every<F, Fut, E>(name: &'static str, interval: Duration, shutdown: &CancellationToken, mut job: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let started = Instant::now();
            let outcome = match job().await {
                Ok(()) => "ok",
                Err(err) => {
                    tracing::error!(job = name, error = %err, "maintenance job failed");
                    "error"
                }
            };
            metrics::counter!("concord_maintenance_runs_total", "job" => name, "outcome" => outcome).increment(1);
            metrics::histogram!("concord_maintenance_duration_seconds", "job" => name)
                .record(started.elapsed().as_secs_f64());
        }
    });
}
