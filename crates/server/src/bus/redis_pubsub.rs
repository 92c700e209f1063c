//! The bus on Redis pub/sub: one connection subscribed to every [`Topic`] (RESP3, its messages
//! handed straight to the bounded `bus::queue`), one (a `ConnectionManager`, which reconnects by
//! itself) publishing. Redis pub/sub keeps nothing: what
//! is published while a node is not subscribed never reaches it, which the subscriber reports as
//! [`Heard::Missed`] when it is subscribed again.

use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use tokio_util::sync::CancellationToken;

use super::queue::{self, Offers, Outgoing, Queue};
use super::{Bus, Heard, Topic};

/// Messages waiting to be published at most; past it, or past [`PUBLISH_BYTES`] (Redis slow or
/// gone), new ones are dropped, which receivers make up for by catching up (see `bus` module
/// docs).
const PUBLISH_QUEUE: usize = 4096;
/// Bytes of messages waiting to be published at most: 256 of the largest (a commit's 64 KiB of
/// updates), so a slow Redis costs this node no more memory than that.
const PUBLISH_BYTES: usize = 16 << 20;
/// How long connecting, and each command, may take before Redis counts as unreachable.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How often the subscription is pinged: a connection that died silently (no reset from a peer
/// that vanished) is noticed within this plus [`TIMEOUT`].
const PING_INTERVAL: Duration = Duration::from_secs(2);
/// Wait between attempts to subscribe again; bounds how long after Redis returns a node hears.
const RETRY: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
#[error("invalid REDIS_URL: {0}")]
pub struct BadUrl(redis::RedisError);

pub struct RedisBus {
    queue: Offers<Outgoing>,
}

impl Bus for RedisBus {
    fn publish(&self, topic: Topic, payload: Vec<u8>) {
        // A drop is owed a notice, which the publisher sends when it next can (`publish`).
        if !self.queue.offer(Outgoing { topic, payload }) {
            metrics::counter!("concord_bus_dropped_total").increment(1);
        }
    }
}

impl RedisBus {
    /// Starts publishing and subscribing; neither needs Redis to be up yet (both retry). What
    /// the subscription hears goes to `heard`. After dropping messages (its queue full, or Redis
    /// failing), the publisher sends `notice` as soon as it can again, so other nodes catch up
    /// with what they never heard. Both tasks end at `shutdown`.
    pub fn start(
        url: &str,
        heard: Offers<Heard>,
        notice: (Topic, Vec<u8>),
        shutdown: CancellationToken,
    ) -> Result<RedisBus, BadUrl> {
        let client = redis::Client::open(url).map_err(BadUrl)?;
        let subscriber = resp3(&client)?;
        let (queue, pending) = queue::bounded(PUBLISH_QUEUE, PUBLISH_BYTES);
        tokio::spawn(publish(client, pending, notice, shutdown.clone()));
        tokio::spawn(subscribe(subscriber, heard, shutdown));
        Ok(RedisBus { queue })
    }
}

async fn publish(
    client: redis::Client,
    mut pending: Queue<Outgoing>,
    notice: (Topic, Vec<u8>),
    shutdown: CancellationToken,
) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(1);
    let mut publisher = Publisher { client, config, connection: None };
    // Whether a message was dropped since the last notice went out.
    let mut owed = false;
    loop {
        tokio::select! {
            next = pending.recv() => {
                let Some(Outgoing { topic, payload }) = next else { return };
                if !publisher.send(topic, payload).await {
                    metrics::counter!("concord_bus_dropped_total").increment(1);
                    owed = true;
                }
            }
            () = tokio::time::sleep(RETRY), if owed => {}
            () = shutdown.cancelled() => return,
        }
        // Dropped because the queue was full (counted where they were offered).
        owed |= pending.take_dropped() > 0;
        if owed {
            owed = !publisher.send(notice.0, notice.1.clone()).await;
        }
    }
}

