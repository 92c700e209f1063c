//! The Diaryx identity surface: magic links and sign-in codes, sessions, devices, workspaces.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use concord_core::token::TokenFormat;
use concord_store::{DeviceRecord, TokenKind, WorkspaceRecord};
use serde::{Deserialize, Serialize};

use crate::accounts::devices;
use crate::accounts::request::{ClientIp, UserAgent, truncate};
use crate::accounts::sign_in::{self, SessionFor};
use crate::app::AppState;
use crate::audit::{Entry, Event, Ip};
use crate::clock;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth, query_param};

/// Device names are shown in lists; longer input is cut, not refused (the original stored any).
const DEVICE_NAME_MAX: usize = 128;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(magic_link))
        .routes(utoipa_axum::routes!(verify))
        .routes(utoipa_axum::routes!(verify_code))
        .routes(utoipa_axum::routes!(me))
        .routes(utoipa_axum::routes!(logout))
        .routes(utoipa_axum::routes!(devices))
        .routes(utoipa_axum::routes!(delete_device))
        .routes(utoipa_axum::routes!(workspaces))
        .routes(utoipa_axum::routes!(workspace))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct MagicLinkRequest {
    #[serde(default)]
    email: String,
}

#[utoipa::path(post, path = "/auth/magic-link", tag = "diaryx auth", request_body = MagicLinkRequest, responses((status = 200, description = "link sent (or dev link)", body = LinkSent), crate::openapi::JsonBody, crate::openapi::Common))]
async fn magic_link(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<MagicLinkRequest>,
) -> Result<Json<LinkSent>, ApiError> {
    let sent = sign_in::send_link(&state, &ip, &body.email, clock::now()).await?;
    Ok(Json(match sent.dev {
        Some((link, code)) => LinkSent {
            success: true,
            message: "Email not configured. Use the dev link below.",
            dev_link: Some(link),
            dev_code: Some(code),
        },
        None => {
            LinkSent { success: true, message: "Check your email for a sign-in link.", dev_link: None, dev_code: None }
        }
    }))
}

/// The answer of `POST /auth/magic-link`; the dev fields only when no mail is configured.
#[derive(Serialize, utoipa::ToSchema)]
struct LinkSent {
    success: bool,
    message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dev_link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dev_code: Option<String>,
}

