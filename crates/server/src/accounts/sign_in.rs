//! Signing in: by a mailed link or code (Diaryx's `/auth/magic-link`, `/auth/verify`,
//! `/auth/verify-code`, and the sign-in page's "email me a link"), or by password (the user API's
//! login and the sign-in page). Each ends in a new session device with its own token.

use axum::http::StatusCode;
use concord_core::code::{MAX_WRONG_ATTEMPTS, SignInCode};
use concord_core::email::Email;
use concord_core::rate_limit::RetryAfter;
use concord_core::token::{NewToken, TokenFormat, TokenHash};
use concord_store::{DeviceKind, NewDevice, TokenKind, UserRecord};

use super::DEFAULT_WORKSPACE;
use super::credentials::check_credentials;
use super::devices::issue_device;
use super::request::{ClientIp, UserAgent};
use crate::app::AppState;
use crate::audit::{self, Entry, Event, Ip};
use crate::error::ApiError;
use crate::mail;

fn invalid_email() -> ApiError {
    ApiError::bad_request("invalid_request", "Invalid email address")
}

/// The Diaryx wording of a 429.
fn too_many(retry: RetryAfter) -> ApiError {
    ApiError::rate_limited(retry.0, "Too many requests. Please try again later.")
}

/// A sign-in link and code were made. In dev mode they are handed back instead of mailed.
pub struct LinkSent {
    pub dev: Option<(String, String)>,
}

/// Mails a sign-in link (to `APP_BASE_URL`, where the Diaryx app opens it) and a 6-digit code
/// for `email`. The send is awaited (with the mailer's timeout) because the person must learn
/// that no mail is coming.
pub async fn send_link(state: &AppState, ip: &ClientIp, email: &str, now: i64) -> Result<LinkSent, ApiError> {
    let email = Email::parse(email).map_err(|_| invalid_email())?;
    let limits = &state.accounts.limits;
    limits.magic_link_ip.check(&[&ip.0], now).map_err(too_many)?;
    limits.magic_link_email.check(&[email.as_str()], now).map_err(too_many)?;

    let token = NewToken::generate(TokenFormat::Base64Url);
    let code = SignInCode::generate();
    let minutes = u64::from(state.config.magic_link_expiry_minutes);
    let expires_at = now + 60 * minutes as i64;
    let code_hash = code.hash_for(&email, &state.accounts.code_key);
    state.store.insert_magic_token(&token.hash, &code_hash, email.as_str(), expires_at, now).await?;
    let link = format!("{}/auth/verify?token={}", state.config.app_base_url, token.plaintext);

    if state.accounts.mailer.is_dev() {
        tracing::info!(email = %email, link = %link, code = code.as_str(), "dev mode: sign-in link not mailed");
        return Ok(LinkSent { dev: Some((link, code.as_str().to_owned())) });
    }
    if let Err(err) = state.accounts.mailer.send(mail::sign_in_mail(email, &link, code.as_str(), minutes)).await {
        tracing::error!(error = %err, "sending the sign-in mail failed");
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Failed to send email"));
    }
    Ok(LinkSent { dev: None })
}

/// Spends a sign-in link's token; the address it was sent to.
pub async fn spend_link(state: &AppState, token: &str, now: i64) -> Result<String, ApiError> {
    state
        .store
        .consume_magic_token(&TokenHash::of(token), now)
        .await?
        .ok_or_else(|| ApiError::bad_request("invalid_request", "Invalid or expired link. Please request a new one."))
}

/// Checks the code from the sign-in mail for `email`, typed on a device other than the one that
/// reads the mail; the address, parsed. Wrong codes are counted per client before the store is
/// asked and given back on success, so parallel guesses get no more answers than the limit.
pub async fn spend_code(state: &AppState, ip: &ClientIp, email: &str, code: &str, now: i64) -> Result<Email, ApiError> {
    let email = Email::parse(email).map_err(|_| invalid_email())?;
    let attempt = state.accounts.limits.verify_code.reserve(&[&ip.0], now).map_err(too_many)?;
    let accepted = match SignInCode::parse(code) {
        Some(code) => {
            let hash = code.hash_for(&email, &state.accounts.code_key);
            state.store.consume_sign_in_code(email.as_str(), &hash, MAX_WRONG_ATTEMPTS, now).await?
        }
        None => false,
    };
    if !accepted {
        state
            .audit
            .record(Entry::new(Event::SignInFailed, &Ip::from(ip), "wrong sign-in code").subject(email.as_str()));
        return Err(ApiError::bad_request("invalid_request", "Invalid or expired code. Please request a new one."));
    }
    attempt.release();
    state.audit.record(Entry::new(Event::SignInCode, &Ip::from(ip), "signed in by code").actor(email.as_str()));
    Ok(email)
}

/// Who a new session is for and what it is called in their device list.
pub struct SessionFor<'a> {
    pub name: Option<String>,
    pub agent: UserAgent,
    /// How the token is spelled: base64url for Diaryx, hex for Verstak and browsers.
    pub format: TokenFormat,
    pub kind: TokenKind,
    pub user: &'a UserRecord,
}

/// A new session device for a signed-in user, expiring after `SESSION_EXPIRY_DAYS`; its token's
/// one plaintext copy, and when it expires.
pub async fn open_session(state: &AppState, session: SessionFor<'_>, now: i64) -> Result<(String, i64), ApiError> {
    let device = NewDevice {
        user_id: session.user.id.clone(),
        kind: DeviceKind::Session,
        name: session.name,
        vault_id: None,
        client_version: None,
        user_agent: session.agent.0,
    };
    let expires_at = now + i64::from(state.config.session_expiry_days) * 86_400;
    let (_, token) = issue_device(state, device, session.format, session.kind, Some(expires_at), now).await?;
    Ok((token, expires_at))
}

/// The account of an address just proven by link or code: created on first sign-in; an
/// unconfirmed registration of the address is discarded (see
/// [`concord_store::AccountStore::user_for_verified_email`]). Gets its `default` workspace.
pub async fn verified_user(state: &AppState, email: &str, now: i64) -> Result<UserRecord, ApiError> {
    let user = state.store.user_for_verified_email(email, now).await?;
    if user.blocked {
        return Err(ApiError::forbidden("user blocked"));
    }
    state.store.ensure_workspace(&user.id, DEFAULT_WORKSPACE, now).await?;
    Ok(user)
}

/// Logins are addresses or usernames; longer input is refused before anything is looked up.
const LOGIN_MAX: usize = 320;

/// The trimmed login of a password sign-in, or the 400 for missing or over-long input (the
/// Verstak wording, shared by the connection test, the user API's login and the sign-in page).
pub fn checked_login<'a>(login: &'a str, password: &str) -> Result<&'a str, ApiError> {
    let login = login.trim();
    if login.is_empty() || password.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "username and password required"));
    }
    if login.len() > LOGIN_MAX {
        return Err(ApiError::bad_request("invalid_request", "username is too long"));
    }
    Ok(login)
}

/// The password sign-in: the credential check of `login` (see [`check_credentials`]).
pub async fn password_user(
    state: &AppState,
    ip: &ClientIp,
    login: &str,
    password: String,
    now: i64,
) -> Result<UserRecord, ApiError> {
    check_credentials(state, &state.accounts.limits.login, ip, login, password, now)
        .await
        .inspect_err(|e| audit::refused_credentials(&state.audit, Event::SignInFailed, &Ip::from(ip), login, e))
}
