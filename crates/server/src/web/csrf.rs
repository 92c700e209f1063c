//! Cross-site request forgery: every form, and every mutating request that a cookie could
//! authenticate, must come from one of our own pages.
//!
//! Two checks, both needed: the request's `Origin` (or, without one, its `Referer`) is this
//! server, and it carries the CSRF token, either as the `csrf_token` form field or the
//! `X-CSRF-Token` header, equal to the `csrf_token` cookie (double submit: another site can make
//! a browser send our cookie, but cannot read it to copy it into the request). The cookie is set
//! on the first response to a browser that lacks one and is stable after that, so a page in one
//! tab never invalidates another tab's form.
//!
//! [`protect`] runs for every route (see `app.rs`), so no handler can forget it. It checks every
//! unsafe request that carries cookies, and every form unless it carries a bearer credential (an
//! `Authorization` header or a `token` query parameter) and no cookie: API clients without
//! cookies have no ambient authority to abuse, and a cookie is never trusted because a bearer
//! token came along.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use concord_core::token::{NewToken, TokenFormat, constant_time_eq};
use cookie::{Cookie, SameSite};

use crate::app::{AppState, JSON_BODY_LIMIT};
use crate::error::ApiError;
use crate::web::page;
use crate::web::session::{header_value, read_cookie, secure};

/// The cookie holding the token, the form field and the header that repeat it.
pub const COOKIE: &str = "csrf_token";
pub const FIELD: &str = "csrf_token";
pub const HEADER: &str = "x-csrf-token";

/// How long the CSRF cookie lives: long enough that an open tab's forms keep working.
const MAX_AGE_SECS: i64 = 30 * 86_400;

/// The request's CSRF token, for pages to put in their forms.
#[derive(Debug, Clone)]
pub struct CsrfToken(String);

impl CsrfToken {
    pub fn value(&self) -> &str {
        &self.0
    }

    /// For pages without forms rendered where no request's token is at hand (404, refusals).
    pub fn none() -> CsrfToken {
        CsrfToken(String::new())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<CsrfToken>().cloned().ok_or_else(|| ApiError::internal("csrf::protect is not applied"))
    }
}

/// A token we issued: 64 hex characters (anything else in the cookie is replaced).
fn well_formed(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The middleware: refuses forged requests with 403 before any handler runs, and gives every
/// request a [`CsrfToken`] (setting the cookie when the browser had none).
pub async fn protect(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let cookie = read_cookie(req.headers(), COOKIE).filter(|t| well_formed(t));
    if needs_check(&req) {
        let (checked, result) = check(req, cookie.as_deref()).await;
        req = checked;
        if let Err(reason) = result {
            tracing::info!(reason, "cross-site request refused");
            return refusal(&state, &req, reason);
        }
    }
    let (token, fresh) = match cookie {
        Some(token) => (token, false),
        None => (NewToken::generate(TokenFormat::Hex).plaintext, true),
    };
    req.extensions_mut().insert(CsrfToken(token.clone()));
    let mut response = next.run(req).await;
    // Only pages need the cookie (their forms repeat it); API clients are not sent one.
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if fresh && is_page {
        let cookie = Cookie::build((COOKIE, token))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(secure(&state))
            .max_age(cookie::time::Duration::seconds(MAX_AGE_SECS));
        response.headers_mut().append(header::SET_COOKIE, header_value(&cookie.build()));
    }
    response
}

/// Unsafe methods that carry cookies (whatever else they carry: a page reads the cookie, not a
/// bearer token an attacker may add), and forms without a bearer credential.
fn needs_check(req: &Request) -> bool {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
        return false;
    }
    let headers = req.headers();
    if headers.contains_key(header::COOKIE) {
        return true;
    }
    let bearer = headers.contains_key(header::AUTHORIZATION)
        || req.uri().query().is_some_and(|q| crate::extract::query_param(q, "token").is_some());
    !bearer && form_kind(headers).is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FormKind {
    UrlEncoded,
    Multipart,
}

/// The content types an HTML form can send without script (`text/plain` aside, which no route
/// reads as a form).
fn form_kind(headers: &HeaderMap) -> Option<FormKind> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?.to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        Some(FormKind::UrlEncoded)
    } else if content_type.starts_with("multipart/form-data") {
        Some(FormKind::Multipart)
    } else {
        None
    }
}

