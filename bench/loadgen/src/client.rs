//! One simulated Yjs client: a WebSocket, a yrs document, and the y-protocols exchange (plain, as
//! y-websocket speaks it, or inside Hocuspocus frames) that keeps the two in sync.
//!
//! The encoders and the frame decoder are `concord-core`'s, the same code the server parses with,
//! so the load generator cannot drift from the protocol the server implements.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use concord_core::hocuspocus;
use concord_core::yjs::{Incoming, decode_frame, encode_sync_step1, encode_sync_step2, encode_update};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::{Doc, GetString, ReadTxn, Text, TextRef, Transact, Update};

/// Which framing the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// One document per socket, named by the URL path (`<url>/<doc>`); y-websocket, pycrdt, Concord's
    /// `/sync`.
    YWebsocket,
    /// Every frame prefixed with the document name, an Auth message first (`@hocuspocus/server`,
    /// Concord's root endpoint).
    Hocuspocus,
}

/// Where the clients connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub protocol: Protocol,
    /// Concord's session token: `?token=` for y-websocket framing, the Auth token for Hocuspocus.
    pub token: Option<String>,
    /// Local addresses the sockets are bound to in turn (127.0.0.x): one address has only ~28k
    /// ephemeral ports towards one server port, so 50k connections need several. Empty: the
    /// kernel's choice.
    pub sources: Vec<IpAddr>,
}

/// tungstenite's default read buffer is 128 KiB per socket, allocated up front: 6 GiB at 50k
/// clients. It is the read chunk, not a message limit, so 8 KiB only means more reads for the
/// few large messages (a join storm's 5 MB sync).
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Which of [`Target::sources`] the next socket binds to.
static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// The Hocuspocus message types this client sends or must recognise (reference §1).
const HP_AUTH: u32 = 2;
const HP_AUTH_TOKEN: u32 = 0;
const HP_AUTH_DENIED: u32 = 1;
/// The provider version announced in Auth, as `@hocuspocus/provider` 4.x does.
const HP_VERSION: &str = "4.7.0";
/// y-protocols `sync` · `step 2`: the answer that completes the initial sync.
const SYNC_STEP_2_PREFIX: [u8; 2] = [0, 1];

pub struct Client {
    ws: WebSocketStream<TcpStream>,
    doc: Doc,
    text: TextRef,
    /// The Hocuspocus key (document name); `None` with y-websocket framing.
    key: Option<String>,
    synced: bool,
}

impl Client {
    /// Opens the socket and starts the handshake (Auth for Hocuspocus, then SyncStep1); returns at
    /// once, before the server answers: see [`Client::wait_synced`].
    pub async fn open(target: &Target, doc_name: &str) -> Result<Client> {
        let url = match target.protocol {
            Protocol::YWebsocket => {
                let base = format!("{}/{doc_name}", target.url.trim_end_matches('/'));
                match &target.token {
                    Some(token) => format!("{base}?token={token}"),
                    None => base,
                }
            }
            Protocol::Hocuspocus => target.url.clone(),
        };
        let ws = connect(target, &url).await.with_context(|| format!("connect {url}"))?;
        let doc = Doc::new();
        let text = doc.get_or_insert_text("t");
        let key = (target.protocol == Protocol::Hocuspocus).then(|| doc_name.to_owned());
        let mut client = Client { ws, doc, text, key, synced: false };
        if client.key.is_some() {
            let mut auth = Vec::new();
            auth.write_var(HP_AUTH);
            auth.write_var(HP_AUTH_TOKEN);
            auth.write_string(target.token.as_deref().unwrap_or(""));
            auth.write_string(HP_VERSION);
            client.send(&auth).await?;
        }
        let step1 = encode_sync_step1(&client.doc.transact().state_vector());
        client.send(&step1).await?;
        Ok(client)
    }

    /// Reads frames until the server's SyncStep2 has been applied.
    pub async fn wait_synced(&mut self) -> Result<()> {
        while !self.synced {
            self.next_frame().await?;
        }
        Ok(())
    }