/// A signed-in Diaryx session: the token and who it belongs to.
#[derive(Serialize, utoipa::ToSchema)]
struct DiaryxSession {
    success: bool,
    token: String,
    user: DiaryxUser,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DiaryxUser {
    id: String,
    email: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DiaryxDevice {
    id: String,
    name: Option<String>,
    last_seen_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DiaryxWorkspace {
    id: String,
    name: String,
}

/// `GET /auth/me`.
#[derive(Serialize, utoipa::ToSchema)]
struct DiaryxMe {
    user: DiaryxUser,
    workspaces: Vec<DiaryxWorkspace>,
    devices: Vec<DiaryxDevice>,
}

#[utoipa::path(get, path = "/auth/verify", tag = "diaryx auth", params(("token" = Option<String>, Query, description = "the magic-link token")), responses((status = 200, description = "session token", body = DiaryxSession), (status = 400, description = "invalid or expired link", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::Common))]
async fn verify(
    State(state): State<AppState>,
    agent: UserAgent,
    ip: Ip,
    RawQuery(query): RawQuery,
) -> Result<Json<DiaryxSession>, ApiError> {
    let query = query.unwrap_or_default();
    let token = query_param(&query, "token").unwrap_or_default();
    let now = clock::now();
    let email = sign_in::spend_link(&state, &token, now)
        .await
        .inspect_err(|_| state.audit.record(Entry::new(Event::SignInFailed, &ip, "invalid or expired sign-in link")))?;
    let answer = session(&state, &email, query_param(&query, "device_name"), agent, now).await?;
    state.audit.record(Entry::new(Event::SignInMagicLink, &ip, "signed in by link").actor(&email));
    Ok(answer)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct VerifyCodeRequest {
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
    device_name: Option<String>,
}

/// The code from the sign-in mail, typed on a device other than the one that reads the mail.
#[utoipa::path(post, path = "/auth/verify-code", tag = "diaryx auth", request_body = VerifyCodeRequest, responses((status = 200, description = "session token", body = DiaryxSession), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn verify_code(
    State(state): State<AppState>,
    ip: ClientIp,
    agent: UserAgent,
    ApiJson(body): ApiJson<VerifyCodeRequest>,
) -> Result<Json<DiaryxSession>, ApiError> {
    let now = clock::now();
    let email = sign_in::spend_code(&state, &ip, &body.email, &body.code, now).await?;
    session(&state, email.as_str(), body.device_name, agent, now).await
}

/// The end of both sign-in paths: the user and a new device with a Diaryx session token.
async fn session(
    state: &AppState,
    email: &str,
    device_name: Option<String>,
    agent: UserAgent,
    now: i64,
) -> Result<Json<DiaryxSession>, ApiError> {
    let user = sign_in::verified_user(state, email, now).await?;
    let name = device_name.map(|n| truncate(n.trim(), DEVICE_NAME_MAX)).filter(|n| !n.is_empty());
    let session = SessionFor { name, agent, format: TokenFormat::Base64Url, kind: TokenKind::Session, user: &user };
    let (token, _) = sign_in::open_session(state, session, now).await?;
    Ok(Json(DiaryxSession { success: true, token, user: DiaryxUser { id: user.id, email: user.email } }))
}

fn device_json(device: &DeviceRecord) -> DiaryxDevice {
    let last_seen_at = clock::rfc3339_offset(device.last_seen_at);
    DiaryxDevice { id: device.id.clone(), name: device.name.clone(), last_seen_at }
}

fn workspace_json(workspace: &WorkspaceRecord) -> DiaryxWorkspace {
    DiaryxWorkspace { id: workspace.id.clone(), name: workspace.name.clone() }
}

/// Live devices only: revoked ones can do nothing and are not the person's to manage any more.
async fn live_devices(state: &AppState, user_id: &str) -> Result<Vec<DiaryxDevice>, ApiError> {
    let devices = state.store.devices_of(user_id).await?;
    Ok(devices.iter().filter(|d| d.revoked_at.is_none()).map(device_json).collect())
}

#[utoipa::path(get, path = "/auth/me", tag = "diaryx auth", security(("device_token" = [])), responses((status = 200, description = "success", body = DiaryxMe), crate::openapi::Authed, crate::openapi::Common))]
async fn me(State(state): State<AppState>, Auth(principal): Auth) -> Result<Json<DiaryxMe>, ApiError> {
    let user = &principal.user;
    let workspaces = state.store.workspaces_of(&user.id).await?;
    Ok(Json(DiaryxMe {
        user: DiaryxUser { id: user.id.clone(), email: user.email.clone() },
        workspaces: workspaces.iter().map(workspace_json).collect(),
        devices: live_devices(&state, &user.id).await?,
    }))
}

/// Ends this device's session: the device and its token are deleted, so it stops working at once.
#[utoipa::path(post, path = "/auth/logout", tag = "diaryx auth", security(("device_token" = [])), responses((status = 204, description = "done"), crate::openapi::Authed, crate::openapi::Common))]
async fn logout(State(state): State<AppState>, Auth(principal): Auth) -> Result<StatusCode, ApiError> {
    devices::log_out(&state, &principal.user.id, &principal.device.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/auth/devices", tag = "diaryx auth", security(("device_token" = [])), responses((status = 200, description = "success", body = Vec<DiaryxDevice>), crate::openapi::Authed, crate::openapi::Common))]
async fn devices(State(state): State<AppState>, Auth(principal): Auth) -> Result<Json<Vec<DiaryxDevice>>, ApiError> {
    Ok(Json(live_devices(&state, &principal.user.id).await?))
}

#[utoipa::path(delete, path = "/auth/devices/{id}", tag = "diaryx auth", security(("device_token" = [])), params(("id" = String, Path)), responses((status = 204, description = "done"), (status = 400, description = "the caller's own device (log out instead)", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
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

#[utoipa::path(get, path = "/api/workspaces", tag = "workspaces", security(("device_token" = [])), responses((status = 200, description = "success", body = Vec<DiaryxWorkspace>), crate::openapi::Authed, crate::openapi::Common))]
async fn workspaces(
    State(state): State<AppState>,
    Auth(principal): Auth,
) -> Result<Json<Vec<DiaryxWorkspace>>, ApiError> {
    let workspaces = state.store.workspaces_of(&principal.user.id).await?;
    Ok(Json(workspaces.iter().map(workspace_json).collect()))
}

#[utoipa::path(get, path = "/api/workspaces/{id}", tag = "workspaces", security(("device_token" = [])), params(("id" = String, Path)), responses((status = 200, description = "success", body = DiaryxWorkspace), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn workspace(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<DiaryxWorkspace>, ApiError> {
    let workspace = state.store.workspace_of(&principal.user.id, &id).await?;
    workspace.map(|w| Json(workspace_json(&w))).ok_or_else(|| ApiError::not_found("Workspace not found"))
}
