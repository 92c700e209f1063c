//! Connection limits: idle connections are closed after the first-byte timeout, connections over
//! the per-address and total caps are refused at once, descriptors stay bounded, and the server
//! serves again after running out of descriptors.
//!
//! The caps are lowered through settings so that a few hundred connections (ten times a cap)
//! prove the rule that the reported 20,000 broke; the mechanism does not depend on the numbers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{DEADLINE, TestApp, concord_with_open_file_limit, eventually, json};

/// Descriptors the server may open beyond its connections and its idle baseline while a test
/// runs (database connections opened on demand, a blob check in health, the runtime's own).
const FD_SLACK: usize = 16;

fn server_addr(app: &TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().unwrap()
}

/// A TCP connection to the server from the loopback address `source` (any of 127.0.0.0/8).
async fn connect_from(app: &TestApp, source: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server_addr(app)).await.unwrap()
}

/// What the server did with a connection that sent nothing: everything it wrote before closing,
/// and when it closed, measured from `since`.
async fn until_closed(mut stream: TcpStream, since: Instant) -> (String, Duration) {
    let mut received = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the server never closed an idle connection");
    (String::from_utf8_lossy(&received).into_owned(), since.elapsed())
}

/// Opens `count` connections from each source in turn and returns what became of each.
async fn idle_connections(
    app: &TestApp,
    sources: &[&str],
    count: usize,
) -> Vec<tokio::task::JoinHandle<(String, Duration)>> {
    let mut outcomes = Vec::new();
    for source in sources {
        for _ in 0..count {
            let stream = connect_from(app, source).await;
            outcomes.push(tokio::spawn(until_closed(stream, Instant::now())));
        }
    }
    outcomes
}

/// What a new connection from `source` receives if it sends nothing (a refused one gets the 503
/// and the close; sending first could race the close into a reset and lose the answer).
async fn refusal_for(app: &TestApp, source: &str) -> (u16, String) {
    let mut stream = connect_from(app, source).await;
    let mut response = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
}

/// Sends a keep-alive health request and reads one response (by its content-length), leaving the
/// connection open. `None` when the connection is closed or reset instead.
async fn health_keep_alive(stream: &mut TcpStream) -> Option<String> {
    stream.write_all(b"GET /api/v1/health HTTP/1.1\r\nhost: concord\r\n\r\n").await.ok()?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await.unwrap().ok()?;
        if n == 0 {
            return None;
        }
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>()))
                .and_then(Result::ok)?;
            if body.len() >= length {
                return Some(text);
            }
        }
    }
}

