//! Uploads that never end where they should: a multipart preamble, part header or tail that
//! goes on and on (refused after a few KiB, with flat memory), and uploads cut off by `kill -9`
//! (their temporary files are gone after the restart).

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{DEADLINE, TestApp, eventually};
use crate::oplog_client::{BOUNDARY, Device, device, download_verified, multipart_body, stored_blobs, upload};

/// What each attack claims to send; the server must answer long before.
const CLAIMED_BYTES: usize = 200 << 20;
/// The server must have answered once this much is sent: the bounds are a few KiB, the rest is
/// what sockets and the parser's read-ahead hold on loopback.
const ANSWERED_WITHIN_BYTES: usize = 16 << 20;
/// Growth of the server's peak RSS allowed over all attacks: the bounds make it a few KiB per
/// request; before them, one 200 MB header cost 200 MB or more.
const MAX_HWM_GROWTH_KB: u64 = 32 * 1024;

/// Opens a connection and sends the head of a blob upload claiming `content_length` bytes.
async fn start_upload(app: &TestApp, d: &Device, content_length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /api/v1/blobs/ HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {content_length}\r\n\r\n",
        d.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Sends `start`, then `filler` bytes up to [`CLAIMED_BYTES`] in total, until the server
/// answers. Returns the answer's status and JSON body, and how many body bytes had been sent.
async fn attack(app: &TestApp, d: &Device, start: Vec<u8>, filler: u8) -> (u16, Value, usize) {
    let stream = start_upload(app, d, CLAIMED_BYTES).await;
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let mut sent = 0;
        if writer.write_all(&start).await.is_err() {
            return sent;
        }
        sent += start.len();
        let filler = vec![filler; 64 * 1024];
        while sent < CLAIMED_BYTES {
            let n = filler.len().min(CLAIMED_BYTES - sent);
            if writer.write_all(&filler[..n]).await.is_err() {
                break;
            }
            sent += n;
        }
        sent
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let answer = tokio::time::timeout(DEADLINE, async {
        loop {
            let n = reader.read(&mut buf).await.unwrap_or(0);
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response);
            if n == 0 || text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                return text.into_owned();
            }
        }
    })
    .await
    .expect("the server answers before the body ends");
    sender.abort();
    let sent = sender.await.unwrap_or(0);
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap_or(Value::Null), sent)
}

#[tokio::test]
async fn endless_preambles_part_headers_and_tails_are_refused_quickly_with_flat_memory() {
    endless_headers_are_refused(TestApp::spawn().await).await;
}

/// Also run with blobs in S3 by `s3_blobs`.
pub(crate) async fn endless_headers_are_refused(app: TestApp) {
    let d = device(&app, "alice", "v").await;
    let hwm_before = app.peak_rss_kib();
    let disposition = "Content-Disposition: form-data; name=\"file\"; filename=\"a\"";
    let mut file_then_second_part = multipart_body("a", b"the file");
    file_then_second_part.truncate(file_then_second_part.len() - 4); // keep "--B", drop "--\r\n"
    file_then_second_part.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"more\"\r\nX-Pad: ");
    // (what never ends, the bytes before it, the byte it repeats, what the answer names)
    let attacks: Vec<(&str, Vec<u8>, u8, &str)> = vec![
        ("a part header", format!("--{BOUNDARY}\r\n{disposition}\r\nX-Pad: ").into_bytes(), b'a', "part headers"),
        ("the first header line", format!("--{BOUNDARY}\r\nContent-Disposition: ").into_bytes(), b'a', "part headers"),
        ("transport padding", format!("--{BOUNDARY}").into_bytes(), b' ', "part headers"),
        ("a preamble", b"preamble ".to_vec(), b'a', "preamble"),
        ("a second part's header", file_then_second_part, b'a', "follow the file part"),
    ];
    for (what, start, filler, message) in attacks {
        let (status, body, sent) = attack(&app, &d, start, filler).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_multipart")), "{what}: {body}");
        assert!(body["error"].as_str().unwrap().contains(message), "{what}: {body}");
        assert!(sent < ANSWERED_WITHIN_BYTES, "{what}: answered only after {sent} bytes");
    }
    let growth = app.peak_rss_kib().saturating_sub(hwm_before);
    assert!(growth < MAX_HWM_GROWTH_KB, "peak RSS grew by {growth} KiB");
    assert_eq!(stored_blobs(&app), Vec::<String>::new(), "no refused upload left a file");

    // A well-behaved upload, with a long (but bounded) header, is served as before.
    let data = vec![7u8; 100_000];
    let long_name = "n".repeat(4000);
    let body = multipart_body(&long_name, &data);
    let response = crate::oplog_client::upload_raw(&app, &d, body).await;
    assert_eq!(response.status(), 200);
    download_verified(&app, &d, &crate::oplog_client::sha256_hex(&data), data.len()).await;
}

#[tokio::test]
async fn uploads_cut_off_by_kill_9_leave_no_temporary_files_after_restart() {
    let mut app = TestApp::spawn().await;
    let d = device(&app, "alice", "v").await;
    let kept = upload(&app, &d, b"a blob stored before the crash").await;
    let tmp = app.data_dir().join("blobs/tmp");
    let part_files = || -> Vec<(std::path::PathBuf, u64)> {
        std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap()).map(|e| (e.path(), e.metadata().unwrap().len())).collect()
    };
    // Three 40 MB uploads, each 4 MB in when the server dies.
    let mut connections = Vec::new();
    for n in 0..3u8 {
        let mut stream = start_upload(&app, &d, 40 << 20).await;
        let mut first =
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f{n}\"\r\n\r\n")
                .into_bytes();
        first.resize(4 << 20, n);
        stream.write_all(&first).await.unwrap();
        connections.push(stream);
    }
    eventually(|| async { part_files().len() == 3 && part_files().iter().all(|(_, len)| *len > 0) }).await;
    assert!(part_files().iter().all(|(path, _)| path.extension().is_some_and(|e| e == "part")));

    app.kill9().await;
    drop(connections);
    assert_eq!(part_files().len(), 3, "kill -9 leaves the temporary files");
    app.restart().await;
    assert_eq!(part_files(), vec![], "start-up cleared the temporary folder");
    // Logs arrive on stderr, read apart from the stdout line that says the server listens.
    app.wait_for_log("removed temporary files of uploads cut off by a crash").await;
    // Stored blobs are untouched, and uploads work.
    download_verified(&app, &d, &kept, b"a blob stored before the crash".len()).await;
    upload(&app, &d, &vec![1u8; 1 << 20]).await;
    assert_eq!(part_files(), vec![]);
}
