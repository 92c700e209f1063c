//! Webhook rules: the event names a hook may subscribe to, the signature of a delivery, when a
//! failed delivery is tried again (and when it is given up), and which addresses a hook may not
//! reach.

use std::net::IpAddr;

use crate::code::CodeKey;
use crate::hmac::hmac_sha256;

/// Every event a hook may subscribe to, in the spelling of the wire and of the store.
pub const EVENTS: &[&str] = &[DOCUMENT_UPDATED, OPLOG_PUSHED, SHARE_CREATED, SHARE_REVOKED];
pub const DOCUMENT_UPDATED: &str = "document.updated";
pub const OPLOG_PUSHED: &str = "oplog.pushed";
pub const SHARE_CREATED: &str = "share.created";
pub const SHARE_REVOKED: &str = "share.revoked";

/// How long a delivery is tried before it is given up: a receiver down for an afternoon still
/// gets everything once it is back, and the outbox of a receiver gone for good stays bounded.
pub const RETRY_FOR_SECS: i64 = 6 * 3600;
/// The longest wait between two attempts, so a receiver that returns is reached within this.
pub const MAX_DELAY_SECS: i64 = 30 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    #[error("events must name at least one of {}", EVENTS.join(", "))]
    Empty,
    #[error("unknown event {0:?}; known events: {known}", known = EVENTS.join(", "))]
    Unknown(String),
}

/// A hook's subscription: known names, each once, in [`EVENTS`] order.
pub fn parse_events<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<&'static str>, EventsError> {
    let mut chosen = Vec::new();
    for name in names {
        let known = EVENTS.iter().find(|e| **e == name).ok_or_else(|| EventsError::Unknown(name.to_owned()))?;
        chosen.push(*known);
    }
    let events: Vec<&'static str> = EVENTS.iter().copied().filter(|e| chosen.contains(e)).collect();
    if events.is_empty() {
        return Err(EventsError::Empty);
    }
    Ok(events)
}

/// The `Concord-Signature` header value: `sha256=` and the hex HMAC-SHA256 of the exact body
/// bytes under the hook's secret (as its owner was shown it).
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), body)))
}

/// A hook's secret: derived from the server key and the hook's stored salt, so the database
/// holds only the salt and a copy of it alone cannot forge deliveries.
pub fn secret(key: &CodeKey, hook_id: &str, salt: &str) -> String {
    format!("whsec_{}", hex::encode(key.derive(format!("webhook-secret:{hook_id}:{salt}").as_bytes())))
}

/// When to try a delivery again after its `attempts`-th failure (unix seconds), or `None` to
/// give it up: `base_secs` doubling per attempt, at most [`MAX_DELAY_SECS`], until the delivery
/// is [`RETRY_FOR_SECS`] old.
pub fn next_attempt(created_at: i64, attempts: u32, now: i64, base_secs: i64) -> Option<i64> {
    let doubling = 1i64.checked_shl(attempts.saturating_sub(1).min(40)).unwrap_or(i64::MAX);
    let delay = base_secs.max(1).saturating_mul(doubling).min(MAX_DELAY_SECS);
    let at = now.saturating_add(delay);
    (at <= created_at.saturating_add(RETRY_FOR_SECS)).then_some(at)
}

/// `wh_` and 24 hex characters: a hook's id.
pub fn new_hook_id() -> String {
    format!("wh_{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// `evt_` and 32 hex characters: an event's id, unique across nodes without coordination.
pub fn new_event_id() -> String {
    format!("evt_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// 32 random bytes in hex: the stored half of a hook's secret (see [`secret`]).
pub fn new_salt() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Whether a hook may not reach `ip` unless the operator allows private addresses: loopback,
/// private, link-local (cloud metadata), carrier-grade NAT, unique-local, unspecified, multicast
/// and broadcast addresses, and IPv4 addresses written as IPv6.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_events(input: &[&str], expected: Result<Vec<&str>, EventsError>) {
        assert_eq!(parse_events(input.iter().copied()), expected, "input {input:?}");
    }

    #[test]
    fn events_are_known_names_each_once_in_a_fixed_order() {
        check_events(&["share.revoked", "document.updated"], Ok(vec!["document.updated", "share.revoked"]));
        check_events(&["oplog.pushed", "oplog.pushed"], Ok(vec!["oplog.pushed"]));
        check_events(&[], Err(EventsError::Empty));
        check_events(&["document.updated", "document.deleted"], Err(EventsError::Unknown("document.deleted".into())));
        check_events(&["Document.Updated"], Err(EventsError::Unknown("Document.Updated".into())));
    }

    fn check_retry(attempts: u32, now: i64, expected: Option<i64>) {
        assert_eq!(next_attempt(0, attempts, now, 10), expected, "attempts {attempts} at {now}");
    }

    #[test]
    fn retries_double_up_to_a_cap_for_six_hours() {
        check_retry(1, 0, Some(10));
        check_retry(2, 10, Some(30));
        check_retry(3, 30, Some(70));
        check_retry(9, 5000, Some(5000 + 1800));
        check_retry(60, 5000, Some(5000 + 1800));
        check_retry(20, RETRY_FOR_SECS - 1800, Some(RETRY_FOR_SECS));
        check_retry(20, RETRY_FOR_SECS - 1799, None);
        // The schedule keeps trying for at least an hour: count the attempts within it.
        let (mut at, mut attempts) = (0, 0);
        while let Some(next) = next_attempt(0, attempts + 1, at, 10) {
            (at, attempts) = (next, attempts + 1);
        }
        assert!(at >= 3600 && attempts >= 8, "last attempt at {at} after {attempts}");
    }

    #[test]
    fn signatures_are_the_hmac_of_the_exact_body() {
        // RFC 4231 case 2, as a header value.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(
            signature("Jefe", b"what do ya want for nothing? "),
            signature("Jefe", b"what do ya want for nothing?")
        );
        let key = CodeKey::generate();
        assert_eq!(secret(&key, "h1", "salt"), secret(&key, "h1", "salt"));
        assert_ne!(secret(&key, "h1", "salt"), secret(&key, "h2", "salt"));
        assert_ne!(secret(&key, "h1", "salt"), secret(&CodeKey::generate(), "h1", "salt"));
    }

    fn check_ip(ip: &str, private: bool) {
        assert_eq!(is_private(ip.parse().unwrap()), private, "{ip}");
    }

    #[test]
    fn private_addresses_are_the_ones_inside_the_network() {
        for ip in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1"] {
            check_ip(ip, true);
        }
        for ip in ["::1", "::", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "ff02::1", "255.255.255.255"] {
            check_ip(ip, true);
        }
        for ip in ["93.184.216.34", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "172.32.0.1"] {
            check_ip(ip, false);
        }
    }
}
