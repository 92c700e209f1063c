//! The group-commit writer: one task that appends Yjs updates for every room.
//!
//! Rooms send their batches here and wait. While one transaction is being committed (an fsync,
//! several milliseconds), new batches queue up; the next transaction takes all of them at once.
//! So under load many updates share one fsync, and when idle a lone update commits immediately.

use std::sync::Arc;

use concord_store::{NewDocUpdate, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Batches taken into one transaction at most; bounds the latency a huge backlog adds.
const MAX_BATCHES_PER_COMMIT: usize = 256;

struct Request {
    updates: Vec<NewDocUpdate>,
    done: oneshot::Sender<Result<Vec<i64>, AppendFailed>>,
}

/// Why an append did not happen; the cause was logged by the writer.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum AppendFailed {
    /// The document no longer exists (deleted through another node).
    #[error("the document no longer exists")]
    Gone,
    #[error("the document store refused the updates")]
    Failed,
}

impl AppendFailed {
    fn of(err: &StoreError) -> AppendFailed {
        match err {
            StoreError::Missing(_) => AppendFailed::Gone,
            _ => AppendFailed::Failed,
        }
    }
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

impl Writer {
    /// Starts the writer task. It ends when every [`Writer`] handle is dropped.
    pub fn spawn(store: Arc<dyn Store>) -> Writer {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(store, rx));
        Writer { tx }
    }

    /// Appends `updates` durably and returns their seqs, in order. Returns only after the commit.
    pub async fn append(&self, updates: Vec<NewDocUpdate>) -> Result<Vec<i64>, AppendFailed> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Request { updates, done }).await.map_err(|_| AppendFailed::Failed)?;
        wait.await.map_err(|_| AppendFailed::Failed)?
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCHES_PER_COMMIT).await > 0 {
        let counts: Vec<usize> = batch.iter().map(|r| r.updates.len()).collect();
        let all: Vec<NewDocUpdate> = batch.iter_mut().flat_map(|r| std::mem::take(&mut r.updates)).collect();
        metrics::histogram!("concord_yjs_commit_batch_updates").record(all.len() as f64);
        let started = std::time::Instant::now();
        let committed = store.append_doc_updates(&all).await;
        metrics::histogram!("concord_yjs_commit_duration_seconds").record(started.elapsed().as_secs_f64());
        match committed {
            Ok(seqs) => {
                let mut seqs = seqs.into_iter();
                for (request, count) in batch.drain(..).zip(counts) {
                    let _ = request.done.send(Ok(seqs.by_ref().take(count).collect()));
                }
            }
            Err(err) if batch.len() == 1 => {
                tracing::error!(error = %err, updates = all.len(), "appending Yjs updates failed");
                let _ = batch.remove(0).done.send(Err(AppendFailed::of(&err)));
            }
            Err(_) => {
                // One room's failure (say, its document was just deleted through another node)
                // must not fail the others that shared the transaction: retry each batch on its own.
                metrics::counter!("concord_yjs_commit_retries_total").increment(1);
                let mut all = all.into_iter();
                for (request, count) in batch.drain(..).zip(counts) {
                    let updates: Vec<NewDocUpdate> = all.by_ref().take(count).collect();
                    let result = store.append_doc_updates(&updates).await.map_err(|err| {
                        tracing::error!(error = %err, updates = updates.len(), "appending Yjs updates failed");
                        AppendFailed::of(&err)
                    });
                    let _ = request.done.send(result);
                }
            }
        }
    }
}
