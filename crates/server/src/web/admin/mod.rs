//! The admin console under `/admin`: server-rendered pages over the same operations as the admin
//! JSON API (`api::admin`), so a page and a script can never disagree about a rule.
//!
//! Its own `admin_session` cookie (path `/admin`), opened only for admins by their password; a
//! person's `user_session` never opens it. Without a session every page answers 401 with the
//! sign-in form (never a redirect), a signed-in non-admin 403. Forms carry the CSRF token (the
//! `web::csrf` middleware checks every one); destructive forms ask for the admin's password again.
//! After an action the console shows its outcome on a result page with a link back.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use concord_store::{DeviceState, UserFilter, UserSort};
use serde::Deserialize;

use crate::accounts::devices;
use crate::accounts::request::{ClientIp, UserAgent};
use crate::accounts::sign_in::{self, SessionFor};
use crate::api::admin::{
    self as api, ADMIN_SESSION, Admin, AuditView, DeviceView, DiagnosticsView, PageView, SettingsView, StatsView,
    UserView, VaultView, WorkspaceView,
};
use crate::app::AppState;
use crate::audit::{Entry, Event, Ip};
use crate::clock;
use crate::error::ApiError;
use crate::web::csrf::CsrfToken;
use crate::web::page::{Layout, Page};

/// How long a console session lasts: a working day, much shorter than a person's session,
/// because it can do everything.
const SESSION_SECS: i64 = 12 * 3600;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin", get(dashboard))
        .route("/admin/users", get(users))
        .route("/admin/users/create", post(create_user))
        .route("/admin/users/{id}/block", post(block_user))
        .route("/admin/users/{id}/confirm", post(confirm_user))
        .route("/admin/users/{id}/admin", post(set_admin))
        .route("/admin/users/{id}/edit", post(edit_user))
        .route("/admin/users/{id}/reset-password", post(reset_password))
        .route("/admin/users/{id}/delete", post(delete_user))
        .route("/admin/devices", get(devices_page))
        .route("/admin/devices/{id}/revoke", post(revoke_device))
        .route("/admin/devices/{id}/delete", post(delete_device))
        .route("/admin/vaults", get(vaults))
        .route("/admin/vaults/{user_id}/{vault_id}/delete", post(delete_vault))
        .route("/admin/workspaces/{id}/delete", post(delete_workspace))
        .route("/admin/storage", get(storage))
        .route("/admin/storage/cleanup", post(cleanup))
        .route("/admin/backup", post(backup))
        .route("/admin/audit", get(audit))
        .route("/admin/settings", get(settings).post(save_settings))
        .route("/admin/smtp", post(save_smtp))
        .route("/admin/smtp/clear", post(clear_smtp))
        .route("/admin/smtp/test", post(test_smtp))
        .route("/admin/diagnostics", get(diagnostics))
}

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    layout: Layout,
    login: String,
    error: Option<String>,
}

fn login_page(
    state: &AppState,
    status: StatusCode,
    csrf: &CsrfToken,
    login: String,
    error: Option<String>,
) -> Response {
    Page(status, LoginPage { layout: Layout::new(state, "Admin sign-in", csrf, false), login, error }).into_response()
}

#[derive(Template)]
#[template(path = "admin/result.html")]
struct ResultPage {
    layout: Layout,
    ok: bool,
    message: String,
    /// A one-time password to hand over, shown on this page only.
    secret: Option<String>,
    back: String,
}

/// The console's signed-in admin, with the request's CSRF token for the page's forms.
pub struct Console {
    admin: Admin,
    csrf: CsrfToken,
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Console, Response> {
        let csrf = parts.extensions.get::<CsrfToken>().cloned().unwrap_or_else(CsrfToken::none);
        match ADMIN_SESSION.principal(state, &parts.headers).await {
            Ok(Some(principal)) => match api::admit(principal) {
                Ok(admin) => Ok(Console { admin, csrf }),
                Err(err) => Err(result(state, &csrf, "/", Err(err))),
            },
            Ok(None) => Err(login_page(
                state,
                StatusCode::UNAUTHORIZED,
                &csrf,
                String::new(),
                Some("Sign in as an admin to continue.".to_owned()),
            )),
            Err(err) => Err(err.into_response()),
        }
    }
}

