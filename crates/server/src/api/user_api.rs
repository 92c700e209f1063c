//! The Verstak user API: registration with mail confirmation, login, password reset, own devices.
//!
//! Sessions here are bearer tokens from `login`; no cookie is involved, so browsers never attach
//! them on their own and cross-site request forgery has nothing to ride on.

use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use concord_core::email::Email;
use concord_core::password::{Password, PasswordError};
use concord_core::token::{NewToken, TokenFormat, TokenHash};
use concord_core::username::Username;
use concord_store::{AccountTokenPurpose, DeviceKind, NewDevice, NewUser, StoreError, TokenKind};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::accounts::DEFAULT_WORKSPACE;
use crate::accounts::credentials::{self, hash_password};
use crate::accounts::devices;
use crate::accounts::limits::too_many;
use crate::accounts::request::{ClientIp, UserAgent};
use crate::api::verstak_client::CredentialsRequest;
use crate::app::AppState;
use crate::audit::{self, Entry, Event, Ip};
use crate::clock;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth, query_param};
use crate::{html, mail};

const CONFIRM_TTL_SECS: i64 = 48 * 3600;
const RESET_TTL_SECS: i64 = 3600;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/register", post(register))
        .route("/api/v1/auth/confirm", get(confirm_page).post(confirm))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/forgot", post(forgot))
        .route("/api/v1/auth/reset", get(reset_page).post(reset))
        .route("/api/v1/user/devices", get(devices))
        .route("/api/v1/user/devices/{id}/revoke", post(revoke))
}

/// A body that is JSON (API clients) or a form (the confirm and reset pages). Answers go back in
/// the same kind: JSON for JSON, a page for a form.
struct JsonOrForm<T> {
    value: T,
    from_form: bool,
}

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequest<S> for JsonOrForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            let Form(value) = Form::<T>::from_request(req, state)
                .await
                .map_err(|_| ApiError::bad_request("invalid_request", "invalid form"))?;
            return Ok(JsonOrForm { value, from_form: true });
        }
        let ApiJson(value) = ApiJson::<T>::from_request(req, state).await?;
        Ok(JsonOrForm { value, from_form: false })
    }
}

/// Answers a JSON or form request: `json` as is, or a page saying `message`.
fn answer(from_form: bool, title: &str, message: &str, json: Value) -> Response {
    if from_form {
        html::page(title, &format!("<p>{}</p>", html::escape(message))).into_response()
    } else {
        Json(json).into_response()
    }
}

/// An error for a JSON or form request: the JSON error, or a page with its message and status.
fn form_error(from_form: bool, err: ApiError) -> Response {
    if !from_form {
        return err.into_response();
    }
    let mut page = html::page("That did not work", &format!("<p>{}</p>", html::escape(err.message()))).into_response();
    *page.status_mut() = err.status();
    page
}

fn password_error(err: PasswordError) -> ApiError {
    ApiError::bad_request(err.code(), err.to_string())
}

fn invalid_token() -> ApiError {
    ApiError::bad_request("invalid_token", "invalid or expired token")
}

#[derive(Deserialize)]
struct RegisterRequest {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    audit_ip: Ip,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Json<Value>, ApiError> {
    if !state.settings.registration_open() {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "registration_disabled",
            "registration is turned off on this server",
        ));
    }
    let username =
        Username::parse(&body.username).map_err(|e| ApiError::bad_request("invalid_username", e.to_string()))?;
    let email = Email::parse(&body.email).map_err(|_| ApiError::bad_request("invalid_email", "invalid email"))?;
    let password = Password::parse(body.password).map_err(password_error)?;
    // Counted after validation, so typos do not use up the limit; before hashing and storing,
    // which are what the limit protects.
    let now = clock::now();
    state.accounts.limits.register.check(&[&ip.0], now).map_err(too_many)?;
    let password_hash = hash_password(&state.accounts, password).await?;
    let new = NewUser { email: email.as_str().to_owned(), username: username.as_str().to_owned(), password_hash };
    let user = match state.store.create_user(new, now).await {
        Ok(user) => user,
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "already_exists",
                "username or email already registered",
            ));
        }
        Err(err) => return Err(err.into()),
    };
    state.audit.record(Entry::new(Event::UserCreated, &audit_ip, "registered, unconfirmed").subject(&user.email));
    let token = NewToken::generate(TokenFormat::Hex);
    state
        .store
        .insert_account_token(&token.hash, &user.id, AccountTokenPurpose::Confirm, now + CONFIRM_TTL_SECS, now)
        .await?;
    let link = format!("{}/api/v1/auth/confirm?token={}", state.settings.public_url(), token.plaintext);
    let mailer = &state.accounts.mailer;
    // A failed send must not undo the account (a retry would then say "already registered"); it is
    // logged, and the person can ask again through forgot, which confirms the address too.
    mailer.send_in_background(mail::confirm_mail(email, &link));
    if mailer.is_dev() {
        return Ok(Json(json!({ "status": "confirmation_sent", "dev_link": link })));
    }
    Ok(Json(json!({ "status": "confirmation_sent" })))
}

