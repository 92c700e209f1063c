//! The bus on Redis pub/sub: one connection subscribed to every [`Topic`], one (a
//! `ConnectionManager`, which reconnects by itself) publishing. Redis pub/sub keeps nothing: what
//! is published while a node is not subscribed never reaches it, which the subscriber reports as
//! [`Heard::Missed`] when it is subscribed again.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManagerConfig;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Bus, Heard, Topic};

/// Messages waiting to be published at most; past it (Redis slow or gone) new ones are dropped,
/// which receivers make up for by catching up (see `bus` module docs).
const PUBLISH_QUEUE: usize = 4096;
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
    queue: mpsc::Sender<(Topic, Vec<u8>)>,
}

impl Bus for RedisBus {
    fn publish(&self, topic: Topic, payload: Vec<u8>) {
        if self.queue.try_send((topic, payload)).is_err() {
            metrics::counter!("concord_bus_dropped_total").increment(1);
        }
    }
}

impl RedisBus {
    /// Starts publishing and subscribing; neither needs Redis to be up yet (both retry). What
    /// the subscription hears goes to `heard`. Both tasks end at `shutdown`.
    pub fn start(url: &str, heard: mpsc::Sender<Heard>, shutdown: CancellationToken) -> Result<RedisBus, BadUrl> {
        let client = redis::Client::open(url).map_err(BadUrl)?;
        let (queue, pending) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publish(client.clone(), pending, shutdown.clone()));
        tokio::spawn(subscribe(client, heard, shutdown));
        Ok(RedisBus { queue })
    }
}

async fn publish(client: redis::Client, mut pending: mpsc::Receiver<(Topic, Vec<u8>)>, shutdown: CancellationToken) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(1);
    let mut connection = None;
    loop {
        let (topic, payload) = tokio::select! {
            next = pending.recv() => match next { Some(next) => next, None => return },
            () = shutdown.cancelled() => return,
        };
        if connection.is_none() {
            connection = client.get_connection_manager_with_config(config.clone()).await.ok();
        }
        let Some(manager) = connection.as_mut() else {
            metrics::counter!("concord_bus_dropped_total").increment(1);
            continue;
        };
        let sent: redis::RedisResult<()> =
            redis::cmd("PUBLISH").arg(topic.name()).arg(payload).query_async(manager).await;
        if let Err(err) = sent {
            tracing::debug!(error = %err, "publishing on the bus failed");
            metrics::counter!("concord_bus_dropped_total").increment(1);
        }
    }
}

async fn subscribe(client: redis::Client, heard: mpsc::Sender<Heard>, shutdown: CancellationToken) {
    loop {
        let subscribed = async {
            let mut pubsub = tokio::time::timeout(TIMEOUT, client.get_async_pubsub()).await.ok()?.ok()?;
            let names: Vec<&str> = Topic::ALL.iter().map(|t| t.name()).collect();
            tokio::time::timeout(TIMEOUT, pubsub.subscribe(&names)).await.ok()?.ok()?;
            Some(pubsub.split())
        };
        let connected = tokio::select! {
            connected = subscribed => connected,
            () = shutdown.cancelled() => return,
        };
        if let Some((mut sink, mut stream)) = connected {
            tracing::info!("subscribed to the bus");
            // Whatever was published before this subscription is lost to this node.
            if heard.send(Heard::Missed).await.is_err() {
                return;
            }
            let mut ping = tokio::time::interval(PING_INTERVAL);
            loop {
                tokio::select! {
                    message = stream.next() => match message {
                        Some(message) => {
                            if heard.send(Heard::Message(message.get_payload_bytes().to_vec())).await.is_err() {
                                return;
                            }
                        }
                        None => break,
                    },
                    _ = ping.tick() => {
                        let answered: Option<redis::RedisResult<String>> =
                            tokio::time::timeout(TIMEOUT, sink.ping()).await.ok();
                        if !matches!(answered, Some(Ok(_))) {
                            break;
                        }
                    }
                    () = shutdown.cancelled() => return,
                }
            }
            tracing::warn!("lost the bus; catching up from the database until it is back");
            if heard.send(Heard::Down).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
