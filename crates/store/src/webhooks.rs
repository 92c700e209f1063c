//! The webhooks part of the contract: hooks of a workspace (its owner's) or of the whole server
//! (an admin's), and the durable outbox of their deliveries, claimed by delivery workers, retried,
//! and logged per hook.

use sqlx::ColumnIndex;

use crate::StoreResult;
use crate::rows::StoreRow;

/// Whose hooks a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOwner<'a> {
    /// The hooks of one workspace, managed by its owner.
    Workspace { user_id: &'a str, workspace_id: &'a str },
    /// The server-wide hooks, managed by admins.
    Server,
}

impl<'a> HookOwner<'a> {
    /// The `(user_id, workspace_id)` the statements bind: both `None` for the server's hooks.
    pub(crate) fn columns(self) -> (Option<&'a str>, Option<&'a str>) {
        match self {
            HookOwner::Workspace { user_id, workspace_id } => (Some(user_id), Some(workspace_id)),
            HookOwner::Server => (None, None),
        }
    }
}

/// A hook as stored. Its secret is derived from `salt` by the caller (see
/// `concord_core::webhook::secret`), never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: String,
    /// `None` for a server-wide hook.
    pub workspace_id: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    pub salt: String,
    pub created_at: i64,
}

/// What [`WebhookStore::create_webhook`] stores.
#[derive(Debug)]
pub struct NewWebhook<'a> {
    pub id: &'a str,
    pub owner: HookOwner<'a>,
    pub url: &'a str,
    pub events: &'a [&'a str],
    pub salt: &'a str,
    pub now: i64,
}

/// One event for the outbox: [`WebhookStore::enqueue_deliveries`] makes a delivery of it for
/// every hook it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique per event; a delivery's id is this id and its hook's.
    pub id: String,
    pub kind: &'static str,
    pub reach: Reach,
    /// The exact bytes to sign and send.
    pub body: String,
    pub now: i64,
}

/// Which workspace hooks an event reaches (server-wide hooks see every event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The hooks of the workspace it happened in.
    Workspace(String),
    /// The hooks of every workspace of the user: for events of no workspace (an operation-log
    /// push, whose vault is no workspace).
    User(String),
}

impl Reach {
    /// The `(workspace_id, user_id)` the enqueue statement binds, one of them `None`.
    pub(crate) fn columns(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Reach::Workspace(id) => (Some(id), None),
            Reach::User(id) => (None, Some(id)),
        }
    }
}

/// A delivery a worker has claimed, with what it needs to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: String,
    pub hook_id: String,
    pub url: String,
    pub salt: String,
    pub event: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub created_at: i64,
}

/// How one attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt<'a> {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// Anything else: the receiver's status if it answered, what went wrong, and when to try
    /// again (`None`: given up).
    Failed { status: Option<u16>, error: &'a str, retry_at: Option<i64> },
}

/// A delivery as its hook's log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: String,
    pub event: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    pub attempts: u32,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    /// When a pending delivery is next tried.
    pub next_attempt_at: i64,
    pub finished_at: Option<i64>,
}

#[async_trait::async_trait]
pub trait WebhookStore {
    /// Stores a hook; `None` if the owner's workspace is not theirs.
    async fn create_webhook(&self, hook: NewWebhook<'_>) -> StoreResult<Option<WebhookRecord>>;

    /// The owner's hooks, by creation time (ties in id order).
    async fn webhooks_of(&self, owner: HookOwner<'_>) -> StoreResult<Vec<WebhookRecord>>;

    /// Deletes the owner's hook with its deliveries; returns whether there was one.
    async fn delete_webhook(&self, owner: HookOwner<'_>, id: &str) -> StoreResult<bool>;

    /// Adds, in one transaction, a pending delivery of each event to every hook that subscribes
    /// to its kind and reaches it: the server's hooks, and the hooks its [`Reach`] names. Returns how many were added.
    async fn enqueue_deliveries(&self, events: &[NewEvent]) -> StoreResult<u64>;

    /// Claims up to `limit` pending deliveries due at `now` under `claim` (unique per call) until
    /// `lease_until`: no other claim takes them before then, so a worker that dies holding them
    /// only delays them. Oldest due first.
    async fn claim_deliveries(
        &self,
        claim: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<DueDelivery>>;

    /// Records an attempt of a delivery held under `claim` and releases it; an attempt whose
    /// claim has lapsed and been taken by another changes nothing.
    async fn record_attempt(&self, id: &str, claim: &str, attempt: Attempt<'_>, now: i64) -> StoreResult<()>;

    /// The newest `limit` deliveries of the owner's hook, newest first; `None` if the hook is not
    /// the owner's.
    async fn deliveries_of(
        &self,
        owner: HookOwner<'_>,
        hook_id: &str,
        limit: i64,
    ) -> StoreResult<Option<Vec<DeliveryRecord>>>;

    /// Deletes delivered and given-up deliveries finished before `before`; returns how many.
    async fn prune_deliveries(&self, before: i64) -> StoreResult<u64>;
}

/// The events column: the names between commas, so one `LIKE '%,name,%'` finds a subscriber.
pub(crate) fn events_column(events: &[&str]) -> String {
    format!(",{},", events.join(","))
}

pub(crate) fn webhook_from<R: StoreRow>(row: &R) -> WebhookRecord
where
    for<'a> &'a str: ColumnIndex<R>,
{
    WebhookRecord {
        id: row.text("id"),
        workspace_id: row.opt_text("workspace_id"),
        url: row.text("url"),
        events: row.text("events").split(',').filter(|e| !e.is_empty()).map(str::to_owned).collect(),
        salt: row.text("salt"),
        created_at: row.int("created_at"),
    }
}

pub(crate) fn due_from<R: StoreRow>(row: &R) -> DueDelivery
where
    for<'a> &'a str: ColumnIndex<R>,
{
    DueDelivery {
        id: row.text("id"),
        hook_id: row.text("hook_id"),
        url: row.text("url"),
        salt: row.text("salt"),
        event: row.text("event"),
        body: row.text("body"),
        attempts: u32::try_from(row.int("attempts")).unwrap_or(u32::MAX),
        created_at: row.int("created_at"),
    }
}

pub(crate) fn delivery_from<R: StoreRow>(row: &R) -> DeliveryRecord
where
    for<'a> &'a str: ColumnIndex<R>,
{
    DeliveryRecord {
        id: row.text("id"),
        event: row.text("event"),
        status: row.text("status"),
        attempts: u32::try_from(row.int("attempts")).unwrap_or(u32::MAX),
        last_status: row.opt_int("last_status"),
        last_error: row.opt_text("last_error"),
        created_at: row.int("created_at"),
        next_attempt_at: row.int("next_attempt_at"),
        finished_at: row.opt_int("finished_at"),
    }
}

/// The columns an [`Attempt`] writes: status, last HTTP status, last error, next attempt (kept
/// when `None`), and whether it finished the delivery.
pub(crate) fn attempt_columns(attempt: Attempt<'_>) -> (&'static str, Option<i64>, Option<&str>, Option<i64>, bool) {
    match attempt {
        Attempt::Delivered { status } => ("delivered", Some(i64::from(status)), None, None, true),
        Attempt::Failed { status, error, retry_at: Some(at) } => {
            ("pending", status.map(i64::from), Some(error), Some(at), false)
        }
        Attempt::Failed { status, error, retry_at: None } => ("failed", status.map(i64::from), Some(error), None, true),
    }
}
