//! The accept loop: connection caps and the first-byte timeout, HTTP/1 and HTTP/2 with header
//! timeouts, WebSocket upgrades, graceful shutdown.
//!
//! `axum::serve` offers no header-read timeout, which leaves slow-header (slowloris) connections
//! open forever; hyper-util's builder does, so the loop lives here. hyper's header timeout starts
//! only once hyper-util's `auto` builder has told HTTP/1 from HTTP/2, and that detection reads with
//! no timer at all: a connection that never sends a byte stayed open until the process ran out of
//! descriptors. So every connection first gets [`ConnectionLimits::first_byte_timeout`] to send
//! enough for that decision, and holds one slot of the caps (in total and per client address) from
//! accept until its socket closes, WebSocket upgrades included. When the total is full, a new
//! connection takes the slot of the one that has been silent longest (never one that has sent a
//! request), so idle connections cannot lock out clients that talk; only when every open
//! connection has spoken is the new one refused.
//!
//! The caps count TCP peers, never forwarded addresses: they bound this process's sockets, and a
//! reverse proxy holds its clients' connections as one peer (keep it exempt as loopback, or raise
//! the per-address cap). Forwarded client addresses are for rate limits and logs (`client_addr`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::client_addr::address_key;
use crate::config::{ConfigError, ConnectionSettings};

/// A client must send a request's headers within this time (the Verstak server's value). It also
/// closes a keep-alive connection that starts no next request within it.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Descriptors kept out of the default connection cap: the database and its WAL, blob files being
/// read or written, the listener, the runtime's own, and the SMTP pool.
const RESERVED_FDS: u64 = 128;
/// The connection preface of HTTP/2 with prior knowledge; hyper-util reads until it has seen these
/// bytes or a byte that differs from them.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// After `accept` fails (usually EMFILE), wait this long before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// After closing a silent connection to free a descriptor, this long is enough for its task to
/// drop the socket.
const ROOM_BACKOFF: Duration = Duration::from_millis(1);
/// Refused connections are logged at most once per this interval, with a count, so a flood does
/// not flood the log as well.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The caps the accept loop enforces, resolved against the open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_total: usize,
    pub max_per_ip: usize,
    pub exempt_loopback: bool,
    pub first_byte_timeout: Duration,
}

/// Raises this process's soft open-file limit to its hard limit (as Go's runtime and nginx do:
/// systemd's default soft limit of 1024 is meant to be raised by servers that need more) and
/// returns the soft limit now in effect.
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        // An unlimited hard limit cannot be the soft one; the kernel's usual ceiling (nr_open) can.
        let wanted = limit.maximum.unwrap_or(1 << 20);
        // On failure the old limit stays, which is still a working limit.
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(wanted), maximum: limit.maximum });
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The caps from the settings: the total defaults to three quarters of the descriptors left after
/// [`RESERVED_FDS`], so connections alone never exhaust the process; a configured total above the
/// open-file limit could never be reached and is refused.
pub fn connection_limits(settings: &ConnectionSettings, open_files: u64) -> Result<ConnectionLimits, ConfigError> {
    let max_total = match settings.max_total {
        Some(total) if total as u64 > open_files => {
            return Err(ConfigError::Invalid {
                setting: "CONCORD_MAX_CONNECTIONS",
                reason: format!(
                    "{total} is more than the open-file limit ({open_files}); raise `ulimit -n` or lower it"
                ),
            });
        }
        Some(total) => total,
        None => usize::try_from(open_files.saturating_sub(RESERVED_FDS) / 4 * 3).unwrap_or(usize::MAX).max(16),
    };
    Ok(ConnectionLimits {
        max_total,
        max_per_ip: settings.max_per_ip,
        exempt_loopback: settings.exempt_loopback,
        first_byte_timeout: settings.first_byte_timeout,
    })
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, cancels
/// `cancel` (so WebSockets and jobs wind down), and waits for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    cancel: CancellationToken,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    let tracker = Arc::new(Tracker::new(limits));
    let mut refusals = RefusalLog::default();
    let mut accept_failing = false;
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Usually EMFILE: back off instead of spinning, and keep serving. The pending
                    // connection stays in the backlog and is taken once descriptors free up; out
                    // of descriptors, the longest-silent connection gives up its own.
                    if !accept_failing {
                        tracing::warn!(error = %err, "accept failed; retrying until descriptors free up");
                        accept_failing = true;
                    }
                    let made_room = is_out_of_descriptors(&err) && tracker.make_room();
                    tokio::time::sleep(if made_room { ROOM_BACKOFF } else { ACCEPT_BACKOFF }).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if std::mem::take(&mut accept_failing) {
            tracing::info!("accepting connections again");
        }
        let slot = match tracker.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                // Best effort and never waiting: a client that reads gets a reason, then the close.
                let _ = stream.try_write(&refusal.response());
                refusals.note(refusal);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(move |mut req: axum::http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req
        });
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let mut slot = slot;
            let spoke = tokio::select! {
                spoke = first_bytes(&stream, limits.first_byte_timeout) => spoke,
                () = slot.make_room.cancelled() => {
                    let _ = stream.try_write(&Refusal::Total.response());
                    false
                }
            };
            // `spoke()` fails if this connection was chosen to make room just as its bytes came.
            if !spoke || !slot.spoke() {
                tracing::debug!(%peer, "closed a connection that sent nothing");
                return;
            }
            let io = TokioIo::new(Counted { stream, _slot: slot });
            let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
            if let Err(err) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    cancel.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace period over; dropping remaining connections");
    }
    Ok(())
}

