//! Blob upload and download over HTTP: shapes, dedupe, HEAD, Range, ETag, limits, quotas,
//! cut-off uploads, and flat memory for a 1 GiB upload. Each body also runs with blobs in S3
//! (`s3_blobs`).

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, TestAppBuilder, eventually, json as json_of};
use crate::oplog_client::{
    BOUNDARY, device, download, download_verified, multipart_body, op, push_raw, sha256_hex, staged_uploads,
    stored_blobs, stored_size, upload, upload_raw,
};

#[tokio::test]
async fn upload_download_head_range_and_etag() {
    upload_download_range(TestApp::spawn().await).await;
}

/// Also run with blobs in S3 by `s3_blobs` (and on PostgreSQL by `pg_server`).
pub(crate) async fn upload_download_range(app: TestApp) {
    let d = device(&app, "alice", "v").await;
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let sha = upload(&app, &d, &data).await;
    let [a, b] = [&sha[0..2], &sha[2..4]];
    assert_eq!(stored_blobs(&app), [format!("{a}/{b}/{sha}")]);

    // The same content again, from another vault too: idempotent, still one file.
    assert_eq!(upload(&app, &d, &data).await, sha);
    let other = device(&app, "alice", "other").await;
    assert_eq!(upload(&app, &other, &data).await, sha);
    assert_eq!(stored_blobs(&app).len(), 1);

    let response = download(&app, &d, &sha).await;
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["content-length"], "10000");
    assert_eq!(headers["content-disposition"], format!("attachment; filename=\"{sha}\"").as_str());
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{sha}\""));
    assert_eq!(response.bytes().await.unwrap().as_ref(), &data[..]);
    download_verified(&app, &d, &sha, data.len()).await;

    let url = app.url(&format!("/api/v1/blobs/{sha}"));
    let head = app.client.head(&url).bearer_auth(&d.token).send().await.unwrap();
    assert_eq!((head.status().as_u16(), head.headers()["content-length"].to_str().unwrap()), (200, "10000"));
    assert!(head.bytes().await.unwrap().is_empty());

    let part = app.client.get(&url).bearer_auth(&d.token).header("range", "bytes=100-199").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(part.bytes().await.unwrap().as_ref(), &data[100..200]);
    let suffix = app.client.get(&url).bearer_auth(&d.token).header("range", "bytes=-10").send().await.unwrap();
    assert_eq!(suffix.bytes().await.unwrap().as_ref(), &data[9990..]);
    let beyond = app.client.get(&url).bearer_auth(&d.token).header("range", "bytes=20000-").send().await.unwrap();
    assert_eq!((beyond.status().as_u16(), beyond.headers()["content-range"].to_str().unwrap()), (416, "bytes */10000"));

    let cached = app.client.get(&url).bearer_auth(&d.token).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(cached.status(), 304);
    assert!(cached.bytes().await.unwrap().is_empty());

    assert_eq!(json_of(download(&app, &d, "ABC").await, 400).await["code"], "invalid_blob_hash");
    assert_eq!(json_of(download(&app, &d, &sha.to_uppercase()).await, 400).await["code"], "invalid_blob_hash");
    assert_eq!(json_of(download(&app, &d, &"0".repeat(64)).await, 404).await["code"], "blob_not_found");
    let anonymous = app.client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // A file op may now reference the blob, with its exact size only.
    let file_op = |size: usize| json!({"ops": [op("f", "a.bin", "create", json!({"path": "a.bin", "blob": {"sha256": sha, "size": size}}), 0)]});
    assert_eq!(json_of(push_raw(&app, &d, &file_op(9999)).await, 400).await["code"], "invalid_blob_reference");
    assert_eq!(json_of(push_raw(&app, &d, &file_op(10_000)).await, 200).await["accepted"], json!(["f"]));
}

#[tokio::test]
async fn malformed_uploads_are_refused() {
    malformed_uploads(TestApp::spawn().await).await;
}

