//! The bus under pressure, with two nodes on one PostgreSQL and one Redis: a node whose listener
//! is stalled while the bus floods it holds no more than its bound (it drops and counts the rest)
//! and afterwards catches up from the database, losing nothing.

use std::time::Duration;

use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::bus_nodes::{Redis, node, two_nodes};
use crate::helpers::eventually;
use crate::metrics::scrape;
use crate::yjs_client::RawClient;

/// Sends one RESP command and returns its one-line answer (an integer, `+OK` or an error).
async fn command(redis: &mut BufReader<tokio::net::TcpStream>, args: &[&[u8]]) -> String {
    let mut frame = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        frame.extend_from_slice(arg);
        frame.extend_from_slice(b"\r\n");
    }
    redis.get_mut().write_all(&frame).await.unwrap();
    let mut answer = String::new();
    redis.read_line(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn a_node_stalled_under_a_flood_holds_its_bound_drops_the_rest_and_catches_up() {
    // 96 messages of 1 MiB: six times the 16 MiB a node lets wait (`bus::HEARD_BYTES`), so the
    // unbounded buffering this replaced would have grown the node by all 96 MiB, while the bound
    // allows ~16 MiB plus the reader's buffers; 48 MiB tells the two apart with margin, and the
    // flood passes loopback in about a second.
    const FLOOD: usize = 96;
    const MESSAGE: usize = 1 << 20;
    const MAX_GROWTH_KIB: u64 = 48 << 10;
    let redis = Redis::start().await;
    let mut raw = BufReader::new(redis.connect().await);
    // Redis would otherwise disconnect a subscriber 32 MiB behind: the bound under test is
    // the node's own.
    let unlimited = command(&mut raw, &[b"CONFIG", b"SET", b"client-output-buffer-limit", b"pubsub 0 0 0"]).await;
    assert_eq!(unlimited, "+OK\r\n");
    let (database, a, b) = two_nodes(&redis).await;
    // Writes through a node without the bus are never announced: B learns of them only from the
    // database, so seeing them proves B caught up.
    let silent = node(&database, None).await;
    let alice = a.sign_in("alice@example.com").await;
    let mut on_b = RawClient::connect(&b.ws_url(&format!("/sync/doc?token={alice}"))).await;
    let mut on_a = RawClient::connect(&a.ws_url(&format!("/sync/doc?token={alice}"))).await;
    on_a.insert("before;").await;
    assert!(on_b.pump_until(|c| c.text().contains("before;")).await, "the bus works first");

    // Stall B's listener where a real one waits: on the database, in a catch-up that re-reads
    // the head of a vault an event stream on B watches, while this test holds the heads table.
    let listener = crate::oplog_client::device(&b, "bob", "v").await;
    let stream = b.client.get(b.url("/api/v1/sync/events")).bearer_auth(&listener.token).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut lock = sqlx::PgConnection::connect(&database).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE oplog_heads IN ACCESS EXCLUSIVE MODE").execute(&mut lock).await.unwrap();
    // A `CatchUp` message (format version 1, a sender id that is no node's, kind 7).
    let mut catch_up = vec![1u8];
    catch_up.extend_from_slice(&[0xee; 16]);
    catch_up.push(7);
    command(&mut raw, &[b"PUBLISH", b"concord.docs", &catch_up]).await;
    let watcher = sqlx::PgPool::connect(&database).await.unwrap();
    eventually(|| async {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE NOT granted").fetch_one(&watcher).await.unwrap();
        waiting > 0
    })
    .await;

    let before = b.peak_rss_kib();
    let junk = vec![0u8; MESSAGE];
    for _ in 0..FLOOD {
        assert!(command(&mut raw, &[b"PUBLISH", b"concord.docs", &junk]).await.starts_with(':'));
    }
    // Everything past the bound is dropped as it arrives, while the listener still waits.
    eventually(|| async { scrape(&b).await.sum("concord_bus_received_dropped_total", &[]) >= (FLOOD - 16) as f64 })
        .await;
    let grown = b.peak_rss_kib().saturating_sub(before);
    assert!(grown < MAX_GROWTH_KIB, "B grew by {grown} KiB under a {FLOOD} MiB flood");
    // Edits meanwhile: one announced by A (dropped by B too, its queue being full), one never
    // announced.
    on_a.insert("during-a;").await;
    let mut writer = RawClient::connect(&silent.ws_url(&format!("/sync/doc?token={alice}"))).await;
    writer.insert("during-silent;").await;
    // Stored: a fresh reader on the silent node has it; B, stalled, does not.
    let mut reader = RawClient::connect(&silent.ws_url(&format!("/sync/doc?token={alice}"))).await;
    assert!(reader.pump_until(|c| c.text().contains("during-silent;")).await);
    on_b.pump_for(Duration::from_millis(500)).await;
    assert!(!on_b.text().contains("during-silent;"), "{}", on_b.text());

    // The database answers again: B works through what it kept, hears that it dropped the rest,
    // and catches up with everything it missed.
    sqlx::raw_sql("ROLLBACK").execute(&mut lock).await.unwrap();
    let caught_up =
        on_b.pump_until(|c| ["before;", "during-a;", "during-silent;"].iter().all(|t| c.text().contains(t))).await;
    assert!(caught_up, "{}", on_b.text());
    b.wait_for_log("dropped messages; catching up from the database").await;
    // And the bus carries edits again.
    on_a.insert("after;").await;
    assert!(on_b.pump_until(|c| c.text().contains("after;")).await);
    drop(stream);
}
