//! People's pages: the landing page, sign-in and registration, confirming an address, forgotten
//! passwords, and the dashboard of one's devices, workspaces (with their share links) and vaults.
//!
//! Handlers read forms and render templates; every account rule (validation, limits, what a
//! sign-in creates, what a revocation closes) is a call into `crate::accounts`, the same one the
//! JSON handlers make.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use concord_core::token::TokenFormat;
use concord_store::{DeviceKind, DeviceRecord, Principal, TokenKind, UserRecord};
use serde::Deserialize;

use crate::accounts::registration::Registration;
use crate::accounts::request::{ClientIp, UserAgent};
use crate::accounts::sign_in::{self, SessionFor};
use crate::accounts::{devices, recovery, registration};
use crate::app::AppState;
use crate::clock;
use crate::error::ApiError;
use crate::web::csrf::CsrfToken;
use crate::web::page::{self, Layout, Page};
use crate::web::session::{USER_SESSION, UserSession};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/login/link", post(login_link))
        .route("/login/code", post(login_code))
        .route("/register", get(register_form).post(register))
        .route("/forgot", get(forgot_form).post(forgot))
        .route("/logout", post(logout))
        .route("/confirm", post(confirm))
        .route("/confirm/result", get(confirm_result))
        .route("/reset", get(reset_form).post(reset))
        .route("/dashboard", get(dashboard))
        .route("/dashboard/devices/revoke", post(revoke))
        .route("/dashboard/password", post(change_password))
        .route("/dashboard/sign-out-everywhere", post(sign_out_everywhere))
        // Share links.
        .route("/dashboard/shares", post(create_share))
        .route("/dashboard/shares/revoke", post(revoke_share))
}

/// An account error as the page shows it: client errors go back into the form, with their
/// status; internal ones are the logged 500.
fn refused(err: ApiError, page: impl FnOnce(StatusCode, String) -> Response) -> Response {
    if err.status().is_client_error() { page(err.status(), err.message().to_owned()) } else { err.into_response() }
}

// The landing page.

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    registration_open: bool,
}

async fn home(State(state): State<AppState>, csrf: CsrfToken, headers: HeaderMap) -> Result<Response, ApiError> {
    let signed_in = USER_SESSION.principal(&state, &headers).await?.is_some();
    let layout = Layout::new(&state, "Welcome", &csrf, signed_in);
    Ok(Page::ok(HomePage { layout, registration_open: registration::open(&state) }).into_response())
}

// Signing in.

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    login: String,
    error: Option<String>,
    registration_open: bool,
}

fn login_page(
    state: &AppState,
    status: StatusCode,
    csrf: &CsrfToken,
    login: String,
    error: Option<String>,
) -> Response {
    let layout = Layout::new(state, "Sign in", csrf, false);
    Page(status, LoginPage { layout, login, error, registration_open: registration::open(state) }).into_response()
}

async fn login_form(State(state): State<AppState>, csrf: CsrfToken, headers: HeaderMap) -> Result<Response, ApiError> {
    if USER_SESSION.principal(&state, &headers).await?.is_some() {
        return Ok(Redirect::to("/dashboard").into_response());
    }
    Ok(login_page(&state, StatusCode::OK, &csrf, String::new(), None))
}

/// A new browser session for `user`: the cookie, and on to the dashboard.
async fn signed_in(state: &AppState, user: &UserRecord, agent: UserAgent, now: i64) -> Result<Response, ApiError> {
    let name = Some("Browser".to_owned());
    let session = SessionFor { name, agent, format: TokenFormat::Hex, kind: TokenKind::Web, user };
    let (token, expires_at) = sign_in::open_session(state, session, now).await?;
    let cookie = USER_SESSION.set(state, &token, expires_at - now);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/dashboard")).into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
}

