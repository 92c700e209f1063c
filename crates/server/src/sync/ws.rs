//! The WebSocket upgrade of the sync endpoints and the sending of large messages in fragments.
//!
//! axum's `WebSocket` can send only whole messages, and tungstenite copies a whole message into
//! the socket's write buffer, whose capacity it keeps for the socket's lifetime: 200 joiners of a
//! 5 MB document held 200 such buffers, 1 GB (BENCHMARKS.md, Y4). So the sync endpoints upgrade
//! the connection themselves (the same checks and answer as axum's HTTP/1.1 upgrade; the server
//! does not enable WebSockets over HTTP/2) and run tokio-tungstenite on it directly, which sends
//! raw frames: a large message goes out as a binary frame and continuation frames, each a slice
//! of the one shared frame, so a socket's write buffer stays a few fragments long. RFC 6455
//! receivers (browsers, Node's `ws`, Python's `websockets`) reassemble them.

use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::Response;
use futures_util::SinkExt;
use futures_util::stream::{SplitSink, SplitStream};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::{Role, WebSocketConfig};

pub(super) use tungstenite::Message;

/// An upgraded sync connection. Boxed: tungstenite's state is large, and every async function it
/// is passed through keeps a slot for its arguments in its future for the connection's lifetime.
pub(super) type WebSocket = Box<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>>;
pub(super) type Sink = SplitSink<WebSocket, Message>;
pub(super) type Stream = SplitStream<WebSocket>;

/// Messages longer than this go out in fragments of this size. Small enough that a socket's write
/// buffer (which keeps its largest size) stays small; large enough that a 5 MB state takes about
/// 80 frames, whose 10-byte headers cost nothing.
const FRAGMENT_BYTES: usize = 64 * 1024;
/// tungstenite writes its buffer out once it holds more than this; `send` writes at once anyway,
/// and a batch of small frames fed before one flush (`socket::deliver`) fits.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// A request's WebSocket upgrade, checked.
pub(super) struct Upgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    key: HeaderValue,
}

impl Upgrade {
    /// The upgrade of an HTTP/1.1 request (RFC 6455 section 4.2.1), or `None` if it is not one.
    pub(super) fn from_parts(parts: &mut Parts) -> Option<Upgrade> {
        let headers = &parts.headers;
        let valid = parts.method == Method::GET
            && parts.version <= Version::HTTP_11
            && has_token(headers, header::CONNECTION, "upgrade")
            && has_token(headers, header::UPGRADE, "websocket")
            && headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
        let key = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| valid)?.clone();
        let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>()?;
        Some(Upgrade { on_upgrade, key })
    }

    /// Answers 101 and runs `serve` on the socket once the client has it. `max` bounds a frame
    /// and a message read from the client.
    pub(super) fn on_upgrade<F, Fut>(self, read_buffer: usize, max: usize, serve: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // No `max_write_buffer_size`: a frame is at most a fragment, and what waits behind it is
        // bounded by `socket::deliver`.
        let config = WebSocketConfig::default()
            .read_buffer_size(read_buffer)
            .write_buffer_size(WRITE_BUFFER_BYTES)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config));
                    serve(Box::new(socket.await)).await
                }
                Err(err) => tracing::debug!(error = %err, "WebSocket upgrade failed"),
            }
        });
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(Body::empty())
            .expect("valid static headers")
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive), as `Connection: keep-alive,
/// Upgrade` does.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

/// Queues one binary message without flushing it: whole when small, else as fragments of the
/// shared bytes (each waits until the socket takes the one before, so at most a fragment or two
/// sit in tungstenite's buffer).
pub(super) async fn feed_binary(sink: &mut Sink, message: Bytes) -> Result<(), tungstenite::Error> {
    if message.len() <= FRAGMENT_BYTES {
        return sink.feed(Message::Binary(message)).await;
    }
    let count = message.len().div_ceil(FRAGMENT_BYTES);
    for i in 0..count {
        let chunk = message.slice(i * FRAGMENT_BYTES..message.len().min((i + 1) * FRAGMENT_BYTES));
        let opcode = OpCode::Data(if i == 0 { Data::Binary } else { Data::Continue });
        sink.feed(Message::Frame(Frame::message(chunk, opcode, i + 1 == count))).await?;
    }
    Ok(())
}