fn is_out_of_descriptors(err: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::MFILE, Errno::NFILE].iter().any(|errno| err.raw_os_error() == Some(errno.raw_os_error()))
}

/// Waits until the client has sent enough for hyper-util to choose HTTP/1 or HTTP/2 (the first
/// byte, or the whole HTTP/2 preface if it starts like one), at most `timeout`. False when the time
/// is up or the client closed. Peeking leaves the bytes for hyper to read.
async fn first_bytes(stream: &TcpStream, timeout: Duration) -> bool {
    let detect = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if n == buf.len() || buf[..n] != H2_PREFACE[..n] => return true,
                // A partial preface: real HTTP/2 clients send it in one segment, so this is rare,
                // and peeking again at once would return the same bytes without waiting.
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    tokio::time::timeout(timeout, detect).await.unwrap_or(false)
}

/// Counts open connections, in total and per client address.
struct Tracker {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Every open connection, including those told to make room whose sockets are not closed yet.
    total: usize,
    /// Only addresses with at least one open connection are present.
    per_address: HashMap<IpAddr, usize>,
    /// Connections that have sent nothing yet, oldest first (ids grow), each with its close signal.
    silent: BTreeMap<u64, CancellationToken>,
    /// Connections told to make room that still hold their slot; `total - evicting` is the count
    /// the cap is checked against, so one eviction admits exactly one connection.
    evicting: usize,
    next_id: u64,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    PerAddress,
}

