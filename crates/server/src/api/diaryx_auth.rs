//! The Diaryx identity surface: magic links and sign-in codes, sessions, devices, workspaces.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use concord_core::code::{MAX_WRONG_ATTEMPTS, SignInCode};
use concord_core::email::Email;
use concord_core::token::{NewToken, TokenFormat};
use concord_store::{DeviceKind, DeviceRecord, NewDevice, TokenKind, WorkspaceRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::DEFAULT_WORKSPACE;
use crate::accounts::devices;
use crate::accounts::request::{ClientIp, UserAgent, truncate};
use crate::app::AppState;
use crate::audit::{Entry, Event, Ip};
use crate::clock;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth, query_param};
use crate::mail;

/// Device names are shown in lists; longer input is cut, not refused (the original stored any).
const DEVICE_NAME_MAX: usize = 128;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/magic-link", post(magic_link))
        .route("/auth/verify", get(verify))
        .route("/auth/verify-code", post(verify_code))
        .route("/auth/me", get(me))
        .route("/auth/logout", post(logout))
        .route("/auth/devices", get(devices))
        .route("/auth/devices/{id}", delete(delete_device))
        .route("/api/workspaces", get(workspaces))
        .route("/api/workspaces/{id}", get(workspace))
}

fn invalid_email() -> ApiError {
    ApiError::bad_request("invalid_request", "Invalid email address")
}

fn too_many(retry: concord_core::rate_limit::RetryAfter) -> ApiError {
    ApiError::rate_limited(retry.0, "Too many requests. Please try again later.")
}

#[derive(Deserialize)]
struct MagicLinkRequest {
    #[serde(default)]
    email: String,
}

async fn magic_link(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<MagicLinkRequest>,
) -> Result<Json<Value>, ApiError> {
    let email = Email::parse(&body.email).map_err(|_| invalid_email())?;
    let now = clock::now();
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
        return Ok(Json(json!({
            "success": true,
            "message": "Email not configured. Use the dev link below.",
            "dev_link": link,
            "dev_code": code.as_str(),
        })));
    }
    // Awaited (with the mailer's timeout) because the client must learn that no mail is coming.
    if let Err(err) = state.accounts.mailer.send(mail::sign_in_mail(email, &link, code.as_str(), minutes)).await {
        tracing::error!(error = %err, "sending the sign-in mail failed");
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Failed to send email"));
    }
    Ok(Json(json!({ "success": true, "message": "Check your email for a sign-in link." })))
}

async fn verify(
    State(state): State<AppState>,
    agent: UserAgent,
    ip: Ip,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = query.unwrap_or_default();
    let token = query_param(&query, "token").unwrap_or_default();
    let now = clock::now();
    let Some(email) = state.store.consume_magic_token(&concord_core::token::TokenHash::of(&token), now).await? else {
        state.audit.record(Entry::new(Event::SignInFailed, &ip, "invalid or expired sign-in link"));
        return Err(ApiError::bad_request("invalid_request", "Invalid or expired link. Please request a new one."));
    };
    let answer = sign_in(&state, &email, query_param(&query, "device_name"), agent, now).await?;
    state.audit.record(Entry::new(Event::SignInMagicLink, &ip, "signed in by link").actor(&email));
    Ok(answer)
}

#[derive(Deserialize)]
struct VerifyCodeRequest {
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
    device_name: Option<String>,
}

/// The code from the sign-in mail, typed on a device other than the one that reads the mail.
async fn verify_code(
    State(state): State<AppState>,
    ip: ClientIp,
    audit_ip: Ip,
    agent: UserAgent,
    ApiJson(body): ApiJson<VerifyCodeRequest>,
) -> Result<Json<Value>, ApiError> {
    let email = Email::parse(&body.email).map_err(|_| invalid_email())?;
    let now = clock::now();
    // Counted before the store is asked and taken back on success, so a burst of parallel guesses
    // gets no more answers than the limit.
    let attempt = state.accounts.limits.verify_code.reserve(&[&ip.0], now).map_err(too_many)?;
    let accepted = match SignInCode::parse(&body.code) {
        Some(code) => {
            let hash = code.hash_for(&email, &state.accounts.code_key);
            state.store.consume_sign_in_code(email.as_str(), &hash, MAX_WRONG_ATTEMPTS, now).await?
        }
        None => false,
    };
    if !accepted {
        state.audit.record(Entry::new(Event::SignInFailed, &audit_ip, "wrong sign-in code").subject(email.as_str()));
        return Err(ApiError::bad_request("invalid_request", "Invalid or expired code. Please request a new one."));
    }
    attempt.release();
    let answer = sign_in(&state, email.as_str(), body.device_name, agent, now).await?;
    state.audit.record(Entry::new(Event::SignInCode, &audit_ip, "signed in by code").actor(email.as_str()));
    Ok(answer)
}

