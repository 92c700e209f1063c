//! The delivery worker: claims due deliveries from the outbox, sends each signed body with a
//! per-request timeout and at most [`CONCURRENCY`] requests at once, and records the attempt;
//! failures are retried on the backoff of `concord_core::webhook::next_attempt`, then given up.
//! Every node runs one; claims keep two nodes from sending one delivery at the same time.
//!
//! Server-side request forgery: only `http`/`https` URLs are accepted ([`check_url`]), redirects
//! are not followed, no proxy is used, and unless `WEBHOOK_ALLOW_PRIVATE` is set, a hook never
//! connects to a loopback, private or link-local address: literal addresses are refused, and host
//! names are resolved by [`Guarded`], which drops such addresses, so the address checked is the
//! address connected to (no DNS rebinding between check and use).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use concord_core::code::CodeKey;
use concord_core::webhook;
use concord_store::{Attempt, DueDelivery, Store};
use reqwest::Url;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::config::WebhookSettings;

/// Requests in flight at once per node: a few slow receivers cannot hold every delivery up, and a
/// node never opens more than this many outgoing connections for hooks.
const CONCURRENCY: usize = 8;
/// How often the outbox is looked at when nothing woke the worker: retries come due, and other
/// nodes' events arrive, without a wake-up of this node.
const POLL: Duration = Duration::from_secs(1);
/// Finished deliveries stay in their hook's log this long.
const LOG_RETENTION_SECS: i64 = 7 * 86_400;
/// Longest error text kept in the log.
const MAX_ERROR_CHARS: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("url must be an absolute http:// or https:// URL without credentials")]
    Invalid,
    #[error("url names a loopback, private or link-local address, which webhooks may not reach")]
    Private,
}

/// Whether a hook may be registered for `url` (see the module docs).
pub fn check_url(url: &str, allow_private: bool) -> Result<Url, UrlError> {
    let parsed = Url::parse(url).map_err(|_| UrlError::Invalid)?;
    let plain = matches!(parsed.scheme(), "http" | "https")
        && parsed.host().is_some()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && url.len() <= 2048;
    if !plain {
        return Err(UrlError::Invalid);
    }
    if !allow_private && literal_ip(&parsed).is_some_and(webhook::is_private) {
        return Err(UrlError::Private);
    }
    Ok(parsed)
}

/// The host as an address, if it is one (the parser has already normalised spellings such as
/// `0x7f.1` to `127.0.0.1`).
fn literal_ip(url: &Url) -> Option<IpAddr> {
    url.host_str()?.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// Resolves host names, keeping only the addresses a hook may reach.
struct Guarded {
    allow_private: bool,
}

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found.filter(|a| allow_private || !webhook::is_private(a.ip())).collect();
            if allowed.is_empty() {
                return Err(format!("{} resolves to no address webhooks may reach", name.as_str()).into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn client(settings: &WebhookSettings) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(Guarded { allow_private: settings.allow_private }))
        .user_agent(concat!("Concord-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client of these settings builds: rustls with ring and the webpki roots")
}

pub(super) async fn run(
    store: Arc<dyn Store>,
    key: CodeKey,
    settings: WebhookSettings,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let client = client(&settings);
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    // A claim outlives its request by a margin for the store write that records it; a node
    // that dies holding claims only delays them by this much.
    let lease = settings.timeout.as_secs() as i64 + 5;
    let mut last_prune = 0;
    loop {
        let now = clock::now();
        if now - last_prune >= 3600 {
            last_prune = now;
            if let Err(err) = store.prune_deliveries(now - LOG_RETENTION_SECS).await {
                tracing::warn!(error = %err, "pruning the webhook delivery log failed");
            }
        }
        let free = slots.available_permits();
        let claim = uuid::Uuid::new_v4().simple().to_string();
        let due = match free {
            0 => Vec::new(),
            free => store.claim_deliveries(&claim, now, now + lease, free as i64).await.unwrap_or_else(|err| {
                tracing::warn!(error = %err, "claiming webhook deliveries failed");
                Vec::new()
            }),
        };
        let busy = due.len() == free;
        for delivery in due {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let (store, client, key, claim) = (store.clone(), client.clone(), key.clone(), claim.clone());
            tokio::spawn(async move {
                attempt(&*store, &client, &key, &settings, &claim, delivery).await;
                drop(slot);
            });
        }
        if busy {
            // Every slot was taken: wait for one to free before claiming more.
            let Ok(slot) = slots.acquire().await else { return };
            drop(slot);
            continue;
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn attempt(
    store: &dyn Store,
    client: &reqwest::Client,
    key: &CodeKey,
    settings: &WebhookSettings,
    claim: &str,
    delivery: DueDelivery,
) {
    let secret = webhook::secret(key, &delivery.hook_id, &delivery.salt);
    // Checked again: private addresses may have been allowed when the hook was made.
    let sent = match check_url(&delivery.url, settings.allow_private) {
        Ok(_) => send(client, &delivery, &secret).await.map_err(|err| error_text(&err)),
        Err(err) => Err(err.to_string()),
    };
    let now = clock::now();
    let retry_at = webhook::next_attempt(delivery.created_at, delivery.attempts + 1, now, settings.retry_base_secs);
    let error;
    let outcome = match sent {
        Ok(status) if (200..300).contains(&status) => Attempt::Delivered { status },
        Ok(status) => {
            error = format!("the receiver answered HTTP {status}");
            Attempt::Failed { status: Some(status), error: &error, retry_at }
        }
        Err(text) => {
            error = text;
            Attempt::Failed { status: None, error: &error, retry_at }
        }
    };
    let label = match outcome {
        Attempt::Delivered { .. } => "delivered",
        Attempt::Failed { retry_at: Some(_), .. } => "retrying",
        Attempt::Failed { retry_at: None, .. } => "given_up",
    };
    metrics::counter!("concord_webhook_attempts_total", "outcome" => label).increment(1);
    if let Err(err) = store.record_attempt(&delivery.id, claim, outcome, now).await {
        // The claim lapses and the delivery is sent again, with the same id.
        tracing::warn!(delivery = %delivery.id, error = %err, "recording a webhook attempt failed");
    }
}

/// Sends one delivery; the receiver's status, or why there was none.
async fn send(client: &reqwest::Client, delivery: &DueDelivery, secret: &str) -> Result<u16, reqwest::Error> {
    let response = client
        .post(&delivery.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("concord-signature", webhook::signature(secret, delivery.body.as_bytes()))
        .header("concord-delivery", &delivery.id)
        .header("concord-event", &delivery.event)
        .body(delivery.body.clone())
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// The error and its causes on one line, cut to [`MAX_ERROR_CHARS`].
fn error_text(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() { "timed out".to_owned() } else { err.to_string() };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(MAX_ERROR_CHARS).collect()
}