fn is_refusal(received: &str) -> bool {
    received.starts_with("HTTP/1.1 503 ") && received.contains(r#""code":"too_many_connections""#)
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_refused_and_idle_ones_time_out() {
    // 5 s: long enough that the 20 admitted connections are all still open while the other 180
    // arrive, even on a loaded machine; every one of them is then closed by the timer.
    let timeout = 5;
    let app = TestApp::builder()
        .env("CONCORD_MAX_CONNECTIONS_PER_IP", "20")
        .env("CONCORD_PER_IP_EXEMPT_LOOPBACK", "false")
        .env("CONCORD_FIRST_BYTE_TIMEOUT_SECS", timeout.to_string())
        .spawn()
        .await;
    let (baseline, memory_before) = (app.open_fds(), app.peak_rss_kib());
    let outcomes = idle_connections(&app, &["127.0.0.2"], 200).await;

    // Bound: the 20 admitted connections and nothing for the 180 refused ones.
    let bound = baseline + 20 + FD_SLACK;
    let fds = app.open_fds();
    assert!(fds <= bound, "{fds} descriptors open, bound {bound}");
    // Another address is served meanwhile; the full one is told why it is refused.
    let served = reqwest::Client::new().get(app.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(json(served, 200).await["status"], "ok");
    let (status, body) = refusal_for(&app, "127.0.0.2").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["code"], "too_many_connections");

    let mut refused = 0;
    for outcome in outcomes {
        let (received, after) = outcome.await.unwrap();
        if is_refusal(&received) {
            refused += 1;
            assert!(received.contains("from this address"), "{received}");
        } else {
            assert_eq!(received, "", "an idle connection gets no answer, only the close");
            assert!(after >= Duration::from_secs(timeout - 1), "closed after {after:?}, before the timeout");
        }
    }
    assert_eq!(refused, 180);
    eventually(|| async { app.open_fds() <= baseline + FD_SLACK }).await;
    // An idle or refused connection costs a task and a socket buffer, kilobytes: 16 MiB is far
    // above that for 200 of them, yet would catch per-connection buffers of 64 KiB or more.
    let grown = app.peak_rss_kib().saturating_sub(memory_before);
    assert!(grown <= 16 * 1024, "peak memory grew by {grown} KiB");
}

#[tokio::test]
async fn a_full_total_makes_room_by_closing_the_longest_silent_connections() {
    let timeout = 5;
    let app = TestApp::builder()
        .env("CONCORD_MAX_CONNECTIONS", "30")
        .env("CONCORD_MAX_CONNECTIONS_PER_IP", "10")
        .env("CONCORD_PER_IP_EXEMPT_LOOPBACK", "false")
        .env("CONCORD_FIRST_BYTE_TIMEOUT_SECS", timeout.to_string())
        .spawn()
        .await;
    let baseline = app.open_fds();
    // Five addresses within their own cap, fifty silent connections against a total of thirty.
    let sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"];
    let mut outcomes = idle_connections(&app, &sources, 10).await;
    // The twenty oldest made room for the newer ones, long before their timeout, and were told why.
    for outcome in outcomes.drain(..20) {
        let (received, after) = outcome.await.unwrap();
        assert!(is_refusal(&received) && received.contains("connection limit"), "{received}");
        assert!(after < Duration::from_secs(timeout - 1), "closed only after {after:?}");
    }
    let bound = baseline + 30 + FD_SLACK;
    let fds = app.open_fds();
    assert!(fds <= bound, "{fds} descriptors open, bound {bound}");

    // A client that talks is served at once: its connection takes a silent one's place.
    let client = reqwest::Client::new();
    let served = client.get(app.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(json(served, 200).await["status"], "ok");
    let (mut made_room, mut timed_out) = (0, 0);
    for outcome in outcomes {
        let (received, after) = outcome.await.unwrap();
        if is_refusal(&received) {
            made_room += 1;
        } else {
            assert_eq!(received, "");
            assert!(after >= Duration::from_secs(timeout - 1), "closed after {after:?}");
            timed_out += 1;
        }
    }
    assert_eq!((made_room, timed_out), (1, 29), "one made room for the health request, the rest timed out");
}

#[tokio::test]
async fn a_full_total_of_connections_that_talk_refuses_new_ones() {
    let app = TestApp::builder().env("CONCORD_MAX_CONNECTIONS", "10").spawn().await;
    // Ten keep-alive connections that each had a request served: none may be closed for room.
    let mut talking = Vec::new();
    for _ in 0..10 {
        let mut stream = connect_from(&app, "127.0.0.1").await;
        let response = health_keep_alive(&mut stream).await.expect("served");
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        talking.push(stream);
    }
    let (status, body) = refusal_for(&app, "127.0.0.1").await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "too_many_connections");
    assert!(body["error"].as_str().unwrap().contains("connection limit"), "{body}");
    // One hangs up; its place is free again.
    drop(talking.pop());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    eventually(|| async { client.get(app.url("/api/v1/health")).send().await.is_ok_and(|r| r.status() == 200) }).await;
}

#[tokio::test]
async fn loopback_peers_are_exempt_from_the_per_address_cap_unless_configured() {
    for (exempt, admitted) in [(None, 50), (Some("false"), 5)] {
        let mut builder = TestApp::builder().env("CONCORD_MAX_CONNECTIONS_PER_IP", "5");
        if let Some(exempt) = exempt {
            builder = builder.env("CONCORD_PER_IP_EXEMPT_LOOPBACK", exempt);
        }
        let app = builder.spawn().await;
        // Fifty connections held open at once from 127.0.0.1, then each sends a request.
        let mut streams = Vec::new();
        for _ in 0..50 {
            streams.push(connect_from(&app, "127.0.0.1").await);
        }
        // Keep-alive, so every admitted connection stays open (and counted) while the later ones
        // are answered, whenever the server got round to accepting them.
        let mut served = 0;
        for stream in &mut streams {
            match health_keep_alive(stream).await {
                Some(response) if response.starts_with("HTTP/1.1 200 ") => served += 1,
                Some(response) => assert!(is_refusal(&response), "{response}"),
                None => {}
            }
        }
        assert_eq!(served, admitted, "exempt setting {exempt:?}");
    }
}

#[tokio::test]
async fn a_connection_that_stalls_in_the_http2_preface_is_closed_too() {
    let app = TestApp::builder().env("CONCORD_FIRST_BYTE_TIMEOUT_SECS", "2").spawn().await;
    // Two thirds of the preface: hyper-util would wait for the rest with no timer.
    let mut stalled = connect_from(&app, "127.0.0.1").await;
    stalled.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let (received, after) = until_closed(stalled, Instant::now()).await;
    assert_eq!(received, "");
    assert!(after >= Duration::from_secs(1), "closed after {after:?}");
    // The same connection that goes on to a request is served as ever.
    let served = reqwest::Client::new().get(app.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(served.status(), 200);
}

#[tokio::test]
async fn out_of_descriptors_the_server_closes_silent_connections_and_serves_again() {
    // 64 descriptors, and a cap allowed up to the limit, so connections alone can exhaust them.
    // The timeout is long: here the server must recover while the hogs are still open.
    let app = TestApp::builder()
        .open_file_limit(64)
        .env("CONCORD_MAX_CONNECTIONS", "64")
        .env("CONCORD_FIRST_BYTE_TIMEOUT_SECS", "600")
        .spawn()
        .await;
    let mut hogs = Vec::new();
    for _ in 0..100 {
        hogs.push(connect_from(&app, "127.0.0.1").await);
    }
    app.wait_for_log("accept failed").await;
    // Each failed accept closes the longest-silent connection, so the backlog moves and a client
    // that sends its request is reached and served.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    eventually(|| async { client.get(app.url("/api/v1/health")).send().await.is_ok_and(|r| r.status() == 200) }).await;
    drop(hogs);
    app.wait_for_log("accepting connections again").await;
    let fresh = reqwest::Client::new().get(app.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(json(fresh, 200).await["status"], "ok");
}

#[tokio::test]
async fn a_websocket_holds_its_connection_slot_until_it_closes() {
    let app = TestApp::builder()
        .env("CONCORD_MAX_CONNECTIONS_PER_IP", "3")
        .env("CONCORD_PER_IP_EXEMPT_LOOPBACK", "false")
        .spawn()
        .await;
    let token = app.sign_in("ws-slots@example.com").await;
    let url = app.ws_url(&format!("/sync/journal?token={token}"));
    let open = async || {
        let stream = connect_from(&app, "127.0.0.2").await;
        tokio_tungstenite::client_async(url.as_str(), stream).await.map(|(ws, _)| ws)
    };
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(open().await.expect("upgrade within the cap"));
    }
    // The upgrades are done and hyper has let go of the sockets; they still count.
    let (status, body) = refusal_for(&app, "127.0.0.2").await;
    assert_eq!(status, 503, "{body}");
    // Closing one gives its slot back.
    sockets.pop().unwrap().close(None).await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    let reopened = loop {
        match open().await {
            Ok(ws) => break ws,
            Err(_) => assert!(Instant::now() < deadline, "the closed WebSocket's slot never came back"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sockets.push(reopened);
    assert_eq!(sockets.len(), 3);
}

#[tokio::test]
async fn the_total_cap_follows_the_open_file_limit_and_a_cap_above_it_is_refused() {
    // (1024 - 128 reserved) * 3/4.
    let app = TestApp::builder().open_file_limit(1024).spawn().await;
    app.wait_for_log("max_connections=672").await;

    let data = tempfile::tempdir().unwrap();
    let output = concord_with_open_file_limit(Some(1024))
        .env_clear()
        .env("CONCORD_MAX_CONNECTIONS", "2000")
        .arg("--data")
        .arg(data.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a cap above the open-file limit starts: {stderr}");
    assert!(stderr.contains("CONCORD_MAX_CONNECTIONS") && stderr.contains("1024"), "{stderr}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_by_the_header_timeout() {
    // After its first request a connection is hyper's: a next request must start within the
    // 10 s header timeout (a constant; the first-byte setting does not shorten it).
    let app = TestApp::spawn().await;
    let mut stream = connect_from(&app, "127.0.0.1").await;
    let first = health_keep_alive(&mut stream).await.expect("served");
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    let (rest, after) = until_closed(stream, Instant::now()).await;
    assert_eq!(rest, "");
    assert!(after >= Duration::from_secs(5), "closed after {after:?}");
}