async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    agent: UserAgent,
    csrf: CsrfToken,
    Form(form): Form<LoginForm>,
) -> Response {
    let login = form.login.trim().to_owned();
    let now = clock::now();
    let result = async {
        sign_in::checked_login(&login, &form.password)?;
        let user = sign_in::password_user(&state, &ip, &login, form.password, now).await?;
        signed_in(&state, &user, agent, now).await
    }
    .await;
    result.unwrap_or_else(|err| refused(err, |status, msg| login_page(&state, status, &csrf, login, Some(msg))))
}

#[derive(Template)]
#[template(path = "login_code.html")]
struct CodePage {
    layout: Layout,
    email: String,
    dev_code: Option<String>,
    error: Option<String>,
}

fn code_page(
    state: &AppState,
    status: StatusCode,
    csrf: &CsrfToken,
    email: String,
    dev_code: Option<String>,
    error: Option<String>,
) -> Response {
    Page(status, CodePage { layout: Layout::new(state, "Check your mail", csrf, false), email, dev_code, error })
        .into_response()
}

#[derive(Deserialize)]
struct EmailForm {
    #[serde(default)]
    email: String,
}

/// "Email me a sign-in link": the same link and code as `/auth/magic-link`; the code signs in here.
async fn login_link(
    State(state): State<AppState>,
    ip: ClientIp,
    csrf: CsrfToken,
    Form(form): Form<EmailForm>,
) -> Response {
    let email = form.email.trim().to_owned();
    match sign_in::send_link(&state, &ip, &email, clock::now()).await {
        Ok(sent) => code_page(&state, StatusCode::OK, &csrf, email, sent.dev.map(|(_, code)| code), None),
        Err(err) => refused(err, |status, msg| login_page(&state, status, &csrf, String::new(), Some(msg))),
    }
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
}

async fn login_code(
    State(state): State<AppState>,
    ip: ClientIp,
    agent: UserAgent,
    csrf: CsrfToken,
    Form(form): Form<CodeForm>,
) -> Response {
    let now = clock::now();
    let result = async {
        let email = sign_in::spend_code(&state, &ip, &form.email, &form.code, now).await?;
        let user = sign_in::verified_user(&state, email.as_str(), now).await?;
        signed_in(&state, &user, agent, now).await
    }
    .await;
    result
        .unwrap_or_else(|err| refused(err, |status, msg| code_page(&state, status, &csrf, form.email, None, Some(msg))))
}

/// Ends this browser's session (its device and token are deleted) and forgets the cookie.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(principal) = USER_SESSION.principal(&state, &headers).await? {
        devices::log_out(&state, &principal.user.id, &principal.device.id).await?;
    }
    Ok(([(header::SET_COOKIE, USER_SESSION.clear(&state))], Redirect::to("/")).into_response())
}

// Registration.

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage {
    layout: Layout,
    username: String,
    email: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "registered.html")]
struct RegisteredPage {
    layout: Layout,
    dev_link: Option<String>,
}

async fn register_form(State(state): State<AppState>, csrf: CsrfToken) -> Response {
    if !registration::open(&state) {
        // 404 when registration is off, as if the page did not exist.
        return page::not_found(&state);
    }
    let layout = Layout::new(&state, "Create an account", &csrf, false);
    Page::ok(RegisterPage { layout, username: String::new(), email: String::new(), error: None }).into_response()
}

#[derive(Deserialize)]
struct RegisterForm {
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
    csrf: CsrfToken,
    Form(form): Form<RegisterForm>,
) -> Response {
    if !registration::open(&state) {
        return page::not_found(&state);
    }
    let (username, email) = (form.username.clone(), form.email.clone());
    let input = Registration { username: form.username, email: form.email, password: form.password };
    match registration::register(&state, &ip, input).await {
        Ok(done) => {
            let layout = Layout::new(&state, "Confirm your address", &csrf, false);
            Page::ok(RegisteredPage { layout, dev_link: done.dev_link }).into_response()
        }
        Err(err) => refused(err, |status, msg| {
            let layout = Layout::new(&state, "Create an account", &csrf, false);
            Page(status, RegisterPage { layout, username, email, error: Some(msg) }).into_response()
        }),
    }
}

