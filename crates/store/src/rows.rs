//! Rows to records, once for every backend: each mapping is generic over the driver's row type,
//! so the SQLite and PostgreSQL backends select the same column names and share one reading.

use concord_core::oplog::{PushOp, is_conflict};
use concord_core::share::Access;
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::{
    AuditEntry, Conflict, DeviceKind, DeviceListing, DeviceRecord, DocumentUsage, NewAuditEntry, PullSnapshot,
    ShareRecord, StoreError, StoreResult, StoredOp, TokenKind, UserRecord, UserSummary, VaultStats, VaultUsage,
    WorkspaceRecord, WorkspaceStats, WorkspaceUsage,
};

/// The column types Concord's records use, decodable by the backend of `R`, read by name or, on
/// hot paths whose select list is fixed (a pull's page), by position: sqlx looks a name up in a
/// hash map for every cell.
pub(crate) trait StoreRow: Row
where
    for<'a> &'a str: ColumnIndex<Self>,
{
    fn text<I: ColumnIndex<Self>>(&self, column: I) -> String;
    fn opt_text<I: ColumnIndex<Self>>(&self, column: I) -> Option<String>;
    fn int<I: ColumnIndex<Self>>(&self, column: I) -> i64;
    fn opt_int<I: ColumnIndex<Self>>(&self, column: I) -> Option<i64>;
    fn flag<I: ColumnIndex<Self>>(&self, column: I) -> bool;
}

impl<R: Row> StoreRow for R
where
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text<I: ColumnIndex<Self>>(&self, column: I) -> String {
        self.get(column)
    }
    fn opt_text<I: ColumnIndex<Self>>(&self, column: I) -> Option<String> {
        self.get(column)
    }
    fn int<I: ColumnIndex<Self>>(&self, column: I) -> i64 {
        self.get(column)
    }
    fn opt_int<I: ColumnIndex<Self>>(&self, column: I) -> Option<i64> {
        self.get(column)
    }
    fn flag<I: ColumnIndex<Self>>(&self, column: I) -> bool {
        self.get(column)
    }
}

/// From the columns of `user_columns!` (see the backends' account modules).
pub(crate) fn user_from<R: StoreRow>(row: &R) -> UserRecord
where
    for<'a> &'a str: ColumnIndex<R>,
{
    UserRecord {
        id: row.text("id"),
        email: row.text("email"),
        username: row.opt_text("username"),
        password_hash: row.opt_text("password_hash"),
        confirmed: row.flag("confirmed"),
        blocked: row.flag("blocked"),
        is_admin: row.flag("is_admin"),
        created_at: row.int("created_at"),
    }
}

/// From the columns of `device_columns!`.
pub(crate) fn device_from<R: StoreRow>(row: &R) -> DeviceRecord
where
    for<'a> &'a str: ColumnIndex<R>,
{
    DeviceRecord {
        id: row.text("d_id"),
        user_id: row.text("user_id"),
        kind: DeviceKind::parse(&row.text("kind")),
        name: row.opt_text("name"),
        vault_id: row.opt_text("vault_id"),
        client_version: row.opt_text("client_version"),
        created_at: row.int("d_created_at"),
        last_seen_at: row.int("last_seen_at"),
        revoked_at: row.opt_int("revoked_at"),
    }
}

pub(crate) fn token_kind_from<R: StoreRow>(row: &R) -> TokenKind
where
    for<'a> &'a str: ColumnIndex<R>,
{
    TokenKind::parse(&row.text("token_kind"))
}

pub(crate) fn workspace_from<R: StoreRow>(row: &R) -> WorkspaceRecord
where
    for<'a> &'a str: ColumnIndex<R>,
{
    WorkspaceRecord {
        id: row.text("id"),
        user_id: row.text("user_id"),
        name: row.text("name"),
        created_at: row.int("created_at"),
    }
}

/// The select list of a pull's one statement on every backend (the scope's head row `h`
/// left-joined to its ops `o`), in the order [`pull_snapshot_from`] reads by position.
macro_rules! pull_columns {
    () => {
        "h.head, o.op_id, o.server_sequence, o.device_id, o.entity_type, o.entity_id, o.op_type, o.payload_json, o.created_at"
    };
}
pub(crate) use pull_columns;

/// From the rows of a pull's one statement (columns: [`pull_columns!`]): the scope's head row
/// joined (left) to the page of ops after the cursor, so head and ops come from one snapshot
/// without a transaction around two statements. No head row means a scope that never pushed
/// (head 0, no rows); a head without ops after the cursor is one row whose op columns are NULL.
pub(crate) fn pull_snapshot_from<R: StoreRow>(rows: &[R]) -> PullSnapshot
where
    for<'a> &'a str: ColumnIndex<R>,
    usize: ColumnIndex<R>,
{
    let head = rows.first().map_or(0, |row| row.int(0));
    let ops = rows
        .iter()
        .filter_map(|row| {
            Some(StoredOp {
                server_sequence: row.opt_int(2)?,
                op_id: row.text(1),
                device_id: row.text(3),
                entity_type: row.text(4),
                entity_id: row.text(5),
                op_type: row.text(6),
                payload_json: row.text(7),
                created_at: row.text(8),
            })
        })
        .collect();
    PullSnapshot { head, ops }
}