impl Console {
    fn layout(&self, state: &AppState, title: &str) -> Layout {
        Layout::new(state, title, &self.csrf, true)
    }
}

/// The outcome page of an action: its message, or the refusal with the error's status.
fn result(
    state: &AppState,
    csrf: &CsrfToken,
    back: &str,
    outcome: Result<(String, Option<String>), ApiError>,
) -> Response {
    let (status, ok, message, secret) = match outcome {
        Ok((message, secret)) => (StatusCode::OK, true, message, secret),
        Err(err) => (err.status(), false, err.message().to_owned(), None),
    };
    let title = if ok { "Done" } else { "Not done" };
    let signed_in = status != StatusCode::FORBIDDEN;
    let page =
        ResultPage { layout: Layout::new(state, title, csrf, signed_in), ok, message, secret, back: back.to_owned() };
    Page(status, page).into_response()
}

fn done(message: impl Into<String>) -> Result<(String, Option<String>), ApiError> {
    Ok((message.into(), None))
}

fn render<T: Template>(page: Result<T, ApiError>) -> Response {
    match page {
        Ok(page) => Page::ok(page).into_response(),
        Err(err) => err.into_response(),
    }
}

/// The current query with `page` set to `n`, for paging links (values re-encoded).
fn page_link(query: &Option<String>, n: i64) -> String {
    let pairs = form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()).into_owned();
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.filter(|(k, _)| k != "page") {
        out.append_pair(&k, &v);
    }
    out.append_pair("page", &n.to_string());
    out.finish()
}

/// Previous and next links of a listing.
fn neighbours<T>(query: &Option<String>, page: &PageView<T>) -> (Option<String>, Option<String>) {
    let prev = (page.page > 1).then(|| page_link(query, page.page - 1));
    let next = (page.page * page.per_page < page.total).then(|| page_link(query, page.page + 1));
    (prev, next)
}

fn param(query: &Option<String>, name: &str) -> String {
    let pairs = form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes());
    pairs.into_owned().find(|(k, _)| k == name).map(|(_, v)| v).unwrap_or_default()
}

// ---- signing in and out ----

async fn login_form(State(state): State<AppState>, csrf: CsrfToken) -> Response {
    login_page(&state, StatusCode::OK, &csrf, String::new(), None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
}

/// The password is checked before admin rights (as every sign-in checks it before the account's
/// state), so only someone who knows the password learns that the account is not an admin.
async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    audit_ip: Ip,
    agent: UserAgent,
    csrf: CsrfToken,
    Form(form): Form<LoginForm>,
) -> Response {
    let login = form.login.trim().to_owned();
    let now = clock::now();
    let outcome = async {
        // The same input rule as every other sign-in.
        sign_in::checked_login(&login, &form.password)?;
        let user = sign_in::password_user(&state, &ip, &login, form.password, now).await?;
        if !user.is_admin {
            return Err(ApiError::forbidden("this account is not an admin"));
        }
        let name = Some("Admin console".to_owned());
        let session = SessionFor {
            name,
            agent,
            format: concord_core::token::TokenFormat::Hex,
            kind: concord_store::TokenKind::Web,
            user: &user,
        };
        let (token, _) = sign_in::open_session(&state, session, now).await?;
        state.audit.record(Entry::new(Event::AdminSignIn, &audit_ip, "admin console").actor(&login));
        Ok(token)
    }
    .await;
    match outcome {
        Ok(token) => {
            let cookie = ADMIN_SESSION.set(&state, &token, SESSION_SECS);
            ([(header::SET_COOKIE, cookie)], Redirect::to("/admin")).into_response()
        }
        Err(err) => login_page(&state, err.status(), &csrf, login, Some(err.message().to_owned())),
    }
}