// Forgotten passwords.

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage {
    layout: Layout,
    error: Option<String>,
}

async fn forgot_form(State(state): State<AppState>, csrf: CsrfToken) -> Response {
    Page::ok(ForgotPage { layout: Layout::new(&state, "Forgot your password?", &csrf, false), error: None })
        .into_response()
}

async fn forgot(State(state): State<AppState>, ip: ClientIp, csrf: CsrfToken, Form(form): Form<EmailForm>) -> Response {
    match recovery::forgot(&state, &ip, &form.email) {
        Ok(()) => page::message(
            &state,
            StatusCode::OK,
            &csrf,
            "Check your mail",
            "If this address has an account, a link to choose a new password is on its way. It works for an hour.",
        ),
        Err(err) => refused(err, |status, msg| {
            let layout = Layout::new(&state, "Forgot your password?", &csrf, false);
            Page(status, ForgotPage { layout, error: Some(msg) }).into_response()
        }),
    }
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    layout: Layout,
    token: String,
}

/// The page of the confirmation link: a button that posts the token (see `api::user_api`).
pub fn confirm_page(state: &AppState, csrf: &CsrfToken, token: String) -> Response {
    Page::ok(ConfirmPage { layout: Layout::new(state, "Confirm your email address", csrf, false), token })
        .into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    token: String,
}

/// Confirms, then shows the outcome at `/confirm/result`, so a reload does not post again.
async fn confirm(State(state): State<AppState>, Form(form): Form<TokenForm>) -> Response {
    match registration::confirm(&state, &form.token).await {
        Ok(()) => Redirect::to("/confirm/result?status=confirmed").into_response(),
        Err(err) if err.status().is_client_error() => Redirect::to("/confirm/result?status=invalid").into_response(),
        Err(err) => err.into_response(),
    }
}

#[derive(Deserialize)]
struct ResultQuery {
    #[serde(default)]
    status: String,
}

/// The outcome of a confirmation; the query names one of two fixed messages, never any text.
async fn confirm_result(State(state): State<AppState>, csrf: CsrfToken, Query(query): Query<ResultQuery>) -> Response {
    if query.status == "confirmed" {
        page::message(
            &state,
            StatusCode::OK,
            &csrf,
            "Address confirmed",
            "Your address is confirmed. You can now sign in and pair devices.",
        )
    } else {
        page::message(
            &state,
            StatusCode::BAD_REQUEST,
            &csrf,
            "Link not valid",
            "This confirmation link is unknown, used or expired. Sign in, or ask for a new link through \"forgot password\".",
        )
    }
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage {
    layout: Layout,
    token: String,
    error: Option<String>,
}

/// The form of a reset link; `error` says why the last attempt was refused.
pub fn reset_page(
    state: &AppState,
    status: StatusCode,
    csrf: &CsrfToken,
    token: String,
    error: Option<String>,
) -> Response {
    Page(status, ResetPage { layout: Layout::new(state, "Choose a new password", csrf, false), token, error })
        .into_response()
}

async fn reset_form(State(state): State<AppState>, csrf: CsrfToken, Query(form): Query<TokenForm>) -> Response {
    reset_page(&state, StatusCode::OK, &csrf, form.token, None)
}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
}

async fn reset(State(state): State<AppState>, ip: ClientIp, csrf: CsrfToken, Form(form): Form<ResetForm>) -> Response {
    match recovery::reset(&state, &ip, &form.token, form.new_password).await {
        Ok(()) => page::message(
            &state,
            StatusCode::OK,
            &csrf,
            "Password changed",
            "Your password is changed and all your devices are signed out. Sign in with the new password.",
        ),
        Err(err) if err.status().is_client_error() => {
            reset_page(&state, err.status(), &csrf, form.token, Some(err.message().to_owned()))
        }
        Err(err) => err.into_response(),
    }
}

// The dashboard.

