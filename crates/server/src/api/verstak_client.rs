//! The Verstak desktop client's identity routes: pairing, the connection test, and its device.

use axum::Json;
use axum::extract::State;
use concord_core::token::TokenFormat;
use concord_store::{DeviceKind, NewDevice, TokenKind};
use serde::{Deserialize, Serialize};

use crate::accounts::request::{ClientIp, UserAgent};
use crate::accounts::{credentials, devices, sign_in};
use crate::app::AppState;
use crate::audit::{self, Entry, Event, Ip};
use crate::clock;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth};
use crate::openapi::StatusBody;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(pair))
        .routes(utoipa_axum::routes!(auth_test))
        .routes(utoipa_axum::routes!(me))
        .routes(utoipa_axum::routes!(revoke_current))
        .routes(utoipa_axum::routes!(revoke_device))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PairRequest {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    device_name: String,
    #[serde(default)]
    client_version: String,
    #[serde(default)]
    vault_id: String,
}

/// 400 `<field> is too long` past the reference's byte limits.
fn limit_len(field: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::bad_request("invalid_request", format!("{field} is too long")));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/client/pair", tag = "verstak client", request_body = PairRequest, responses((status = 200, description = "device token", body = Paired), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn pair(
    State(state): State<AppState>,
    ip: ClientIp,
    audit_ip: Ip,
    agent: UserAgent,
    ApiJson(body): ApiJson<PairRequest>,
) -> Result<Json<Paired>, ApiError> {
    let login = body.login.trim();
    if login.is_empty() || body.password.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "login and password required"));
    }
    let device_name = body.device_name.trim();
    let client_version = body.client_version.trim();
    let vault_id = body.vault_id.trim();
    limit_len("login", login, 320)?;
    limit_len("device_name", device_name, 128)?;
    limit_len("client_version", client_version, 256)?;
    limit_len("vault_id", vault_id, 256)?;
    if vault_id.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "vault_id required"));
    }
    // `legacy:` scopes belonged to clients from before vaults; new pairings may not join them.
    if vault_id.starts_with("legacy:") {
        return Err(ApiError::bad_request("invalid_request", "vault_id must not start with legacy:"));
    }
    let now = clock::now();
    let user = credentials::check_credentials(&state, &state.accounts.limits.pair, &ip, login, body.password, now)
        .await
        .inspect_err(|e| audit::refused_credentials(&state.audit, Event::DeviceAuthFailed, &audit_ip, login, e))?;
    let device = NewDevice {
        user_id: user.id.clone(),
        kind: DeviceKind::Client,
        name: Some(if device_name.is_empty() { "unknown" } else { device_name }.to_owned()),
        vault_id: Some(vault_id.to_owned()),
        client_version: Some(client_version.to_owned()).filter(|v| !v.is_empty()),
        user_agent: agent.0,
    };
    let (device, token) = devices::issue_device(&state, device, TokenFormat::Hex, TokenKind::Device, None, now).await?;
    tracing::info!(user_id = %user.id, device_id = %device.id, "device paired");
    let detail = format!("vault {vault_id}, client {client_version}");
    state.audit.record(Entry::new(Event::DevicePaired, &audit_ip, detail).actor(&user.email).subject(&device.id));
    Ok(Json(Paired {
        device_id: device.id,
        device_token: token,
        initial_sync_cursor: 0,
        server_time: clock::rfc3339(now),
        user_id: user.id,
    }))
}

/// A paired device: its token, and where its first pull starts.
#[derive(Serialize, utoipa::ToSchema)]
struct Paired {
    device_id: String,
    device_token: String,
    initial_sync_cursor: i64,
    server_time: String,
    user_id: String,
}

/// `GET /api/client/me`; absent values are `""` (what Verstak clients parse).
#[derive(Serialize, utoipa::ToSchema)]
struct ClientMe {
    client_version: String,
    created_at: String,
    device_id: String,
    device_name: String,
    last_seen: String,
    revoked_at: String,
    user_id: String,
    username: String,
}

