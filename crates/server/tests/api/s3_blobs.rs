//! Blobs in an S3-compatible bucket (`--blob-store s3://…`, moto from `s3_moto`): the black-box
//! blob tests, the same bodies as on the filesystem, and what only S3 shows: multipart uploads
//! that are aborted or never completed, durability across `kill -9`, the collector listing the
//! bucket, and the settings checked at start.

use tokio::io::AsyncWriteExt;

use crate::helpers::{TestApp, concord_cli, concord_refuses_to_start, eventually};
use crate::oplog_client::{
    BOUNDARY, device, download, download_verified, multipart_body, sha256_hex, staged_uploads, stored_blobs, upload,
    upload_raw,
};
use crate::s3_moto::{self, SECRET_ACCESS_KEY};

#[tokio::test]
async fn blobs_upload_download_head_range_and_etag() {
    crate::blobs_upload::upload_download_range(TestApp::on_s3().await).await;
}

#[tokio::test]
async fn blobs_malformed_uploads_are_refused() {
    crate::blobs_upload::malformed_uploads(TestApp::on_s3().await).await;
}

#[tokio::test]
async fn blobs_over_limit_and_over_quota_uploads_leave_no_object_and_no_reference() {
    crate::blobs_upload::over_limit_and_over_quota(TestApp::builder().s3()).await;
}

#[tokio::test]
async fn blobs_an_upload_cut_off_mid_stream_aborts_its_multipart_upload() {
    crate::blobs_upload::cut_off_mid_stream(TestApp::on_s3().await).await;
}

#[tokio::test]
async fn blobs_range_headers_get_what_rfc_9110_asks_for() {
    crate::blobs_range::range_headers(TestApp::on_s3().await).await;
}

#[tokio::test]
async fn blobs_endless_multipart_headers_are_refused_quickly_with_flat_memory() {
    crate::blobs_limits::endless_headers_are_refused(TestApp::on_s3().await).await;
}

#[tokio::test]
async fn acknowledged_pushes_and_uploads_survive_kill_9() {
    crate::oplog_push_pull::pushes_and_uploads_survive_kill_9(TestApp::on_s3().await).await;
}

/// The deployment of several nodes: PostgreSQL for the references, S3 for the bytes.
#[tokio::test]
async fn blobs_upload_download_range_on_postgres_and_s3() {
    crate::blobs_upload::upload_download_range(TestApp::builder().postgres().await.s3().spawn().await).await;
}

/// 100 MiB is twenty 5 MiB parts: far past the 15 MiB an upload may hold (three parts), so a
/// buffering store would exceed the 64 MiB allowed growth, while moto (in its own process) takes
/// it in seconds.
#[tokio::test]
async fn blobs_a_100_mib_upload_keeps_server_memory_flat() {
    crate::blobs_upload::large_upload_keeps_memory_flat(TestApp::builder().s3(), 100 << 20).await;
}

/// Opens a raw upload claiming `total` bytes and sends the part head and `first` bytes.
async fn begin_raw_upload(app: &TestApp, token: &str, total: usize, first: &[u8]) -> tokio::net::TcpStream {
    let head = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n");
    let addr = app.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /api/v1/blobs/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n{head}",
        head.len() + total + format!("\r\n--{BOUNDARY}--\r\n").len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    conn.write_all(first).await.unwrap();
    conn
}

fn key_of(sha: &str) -> String {
    format!("{}/{}/{sha}", &sha[0..2], &sha[2..4])
}