async fn logout(State(state): State<AppState>, console: Console) -> Result<Response, ApiError> {
    devices::log_out(&state, &console.admin.user.id, &console.admin.device_id).await?;
    Ok(([(header::SET_COOKIE, ADMIN_SESSION.clear(&state))], Redirect::to("/admin/login")).into_response())
}

// ---- dashboard, diagnostics, storage ----

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    layout: Layout,
    stats: StatsView,
    audit: Vec<AuditView>,
}

async fn dashboard(State(state): State<AppState>, console: Console) -> Response {
    render(
        async {
            let stats = api::stats_view(&state).await?;
            let recent = concord_store::Paging { offset: 0, limit: 10 };
            let audit = state.store.audit_entries(&Default::default(), recent).await?;
            let audit = audit.items.into_iter().map(AuditView::of).collect();
            Ok(DashboardPage { layout: console.layout(&state, "Dashboard"), stats, audit })
        }
        .await,
    )
}

#[derive(Template)]
#[template(path = "admin/diagnostics.html")]
struct DiagnosticsPage {
    layout: Layout,
    diag: DiagnosticsView,
}

async fn diagnostics(State(state): State<AppState>, console: Console) -> Response {
    render(
        api::diagnostics_view(&state)
            .await
            .map(|diag| DiagnosticsPage { layout: console.layout(&state, "Diagnostics"), diag }),
    )
}

#[derive(Template)]
#[template(path = "admin/storage.html")]
struct StoragePage {
    layout: Layout,
    stats: StatsView,
}

async fn storage(State(state): State<AppState>, console: Console) -> Response {
    render(api::stats_view(&state).await.map(|stats| StoragePage { layout: console.layout(&state, "Storage"), stats }))
}

async fn cleanup(State(state): State<AppState>, console: Console, ip: Ip) -> Response {
    let outcome = api::cleanup(&state, &console.admin, &ip).await.map(|c| {
        let message = format!(
            "Removed {} expired tokens, {} ended sessions, {} stale registrations, {} temporary files and {} \
             unreferenced blob files: {} bytes reclaimed.",
            c.tokens + c.magic_tokens + c.account_tokens,
            c.devices,
            c.unconfirmed_users,
            c.temp_files,
            c.blob_files,
            c.reclaimed_bytes
        );
        (message, None)
    });
    result(&state, &console.csrf, "/admin/storage", outcome)
}

async fn backup(State(state): State<AppState>, console: Console, ip: Ip) -> Response {
    let outcome =
        api::back_up(&state, &console.admin, &ip).await.map(|b| (format!("Backup {} written.", b.file), None));
    result(&state, &console.csrf, "/admin", outcome)
}

// ---- users ----

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    page: PageView<UserView>,
    q: String,
    filter: String,
    sort: String,
    filters: Vec<&'static str>,
    sorts: Vec<&'static str>,
    prev: Option<String>,
    next: Option<String>,
}

async fn users(State(state): State<AppState>, console: Console, RawQuery(query): RawQuery) -> Response {
    render(
        async {
            let (user_query, paging) = api::user_query(query.clone())?;
            let page = state.store.list_users(&user_query, paging).await?;
            let page = PageView::of(page, paging, UserView::summary);
            let (prev, next) = neighbours(&query, &page);
            Ok(UsersPage {
                layout: console.layout(&state, "Users"),
                page,
                q: user_query.text,
                filter: user_query.filter.as_str().to_owned(),
                sort: user_query.sort.as_str().to_owned(),
                filters: UserFilter::ALL.iter().map(|f| f.as_str()).collect(),
                sorts: UserSort::ALL.iter().map(|s| s.as_str()).collect(),
                prev,
                next,
            })
        }
        .await,
    )
}

const USERS: &str = "/admin/users";

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    admin: Option<String>,
}

async fn create_user(
    State(state): State<AppState>,
    console: Console,
    ip: Ip,
    Form(form): Form<CreateForm>,
) -> Response {
    let body = api::CreateUserRequest {
        email: form.email,
        username: Some(form.username),
        password: Some(form.password),
        admin: form.admin.is_some(),
    };
    let outcome = api::create(&state, &console.admin, &ip, body)
        .await
        .map(|c| (format!("Created {}.", c.user.email), c.one_time_password));
    result(&state, &console.csrf, USERS, outcome)
}

