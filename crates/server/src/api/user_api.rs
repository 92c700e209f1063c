//! The Verstak user API: registration with mail confirmation, login, password reset, own devices.
//!
//! Sessions here are bearer tokens from `login`; no cookie is involved, so browsers never attach
//! them on their own and cross-site request forgery has nothing to ride on.

use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use concord_core::token::TokenFormat;
use concord_store::TokenKind;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::accounts::registration::{self, Registration};
use crate::accounts::request::{ClientIp, UserAgent};
use crate::accounts::sign_in::{self, SessionFor};
use crate::accounts::{devices, recovery};
use crate::api::verstak_client::CredentialsRequest;
use crate::app::AppState;
use crate::audit::{Entry, Event, Ip};
use crate::clock;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth, query_param};
use crate::openapi::StatusBody;
use crate::web::csrf::CsrfToken;
use crate::web::{page, people};

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(register))
        .routes(utoipa_axum::routes!(confirm_page))
        .routes(utoipa_axum::routes!(confirm))
        .routes(utoipa_axum::routes!(login))
        .routes(utoipa_axum::routes!(forgot))
        .routes(utoipa_axum::routes!(reset_page))
        .routes(utoipa_axum::routes!(reset))
        .routes(utoipa_axum::routes!(devices))
        .routes(utoipa_axum::routes!(revoke))
}

/// A body that is JSON (API clients) or a form (pages that post here). Answers go back in the
/// same kind: JSON for JSON, a page for a form. Forms pass the CSRF check of `web::csrf`.
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

/// Answers a JSON or form request: `{"status"}`, or a page saying `message`.
fn answer(
    state: &AppState,
    from_form: bool,
    csrf: &CsrfToken,
    title: &str,
    message: &str,
    status: &'static str,
) -> Response {
    if from_form {
        page::message(state, StatusCode::OK, csrf, title, message)
    } else {
        Json(StatusBody { status }).into_response()
    }
}

/// The answer of `POST /api/v1/auth/register`; the link only when no mail is configured.
#[derive(Serialize, utoipa::ToSchema)]
struct Registered {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dev_link: Option<String>,
}

/// A Verstak web session token.
#[derive(Serialize, utoipa::ToSchema)]
struct LoginToken {
    token: String,
    user_id: String,
}

/// One of the caller's devices; absent values are `""` (what Verstak clients parse).
#[derive(Serialize, utoipa::ToSchema)]
struct UserDevice {
    client_version: String,
    created_at: String,
    id: String,
    last_seen: String,
    name: String,
    revoked_at: String,
}

