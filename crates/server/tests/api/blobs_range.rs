//! `Range` on blob downloads over HTTP: case-insensitive units, overflowing positions, suffixes,
//! several ranges and invalid specs, on GET and HEAD, for a blob and for an empty blob.

use crate::helpers::TestApp;
use crate::oplog_client::{device, upload};

/// (blob, Range header, status, Content-Range, the body's bounds in the blob)
type Case<'a> = (&'a str, &'a str, u16, Option<&'a str>, Option<(usize, usize)>);

#[tokio::test]
async fn range_headers_get_the_status_content_range_and_bytes_rfc_9110_asks_for() {
    range_headers(TestApp::spawn().await).await;
}

/// Also run with blobs in S3 by `s3_blobs`.
pub(crate) async fn range_headers(app: TestApp) {
    let d = device(&app, "alice", "v").await;
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let sha = upload(&app, &d, &data).await;
    let empty = upload(&app, &d, b"").await;

    let whole = Some((0, 10_000));
    let cases: Vec<Case> = vec![
        (&sha, "bytes=0-1", 206, Some("bytes 0-1/10000"), Some((0, 2))),
        (&sha, "BYTES=0-1", 206, Some("bytes 0-1/10000"), Some((0, 2))),
        (&sha, "Bytes=9990-", 206, Some("bytes 9990-9999/10000"), Some((9990, 10_000))),
        (&sha, "bytes=-5", 206, Some("bytes 9995-9999/10000"), Some((9995, 10_000))),
        (&sha, "bytes=-99999999999999999999", 206, Some("bytes 0-9999/10000"), whole),
        (&sha, "bytes=5-99999999999999999999", 206, Some("bytes 5-9999/10000"), Some((5, 10_000))),
        (&sha, "bytes = 1 - 2", 206, Some("bytes 1-2/10000"), Some((1, 3))),
        (&sha, "bytes=99999999999999999999-", 416, Some("bytes */10000"), None),
        (&sha, "bytes=18446744073709551615-", 416, Some("bytes */10000"), None),
        (&sha, "bytes=10000-", 416, Some("bytes */10000"), None),
        (&sha, "bytes=-0", 416, Some("bytes */10000"), None),
        (&sha, "bytes=20000-30000,40000-", 416, Some("bytes */10000"), None),
        (&sha, "bytes=0-1,5-6", 200, None, whole),
        (&sha, "bytes=5-2", 200, None, whole),
        (&sha, "bytes=+1-2", 200, None, whole),
        (&sha, "bytes=", 200, None, whole),
        (&sha, "pages=0-1", 200, None, whole),
        (&empty, "bytes=0-0", 416, Some("bytes */0"), None),
        (&empty, "bytes=-1", 200, None, Some((0, 0))),
    ];
    for (blob, range, status, content_range, body) in cases {
        let url = app.url(&format!("/api/v1/blobs/{blob}"));
        let response = app.client.get(&url).bearer_auth(&d.token).header("range", range).send().await.unwrap();
        let what = format!("{range:?} of {}", if blob == sha { "the blob" } else { "the empty blob" });
        assert_eq!(response.status().as_u16(), status, "{what}");
        let got_range = response.headers().get("content-range").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(got_range.as_deref(), content_range, "{what}");
        let bytes = response.bytes().await.unwrap();
        match body {
            Some((start, end)) => {
                let source: &[u8] = if blob == sha { &data } else { b"" };
                assert_eq!(bytes.as_ref(), &source[start..end], "{what}");
            }
            None => assert!(bytes.len() < 200, "{what}: an error body, not the blob"),
        }
        let head = app.client.head(&url).bearer_auth(&d.token).header("range", range).send().await.unwrap();
        assert_eq!(head.status().as_u16(), status, "HEAD {what}");
    }
}