/// `{username, password}`: the body of the connection test and of the user API's login.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct CredentialsRequest {
    #[serde(default)]
    username: String,
    #[serde(default)]
    pub(crate) password: String,
}

impl CredentialsRequest {
    /// The trimmed login, or the 400 both routes answer for missing or over-long input.
    pub(crate) fn login(&self) -> Result<&str, ApiError> {
        sign_in::checked_login(&self.username, &self.password)
    }
}

#[utoipa::path(post, path = "/api/auth/test", tag = "verstak client", request_body = CredentialsRequest, responses((status = 200, description = "success", body = StatusBody), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn auth_test(
    State(state): State<AppState>,
    ip: ClientIp,
    audit_ip: Ip,
    ApiJson(body): ApiJson<CredentialsRequest>,
) -> Result<Json<StatusBody>, ApiError> {
    let login = body.login()?.to_owned();
    let limit = &state.accounts.limits.auth_test;
    credentials::check_credentials(&state, limit, &ip, &login, body.password, clock::now())
        .await
        .inspect_err(|e| audit::refused_credentials(&state.audit, Event::DeviceAuthFailed, &audit_ip, &login, e))?;
    Ok(Json(StatusBody { status: "ok" }))
}

#[utoipa::path(get, path = "/api/client/me", tag = "verstak client", security(("device_token" = [])), responses((status = 200, description = "success", body = ClientMe), crate::openapi::Authed, crate::openapi::Common))]
async fn me(Auth(principal): Auth) -> Json<ClientMe> {
    let (user, device) = (&principal.user, &principal.device);
    Json(ClientMe {
        client_version: device.client_version.clone().unwrap_or_default(),
        created_at: clock::rfc3339(device.created_at),
        device_id: device.id.clone(),
        device_name: device.name.clone().unwrap_or_default(),
        last_seen: clock::rfc3339(device.last_seen_at),
        // Always "" here: a revoked device cannot authenticate to ask.
        revoked_at: device.revoked_at.map(clock::rfc3339).unwrap_or_default(),
        user_id: user.id.clone(),
        // People who only ever used magic links have no username; their email is their login.
        username: user.username.clone().unwrap_or_else(|| user.email.clone()),
    })
}

#[utoipa::path(post, path = "/api/client/revoke-current", tag = "verstak client", security(("device_token" = [])), responses((status = 200, description = "success", body = StatusBody), crate::openapi::Authed, crate::openapi::Common))]
async fn revoke_current(
    State(state): State<AppState>,
    ip: Ip,
    Auth(principal): Auth,
) -> Result<Json<StatusBody>, ApiError> {
    devices::revoke_device(&state, &principal.user.id, &principal.device.id, clock::now()).await?;
    let entry = Entry::new(Event::DeviceRevoked, &ip, "revoked itself").actor(&principal.user.email);
    state.audit.record(entry.subject(&principal.device.id));
    Ok(Json(StatusBody { status: "revoked" }))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RevokeDeviceRequest {
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    password: String,
}

#[utoipa::path(post, path = "/api/client/revoke-device", tag = "verstak client", security(("device_token" = [])), request_body = RevokeDeviceRequest, responses((status = 200, description = "success", body = StatusBody), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn revoke_device(
    State(state): State<AppState>,
    ip: ClientIp,
    audit_ip: Ip,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<RevokeDeviceRequest>,
) -> Result<Json<StatusBody>, ApiError> {
    let device_id = body.device_id.trim();
    if device_id.is_empty() || body.password.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "device_id and password required"));
    }
    devices::revoke_with_password(&state, &principal.user, &ip, device_id, body.password, clock::now()).await?;
    let entry = Entry::new(Event::DeviceRevoked, &audit_ip, "revoked by its owner").actor(&principal.user.email);
    state.audit.record(entry.subject(device_id));
    Ok(Json(StatusBody { status: "revoked" }))
}
