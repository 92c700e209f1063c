//! `GET /metrics`: strict Prometheus text whose series move with real traffic (op-log push and
//! pull, Yjs edits, blobs, event streams, mail, rate limits), and the loopback-or-token rule.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;

use crate::helpers::{DEADLINE, TestApp, eventually, json as json_of};
use crate::oplog_client::{device, download_verified, op, pull_all, push, upload};
use crate::smtp_sink::SmtpSink;
use crate::yjs_client::RawClient;

/// One sample: metric name and its labels, sorted.
type Key = (String, BTreeMap<String, String>);

/// The samples of a scrape, parsed strictly: every line is a `# HELP`, a `# TYPE` or a sample of
/// a family whose type was declared before it, with valid names, quoted and escaped label values
/// and a float value; a histogram's buckets carry `le`. Panics on anything else.
pub struct Scrape(BTreeMap<Key, f64>);

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (kind, name, value) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or(""));
                assert!(valid_name(name), "bad metric name in {line:?}");
                match kind {
                    "HELP" => {}
                    "TYPE" => {
                        assert!(
                            ["counter", "gauge", "histogram", "summary", "untyped"].contains(&value),
                            "bad type in {line:?}"
                        );
                        assert!(types.insert(name.to_owned(), value.to_owned()).is_none(), "type twice: {line:?}");
                    }
                    _ => panic!("unknown comment {line:?}"),
                }
                continue;
            }
            let (key, value) = parse_sample(line);
            let family = family_of(&key.0, &types).unwrap_or_else(|| panic!("sample before its TYPE: {line:?}"));
            if types[family] == "histogram" && key.0.ends_with("_bucket") {
                assert!(key.1.contains_key("le"), "bucket without le: {line:?}");
            }
            if types[family] == "counter" {
                assert!(family.ends_with("_total"), "counter without _total: {line:?}");
                assert!(value >= 0.0, "negative counter: {line:?}");
            }
            assert!(samples.insert(key, value).is_none(), "sample twice: {line:?}");
        }
        Scrape(samples)
    }

    /// The sum of every sample of `name` whose labels include `labels` (0 when there is none:
    /// a series appears at its first increment).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|((n, l), _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, v)| v)
            .sum()
    }

    /// Every label value `label` takes on samples of `name`.
    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.0.keys().filter(|(n, _)| n == name).filter_map(|(_, l)| l.get(label).cloned()).collect()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to: itself, or a histogram/summary's `_bucket`/`_sum`/`_count`.
fn family_of<'a>(name: &str, types: &'a BTreeMap<String, String>) -> Option<&'a String> {
    types.get_key_value(name).map(|(k, _)| k).or_else(|| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find_map(|base| types.get_key_value(base).filter(|(_, t)| *t == "histogram" || *t == "summary"))
            .map(|(k, _)| k)
    })
}

fn parse_sample(line: &str) -> (Key, f64) {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line:?}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "bad sample name: {line:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut i = 0;
        loop {
            if let Some(after) = inner[i..].strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = inner[i..].find("=\"").unwrap_or_else(|| panic!("bad label in {line:?}")) + i;
            let label = &inner[i..eq];
            assert!(valid_name(label) && !label.contains(':'), "bad label name in {line:?}");
            let mut value = String::new();
            i = eq + 2;
            loop {
                let c = inner[i..].chars().next().unwrap_or_else(|| panic!("unterminated label in {line:?}"));
                i += c.len_utf8();
                match c {
                    '"' => break,
                    '\\' => {
                        let escaped = inner[i..].chars().next().unwrap_or_else(|| panic!("bad escape in {line:?}"));
                        i += escaped.len_utf8();
                        value.push(match escaped {
                            'n' => '\n',
                            '\\' => '\\',
                            '"' => '"',
                            other => panic!("bad escape \\{other} in {line:?}"),
                        });
                    }
                    c => value.push(c),
                }
            }
            assert!(labels.insert(label.to_owned(), value).is_none(), "label twice in {line:?}");
            if inner[i..].starts_with(',') {
                i += 1;
            } else {
                assert!(inner[i..].starts_with('}'), "labels not separated in {line:?}");
            }
        }
    }
    let mut fields = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no space before value: {line:?}")).split(' ');
    let value = fields.next().unwrap();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
    }
    assert!(fields.next().is_none(), "trailing fields: {line:?}");
    ((name.to_owned(), labels), value)
}

/// Scrapes `/metrics` from loopback, checking the content type.
pub async fn scrape(app: &TestApp) -> Scrape {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    Scrape::parse(&response.text().await.unwrap())
}