/// Checks origin and token; gives the request back (with its body, if it was read).
async fn check(req: Request, cookie: Option<&str>) -> (Request, Result<(), &'static str>) {
    // HTTP/2 carries the host in the URI, not in a Host header.
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let host = host.or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    if let Err(reason) = same_origin(req.headers(), host.as_deref()) {
        return (req, Err(reason));
    }
    let header_token = req.headers().get(HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (req, submitted) = match (header_token, form_kind(req.headers())) {
        (Some(token), _) => (req, Some(token)),
        // The body of a urlencoded form is read here (within the router's JSON limit) and put
        // back, so the handler reads it as if untouched. Multipart bodies can be large uploads
        // and are not buffered: they must send the header.
        (None, Some(FormKind::UrlEncoded)) => {
            let (parts, body) = req.into_parts();
            match axum::body::to_bytes(body, JSON_BODY_LIMIT).await {
                Ok(bytes) => {
                    let token = form_field(&bytes, FIELD);
                    (Request::from_parts(parts, Body::from(bytes)), token)
                }
                Err(_) => return (Request::from_parts(parts, Body::empty()), Err("unreadable form")),
            }
        }
        (None, _) => (req, None),
    };
    let result = match (cookie, submitted) {
        (Some(cookie), Some(submitted)) if constant_time_eq(cookie.as_bytes(), submitted.as_bytes()) => Ok(()),
        (None, _) => Err("no csrf cookie"),
        (_, None) => Err("no csrf token"),
        _ => Err("csrf token mismatch"),
    };
    (req, result)
}

fn form_field(body: &Bytes, name: &str) -> Option<String> {
    form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The request names this server as its origin: `Origin`, else `Referer`, must have the host
/// the request was sent to. Browsers send `Origin` with every cross-origin request and every
/// POST, and `Sec-Fetch-Site` where they support it, which settles the question by itself.
fn same_origin(headers: &HeaderMap, host: Option<&str>) -> Result<(), &'static str> {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|site| site == "cross-site" || site == "same-site") {
        return Err("cross-site fetch");
    }
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .ok_or("no origin")?;
    let host = host.ok_or("no host")?;
    match authority(origin) {
        Some(authority) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err("foreign origin"),
    }
}

/// `host[:port]` of an origin or URL (`null` and relative references have none).
fn authority(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|a| !a.is_empty() && !a.contains('@'))
}

/// 403: a page for forms (a person submitted it), the JSON error otherwise.
fn refusal(state: &AppState, req: &Request, reason: &'static str) -> Response {
    let message =
        "This request did not come from this site's own page, so it was refused. Reload the page and try again.";
    if form_kind(req.headers()).is_some() && !req.uri().path().starts_with("/api/") {
        return page::message(state, StatusCode::FORBIDDEN, &CsrfToken::none(), "Request refused", message);
    }
    let mut response = ApiError::forbidden(format!("cross-site request refused ({reason})")).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_origin(headers: &[(&str, &str)], expected: Result<(), &str>) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let host = map.get(header::HOST).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(same_origin(&map, host.as_deref()), expected, "{headers:?}");
    }

    #[test]
    fn only_our_own_origin_passes() {
        let host = ("host", "concord.example:8443");
        check_origin(&[host, ("origin", "https://concord.example:8443")], Ok(()));
        check_origin(&[host, ("origin", "http://CONCORD.example:8443")], Ok(()));
        check_origin(&[host, ("referer", "https://concord.example:8443/login?x=1")], Ok(()));
        check_origin(&[host, ("origin", "https://concord.example:8443"), ("sec-fetch-site", "same-origin")], Ok(()));
        check_origin(&[host, ("origin", "https://evil.example")], Err("foreign origin"));
        check_origin(&[host, ("origin", "https://concord.example")], Err("foreign origin"));
        check_origin(&[host, ("origin", "https://concord.example:8443.evil")], Err("foreign origin"));
        check_origin(&[host, ("origin", "https://concord.example:8443@evil")], Err("foreign origin"));
        check_origin(&[host, ("origin", "null")], Err("foreign origin"));
        check_origin(
            &[host, ("origin", "https://concord.example:8443"), ("sec-fetch-site", "cross-site")],
            Err("cross-site fetch"),
        );
        check_origin(&[host], Err("no origin"));
        check_origin(&[("origin", "https://concord.example:8443")], Err("no host"));
    }

    #[test]
    fn tokens_are_our_own_shape() {
        assert!(well_formed(&"a1".repeat(32)));
        assert!(!well_formed("short"));
        assert!(!well_formed(&"zz".repeat(32)));
    }
}