/// A yes/no form field: `true` means yes.
#[derive(Deserialize)]
struct Flag {
    #[serde(default)]
    blocked: String,
    #[serde(default)]
    admin: String,
}

async fn block_user(
    State(state): State<AppState>,
    console: Console,
    ip: Ip,
    Path(id): Path<String>,
    Form(form): Form<Flag>,
) -> Response {
    let blocked = form.blocked == "true";
    let outcome = api::block(&state, &console.admin, &ip, &id, blocked)
        .await
        .map(|u| (format!("{} is {}.", u.email, if blocked { "blocked" } else { "unblocked" }), None));
    result(&state, &console.csrf, USERS, outcome)
}

async fn confirm_user(State(state): State<AppState>, console: Console, ip: Ip, Path(id): Path<String>) -> Response {
    let outcome =
        api::confirm(&state, &console.admin, &ip, &id).await.map(|u| (format!("{} is confirmed.", u.email), None));
    result(&state, &console.csrf, USERS, outcome)
}

async fn set_admin(
    State(state): State<AppState>,
    console: Console,
    ip: Ip,
    Path(id): Path<String>,
    Form(form): Form<Flag>,
) -> Response {
    let grant = form.admin == "true";
    let outcome = api::make_admin(&state, &console.admin, &ip, &id, grant)
        .await
        .map(|u| (format!("{} {} an admin.", u.email, if grant { "is now" } else { "is no longer" }), None));
    result(&state, &console.csrf, USERS, outcome)
}

#[derive(Deserialize)]
struct EditForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    username: String,
}

async fn edit_user(
    State(state): State<AppState>,
    console: Console,
    ip: Ip,
    Path(id): Path<String>,
    Form(form): Form<EditForm>,
) -> Response {
    let body = api::EditRequest { email: form.email, username: Some(form.username) };
    let outcome =
        api::edit(&state, &console.admin, &ip, &id, body).await.map(|u| (format!("Saved {}.", u.email), None));
    result(&state, &console.csrf, USERS, outcome)
}

#[derive(Deserialize)]
struct Confirmed {
    #[serde(default)]
    admin_password: String,
    #[serde(default)]
    mode: String,
}

async fn reset_password(
    State(state): State<AppState>,
    console: Console,
    ip: Ip,
    limit_ip: ClientIp,
    Path(id): Path<String>,
    Form(form): Form<Confirmed>,
) -> Response {
    let mode = if form.mode == "mail" { api::ResetMode::Mail } else { api::ResetMode::OneTime };
    let body = api::ResetRequest { admin_password: form.admin_password, mode };
    let outcome =
        api::reset(&state, &console.admin, (&ip, &limit_ip), &id, body).await.map(|r| match r.one_time_password {
            Some(password) => ("The password is reset and every device signed out.".to_owned(), Some(password)),
            None => ("A reset link is on its way.".to_owned(), None),
        });
    result(&state, &console.csrf, USERS, outcome)
}

async fn delete_user(
    State(state): State<AppState>,
    console: Console,
    ip: Ip,
    limit_ip: ClientIp,
    Path(id): Path<String>,
    Form(form): Form<Confirmed>,
) -> Response {
    let outcome = api::delete(&state, &console.admin, (&ip, &limit_ip), &id, form.admin_password)
        .await
        .and_then(|()| done("The user and everything they owned are deleted."));
    result(&state, &console.csrf, USERS, outcome)
}

// ---- devices ----

#[derive(Template)]
#[template(path = "admin/devices.html")]
struct DevicesPage {
    layout: Layout,
    page: PageView<DeviceView>,
    user_id: String,
    kind: String,
    state: String,
    kinds: Vec<&'static str>,
    states: Vec<&'static str>,
    prev: Option<String>,
    next: Option<String>,
}