/// At most this many documents are listed (with their workspaces' totals always complete), so a
/// person with many thousands of documents still gets a page of a readable size.
const DOCUMENT_LIST_LIMIT: i64 = 500;

struct DeviceRow {
    id: String,
    kind: &'static str,
    name: String,
    vault_id: Option<String>,
    client_version: Option<String>,
    created: String,
    last_seen: String,
    revoked: Option<String>,
    /// The session of the browser looking at the page.
    current: bool,
}

impl DeviceRow {
    fn of(device: &DeviceRecord, current_id: &str) -> DeviceRow {
        DeviceRow {
            id: device.id.clone(),
            kind: match device.kind {
                DeviceKind::Client => "desktop client",
                DeviceKind::Session => "sign-in session",
            },
            name: device.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "unnamed".to_owned()),
            vault_id: device.vault_id.clone(),
            client_version: device.client_version.clone(),
            created: clock::rfc3339(device.created_at),
            last_seen: clock::rfc3339(device.last_seen_at),
            revoked: device.revoked_at.map(clock::rfc3339),
            current: device.id == current_id,
        }
    }
}

struct DocRow {
    name: String,
    bytes: String,
}

struct WorkspaceRow {
    id: String,
    name: String,
    documents: i64,
    bytes: String,
    docs: Vec<DocRow>,
    shares: Vec<ShareRow>,
}

/// A share link of a workspace, as its owner sees it (never its token).
struct ShareRow {
    id: String,
    /// `None`: every document of the workspace.
    doc: Option<String>,
    access: &'static str,
    created: String,
    expires: Option<String>,
    expired: bool,
}

/// A share just created: its token, shown this once.
struct NewShareRow {
    workspace: String,
    doc: Option<String>,
    access: &'static str,
    token: String,
}

struct VaultRow {
    vault_id: String,
    ops: i64,
    head: i64,
    blob_bytes: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    layout: Layout,
    username: String,
    email: String,
    has_password: bool,
    notice: Option<&'static str>,
    error: Option<String>,
    devices: Vec<DeviceRow>,
    workspaces: Vec<WorkspaceRow>,
    vaults: Vec<VaultRow>,
    documents_cut: bool,
    document_limit: i64,
    // Share links.
    created_share: Option<NewShareRow>,
}

/// Bytes for people: `999 B`, `1.5 KiB`, `12.0 MiB`.
fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[derive(Deserialize)]
struct DashboardQuery {
    #[serde(default)]
    done: String,
}

/// The outcome a redirect back to the dashboard names; fixed texts, never reflected input.
fn notice(done: &str) -> Option<&'static str> {
    match done {
        "revoked" => Some("The device is revoked: it is signed out and its connections are closed."),
        "share-revoked" => Some("The share link is revoked: it opens nothing and its connections are closed."),
        _ => None,
    }
}