/// The link in the mail opens this page, whose button posts the token back. Confirming on GET
/// would let mail scanners that prefetch links confirm addresses nobody read.
async fn confirm_page(RawQuery(query): RawQuery) -> Response {
    let token = query.and_then(|q| query_param(&q, "token")).unwrap_or_default();
    html::page(
        "Confirm your email address",
        &format!(
            "<form method=\"post\" action=\"/api/v1/auth/confirm\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\">Confirm my address</button></form>",
            html::escape(&token)
        ),
    )
    .into_response()
}

#[derive(Deserialize)]
struct ConfirmRequest {
    #[serde(default)]
    token: String,
}

async fn confirm(State(state): State<AppState>, ip: Ip, body: JsonOrForm<ConfirmRequest>) -> Response {
    let from_form = body.from_form;
    let result = async {
        let hash = TokenHash::of(body.value.token.trim());
        let user_id = state
            .store
            .consume_account_token(&hash, AccountTokenPurpose::Confirm, clock::now())
            .await?
            .ok_or_else(invalid_token)?;
        if !state.store.confirm_user(&user_id).await? {
            return Err(invalid_token());
        }
        // So the Diaryx clients of this person find their workspace too.
        state.store.ensure_workspace(&user_id, DEFAULT_WORKSPACE, clock::now()).await?;
        let email = state.store.user_by_id(&user_id).await?.map(|u| u.email).unwrap_or_default();
        state.audit.record(Entry::new(Event::UserConfirmed, &ip, "confirmed by mail link").subject(email));
        Ok::<_, ApiError>(())
    }
    .await;
    match result {
        Ok(()) => answer(
            from_form,
            "Address confirmed",
            "Your address is confirmed. You can now sign in and pair devices.",
            json!({ "status": "confirmed" }),
        ),
        Err(err) => form_error(from_form, err),
    }
}

async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    audit_ip: Ip,
    agent: UserAgent,
    ApiJson(body): ApiJson<CredentialsRequest>,
) -> Result<Json<Value>, ApiError> {
    let login = body.login()?.to_owned();
    let now = clock::now();
    let limit = &state.accounts.limits.login;
    let user = credentials::check_credentials(&state, limit, &ip, &login, body.password, now)
        .await
        .inspect_err(|e| audit::refused_credentials(&state.audit, Event::SignInFailed, &audit_ip, &login, e))?;
    let device = NewDevice {
        user_id: user.id.clone(),
        kind: DeviceKind::Session,
        name: Some("web".to_owned()),
        vault_id: None,
        client_version: None,
        user_agent: agent.0,
    };
    let expires_at = now + i64::from(state.config.session_expiry_days) * 86_400;
    let (_, token) =
        devices::issue_device(&state, device, TokenFormat::Hex, TokenKind::Web, Some(expires_at), now).await?;
    Ok(Json(json!({ "token": token, "user_id": user.id })))
}

#[derive(Deserialize)]
struct ForgotRequest {
    #[serde(default)]
    email: String,
}

