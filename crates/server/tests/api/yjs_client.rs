//! Clients for the Yjs tests: a Diaryx-like raw WebSocket client built on yrs, a driver for the
//! real Node `yjs` + `y-websocket` provider (tests/interop/client.mjs), and test identities.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update, WriteTxn};

use crate::helpers::{DEADLINE, TestApp};

/// `/api/status` counts: (active_connections, active_rooms).
pub async fn live_counts(app: &TestApp) -> (u64, u64) {
    let status: Value = app.get("/api/status").await.json().await.unwrap();
    (status["active_connections"].as_u64().unwrap(), status["active_rooms"].as_u64().unwrap())
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket, returning the HTTP status if the server refuses the upgrade.
pub async fn open_ws(url: &str) -> Result<Ws, u16> {
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(err) => panic!("connecting {url}: {err}"),
    }
}

/// A client that behaves like the Diaryx web client: sends SyncStep1 on open, reads only the
/// first message of each frame, answers SyncStep1 with SyncStep2, sends local edits as Update.
pub struct RawClient {
    pub ws: Ws,
    pub doc: Doc,
    /// Close code and reason, once the server closed the connection.
    pub closed: Option<(u16, String)>,
}

impl RawClient {
    pub async fn connect(url: &str) -> RawClient {
        let ws = open_ws(url).await.unwrap_or_else(|status| panic!("upgrade refused with {status}"));
        let mut client = RawClient { ws, doc: Doc::new(), closed: None };
        let step1 = Message::Sync(SyncMessage::SyncStep1(client.doc.transact().state_vector())).encode_v1();
        client.send(step1).await;
        client
    }

    /// Sends a frame. A failure means the server is closing the connection; the close code is
    /// still to be read, so it is not an error here.
    pub async fn send(&mut self, frame: Vec<u8>) {
        let _ = self.ws.send(WsMessage::Binary(frame.into())).await;
    }

    /// Appends `text` to the Y.Text "body" and sends the change as an Update.
    pub async fn insert(&mut self, text: &str) {
        let len = self.text().encode_utf16().count() as u32;
        self.insert_at(len, text).await;
    }

    /// Inserts `text` at `index` (clamped) of the Y.Text "body", sends the change as an Update
    /// and returns it.
    pub async fn insert_at(&mut self, index: u32, text: &str) -> Vec<u8> {
        let update = {
            let sv = self.doc.transact().state_vector();
            let mut txn = self.doc.transact_mut();
            let body = txn.get_or_insert_text("body");
            let len = body.len(&txn);
            body.insert(&mut txn, index.min(len), text);
            drop(txn);
            self.doc.transact().encode_state_as_update_v1(&sv)
        };
        self.send(Message::Sync(SyncMessage::Update(update.clone())).encode_v1()).await;
        update
    }

    pub fn text(&self) -> String {
        let txn = self.doc.transact();
        txn.get_text("body").map(|t| t.get_string(&txn)).unwrap_or_default()
    }

    /// Handles frames until `done` holds, failing after the deadline. Returns false if the
    /// connection closed first.
    pub async fn pump_until(&mut self, mut done: impl FnMut(&RawClient) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !done(self) {
            if self.closed.is_some() {
                return false;
            }
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await.expect("condition not met in time");
            self.handle(next).await;
        }
        true
    }

    /// Handles whatever frames arrive within `window`.
    pub async fn pump_for(&mut self, window: Duration) {
        let deadline = tokio::time::Instant::now() + window;
        while self.closed.is_none() {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(next) => self.handle(next).await,
                Err(_) => return,
            }
        }
    }

    /// Waits for the server to close the connection and returns the close code.
    pub async fn closed_code(&mut self) -> u16 {
        self.pump_until(|c| c.closed.is_some()).await;
        self.closed.as_ref().unwrap().0
    }

    async fn handle(&mut self, next: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>) {
        match next {
            Some(Ok(WsMessage::Binary(frame))) => {
                // Like the Diaryx client: only the first message of a frame is read.
                let mut decoder = DecoderV1::from(frame.as_ref());
                let message = Message::decode(&mut decoder).expect("server frames decode");
                match message {
                    Message::Sync(SyncMessage::SyncStep1(sv)) => {
                        let diff = self.doc.transact().encode_state_as_update_v1(&sv);
                        self.send(Message::Sync(SyncMessage::SyncStep2(diff)).encode_v1()).await;
                    }
                    Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) => {
                        self.doc.transact_mut().apply_update(Update::decode_v1(&u).unwrap()).unwrap();
                    }
                    _ => {}
                }
            }
            Some(Ok(WsMessage::Close(frame))) => {
                self.closed = Some(frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string())));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                self.closed.get_or_insert((1006, String::new()));
            }
        }
    }
}

pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Installs the Node clients (pinned by package-lock.json) once per test run.
pub fn npm_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = interop_dir();
        let installed = ["y-websocket/package.json", "yjs", "@hocuspocus/provider/package.json"];
        if installed.iter().all(|p| dir.join("node_modules").join(p).exists()) {
            return;
        }
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm is installed");
        assert!(status.success(), "npm ci in {}", dir.display());
    });
}

/// A real `y-websocket` provider in a Node process, driven over stdin/stdout.
pub struct Provider {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    /// Close codes the provider has reported.
    pub closes: Vec<u64>,
}

impl Provider {
    pub async fn start(app: &TestApp, doc: &str, token: &str) -> Provider {
        npm_installed();
        let mut child = Command::new("node")
            .arg(interop_dir().join("client.mjs"))
            .arg(app.ws_url("/sync"))
            .arg(doc)
            .arg(token)
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
        Provider { child, stdin, events, closes: Vec::new() }
    }

    async fn command(&mut self, command: Value) {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    pub async fn insert(&mut self, text: &str) {
        self.command(json!({"op": "insert", "text": text})).await;
    }

    pub async fn set(&mut self, key: &str, value: Value) {
        self.command(json!({"op": "set", "key": key, "value": value})).await;
    }

    pub async fn awareness(&mut self, state: Value) {
        self.command(json!({"op": "awareness", "state": state})).await;
    }

    /// The provider's current state: `{"synced","text","map","peers"}`.
    pub async fn dump(&mut self) -> Value {
        self.command(json!({"op": "dump"})).await;
        loop {
            let event =
                tokio::time::timeout(DEADLINE, self.events.recv()).await.expect("client answers").expect("client runs");
            match event["event"].as_str() {
                Some("dump") => return event,
                Some("closed") => self.closes.extend(event["code"].as_u64()),
                _ => {}
            }
        }
    }

    /// Polls the provider's state until `condition` holds; returns that state.
    pub async fn wait_for(&mut self, mut condition: impl FnMut(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let state = self.dump().await;
            if condition(&state) {
                return state;
            }
            assert!(tokio::time::Instant::now() < deadline, "provider never reached the condition; last state {state}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn synced(&mut self) -> Value {
        self.wait_for(|s| s["synced"] == true).await
    }

    /// Disconnects cleanly and waits for the process to exit.
    pub async fn quit(mut self) {
        self.command(json!({"op": "quit"})).await;
        let _ = tokio::time::timeout(DEADLINE, self.child.wait()).await;
    }
}

/// A WebSocket spoken byte by byte over TCP, for what well-behaved client libraries refuse to do:
/// break RFC 6455, or send without ever reading.
pub struct RawSocket {
    pub tcp: TcpStream,
}

impl RawSocket {
    /// Opens `path` (with its query) on the app and completes the upgrade handshake.
    pub async fn connect(app: &TestApp, path: &str) -> RawSocket {
        let host = app.base.trim_start_matches("http://");
        let mut tcp = TcpStream::connect(host).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        // Read the response head byte by byte, so no frame after it is consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut byte))
                .await
                .expect("upgrade answered")
                .unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        RawSocket { tcp }
    }

    /// Reads frames until a close frame arrives and returns its code (1005 for none, 1006 if
    /// the connection ended without one). Other frames (the greeting, pings) are skipped.
    pub async fn close_code(&mut self) -> u16 {
        use tokio::io::AsyncReadExt;
        let read = async {
            loop {
                let mut header = [0u8; 2];
                if self.tcp.read_exact(&mut header).await.is_err() {
                    return 1006;
                }
                let len = match header[1] & 0x7f {
                    126 => {
                        let mut ext = [0u8; 2];
                        if self.tcp.read_exact(&mut ext).await.is_err() {
                            return 1006;
                        }
                        u64::from(u16::from_be_bytes(ext))
                    }
                    127 => {
                        let mut ext = [0u8; 8];
                        if self.tcp.read_exact(&mut ext).await.is_err() {
                            return 1006;
                        }
                        u64::from_be_bytes(ext)
                    }
                    n => u64::from(n),
                };
                let mut payload = vec![0u8; len as usize];
                if self.tcp.read_exact(&mut payload).await.is_err() {
                    return 1006;
                }
                if header[0] & 0x0f == 0x8 {
                    return if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1005 };
                }
            }
        };
        tokio::time::timeout(DEADLINE, read).await.expect("the server closes the connection")
    }
}

/// One WebSocket frame: `first` is FIN, RSV and opcode; masked (as clients must) unless `mask`
/// is false. Payloads up to 64 KiB.
pub fn ws_frame(first: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut frame = vec![first];
    let mask_bit = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    if mask {
        let key = [0x12, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}
