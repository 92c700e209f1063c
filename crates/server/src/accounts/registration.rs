//! Registration with a username and password, and the confirmation of its address: the rules
//! the JSON API (`/api/v1/auth/register`, `/confirm`) and the pages (`/register`, `/confirm`)
//! share.

use axum::http::StatusCode;
use concord_core::email::Email;
use concord_core::password::{Password, PasswordError};
use concord_core::token::{NewToken, TokenFormat, TokenHash};
use concord_core::username::Username;
use concord_store::{AccountTokenPurpose, NewUser, StoreError};

use super::DEFAULT_WORKSPACE;
use super::credentials::hash_password;
use super::limits::too_many;
use super::request::ClientIp;
use crate::app::AppState;
use crate::audit::{Entry, Event, Ip};
use crate::clock;
use crate::error::ApiError;
use crate::mail;

/// How long a confirmation link works.
const CONFIRM_TTL_SECS: i64 = 48 * 3600;

/// The 400 of a password outside the policy, with the policy's own code.
pub fn password_error(err: PasswordError) -> ApiError {
    ApiError::bad_request(err.code(), err.to_string())
}

/// The 400 of a confirm or reset token that is unknown, used or expired.
pub fn invalid_token() -> ApiError {
    ApiError::bad_request("invalid_token", "invalid or expired token")
}

/// Whether people may register themselves: the live setting (`--registration`, or the admin
/// console's value); both the page and the API ask here.
pub fn open(state: &AppState) -> bool {
    state.settings.registration_open()
}

/// The API's refusal while registration is off.
pub fn closed() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "registration_closed", "registration is closed")
}

/// What a registration typed, before any of it is trusted.
pub struct Registration {
    pub username: String,
    pub email: String,
    pub password: String,
}

/// A registration was stored and its confirmation mail is on its way. `dev_link` is the link
/// itself in dev mode (where no mail is sent).
pub struct Registered {
    pub dev_link: Option<String>,
}

/// Validates, stores an unconfirmed account and mails its confirm link (after answering: a failed
/// send must not undo the account, or a retry would say "already registered"; the person can ask
/// again through forgot, which confirms the address too).
pub async fn register(state: &AppState, ip: &ClientIp, input: Registration) -> Result<Registered, ApiError> {
    let username =
        Username::parse(&input.username).map_err(|e| ApiError::bad_request("invalid_username", e.to_string()))?;
    let email = Email::parse(&input.email).map_err(|_| ApiError::bad_request("invalid_email", "invalid email"))?;
    let password = Password::parse(input.password).map_err(password_error)?;
    // Counted after validation, so typos do not use up the limit; before hashing and storing,
    // which are what the limit protects.
    let now = clock::now();
    state.accounts.limits.register.check(&[&ip.0], now).map_err(too_many)?;
    let password_hash = hash_password(&state.accounts, password).await?;
    let new = NewUser { email: email.as_str().to_owned(), username: username.as_str().to_owned(), password_hash };
    let user = match state.store.create_user(new, now).await {
        Ok(user) => user,
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(StatusCode::CONFLICT, "already_exists", "username or email already registered"));
        }
        Err(err) => return Err(err.into()),
    };
    state.audit.record(Entry::new(Event::UserCreated, &Ip::from(ip), "registered, unconfirmed").subject(&user.email));
    let token = NewToken::generate(TokenFormat::Hex);
    state
        .store
        .insert_account_token(&token.hash, &user.id, AccountTokenPurpose::Confirm, now + CONFIRM_TTL_SECS, now)
        .await?;
    let link = format!("{}/api/v1/auth/confirm?token={}", state.settings.public_url(), token.plaintext);
    let mailer = &state.accounts.mailer;
    mailer.send_in_background(mail::confirm_mail(email, &link));
    Ok(Registered { dev_link: mailer.is_dev().then_some(link) })
}

/// Spends a confirm token: the account becomes confirmed and gets its default workspace (so the
/// Diaryx clients of this person find it too).
pub async fn confirm(state: &AppState, token: &str) -> Result<(), ApiError> {
    let hash = TokenHash::of(token.trim());
    let user_id = state
        .store
        .consume_account_token(&hash, AccountTokenPurpose::Confirm, clock::now())
        .await?
        .ok_or_else(invalid_token)?;
    if !state.store.confirm_user(&user_id).await? {
        return Err(invalid_token());
    }
    state.store.ensure_workspace(&user_id, DEFAULT_WORKSPACE, clock::now()).await?;
    // Confirming takes no client address (the link is the proof), so the entry has none.
    let email = state.store.user_by_id(&user_id).await?.map(|u| u.email).unwrap_or_default();
    state.audit.record(Entry::new(Event::UserConfirmed, &Ip::default(), "confirmed by mail link").subject(email));
    Ok(())
}
