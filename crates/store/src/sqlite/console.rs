//! SQLite implementation of [`ConsoleStore`]: the admin console's counts, listings, audit log and
//! live settings.

use super::{SqliteStore, write_error};
use crate::admin::contains_pattern;
use crate::rows::{
    audit_from, device_listing_from, user_summary_from, vault_stats_from, workspace_from, workspace_stats_from,
};
use crate::{
    AuditEntry, AuditQuery, ConsoleStore, DeviceListing, DeviceQuery, NewAuditEntry, Page, Paging, Stats, StoreResult,
    UserQuery, UserSummary, VaultStats, WorkspaceRecord, WorkspaceStats,
};

// Macros rather than consts so that each statement stays one `&'static str` (see accounts.rs).
macro_rules! user_where {
    () => {
        " FROM users u
          WHERE (lower(u.email) LIKE ?1 ESCAPE '\\' OR lower(coalesce(u.username, '')) LIKE ?1 ESCAPE '\\')
            AND (?2 = 'all'
                 OR (?2 = 'active' AND u.confirmed = 1 AND u.blocked = 0)
                 OR (?2 = 'blocked' AND u.blocked = 1)
                 OR (?2 = 'unconfirmed' AND u.confirmed = 0)
                 OR (?2 = 'admin' AND u.is_admin = 1))"
    };
}
macro_rules! device_where {
    () => {
        " FROM devices d JOIN users u ON u.id = d.user_id
          WHERE (?1 IS NULL OR d.user_id = ?1) AND (?2 IS NULL OR d.kind = ?2)
            AND (?3 = 'all' OR (?3 = 'live' AND d.revoked_at IS NULL) OR (?3 = 'revoked' AND d.revoked_at IS NOT NULL))"
    };
}
// Every (user, vault) scope that holds anything: a log, blob references or a paired client.
macro_rules! scopes {
    () => {
        "WITH scopes AS (
             SELECT user_id, vault_id FROM oplog_heads
             UNION SELECT user_id, vault_id FROM blob_refs
             UNION SELECT user_id, vault_id FROM devices WHERE vault_id IS NOT NULL) "
    };
}
macro_rules! audit_where {
    () => {
        " FROM audit_log
          WHERE (?1 IS NULL OR event = ?1)
            AND (?2 IS NULL OR lower(actor) = lower(?2) OR lower(subject) = lower(?2))
            AND (?3 IS NULL OR lower(coalesce(actor, '') || ' ' || coalesce(subject, '') || ' ' || detail || ' '
                                     || coalesce(ip, '')) LIKE ?3 ESCAPE '\\')
            AND (?4 IS NULL OR at >= ?4) AND (?5 IS NULL OR at < ?5)"
    };
}

const DAY_SECS: i64 = 86_400;