/// Also run with blobs in S3 by `s3_blobs`.
pub(crate) async fn malformed_uploads(app: TestApp) {
    let d = device(&app, "alice", "v").await;
    let part = |headers: &str| format!("--{BOUNDARY}\r\n{headers}\r\n\r\ndata\r\n--{BOUNDARY}--\r\n").into_bytes();
    let two_parts = {
        let mut body = multipart_body("a", b"one");
        body.truncate(body.len() - format!("--{BOUNDARY}--\r\n").len());
        body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\n\r\ntwo\r\n--{BOUNDARY}--\r\n").as_bytes());
        body
    };
    for (name, body) in [
        ("wrong field name", part("Content-Disposition: form-data; name=\"upload\"; filename=\"a\"")),
        ("no filename", part("Content-Disposition: form-data; name=\"file\"")),
        ("no parts", format!("--{BOUNDARY}--\r\n").into_bytes()),
        ("two parts", two_parts),
    ] {
        let response = upload_raw(&app, &d, body).await;
        assert_eq!(json_of(response, 400).await["code"], "invalid_multipart", "{name}");
    }
    let not_multipart =
        app.client.post(app.url("/api/v1/blobs/")).bearer_auth(&d.token).body("x").send().await.unwrap();
    assert_eq!(json_of(not_multipart, 400).await["code"], "invalid_multipart");
    assert!(stored_blobs(&app).is_empty(), "{:?}", stored_blobs(&app));
}

#[tokio::test]
async fn over_limit_and_over_quota_uploads_leave_no_file_and_no_reference() {
    over_limit_and_over_quota(TestApp::builder()).await;
}

/// Also run with blobs in S3 by `s3_blobs`.
pub(crate) async fn over_limit_and_over_quota(app: TestAppBuilder) {
    let app = app.env("BLOB_MAX_BYTES", "1000").env("BLOB_VAULT_QUOTA_BYTES", "1500").spawn().await;
    let d = device(&app, "alice", "v").await;
    let big = vec![1u8; 1001];
    let response = upload_raw(&app, &d, multipart_body("big", &big)).await;
    assert_eq!(json_of(response, 413).await["code"], "blob_too_large");
    upload(&app, &d, &[2u8; 1000]).await;
    let over = vec![3u8; 600];
    let response = upload_raw(&app, &d, multipart_body("over", &over)).await;
    assert_eq!(json_of(response, 413).await["code"], "quota_exceeded");
    assert_eq!(stored_blobs(&app).len(), 1, "only the accepted blob: {:?}", stored_blobs(&app));
    for rejected in [&big[..], &over[..]] {
        let sha = sha256_hex(rejected);
        assert_eq!(download(&app, &d, &sha).await.status(), 404);
        let body =
            json!({"ops": [op("f", "f", "create", json!({"blob": {"sha256": sha, "size": rejected.len()}}), 0)]});
        assert_eq!(json_of(push_raw(&app, &d, &body).await, 400).await["code"], "blob_not_owned");
    }
}

/// Opens a raw connection and sends the request head of an upload of `content_length` bytes.
async fn start_raw_upload(app: &TestApp, token: &str, content_length: u64) -> tokio::net::TcpStream {
    let addr = app.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/blobs/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {content_length}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn
}

fn part_head(filename: &str) -> String {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
}

#[tokio::test]
async fn an_upload_cut_off_mid_stream_leaves_nothing() {
    cut_off_mid_stream(TestApp::spawn().await).await;
}

/// Also run with blobs in S3 by `s3_blobs`. 6 MiB is past one S3 part (5 MiB), so there it is a
/// multipart upload in progress that the cut-off must abort.
pub(crate) async fn cut_off_mid_stream(app: TestApp) {
    let d = device(&app, "alice", "v").await;
    let sent = vec![7u8; 6 << 20];
    let mut conn = start_raw_upload(&app, &d.token, 10 << 20).await;
    conn.write_all(part_head("partial").as_bytes()).await.unwrap();
    conn.write_all(&sent).await.unwrap();
    // The server is streaming into staging…
    eventually(|| async { staged_uploads(&app) > 0 }).await;
    // …when the client vanishes.
    drop(conn);
    eventually(|| async { staged_uploads(&app) == 0 && stored_blobs(&app).is_empty() }).await;
    assert_eq!(download(&app, &d, &sha256_hex(&sent)).await.status(), 404);
}

#[tokio::test]
async fn a_1_gib_upload_keeps_server_memory_flat() {
    large_upload_keeps_memory_flat(TestApp::builder(), 1 << 30).await;
}

