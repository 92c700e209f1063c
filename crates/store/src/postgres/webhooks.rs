//! PostgreSQL implementation of [`WebhookStore`]: the SQLite statements in PostgreSQL's spelling.

use super::{PgStore, write_error};
use crate::webhooks::{attempt_columns, delivery_from, due_from, events_column, webhook_from};
use crate::{
    Attempt, DeliveryRecord, DueDelivery, HookOwner, NewEvent, NewWebhook, StoreResult, WebhookRecord, WebhookStore,
};

/// The hooks of an owner, binding `(user_id, workspace_id)` as $1 and $2 (both NULL: the server's).
/// A macro, for `concat!`: sqlx takes only static SQL.
macro_rules! owned {
    () => {
        "(($1::text IS NULL AND user_id IS NULL) OR (user_id = $1 AND workspace_id = $2))"
    };
}

#[async_trait::async_trait]
impl WebhookStore for PgStore {
    async fn create_webhook(&self, hook: NewWebhook<'_>) -> StoreResult<Option<WebhookRecord>> {
        let (user_id, workspace_id) = hook.owner.columns();
        // The ownership check and the insert are one statement, as for shares.
        let row = sqlx::query(
            "INSERT INTO webhooks (id, user_id, workspace_id, url, events, salt, created_at)
             SELECT $3, $1, $2, $4, $5, $6, $7
             WHERE $1::text IS NULL OR EXISTS (SELECT 1 FROM workspaces WHERE id = $2 AND user_id = $1)
             RETURNING id, workspace_id, url, events, salt, created_at",
        )
        .bind(user_id)
        .bind(workspace_id)
        .bind(hook.id)
        .bind(hook.url)
        .bind(events_column(hook.events))
        .bind(hook.salt)
        .bind(hook.now)
        .fetch_optional(&self.pool)
        .await
        .map_err(write_error)?;
        Ok(row.as_ref().map(webhook_from))
    }

    async fn webhooks_of(&self, owner: HookOwner<'_>) -> StoreResult<Vec<WebhookRecord>> {
        let (user_id, workspace_id) = owner.columns();
        let sql = concat!(
            "SELECT id, workspace_id, url, events, salt, created_at FROM webhooks WHERE ",
            owned!(),
            " ORDER BY created_at, id"
        );
        let rows = sqlx::query(sql).bind(user_id).bind(workspace_id).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(webhook_from).collect())
    }

    async fn delete_webhook(&self, owner: HookOwner<'_>, id: &str) -> StoreResult<bool> {
        let (user_id, workspace_id) = owner.columns();
        let sql = concat!("DELETE FROM webhooks WHERE id = $3 AND ", owned!());
        let done = sqlx::query(sql)
            .bind(user_id)
            .bind(workspace_id)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(write_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn enqueue_deliveries(&self, events: &[NewEvent]) -> StoreResult<u64> {
        let mut tx = self.write().await?;
        let mut added = 0;
        for event in events {
            let (workspace_id, user_id) = event.reach.columns();
            let done = sqlx::query(
                "INSERT INTO webhook_deliveries (id, hook_id, event, body, status, created_at, next_attempt_at)
                 SELECT $1::text || '.' || h.id, h.id, $2, $3, 'pending', $4, $4 FROM webhooks h
                 WHERE h.events LIKE '%,' || $2::text || ',%'
                   AND (h.user_id IS NULL OR h.workspace_id = $5 OR ($5::text IS NULL AND h.user_id = $6))",
            )
            .bind(&event.id)
            .bind(event.kind)
            .bind(&event.body)
            .bind(event.now)
            .bind(workspace_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
            added += done.rows_affected();
        }
        tx.commit().await.map_err(write_error)?;
        Ok(added)
    }

    async fn claim_deliveries(
        &self,
        claim: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<DueDelivery>> {
        let mut tx = self.write().await?;
        // The outer condition is checked again on each row, so of two claimers the later skips
        // what the earlier took: READ COMMITTED re-reads a row another claim changed.
        sqlx::query(
            "UPDATE webhook_deliveries SET claim = $1, next_attempt_at = $3
             WHERE status = 'pending' AND next_attempt_at <= $2 AND id IN (
                 SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $2
                 ORDER BY next_attempt_at, id LIMIT $4)",
        )
        .bind(claim)
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        let rows = sqlx::query(
            "SELECT d.id, d.hook_id, h.url, h.salt, d.event, d.body, d.attempts, d.created_at
             FROM webhook_deliveries d JOIN webhooks h ON h.id = d.hook_id
             WHERE d.claim = $1 AND d.status = 'pending' ORDER BY d.created_at, d.id",
        )
        .bind(claim)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await.map_err(write_error)?;
        Ok(rows.iter().map(due_from).collect())
    }

    async fn record_attempt(&self, id: &str, claim: &str, attempt: Attempt<'_>, now: i64) -> StoreResult<()> {
        let (status, last_status, last_error, retry_at, finished) = attempt_columns(attempt);
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, status = $3, last_status = $4, last_error = $5,
                 next_attempt_at = COALESCE($6, next_attempt_at), finished_at = $7, claim = NULL
             WHERE id = $1 AND claim = $2",
        )
        .bind(id)
        .bind(claim)
        .bind(status)
        .bind(last_status)
        .bind(last_error)
        .bind(retry_at)
        .bind(finished.then_some(now))
        .execute(&self.pool)
        .await
        .map_err(write_error)?;
        Ok(())
    }

    async fn deliveries_of(
        &self,
        owner: HookOwner<'_>,
        hook_id: &str,
        limit: i64,
    ) -> StoreResult<Option<Vec<DeliveryRecord>>> {
        let (user_id, workspace_id) = owner.columns();
        let mut tx = self.snapshot().await?;
        let sql = concat!("SELECT id FROM webhooks WHERE id = $3 AND ", owned!());
        let hook = sqlx::query(sql).bind(user_id).bind(workspace_id).bind(hook_id).fetch_optional(&mut *tx).await?;
        if hook.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT id, event, status, attempts, last_status, last_error, created_at, next_attempt_at, finished_at
             FROM webhook_deliveries WHERE hook_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(hook_id)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        Ok(Some(rows.iter().map(delivery_from).collect()))
    }

    async fn prune_deliveries(&self, before: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND finished_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(write_error)?;
        Ok(done.rows_affected())
    }
}
