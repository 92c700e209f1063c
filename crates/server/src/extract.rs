//! Request extractors that turn raw input into trusted values or a precise [`ApiError`].

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use concord_core::token::TokenHash;
use concord_store::Principal;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::clock;
use crate::error::ApiError;

/// A JSON body. Unlike `axum::Json` it accepts bodies without a JSON content type (the original
/// servers did, and some clients omit it) and it tells a second JSON value (`trailing_json`) apart
/// from malformed JSON (`invalid_json`). The size limit is the router's `DefaultBodyLimit`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub(crate) fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", "request body too large")
    } else {
        ApiError::bad_request("invalid_request", "could not read request body")
    }
}

/// Parses exactly one JSON value; anything but whitespace after it is `trailing_json`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value =
        T::deserialize(&mut de).map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON: {e}")))?;
    de.end().map_err(|_| ApiError::bad_request("trailing_json", "request body must contain a single JSON value"))?;
    Ok(value)
}

/// The bearer token of a request: `Authorization: Bearer <t>`, else the `token` query parameter
/// (browsers cannot set headers on WebSocket upgrades, so Diaryx passes it there).
pub fn bearer_token(parts: &Parts) -> Option<String> {
    let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Some(value) = header {
        let (scheme, token) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty());
    }
    query_param(parts.uri.query()?, "token").filter(|t| !t.is_empty())
}

/// The hash of the request's bearer token, the form every lookup uses. Long-lived connections
/// (WebSockets, event streams) keep it to re-check their credentials later.
pub fn token_hash(parts: &Parts) -> Result<TokenHash, ApiError> {
    bearer_token(parts).map(|t| TokenHash::of(&t)).ok_or_else(|| ApiError::unauthorized("API key required"))
}

/// The first value of `name` in a query string, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query_pairs(query).find(|pair| pair.name == name).map(|pair| pair.value.into_owned())
}

/// One `name=value` pair of a query string: as sent, and decoded.
#[derive(Debug, PartialEq)]
pub struct QueryPair<'a> {
    /// The pair exactly as it appears in the URL (without the `&`).
    pub raw: &'a str,
    pub name: std::borrow::Cow<'a, str>,
    pub value: std::borrow::Cow<'a, str>,
}

/// The pairs of a query string, names and values decoded as forms are (`+` is a space, then
/// `%XX`), which is how axum's `Query` reads them too. Authentication ([`query_param`]) and log
/// redaction (`logging::redact_uri`) both read names through this one function, so any spelling
/// of `token` that authenticates is a spelling that gets redacted.
pub fn query_pairs(query: &str) -> impl Iterator<Item = QueryPair<'_>> {
    query.split('&').filter_map(|raw| {
        // One pair in, one pair out: the split on `&` above is form_urlencoded's own.
        let (name, value) = form_urlencoded::parse(raw.as_bytes()).next()?;
        Some(QueryPair { raw, name, value })
    })
}

/// How stale `last_seen_at` may get before a request refreshes it. Without this, every
/// authenticated read would become a durable write.
const TOUCH_INTERVAL_SECS: i64 = 60;

/// The authenticated caller. Revocation and blocking are read from the database on every
/// request, so they take effect on the very next one.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(state, &token_hash(parts)?).await.map(Auth)
    }
}

/// The one rule of every credential, bearer or cookie: the token names a live device of an
/// unblocked user. Refreshes the device's last-seen time now and then. Also for tokens that arrive
/// outside a request's headers (a Hocuspocus provider's `Auth` message).
pub async fn authenticate(state: &AppState, token: &TokenHash) -> Result<Principal, ApiError> {
    let now = clock::now();
    let principal =
        state.store.authenticate(token, now).await?.ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
    if principal.device.revoked_at.is_some() {
        return Err(ApiError::unauthorized("device revoked"));
    }
    if principal.user.blocked {
        return Err(ApiError::forbidden("user blocked"));
    }
    if now - principal.device.last_seen_at >= TOUCH_INTERVAL_SECS {
        // Last-seen is a courtesy for the device list, not part of the request: if it cannot
        // be written (a full disk), reads must still be served, so the failure is only logged.
        if let Err(err) = state.store.touch_device(&principal.device.id, now).await {
            tracing::warn!(error = %err, device = %principal.device.id, "could not record last seen");
        }
    }
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Body {
        a: i64,
    }

    fn check(input: &str, expected: Result<i64, &str>) {
        let got = parse_json::<Body>(input.as_bytes()).map(|b| b.a).map_err(|e| e.code());
        assert_eq!(got, expected, "input {input:?}");
    }

    #[test]
    fn json_errors_are_precise() {
        check(r#"{"a": 1}"#, Ok(1));
        check("  {\"a\": 1, \"unknown\": true}\n", Ok(1));
        check(r#"{"a": 1"#, Err("invalid_json"));
        check(r#"{"a": "x"}"#, Err("invalid_json"));
        check("", Err("invalid_json"));
        check(r#"{"a": 1} {"a": 2}"#, Err("trailing_json"));
        check(r#"{"a": 1}x"#, Err("trailing_json"));
    }

    fn parts(uri: &str, auth: Option<&str>) -> Parts {
        let mut builder = axum::http::Request::builder().uri(uri);
        if let Some(value) = auth {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bearer_comes_from_the_header_or_the_query() {
        assert_eq!(bearer_token(&parts("/x", Some("Bearer abc"))).as_deref(), Some("abc"));
        assert_eq!(bearer_token(&parts("/x", Some("bearer abc"))).as_deref(), Some("abc"));
        assert_eq!(bearer_token(&parts("/x", Some("Basic abc"))), None);
        assert_eq!(bearer_token(&parts("/x", Some("Bearer "))), None);
        assert_eq!(bearer_token(&parts("/sync?doc=d&token=a%2Bb", None)).as_deref(), Some("a+b"));
        assert_eq!(bearer_token(&parts("/sync?doc=d", None)), None);
        assert_eq!(bearer_token(&parts("/auth/me?%74oken=abc", None)).as_deref(), Some("abc"));
        assert_eq!(bearer_token(&parts("/auth/me?TOKEN=abc", None)), None, "names are case-sensitive");
    }

    #[test]
    fn query_pairs_decode_names_and_values_and_keep_the_raw_pair() {
        let pairs: Vec<(&str, String, String)> = query_pairs("a=1&&%74oken=x%2By&b+c=d+e&flag&%zz=%")
            .map(|p| (p.raw, p.name.into(), p.value.into()))
            .collect();
        let expected = [
            ("a=1", "a", "1"),
            ("%74oken=x%2By", "token", "x+y"),
            ("b+c=d+e", "b c", "d e"),
            ("flag", "flag", ""),
            ("%zz=%", "%zz", "%"),
        ];
        let expected: Vec<(&str, String, String)> =
            expected.iter().map(|&(raw, n, v)| (raw, n.to_owned(), v.to_owned())).collect();
        assert_eq!(pairs, expected);
    }
}