/// A small blob (one PUT) and a 12 MiB one (three parts, then a copy) are acknowledged, a third
/// upload is 12 MiB into its multipart upload, and the server is killed: after the restart both
/// acknowledged blobs read back whole and the cut-off one left no object, neither at a content
/// address nor in staging. Its unfinished multipart upload stays in the bucket, invisible to
/// readers, until the bucket's lifecycle rule aborts it (README).
#[tokio::test]
async fn acknowledged_uploads_survive_kill_9_and_a_cut_off_one_leaves_no_object() {
    let mut app = TestApp::on_s3().await;
    let d = device(&app, "alice", "v").await;
    let small: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let large: Vec<u8> = (0..12u32 << 20).map(|i| (i % 253) as u8).collect();
    let (small_sha, large_sha) = (upload(&app, &d, &small).await, upload(&app, &d, &large).await);
    let acknowledged = {
        let mut keys = vec![key_of(&small_sha), key_of(&large_sha)];
        keys.sort();
        keys
    };
    assert_eq!(stored_blobs(&app), acknowledged);

    let conn = begin_raw_upload(&app, &d.token, 40 << 20, &vec![9u8; 12 << 20]).await;
    eventually(|| async { staged_uploads(&app) == 1 }).await;
    app.kill9().await;
    drop(conn);
    app.restart().await;
    download_verified(&app, &d, &small_sha, small.len()).await;
    download_verified(&app, &d, &large_sha, large.len()).await;
    let part = app
        .client
        .get(app.url(&format!("/api/v1/blobs/{large_sha}")))
        .bearer_auth(&d.token)
        .header("range", "bytes=5242870-5242889")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206, "a range across the first part boundary");
    assert_eq!(part.bytes().await.unwrap().as_ref(), &large[5_242_870..5_242_890]);
    assert_eq!(stored_blobs(&app), acknowledged, "nothing of the cut-off upload is an object");
    let store = app.env_value("CONCORD_BLOB_STORE").unwrap();
    assert_eq!(s3_moto::unfinished_uploads(&store), 1, "kill -9 could not abort it");
    assert!(!app.logs().contains(SECRET_ACCESS_KEY), "the secret access key is never logged");
}

/// Refused after a multipart upload began (past 5 MiB): one over the size limit, and one over the
/// quota once complete (its temporary object exists by then). Both leave no object and no
/// unfinished multipart upload, and the accepted blob is untouched.
#[tokio::test]
async fn uploads_refused_past_a_part_leave_no_object_and_no_unfinished_upload() {
    let app = TestApp::builder()
        .s3()
        .env("BLOB_MAX_BYTES", (6u64 << 20).to_string())
        .env("BLOB_VAULT_QUOTA_BYTES", (10u64 << 20).to_string())
        .spawn()
        .await;
    let store = app.env_value("CONCORD_BLOB_STORE").unwrap();
    let d = device(&app, "alice", "v").await;
    // One byte over: the client has sent everything by the time the server refuses, so it reads
    // the answer instead of a reset.
    let too_large = upload_raw(&app, &d, multipart_body("big", &vec![1u8; (6 << 20) + 1])).await;
    assert_eq!(crate::helpers::json(too_large, 413).await["code"], "blob_too_large");
    let accepted = upload(&app, &d, &vec![2u8; 6 << 20]).await;
    let over = vec![3u8; 6 << 20];
    let over_quota = upload_raw(&app, &d, multipart_body("over", &over)).await;
    assert_eq!(crate::helpers::json(over_quota, 413).await["code"], "quota_exceeded");
    // Clean-up on drop runs in a task of its own: it finishes moments after the answer.
    eventually(|| async { stored_blobs(&app) == [key_of(&accepted)] && s3_moto::unfinished_uploads(&store) == 0 })
        .await;
    assert_eq!(download(&app, &d, &sha256_hex(&over)).await.status(), 404);
    download_verified(&app, &d, &accepted, 6 << 20).await;
}

/// The collector (run at start, then hourly) lists the bucket below the prefix: it deletes a blob
/// object no scope references and counts its bytes, and leaves referenced blobs and keys that are
/// not blobs alone.
#[tokio::test]
async fn the_collector_removes_unreferenced_objects_and_leaves_the_rest() {
    let mut app = TestApp::on_s3().await;
    let store = app.env_value("CONCORD_BLOB_STORE").unwrap();
    let d = device(&app, "alice", "v").await;
    let kept = upload(&app, &d, b"referenced").await;
    let orphan = vec![3u8; 4096];
    let orphan_key = key_of(&sha256_hex(&orphan));
    s3_moto::put(&store, &orphan_key, &orphan);
    s3_moto::put(&store, "notes/readme.txt", b"not a blob");
    assert!(stored_blobs(&app).contains(&orphan_key));

    app.restart().await;
    eventually(|| async { !stored_blobs(&app).contains(&orphan_key) }).await;
    let mut expected = vec![key_of(&kept), "notes/readme.txt".to_owned()];
    expected.sort();
    assert_eq!(stored_blobs(&app), expected);
    eventually(|| async {
        crate::metrics::scrape(&app).await.sum("concord_blob_reclaimed_bytes_total", &[]) == 4096.0
    })
    .await;
    download_verified(&app, &d, &kept, 10).await;
}