/// The conflicts among the candidate rows a push's op met (see `concord_core::oplog::is_conflict`):
/// `op_id, device_id, op_type, server_sequence` of later ops on the op's entity.
pub(crate) fn conflicts_from<R: StoreRow>(rows: &[R], pusher_device: &str, op: &PushOp) -> Vec<Conflict>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    rows.iter()
        .filter(|row| is_conflict(pusher_device, &row.text("device_id"), &row.text("op_type")))
        .map(|row| Conflict {
            device_id: row.text("device_id"),
            entity_type: op.entity_type.clone(),
            entity_id: op.entity_id.clone(),
            op_id: row.text("op_id"),
            op_type: row.text("op_type"),
            server_sequence: row.int("server_sequence"),
        })
        .collect()
}

pub(crate) fn share_from<R: StoreRow>(row: &R) -> StoreResult<ShareRecord>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    Ok(ShareRecord {
        id: row.text("id"),
        user_id: row.text("user_id"),
        workspace_id: row.text("workspace_id"),
        doc_name: row.opt_text("doc_name"),
        // The column's CHECK allows only the two spellings.
        access: Access::parse(&row.text("access")).map_err(|e| StoreError::from(sqlx::Error::Decode(Box::new(e))))?,
        created_at: row.int("created_at"),
        expires_at: row.opt_int("expires_at"),
        revoked_at: row.opt_int("revoked_at"),
    })
}

// The usage page's rows (see `sqlite/usage.rs`).

pub(crate) fn vault_usage_from<R: StoreRow>(row: &R) -> VaultUsage
where
    for<'a> &'a str: ColumnIndex<R>,
{
    VaultUsage {
        vault_id: row.text("vault_id"),
        ops: row.int("ops"),
        head: row.int("head"),
        blob_bytes: row.int("blob_bytes"),
    }
}

pub(crate) fn workspace_usage_from<R: StoreRow>(row: &R) -> WorkspaceUsage
where
    for<'a> &'a str: ColumnIndex<R>,
{
    WorkspaceUsage {
        id: row.text("id"),
        name: row.text("name"),
        documents: row.int("documents"),
        bytes: row.int("bytes"),
    }
}

pub(crate) fn document_usage_from<R: StoreRow>(row: &R) -> DocumentUsage
where
    for<'a> &'a str: ColumnIndex<R>,
{
    DocumentUsage { workspace_id: row.text("workspace_id"), name: row.text("name"), bytes: row.int("bytes") }
}

// The admin console's rows (see `sqlite/console.rs`).

pub(crate) fn audit_from<R: StoreRow>(row: &R) -> AuditEntry
where
    for<'a> &'a str: ColumnIndex<R>,
{
    AuditEntry {
        id: row.int("id"),
        entry: NewAuditEntry {
            at: row.int("at"),
            event: row.text("event"),
            actor: row.opt_text("actor"),
            subject: row.opt_text("subject"),
            detail: row.text("detail"),
            ip: row.opt_text("ip"),
        },
    }
}

pub(crate) fn user_summary_from<R: StoreRow>(row: &R) -> UserSummary
where
    for<'a> &'a str: ColumnIndex<R>,
{
    UserSummary { user: user_from(row), devices: row.int("live_devices"), last_seen_at: row.opt_int("last_seen") }
}

pub(crate) fn device_listing_from<R: StoreRow>(row: &R) -> DeviceListing
where
    for<'a> &'a str: ColumnIndex<R>,
{
    DeviceListing { device: device_from(row), email: row.text("email") }
}

pub(crate) fn vault_stats_from<R: StoreRow>(row: &R) -> VaultStats
where
    for<'a> &'a str: ColumnIndex<R>,
{
    VaultStats {
        user_id: row.text("user_id"),
        email: row.text("email"),
        vault_id: row.text("vault_id"),
        operations: row.int("operations"),
        head: row.int("head"),
        blobs: row.int("blobs"),
        blob_bytes: row.int("blob_bytes"),
        devices: row.int("devices"),
    }
}

pub(crate) fn workspace_stats_from<R: StoreRow>(row: &R) -> WorkspaceStats
where
    for<'a> &'a str: ColumnIndex<R>,
{
    WorkspaceStats {
        workspace: workspace_from(row),
        email: row.text("email"),
        documents: row.int("documents"),
        bytes: row.int("bytes"),
    }
}