async fn dashboard(
    State(state): State<AppState>,
    csrf: CsrfToken,
    UserSession(principal): UserSession,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, ApiError> {
    dashboard_page(&state, &csrf, &principal, StatusCode::OK, notice(&query.done), None).await
}

/// What [`dashboard_page`] shows beyond the person's data: the outcome of an action.
#[derive(Default)]
struct Outcome {
    notice: Option<&'static str>,
    error: Option<String>,
    created_share: Option<NewShareRow>,
}

async fn dashboard_page(
    state: &AppState,
    csrf: &CsrfToken,
    principal: &Principal,
    status: StatusCode,
    notice: Option<&'static str>,
    error: Option<String>,
) -> Result<Response, ApiError> {
    dashboard_with(state, csrf, principal, status, Outcome { notice, error, created_share: None }).await
}

async fn dashboard_with(
    state: &AppState,
    csrf: &CsrfToken,
    principal: &Principal,
    status: StatusCode,
    outcome: Outcome,
) -> Result<Response, ApiError> {
    let user = &principal.user;
    let shares = state.store.shares_of(&user.id).await?;
    let now = clock::now();
    let devices = state.store.devices_of(&user.id).await?;
    let usage = state.store.workspace_usage(&user.id).await?;
    let documents = state.store.document_usage(&user.id, DOCUMENT_LIST_LIMIT + 1).await?;
    let vaults = state.store.vault_usage(&user.id).await?;
    let documents_cut = documents.len() as i64 > DOCUMENT_LIST_LIMIT;
    let workspaces = usage
        .into_iter()
        .map(|w| WorkspaceRow {
            docs: documents
                .iter()
                .take(DOCUMENT_LIST_LIMIT as usize)
                .filter(|d| d.workspace_id == w.id)
                .map(|d| DocRow { name: d.name.clone(), bytes: human_bytes(d.bytes) })
                .collect(),
            shares: shares
                .iter()
                .filter(|s| s.workspace_id == w.id)
                .map(|s| ShareRow {
                    id: s.id.clone(),
                    doc: s.doc_name.clone(),
                    access: s.access.as_str(),
                    created: clock::rfc3339(s.created_at),
                    expires: s.expires_at.map(clock::rfc3339),
                    expired: s.expires_at.is_some_and(|at| at <= now),
                })
                .collect(),
            id: w.id,
            name: w.name,
            documents: w.documents,
            bytes: human_bytes(w.bytes),
        })
        .collect();
    let page = DashboardPage {
        layout: Layout::new(state, "Your account", csrf, true),
        username: user.username.clone().unwrap_or_else(|| user.email.clone()),
        email: user.email.clone(),
        has_password: user.password_hash.is_some(),
        notice: outcome.notice,
        error: outcome.error,
        devices: devices.iter().map(|d| DeviceRow::of(d, &principal.device.id)).collect(),
        workspaces,
        vaults: vaults
            .into_iter()
            .map(|v| VaultRow { vault_id: v.vault_id, ops: v.ops, head: v.head, blob_bytes: human_bytes(v.blob_bytes) })
            .collect(),
        documents_cut,
        document_limit: DOCUMENT_LIST_LIMIT,
        created_share: outcome.created_share,
    };
    Ok(Page(status, page).into_response())
}

/// A dashboard action that was refused: the dashboard again, saying why.
async fn dashboard_error(state: &AppState, csrf: &CsrfToken, principal: &Principal, err: ApiError) -> Response {
    if !err.status().is_client_error() {
        return err.into_response();
    }
    let message = err.message().to_owned();
    dashboard_page(state, csrf, principal, err.status(), None, Some(message))
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    password: String,
}

/// Revokes one of the person's devices (the rule of the JSON APIs' revoke, password re-entered);
/// its open WebSockets and event streams close at once through the revocation feed.
async fn revoke(
    State(state): State<AppState>,
    ip: ClientIp,
    csrf: CsrfToken,
    UserSession(principal): UserSession,
    Form(form): Form<RevokeForm>,
) -> Response {
    let device_id = form.device_id.trim();
    let result = if device_id.is_empty() || form.password.is_empty() {
        Err(ApiError::bad_request("invalid_request", "device and password required"))
    } else {
        devices::revoke_with_password(&state, &principal.user, &ip, device_id, form.password, clock::now()).await
    };
    match result {
        Ok(()) if device_id == principal.device.id => {
            ([(header::SET_COOKIE, USER_SESSION.clear(&state))], Redirect::to("/login")).into_response()
        }
        Ok(()) => Redirect::to("/dashboard?done=revoked").into_response(),
        Err(err) => dashboard_error(&state, &csrf, &principal, err).await,
    }
}

#[derive(Deserialize)]
struct ShareForm {
    #[serde(default)]
    workspace_id: String,
    /// Empty: the whole workspace.
    #[serde(default)]
    doc: String,
    #[serde(default)]
    access: String,
    /// Empty: no expiry.
    #[serde(default)]
    expires_in_days: String,
}

/// Creates a share link by the rules of `POST /api/shares` and shows the dashboard with its
/// token, this once.
async fn create_share(
    State(state): State<AppState>,
    csrf: CsrfToken,
    UserSession(principal): UserSession,
    Form(form): Form<ShareForm>,
) -> Response {
    let days = form.expires_in_days.trim();
    let expires_in_secs = match days {
        "" => Ok(None),
        days => days
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .map(|d| Some(d * 86_400))
            .ok_or_else(|| ApiError::bad_request("invalid_expiry", "the expiry must be 1 to 3650 days, or empty")),
    };
    let created = match expires_in_secs {
        Ok(expires_in_secs) => {
            let request = crate::api::shares::ShareRequest {
                workspace_id: form.workspace_id.trim().to_owned(),
                doc: Some(form.doc.trim().to_owned()).filter(|d| !d.is_empty()),
                access: form.access.trim().to_owned(),
                expires_in_secs,
            };
            crate::api::shares::create_share(&state, &principal.user.id, request).await
        }
        Err(err) => Err(err),
    };
    match created {
        Ok((share, token)) => {
            let workspaces = state.store.workspaces_of(&principal.user.id).await;
            let workspace = workspaces
                .ok()
                .and_then(|list| list.into_iter().find(|w| w.id == share.workspace_id))
                .map_or_else(|| share.workspace_id.clone(), |w| w.name);
            let created_share =
                Some(NewShareRow { workspace, doc: share.doc_name, access: share.access.as_str(), token });
            let outcome = Outcome { created_share, ..Outcome::default() };
            dashboard_with(&state, &csrf, &principal, StatusCode::CREATED, outcome)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
        Err(err) => dashboard_error(&state, &csrf, &principal, err).await,
    }
}

#[derive(Deserialize)]
struct RevokeShareForm {
    #[serde(default)]
    share_id: String,
}

/// Revokes one of the person's share links (the rule of `DELETE /api/shares/{id}`): its open
/// connections close at once.
async fn revoke_share(
    State(state): State<AppState>,
    csrf: CsrfToken,
    UserSession(principal): UserSession,
    Form(form): Form<RevokeShareForm>,
) -> Response {
    match crate::api::shares::revoke_share(&state, &principal.user.id, form.share_id.trim()).await {
        Ok(()) => Redirect::to("/dashboard?done=share-revoked").into_response(),
        Err(err) => dashboard_error(&state, &csrf, &principal, err).await,
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    ip: ClientIp,
    csrf: CsrfToken,
    UserSession(principal): UserSession,
    Form(form): Form<PasswordForm>,
) -> Response {
    let user = &principal.user;
    match devices::change_password(&state, user, &ip, form.current_password, form.new_password, clock::now()).await {
        Ok(()) => {
            let message = "Your password is changed and every device is signed out. Sign in with the new password.";
            let mut page = page::message(&state, StatusCode::OK, &csrf, "Password changed", message);
            page.headers_mut().insert(header::SET_COOKIE, USER_SESSION.clear(&state));
            page
        }
        Err(err) => dashboard_error(&state, &csrf, &principal, err).await,
    }
}

async fn sign_out_everywhere(
    State(state): State<AppState>,
    csrf: CsrfToken,
    UserSession(principal): UserSession,
) -> Response {
    match devices::sign_out_everywhere(&state, &principal.user.id, clock::now()).await {
        Ok(_) => {
            let message = "Every session is signed out, this one included. Paired desktop clients stay paired.";
            let mut page = page::message(&state, StatusCode::OK, &csrf, "Signed out everywhere", message);
            page.headers_mut().insert(header::SET_COOKIE, USER_SESSION.clear(&state));
            page
        }
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: i64, expected: &str) {
        assert_eq!(human_bytes(bytes), expected, "{bytes}");
    }

    #[test]
    fn bytes_read_as_people_read_them() {
        check(0, "0 B");
        check(1023, "1023 B");
        check(1024, "1.0 KiB");
        check(1536, "1.5 KiB");
        check(12 * 1024 * 1024, "12.0 MiB");
        check(-5, "-5 B");
    }
}
