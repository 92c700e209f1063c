//! A driver for real `@hocuspocus/provider` documents sharing one socket in a Node process
//! (tests/interop/hocus-client.mjs), and a raw Hocuspocus frame builder for what the provider
//! would never send.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use yrs::updates::decoder::Decode;

use crate::helpers::{DEADLINE, TestApp};
use crate::yjs_client::{Ws, interop_dir, npm_installed, open_ws};

/// One Node process: one `HocuspocusProviderWebsocket` and any number of providers on it.
pub struct HocusSocket {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    /// Events other than dumps, in arrival order.
    pub seen: Vec<Value>,
}

impl HocusSocket {
    /// A socket to `path` on the app (`""` is the base URL, as a provider is usually given).
    pub async fn start(app: &TestApp, path: &str) -> HocusSocket {
        npm_installed();
        let mut child = Command::new("node")
            .arg(interop_dir().join("hocus-client.mjs"))
            .arg(app.ws_url(path))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(serde_json::from_str(&line).expect("client prints JSON"));
            }
        });
        HocusSocket { child, stdin, events, seen: Vec::new() }
    }

    pub async fn command(&mut self, command: Value) {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    pub async fn open(&mut self, doc: &str, token: &str) {
        self.command(json!({"op": "open", "doc": doc, "token": token})).await;
    }

    pub async fn insert(&mut self, doc: &str, text: &str) {
        self.command(json!({"op": "insert", "doc": doc, "text": text})).await;
    }

    pub async fn set(&mut self, doc: &str, key: &str, value: Value) {
        self.command(json!({"op": "set", "doc": doc, "key": key, "value": value})).await;
    }

    pub async fn awareness(&mut self, doc: &str, state: Value) {
        self.command(json!({"op": "awareness", "doc": doc, "state": state})).await;
    }

    /// Takes events that have arrived, without waiting.
    fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
    }

    /// Waits for an event matching `wanted` (seen before or arriving within the deadline).
    pub async fn event(&mut self, mut wanted: impl FnMut(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            self.drain();
            if let Some(found) = self.seen.iter().find(|e| wanted(e)) {
                return found.clone();
            }
            let next = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("event never came; saw {:?}", self.seen))
                .expect("client runs");
            self.seen.push(next);
        }
    }

    /// The document's state: `{"synced","authenticated","unsynced","text","map","peers"}`.
    pub async fn dump(&mut self, doc: &str) -> Value {
        self.command(json!({"op": "dump", "doc": doc})).await;
        loop {
            let event =
                tokio::time::timeout(DEADLINE, self.events.recv()).await.expect("client answers").expect("client runs");
            if event["event"] == "dump" {
                return event;
            }
            self.seen.push(event);
        }
    }

    /// Polls the document's state until `condition` holds; returns that state.
    pub async fn wait_for(&mut self, doc: &str, mut condition: impl FnMut(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let state = self.dump(doc).await;
            if condition(&state) {
                return state;
            }
            assert!(tokio::time::Instant::now() < deadline, "{doc} never reached the condition; last state {state}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn quit(mut self) {
        self.command(json!({"op": "quit"})).await;
        let _ = tokio::time::timeout(DEADLINE, self.child.wait()).await;
    }
}

/// A client Hocuspocus frame: `varString(key)` then `body`.
pub fn frame(key: &str, body: &[u8]) -> Vec<u8> {
    let mut out = vec![key.len() as u8];
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(body);
    out
}

/// The body of a provider's `Auth` (type 2, sub 0, token, version "4.8.0").
pub fn auth(token: &str) -> Vec<u8> {
    let mut out = vec![2, 0];
    let mut len = token.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(token.as_bytes());
    out.extend_from_slice(&[5, b'4', b'.', b'8', b'.', b'0']);
    out
}

/// A Hocuspocus socket spoken frame by frame, for byte-level checks and for what the provider
/// would never send.
pub struct RawHocus {
    pub ws: Ws,
}

impl RawHocus {
    pub async fn connect(app: &TestApp, path: &str) -> RawHocus {
        RawHocus { ws: open_ws(&app.ws_url(path)).await.unwrap_or_else(|status| panic!("upgrade refused: {status}")) }
    }

    /// Sends a binary frame; a failure means the server is closing, which the next read shows.
    pub async fn send(&mut self, frame: Vec<u8>) {
        let _ = self.ws.send(WsMessage::Binary(frame.into())).await;
    }

    /// The next binary frame from the server (pings skipped), or the close code if it closed.
    pub async fn next(&mut self) -> Result<Vec<u8>, u16> {
        loop {
            let next = tokio::time::timeout(DEADLINE, self.ws.next()).await.expect("the server answers");
            match next {
                Some(Ok(WsMessage::Binary(data))) if data.as_ref() != [9] => return Ok(data.to_vec()),
                Some(Ok(WsMessage::Close(frame))) => return Err(frame.map_or(1005, |f| u16::from(f.code))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(1006),
            }
        }
    }

    /// The next frame that is not awareness (which the server sends whenever presence changes,
    /// and once after `Authenticated` when the document has any).
    pub async fn next_sync(&mut self, key: &str) -> Result<Vec<u8>, u16> {
        loop {
            let frame = self.next().await?;
            if frame.get(key.len() + 1) != Some(&1) {
                return Ok(frame);
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn close_code(&mut self) -> u16 {
        loop {
            if let Err(code) = self.next().await {
                return code;
            }
        }
    }

    /// Authenticates `key` and syncs an empty document, expecting the reference replies
    /// (hocuspocus-protocol.md §7): Authenticated, the server's Step1, its Step2, then the ack of
    /// the client's Step2. Returns the update the server's Step2 carries.
    pub async fn open(&mut self, key: &str, token: &str) -> Vec<u8> {
        self.send(frame(key, &auth(token))).await;
        self.send(frame(key, &[0, 0, 1, 0])).await;
        let authenticated = self.next().await.unwrap();
        assert_eq!(authenticated, frame(key, &[&[2u8, 2, 10][..], b"read-write"].concat()));
        let step1 = self.next_sync(key).await.unwrap();
        assert_eq!(step1[..key.len() + 3], frame(key, &[0, 0])[..], "the server's Step1 first");
        let step2 = self.next_sync(key).await.unwrap();
        assert_eq!(step2[..key.len() + 3], frame(key, &[0, 1])[..], "then its Step2");
        self.send(frame(key, &[0, 1, 2, 0, 0])).await;
        assert_eq!(self.next_sync(key).await.unwrap(), frame(key, &[8, 1]), "the client's Step2 is acknowledged");
        match yrs::sync::Message::decode_v1(&step2[key.len() + 1..]).expect("a y-protocols message behind the key") {
            yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep2(update)) => update,
            other => panic!("expected Step2, got {other:?}"),
        }
    }
}