/// Streams a `size`-byte upload (whole MiBs) and checks the server's peak memory grew by less
/// than 64 MiB: a buffered upload would grow it by the blob's size. Also run with blobs in S3 by
/// `s3_blobs`.
pub(crate) async fn large_upload_keeps_memory_flat(app: TestAppBuilder, size: u64) {
    let app = app.env("BLOB_MAX_BYTES", (size * 2).to_string()).spawn().await;
    let d = device(&app, "alice", "v").await;
    let before = app.peak_rss_kib();

    let head = part_head("big");
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let mut conn = start_raw_upload(&app, &d.token, head.len() as u64 + size + tail.len() as u64).await;
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut hasher = concord_core::blob::BlobHasher::new();
    let mut chunk = vec![0u8; 1 << 20];
    for i in 0..(size >> 20) {
        chunk.iter_mut().enumerate().for_each(|(j, b)| *b = (i as usize + j) as u8);
        hasher.update(&chunk);
        conn.write_all(&chunk).await.unwrap();
    }
    conn.write_all(tail.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(600), conn.read_to_end(&mut response)).await.ok();
    let response = String::from_utf8_lossy(&response);
    let (sha, hashed) = hasher.finish();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(&format!("\"sha256\":\"{sha}\"")) && response.contains(&format!("\"size\":{hashed}")),
        "{response}"
    );

    let after = app.peak_rss_kib();
    assert!(after < before + 64 * 1024, "peak RSS grew from {before} KiB to {after} KiB for a {size}-byte upload");
    assert_eq!(stored_size(&app, sha.as_str()), Some(size));
}

/// Uploads `body` as a chunked stream cut at `cuts`: each piece reaches the server as a chunk of
/// its own (or several), never merged with the next.
async fn upload_in_pieces(
    app: &TestApp,
    d: &crate::oplog_client::Device,
    body: &[u8],
    cuts: &[usize],
) -> reqwest::Response {
    let mut pieces = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([&body.len()]) {
        pieces.push(Ok::<_, std::io::Error>(body[from..to].to_vec()));
        from = to;
    }
    app.client
        .post(app.url("/api/v1/blobs/"))
        .bearer_auth(&d.token)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)))
        .send()
        .await
        .unwrap()
}

/// The server finds the file's end however the body's chunks cut the closing delimiter, and
/// bytes that look like the start of the delimiter (held back until the next chunk says) are the
/// file's: its hash covers them, up to its very last byte.
#[tokio::test]
async fn chunk_boundaries_inside_the_delimiter_change_nothing() {
    let app = TestApp::spawn().await;
    let d = device(&app, "alice", "v").await;
    let delimiter = format!("\r\n--{BOUNDARY}");
    let near = &delimiter.as_bytes()[..delimiter.len() - 1];
    // The file ends with all but the last byte of the delimiter, and holds it in the middle.
    let data = [&b"start"[..], near, b"middle\r\n-", near].concat();
    let body = multipart_body("f", &data);
    let data_end = body.len() - format!("{delimiter}--\r\n").len();
    for cuts in (data_end - near.len() - 2..body.len())
        .map(|cut| vec![cut])
        .chain([(1..body.len()).collect(), (data_end - 3..data_end + delimiter.len() + 3).collect()])
    {
        let response = upload_in_pieces(&app, &d, &body, &cuts).await;
        let answer = json_of(response, 200).await;
        assert_eq!(answer, json!({"sha256": sha256_hex(&data), "size": data.len()}), "cut at {cuts:?}");
    }
    // The same file but for its last byte is another blob, and each downloads as itself.
    let mut other = data.clone();
    *other.last_mut().unwrap() ^= 1;
    let other_sha = upload(&app, &d, &other).await;
    assert_ne!(other_sha, sha256_hex(&data));
    assert_eq!(download_verified(&app, &d, &sha256_hex(&data), data.len()).await, data);
    assert_eq!(download_verified(&app, &d, &other_sha, other.len()).await, other);
    assert_eq!(stored_blobs(&app).len(), 2);
}

/// A body that ends anywhere before its closing delimiter is complete (in the data, inside the
/// delimiter, before its `--`) is refused, and leaves no blob, no staging and no reference.
#[tokio::test]
async fn a_truncated_body_changes_nothing() {
    let app = TestApp::spawn().await;
    let d = device(&app, "alice", "v").await;
    let data = vec![5u8; 3 << 20];
    let body = multipart_body("t", &data);
    let closing = body.len() - 4; // where the final "--\r\n" starts
    for end in [closing - (2 << 20), closing - BOUNDARY.len() - 4, closing - 1, closing, closing + 1] {
        let response = upload_raw(&app, &d, body[..end].to_vec()).await;
        assert_eq!(json_of(response, 400).await["code"], "invalid_multipart", "cut off at {end}");
    }
    assert_eq!(staged_uploads(&app), 0);
    assert!(stored_blobs(&app).is_empty(), "{:?}", stored_blobs(&app));
    assert_eq!(download(&app, &d, &sha256_hex(&data)).await.status(), 404);
    // Whole, the same body is accepted.
    assert_eq!(json_of(upload_raw(&app, &d, body).await, 200).await["sha256"], sha256_hex(&data));
}
