//! The outbox writer: drains the notifier's queue, gathers `document.updated` per document over
//! the debounce window (one event per document and window, with the latest seq), and writes
//! deliveries to the store in batches, waking the delivery worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use concord_core::webhook;
use concord_store::{NewEvent, Reach, Store};
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::{QUEUE, Signal, body};
use crate::clock;
use crate::sync::DocKey;

/// Signals taken from the queue per store write.
const BATCH: usize = 512;
/// Wait before writing again after the store refused a batch (full disk, database down).
const STORE_RETRY: Duration = Duration::from_secs(1);

/// A document's event being gathered: its latest seq and when the window closes.
struct Gathering {
    seq: i64,
    due: Instant,
}

pub(super) async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Signal>, debounce: Duration, wake: Arc<Notify>) {
    let mut gathering: HashMap<DocKey, Gathering> = HashMap::new();
    let mut ready: Vec<NewEvent> = Vec::new();
    let mut open = true;
    while open || !gathering.is_empty() || !ready.is_empty() {
        let next_due = gathering.values().map(|g| g.due).min();
        tokio::select! {
            signal = rx.recv(), if open => match signal {
                Some(signal) => take(signal, &mut gathering, &mut ready, debounce),
                // Every sender is gone (shutdown): what is gathered is written now.
                None => {
                    open = false;
                    gathering.values_mut().for_each(|g| g.due = Instant::now());
                }
            },
            () = sleep_until(next_due), if next_due.is_some() => {}
            () = std::future::ready(()), if !ready.is_empty() => {}
        }
        while ready.len() < BATCH
            && let Ok(signal) = rx.try_recv()
        {
            take(signal, &mut gathering, &mut ready, debounce);
        }
        let now = Instant::now();
        let due: Vec<DocKey> = gathering.iter().filter(|(_, g)| g.due <= now).map(|(k, _)| k.clone()).collect();
        for key in due {
            if let Some(g) = gathering.remove(&key) {
                let data = json!({ "document": key.name, "seq": g.seq });
                ready.push(event(webhook::DOCUMENT_UPDATED, Reach::Workspace(key.workspace_id), data));
            }
        }
        if ready.is_empty() {
            continue;
        }
        match store.enqueue_deliveries(&ready).await {
            Ok(added) => {
                metrics::counter!("concord_webhook_events_total").increment(ready.len() as u64);
                ready.clear();
                if added > 0 {
                    wake.notify_one();
                }
            }
            Err(err) => {
                tracing::error!(error = %err, events = ready.len(), "writing webhook events failed; retrying");
                // Held, not lost, up to the queue's own bound; beyond it the oldest go, counted.
                if ready.len() > QUEUE {
                    let excess = ready.len() - QUEUE;
                    ready.drain(..excess);
                    metrics::counter!("concord_webhook_events_dropped_total").increment(excess as u64);
                }
                if !open {
                    return;
                }
                tokio::time::sleep(STORE_RETRY).await;
            }
        }
    }
}

fn take(signal: Signal, gathering: &mut HashMap<DocKey, Gathering>, ready: &mut Vec<NewEvent>, debounce: Duration) {
    match signal {
        Signal::DocumentUpdated { key, seq } => {
            let entry = gathering.entry(key).or_insert(Gathering { seq, due: Instant::now() + debounce });
            entry.seq = entry.seq.max(seq);
        }
        Signal::Event { kind, reach, data } => ready.push(event(kind, reach, data)),
    }
}

fn event(kind: &'static str, reach: Reach, data: serde_json::Value) -> NewEvent {
    let id = webhook::new_event_id();
    let now = clock::now();
    NewEvent { body: body(&id, kind, now, &reach, data), id, kind, reach, now }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
