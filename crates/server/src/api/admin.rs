//! The admin JSON API (`/admin/api/...`): what the admin console does, for scripts as well.
//!
//! Every route takes an [`Admin`]: an admin's bearer token, or the console's `admin_session`
//! cookie (with the CSRF check on mutating requests). Without credentials the answer is 401 JSON,
//! never a redirect; a signed-in non-admin gets 403. Destructive steps (deleting, revoking,
//! resetting a password) carry the admin's own password again (`admin_password`). Every change
//! is written to the audit log. Responses never carry a password hash, token or token hash: the
//! views below are the only shapes that leave, and none has such a field.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use concord_core::email::Email;
use concord_core::password::Password;
use concord_core::token::{NewToken, TokenFormat};
use concord_core::username::Username;
use concord_store::{
    AuditEntry, AuditQuery, DeviceKind, DeviceListing, DeviceQuery, DeviceState, NewUser, Page, Paging, Principal,
    StoreError, UserFilter, UserQuery, UserRecord, UserSort, UserSummary,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::accounts::DEFAULT_WORKSPACE;
use crate::accounts::credentials::hash_password;
use crate::accounts::devices;
use crate::accounts::request::ClientIp;
use crate::app::AppState;
use crate::audit::{Entry, Event, Ip};
use crate::config::{MailConfig, SmtpSecurity};
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth, bearer_token, body_error, parse_json};
use crate::live_settings::{GeneralChange, PasswordChange, SmtpChange};
use crate::web::session::SessionCookie;
use crate::{clock, mail};

/// Rows per page unless asked otherwise, and the most one page may hold.
const PER_PAGE: i64 = 50;
const MAX_PER_PAGE: i64 = 200;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(stats))
        .routes(utoipa_axum::routes!(diagnostics))
        .routes(utoipa_axum::routes!(users))
        .routes(utoipa_axum::routes!(create_user))
        .routes(utoipa_axum::routes!(user))
        .routes(utoipa_axum::routes!(delete_user))
        .routes(utoipa_axum::routes!(block_user))
        .routes(utoipa_axum::routes!(confirm_user))
        .routes(utoipa_axum::routes!(set_admin))
        .routes(utoipa_axum::routes!(edit_user))
        .routes(utoipa_axum::routes!(reset_password))
        .routes(utoipa_axum::routes!(devices_list))
        .routes(utoipa_axum::routes!(revoke_device))
        .routes(utoipa_axum::routes!(delete_device))
        .routes(utoipa_axum::routes!(vaults))
        .routes(utoipa_axum::routes!(delete_vault))
        .routes(utoipa_axum::routes!(workspaces))
        .routes(utoipa_axum::routes!(delete_workspace))
        .routes(utoipa_axum::routes!(storage_cleanup))
        .routes(utoipa_axum::routes!(backup))
        .routes(utoipa_axum::routes!(audit_log))
        .routes(utoipa_axum::routes!(settings))
        .routes(utoipa_axum::routes!(save_settings))
        .routes(utoipa_axum::routes!(save_smtp))
        .routes(utoipa_axum::routes!(clear_smtp))
        .routes(utoipa_axum::routes!(test_smtp))
}

/// The admin console's session: sent only to `/admin` paths, apart from people's `user_session`,
/// so signing in to the console is a deliberate step and a person's session never opens it.
pub const ADMIN_SESSION: SessionCookie = SessionCookie { name: "admin_session", path: "/admin" };

/// A signed-in admin. See the module docs for what is accepted.
#[derive(Debug, Clone)]
pub struct Admin {
    pub user: UserRecord,
    /// The session or device the admin signed in with (the console's sign-out ends it).
    pub device_id: String,
}

impl Admin {
    /// How the audit log names the admin.
    pub fn label(&self) -> String {
        self.user.username.clone().unwrap_or_else(|| self.user.email.clone())
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, ApiError> {
        if bearer_token(parts).is_some() {
            let Auth(principal) = Auth::from_request_parts(parts, state).await?;
            return admit(principal);
        }
        // The console's cookie; `web::csrf::protect` has already refused a forged mutating request.
        match ADMIN_SESSION.principal(state, &parts.headers).await? {
            Some(principal) => admit(principal),
            None => Err(ApiError::unauthorized("admin sign-in required")),
        }
    }
}

/// The admin rule, whichever credential named the user.
pub fn admit(principal: Principal) -> Result<Admin, ApiError> {
    if !principal.user.is_admin {
        return Err(ApiError::forbidden("admin only"));
    }
    Ok(Admin { user: principal.user, device_id: principal.device.id })
}

/// A JSON body that may be left out: an empty body reads as `T::default()`, anything else must
/// be one JSON value (see [`crate::extract::parse_json`]).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(T::default()));
        }
        parse_json(&bytes).map(Body)
    }
}

// ---- query strings ----

/// A query string's pairs; each route reads the names it knows and refuses bad values precisely.
struct Params(HashMap<String, String>);

impl Params {
    fn parse(query: Option<String>) -> Params {
        let query = query.unwrap_or_default();
        let pairs = form_urlencoded::parse(query.as_bytes()).into_owned();
        Params(pairs.filter(|(_, v)| !v.is_empty()).collect())
    }

    fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn choice<T>(&self, name: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, ApiError> {
        self.text(name)
            .map(|v| parse(&v).ok_or_else(|| ApiError::bad_request("invalid_query", format!("unknown {name} {v:?}"))))
            .transpose()
    }

    fn number(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| ApiError::bad_request("invalid_query", format!("{name} must be {min} to {max}")))
            })
            .transpose()
    }

    /// `page` (from 1) and `per_page`.
    fn paging(&self) -> Result<Paging, ApiError> {
        let per_page = self.number("per_page", 1, MAX_PER_PAGE)?.unwrap_or(PER_PAGE);
        let page = self.number("page", 1, 1_000_000)?.unwrap_or(1);
        Ok(Paging { offset: (page - 1) * per_page, limit: per_page })
    }

    /// A time as unix seconds or a date `YYYY-MM-DD` (its start, UTC).
    fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .or_else(|| {
                        let date = chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d").ok()?;
                        Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
                    })
                    .ok_or_else(|| ApiError::bad_request("invalid_query", format!("{name} must be a date YYYY-MM-DD")))
            })
            .transpose()
    }
}

