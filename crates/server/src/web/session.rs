//! Session cookies. A browser session is a Concord device of kind `session` with a `web` token,
//! created and revoked by the accounts module like every other device, so it appears in the
//! person's device list, counts against the device cap, and its token is stored only as a hash.
//! The cookie holds the token's one plaintext copy.
//!
//! [`SessionCookie`] is the cookie's name and attributes; the admin console defines its own
//! (`admin_session`) with the same type. [`UserSession`] is the extractor of people's pages.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use concord_core::token::TokenHash;
use concord_store::Principal;
use cookie::{Cookie, SameSite};

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::authenticate;

/// A session cookie's name and scope.
#[derive(Debug, Clone, Copy)]
pub struct SessionCookie {
    pub name: &'static str,
    /// The paths the browser sends it to: `/` for people, `/admin` for the admin console.
    pub path: &'static str,
}

/// People's session, sent to every page.
pub const USER_SESSION: SessionCookie = SessionCookie { name: "user_session", path: "/" };

/// Whether cookies must be `Secure`: when people reach the server over https. The public URL is
/// the live setting, so an operator who moves the server behind https in the console gets
/// `Secure` cookies from the next response on.
pub fn secure(state: &AppState) -> bool {
    state.settings.public_url().starts_with("https://")
}

impl SessionCookie {
    /// The `Set-Cookie` value that stores `token` for `max_age_secs`: HttpOnly (no script reads
    /// it), SameSite=Lax (other sites' forms and fetches do not carry it; links still do), Secure
    /// behind https.
    pub fn set(&self, state: &AppState, token: &str, max_age_secs: i64) -> HeaderValue {
        let cookie = Cookie::build((self.name, token))
            .path(self.path)
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(secure(state))
            .max_age(cookie::time::Duration::seconds(max_age_secs));
        header_value(&cookie.build())
    }

    /// The `Set-Cookie` value that deletes the cookie.
    pub fn clear(&self, state: &AppState) -> HeaderValue {
        self.set(state, "", 0)
    }

    /// The cookie's value in a request, if sent.
    pub fn read(&self, headers: &HeaderMap) -> Option<String> {
        read_cookie(headers, self.name)
    }

    /// The signed-in principal, if the request carries this cookie with a token of a live device
    /// of an unblocked user; `Ok(None)` for no cookie or one that no longer signs in.
    pub async fn principal(&self, state: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
        let Some(token) = self.read(headers).filter(|t| !t.is_empty()) else { return Ok(None) };
        match authenticate(state, &TokenHash::of(&token)).await {
            Ok(principal) => Ok(Some(principal)),
            Err(err) if err.status().is_client_error() => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// The first cookie called `name` among the request's `Cookie` headers.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A cookie as a header value; names and values are ours (tokens are hex), so always valid.
pub fn header_value(cookie: &Cookie<'_>) -> HeaderValue {
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A signed-in person on their pages; without a session the page redirects to `/login`.
#[derive(Debug, Clone)]
pub struct UserSession(pub Principal);

/// Why a page that needs a session did not get one.
pub enum NoSession {
    SignIn,
    Failed(ApiError),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::SignIn => Redirect::to("/login").into_response(),
            NoSession::Failed(err) => err.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for UserSession {
    type Rejection = NoSession;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NoSession> {
        match USER_SESSION.principal(state, &parts.headers).await {
            Ok(Some(principal)) => Ok(UserSession(principal)),
            Ok(None) => Err(NoSession::SignIn),
            Err(err) => Err(NoSession::Failed(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for c in cookies {
            map.append(header::COOKIE, HeaderValue::from_str(c).unwrap());
        }
        map
    }

    fn check(cookies: &[&str], expected: Option<&str>) {
        assert_eq!(read_cookie(&headers(cookies), "user_session").as_deref(), expected, "{cookies:?}");
    }

    #[test]
    fn cookies_are_read_by_exact_name_from_any_header() {
        check(&[], None);
        check(&["user_session=abc"], Some("abc"));
        check(&["a=1; user_session=abc; b=2"], Some("abc"));
        check(&["a=1", "user_session=abc"], Some("abc"));
        check(&["xuser_session=abc; user_sessionx=d"], None);
        check(&["garbage; user_session=abc"], Some("abc"));
    }
}
