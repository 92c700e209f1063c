//! The maintenance jobs, each observed from outside with its interval lowered to a second: the
//! WAL checkpoint empties the log, day-old idempotency keys stop replaying, idle documents are
//! compacted while their clients stay connected, and every run is counted in `/metrics`.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestApp, eventually};
use crate::metrics::scrape;
use crate::oplog_client::{device, op, push};
use crate::yjs_client::RawClient;

/// One second: each test sees several runs within its deadline on a loaded machine.
async fn app_with_fast_jobs() -> TestApp {
    TestApp::builder().env("CONCORD_MAINTENANCE_INTERVAL_SECS", "1").spawn().await
}

async fn runs(app: &TestApp, job: &str) -> f64 {
    scrape(app).await.sum("concord_maintenance_runs_total", &[("job", job), ("outcome", "ok")])
}

fn wal_size(app: &TestApp) -> u64 {
    let mut wal = app.db_path().into_os_string();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn the_wal_checkpoint_truncates_the_log_after_writes() {
    let app = app_with_fast_jobs().await;
    let d = device(&app, "alice", "v").await;
    // Writes until the log is seen holding them (a checkpoint may run between two writes). The
    // run count is read before each write, so a checkpoint already in flight then, which may
    // empty the log before it is looked at, is not the one this test waits for.
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + crate::helpers::DEADLINE;
    let mut checkpoints;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "the WAL never grew");
        checkpoints = runs(&app, "wal_checkpoint").await;
        n += 1;
        push(&app, &d, vec![op(&format!("o{n}"), "e", "create", json!({"n": n}), 0)]).await;
        if wal_size(&app) > 0 {
            break;
        }
    }
    // SQLite's own checkpoints reuse the log but never shrink the file; only TRUNCATE does.
    eventually(|| async { wal_size(&app) == 0 && runs(&app, "wal_checkpoint").await > checkpoints }).await;
    assert_eq!(scrape(&app).await.sum("concord_database_wal_size_bytes", &[]), 0.0, "the gauge reads the file");
}

#[tokio::test]
async fn idempotency_keys_older_than_the_retention_stop_replaying() {
    // A 3 s retention with the jobs every second: a key ages out within seconds, and one pushed
    // just now is still remembered a moment later on a loaded machine.
    let app = TestApp::builder()
        .env("CONCORD_MAINTENANCE_INTERVAL_SECS", "1")
        .env("OPLOG_IDEMPOTENCY_RETENTION_SECS", "3")
        .spawn()
        .await;
    let d = device(&app, "alice", "v").await;
    let push_keyed = |key: &'static str, id: String| {
        let body =
            json!({"device_id": d.device_id, "idempotency_key": key, "ops": [op(&id, "e", "create", json!({}), 0)]});
        let (app, token) = (&app, d.token.clone());
        async move {
            let answer: serde_json::Value =
                app.post_auth("/api/v1/sync/push", &token, &body).await.json().await.unwrap();
            answer["accepted"].clone()
        }
    };
    assert_eq!(push_keyed("k-old", "o1".to_owned()).await, json!(["o1"]));
    // Replayed (the first push's answer, nothing stored) until the job forgets the key; then the
    // same key is a new push.
    let mut tries = 0;
    eventually(|| {
        tries += 1;
        let id = format!("retry-{tries}");
        let answer = push_keyed("k-old", id.clone());
        async move { answer.await == json!([id]) }
    })
    .await;
    assert!(runs(&app, "idempotency_keys").await >= 1.0);
    // A young key still replays: the retry stores nothing new.
    assert_eq!(push_keyed("k-new", "o2".to_owned()).await, json!(["o2"]));
    assert_eq!(push_keyed("k-new", "o3".to_owned()).await, json!(["o2"]));
}

/// Rows after the snapshot, and whether there is a snapshot, for the document `name`.
async fn stored(app: &TestApp, name: &str) -> (i64, bool) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}?mode=ro", app.db_path().display())).await.unwrap();
    let row: (i64, bool) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM doc_updates u WHERE u.doc_id = d.id), d.snapshot IS NOT NULL
         FROM docs d WHERE d.name = ?1",
    )
    .bind(name)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    row
}

#[tokio::test]
async fn an_open_document_idle_for_an_interval_is_compacted_and_still_serves() {
    let app = app_with_fast_jobs().await;
    let session = app.sign_in("bob@example.com").await;
    let url = app.ws_url(&format!("/sync/journal?token={session}"));
    let mut writer = RawClient::connect(&url).await;
    writer.insert("first ").await;
    writer.insert("second").await;
    // A second client seeing the edits proves they are stored (nothing is relayed unstored).
    let mut witness = RawClient::connect(&url).await;
    assert!(witness.pump_until(|c| c.text() == "first second").await);

    // Far below the size threshold (1 MiB), yet compacted once idle, with both clients connected.
    eventually(|| async { stored(&app, "journal").await == (0, true) }).await;
    assert!(scrape(&app).await.sum("concord_yjs_compactions_total", &[]) >= 1.0);
    assert!(runs(&app, "idle_compaction").await >= 1.0);
    assert_eq!(scrape(&app).await.sum("concord_websockets_open", &[]), 2.0);

    // The compacted document goes on: a new edit reaches the witness and a newcomer gets it all.
    writer.insert(" third").await;
    assert!(witness.pump_until(|c| c.text() == "first second third").await);
    let mut newcomer = RawClient::connect(&url).await;
    assert!(newcomer.pump_until(|c| c.text() == "first second third").await);
    drop((writer, witness, newcomer));
}

#[tokio::test]
async fn a_busy_document_is_not_compacted_as_idle() {
    // Two seconds here: a write every 200 ms leaves a loaded machine 1.8 s of slack.
    let app = TestApp::builder().env("CONCORD_MAINTENANCE_INTERVAL_SECS", "2").spawn().await;
    let session = app.sign_in("carol@example.com").await;
    let url = app.ws_url(&format!("/sync/busy?token={session}"));
    let mut writer = RawClient::connect(&url).await;
    // Edits every 200 ms for 5 s: never a whole interval without a write.
    let started = tokio::time::Instant::now();
    let mut compacted_while_busy = false;
    while started.elapsed() < Duration::from_secs(5) {
        writer.insert("x").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (updates, snapshot) = stored(&app, "busy").await;
        compacted_while_busy |= snapshot || updates == 0;
    }
    assert!(runs(&app, "idle_compaction").await >= 2.0, "the job ran meanwhile");
    assert!(!compacted_while_busy, "a document written to within the interval was compacted");
}

#[tokio::test]
async fn unreferenced_blob_files_are_collected_and_their_bytes_counted() {
    // A blob file no scope references (say, its scope was deleted while the server was down),
    // next to a referenced one uploaded through the API.
    let data_dir = tempfile::tempdir().unwrap();
    let orphan = vec![3u8; 4096];
    let sha = crate::oplog_client::sha256_hex(&orphan);
    let path = data_dir.path().join("blobs").join(&sha[0..2]).join(&sha[2..4]).join(&sha);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &orphan).unwrap();

    // The collector runs at start, then hourly.
    let app = TestApp::builder().data_dir(data_dir.path()).spawn().await;
    eventually(|| async { !path.exists() }).await;
    eventually(|| async { runs(&app, "blob_collection").await >= 1.0 }).await;
    assert_eq!(scrape(&app).await.sum("concord_blob_reclaimed_bytes_total", &[]), 4096.0);
    let d = device(&app, "alice", "v").await;
    let kept = crate::oplog_client::upload(&app, &d, b"referenced").await;
    crate::oplog_client::download_verified(&app, &d, &kept, 10).await;
}