/// The end of both sign-in paths: the user (created on first sign-in; an unconfirmed registration
/// of the address is discarded, see [`concord_store::AccountStore::user_for_verified_email`]),
/// their `default` workspace, and a new device with a session token.
async fn sign_in(
    state: &AppState,
    email: &str,
    device_name: Option<String>,
    agent: UserAgent,
    now: i64,
) -> Result<Json<Value>, ApiError> {
    let user = state.store.user_for_verified_email(email, now).await?;
    if user.blocked {
        return Err(ApiError::forbidden("user blocked"));
    }
    state.store.ensure_workspace(&user.id, DEFAULT_WORKSPACE, now).await?;
    let name = device_name.map(|n| truncate(n.trim(), DEVICE_NAME_MAX)).filter(|n| !n.is_empty());
    let device = NewDevice {
        user_id: user.id.clone(),
        kind: DeviceKind::Session,
        name,
        vault_id: None,
        client_version: None,
        user_agent: agent.0,
    };
    let expires_at = now + i64::from(state.config.session_expiry_days) * 86_400;
    let (_, token) =
        devices::issue_device(state, device, TokenFormat::Base64Url, TokenKind::Session, Some(expires_at), now).await?;
    Ok(Json(json!({ "success": true, "token": token, "user": { "id": user.id, "email": user.email } })))
}

fn device_json(device: &DeviceRecord) -> Value {
    json!({ "id": device.id, "name": device.name, "last_seen_at": clock::rfc3339_offset(device.last_seen_at) })
}

fn workspace_json(workspace: &WorkspaceRecord) -> Value {
    json!({ "id": workspace.id, "name": workspace.name })
}

/// Live devices only: revoked ones can do nothing and are not the person's to manage any more.
async fn live_devices(state: &AppState, user_id: &str) -> Result<Vec<Value>, ApiError> {
    let devices = state.store.devices_of(user_id).await?;
    Ok(devices.iter().filter(|d| d.revoked_at.is_none()).map(device_json).collect())
}

async fn me(State(state): State<AppState>, Auth(principal): Auth) -> Result<Json<Value>, ApiError> {
    let user = &principal.user;
    let workspaces = state.store.workspaces_of(&user.id).await?;
    Ok(Json(json!({
        "user": { "id": user.id, "email": user.email },
        "workspaces": workspaces.iter().map(workspace_json).collect::<Vec<_>>(),
        "devices": live_devices(&state, &user.id).await?,
    })))
}

/// Ends this device's session: the device and its token are deleted, so it stops working at once.
async fn logout(State(state): State<AppState>, Auth(principal): Auth) -> Result<StatusCode, ApiError> {
    devices::log_out(&state, &principal.user.id, &principal.device.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn devices(State(state): State<AppState>, Auth(principal): Auth) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(live_devices(&state, &principal.user.id).await?))
}

async fn delete_device(
    State(state): State<AppState>,
    ip: Ip,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if id == principal.device.id {
        return Err(ApiError::bad_request("invalid_request", "Cannot delete the current device. Log out instead."));
    }
    // Another user's device reads exactly like a missing one.
    if !devices::revoke_device(&state, &principal.user.id, &id, clock::now()).await? {
        return Err(ApiError::not_found("Device not found"));
    }
    let entry = Entry::new(Event::DeviceRevoked, &ip, "revoked by its owner").actor(&principal.user.email).subject(&id);
    state.audit.record(entry);
    Ok(StatusCode::NO_CONTENT)
}

async fn workspaces(State(state): State<AppState>, Auth(principal): Auth) -> Result<Json<Vec<Value>>, ApiError> {
    let workspaces = state.store.workspaces_of(&principal.user.id).await?;
    Ok(Json(workspaces.iter().map(workspace_json).collect()))
}

async fn workspace(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let workspace = state.store.workspace_of(&principal.user.id, &id).await?;
    workspace.map(|w| Json(workspace_json(&w))).ok_or_else(|| ApiError::not_found("Workspace not found"))
}
