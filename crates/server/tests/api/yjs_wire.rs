//! The WebSocket wire below y-protocols: how document names are read from both URL forms, and
//! that a client breaking RFC 6455 hears close code 1002 before the connection ends.

use tokio::io::AsyncWriteExt;

use crate::helpers::TestApp;
use crate::yjs_client::{RawClient, RawSocket, ws_frame};

/// What y-websocket sends for a room name: it appends the name to the URL as it is, and the
/// browser's URL parser percent-encodes only spaces, controls, non-ASCII and `"#<>?\`{}` (the
/// WHATWG path percent-encode set); `+`, `%` and `/` stay as they are.
fn as_y_websocket_path(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_graphic() && !"\"#<>?`{}".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            c.encode_utf8(&mut buf).bytes().for_each(|b| out.push_str(&format!("%{b:02X}")));
        }
    }
    out
}

/// What Diaryx sends: `encodeURIComponent` (everything but `A-Za-z0-9-_.!~*'()` percent-encoded,
/// a space as `%20`).
fn as_encode_uri_component(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) => char::from(b).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Each name is written through one URL form and read through the other, so both forms must
/// reach the same document; the names are chosen so that any confusion (`+` as space, `%`
/// decoded twice, `/` cut off) would make two of them meet, which the exact text would show.
/// (A name holding `%` and two hex digits has no y-websocket spelling of its own: y-websocket
/// does not encode it, so `%2B` in its URL means `+` under any rule that decodes `%20`.)
#[tokio::test]
async fn both_url_forms_reach_the_same_document_for_every_kind_of_name() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let names = ["c++notes", "c  notes", "c+ notes", "100% done", "dir/sub/page", "ünïcødé 📝", "?#{}"];
    for (i, name) in names.iter().enumerate() {
        let by_path = app.ws_url(&format!("/sync/{}?token={token}", as_y_websocket_path(name)));
        let by_query = app.ws_url(&format!("/sync?doc={}&token={token}", as_encode_uri_component(name)));
        // Alternate which form writes, so each form is both writer and reader.
        let (write_url, read_url) = if i % 2 == 0 { (&by_path, &by_query) } else { (&by_query, &by_path) };
        let mut writer = RawClient::connect(write_url).await;
        let mut reader = RawClient::connect(read_url).await;
        eprintln!("name {name:?}: {write_url} -> {read_url}");
        let marker = format!("[{name}]");
        writer.insert(&marker).await;
        assert!(reader.pump_until(|c| !c.text().is_empty()).await, "{name:?}: reader closed");
        assert_eq!(reader.text(), marker, "{name:?} reached another document through one of the forms");
    }
    // Hand-written URLs mean the same in both forms: a plus is a plus, escaped or not, and a
    // space is `%20` (`+` is not a space in either form).
    let cases = [
        ("/sync/c%2B%2Bnotes?", "[c++notes]"),
        ("/sync?doc=c++notes&", "[c++notes]"),
        ("/sync?doc=c%2B%2Bnotes&", "[c++notes]"),
        ("/sync?%64oc=c++notes&", "[c++notes]"),
        ("/sync/c%20%20notes?", "[c  notes]"),
        ("/sync?doc=c%20%20notes&", "[c  notes]"),
    ];
    for (url, text) in cases {
        let mut client = RawClient::connect(&app.ws_url(&format!("{url}token={token}"))).await;
        assert!(client.pump_until(|c| !c.text().is_empty()).await, "{url}");
        assert_eq!(client.text(), text, "{url}");
    }
    // Bytes that are not UTF-8 are refused in both forms, with the same JSON error.
    for url in [format!("/sync/%FF?token={token}"), format!("/sync?doc=%FF&token={token}")] {
        let refused = app.client.get(app.url(&url)).send().await.unwrap();
        let body = crate::helpers::json(refused, 400).await;
        assert_eq!(body["code"], "invalid_doc", "{url}");
    }
}

/// Each frame breaks RFC 6455 in its own way; each offender must read a close frame with 1002
/// (Protocol error), while two well-behaved clients of the same document keep syncing.
#[tokio::test]
async fn protocol_violations_are_answered_with_close_1002() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let path = format!("/sync/wire?token={token}");
    let mut a = RawClient::connect(&app.ws_url(&path)).await;
    let mut b = RawClient::connect(&app.ws_url(&path)).await;
    let sync_step1 = [0u8, 0, 1, 0];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked client frame", ws_frame(0x82, &sync_step1, false)),
        ("RSV1 set", ws_frame(0x80 | 0x40 | 0x2, &sync_step1, true)),
        ("RSV3 set", ws_frame(0x80 | 0x10 | 0x2, &sync_step1, true)),
        ("control frame over 125 bytes", ws_frame(0x89, &[7; 126], true)),
        ("fragmented control frame", ws_frame(0x09, b"ping", true)),
        ("reserved opcode", ws_frame(0x83, &sync_step1, true)),
        ("continuation without a start", ws_frame(0x80, &sync_step1, true)),
        ("close code 999", ws_frame(0x88, &999u16.to_be_bytes(), true)),
        ("close code 1004", ws_frame(0x88, &1004u16.to_be_bytes(), true)),
    ];
    for (i, (what, frame)) in cases.into_iter().enumerate() {
        let mut offender = RawSocket::connect(&app, &path).await;
        offender.tcp.write_all(&frame).await.unwrap();
        assert_eq!(offender.close_code().await, 1002, "{what}");
        let marker = format!("<{i}>");
        a.insert(&marker).await;
        assert!(b.pump_until(|c| c.text().contains(&marker)).await, "{what}: the others stopped syncing");
    }
    // A valid close code is echoed as it is, not as 1002.
    let mut polite = RawSocket::connect(&app, &path).await;
    polite.tcp.write_all(&ws_frame(0x88, &1000u16.to_be_bytes(), true)).await.unwrap();
    assert_eq!(polite.close_code().await, 1000);
}
