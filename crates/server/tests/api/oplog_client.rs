//! A test client for the operation log and blobs that sends exactly what the Verstak desktop
//! client sends (see the reference's "Desktop client behaviour"), plus fixtures for devices.

use concord_core::blob::BlobHasher;
use serde_json::{Value, json};

use crate::helpers::{TestApp, json as json_of};

/// A device token bound to a (user, vault) scope.
#[derive(Clone, Debug)]
pub struct Device {
    pub token: String,
    pub device_id: String,
}

/// A device of `login`'s account paired for `vault` through the real endpoints: registration,
/// confirmation and `POST /api/client/pair`, exactly as a new desktop would be set up.
pub async fn device(app: &TestApp, login: &str, vault: &str) -> Device {
    let (device_id, token) = app.paired_device(&format!("{login}@example.com"), vault).await;
    Device { token, device_id }
}

/// One op as the desktop builds it: `client_sequence` 0, its cursor as `last_seen_server_seq`.
pub fn op(op_id: &str, entity_id: &str, op_type: &str, payload: Value, last_seen: i64) -> Value {
    json!({
        "op_id": op_id,
        "entity_type": "file",
        "entity_id": entity_id,
        "op_type": op_type,
        "payload_json": payload.to_string(),
        "client_sequence": 0,
        "last_seen_server_seq": last_seen,
        "created_at": "2026-07-10T00:00:00Z",
    })
}

pub async fn push_raw(app: &TestApp, device: &Device, body: &Value) -> reqwest::Response {
    app.client.post(app.url("/api/v1/sync/push")).bearer_auth(&device.token).json(body).send().await.unwrap()
}

/// A push as the desktop sends it: its device id in the body, no idempotency key.
pub async fn push(app: &TestApp, device: &Device, ops: Vec<Value>) -> Value {
    json_of(push_raw(app, device, &json!({"device_id": device.device_id, "ops": ops})).await, 200).await
}

pub async fn pull_raw(app: &TestApp, device: &Device, since: i64, page_limit: i64) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/sync/pull"))
        .bearer_auth(&device.token)
        .json(&json!({"since_sequence": since, "page_limit": page_limit}))
        .send()
        .await
        .unwrap()
}

/// Pulls from `cursor` to the head with `page_limit` 0, checking each page as the desktop does:
/// strictly increasing sequences continuing the cursor, and `page_last_sequence` equal to the
/// last op received. Returns every op and the new cursor.
pub async fn pull_all(app: &TestApp, device: &Device, mut cursor: i64) -> (Vec<Value>, i64) {
    let mut ops = Vec::new();
    loop {
        let page = json_of(pull_raw(app, device, cursor, 0).await, 200).await;
        for op in page["ops"].as_array().unwrap() {
            let seq = op["server_sequence"].as_i64().unwrap();
            assert_eq!(seq, cursor + 1, "sequences continue the cursor without gaps: {page}");
            cursor = seq;
            ops.push(op.clone());
        }
        assert_eq!(page["page_last_sequence"].as_i64().unwrap(), cursor, "{page}");
        assert!(page["server_sequence"].as_i64().unwrap() >= cursor);
        if !page["has_more"].as_bool().unwrap() {
            return (ops, cursor);
        }
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    let mut hasher = BlobHasher::new();
    hasher.update(data);
    hasher.finish().0.to_string()
}

pub const BOUNDARY: &str = "verstak-test-boundary-7d1e";

/// A multipart body with one `file` part named after the content's hash, as the desktop sends.
pub fn multipart_body(filename: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

pub async fn upload_raw(app: &TestApp, device: &Device, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/blobs/"))
        .bearer_auth(&device.token)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Uploads `data` and checks the answer names its hash and size.
pub async fn upload(app: &TestApp, device: &Device, data: &[u8]) -> String {
    let sha = sha256_hex(data);
    let body = json_of(upload_raw(app, device, multipart_body(&sha, data)).await, 200).await;
    assert_eq!(body, json!({"sha256": sha, "size": data.len()}));
    sha
}

pub async fn download(app: &TestApp, device: &Device, sha: &str) -> reqwest::Response {
    app.client.get(app.url(&format!("/api/v1/blobs/{sha}"))).bearer_auth(&device.token).send().await.unwrap()
}

/// Downloads and verifies size and hash, as the desktop does before writing the file.
pub async fn download_verified(app: &TestApp, device: &Device, sha: &str, size: usize) -> Vec<u8> {
    let response = download(app, device, sha).await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap().to_vec();
    assert_eq!(bytes.len(), size);
    assert_eq!(sha256_hex(&bytes), sha);
    bytes
}

/// Every regular file under `<data>/blobs`, the temporary directory included.
pub fn blob_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    stored_blobs(app).iter().map(|key| app.data_dir().join("blobs").join(key)).collect()
}

/// Everything in the app's blob store, on either backend, as its key below the store's root
/// (`aa/bb/<sha256>`, `tmp/<name>`), sorted; health probes left out.
pub fn stored_blobs(app: &TestApp) -> Vec<String> {
    fn walk(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let key = format!("{prefix}{}", path.file_name().unwrap().to_string_lossy());
            if path.is_dir() {
                walk(&path, &format!("{key}/"), out);
            } else {
                out.push(key);
            }
        }
    }
    let mut out = Vec::new();
    match app.env_value("CONCORD_BLOB_STORE") {
        Some(store) => out = crate::s3_moto::keys(&store),
        None => walk(&app.data_dir().join("blobs"), "", &mut out),
    }
    out.retain(|key| !key.rsplit('/').next().unwrap_or_default().starts_with(".health"));
    out.sort();
    out
}

/// Uploads being staged: temporary files, or S3 multipart uploads in progress and temporary objects.
pub fn staged_uploads(app: &TestApp) -> usize {
    let temporary = stored_blobs(app).iter().filter(|key| key.starts_with("tmp/")).count();
    temporary + app.env_value("CONCORD_BLOB_STORE").map_or(0, |store| crate::s3_moto::unfinished_uploads(&store))
}

/// The stored size of the blob `sha`, on either backend.
pub fn stored_size(app: &TestApp, sha: &str) -> Option<u64> {
    let key = format!("{}/{}/{sha}", &sha[0..2], &sha[2..4]);
    match app.env_value("CONCORD_BLOB_STORE") {
        Some(store) => crate::s3_moto::size(&store, &key),
        None => std::fs::metadata(app.data_dir().join("blobs").join(key)).ok().map(|m| m.len()),
    }
}