/// The listing filters of the users page and `GET /admin/api/users`.
pub fn user_query(query: Option<String>) -> Result<(UserQuery, Paging), ApiError> {
    let p = Params::parse(query);
    let user_query = UserQuery {
        text: p.text("q").unwrap_or_default(),
        filter: p.choice("filter", UserFilter::parse)?.unwrap_or_default(),
        sort: p.choice("sort", UserSort::parse)?.unwrap_or_default(),
    };
    Ok((user_query, p.paging()?))
}

pub fn device_query(query: Option<String>) -> Result<(DeviceQuery, Paging), ApiError> {
    let p = Params::parse(query);
    let kind = p.choice("kind", |k| match k {
        "session" => Some(DeviceKind::Session),
        "client" => Some(DeviceKind::Client),
        _ => None,
    })?;
    let device_query = DeviceQuery {
        user_id: p.text("user_id"),
        kind,
        state: p.choice("state", DeviceState::parse)?.unwrap_or_default(),
    };
    Ok((device_query, p.paging()?))
}

pub fn audit_query(query: Option<String>) -> Result<(AuditQuery, Paging), ApiError> {
    let p = Params::parse(query);
    let audit_query = AuditQuery {
        event: p.text("event"),
        user: p.text("user"),
        text: p.text("q"),
        since: p.time("since")?,
        // A date names its whole day.
        until: p.time("until")?.map(|t| if p.text("until").is_some_and(|v| v.contains('-')) { t + 86_400 } else { t }),
    };
    Ok((audit_query, p.paging()?))
}

pub fn paging(query: Option<String>) -> Result<Paging, ApiError> {
    Params::parse(query).paging()
}

// ---- views: the only shapes that leave ----

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageView<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

