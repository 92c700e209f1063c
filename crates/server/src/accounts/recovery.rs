//! Forgotten passwords: the reset mail and spending its token. Shared by the JSON API
//! (`/api/v1/auth/forgot`, `/reset`) and the pages (`/forgot`, `/reset`).

use concord_core::email::Email;
use concord_core::password::Password;
use concord_core::token::{NewToken, TokenFormat, TokenHash};
use concord_store::AccountTokenPurpose;

use super::devices::reset_password;
use super::limits::too_many;
use super::registration::{invalid_token, password_error};
use super::request::ClientIp;
use crate::app::AppState;
use crate::audit::{Entry, Event, Ip};
use crate::clock;
use crate::error::ApiError;
use crate::mail;

/// How long a reset link works.
const RESET_TTL_SECS: i64 = 3600;

/// Counts the request and mails a reset link in the background. The answer is the same whether
/// or not the address has an account: the lookup, the token and the mail all happen after it,
/// so not even its timing tells.
pub fn forgot(state: &AppState, ip: &ClientIp, email: &str) -> Result<(), ApiError> {
    let email = Email::parse(email).map_err(|_| ApiError::bad_request("invalid_email", "invalid email"))?;
    let now = clock::now();
    let account = format!("email:{email}");
    state.accounts.limits.forgot.check(&[&ip.0, &account], now).map_err(too_many)?;
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(err) = send_reset_link(&state, email, now).await {
            tracing::error!(error = %err, "sending a password reset link failed");
        }
    });
    Ok(())
}

/// Mails a reset link if the address belongs to an account that is not blocked (forgot, and the
/// admin console's "send a reset mail").
pub async fn send_reset_link(
    state: &AppState,
    email: Email,
    now: i64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let Some(user) = state.store.user_by_email(email.as_str()).await?.filter(|u| !u.blocked) else {
        return Ok(());
    };
    let token = NewToken::generate(TokenFormat::Hex);
    let expires_at = now + RESET_TTL_SECS;
    state.store.insert_account_token(&token.hash, &user.id, AccountTokenPurpose::Reset, expires_at, now).await?;
    let link = format!("{}/reset?token={}", state.settings.public_url(), token.plaintext);
    state.accounts.mailer.send(mail::reset_mail(email, &link, &token.plaintext)).await?;
    Ok(())
}

/// Spends a reset token on a new password, which signs out every device of the account.
pub async fn reset(state: &AppState, ip: &ClientIp, token: &str, new_password: String) -> Result<(), ApiError> {
    let now = clock::now();
    state.accounts.limits.reset.check(&[&ip.0], now).map_err(too_many)?;
    // The policy is checked before the token is spent, so a refused password keeps the link usable.
    let password = Password::parse(new_password).map_err(password_error)?;
    let hash = TokenHash::of(token.trim());
    let user_id =
        state.store.consume_account_token(&hash, AccountTokenPurpose::Reset, now).await?.ok_or_else(invalid_token)?;
    reset_password(state, &user_id, password, now).await?;
    let email = state.store.user_by_id(&user_id).await?.map(|u| u.email).unwrap_or_default();
    state.audit.record(Entry::new(Event::UserPasswordReset, &Ip::from(ip), "reset by mail link").subject(email));
    Ok(())
}