    /// Sends one y-protocols message, in this client's framing.
    async fn send(&mut self, body: &[u8]) -> Result<()> {
        let frame = match &self.key {
            Some(key) => hocuspocus::frame(key, body),
            None => body.to_vec(),
        };
        self.ws.send(Message::Binary(frame.into())).await.context("send")
    }

    /// Appends `chunk` to the shared text and sends the update, without waiting for anything.
    pub async fn append(&mut self, chunk: &str) -> Result<()> {
        let update = {
            let mut txn = self.doc.transact_mut();
            let end = self.text.len(&txn);
            self.text.insert(&mut txn, end, chunk);
            txn.encode_update_v1()
        };
        self.send(&encode_update(&update)).await
    }

    /// Handles every message that has already arrived, without waiting for more.
    pub async fn drain(&mut self) -> Result<()> {
        // `next_frame` stops at its first await when nothing is buffered (reading is cancel-safe),
        // so the `else` branch only ever drops a read that has not started.
        loop {
            tokio::select! {
                biased;
                frame = self.next_frame() => frame?,
                () = std::future::ready(()) => return Ok(()),
            }
        }
    }

    /// Reads and handles one WebSocket message; errors when the socket ends.
    pub async fn next_frame(&mut self) -> Result<()> {
        let message = match self.ws.next().await {
            Some(message) => message.context("receive")?,
            None => bail!("the server closed the connection"),
        };
        match message {
            Message::Binary(data) => self.handle(&data).await,
            Message::Close(frame) => bail!("the server closed the connection: {frame:?}"),
            _ => Ok(()),
        }
    }

    async fn handle(&mut self, data: &[u8]) -> Result<()> {
        let body = match &self.key {
            None => data,
            Some(_) if data == hocuspocus::PING => {
                // Concord pings providers that announced a version; they answer with a lone Pong.
                return self.ws.send(Message::Binary(vec![10u8].into())).await.context("pong");
            }
            Some(_) => {
                let mut cursor = Cursor::new(data);
                cursor.read_string().context("hocuspocus key")?;
                let body = &data[cursor.next..];
                let mut kind = Cursor::new(body);
                match kind.read_var::<u32>().context("hocuspocus type")? {
                    0 | 1 | 3 => body,
                    HP_AUTH => {
                        if kind.read_var::<u32>().ok() == Some(HP_AUTH_DENIED) {
                            bail!("permission denied: {:?}", kind.read_string().unwrap_or(""));
                        }
                        return Ok(());
                    }
                    // Sync status acknowledgements, stateless messages, close of other keys.
                    _ => return Ok(()),
                }
            }
        };
        let completes_sync = body.starts_with(&SYNC_STEP_2_PREFIX);
        for message in decode_frame(body)? {
            match message {
                Incoming::SyncStep1(sv) => {
                    let diff = self.doc.transact().encode_state_as_update_v1(&sv);
                    self.send(&encode_sync_step2(&diff)).await?;
                }
                Incoming::Update(update) => self.apply(update)?,
                Incoming::Awareness(_) | Incoming::QueryAwareness => {}
            }
        }
        if completes_sync {
            self.synced = true;
        }
        Ok(())
    }

    fn apply(&mut self, update: Update) -> Result<()> {
        self.doc.transact_mut().apply_update(update).context("apply update")
    }

    /// Length of the shared text, in bytes (every edit here is ASCII).
    pub fn len(&self) -> u32 {
        self.text.len(&self.doc.transact())
    }

    pub fn content(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }
}

/// Opens the TCP connection (from the next source address, if any; Nagle off, as browsers and
/// the Node `ws` client do) and runs the WebSocket handshake on it.
async fn connect(target: &Target, url: &str) -> Result<WebSocketStream<TcpStream>> {
    let authority = url.split_once("://").context("url scheme")?.1.split('/').next().unwrap_or_default();
    let server: SocketAddr = tokio::net::lookup_host(authority).await?.next().context("no address")?;
    let stream = match target.sources.as_slice() {
        [] => TcpStream::connect(server).await?,
        sources => {
            let source = sources[NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % sources.len()];
            let socket = if source.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            socket.bind(SocketAddr::new(source, 0))?;
            socket.connect(server).await?
        }
    };
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    Ok(ws)
}
