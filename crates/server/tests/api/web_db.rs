//! What the database holds, as one comparable value: tests that a refused request "changes
//! nothing" compare it before and after, whatever tables a route touches.

use crate::helpers::TestApp;

/// Every row of every table but the audit log, each as SQLite's `quote()` of its columns, in rowid
/// or key order.
pub async fn snapshot(app: &TestApp) -> Vec<String> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}?mode=ro", app.db_path().display())).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        // Not the audit log: its entries are appended by a background task after the action they
        // describe commits, so one may land while a later request is being checked (a refused
        // request never reaches a handler, so it writes none).
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'audit_log'
         ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut rows = Vec::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
            .bind(&table)
            .fetch_all(&pool)
            .await
            .unwrap();
        let row = columns.iter().map(|c| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || ',' || ");
        // Test-only SQL over names read from the schema itself.
        let sql = format!("SELECT '{table}:' || {row} AS r FROM \"{table}\" ORDER BY r");
        let table_rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await.unwrap();
        rows.extend(table_rows);
    }
    pool.close().await;
    rows
}