#[test]
fn the_parser_accepts_prometheus_text_and_refuses_what_is_not() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\\n\"} 3\n\n\
                # TYPE h_seconds histogram\nh_seconds_bucket{le=\"0.5\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\n\
                h_seconds_sum 0.7\nh_seconds_count 2\n# TYPE g gauge\ng -1.5e3 1700000000\n";
    let scrape = Scrape::parse(good);
    assert_eq!(scrape.sum("a_total", &[("y", "q\"\\\n")]), 3.0);
    assert_eq!(scrape.sum("h_seconds_count", &[]), 2.0);
    assert_eq!(scrape.sum("g", &[]), -1500.0);
    for bad in [
        "a_total 1\n",                                 // no TYPE
        "# TYPE a_total counter\na_total{x=1} 1\n",    // unquoted label
        "# TYPE a_total counter\na_total{x=\"1\" 1\n", // unterminated labels
        "# TYPE a_total counter\na_total one\n",       // not a number
        "# TYPE a counter\na 1\n",                     // counter without _total
        "# TYPE h histogram\nh_bucket 1\n",            // bucket without le
        "# TYPE 1a gauge\n",                           // bad name
        "# TYPE g gauge\ng{x=\"\\q\"} 1\n",            // bad escape
    ] {
        assert!(std::panic::catch_unwind(|| Scrape::parse(bad)).is_err(), "accepted {bad:?}");
    }
}

#[tokio::test]
async fn counters_move_with_oplog_yjs_blob_and_stream_traffic() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;

    // Op log: one push of two ops, one pull.
    let d = device(&app, "alice", "v").await;
    push(&app, &d, vec![op("o1", "a", "create", json!({"path": "a"}), 0), op("o2", "b", "create", json!({}), 0)]).await;
    let (ops, _) = pull_all(&app, &d, 0).await;
    assert_eq!(ops.len(), 2);

    // Blobs: 10 000 bytes in, the same out.
    let data = vec![7u8; 10_000];
    let sha = upload(&app, &d, &data).await;
    download_verified(&app, &d, &sha, data.len()).await;

    // An event stream held open while the server is scraped.
    let stream = app.client.get(app.url("/api/v1/sync/events")).bearer_auth(&d.token).send().await.unwrap();
    assert_eq!(stream.status(), 200);

    // Yjs: one client edits, another receives the edit through the server.
    let session = app.sign_in("bob@example.com").await;
    let url = app.ws_url(&format!("/sync/notes?token={session}"));
    let mut writer = RawClient::connect(&url).await;
    let mut reader = RawClient::connect(&url).await;
    writer.pump_until(|c| c.text().is_empty()).await;
    let update = writer.insert_at(0, "hello metrics").await;
    assert!(reader.pump_until(|c| c.text() == "hello metrics").await);
    // The reader writes too: once the writer sees it, every frame either client sent so far (the
    // handshakes included, which may still be on their way otherwise) has been counted, as each
    // connection's frames are handled in order.
    reader.insert_at(0, ">").await;
    assert!(writer.pump_until(|c| c.text() == ">hello metrics").await);
    let persisted = scrape(&app).await.sum("concord_yjs_updates_persisted_total", &[]);
    let received = scrape(&app).await.sum("concord_yjs_frames_received_total", &[]);
    // The same update again changes nothing, so it is received but not stored; the edit after
    // it, once relayed, proves the server has handled both.
    writer.send(Message::Sync(SyncMessage::Update(update)).encode_v1()).await;
    writer.insert("!").await;
    assert!(reader.pump_until(|c| c.text() == ">hello metrics!").await);
    let s = scrape(&app).await;
    assert_eq!(s.sum("concord_yjs_frames_received_total", &[]) - received, 2.0);
    assert_eq!(s.sum("concord_yjs_updates_persisted_total", &[]) - persisted, 1.0);

    let after = scrape(&app).await;
    let moved = |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    assert_eq!(moved("concord_oplog_pushes_total", &[]), 1.0);
    assert_eq!(moved("concord_oplog_ops_pushed_total", &[]), 2.0);
    assert_eq!(moved("concord_oplog_pulls_total", &[]), 1.0);
    assert_eq!(moved("concord_oplog_ops_pulled_total", &[]), 2.0);
    assert_eq!(moved("concord_blob_received_bytes_total", &[]), 10_000.0);
    assert_eq!(moved("concord_blob_sent_bytes_total", &[]), 10_000.0);
    // Each client's SyncStep1, and the writer's update.
    assert!(moved("concord_yjs_frames_received_total", &[]) >= 3.0);
    assert!(moved("concord_yjs_updates_persisted_total", &[]) >= 1.0);
    assert!(moved("concord_yjs_persisted_bytes_total", &[]) > 0.0);
    assert!(moved("concord_yjs_frames_relayed_total", &[]) >= 1.0);
    assert!(moved("concord_yjs_commit_batch_updates_count", &[]) >= 1.0);
    assert!(moved("concord_yjs_commit_duration_seconds_count", &[]) >= 1.0);
    assert_eq!(after.sum("concord_websockets_open", &[]), 2.0);
    assert_eq!(after.sum("concord_event_streams_open", &[]), 1.0);
    assert_eq!(after.sum("concord_documents_loaded", &[]), 1.0);
    assert!(after.sum("concord_database_size_bytes", &[]) > 0.0);
    assert!(after.sum("concord_database_wal_size_bytes", &[]) >= 0.0);
    // Every job ran once at start.
    for job in ["expired_credentials", "idempotency_keys", "blob_collection", "wal_checkpoint", "idle_compaction"] {
        assert!(after.sum("concord_maintenance_runs_total", &[("job", job), ("outcome", "ok")]) >= 1.0, "{job}");
    }

    // Requests are labelled by route template, never by the raw path (the hash is not a label).
    let push_route = [("route", "/api/v1/sync/push"), ("status", "200"), ("method", "POST")];
    assert_eq!(moved("concord_http_requests_total", &push_route), 1.0);
    assert_eq!(moved("concord_http_request_duration_seconds_count", &push_route[..1]), 1.0);
    assert_eq!(moved("concord_http_requests_total", &[("route", "/api/v1/blobs/{sha256}"), ("status", "200")]), 1.0);
    let missing = app.get("/api/v1/no/such/route/123").await;
    assert_eq!(missing.status(), 404);
    let again = scrape(&app).await;
    assert_eq!(again.sum("concord_http_requests_total", &[("route", "unmatched"), ("status", "404")]), 1.0);
    let routes = again.label_values("concord_http_requests_total", "route");
    assert!(routes.iter().all(|r| !r.contains(&sha) && !r.contains("123")), "raw paths as labels: {routes:?}");

    // Closing the sockets and the stream brings the gauges back; the closing document is compacted.
    drop(stream);
    drop(writer);
    drop(reader);
    eventually(|| async {
        let s = scrape(&app).await;
        s.sum("concord_websockets_open", &[]) == 0.0
            && s.sum("concord_event_streams_open", &[]) == 0.0
            && s.sum("concord_documents_loaded", &[]) == 0.0
            && s.sum("concord_yjs_compactions_total", &[]) >= 1.0
    })
    .await;
}