impl Refusal {
    /// A minimal HTTP/1.1 503 in the API's error shape.
    fn response(self) -> Vec<u8> {
        let message = match self {
            Refusal::Total => "server is at its connection limit",
            Refusal::PerAddress => "too many connections from this address",
        };
        let body = format!(r#"{{"error":"{message}","code":"too_many_connections"}}"#);
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             retry-after: 5\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

impl Tracker {
    fn new(limits: ConnectionLimits) -> Tracker {
        Tracker { limits, counts: Mutex::default() }
    }

    /// Closes the longest-silent connection, if any, to free its descriptor and slot.
    fn make_room(&self) -> bool {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).make_room()
    }

    /// Takes a slot for a connection from `peer`, or says which cap is full. A full total makes
    /// room by closing the longest-silent connection, if there is one.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refusal> {
        let peer = peer.to_canonical();
        let key = (!(self.limits.exempt_loopback && peer.is_loopback())).then(|| address_key(peer));
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if key.is_some_and(|key| counts.per_address.get(&key).is_some_and(|&open| open >= self.limits.max_per_ip)) {
            return Err(Refusal::PerAddress);
        }
        if counts.total - counts.evicting >= self.limits.max_total && !counts.make_room() {
            return Err(Refusal::Total);
        }
        if let Some(key) = key {
            *counts.per_address.entry(key).or_default() += 1;
        }
        counts.total += 1;
        let id = counts.next_id;
        counts.next_id += 1;
        let make_room = CancellationToken::new();
        counts.silent.insert(id, make_room.clone());
        Ok(Slot { tracker: self.clone(), key, id, silent: true, make_room })
    }
}

impl Counts {
    fn make_room(&mut self) -> bool {
        let Some((_, oldest)) = self.silent.pop_first() else { return false };
        oldest.cancel();
        self.evicting += 1;
        true
    }
}

/// One admitted connection's place in the counts, given back on drop.
struct Slot {
    tracker: Arc<Tracker>,
    /// `None` for a peer exempt from the per-address cap.
    key: Option<IpAddr>,
    /// Key in `Counts::silent`.
    id: u64,
    /// Until [`Slot::spoke`]: the connection may be closed to make room.
    silent: bool,
    /// Cancelled when this connection is chosen to make room.
    make_room: CancellationToken,
}

impl Slot {
    /// The client has sent its first bytes, so this connection is no longer one to close for
    /// room. False if it was chosen to make room already.
    fn spoke(&mut self) -> bool {
        let mut counts = self.tracker.counts.lock().unwrap_or_else(|e| e.into_inner());
        let still_silent = counts.silent.remove(&self.id).is_some();
        self.silent = !still_silent;
        still_silent
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.tracker.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        // A silent slot missing from `silent` is one that was told to make room.
        if self.silent && counts.silent.remove(&self.id).is_none() {
            counts.evicting -= 1;
        }
        if let Some(key) = self.key
            && let Some(open) = counts.per_address.get_mut(&key)
        {
            *open -= 1;
            if *open == 0 {
                counts.per_address.remove(&key);
            }
        }
    }
}

/// A socket that holds its connection's [`Slot`], so the slot lasts exactly as long as the socket,
/// whether hyper serves it or a WebSocket took it over after an upgrade.
struct Counted {
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Counts refusals between log lines.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    total: u64,
    per_address: u64,
}

impl RefusalLog {
    fn note(&mut self, refusal: Refusal) {
        match refusal {
            Refusal::Total => self.total += 1,
            Refusal::PerAddress => self.per_address += 1,
        }
        if self.last.is_none_or(|last| last.elapsed() >= REFUSAL_LOG_EVERY) {
            tracing::warn!(
                over_total = self.total,
                over_per_address = self.per_address,
                "refused connections over the connection limits"
            );
            *self = RefusalLog { last: Some(Instant::now()), ..RefusalLog::default() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_total: usize, max_per_ip: usize, exempt_loopback: bool) -> ConnectionLimits {
        ConnectionLimits { max_total, max_per_ip, exempt_loopback, first_byte_timeout: Duration::from_secs(1) }
    }

    /// Admits `peers` in order, holding every slot, and lists what became of each: `ok` (open),
    /// `room` (closed to make room), `per` or `total` (refused). A peer ending in `!` sends its
    /// first bytes right after it is admitted.
    fn check(limits: ConnectionLimits, peers: &[&str], expected: &[&str]) {
        let tracker = Arc::new(Tracker::new(limits));
        let mut slots = Vec::new();
        for peer in peers {
            let (addr, speaks) = peer.strip_suffix('!').map_or((*peer, false), |addr| (addr, true));
            let mut slot = tracker.admit(addr.parse().unwrap());
            if speaks && let Ok(slot) = &mut slot {
                assert!(slot.spoke());
            }
            slots.push(slot);
        }
        let outcome: Vec<&str> = slots
            .iter()
            .map(|slot| match slot {
                Ok(slot) if slot.make_room.is_cancelled() => "room",
                Ok(_) => "ok",
                Err(Refusal::PerAddress) => "per",
                Err(Refusal::Total) => "total",
            })
            .collect();
        assert_eq!(outcome, expected, "{peers:?}");
        drop(slots);
        let counts = tracker.counts.lock().unwrap();
        assert_eq!((counts.total, counts.evicting), (0, 0), "every slot is given back");
        assert!(counts.per_address.is_empty() && counts.silent.is_empty());
    }

    #[test]
    fn caps_per_address_and_in_total() {
        // Everyone speaks: a full total refuses.
        check(
            limits(3, 2, true),
            &["10.0.0.1!", "10.0.0.1!", "10.0.0.1!", "10.0.0.2!", "10.0.0.3!"],
            &["ok", "ok", "per", "ok", "total"],
        );
        // Loopback is counted in the total only, unless the exemption is off.
        check(limits(3, 1, true), &["127.0.0.1!", "127.0.0.1!", "::1!", "127.0.0.1!"], &["ok", "ok", "ok", "total"]);
        check(
            limits(9, 1, false),
            &["127.0.0.1", "127.0.0.1", "127.0.0.2", "::ffff:127.0.0.2"],
            &["ok", "per", "ok", "per"],
        );
        // One IPv6 /64 is one address; the next /64 is another. IPv4-mapped is IPv4.
        check(
            limits(9, 2, true),
            &["2001:db8::1", "2001:db8::ffff:2", "2001:db8::3", "2001:db8:0:1::1"],
            &["ok", "ok", "per", "ok"],
        );
        check(limits(9, 1, true), &["::ffff:10.0.0.1", "10.0.0.1"], &["ok", "per"]);
    }

    #[test]
    fn a_full_total_closes_the_longest_silent_connection_to_make_room() {
        // The oldest silent one goes first; one that spoke is never chosen.
        check(
            limits(3, 9, true),
            &["10.0.0.1!", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"],
            &["ok", "room", "room", "ok", "ok"],
        );
        // Nothing silent left to close: refused.
        check(limits(2, 9, true), &["10.0.0.1!", "10.0.0.2!", "10.0.0.3"], &["ok", "ok", "total"]);
        // An address at its own cap cannot make room at others' expense.
        check(limits(2, 1, true), &["10.0.0.1", "10.0.0.2", "10.0.0.2"], &["ok", "ok", "per"]);
        // A connection chosen to make room cannot then count as having spoken.
        let tracker = Arc::new(Tracker::new(limits(1, 9, true)));
        let mut first = tracker.admit("10.0.0.1".parse().unwrap()).unwrap();
        let second = tracker.admit("10.0.0.2".parse().unwrap()).unwrap();
        assert!(first.make_room.is_cancelled() && !first.spoke());
        // Until their sockets close, the connections making room still count, beside the cap.
        let third = tracker.admit("10.0.0.3".parse().unwrap()).unwrap();
        assert!(second.make_room.is_cancelled() && !third.make_room.is_cancelled());
        let counts = tracker.counts.lock().unwrap();
        assert_eq!((counts.total, counts.evicting), (3, 2));
        drop(counts);
        drop((first, second, third));
        let counts = tracker.counts.lock().unwrap();
        assert_eq!((counts.total, counts.evicting, counts.silent.len()), (0, 0, 0));
    }

    #[test]
    fn the_total_follows_the_open_file_limit_unless_set() {
        let settings = |max_total| ConnectionSettings {
            first_byte_timeout: Duration::from_secs(10),
            max_total,
            max_per_ip: 256,
            exempt_loopback: true,
        };
        for (open_files, expected) in [(1024, 672), (65_536, 49_056), (1 << 20, 786_336), (64, 16)] {
            assert_eq!(connection_limits(&settings(None), open_files).unwrap().max_total, expected, "{open_files}");
        }
        assert_eq!(connection_limits(&settings(Some(64)), 64).unwrap().max_total, 64);
        let err = connection_limits(&settings(Some(65)), 64).unwrap_err().to_string();
        assert!(err.contains("CONCORD_MAX_CONNECTIONS") && err.contains("64"), "{err}");
    }

    #[test]
    fn refusals_are_valid_http_with_the_api_error_shape() {
        for refusal in [Refusal::Total, Refusal::PerAddress] {
            let response = String::from_utf8(refusal.response()).unwrap();
            let (head, body) = response.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
            assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["code"], "too_many_connections");
        }
    }
}
