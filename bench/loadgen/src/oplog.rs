//! O1, the operation log: Concord's REST push and pull (`/api/v1/sync/push`, `/api/v1/sync/pull`)
//! under D devices pushing batches concurrently, and beside it "the limit": the same rows written
//! straight into SQLite with the same durability, by the simplest program that could do it.
//!
//! Correctness, every run: each push must acknowledge its whole batch, and the pull must return
//! every acknowledged op exactly once with sequences 1..N, so a server that drops or duplicates ops
//! cannot look fast.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::task::JoinSet;

/// Ops per push request and per transaction of the limit program.
pub const BATCH: usize = 100;
/// Ops per pull page: the server's maximum (`MAX_PULL_PAGE`).
const PAGE: usize = 100;
/// Created-at of every op: a fixed client clock, the server stores it as given.
const CREATED_AT: &str = "2026-07-10T00:00:00Z";

/// One op of device `d`, number `k`: about the size of a note's metadata update.
fn op(d: usize, k: usize) -> (String, String, String) {
    let entity = format!("notes/d{d}/n{}.md", k % 500);
    let payload = json!({ "path": entity, "content": format!("note {k} of device {d}"), "mtime": k }).to_string();
    (format!("d{d}-op{k}"), entity, payload)
}

/// The body of a push from `device` (number `d`) of its ops numbered `ops`.
pub fn push_body(device: &Device, d: usize, ops: std::ops::Range<usize>) -> Value {
    let ops: Vec<Value> = ops
        .map(|k| {
            let (op_id, entity_id, payload_json) = op(d, k);
            json!({
                "op_id": op_id, "entity_type": "file", "entity_id": entity_id, "op_type": "update",
                "payload_json": payload_json, "client_sequence": k, "last_seen_server_seq": 0,
                "created_at": CREATED_AT,
            })
        })
        .collect();
    json!({ "device_id": device.id, "ops": ops })
}

pub struct Device {
    pub id: String,
    pub token: String,
}

/// Pairings at once: each checks the password (Argon2, on the server's blocking threads), so a
/// few keep both cores busy without queueing hundreds of requests.
const PAIR_CONCURRENCY: usize = 4;

/// Registers one account (dev mode returns the confirmation link) and pairs one device into each
/// of `vaults` (names may repeat: several devices of one vault).
pub async fn devices(http: &reqwest::Client, base: &str, vaults: &[String]) -> Result<Vec<Device>> {
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros();
    let username = format!("lg{nonce}");
    let password = "bench-password-123";
    let registered = post(
        http,
        base,
        "/api/v1/auth/register",
        None,
        &json!({
            "username": username, "email": format!("{username}@example.com"), "password": password,
        }),
    )
    .await?;
    let link = registered["dev_link"].as_str().context("no dev_link: is CONCORD_MAIL=dev set?")?;
    let token = link.split_once("token=").context("no token in dev_link")?.1.split('&').next().unwrap_or_default();
    post(http, base, "/api/v1/auth/confirm", None, &json!({ "token": token })).await?;
    let username = &username;
    stream::iter(vaults.iter().enumerate())
        .map(|(d, vault)| async move {
            let body = json!({
                "login": username, "password": password, "device_name": format!("loadgen-{d}"),
                "client_version": "loadgen", "vault_id": vault,
            });
            let paired = post(http, base, "/api/client/pair", None, &body).await?;
            Ok::<_, anyhow::Error>(Device {
                id: paired["device_id"].as_str().context("device_id")?.to_owned(),
                token: paired["device_token"].as_str().context("device_token")?.to_owned(),
            })
        })
        .buffered(PAIR_CONCURRENCY)
        .try_collect()
        .await
}

/// Pairs one device of a fresh account (B1 uploads blobs with it); its bearer token.
pub async fn device_token(http: &reqwest::Client, base: &str) -> Result<String> {
    Ok(devices(http, base, &["bench-vault".to_owned()]).await?.remove(0).token)
}

pub async fn post(http: &reqwest::Client, base: &str, path: &str, token: Option<&str>, body: &Value) -> Result<Value> {
    let mut request = http.post(format!("{base}{path}")).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("POST {path}"))?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.is_success(), "POST {path}: {status} {text}");
    Ok(serde_json::from_str(&text)?)
}