/// `HEAD` of a blob answers its headers from a HEAD request to the bucket: it never GETs the
/// object (which would start sending all its bytes, to be thrown away).
#[tokio::test]
async fn blobs_head_does_not_get_the_object() {
    let app = TestApp::on_s3().await;
    let store = app.env_value("CONCORD_BLOB_STORE").unwrap();
    let d = device(&app, "alice", "v").await;
    let data = vec![5u8; 1000];
    let sha = upload(&app, &d, &data).await;
    let key = key_of(&sha);
    let gets = s3_moto::requests(&store, "GET", &key);
    let url = app.url(&format!("/api/v1/blobs/{sha}"));
    let head = app.client.head(&url).bearer_auth(&d.token).send().await.unwrap();
    assert_eq!((head.status().as_u16(), head.headers()["content-length"].to_str().unwrap()), (200, "1000"));
    assert_eq!(s3_moto::requests(&store, "GET", &key), gets, "HEAD of a blob GETs no object");
    assert_eq!(s3_moto::requests(&store, "HEAD", &key), 1);
    download_verified(&app, &d, &sha, data.len()).await;
    assert_eq!(s3_moto::requests(&store, "GET", &key), gets + 1, "the GET does read the object");
}

/// `/readyz` polled in a burst probes the bucket once per two seconds (`PROBE_FRESH_FOR`), not once
/// per call: a load balancer polling it cannot load the bucket.
#[tokio::test]
async fn readyz_polled_in_a_burst_probes_the_bucket_at_most_every_two_seconds() {
    let app = TestApp::on_s3().await;
    let store = app.env_value("CONCORD_BLOB_STORE").unwrap();
    let probes = || s3_moto::requests(&store, "PUT", "tmp/.health-");
    let before = probes();
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status(), 200);
        assert_eq!(ready.json::<serde_json::Value>().await.unwrap()["blob_storage_writable"], true);
    }
    // At most one probe per started two seconds, however slow this machine ran the burst.
    let allowed = 1 + started.elapsed().as_secs() as usize / 2;
    let made = probes() - before;
    // None at all when the server's start-up probe is still fresh.
    assert!(made <= allowed, "{made} probes for 20 calls, at most {allowed} allowed");
}