/// Answers the same whether or not the address has an account: the lookup, the token and the
/// mail all happen after the answer, so not even its timing tells.
async fn forgot(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ForgotRequest>,
) -> Result<Json<Value>, ApiError> {
    let email = Email::parse(&body.email).map_err(|_| ApiError::bad_request("invalid_email", "invalid email"))?;
    let now = clock::now();
    let account = format!("email:{email}");
    state.accounts.limits.forgot.check(&[&ip.0, &account], now).map_err(too_many)?;
    tokio::spawn(async move {
        if let Err(err) = send_reset_link(&state, email, now).await {
            tracing::error!(error = %err, "sending a password reset link failed");
        }
    });
    Ok(Json(json!({ "status": "if email exists, reset link sent" })))
}

/// Mails a reset link if the address belongs to an account that is not blocked.
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
    let link = format!("{}/api/v1/auth/reset?token={}", state.settings.public_url(), token.plaintext);
    state.accounts.mailer.send(mail::reset_mail(email, &link, &token.plaintext)).await?;
    Ok(())
}

async fn reset_page(RawQuery(query): RawQuery) -> Response {
    let token = query.and_then(|q| query_param(&q, "token")).unwrap_or_default();
    html::page(
        "Choose a new password",
        &format!(
            "<form method=\"post\" action=\"/api/v1/auth/reset\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <label>New password (8 to 256 bytes) <input type=\"password\" name=\"new_password\" \
             minlength=\"8\" maxlength=\"256\" autocomplete=\"new-password\" required></label>\
             <button type=\"submit\">Set password</button></form>\
             <p>Setting a new password signs out all your sessions and devices.</p>",
            html::escape(&token)
        ),
    )
    .into_response()
}

#[derive(Deserialize)]
struct ResetRequest {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
}

async fn reset(State(state): State<AppState>, ip: ClientIp, audit_ip: Ip, body: JsonOrForm<ResetRequest>) -> Response {
    let from_form = body.from_form;
    let result = async {
        let now = clock::now();
        state.accounts.limits.reset.check(&[&ip.0], now).map_err(too_many)?;
        // The policy is checked before the token is spent, so a refused password keeps the link usable.
        let password = Password::parse(body.value.new_password).map_err(password_error)?;
        let hash = TokenHash::of(body.value.token.trim());
        let user_id = state
            .store
            .consume_account_token(&hash, AccountTokenPurpose::Reset, now)
            .await?
            .ok_or_else(invalid_token)?;
        devices::reset_password(&state, &user_id, password, now).await?;
        let email = state.store.user_by_id(&user_id).await?.map(|u| u.email).unwrap_or_default();
        state.audit.record(Entry::new(Event::UserPasswordReset, &audit_ip, "reset by mail link").subject(email));
        Ok(())
    }
    .await;
    match result {
        Ok(()) => answer(
            from_form,
            "Password changed",
            "Your password is changed and all your devices are signed out.",
            json!({ "status": "password reset" }),
        ),
        Err(err) => form_error(from_form, err),
    }
}

async fn devices(State(state): State<AppState>, Auth(principal): Auth) -> Result<Json<Vec<Value>>, ApiError> {
    let devices = state.store.devices_of(&principal.user.id).await?;
    Ok(Json(
        devices
            .iter()
            .map(|d| {
                json!({
                    "client_version": d.client_version.as_deref().unwrap_or_default(),
                    "created_at": clock::rfc3339(d.created_at),
                    "id": d.id,
                    "last_seen": clock::rfc3339(d.last_seen_at),
                    "name": d.name.as_deref().unwrap_or_default(),
                    "revoked_at": d.revoked_at.map(clock::rfc3339).unwrap_or_default(),
                })
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct PasswordRequest {
    #[serde(default)]
    password: String,
}

async fn revoke(
    State(state): State<AppState>,
    ip: ClientIp,
    audit_ip: Ip,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PasswordRequest>,
) -> Result<Json<Value>, ApiError> {
    if body.password.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "password required"));
    }
    devices::revoke_with_password(&state, &principal.user, &ip, &id, body.password, clock::now()).await?;
    let entry = Entry::new(Event::DeviceRevoked, &audit_ip, "revoked by its owner").actor(&principal.user.email);
    state.audit.record(entry.subject(&id));
    Ok(Json(json!({ "status": "revoked" })))
}