/// Pushes from `device_count` devices at once, each one request of [`BATCH`] ops at a time, until
/// each made `pushes` requests or `seconds` passed; then pulls the whole log in pages.
pub async fn run(base: &str, device_count: usize, pushes: usize, seconds: f64) -> Result<Value> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let devs = devices(&http, base, &vec!["bench-vault".to_owned(); device_count]).await?;
    let puller = devs[0].token.clone();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut pushing = JoinSet::new();
    for (d, device) in devs.into_iter().enumerate() {
        let (http, base) = (http.clone(), base.to_owned());
        pushing.spawn(async move {
            let mut latencies = Vec::new();
            for n in 0..pushes {
                if Instant::now() >= deadline {
                    break;
                }
                let body = push_body(&device, d, n * BATCH..(n + 1) * BATCH);
                let t0 = Instant::now();
                let answer = post(&http, &base, "/api/v1/sync/push", Some(&device.token), &body).await?;
                latencies.push(t0.elapsed());
                ensure!(answer["count"] == BATCH, "push acknowledged {} of {BATCH} ops", answer["count"]);
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = pushing.join_next().await {
        latencies.append(&mut joined??);
    }
    let push_s = started.elapsed().as_secs_f64();
    let committed = latencies.len() * BATCH;
    latencies.sort_unstable();

    let started = Instant::now();
    let (mut since, mut pulled, mut gap_free) = (0i64, 0usize, true);
    let mut seen = HashSet::with_capacity(committed);
    loop {
        let page = post(
            &http,
            base,
            "/api/v1/sync/pull",
            Some(&puller),
            &json!({ "since_sequence": since, "page_limit": PAGE }),
        )
        .await?;
        let ops = page["ops"].as_array().context("ops")?;
        for op in ops {
            let sequence = op["server_sequence"].as_i64().context("server_sequence")?;
            gap_free &= sequence == since + 1;
            since = sequence;
            seen.insert(op["op_id"].as_str().context("op_id")?.to_owned());
            pulled += 1;
        }
        if page["has_more"] != true || ops.is_empty() {
            break;
        }
        if pulled > committed {
            bail!("pulled more ops ({pulled}) than were committed ({committed})");
        }
    }
    let pull_s = started.elapsed().as_secs_f64();
    let ok = gap_free && pulled == committed && seen.len() == committed;
    eprintln!(
        "  [loadgen] o1 {committed} ops pushed in {push_s:.1} s, {pulled} pulled in {pull_s:.2} s: {}",
        if ok { "complete and gap-free" } else { "MISMATCH" }
    );
    let ms = |q: f64| latencies.get(((q * latencies.len() as f64) as usize).min(latencies.len().saturating_sub(1)));
    Ok(json!({
        "scenario": "o1",
        "devices": device_count,
        "batch": BATCH,
        "ops_committed": committed,
        "push_ops_per_s": committed as f64 / push_s,
        "push_p50_ms": ms(0.5).map(|d| d.as_secs_f64() * 1e3),
        "push_p99_ms": ms(0.99).map(|d| d.as_secs_f64() * 1e3),
        "ops_pulled": pulled,
        "pull_ops_per_s": pulled as f64 / pull_s,
        "page": PAGE,
        "converged": ok,
    }))
}

/// The limit: the rows Concord stores for those pushes (its `oplog_ops` columns, unique keys and
/// index), written by one connection with Concord's durability (WAL, `synchronous=FULL`), one
/// transaction per batch of [`BATCH`]: one multi-row `INSERT` and the head update, then the
/// commit's fsync. Then the same pull: pages of [`PAGE`] by sequence.
pub async fn limit(dir: &Path, rows: usize) -> Result<Value> {
    let path = dir.join("limit.db");
    let mut db = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await?;
    for ddl in [
        "CREATE TABLE oplog_heads (user_id TEXT NOT NULL, vault_id TEXT NOT NULL, head INTEGER NOT NULL,
            PRIMARY KEY (user_id, vault_id)) WITHOUT ROWID",
        "CREATE TABLE oplog_ops (user_id TEXT NOT NULL, vault_id TEXT NOT NULL, server_sequence INTEGER NOT NULL,
            op_id TEXT NOT NULL, device_id TEXT NOT NULL, entity_type TEXT NOT NULL, entity_id TEXT NOT NULL,
            op_type TEXT NOT NULL, payload_json TEXT NOT NULL, client_sequence INTEGER NOT NULL,
            last_seen_server_seq INTEGER NOT NULL, created_at TEXT NOT NULL, pushed_at INTEGER NOT NULL,
            UNIQUE (user_id, vault_id, server_sequence), UNIQUE (user_id, vault_id, op_id))",
        "CREATE INDEX oplog_ops_by_entity ON oplog_ops(user_id, vault_id, entity_type, entity_id, server_sequence)",
        "INSERT INTO oplog_heads VALUES ('u', 'v', 0)",
    ] {
        sqlx::query(ddl).execute(&mut db).await?;
    }
    let values = vec!["('u', 'v', ?, ?, 'dev', 'file', ?, 'update', ?, ?, 0, ?, 0)"; BATCH].join(", ");
    let insert = format!(
        "INSERT INTO oplog_ops (user_id, vault_id, server_sequence, op_id, device_id, entity_type, entity_id,
            op_type, payload_json, client_sequence, last_seen_server_seq, created_at, pushed_at) VALUES {values}"
    );
    let batches = rows.div_ceil(BATCH);
    let started = Instant::now();
    for b in 0..batches {
        let mut tx = db.begin().await?;
        // Built from constants only (the placeholder list): nothing from outside reaches the SQL.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(insert.as_str()));
        for k in b * BATCH..(b + 1) * BATCH {
            let (op_id, entity_id, payload) = op(k % 8, k);
            query = query.bind(k as i64 + 1).bind(op_id).bind(entity_id).bind(payload).bind(k as i64).bind(CREATED_AT);
        }
        query.execute(&mut *tx).await?;
        sqlx::query("UPDATE oplog_heads SET head = ? WHERE user_id = 'u' AND vault_id = 'v'")
            .bind(((b + 1) * BATCH) as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    let push_s = started.elapsed().as_secs_f64();
    let written = batches * BATCH;

    let started = Instant::now();
    let (mut since, mut pulled) = (0i64, 0usize);
    loop {
        let page = sqlx::query(
            "SELECT op_id, server_sequence, device_id, entity_type, entity_id, op_type, payload_json, created_at
             FROM oplog_ops WHERE user_id = 'u' AND vault_id = 'v' AND server_sequence > ? ORDER BY server_sequence LIMIT ?",
        )
        .bind(since)
        .bind(PAGE as i64)
        .fetch_all(&mut db)
        .await?;
        let Some(last) = page.last() else { break };
        since = last.get("server_sequence");
        pulled += page.len();
    }
    let pull_s = started.elapsed().as_secs_f64();
    ensure!(pulled == written, "the limit program read {pulled} of {written} rows");
    Ok(json!({
        "scenario": "o1-limit",
        "batch": BATCH,
        "rows": written,
        "push_rows_per_s": written as f64 / push_s,
        "pull_rows_per_s": pulled as f64 / pull_s,
        "page": PAGE,
        "converged": true,
    }))
}
