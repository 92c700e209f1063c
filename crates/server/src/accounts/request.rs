//! Extractors for who is asking: the client address that keys rate limits, and the user agent
//! stored with sign-in devices.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::client_addr::{ClientAddr, address_key};

/// The client's address as rate-limit key: the forwarded one behind a trusted proxy (see
/// [`crate::client_addr`]), keyed by its IPv6 /64 so one customer's block is one client.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientIp, Self::Rejection> {
        let ip = parts.extensions.get::<ClientAddr>().map(|c| address_key(c.ip).to_string());
        Ok(ClientIp(format!("ip:{}", ip.unwrap_or_default())))
    }
}

/// The `User-Agent` header, truncated, stored with sign-in devices for their owner to recognise.
#[derive(Debug, Clone)]
pub struct UserAgent(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for UserAgent {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<UserAgent, Self::Rejection> {
        let agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
        Ok(UserAgent(agent.map(|a| truncate(a, 256))))
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