/// A scheduled backup reads the blobs from the bucket (a small one and a multipart one), and its
/// restore puts them in `<data>/blobs`, where a server on the filesystem store serves them: the
/// way from S3 back to a single machine, or a copy to load into a new bucket (same layout).
#[tokio::test]
async fn a_scheduled_backup_archives_the_buckets_blobs_and_restores_them_to_the_filesystem() {
    let archives = tempfile::tempdir().unwrap();
    let app = TestApp::builder()
        .s3()
        .arg("--backup-dir")
        .arg(archives.path().to_str().unwrap())
        .arg("--backup-every")
        .arg("1s")
        .spawn()
        .await;
    let d = device(&app, "alice", "v").await;
    let small = upload(&app, &d, b"small blob").await;
    let large_bytes: Vec<u8> = (0..6u32 << 20).map(|i| (i % 241) as u8).collect();
    let large = upload(&app, &d, &large_bytes).await;
    let written = || app.logs().lines().filter(|l| l.contains("backup written") && l.contains("blobs=2")).count();
    eventually(|| async { written() >= 1 }).await;
    // The newest: earlier ones, written between the two uploads, may hold the small blob only.
    let archive = std::fs::read_dir(archives.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .max()
        .unwrap();
    let restored = tempfile::tempdir().unwrap();
    let run =
        concord_cli(&["restore", "--from", archive.to_str().unwrap(), "--data", restored.path().to_str().unwrap()], "")
            .await;
    assert_eq!(run.code, 0, "{run:?}");
    let on_disk = TestApp::builder().data_dir(restored.path()).spawn().await;
    download_verified(&on_disk, &d, &small, 10).await;
    download_verified(&on_disk, &d, &large, large_bytes.len()).await;
}

/// `concord backup` and `doctor` read `<data>/blobs`: given the server's S3 store they refuse,
/// naming the bucket, instead of archiving or checking a folder that holds none of its blobs.
#[tokio::test]
async fn backup_and_doctor_refuse_an_s3_blob_store_naming_it() {
    let app = TestApp::on_s3().await;
    let store = app.env_value("CONCORD_BLOB_STORE").unwrap();
    let d = device(&app, "alice", "v").await;
    upload(&app, &d, b"in the bucket").await;
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("b.tar");
    let data = app.data_dir().to_str().unwrap();
    for args in [vec!["backup", "--out", archive.to_str().unwrap()], vec!["doctor"]] {
        let run = concord_cli(&[&args[..], &["--data", data, "--blob-store", &store]].concat(), "").await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains(&format!("the blob store is the S3 bucket {store}")), "{args:?}: {run:?}");
    }
    assert!(!archive.exists(), "no archive without the bucket's blobs");
    // On the filesystem store they run as before.
    let run = concord_cli(&["doctor", "--data", data, "--blob-store", ""], "").await;
    assert_ne!(run.code, 2, "{run:?}");
}

/// (store, settings changed (an empty value removes one), what the refusal names)
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

/// Every S3 setting is checked at start, with a message naming it, and the secret is never
/// echoed; a bucket that does not exist stops the server rather than failing every upload.
#[test]
fn the_s3_settings_are_checked_at_start() {
    let endpoint = s3_moto::moto().endpoint();
    let good = [
        ("BLOB_S3_ENDPOINT", endpoint.as_str()),
        ("BLOB_S3_ALLOW_HTTP", "true"),
        ("BLOB_S3_ACCESS_KEY_ID", "concord-test"),
        ("BLOB_S3_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
    ];
    let with = |store: &'static str, changes: &[(&'static str, &'static str)]| {
        let mut envs: Vec<(&str, &str)> =
            good.iter().copied().filter(|(k, _)| changes.iter().all(|(c, _)| c != k)).collect();
        envs.extend(changes.iter().copied().filter(|(_, v)| !v.is_empty()));
        if !store.is_empty() {
            envs.push(("CONCORD_BLOB_STORE", store));
        }
        envs
    };
    let cases: [Case; 8] = [
        ("s3:/bucket", &[], "CONCORD_BLOB_STORE"),
        ("s3://Bucket_Caps/p", &[], "CONCORD_BLOB_STORE"),
        ("s3://bucket/a/../b", &[], "CONCORD_BLOB_STORE"),
        ("s3://bucket/p", &[("BLOB_S3_ALLOW_HTTP", "")], "BLOB_S3_ALLOW_HTTP=true"),
        ("s3://bucket/p", &[("BLOB_S3_ENDPOINT", "http://s3.example.com:9000")], "loopback"),
        ("s3://bucket/p", &[("BLOB_S3_SECRET_ACCESS_KEY", "")], "BLOB_S3_SECRET_ACCESS_KEY"),
        ("s3://bucket/p", &[("BLOB_MAX_BYTES", "6000000000")], "BLOB_MAX_BYTES"),
        ("", &[], "only applies with CONCORD_BLOB_STORE"),
    ];
    for (store, changes, named) in cases {
        let stderr = concord_refuses_to_start(&with(store, changes), &[]);
        assert!(stderr.contains(named), "{store} {changes:?}: {stderr}");
        assert!(!stderr.contains(SECRET_ACCESS_KEY), "{stderr}");
    }
    let stderr = concord_refuses_to_start(&with("s3://no-such-bucket/p", &[]), &[]);
    assert!(stderr.contains("s3://no-such-bucket/p") && stderr.contains("probe"), "{stderr}");
    assert!(!stderr.contains(SECRET_ACCESS_KEY), "{stderr}");
}