/// An error for a JSON or form request: the JSON error, or a page with its message and status.
fn form_error(state: &AppState, from_form: bool, csrf: &CsrfToken, err: ApiError) -> Response {
    if from_form {
        page::message(state, err.status(), csrf, "That did not work", err.message())
    } else {
        err.into_response()
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RegisterRequest {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[utoipa::path(post, path = "/api/v1/auth/register", tag = "user api", request_body = RegisterRequest, responses((status = 200, description = "success", body = Registered), crate::openapi::JsonBody, crate::openapi::Conflict, crate::openapi::Authed, crate::openapi::Common))]
async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Json<Registered>, ApiError> {
    if !registration::open(&state) {
        return Err(registration::closed());
    }
    let input = Registration { username: body.username, email: body.email, password: body.password };
    let registered = registration::register(&state, &ip, input).await?;
    Ok(Json(Registered { status: "confirmation_sent", dev_link: registered.dev_link }))
}

/// The link in the mail opens this page, whose button posts the token back. Confirming on GET
/// would let mail scanners that prefetch links confirm addresses nobody read.
#[utoipa::path(get, path = "/api/v1/auth/confirm", tag = "user api", responses((status = 200, description = "confirmation page (HTML)", body = String), crate::openapi::Common))]
async fn confirm_page(State(state): State<AppState>, csrf: CsrfToken, RawQuery(query): RawQuery) -> Response {
    let token = query.and_then(|q| query_param(&q, "token")).unwrap_or_default();
    people::confirm_page(&state, &csrf, token)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ConfirmRequest {
    #[serde(default)]
    token: String,
}

#[utoipa::path(post, path = "/api/v1/auth/confirm", tag = "user api", request_body = ConfirmRequest, responses((status = 200, description = "success", body = StatusBody), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn confirm(State(state): State<AppState>, csrf: CsrfToken, body: JsonOrForm<ConfirmRequest>) -> Response {
    match registration::confirm(&state, &body.value.token).await {
        Ok(()) => answer(
            &state,
            body.from_form,
            &csrf,
            "Address confirmed",
            "Your address is confirmed. You can now sign in and pair devices.",
            "confirmed",
        ),
        Err(err) => form_error(&state, body.from_form, &csrf, err),
    }
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "user api", request_body = CredentialsRequest, responses((status = 200, description = "web session token", body = LoginToken), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    agent: UserAgent,
    ApiJson(body): ApiJson<CredentialsRequest>,
) -> Result<Json<LoginToken>, ApiError> {
    let login = body.login()?.to_owned();
    let now = clock::now();
    let user = sign_in::password_user(&state, &ip, &login, body.password, now).await?;
    let name = Some("web".to_owned());
    let session = SessionFor { name, agent, format: TokenFormat::Hex, kind: TokenKind::Web, user: &user };
    let (token, _) = sign_in::open_session(&state, session, now).await?;
    Ok(Json(LoginToken { token, user_id: user.id }))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ForgotRequest {
    #[serde(default)]
    email: String,
}

/// Answers the same whether or not the address has an account (see [`recovery::forgot`]).
#[utoipa::path(post, path = "/api/v1/auth/forgot", tag = "user api", request_body = ForgotRequest, responses((status = 200, description = "success", body = StatusBody), crate::openapi::JsonBody, crate::openapi::Common))]
async fn forgot(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ForgotRequest>,
) -> Result<Json<StatusBody>, ApiError> {
    recovery::forgot(&state, &ip, &body.email)?;
    Ok(Json(StatusBody { status: "if email exists, reset link sent" }))
}

/// Links in mails sent before the reset page moved to `/reset` still open it.
#[utoipa::path(get, path = "/api/v1/auth/reset", tag = "user api", responses((status = 200, description = "reset page (HTML)", body = String), crate::openapi::Common))]
async fn reset_page(State(state): State<AppState>, csrf: CsrfToken, RawQuery(query): RawQuery) -> Response {
    let token = query.and_then(|q| query_param(&q, "token")).unwrap_or_default();
    people::reset_page(&state, StatusCode::OK, &csrf, token, None)
}

#[derive(Deserialize, utoipa::ToSchema)]
// The admin API has a `ResetRequest` too; one name would make the document show one for both.
#[schema(as = PasswordResetRequest)]
struct ResetRequest {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
}

#[utoipa::path(post, path = "/api/v1/auth/reset", tag = "user api", request_body = ResetRequest, responses((status = 200, description = "success", body = StatusBody), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn reset(
    State(state): State<AppState>,
    ip: ClientIp,
    csrf: CsrfToken,
    body: JsonOrForm<ResetRequest>,
) -> Response {
    match recovery::reset(&state, &ip, &body.value.token, body.value.new_password).await {
        Ok(()) => answer(
            &state,
            body.from_form,
            &csrf,
            "Password changed",
            "Your password is changed and all your devices are signed out.",
            "password reset",
        ),
        Err(err) => form_error(&state, body.from_form, &csrf, err),
    }
}

#[utoipa::path(get, path = "/api/v1/user/devices", tag = "user api", security(("device_token" = [])), responses((status = 200, description = "success", body = Vec<UserDevice>), crate::openapi::Authed, crate::openapi::Common))]
async fn devices(State(state): State<AppState>, Auth(principal): Auth) -> Result<Json<Vec<UserDevice>>, ApiError> {
    let devices = state.store.devices_of(&principal.user.id).await?;
    Ok(Json(
        devices
            .iter()
            .map(|d| UserDevice {
                client_version: d.client_version.clone().unwrap_or_default(),
                created_at: clock::rfc3339(d.created_at),
                id: d.id.clone(),
                last_seen: clock::rfc3339(d.last_seen_at),
                name: d.name.clone().unwrap_or_default(),
                revoked_at: d.revoked_at.map(clock::rfc3339).unwrap_or_default(),
            })
            .collect(),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PasswordRequest {
    #[serde(default)]
    password: String,
}

#[utoipa::path(post, path = "/api/v1/user/devices/{id}/revoke", tag = "user api", security(("device_token" = [])), params(("id" = String, Path)), request_body = PasswordRequest, responses((status = 200, description = "success", body = StatusBody), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn revoke(
    State(state): State<AppState>,
    ip: ClientIp,
    audit_ip: Ip,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PasswordRequest>,
) -> Result<Json<StatusBody>, ApiError> {
    if body.password.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "password required"));
    }
    devices::revoke_with_password(&state, &principal.user, &ip, &id, body.password, clock::now()).await?;
    let entry = Entry::new(Event::DeviceRevoked, &audit_ip, "revoked by its owner").actor(&principal.user.email);
    state.audit.record(entry.subject(&id));
    Ok(Json(StatusBody { status: "revoked" }))
}