#[async_trait::async_trait]
impl ConsoleStore for SqliteStore {
    async fn stats(&self, now: i64) -> StoreResult<Stats> {
        let sql = concat!(
            scopes!(),
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM devices WHERE revoked_at IS NULL),
                    (SELECT count(*) FROM scopes), (SELECT count(*) FROM workspaces), (SELECT count(*) FROM docs),
                    (SELECT count(*) FROM oplog_ops), (SELECT count(*) FROM oplog_ops WHERE pushed_at > ?1),
                    (SELECT coalesce(sum(size), 0) FROM (SELECT max(size) AS size FROM blob_refs GROUP BY sha256) b)"
        );
        let row: (i64, i64, i64, i64, i64, i64, i64, i64) =
            sqlx::query_as(sql).bind(now - DAY_SECS).fetch_one(&self.reader).await?;
        let (users, devices, vaults, workspaces, documents, operations, operations_24h, blob_bytes) = row;
        Ok(Stats { users, devices, vaults, workspaces, documents, operations, operations_24h, blob_bytes })
    }

    async fn list_users(&self, query: &UserQuery, page: Paging) -> StoreResult<Page<UserSummary>> {
        let pattern = contains_pattern(&query.text);
        let sql = concat!(
            "SELECT u.id, u.email, u.username, u.password_hash, u.confirmed, u.blocked, u.is_admin, u.created_at,
                    (SELECT count(*) FROM devices d WHERE d.user_id = u.id AND d.revoked_at IS NULL) AS live_devices,
                    (SELECT max(d.last_seen_at) FROM devices d WHERE d.user_id = u.id) AS last_seen",
            user_where!(),
            " ORDER BY CASE WHEN ?3 = 'newest' THEN u.created_at END DESC,
                       CASE WHEN ?3 = 'oldest' THEN u.created_at END,
                       CASE WHEN ?3 = 'email' THEN u.email END,
                       CASE WHEN ?3 = 'username' THEN lower(u.username) END,
                       u.id
              LIMIT ?4 OFFSET ?5"
        );
        let mut tx = self.reader.begin().await?;
        let rows = sqlx::query(sql)
            .bind(&pattern)
            .bind(query.filter.as_str())
            .bind(query.sort.as_str())
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&mut *tx)
            .await?;
        let total: i64 = sqlx::query_scalar(concat!("SELECT count(*)", user_where!()))
            .bind(&pattern)
            .bind(query.filter.as_str())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        let items = rows.iter().map(user_summary_from).collect();
        Ok(Page { items, total })
    }

    async fn edit_user(&self, user_id: &str, email: &str, username: Option<&str>) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET email = ?2, username = ?3 WHERE id = ?1")
            .bind(user_id)
            .bind(email)
            .bind(username)
            .execute(&self.writer)
            .await
            .map_err(write_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_devices(&self, query: &DeviceQuery, page: Paging) -> StoreResult<Page<DeviceListing>> {
        let kind = query.kind.map(|k| k.as_str());
        let sql = concat!(
            "SELECT d.id AS d_id, d.user_id, d.kind, d.name, d.vault_id, d.client_version,
                    d.created_at AS d_created_at, d.last_seen_at, d.revoked_at, u.email",
            device_where!(),
            " ORDER BY d.last_seen_at DESC, d.id LIMIT ?4 OFFSET ?5"
        );
        let mut tx = self.reader.begin().await?;
        let rows = sqlx::query(sql)
            .bind(&query.user_id)
            .bind(kind)
            .bind(query.state.as_str())
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&mut *tx)
            .await?;
        let total: i64 = sqlx::query_scalar(concat!("SELECT count(*)", device_where!()))
            .bind(&query.user_id)
            .bind(kind)
            .bind(query.state.as_str())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        let items = rows.iter().map(device_listing_from).collect();
        Ok(Page { items, total })
    }

    async fn list_vaults(&self, page: Paging) -> StoreResult<Page<VaultStats>> {
        let sql = concat!(
            scopes!(),
            "SELECT s.user_id, u.email, s.vault_id,
                    (SELECT count(*) FROM oplog_ops o WHERE o.user_id = s.user_id AND o.vault_id = s.vault_id) AS operations,
                    coalesce((SELECT h.head FROM oplog_heads h WHERE h.user_id = s.user_id AND h.vault_id = s.vault_id), 0) AS head,
                    (SELECT count(*) FROM blob_refs b WHERE b.user_id = s.user_id AND b.vault_id = s.vault_id) AS blobs,
                    coalesce((SELECT sum(b.size) FROM blob_refs b WHERE b.user_id = s.user_id AND b.vault_id = s.vault_id), 0) AS blob_bytes,
                    (SELECT count(*) FROM devices d WHERE d.user_id = s.user_id AND d.vault_id = s.vault_id
                         AND d.kind = 'client' AND d.revoked_at IS NULL) AS devices
             FROM scopes s JOIN users u ON u.id = s.user_id
             ORDER BY u.email, s.vault_id LIMIT ?1 OFFSET ?2"
        );
        let mut tx = self.reader.begin().await?;
        let rows = sqlx::query(sql).bind(page.limit).bind(page.offset).fetch_all(&mut *tx).await?;
        let total: i64 =
            sqlx::query_scalar(concat!(scopes!(), "SELECT count(*) FROM scopes")).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        let items = rows.iter().map(vault_stats_from).collect();
        Ok(Page { items, total })
    }

    async fn delete_vault(&self, user_id: &str, vault_id: &str, now: i64) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.writer.begin().await?;
        let clients: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE user_id = ?1 AND vault_id = ?2")
            .bind(user_id)
            .bind(vault_id)
            .fetch_one(&mut *tx)
            .await?;
        let revoked: Vec<String> = sqlx::query_scalar(
            "UPDATE devices SET revoked_at = ?3 WHERE user_id = ?1 AND vault_id = ?2 AND revoked_at IS NULL RETURNING id",
        )
        .bind(user_id)
        .bind(vault_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        // Ops, tombstones and idempotency records hang off the head row (ON DELETE CASCADE).
        let heads = sqlx::query("DELETE FROM oplog_heads WHERE user_id = ?1 AND vault_id = ?2")
            .bind(user_id)
            .bind(vault_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let refs = sqlx::query("DELETE FROM blob_refs WHERE user_id = ?1 AND vault_id = ?2")
            .bind(user_id)
            .bind(vault_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok((clients > 0 || heads > 0 || refs > 0).then_some(revoked))
    }

    async fn list_workspaces(&self, page: Paging) -> StoreResult<Page<WorkspaceStats>> {
        let sql = "SELECT w.id, w.user_id, w.name, w.created_at, u.email,
                    (SELECT count(*) FROM docs d WHERE d.workspace_id = w.id) AS documents,
                    coalesce((SELECT sum(coalesce(length(d.snapshot), 0)) FROM docs d WHERE d.workspace_id = w.id), 0)
                    + coalesce((SELECT sum(length(x.data)) FROM doc_updates x JOIN docs d ON d.id = x.doc_id
                                WHERE d.workspace_id = w.id), 0) AS bytes
             FROM workspaces w JOIN users u ON u.id = w.user_id
             ORDER BY u.email, w.name, w.id LIMIT ?1 OFFSET ?2";
        let mut tx = self.reader.begin().await?;
        let rows = sqlx::query(sql).bind(page.limit).bind(page.offset).fetch_all(&mut *tx).await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM workspaces").fetch_one(&mut *tx).await?;
        tx.commit().await?;
        let items = rows.iter().map(workspace_stats_from).collect();
        Ok(Page { items, total })
    }

    async fn workspace_by_id(&self, workspace_id: &str) -> StoreResult<Option<WorkspaceRecord>> {
        Ok(sqlx::query("SELECT id, user_id, name, created_at FROM workspaces WHERE id = ?1")
            .bind(workspace_id)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(workspace_from))
    }

    async fn append_audit(&self, entry: &NewAuditEntry) -> StoreResult<()> {
        sqlx::query("INSERT INTO audit_log (at, event, actor, subject, detail, ip) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .bind(entry.at)
            .bind(&entry.event)
            .bind(&entry.actor)
            .bind(&entry.subject)
            .bind(&entry.detail)
            .bind(&entry.ip)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn audit_entries(&self, query: &AuditQuery, page: Paging) -> StoreResult<Page<AuditEntry>> {
        let text = query.text.as_deref().filter(|t| !t.is_empty()).map(contains_pattern);
        let sql = concat!(
            "SELECT id, at, event, actor, subject, detail, ip",
            audit_where!(),
            " ORDER BY at DESC, id DESC LIMIT ?6 OFFSET ?7"
        );
        let mut tx = self.reader.begin().await?;
        let rows = sqlx::query(sql)
            .bind(&query.event)
            .bind(&query.user)
            .bind(&text)
            .bind(query.since)
            .bind(query.until)
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&mut *tx)
            .await?;
        let total: i64 = sqlx::query_scalar(concat!("SELECT count(*)", audit_where!()))
            .bind(&query.event)
            .bind(&query.user)
            .bind(&text)
            .bind(query.since)
            .bind(query.until)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Page { items: rows.iter().map(audit_from).collect(), total })
    }

    async fn purge_audit(&self, before: i64) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM audit_log WHERE at < ?1").bind(before).execute(&self.writer).await?.rows_affected())
    }

    async fn live_settings(&self) -> StoreResult<Vec<(String, String)>> {
        Ok(sqlx::query_as("SELECT name, value FROM live_settings ORDER BY name").fetch_all(&self.reader).await?)
    }

    async fn save_live_settings(&self, changes: &[(&str, Option<&str>)], now: i64) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        for (name, value) in changes {
            match value {
                Some(value) => {
                    sqlx::query(
                        "INSERT INTO live_settings (name, value, updated_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    )
                    .bind(name)
                    .bind(value)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM live_settings WHERE name = ?1").bind(name).execute(&mut *tx).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