async fn devices_page(State(state): State<AppState>, console: Console, RawQuery(query): RawQuery) -> Response {
    render(
        async {
            let (device_query, paging) = api::device_query(query.clone())?;
            let page = state.store.list_devices(&device_query, paging).await?;
            let page = PageView::of(page, paging, DeviceView::of);
            let (prev, next) = neighbours(&query, &page);
            Ok(DevicesPage {
                layout: console.layout(&state, "Devices"),
                page,
                user_id: device_query.user_id.unwrap_or_default(),
                kind: device_query.kind.map(|k| k.as_str().to_owned()).unwrap_or_default(),
                state: device_query.state.as_str().to_owned(),
                kinds: vec!["session", "client"],
                states: DeviceState::ALL.iter().map(|s| s.as_str()).collect(),
                prev,
                next,
            })
        }
        .await,
    )
}

async fn end_device(
    state: &AppState,
    console: &Console,
    ips: (&Ip, &ClientIp),
    id: &str,
    password: String,
    delete: bool,
) -> Response {
    let outcome = api::end_device(state, &console.admin, ips, id, password, delete)
        .await
        .and_then(|()| done(if delete { "The device is deleted." } else { "The device is revoked." }));
    result(state, &console.csrf, "/admin/devices", outcome)
}

async fn revoke_device(
    State(state): State<AppState>,
    console: Console,
    ip: Ip,
    limit_ip: ClientIp,
    Path(id): Path<String>,
    Form(form): Form<Confirmed>,
) -> Response {
    end_device(&state, &console, (&ip, &limit_ip), &id, form.admin_password, false).await
}

async fn delete_device(
    State(state): State<AppState>,
    console: Console,
    ip: Ip,
    limit_ip: ClientIp,
    Path(id): Path<String>,
    Form(form): Form<Confirmed>,
) -> Response {
    end_device(&state, &console, (&ip, &limit_ip), &id, form.admin_password, true).await
}

// ---- vaults and workspaces ----

#[derive(Template)]
#[template(path = "admin/vaults.html")]
struct VaultsPage {
    layout: Layout,
    vaults: PageView<VaultView>,
    workspaces: PageView<WorkspaceView>,
}

async fn vaults(State(state): State<AppState>, console: Console, RawQuery(query): RawQuery) -> Response {
    render(
        async {
            let paging = api::paging(query)?;
            let vaults = PageView::of(state.store.list_vaults(paging).await?, paging, VaultView::of);
            let workspaces = PageView::of(state.store.list_workspaces(paging).await?, paging, WorkspaceView::of);
            Ok(VaultsPage { layout: console.layout(&state, "Vaults and workspaces"), vaults, workspaces })
        }
        .await,
    )
}

async fn delete_vault(
    State(state): State<AppState>,
    console: Console,
    ip: Ip,
    limit_ip: ClientIp,
    Path((user_id, vault_id)): Path<(String, String)>,
    Form(form): Form<Confirmed>,
) -> Response {
    let outcome =
        api::remove_vault(&state, &console.admin, (&ip, &limit_ip), (&user_id, &vault_id), form.admin_password)
            .await
            .and_then(|()| done("The vault is deleted; the blob collector reclaims its files."));
    result(&state, &console.csrf, "/admin/vaults", outcome)
}

async fn delete_workspace(
    State(state): State<AppState>,
    console: Console,
    ip: Ip,
    limit_ip: ClientIp,
    Path(id): Path<String>,
    Form(form): Form<Confirmed>,
) -> Response {
    let outcome = api::remove_workspace(&state, &console.admin, (&ip, &limit_ip), &id, form.admin_password)
        .await
        .and_then(|()| done("The workspace and its documents are deleted."));
    result(&state, &console.csrf, "/admin/vaults", outcome)
}

// ---- audit log ----

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    layout: Layout,
    page: PageView<AuditView>,
    events: Vec<&'static str>,
    event: String,
    user: String,
    q: String,
    since: String,
    until: String,
    prev: Option<String>,
    next: Option<String>,
}

