//! Two `concord` nodes on one PostgreSQL and one Redis (both started here, thrown away after):
//! real y-websocket providers on different nodes converge live with awareness both ways, event
//! streams hear other nodes' pushes, revocations close sockets on the other node within a second,
//! and nothing is lost when the bus is: not when Redis is killed, not when a message never comes
//! (a node without the bus writes), not when a node is killed. Hocuspocus providers on two nodes
//! share edits, awareness and stateless messages the same way.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, concord_refuses_to_start, eventually};
use crate::hocuspocus_client::HocusSocket;
use crate::oplog_client::{device, op, push};
use crate::yjs_client::{Provider, RawClient};

/// A throwaway `redis-server` on a free loopback port, without persistence. It is killed when
/// this value drops, and, through its lifeline (the shell's stdin), when the test process ends
/// however it ends.
pub struct Redis {
    port: u16,
    process: Option<(Child, ChildStdin, u32)>,
}

impl Redis {
    pub async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Redis { port, process: None };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain connection to it, for a test to talk RESP itself (`bus_limits`).
    pub async fn connect(&self) -> tokio::net::TcpStream {
        tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.unwrap()
    }

    /// Starts it (again) on its port.
    pub async fn restart(&mut self) {
        assert!(self.process.is_none(), "already running");
        let binary = redis_server();
        let script = r#"
            "$1" --port "$2" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
            redis=$!
            echo "$redis"
            read _ignored
            kill -9 "$redis" 2>/dev/null
        "#;
        let mut shell = Command::new("/bin/sh")
            .args(["-c", script, "sh", &binary, &self.port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start redis-server");
        let lifeline = shell.stdin.take().unwrap();
        let mut pid = String::new();
        BufReader::new(shell.stdout.take().unwrap()).read_line(&mut pid).unwrap();
        self.process = Some((shell, lifeline, pid.trim().parse().expect("the shell prints the pid")));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers_ping().await {
            assert!(Instant::now() < deadline, "redis-server did not answer within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no goodbye to its clients beyond what the kernel does.
    pub fn kill9(&mut self) {
        let (mut shell, lifeline, pid) = self.process.take().expect("running");
        let status = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
        assert!(status.success());
        drop(lifeline);
        let _ = shell.wait();
    }

    async fn answers_ping(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else { return false };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut answer = [0u8; 7];
        matches!(tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut answer)).await, Ok(Ok(_)))
            && &answer == b"+PONG\r\n"
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if self.process.is_some() {
            self.kill9();
        }
    }
}

/// The `redis-server` binary, installing Debian's package first if it is missing (as the
/// PostgreSQL support does; its service is not started: only the binary is used).
fn redis_server() -> String {
    let found =
        || Command::new("sh").args(["-c", "command -v redis-server"]).output().ok().filter(|o| o.status.success());
    if let Some(out) = found() {
        return String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "redis-server"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").arg("update").status();
        assert!(install(), "apt-get install redis-server failed");
    }
    String::from_utf8_lossy(&found().expect("redis-server installed").stdout).trim().to_owned()
}

/// A node on `database` with the bus on `redis`, if given.
pub(crate) async fn node(database: &str, redis: Option<&Redis>) -> TestApp {
    let builder = TestApp::builder().env("DATABASE_URL", database);
    match redis {
        Some(redis) => builder.env("REDIS_URL", redis.url()).spawn().await,
        None => builder.spawn().await,
    }
}

/// Two nodes on one fresh database and one Redis, each subscribed to the bus.
pub(crate) async fn two_nodes(redis: &Redis) -> (String, TestApp, TestApp) {
    let database = crate::postgres_cluster::cluster().fresh_database().await;
    let a = node(&database, Some(redis)).await;
    let b = node(&database, Some(redis)).await;
    for n in [&a, &b] {
        n.wait_for_log("subscribed to the bus").await;
    }
    (database, a, b)
}

pub(crate) fn has_text(needles: &[&str]) -> impl FnMut(&Value) -> bool {
    let needles: Vec<String> = needles.iter().map(|s| (*s).to_owned()).collect();
    move |s: &Value| needles.iter().all(|n| s["text"].as_str().unwrap().contains(n.as_str()))
}

#[tokio::test]
async fn providers_on_two_nodes_converge_live_with_awareness_both_ways() {
    let redis = Redis::start().await;
    let (_db, a, b) = two_nodes(&redis).await;
    let alice = a.sign_in("alice@example.com").await;
    let mut on_a = Provider::start(&a, "notes", &alice).await;
    let mut on_b = Provider::start(&b, "notes", &alice).await;
    on_a.synced().await;
    on_b.synced().await;

    // Concurrent edits on both nodes, text and map. Without the bus a node's clients would see
    // the other node's edits only on their next load; these providers stay connected.
    on_a.insert("from-a ").await;
    on_b.insert("from-b ").await;
    on_a.set("a", json!(1)).await;
    on_b.set("b", json!({"nested": true})).await;
    let converged = |s: &Value| {
        let text = s["text"].as_str().unwrap();
        text.contains("from-a") && text.contains("from-b") && s["map"]["a"] == 1 && s["map"]["b"]["nested"] == true
    };
    let state_a = on_a.wait_for(converged).await;
    let state_b = on_b.wait_for(converged).await;
    assert_eq!((&state_a["text"], &state_a["map"]), (&state_b["text"], &state_b["map"]));

    // Awareness crosses both ways, and leaves with its client.
    on_a.awareness(json!({"user": "Alice on A"})).await;
    on_b.awareness(json!({"user": "Bob on B"})).await;
    on_b.wait_for(|s| s["peers"] == json!([{"user": "Alice on A"}])).await;
    on_a.wait_for(|s| s["peers"] == json!([{"user": "Bob on B"}])).await;
    // A provider joining B later hears A's state at once (B's room was open already).
    let mut late = Provider::start(&b, "notes", &alice).await;
    late.wait_for(|s| s["peers"].as_array().unwrap().iter().any(|p| p["user"] == "Alice on A")).await;
    on_a.quit().await;
    on_b.wait_for(|s| s["peers"] == json!([])).await;
    late.wait_for(|s| s["peers"].as_array().unwrap().iter().all(|p| p["user"] != "Alice on A")).await;
    on_b.quit().await;
    late.quit().await;
}

#[tokio::test]
async fn an_event_stream_on_b_announces_a_push_made_on_a() {
    let redis = Redis::start().await;
    let (_db, a, b) = two_nodes(&redis).await;
    let listener = device(&a, "alice", "v").await;
    let pusher = device(&a, "alice", "v").await;
    let mut stream = b.client.get(b.url("/api/v1/sync/events")).bearer_auth(&listener.token).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut received = String::new();
    let mut heads = Vec::new();
    let mut next_head = async || -> i64 {
        loop {
            if let Some(end) = received.find("\n\n") {
                let event: String = received.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str::<Value>(data).unwrap()["server_sequence"].as_i64().unwrap();
                }
                continue;
            }
            // 10 s: B's only way to hear of A's push while the stream stays open is the bus.
            let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await.unwrap().unwrap().unwrap();
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    heads.push(next_head().await);
    push(&a, &pusher, vec![op("1", "e", "create", json!({}), 0), op("2", "e", "update", json!({}), 0)]).await;
    heads.push(next_head().await);
    push(&a, &pusher, vec![op("3", "e", "update", json!({}), 0)]).await;
    heads.push(next_head().await);
    assert_eq!(heads, vec![0, 2, 3], "the current head, then each of A's pushes");
}

#[tokio::test]
async fn a_device_revoked_through_a_closes_its_socket_on_b_within_one_second() {
    let redis = Redis::start().await;
    let (_db, a, b) = two_nodes(&redis).await;
    let token = a.sign_in("alice@example.com").await;
    let other = a.sign_in("alice@example.com").await;
    let mut on_b = RawClient::connect(&b.ws_url(&format!("/sync/notes?token={token}"))).await;
    let mut bystander = RawClient::connect(&b.ws_url(&format!("/sync/notes?token={other}"))).await;
    on_b.pump_for(Duration::from_millis(100)).await;
    assert!(on_b.closed.is_none());

    let started = Instant::now();
    let response = a.client.post(a.url("/auth/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(on_b.closed_code().await, 1008);
    assert!(started.elapsed() < Duration::from_secs(1), "closed after {:?}", started.elapsed());
    bystander.pump_for(Duration::from_millis(200)).await;
    assert!(bystander.closed.is_none(), "the other device's socket on B stays open");
}

#[tokio::test]
async fn with_redis_killed_edits_flow_within_each_node_and_reach_the_other_through_the_database() {
    let mut redis = Redis::start().await;
    let (_db, a, b) = two_nodes(&redis).await;
    let alice = a.sign_in("alice@example.com").await;
    let (mut a1, mut a2) = (Provider::start(&a, "doc", &alice).await, Provider::start(&a, "doc", &alice).await);
    let mut b1 = Provider::start(&b, "doc", &alice).await;
    for p in [&mut a1, &mut a2, &mut b1] {
        p.synced().await;
    }
    a1.insert("before;").await;
    b1.wait_for(has_text(&["before;"])).await;

    redis.kill9();
    for n in [&a, &b] {
        eventually(|| async { n.logs().contains("lost the bus") }).await;
    }
    // During the outage: A's other client gets A's edit at once (same room), and B's client
    // within B's poll of the database (every second while the bus is down), and back again.
    a1.insert("during-a;").await;
    a2.wait_for(has_text(&["during-a;"])).await;
    b1.wait_for(has_text(&["during-a;"])).await;
    b1.insert("during-b;").await;
    a2.wait_for(has_text(&["during-b;"])).await;

    // Redis back: both nodes subscribe again (catching up once more) and edits flow over the bus.
    redis.restart().await;
    for n in [&a, &b] {
        eventually(|| async { n.logs().matches("subscribed to the bus").count() >= 2 }).await;
    }
    b1.insert("after;").await;
    let all = ["before;", "during-a;", "during-b;", "after;"];
    let state = a1.wait_for(has_text(&all)).await;
    assert_eq!(a2.wait_for(has_text(&all)).await["text"], state["text"]);
    assert_eq!(b1.wait_for(has_text(&all)).await["text"], state["text"]);
    for p in [a1, a2, b1] {
        p.quit().await;
    }
}

#[tokio::test]
async fn a_room_that_missed_a_message_catches_up_from_the_database_at_the_next_one() {
    let redis = Redis::start().await;
    let (database, a, b) = two_nodes(&redis).await;
    // A third node on the same database without the bus: its writes are stored and never
    // announced, which is what a lost bus message looks like to B.
    let silent = node(&database, None).await;
    let alice = a.sign_in("alice@example.com").await;
    let mut on_b = RawClient::connect(&b.ws_url(&format!("/sync/doc?token={alice}"))).await;
    on_b.pump_for(Duration::from_millis(100)).await;
    let mut writer = RawClient::connect(&silent.ws_url(&format!("/sync/doc?token={alice}"))).await;
    writer.pump_for(Duration::from_millis(100)).await;
    writer.insert("missed;").await;
    // Stored: a fresh reader on the silent node has it.
    let mut reader = RawClient::connect(&silent.ws_url(&format!("/sync/doc?token={alice}"))).await;
    assert!(reader.pump_until(|c| c.text().contains("missed;")).await);
    // B heard nothing (its room still lacks the update); 1 s is ample for a message that would
    // have come, and no polling runs while the bus is up.
    on_b.pump_for(Duration::from_secs(1)).await;
    assert!(!on_b.text().contains("missed;"), "B heard of a write nobody announced: {}", on_b.text());

    // A's next commit is announced with a seq past B's gap: B reads what it lacks.
    let mut on_a = RawClient::connect(&a.ws_url(&format!("/sync/doc?token={alice}"))).await;
    on_a.pump_for(Duration::from_millis(100)).await;
    on_a.insert("next;").await;
    assert!(on_b.pump_until(|c| c.text().contains("missed;") && c.text().contains("next;")).await, "{}", on_b.text());
}

#[tokio::test]
async fn a_write_acknowledged_on_a_survives_kill_9_of_a_and_b_serves_it() {
    let redis = Redis::start().await;
    let (_db, mut a, b) = two_nodes(&redis).await;
    let alice = a.sign_in("alice@example.com").await;
    let mut writer = Provider::start(&a, "doc", &alice).await;
    let mut witness = Provider::start(&b, "doc", &alice).await;
    writer.synced().await;
    witness.synced().await;
    // Ten edits on A; B's client seeing the last means A committed them all (nothing is relayed
    // before it is stored), and then A dies without a chance to flush anything.
    for n in 0..10 {
        writer.insert(&format!("e{n};")).await;
    }
    let seen = witness.wait_for(has_text(&["e9;"])).await;
    a.kill9().await;
    // A client reconnecting to B (and one new to the document) gets every edit anyone saw, and
    // B keeps serving edits.
    let mut fresh = Provider::start(&b, "doc", &alice).await;
    let state = fresh.wait_for(|s| s["text"] == seen["text"]).await;
    witness.insert("after;").await;
    fresh.wait_for(|s| s["text"].as_str().unwrap().ends_with("after;")).await;
    assert!(state["text"].as_str().unwrap().starts_with("e0;e1;"));
    for p in [writer, witness, fresh] {
        p.quit().await;
    }
}

#[tokio::test]
async fn hocuspocus_providers_on_two_nodes_share_edits_awareness_and_stateless_messages() {
    let redis = Redis::start().await;
    let (_db, a, b) = two_nodes(&redis).await;
    let token = a.sign_in("alice@example.com").await;
    let mut on_a = HocusSocket::start(&a, "").await;
    let mut on_b = HocusSocket::start(&b, "").await;
    for socket in [&mut on_a, &mut on_b] {
        socket.open("shared", &token).await;
        socket.wait_for("shared", |s| s["synced"] == true).await;
    }
    on_a.insert("shared", "from a;").await;
    on_b.insert("shared", "from b;").await;
    on_a.awareness("shared", json!({"name": "on a"})).await;
    let both = |s: &Value| {
        let text = s["text"].as_str().unwrap_or_default();
        text.contains("from a;") && text.contains("from b;")
    };
    let seen_b =
        on_b.wait_for("shared", |s| both(s) && s["peers"].as_array().unwrap().contains(&json!({"name": "on a"}))).await;
    let seen_a = on_a.wait_for("shared", both).await;
    assert_eq!(seen_a["text"], seen_b["text"]);

    // A stateless message reaches the Hocuspocus connection on the other node.
    on_a.command(json!({"op": "stateless", "doc": "shared", "payload": "ping across"})).await;
    let got = on_b.event(|e| e["event"] == "stateless").await;
    assert_eq!((got["doc"].as_str(), got["payload"].as_str()), (Some("shared"), Some("ping across")));
    assert_eq!(on_a.seen.iter().filter(|e| e["event"] == "stateless").count(), 0, "no echo to the sender");
    on_a.quit().await;
    on_b.quit().await;
}

/// Environment, arguments, and what the refusal must say.
type Refusal = (&'static [(&'static str, &'static str)], &'static [&'static str], &'static str);

#[test]
fn a_bad_redis_url_or_one_without_postgresql_stops_startup_naming_it() {
    const POSTGRES: (&str, &str) = ("DATABASE_URL", "postgres://u@localhost/db");
    let cases: [Refusal; 4] = [
        (&[("REDIS_URL", "redis://127.0.0.1:6379")], &[], "needs DATABASE_URL"),
        (&[POSTGRES, ("REDIS_URL", "http://127.0.0.1:6379")], &[], "must start with redis://"),
        (&[POSTGRES], &["--redis-url", "localhost:6379"], "must start with redis://"),
        (&[], &["--redis-url", "redis://127.0.0.1:6379"], "needs DATABASE_URL"),
    ];
    for (envs, args, why) in cases {
        let stderr = concord_refuses_to_start(envs, args);
        assert!(stderr.contains("REDIS_URL") && stderr.contains(why), "{envs:?} {args:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_document_deleted_through_a_closes_its_sockets_on_b_within_a_second_and_b_does_not_recreate_it() {
    let redis = Redis::start().await;
    let (_db, a, b) = two_nodes(&redis).await;
    let alice = a.sign_in("alice@example.com").await;
    let workspace = crate::shares_api::default_workspace(&a, &alice).await;
    let mut typing = RawClient::connect(&b.ws_url(&format!("/sync/notes?token={alice}"))).await;
    typing.insert("doomed;").await;
    let mut reading = RawClient::connect(&b.ws_url(&format!("/sync/notes?token={alice}"))).await;
    assert!(reading.pump_until(|c| c.text() == "doomed;").await, "B's room is open and stored it");

    let started = Instant::now();
    let path = format!("/api/workspaces/{workspace}/docs/notes");
    assert_eq!(a.client.delete(a.url(&path)).bearer_auth(&alice).send().await.unwrap().status(), 204);
    // An edit on B racing the delete's announcement: its append finds the document gone, or the
    // room has closed already; either way the deletion close, never 1011.
    typing.insert("raced;").await;
    for client in [&mut typing, &mut reading] {
        client.closed_code().await;
        assert_eq!(client.closed.clone().unwrap(), (1000, "document deleted".to_owned()));
    }
    assert!(started.elapsed() < Duration::from_secs(1), "closed after {:?}", started.elapsed());
    // Nothing on B brought it back.
    for n in [&a, &b] {
        assert_eq!(n.get_auth(&path, &alice).await.status(), 404);
        let listed = crate::helpers::json(n.get_auth(&format!("/api/workspaces/{workspace}/docs"), &alice).await, 200);
        assert_eq!(listed.await, json!({"documents": []}));
    }
}

#[tokio::test]
async fn blocking_or_deleting_a_user_through_a_closes_their_sockets_and_streams_on_b_within_a_second() {
    let redis = Redis::start().await;
    let database = crate::postgres_cluster::cluster().fresh_database().await;
    let builder = TestApp::builder().env("DATABASE_URL", &database).env("REDIS_URL", redis.url());
    let a = crate::admin_api::with_admin(builder).spawn().await;
    let b = node(&database, Some(&redis)).await;
    for n in [&a, &b] {
        n.wait_for_log("subscribed to the bus").await;
    }
    let admin = crate::admin_api::admin_token(&a).await;
    let user_id = async |email: &str| {
        let users = crate::admin_api::call(&a, "GET", &format!("/admin/api/users?q={email}"), Some(&admin), None).await;
        users.1["items"][0]["id"].as_str().unwrap().to_owned()
    };

    // Blocking: a device's socket and event stream on B.
    let (_, bob) = b.paired_device("bob@example.com", "vault-b").await;
    let mut socket = RawClient::connect(&b.ws_url(&format!("/sync/notes?token={bob}"))).await;
    socket.pump_for(Duration::from_millis(100)).await;
    let stream = b.client.get(b.url("/api/v1/sync/events")).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let started = Instant::now();
    let path = format!("/admin/api/users/{}/block", user_id("bob").await);
    assert_eq!(crate::admin_api::call(&a, "POST", &path, Some(&admin), None).await.0, 200);
    assert_eq!(socket.closed_code().await, 1008);
    crate::oplog_push_pull::ends_within(stream, Duration::from_secs(1).saturating_sub(started.elapsed())).await;
    assert!(started.elapsed() < Duration::from_secs(1), "closed after {:?}", started.elapsed());

    // Deleting: the user's rooms on B, one with an edit racing the delete.
    let alice = b.sign_in("alice@example.com").await;
    let mut typing = RawClient::connect(&b.ws_url(&format!("/sync/notes?token={alice}"))).await;
    typing.insert("doomed;").await;
    let mut reading = RawClient::connect(&b.ws_url(&format!("/sync/notes?token={alice}"))).await;
    assert!(reading.pump_until(|c| c.text() == "doomed;").await, "B's room is open and stored it");
    let path = format!("/admin/api/users/{}", user_id("alice").await);
    let started = Instant::now();
    let password = Some(json!({ "admin_password": crate::helpers::TEST_PASSWORD }));
    let (status, body) = crate::admin_api::call(&a, "DELETE", &path, Some(&admin), password).await;
    assert_eq!(status, 204, "{body}");
    // An edit on B racing the announcements: never 1011. B hears both the workspace's deletion
    // and the devices' revocation, so its sockets close with whichever it acts on first (on A,
    // the node that deletes, rooms close before the delete runs, so always 1000: `admin_api`).
    typing.insert("raced;").await;
    let deleted = (1000, "workspace deleted".to_owned());
    let revoked = (1008, "credentials no longer valid".to_owned());
    for client in [&mut typing, &mut reading] {
        client.closed_code().await;
        let closed = client.closed.clone().unwrap();
        assert!(closed == deleted || closed == revoked, "{closed:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(1), "closed after {:?}", started.elapsed());
    assert_eq!(b.get_auth("/auth/me", &alice).await.status(), 401);
}

#[tokio::test]
async fn a_killed_nodes_awareness_leaves_the_other_nodes_within_seconds_and_a_live_nodes_stays() {
    let redis = Redis::start().await;
    let (database, mut a, b) = two_nodes(&redis).await;
    let c = node(&database, Some(&redis)).await;
    c.wait_for_log("subscribed to the bus").await;
    let alice = a.sign_in("alice@example.com").await;
    let mut on_a = Provider::start(&a, "notes", &alice).await;
    let mut on_b = Provider::start(&b, "notes", &alice).await;
    let mut on_c = Provider::start(&c, "notes", &alice).await;
    for p in [&mut on_a, &mut on_b, &mut on_c] {
        p.synced().await;
    }
    on_a.awareness(json!({"user": "on A"})).await;
    on_c.awareness(json!({"user": "on C"})).await;
    let both = |s: &Value| {
        let peers = s["peers"].as_array().unwrap();
        peers.contains(&json!({"user": "on A"})) && peers.contains(&json!({"user": "on C"}))
    };
    on_b.wait_for(both).await;

    let started = Instant::now();
    a.kill9().await;
    // A's heartbeats stop; B counts three of its own (one a second) and drops A's states. 10 s
    // leaves room for a loaded machine and is far below the 30 s awareness timeout this replaces.
    on_b.wait_for(|s| s["peers"] == json!([{"user": "on C"}])).await;
    assert!(started.elapsed() < Duration::from_secs(10), "A's awareness left after {:?}", started.elapsed());
    on_c.wait_for(|s| s["peers"] == json!([])).await;
    assert!(b.logs().contains("a node fell silent"));
    for p in [on_b, on_c] {
        p.quit().await;
    }
    drop(on_a);
}