#[tokio::test]
async fn mail_sent_failed_and_rate_limit_refusals_are_counted() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;
    // An address gets 3 sign-in links an hour: three mails, then a refusal.
    for _ in 0..3 {
        json_of(app.post_json("/auth/magic-link", &json!({ "email": "carol@example.com" })).await, 200).await;
        sink.next_mail_to("carol@example.com").await;
    }
    assert_eq!(app.post_json("/auth/magic-link", &json!({ "email": "carol@example.com" })).await.status(), 429);
    eventually(|| async { scrape(&app).await.sum("concord_mail_sent_total", &[]) == 3.0 }).await;
    let s = scrape(&app).await;
    assert_eq!(s.sum("concord_mail_failed_total", &[]), 0.0);
    assert_eq!(s.sum("concord_rate_limit_refusals_total", &[]), 1.0);

    // A relay that is not there: the mail fails and is counted as failed, not sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let broken = sink.app().env("SMTP_PORT", port).spawn().await;
    let refused = broken.post_json("/auth/magic-link", &json!({ "email": "dave@example.com" })).await;
    assert_eq!(json_of(refused, 500).await["error"], "Failed to send email");
    let s = scrape(&broken).await;
    assert_eq!(s.sum("concord_mail_failed_total", &[]), 1.0);
    assert_eq!(s.sum("concord_mail_sent_total", &[]), 0.0);
}

/// A non-loopback IPv4 address of this machine, added to `lo` for the test if the machine has
/// none (removed on drop). Traffic between a machine's own addresses always travels over `lo`;
/// what the server judges is the peer address, and connecting from this one makes it see a peer
/// that really is not loopback, which no 127.0.0.0/8 source address can.
struct OutsideAddress {
    ip: Ipv4Addr,
    added: bool,
}

impl OutsideAddress {
    fn find_or_add() -> OutsideAddress {
        let listed = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output();
        let found = listed.ok().and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)
                .and_then(|cidr| cidr.split('/').next()?.parse::<Ipv4Addr>().ok())
        });
        if let Some(ip) = found {
            return OutsideAddress { ip, added: false };
        }
        // TEST-NET-2 (RFC 5737): never routed, so the address cannot clash with a real network.
        let ip = Ipv4Addr::new(198, 51, 100, 77);
        let status = std::process::Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .status()
            .expect("run ip");
        assert!(status.success(), "cannot add {ip} to lo (the test needs root or an external address)");
        OutsideAddress { ip, added: true }
    }
}