impl<T> PageView<T> {
    pub fn of<S>(page: Page<S>, paging: Paging, view: impl Fn(S) -> T) -> PageView<T> {
        PageView {
            items: page.items.into_iter().map(view).collect(),
            total: page.total,
            page: paging.offset / paging.limit + 1,
            per_page: paging.limit,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub username: Option<String>,
    pub confirmed: bool,
    pub blocked: bool,
    pub is_admin: bool,
    pub has_password: bool,
    pub created_at: String,
    pub devices: Option<i64>,
    pub last_seen_at: Option<String>,
}

impl UserView {
    fn of(user: UserRecord) -> UserView {
        UserView {
            has_password: user.password_hash.is_some(),
            id: user.id,
            email: user.email,
            username: user.username,
            confirmed: user.confirmed,
            blocked: user.blocked,
            is_admin: user.is_admin,
            created_at: clock::rfc3339(user.created_at),
            devices: None,
            last_seen_at: None,
        }
    }

    pub fn summary(summary: UserSummary) -> UserView {
        UserView {
            devices: Some(summary.devices),
            last_seen_at: summary.last_seen_at.map(clock::rfc3339),
            ..UserView::of(summary.user)
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub kind: &'static str,
    pub name: Option<String>,
    pub vault_id: Option<String>,
    pub client_version: Option<String>,
    pub created_at: String,
    pub last_seen_at: String,
    pub revoked_at: Option<String>,
}

impl DeviceView {
    pub fn of(listing: DeviceListing) -> DeviceView {
        let d = listing.device;
        DeviceView {
            id: d.id,
            user_id: d.user_id,
            email: listing.email,
            kind: d.kind.as_str(),
            name: d.name,
            vault_id: d.vault_id,
            client_version: d.client_version,
            created_at: clock::rfc3339(d.created_at),
            last_seen_at: clock::rfc3339(d.last_seen_at),
            revoked_at: d.revoked_at.map(clock::rfc3339),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: String,
    pub event: String,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub detail: String,
    pub ip: Option<String>,
}

impl AuditView {
    pub fn of(e: AuditEntry) -> AuditView {
        AuditView {
            id: e.id,
            at: clock::rfc3339(e.entry.at),
            event: e.entry.event,
            actor: e.entry.actor,
            subject: e.entry.subject,
            detail: e.entry.detail,
            ip: e.entry.ip,
        }
    }
}

// ---- dashboard and diagnostics ----

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Warning {
    pub code: &'static str,
    pub message: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    pub users: i64,
    pub devices: i64,
    pub vaults: i64,
    pub workspaces: i64,
    pub documents: i64,
    pub operations: i64,
    pub operations_24h: i64,
    pub blob_bytes: i64,
    pub database_bytes: u64,
    pub wal_bytes: u64,
    pub websockets: usize,
    pub rooms: usize,
    pub last_backup: Option<String>,
    pub warnings: Vec<Warning>,
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn wal_path(state: &AppState) -> std::path::PathBuf {
    let mut wal = state.config.database_path.clone().into_os_string();
    wal.push("-wal");
    wal.into()
}

pub async fn stats_view(state: &AppState) -> Result<StatsView, ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    let s = state.store.stats(clock::now()).await?;
    let last_backup = crate::ops::backup::last_scheduled(state);
    let mut warnings = Vec::new();
    let mailer = &state.accounts.mailer;
    if mailer.is_dev() {
        warnings.push(Warning {
            code: "mail_dev_mode",
            message: "mail is in dev mode: sign-in links go to whoever asks; configure SMTP",
        });
    } else if mailer.is_failing() {
        warnings.push(Warning { code: "mail_failing", message: "the last mail could not be sent" });
    }
    if state.settings.registration_open() {
        warnings.push(Warning { code: "registration_open", message: "anyone who reaches the server can register" });
    }
    if last_backup.is_none() {
        warnings.push(Warning {
            code: "backups_missing",
            message: "no scheduled backup exists: set --backup-dir or use \"back up now\"",
        });
    }
    Ok(StatsView {
        users: s.users,
        devices: s.devices,
        vaults: s.vaults,
        workspaces: s.workspaces,
        documents: s.documents,
        operations: s.operations,
        operations_24h: s.operations_24h,
        blob_bytes: s.blob_bytes,
        database_bytes: file_size(&state.config.database_path),
        wal_bytes: file_size(&wal_path(state)),
        websockets: state.stats.connections.load(Relaxed),
        rooms: state.stats.rooms.load(Relaxed),
        last_backup: last_backup.map(|(name, _)| name),
        warnings,
    })
}

#[utoipa::path(get, path = "/admin/api/stats", tag = "admin", security(("device_token" = []), ("admin_session" = [])), responses((status = 200, description = "success", body = StatsView), crate::openapi::Authed, crate::openapi::Common))]
async fn stats(State(state): State<AppState>, _: Admin) -> Result<Json<StatsView>, ApiError> {
    Ok(Json(stats_view(&state).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DiagnosticsView {
    pub version: &'static str,
    pub build: &'static str,
    pub uptime_seconds: u64,
    pub schema_version: i64,
    pub database_bytes: u64,
    pub wal_bytes: u64,
    pub data_dir_free_bytes: Option<u64>,
}

pub async fn diagnostics_view(state: &AppState) -> Result<DiagnosticsView, ApiError> {
    let free = rustix::fs::statvfs(&state.config.data_dir).ok().map(|s| s.f_bavail.saturating_mul(s.f_frsize));
    Ok(DiagnosticsView {
        version: env!("CARGO_PKG_VERSION"),
        build: crate::api::health::BUILD_COMMIT,
        uptime_seconds: state.started.elapsed().as_secs(),
        schema_version: state.store.schema_version().await?,
        database_bytes: file_size(&state.config.database_path),
        wal_bytes: file_size(&wal_path(state)),
        data_dir_free_bytes: free,
    })
}

#[utoipa::path(get, path = "/admin/api/diagnostics", tag = "admin", security(("device_token" = []), ("admin_session" = [])), responses((status = 200, description = "success", body = DiagnosticsView), crate::openapi::Authed, crate::openapi::Common))]
async fn diagnostics(State(state): State<AppState>, _: Admin) -> Result<Json<DiagnosticsView>, ApiError> {
    Ok(Json(diagnostics_view(&state).await?))
}

// ---- users ----

#[utoipa::path(get, path = "/admin/api/users", tag = "admin", security(("device_token" = []), ("admin_session" = [])), params(("q" = Option<String>, Query, description = "text in email or username"), ("filter" = Option<String>, Query, pattern = "^(all|active|blocked|unconfirmed|admin)$"), ("sort" = Option<String>, Query, pattern = "^(newest|oldest|email|username)$"), ("page" = Option<i64>, Query, minimum = 1, maximum = 1000000, description = "page number, from 1"), ("per_page" = Option<i64>, Query, minimum = 1, maximum = 200, description = "items per page (default 50)")), responses((status = 200, description = "success", body = PageView<UserView>), (status = 400, description = "invalid query", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::Common))]
async fn users(
    State(state): State<AppState>,
    _: Admin,
    RawQuery(query): RawQuery,
) -> Result<Json<PageView<UserView>>, ApiError> {
    let (query, paging) = user_query(query)?;
    let page = state.store.list_users(&query, paging).await?;
    Ok(Json(PageView::of(page, paging, UserView::summary)))
}

async fn target(state: &AppState, id: &str) -> Result<UserRecord, ApiError> {
    state.store.user_by_id(id).await?.ok_or_else(|| ApiError::not_found("user not found"))
}

#[utoipa::path(get, path = "/admin/api/users/{id}", tag = "admin", security(("device_token" = []), ("admin_session" = [])), params(("id" = String, Path)), responses((status = 200, description = "success", body = UserView), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Conflict, crate::openapi::Common))]
async fn user(State(state): State<AppState>, _: Admin, Path(id): Path<String>) -> Result<Json<UserView>, ApiError> {
    Ok(Json(UserView::of(target(&state, &id).await?)))
}

fn conflict() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "already_exists", "username or email already taken")
}

fn bad_email() -> ApiError {
    ApiError::bad_request("invalid_email", "invalid email")
}

fn parse_username(raw: Option<&str>) -> Result<Option<Username>, ApiError> {
    raw.map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| Username::parse(u).map_err(|e| ApiError::bad_request("invalid_username", e.to_string())))
        .transpose()
}

/// A password nobody chose: shown to the admin once, to hand over. 20 base64url characters
/// (120 random bits).
fn one_time_password() -> Password {
    let raw = NewToken::generate(TokenFormat::Base64Url).plaintext[..20].to_owned();
    Password::parse(raw).expect("20 characters pass the policy")
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateUserRequest {
    // The constraints are `concord_core`'s rules, so generated bodies (schemathesis) reach
    // past validation to the accounts the stateful phase then acts on.
    #[serde(default)]
    #[schema(format = Email, max_length = 320)]
    pub email: String,
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")]
    pub username: Option<String>,
    /// Absent or empty: a one-time password is made and returned once.
    #[schema(min_length = 8, max_length = 256)]
    pub password: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedUser {
    pub user: UserView,
    /// Only when the server chose the password; it is not stored anywhere but as a hash.
    pub one_time_password: Option<String>,
}

/// Creates a confirmed account (the admin vouches for the address).
pub async fn create(
    state: &AppState,
    admin: &Admin,
    ip: &Ip,
    body: CreateUserRequest,
) -> Result<CreatedUser, ApiError> {
    let email = Email::parse(body.email.trim()).map_err(|_| bad_email())?;
    let username = parse_username(body.username.as_deref())?;
    let chosen = body.password.filter(|p| !p.is_empty());
    let generated = chosen.is_none();
    let password = match chosen {
        Some(raw) => Password::parse(raw).map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?,
        None => one_time_password(),
    };
    if state.store.user_by_email(email.as_str()).await?.is_some_and(|u| u.confirmed) {
        return Err(conflict());
    }
    let shown = generated.then(|| password.as_str().to_owned());
    let hash = hash_password(&state.accounts, password).await?;
    let now = clock::now();
    let user = match &username {
        Some(name) => {
            let new =
                NewUser { email: email.as_str().to_owned(), username: name.as_str().to_owned(), password_hash: hash };
            let user = state.store.create_user(new, now).await.map_err(|e| match e {
                StoreError::Conflict(_) => conflict(),
                e => e.into(),
            })?;
            state.store.confirm_user(&user.id).await?;
            user
        }
        None => {
            // Proving the address (here: the admin vouching) discards a stranger's unconfirmed claim.
            let user = state.store.user_for_verified_email(email.as_str(), now).await?;
            state.store.set_password(&user.id, &hash).await?;
            user
        }
    };
    if body.admin {
        state.store.set_user_admin(&user.id, true).await?;
    }
    state.store.ensure_workspace(&user.id, DEFAULT_WORKSPACE, now).await?;
    let detail = if body.admin { "created by an admin, with admin rights" } else { "created by an admin" };
    state.audit.record(Entry::new(Event::UserCreated, ip, detail).actor(admin.label()).subject(&user.email));
    Ok(CreatedUser { user: UserView::of(target(state, &user.id).await?), one_time_password: shown })
}

#[utoipa::path(post, path = "/admin/api/users/create", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), request_body = CreateUserRequest, responses((status = 201, description = "created", body = CreatedUser), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Conflict, crate::openapi::Common))]
async fn create_user(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    Ok((StatusCode::CREATED, Json(create(&state, &admin, &ip, body).await?)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BlockRequest {
    /// Absent (or no body): block.
    #[serde(default = "yes")]
    pub blocked: bool,
}

impl Default for BlockRequest {
    fn default() -> BlockRequest {
        BlockRequest { blocked: true }
    }
}

fn yes() -> bool {
    true
}

pub async fn block(state: &AppState, admin: &Admin, ip: &Ip, id: &str, blocked: bool) -> Result<UserView, ApiError> {
    let user = target(state, id).await?;
    if user.id == admin.user.id && blocked {
        return Err(ApiError::bad_request("cannot_change_self", "you cannot block yourself"));
    }
    devices::set_blocked(state, &user.id, blocked).await?;
    let detail = if blocked { "blocked" } else { "unblocked" };
    state.audit.record(Entry::new(Event::UserBlockChanged, ip, detail).actor(admin.label()).subject(&user.email));
    Ok(UserView::of(target(state, id).await?))
}

#[utoipa::path(post, path = "/admin/api/users/{id}/block", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), params(("id" = String, Path)), request_body(content = Option<BlockRequest>, description = "optional; an empty body means the defaults"), responses((status = 200, description = "success", body = UserView), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Conflict, crate::openapi::Common))]
async fn block_user(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    Path(id): Path<String>,
    Body(body): Body<BlockRequest>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(block(&state, &admin, &ip, &id, body.blocked).await?))
}

pub async fn confirm(state: &AppState, admin: &Admin, ip: &Ip, id: &str) -> Result<UserView, ApiError> {
    let user = target(state, id).await?;
    state.store.confirm_user(&user.id).await?;
    state.store.ensure_workspace(&user.id, DEFAULT_WORKSPACE, clock::now()).await?;
    state.audit.record(
        Entry::new(Event::UserConfirmed, ip, "confirmed by an admin").actor(admin.label()).subject(&user.email),
    );
    Ok(UserView::of(target(state, id).await?))
}

#[utoipa::path(post, path = "/admin/api/users/{id}/confirm", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), params(("id" = String, Path)), responses((status = 200, description = "success", body = UserView), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Conflict, crate::openapi::Common))]
async fn confirm_user(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(confirm(&state, &admin, &ip, &id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AdminRequest {
    pub admin: bool,
}

pub async fn make_admin(state: &AppState, admin: &Admin, ip: &Ip, id: &str, grant: bool) -> Result<UserView, ApiError> {
    let user = target(state, id).await?;
    if user.id == admin.user.id && !grant {
        // So the last admin cannot lock everyone out of the console by accident.
        return Err(ApiError::bad_request("cannot_change_self", "you cannot remove your own admin rights"));
    }
    state.store.set_user_admin(&user.id, grant).await?;
    let detail = if grant { "admin rights granted" } else { "admin rights removed" };
    state.audit.record(Entry::new(Event::UserUpdated, ip, detail).actor(admin.label()).subject(&user.email));
    Ok(UserView::of(target(state, id).await?))
}

#[utoipa::path(post, path = "/admin/api/users/{id}/admin", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), params(("id" = String, Path)), request_body = AdminRequest, responses((status = 200, description = "success", body = UserView), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Conflict, crate::openapi::Common))]
async fn set_admin(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AdminRequest>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(make_admin(&state, &admin, &ip, &id, body.admin).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EditRequest {
    #[serde(default)]
    pub email: String,
    /// Absent, null or empty removes the username (the address stays a login).
    pub username: Option<String>,
}

pub async fn edit(state: &AppState, admin: &Admin, ip: &Ip, id: &str, body: EditRequest) -> Result<UserView, ApiError> {
    let user = target(state, id).await?;
    let email = Email::parse(body.email.trim()).map_err(|_| bad_email())?;
    let username = parse_username(body.username.as_deref())?;
    let username = username.as_ref().map(Username::as_str);
    match state.store.edit_user(&user.id, email.as_str(), username).await {
        Ok(true) => {}
        Ok(false) => return Err(ApiError::not_found("user not found")),
        Err(StoreError::Conflict(_)) => return Err(conflict()),
        Err(e) => return Err(e.into()),
    }
    let detail = format!(
        "email {} -> {}; username {} -> {}",
        user.email,
        email.as_str(),
        user.username.as_deref().unwrap_or("(none)"),
        username.unwrap_or("(none)")
    );
    state.audit.record(Entry::new(Event::UserUpdated, ip, detail).actor(admin.label()).subject(email.as_str()));
    Ok(UserView::of(target(state, id).await?))
}

#[utoipa::path(post, path = "/admin/api/users/{id}/edit", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), params(("id" = String, Path)), request_body = EditRequest, responses((status = 200, description = "success", body = UserView), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Conflict, crate::openapi::Common))]
async fn edit_user(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EditRequest>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(edit(&state, &admin, &ip, &id, body).await?))
}

/// The admin's own password, for destructive steps.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct Confirmed {
    #[serde(default)]
    pub admin_password: String,
}

async fn recheck(state: &AppState, admin: &Admin, limit_ip: &ClientIp, password: String) -> Result<(), ApiError> {
    if password.is_empty() {
        return Err(ApiError::bad_request("password_required", "destructive actions need admin_password"));
    }
    devices::confirm_password(state, &admin.user, limit_ip, password, clock::now()).await
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ResetRequest {
    #[serde(default)]
    pub admin_password: String,
    /// `one_time` (default): a new password shown once; `mail`: a reset link to the user.
    #[serde(default)]
    pub mode: ResetMode,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResetMode {
    #[default]
    OneTime,
    Mail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResetView {
    pub one_time_password: Option<String>,
    pub mailed: bool,
}

pub async fn reset(
    state: &AppState,
    admin: &Admin,
    (ip, limit_ip): (&Ip, &ClientIp),
    id: &str,
    body: ResetRequest,
) -> Result<ResetView, ApiError> {
    recheck(state, admin, limit_ip, body.admin_password).await?;
    let user = target(state, id).await?;
    let entry =
        |detail: &str| Entry::new(Event::UserPasswordReset, ip, detail).actor(admin.label()).subject(&user.email);
    match body.mode {
        ResetMode::OneTime => {
            let password = one_time_password();
            let shown = password.as_str().to_owned();
            // Signs every device of the user out, as any reset does.
            devices::reset_password(state, &user.id, password, clock::now()).await?;
            state.audit.record(entry("one-time password set by an admin; devices signed out"));
            Ok(ResetView { one_time_password: Some(shown), mailed: false })
        }
        ResetMode::Mail => {
            let email = Email::parse(&user.email).map_err(|_| bad_email())?;
            crate::accounts::recovery::send_reset_link(state, email, clock::now())
                .await
                .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "smtp_failed", format!("sending failed: {e}")))?;
            state.audit.record(entry("reset link mailed by an admin"));
            Ok(ResetView { one_time_password: None, mailed: true })
        }
    }
}

#[utoipa::path(post, path = "/admin/api/users/{id}/reset-password", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), params(("id" = String, Path)), request_body(content = Option<ResetRequest>, description = "optional; an empty body means the defaults"), responses((status = 200, description = "success", body = ResetView), (status = 502, description = "mail could not be sent", body = crate::openapi::ErrorBody), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Conflict, crate::openapi::Common))]
async fn reset_password(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    limit_ip: ClientIp,
    Path(id): Path<String>,
    Body(body): Body<ResetRequest>,
) -> Result<Json<ResetView>, ApiError> {
    Ok(Json(reset(&state, &admin, (&ip, &limit_ip), &id, body).await?))
}

pub async fn delete(
    state: &AppState,
    admin: &Admin,
    (ip, limit_ip): (&Ip, &ClientIp),
    id: &str,
    password: String,
) -> Result<(), ApiError> {
    recheck(state, admin, limit_ip, password).await?;
    let user = target(state, id).await?;
    if user.id == admin.user.id {
        return Err(ApiError::bad_request("cannot_change_self", "you cannot delete yourself"));
    }
    // The user's workspaces go with them, held closed while they go as a workspace delete is
    // (on every node): their rooms close with 1000 "workspace deleted" before the store delete, so
    // that is the close the user's own sockets get, and no room reopens a document of them.
    // Connections outside those rooms (event streams) end with the devices' revocation.
    let workspaces = state.store.workspaces_of(&user.id).await?.into_iter().map(|w| w.id).collect();
    let delete = devices::delete_user(state, &user.id);
    if !state.sync.deleting(crate::sync::Deleting::Workspaces(workspaces), delete).await? {
        return Err(ApiError::not_found("user not found"));
    }
    state.audit.record(
        Entry::new(Event::UserDeleted, ip, "deleted with everything they owned")
            .actor(admin.label())
            .subject(&user.email),
    );
    Ok(())
}

#[utoipa::path(delete, path = "/admin/api/users/{id}", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), params(("id" = String, Path)), request_body(content = Option<Confirmed>, description = "optional; an empty body means the defaults"), responses((status = 204, description = "done"), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Conflict, crate::openapi::Common))]
async fn delete_user(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    limit_ip: ClientIp,
    Path(id): Path<String>,
    Body(body): Body<Confirmed>,
) -> Result<StatusCode, ApiError> {
    delete(&state, &admin, (&ip, &limit_ip), &id, body.admin_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- devices ----

#[utoipa::path(get, path = "/admin/api/devices", tag = "admin", security(("device_token" = []), ("admin_session" = [])), params(("user_id" = Option<String>, Query), ("kind" = Option<String>, Query, pattern = "^(session|client)$"), ("state" = Option<String>, Query, pattern = "^(all|live|revoked)$"), ("page" = Option<i64>, Query, minimum = 1, maximum = 1000000, description = "page number, from 1"), ("per_page" = Option<i64>, Query, minimum = 1, maximum = 200, description = "items per page (default 50)")), responses((status = 200, description = "success", body = PageView<DeviceView>), (status = 400, description = "invalid query", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::Common))]
async fn devices_list(
    State(state): State<AppState>,
    _: Admin,
    RawQuery(query): RawQuery,
) -> Result<Json<PageView<DeviceView>>, ApiError> {
    let (query, paging) = device_query(query)?;
    let page = state.store.list_devices(&query, paging).await?;
    Ok(Json(PageView::of(page, paging, DeviceView::of)))
}

/// Revokes (`delete == false`) or deletes any device.
pub async fn end_device(
    state: &AppState,
    admin: &Admin,
    (ip, limit_ip): (&Ip, &ClientIp),
    id: &str,
    password: String,
    delete: bool,
) -> Result<(), ApiError> {
    recheck(state, admin, limit_ip, password).await?;
    let device = state.store.device_by_id(id).await?.ok_or_else(|| ApiError::not_found("device not found"))?;
    let owner = state.store.user_by_id(&device.user_id).await?.map(|u| u.email).unwrap_or_default();
    let (done, event) = if delete {
        (devices::delete_any(state, id).await?, Event::DeviceDeleted)
    } else {
        (devices::revoke_any(state, id, clock::now()).await?, Event::DeviceRevoked)
    };
    if !done {
        return Err(ApiError::not_found("device not found"));
    }
    let detail = format!("{} device of {owner}, by an admin", device.kind.as_str());
    state.audit.record(Entry::new(event, ip, detail).actor(admin.label()).subject(id));
    Ok(())
}

#[utoipa::path(post, path = "/admin/api/devices/{id}/revoke", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), params(("id" = String, Path)), request_body(content = Option<Confirmed>, description = "optional; an empty body means the defaults"), responses((status = 204, description = "done"), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Conflict, crate::openapi::Common))]
async fn revoke_device(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    limit_ip: ClientIp,
    Path(id): Path<String>,
    Body(body): Body<Confirmed>,
) -> Result<StatusCode, ApiError> {
    end_device(&state, &admin, (&ip, &limit_ip), &id, body.admin_password, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/admin/api/devices/{id}", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), params(("id" = String, Path)), request_body(content = Option<Confirmed>, description = "optional; an empty body means the defaults"), responses((status = 204, description = "done"), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Conflict, crate::openapi::Common))]
async fn delete_device(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    limit_ip: ClientIp,
    Path(id): Path<String>,
    Body(body): Body<Confirmed>,
) -> Result<StatusCode, ApiError> {
    end_device(&state, &admin, (&ip, &limit_ip), &id, body.admin_password, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- vaults and workspaces ----

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VaultView {
    pub user_id: String,
    pub email: String,
    pub vault_id: String,
    pub operations: i64,
    pub head: i64,
    pub blobs: i64,
    pub blob_bytes: i64,
    pub devices: i64,
}

impl VaultView {
    pub fn of(v: concord_store::VaultStats) -> VaultView {
        VaultView {
            user_id: v.user_id,
            email: v.email,
            vault_id: v.vault_id,
            operations: v.operations,
            head: v.head,
            blobs: v.blobs,
            blob_bytes: v.blob_bytes,
            devices: v.devices,
        }
    }
}

#[utoipa::path(get, path = "/admin/api/vaults", tag = "admin", security(("device_token" = []), ("admin_session" = [])), params(("page" = Option<i64>, Query, minimum = 1, maximum = 1000000, description = "page number, from 1"), ("per_page" = Option<i64>, Query, minimum = 1, maximum = 200, description = "items per page (default 50)")), responses((status = 200, description = "success", body = PageView<VaultView>), (status = 400, description = "invalid query", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::Common))]
async fn vaults(
    State(state): State<AppState>,
    _: Admin,
    RawQuery(query): RawQuery,
) -> Result<Json<PageView<VaultView>>, ApiError> {
    let paging = paging(query)?;
    let page = state.store.list_vaults(paging).await?;
    Ok(Json(PageView::of(page, paging, VaultView::of)))
}

pub async fn remove_vault(
    state: &AppState,
    admin: &Admin,
    (ip, limit_ip): (&Ip, &ClientIp),
    (user_id, vault_id): (&str, &str),
    password: String,
) -> Result<(), ApiError> {
    recheck(state, admin, limit_ip, password).await?;
    let owner = target(state, user_id).await?;
    let revoked = state
        .store
        .delete_vault(user_id, vault_id, clock::now())
        .await?
        .ok_or_else(|| ApiError::not_found("vault not found"))?;
    devices::announce_revoked(state, user_id, &revoked);
    let detail = format!("vault {vault_id} of {}; {} paired clients revoked", owner.email, revoked.len());
    state.audit.record(Entry::new(Event::VaultDeleted, ip, detail).actor(admin.label()).subject(&owner.email));
    Ok(())
}

#[utoipa::path(delete, path = "/admin/api/vaults/{user_id}/{vault_id}", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), params(("user_id" = String, Path), ("vault_id" = String, Path)), request_body(content = Option<Confirmed>, description = "optional; an empty body means the defaults"), responses((status = 204, description = "done"), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Conflict, crate::openapi::Common))]
async fn delete_vault(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    limit_ip: ClientIp,
    Path((user_id, vault_id)): Path<(String, String)>,
    Body(body): Body<Confirmed>,
) -> Result<StatusCode, ApiError> {
    remove_vault(&state, &admin, (&ip, &limit_ip), (&user_id, &vault_id), body.admin_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkspaceView {
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub documents: i64,
    pub bytes: i64,
    pub created_at: String,
}

impl WorkspaceView {
    pub fn of(w: concord_store::WorkspaceStats) -> WorkspaceView {
        WorkspaceView {
            id: w.workspace.id,
            user_id: w.workspace.user_id,
            email: w.email,
            name: w.workspace.name,
            documents: w.documents,
            bytes: w.bytes,
            created_at: clock::rfc3339(w.workspace.created_at),
        }
    }
}

#[utoipa::path(get, path = "/admin/api/workspaces", tag = "admin", security(("device_token" = []), ("admin_session" = [])), params(("page" = Option<i64>, Query, minimum = 1, maximum = 1000000, description = "page number, from 1"), ("per_page" = Option<i64>, Query, minimum = 1, maximum = 200, description = "items per page (default 50)")), responses((status = 200, description = "success", body = PageView<WorkspaceView>), (status = 400, description = "invalid query", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::Common))]
async fn workspaces(
    State(state): State<AppState>,
    _: Admin,
    RawQuery(query): RawQuery,
) -> Result<Json<PageView<WorkspaceView>>, ApiError> {
    let paging = paging(query)?;
    let page = state.store.list_workspaces(paging).await?;
    Ok(Json(PageView::of(page, paging, WorkspaceView::of)))
}

pub async fn remove_workspace(
    state: &AppState,
    admin: &Admin,
    (ip, limit_ip): (&Ip, &ClientIp),
    id: &str,
    password: String,
) -> Result<(), ApiError> {
    recheck(state, admin, limit_ip, password).await?;
    let workspace = state.store.workspace_by_id(id).await?.ok_or_else(|| ApiError::not_found("workspace not found"))?;
    let delete = state.store.delete_workspace(&workspace.user_id, id);
    if !state.sync.deleting(crate::sync::Deleting::Workspaces(vec![id.to_owned()]), delete).await? {
        return Err(ApiError::not_found("workspace not found"));
    }
    let owner = state.store.user_by_id(&workspace.user_id).await?.map(|u| u.email).unwrap_or_default();
    let detail = format!("workspace {:?} of {owner}", workspace.name);
    state.audit.record(Entry::new(Event::WorkspaceDeleted, ip, detail).actor(admin.label()).subject(&owner));
    Ok(())
}

#[utoipa::path(delete, path = "/admin/api/workspaces/{id}", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), params(("id" = String, Path)), request_body(content = Option<Confirmed>, description = "optional; an empty body means the defaults"), responses((status = 204, description = "done"), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Conflict, crate::openapi::Common))]
async fn delete_workspace(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    limit_ip: ClientIp,
    Path(id): Path<String>,
    Body(body): Body<Confirmed>,
) -> Result<StatusCode, ApiError> {
    remove_workspace(&state, &admin, (&ip, &limit_ip), &id, body.admin_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- storage ----

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CleanupView {
    pub tokens: u64,
    pub magic_tokens: u64,
    pub account_tokens: u64,
    pub devices: u64,
    pub unconfirmed_users: u64,
    pub temp_files: usize,
    pub blob_files: usize,
    pub reclaimed_bytes: u64,
}

/// Runs the credential cleanup and the blob collector now, as their jobs do.
pub async fn cleanup(state: &AppState, admin: &Admin, ip: &Ip) -> Result<CleanupView, ApiError> {
    let counts = state.store.cleanup_expired(clock::now()).await?;
    let collected = state
        .blobs
        .collect_garbage(state.store.as_ref(), crate::ops::jobs::STALE_UPLOAD)
        .await
        .map_err(ApiError::io)?;
    let view = CleanupView {
        tokens: counts.tokens,
        magic_tokens: counts.magic_tokens,
        account_tokens: counts.account_tokens,
        devices: counts.devices,
        unconfirmed_users: counts.unconfirmed_users,
        temp_files: collected.temp_files,
        blob_files: collected.blobs,
        reclaimed_bytes: collected.bytes,
    };
    let detail = format!(
        "{} tokens, {} devices, {} unconfirmed users, {} blob files ({} bytes) removed",
        view.tokens + view.magic_tokens + view.account_tokens,
        view.devices,
        view.unconfirmed_users,
        view.blob_files + view.temp_files,
        view.reclaimed_bytes
    );
    state.audit.record(Entry::new(Event::StorageCleanup, ip, detail).actor(admin.label()));
    Ok(view)
}

#[utoipa::path(post, path = "/admin/api/storage/cleanup", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), responses((status = 200, description = "success", body = CleanupView), crate::openapi::Authed, crate::openapi::Conflict, crate::openapi::Common))]
async fn storage_cleanup(State(state): State<AppState>, admin: Admin, ip: Ip) -> Result<Json<CleanupView>, ApiError> {
    Ok(Json(cleanup(&state, &admin, &ip).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BackupView {
    pub file: String,
}

/// Writes a scheduled archive into `--backup-dir` now; 409 `no_backup_dir` without one.
pub async fn back_up(state: &AppState, admin: &Admin, ip: &Ip) -> Result<BackupView, ApiError> {
    let file = crate::ops::backup::backup_now(state).await.map_err(|e| match e {
        crate::ops::backup::BackupError::NotScheduled => {
            ApiError::new(StatusCode::CONFLICT, "no_backup_dir", e.to_string())
        }
        e => ApiError::internal(e),
    })?;
    state.audit.record(Entry::new(Event::BackupCreated, ip, format!("backup {file} written")).actor(admin.label()));
    Ok(BackupView { file })
}

#[utoipa::path(post, path = "/admin/api/backup", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), responses((status = 200, description = "success", body = BackupView), crate::openapi::Authed, crate::openapi::Conflict, crate::openapi::Common))]
async fn backup(State(state): State<AppState>, admin: Admin, ip: Ip) -> Result<Json<BackupView>, ApiError> {
    Ok(Json(back_up(&state, &admin, &ip).await?))
}

// ---- audit log ----

#[utoipa::path(get, path = "/admin/api/audit", tag = "admin", security(("device_token" = []), ("admin_session" = [])), params(("event" = Option<String>, Query, description = "event name"), ("user" = Option<String>, Query, description = "actor or subject"), ("q" = Option<String>, Query, description = "text in the detail"), ("since" = Option<String>, Query, description = "unix seconds or a date YYYY-MM-DD"), ("until" = Option<String>, Query, description = "unix seconds or a date YYYY-MM-DD (the whole day)"), ("page" = Option<i64>, Query, minimum = 1, maximum = 1000000, description = "page number, from 1"), ("per_page" = Option<i64>, Query, minimum = 1, maximum = 200, description = "items per page (default 50)")), responses((status = 200, description = "success", body = PageView<AuditView>), (status = 400, description = "invalid query", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::Common))]
async fn audit_log(
    State(state): State<AppState>,
    _: Admin,
    RawQuery(query): RawQuery,
) -> Result<Json<PageView<AuditView>>, ApiError> {
    let (query, paging) = audit_query(query)?;
    let page = state.store.audit_entries(&query, paging).await?;
    Ok(Json(PageView::of(page, paging, AuditView::of)))
}

// ---- settings ----

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SmtpView {
    pub host: String,
    pub port: u16,
    pub security: &'static str,
    pub username: Option<String>,
    /// Whether a password is set; the password itself is never shown.
    pub password_set: bool,
    pub from_email: String,
    pub from_name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SettingsView {
    pub server_name: String,
    pub public_url: String,
    pub registration: bool,
    /// Which values come from the console (the rest from flags, environment or defaults).
    pub saved: Vec<&'static str>,
    pub mail_mode: &'static str,
    pub smtp: Option<SmtpView>,
}

pub fn settings_view(state: &AppState) -> SettingsView {
    let c = state.settings.current();
    let saved = [
        ("server_name", c.server_name_saved),
        ("public_url", c.public_url_saved),
        ("registration", c.registration_saved),
        ("smtp", c.smtp_saved),
    ]
    .into_iter()
    .filter_map(|(name, saved)| saved.then_some(name))
    .collect();
    let smtp = match c.mail {
        MailConfig::Dev => None,
        MailConfig::Smtp(s) => Some(SmtpView {
            host: s.host,
            port: s.port,
            security: match s.security {
                SmtpSecurity::Tls => "tls",
                SmtpSecurity::Starttls => "starttls",
                SmtpSecurity::None => "none",
            },
            username: s.credentials.as_ref().map(|(u, _)| u.clone()),
            password_set: s.credentials.is_some(),
            from_email: s.from_email,
            from_name: s.from_name,
        }),
    };
    SettingsView {
        server_name: c.server_name,
        public_url: c.public_url,
        registration: c.registration,
        saved,
        mail_mode: if smtp.is_some() { "smtp" } else { "dev" },
        smtp,
    }
}

#[utoipa::path(get, path = "/admin/api/settings", tag = "admin", security(("device_token" = []), ("admin_session" = [])), responses((status = 200, description = "success", body = SettingsView), crate::openapi::Authed, crate::openapi::Common))]
async fn settings(State(state): State<AppState>, _: Admin) -> Json<SettingsView> {
    Json(settings_view(&state))
}

/// Absent leaves a field as it is; `null` clears it (back to its startup value).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct SettingsRequest {
    #[serde(default, deserialize_with = "present")]
    pub server_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub public_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub registration: Option<Option<bool>>,
}

pub async fn save_general(
    state: &AppState,
    admin: &Admin,
    ip: &Ip,
    body: SettingsRequest,
) -> Result<SettingsView, ApiError> {
    let change =
        GeneralChange { server_name: body.server_name, public_url: body.public_url, registration: body.registration };
    let changed = state.settings.save_general(change).await?;
    if !changed.is_empty() {
        let c = state.settings.current();
        let detail = changed
            .iter()
            .map(|name| match *name {
                "server_name" => format!("server name {:?}", c.server_name),
                "public_url" => format!("public URL {}", c.public_url),
                _ => format!("registration {}", if c.registration { "on" } else { "off" }),
            })
            .collect::<Vec<_>>()
            .join("; ");
        state.audit.record(Entry::new(Event::WebSettingsUpdated, ip, detail).actor(admin.label()));
    }
    Ok(settings_view(state))
}

#[utoipa::path(post, path = "/admin/api/settings", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), request_body = SettingsRequest, responses((status = 200, description = "success", body = SettingsView), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn save_settings(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    ApiJson(body): ApiJson<SettingsRequest>,
) -> Result<Json<SettingsView>, ApiError> {
    Ok(Json(save_general(&state, &admin, &ip, body).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SmtpRequest {
    #[serde(default)]
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: String,
    /// Absent or empty keeps the current password.
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub clear_password: bool,
    #[serde(default)]
    pub from_email: String,
    #[serde(default)]
    pub from_name: String,
}

pub async fn save_smtp_settings(
    state: &AppState,
    admin: &Admin,
    ip: &Ip,
    body: SmtpRequest,
) -> Result<SettingsView, ApiError> {
    let password = match (body.clear_password, body.password.is_empty()) {
        (true, _) => PasswordChange::Clear,
        (false, true) => PasswordChange::Keep,
        (false, false) => PasswordChange::Set(body.password.parse().unwrap_or_else(|never| match never {})),
    };
    let password_changed = !matches!(password, PasswordChange::Keep);
    let change = SmtpChange {
        host: body.host,
        port: body.port,
        security: body.security,
        username: body.username,
        password,
        from_email: body.from_email,
        from_name: body.from_name,
    };
    let smtp = state.settings.save_smtp(change).await?;
    let view = settings_view(state);
    let security = view.smtp.as_ref().map_or("", |s| s.security);
    let login = smtp.credentials.as_ref().map_or("no login".to_owned(), |(u, _)| format!("user {u}"));
    let detail = format!(
        "{}:{} {security}, {login}{}, from {}",
        smtp.host,
        smtp.port,
        if password_changed { ", password changed" } else { "" },
        smtp.from_email
    );
    state.audit.record(Entry::new(Event::SmtpSettingsUpdated, ip, detail).actor(admin.label()));
    Ok(view)
}

#[utoipa::path(post, path = "/admin/api/smtp", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), request_body = SmtpRequest, responses((status = 200, description = "success", body = SettingsView), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn save_smtp(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    ApiJson(body): ApiJson<SmtpRequest>,
) -> Result<Json<SettingsView>, ApiError> {
    Ok(Json(save_smtp_settings(&state, &admin, &ip, body).await?))
}

pub async fn forget_smtp(state: &AppState, admin: &Admin, ip: &Ip) -> Result<SettingsView, ApiError> {
    state.settings.clear_smtp().await?;
    let detail = "console SMTP settings cleared; the startup mail settings apply";
    state.audit.record(Entry::new(Event::SmtpSettingsUpdated, ip, detail).actor(admin.label()));
    Ok(settings_view(state))
}

#[utoipa::path(delete, path = "/admin/api/smtp", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), responses((status = 200, description = "success", body = SettingsView), crate::openapi::Authed, crate::openapi::Common))]
async fn clear_smtp(State(state): State<AppState>, admin: Admin, ip: Ip) -> Result<Json<SettingsView>, ApiError> {
    Ok(Json(forget_smtp(&state, &admin, &ip).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct TestMailRequest {
    /// Absent: the admin's own address.
    pub to: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestMailView {
    pub sent: bool,
    pub to: String,
}

pub async fn send_test(state: &AppState, admin: &Admin, ip: &Ip, to: Option<String>) -> Result<TestMailView, ApiError> {
    let to = to.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| admin.user.email.clone());
    let to = Email::parse(to.trim()).map_err(|_| bad_email())?;
    if state.accounts.mailer.is_dev() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "mail_dev_mode",
            "mail is in dev mode: save SMTP settings first",
        ));
    }
    let sent = state.accounts.mailer.send(mail::test_mail(to.clone(), &state.settings.server_name())).await;
    let entry = |event, detail: String| Entry::new(event, ip, detail).actor(admin.label()).subject(to.as_str());
    match sent {
        Ok(()) => {
            state.audit.record(entry(Event::SmtpTestPassed, "test mail sent".to_owned()));
            Ok(TestMailView { sent: true, to: to.as_str().to_owned() })
        }
        Err(err) => {
            state.audit.record(entry(Event::SmtpTestFailed, err.to_string()));
            Err(ApiError::new(StatusCode::BAD_GATEWAY, "smtp_failed", format!("the test mail was not sent: {err}")))
        }
    }
}

#[utoipa::path(post, path = "/admin/api/smtp/test", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), request_body(content = Option<TestMailRequest>, description = "optional; an empty body means the defaults"), responses((status = 200, description = "success", body = TestMailView), (status = 502, description = "mail could not be sent", body = crate::openapi::ErrorBody), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Conflict, crate::openapi::Common))]
async fn test_smtp(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    Body(body): Body<TestMailRequest>,
) -> Result<Json<TestMailView>, ApiError> {
    Ok(Json(send_test(&state, &admin, &ip, body.to).await?))
}