struct Publisher {
    client: redis::Client,
    config: ConnectionManagerConfig,
    connection: Option<redis::aio::ConnectionManager>,
}

impl Publisher {
    /// Publishes on a working connection, connecting (again) once if the current one fails;
    /// false if the message could not be sent.
    async fn send(&mut self, topic: Topic, payload: Vec<u8>) -> bool {
        for _ in 0..2 {
            if self.connection.is_none() {
                self.connection = self.client.get_connection_manager_with_config(self.config.clone()).await.ok();
            }
            let Some(manager) = self.connection.as_mut() else { return false };
            let sent: redis::RedisResult<()> =
                redis::cmd("PUBLISH").arg(topic.name()).arg(&payload).query_async(manager).await;
            match sent {
                Ok(()) => return true,
                Err(err) => {
                    tracing::debug!(error = %err, "publishing on the bus failed");
                    self.connection = None;
                }
            }
        }
        false
    }
}

/// The push sender of the subscription's connection: called by the connection's reader for
/// every push, so it must not wait. Messages go to the bounded inbox (dropped there when it is
/// full); the connection's end cancels `lost`.
struct Pushes {
    arrivals: Offers<Heard>,
    lost: CancellationToken,
}

impl redis::aio::AsyncPushSender for Pushes {
    fn send(&self, info: redis::PushInfo) -> Result<(), redis::aio::SendError> {
        match info.kind {
            redis::PushKind::Message => {
                // `[channel, payload]`: the payload is moved out, not copied.
                if let Some(redis::Value::BulkString(payload)) = info.data.into_iter().nth(1)
                    && !self.arrivals.offer(Heard::Message(payload))
                {
                    metrics::counter!("concord_bus_received_dropped_total").increment(1);
                }
            }
            redis::PushKind::Disconnection => self.lost.cancel(),
            // Subscription confirmations.
            _ => {}
        }
        Ok(())
    }
}

/// The subscriber speaks RESP3, whatever the URL asks: only then does the redis crate hand each
/// message to a push sender as it is read ([`Pushes`]) instead of into an unbounded queue of its
/// own (its RESP2 `PubSub`), which grew without limit behind a slow listener. Redis 6 or later.
fn resp3(client: &redis::Client) -> Result<redis::Client, BadUrl> {
    let info = client.get_connection_info().clone();
    let settings = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
    redis::Client::open(info.set_redis_settings(settings)).map_err(BadUrl)
}

async fn subscribe(client: redis::Client, arrivals: Offers<Heard>, shutdown: CancellationToken) {
    let names: Vec<&str> = Topic::ALL.iter().map(|t| t.name()).collect();
    loop {
        let lost = CancellationToken::new();
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_push_sender(Pushes { arrivals: arrivals.clone(), lost: lost.clone() });
        let subscribed = async {
            let mut connection = client.get_multiplexed_async_connection_with_config(&config).await.ok()?;
            connection.subscribe(&names).await.ok()?;
            Some(connection)
        };
        let connected = tokio::select! {
            connected = subscribed => connected,
            () = shutdown.cancelled() => return,
        };
        if let Some(mut connection) = connected {
            tracing::info!("subscribed to the bus");
            // Whatever was published before this subscription is lost to this node.
            if arrivals.send(Heard::Missed).await.is_err() {
                return;
            }
            let mut ping = tokio::time::interval(PING_INTERVAL);
            loop {
                tokio::select! {
                    () = lost.cancelled() => break,
                    _ = ping.tick() => {
                        // Answered within the response timeout, or the connection is dead.
                        let answered: redis::RedisResult<redis::Value> =
                            redis::cmd("PING").query_async(&mut connection).await;
                        if answered.is_err() {
                            break;
                        }
                    }
                    () = shutdown.cancelled() => return,
                }
            }
            tracing::warn!("lost the bus; catching up from the database until it is back");
            if arrivals.send(Heard::Down).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