impl Drop for OutsideAddress {
    fn drop(&mut self) {
        if self.added {
            let _ = std::process::Command::new("ip")
                .args(["addr", "del", &format!("{}/32", self.ip), "dev", "lo"])
                .status();
        }
    }
}

#[tokio::test]
async fn non_loopback_peers_need_the_metrics_token() {
    let outside = OutsideAddress::find_or_add();
    let token = "metrics-token-for-tests-0123456789";
    let app = TestApp::builder()
        .listen("0.0.0.0:0")
        .env("CONCORD_MAIL", "dev")
        .env("CONCORD_METRICS_TOKEN", token)
        .spawn()
        .await;
    let port = app.base.rsplit(':').next().unwrap();
    let url = format!("http://{}:{port}/metrics", outside.ip);
    let client = reqwest::Client::builder().timeout(DEADLINE).local_address(IpAddr::V4(outside.ip)).build().unwrap();

    for (authorization, status) in [
        (None, 401),
        (Some("Bearer wrong-token".to_owned()), 401),
        (Some(format!("Bearer {token}x")), 401),
        (Some(token.to_owned()), 401),
        (Some(format!("Bearer {token}")), 200),
    ] {
        let mut request = client.get(&url);
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{authorization:?}");
        if status == 401 {
            let body = json_of(response, 401).await;
            assert_eq!(body["code"], "unauthorized", "{body}");
        } else {
            Scrape::parse(&response.text().await.unwrap());
        }
    }
    // Loopback needs no token, on the same server.
    scrape(&app).await;
    // A guessable token is refused at start, naming the setting.
    let refused = crate::helpers::concord_refuses_to_start(&[("CONCORD_METRICS_TOKEN", "short")], &[]);
    assert!(refused.contains("CONCORD_METRICS_TOKEN"), "{refused}");

    // Without a token configured, outside peers get 401 whatever they send; loopback still 200.
    let open = TestApp::builder().listen("0.0.0.0:0").env("CONCORD_MAIL", "dev").spawn().await;
    let port = open.base.rsplit(':').next().unwrap();
    let url = format!("http://{}:{port}/metrics", outside.ip);
    for authorization in ["", "Bearer ", "Bearer anything"] {
        let response = client.get(&url).header("authorization", authorization).send().await.unwrap();
        assert_eq!(response.status(), 401, "{authorization:?}");
    }
    scrape(&open).await;
}

#[tokio::test]
async fn the_last_scheduled_backup_shows_its_outcome_and_time() {
    let backups = tempfile::tempdir().unwrap();
    let app = TestApp::builder()
        .env("CONCORD_BACKUP_DIR", backups.path().to_str().unwrap())
        .env("CONCORD_BACKUP_EVERY", "1s")
        .spawn()
        .await;
    eventually(|| async { scrape(&app).await.sum("concord_backup_last_success", &[]) == 1.0 }).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let at = scrape(&app).await.sum("concord_backup_last_success_timestamp_seconds", &[]);
    assert!((now - 60.0..=now + 1.0).contains(&at), "last backup at {at}, now {now}");

    // A backup folder that cannot be created (a file is in the way): the outcome turns to 0 and no
    // success time appears.
    let blocked = backups.path().join("a-file");
    std::fs::write(&blocked, b"").unwrap();
    let failing = TestApp::builder()
        .env("CONCORD_BACKUP_DIR", blocked.join("sub").to_str().unwrap())
        .env("CONCORD_BACKUP_EVERY", "1s")
        .spawn()
        .await;
    eventually(|| async {
        let s = scrape(&failing).await;
        s.0.keys().any(|(name, _)| name == "concord_backup_last_success")
            && s.sum("concord_backup_last_success", &[]) == 0.0
    })
    .await;
    assert_eq!(scrape(&failing).await.sum("concord_backup_last_success_timestamp_seconds", &[]), 0.0);
}

#[tokio::test]
async fn the_task_gauge_follows_open_connections_and_returns_when_they_close() {
    let app = TestApp::spawn().await;
    let session = app.sign_in("tasks@example.com").await;
    let tasks = |s: &Scrape| s.sum("concord_tokio_tasks_alive", &[]);
    let idle = tasks(&scrape(&app).await);
    assert!(idle >= 1.0, "the maintenance jobs are tasks");
    // Each WebSocket is at least its connection's task (plus its pump); ten make a clear step.
    let url = app.ws_url(&format!("/sync/tasks?token={session}"));
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut client = RawClient::connect(&url).await;
        client.pump_until(|c| c.text().is_empty()).await;
        clients.push(client);
    }
    assert!(tasks(&scrape(&app).await) >= idle + 10.0);
    drop(clients);
    eventually(|| async { tasks(&scrape(&app).await) <= idle }).await;
}