async fn audit(State(state): State<AppState>, console: Console, RawQuery(query): RawQuery) -> Response {
    render(
        async {
            let (audit_query, paging) = api::audit_query(query.clone())?;
            let page = PageView::of(state.store.audit_entries(&audit_query, paging).await?, paging, AuditView::of);
            let (prev, next) = neighbours(&query, &page);
            Ok(AuditPage {
                layout: console.layout(&state, "Audit log"),
                page,
                events: Event::ALL.iter().map(|e| e.as_str()).collect(),
                event: param(&query, "event"),
                user: param(&query, "user"),
                q: param(&query, "q"),
                since: param(&query, "since"),
                until: param(&query, "until"),
                prev,
                next,
            })
        }
        .await,
    )
}

// ---- settings ----

#[derive(Template)]
#[template(path = "admin/settings.html")]
struct SettingsPage {
    layout: Layout,
    settings: SettingsView,
    securities: Vec<&'static str>,
}

const SETTINGS: &str = "/admin/settings";

async fn settings(State(state): State<AppState>, console: Console) -> Response {
    let page = SettingsPage {
        layout: console.layout(&state, "Settings"),
        settings: api::settings_view(&state),
        securities: vec!["starttls", "tls", "none"],
    };
    Page::ok(page).into_response()
}

#[derive(Deserialize)]
struct GeneralForm {
    #[serde(default)]
    server_name: String,
    #[serde(default)]
    public_url: String,
    #[serde(default)]
    registration: String,
}

/// The form always sends every field; a value equal to the one in force is left alone (so the
/// form does not turn startup values into saved ones), an empty one clears the saved value.
async fn save_settings(
    State(state): State<AppState>,
    console: Console,
    ip: Ip,
    Form(form): Form<GeneralForm>,
) -> Response {
    let current = state.settings.current();
    let text = |value: String, now: &str| match value.trim() {
        "" => Some(None),
        v if v == now => None,
        v => Some(Some(v.to_owned())),
    };
    let registration = match form.registration.as_str() {
        "on" if !current.registration => Some(Some(true)),
        "off" if current.registration => Some(Some(false)),
        "startup" => Some(None),
        _ => None,
    };
    let body = api::SettingsRequest {
        server_name: text(form.server_name, &current.server_name),
        public_url: text(form.public_url, &current.public_url),
        registration,
    };
    let outcome = api::save_general(&state, &console.admin, &ip, body).await.and_then(|_| done("Settings saved."));
    result(&state, &console.csrf, SETTINGS, outcome)
}

async fn save_smtp(
    State(state): State<AppState>,
    console: Console,
    ip: Ip,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let outcome = async {
        let port = field("port")
            .trim()
            .parse()
            .map_err(|_| ApiError::bad_request("invalid_setting", "the SMTP port must be 1 to 65535"))?;
        let security = clap::ValueEnum::from_str(&field("security"), true)
            .map_err(|_| ApiError::bad_request("invalid_setting", "security must be starttls, tls or none"))?;
        let body = api::SmtpRequest {
            host: field("host"),
            port,
            security,
            username: field("username"),
            password: field("password"),
            clear_password: form.contains_key("clear_password"),
            from_email: field("from_email"),
            from_name: field("from_name"),
        };
        api::save_smtp_settings(&state, &console.admin, &ip, body).await?;
        done("SMTP settings saved; the next mail uses them.")
    }
    .await;
    result(&state, &console.csrf, SETTINGS, outcome)
}

async fn clear_smtp(State(state): State<AppState>, console: Console, ip: Ip) -> Response {
    let outcome = api::forget_smtp(&state, &console.admin, &ip)
        .await
        .and_then(|_| done("The startup mail settings apply again."));
    result(&state, &console.csrf, SETTINGS, outcome)
}

#[derive(Deserialize)]
struct TestForm {
    #[serde(default)]
    to: String,
}

async fn test_smtp(State(state): State<AppState>, console: Console, ip: Ip, Form(form): Form<TestForm>) -> Response {
    let outcome = api::send_test(&state, &console.admin, &ip, Some(form.to))
        .await
        .map(|t| (format!("A test mail went to {}.", t.to), None));
    result(&state, &console.csrf, SETTINGS, outcome)
}
