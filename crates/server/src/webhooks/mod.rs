//! Webhooks: events from sync become signed HTTP deliveries to the URLs owners registered,
//! without ever holding up sync.
//!
//! The path of an event: a hook point (a room's commit, an operation-log push, a share created or
//! revoked) calls the [`Notifier`], which only `try_send`s onto a bounded in-memory queue and
//! returns; when that queue is full the event is dropped, counted in
//! `concord_webhook_events_dropped_total` and logged, and sync goes on. [`outbox`] drains the
//! queue, gathers `document.updated` per document over the debounce window, and writes deliveries
//! into the store's outbox (one transaction per batch); from then on they survive a crash.
//! [`deliver`] claims due deliveries, sends them with bounded concurrency and a per-request
//! timeout, and records each attempt, retrying with backoff (`concord_core::webhook`).
//! [`api`] is the owners' and admins' JSON API.

pub mod api;
mod deliver;
mod outbox;

use std::sync::Arc;

use concord_core::code::CodeKey;
use concord_core::webhook;
use concord_store::{Reach, Scope, ShareRecord, Store};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::WebhookSettings;
use crate::sync::DocKey;

/// Events waiting for the outbox writer. At one store write per batch of up to this many, a
/// queue this long absorbs bursts far beyond what one node's sync produces between two writes.
const QUEUE: usize = 10_000;

/// What a hook point reports.
#[derive(Debug)]
enum Signal {
    /// A document's updates were committed, through `seq`.
    DocumentUpdated { key: DocKey, seq: i64 },
    /// Any other event, ready to be written.
    Event { kind: &'static str, reach: Reach, data: Value },
}

/// The hook points' handle: cheap to clone, never waits.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Signal>,
}

impl Notifier {
    /// After a room's group commit: the document changed through `seq`.
    pub fn document_updated(&self, key: &DocKey, seq: i64) {
        self.send(Signal::DocumentUpdated { key: key.clone(), seq });
    }

    /// After an operation-log push committed: the scope's log is at `head`.
    pub fn oplog_pushed(&self, scope: &Scope, head: i64) {
        let data = json!({ "vault_id": scope.vault_id, "head": head });
        self.send(Signal::Event { kind: webhook::OPLOG_PUSHED, reach: Reach::User(scope.user_id.clone()), data });
    }

    /// After a share was created or revoked (`kind` is [`webhook::SHARE_CREATED`] or
    /// [`webhook::SHARE_REVOKED`]).
    pub fn share(&self, kind: &'static str, share: &ShareRecord) {
        let data = json!({
            "share_id": share.id,
            "workspace_id": share.workspace_id,
            "document": share.doc_name,
            "access": share.access.as_str(),
            "expires_at": share.expires_at,
        });
        self.send(Signal::Event { kind, reach: Reach::Workspace(share.workspace_id.clone()), data });
    }

    fn send(&self, signal: Signal) {
        match self.tx.try_send(signal) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(signal)) => {
                metrics::counter!("concord_webhook_events_dropped_total").increment(1);
                tracing::warn!(?signal, "webhook queue full: event dropped, sync not held up");
            }
            // Only at shutdown, once the writer has stopped.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Starts the outbox writer and the delivery worker; returns the hook points' handle.
pub fn start(store: Arc<dyn Store>, key: CodeKey, settings: WebhookSettings, shutdown: CancellationToken) -> Notifier {
    let (tx, rx) = mpsc::channel(QUEUE);
    let wake = Arc::new(Notify::new());
    tokio::spawn(outbox::run(store.clone(), rx, settings.debounce, wake.clone()));
    tokio::spawn(deliver::run(store, key, settings, wake, shutdown));
    Notifier { tx }
}

/// The signed body of an event: its id, type, time, workspace (if any) and data.
fn body(id: &str, kind: &str, now: i64, reach: &Reach, data: Value) -> String {
    let workspace = match reach {
        Reach::Workspace(id) => Some(id.as_str()),
        Reach::User(_) => None,
    };
    json!({ "id": id, "type": kind, "created_at": now, "workspace_id": workspace, "data": data }).to_string()
}
