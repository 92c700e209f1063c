//! Fuzzing of the conditional and range headers of blob downloads (`Range`, `If-None-Match`,
//! `If-Range`), through the real server: seeded random combinations of valid, malformed and
//! overflowing values. The properties are RFC 9110's, checked against the bytes uploaded, so
//! they hold whatever the download's implementation (core's `range_raw`/`range_oracle` targets
//! fuzz the Range parser itself in-process).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::helpers::TestApp;
use crate::oplog_client::{device, upload};

/// Pieces of range specs: units, positions at and past the blob's edges and `u64`, separators.
const RANGE_PARTS: &[&str] = &[
    "bytes=",
    "BYTES=",
    "pages=",
    "0",
    "1",
    "9",
    "999",
    "1000",
    "1001",
    "-",
    "-",
    ",",
    " ",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999",
    "+1",
    "",
    "=",
    "\t",
];

/// Pieces of entity-tag lists: the blob's tag is put in by [`tag_list`].
const TAG_PARTS: &[&str] = &["*", "W/", "\"x\"", "\"\"", ",", " ", "\"", "W/\"x\"", "null"];

fn join(rng: &mut StdRng, parts: &[&str], extra: &str) -> String {
    (0..rng.random_range(0..8))
        .map(|_| if rng.random_bool(0.2) { extra } else { parts[rng.random_range(0..parts.len())] })
        .collect()
}

/// Positions at the blob's edges, inside it and past `u64`.
const POSITIONS: &[&str] =
    &["", "0", "1", "5", "998", "999", "1000", "1001", "18446744073709551615", "99999999999999999999"];

/// A range header: mostly well-formed specs (`unit=start-end[,…]`) over [`POSITIONS`], so the
/// satisfiable and unsatisfiable answers are reached; sometimes pieces joined at random.
fn range(rng: &mut StdRng) -> String {
    if rng.random_bool(0.3) {
        return join(rng, RANGE_PARTS, "5");
    }
    let unit = ["bytes=", "bytes=", "Bytes=", "items="][rng.random_range(0..4)];
    let specs: Vec<String> = (0..rng.random_range(1..=2))
        .map(|_| {
            let (start, end) =
                (POSITIONS[rng.random_range(0..POSITIONS.len())], POSITIONS[rng.random_range(0..POSITIONS.len())]);
            format!("{start}-{end}")
        })
        .collect();
    format!("{unit}{}", specs.join(","))
}

/// Whether an `If-None-Match` value names `etag` (weakly) or is `*` (RFC 9110 §13.1.2).
fn none_match_hits(value: &str, etag: &str) -> bool {
    value.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// 400 requests over one 1000-byte blob: each header is absent, random or the exact tag in
/// turn, so every branch (200, 206, 304, 416, `If-Range` mismatch) is taken many times.
#[tokio::test]
async fn conditional_and_range_headers_never_break_the_download() {
    let app = TestApp::spawn().await;
    let d = device(&app, "headers", "v").await;
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
    let sha = upload(&app, &d, &data).await;
    let etag = format!("\"{sha}\"");
    let url = app.url(&format!("/api/v1/blobs/{sha}"));
    let mut rng = StdRng::seed_from_u64(0x1f_4a09e);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..400 {
        let range = rng.random_bool(0.8).then(|| range(&mut rng));
        let none_match = rng.random_bool(0.3).then(|| join(&mut rng, TAG_PARTS, &etag));
        let if_range = rng
            .random_bool(0.3)
            .then(|| if rng.random_bool(0.5) { etag.clone() } else { join(&mut rng, TAG_PARTS, &etag) });
        let mut request = app.client.get(&url).bearer_auth(&d.token);
        for (name, value) in [("range", &range), ("if-none-match", &none_match), ("if-range", &if_range)] {
            if let Some(value) = value {
                request = request.header(name, value);
            }
        }
        let what = format!("Range {range:?}, If-None-Match {none_match:?}, If-Range {if_range:?}");
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        seen.insert(status);
        let content_range = response.headers().get("content-range").map(|v| v.to_str().unwrap().to_owned());
        let body = response.bytes().await.unwrap();
        let hit = none_match.as_deref().is_some_and(|v| none_match_hits(v, &etag));
        assert_eq!(status == 304, hit, "{what}: {status}");
        match status {
            304 => assert!(body.is_empty(), "{what}"),
            200 => assert_eq!(body.as_ref(), &data[..], "{what}"),
            206 => {
                assert!(range.is_some() && if_range.as_ref().is_none_or(|v| *v == etag), "{what}");
                let spec = content_range.as_deref().and_then(|v| v.strip_prefix("bytes ")).expect("Content-Range");
                let (span, size) = spec.split_once('/').unwrap();
                let (start, end) = span.split_once('-').unwrap();
                let (start, end): (usize, usize) = (start.parse().unwrap(), end.parse().unwrap());
                assert_eq!(size, "1000", "{what}");
                assert!(start <= end && end < 1000, "{what}: {spec}");
                assert_eq!(body.as_ref(), &data[start..=end], "{what}");
            }
            416 => assert_eq!(content_range.as_deref(), Some("bytes */1000"), "{what}"),
            other => panic!("{what}: status {other}"),
        }
        // An If-Range that is not the tag asks for the whole blob, never a part.
        if if_range.as_ref().is_some_and(|v| *v != etag) {
            assert!(status == 200 || status == 304, "{what}: {status}");
        }
    }
    // The seed reaches every outcome, or the properties above were checked on fewer branches.
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![200, 206, 304, 416]);
}
