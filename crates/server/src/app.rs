//! Application state and the router: which routes exist and which middleware wraps them all.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use axum::response::IntoResponse;
use concord_store::Store;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::Accounts;
use crate::api;
use crate::api::events::ScopeEvents;
use crate::blobstore::Blobs;
use crate::config::Config;
use crate::error::ApiError;
use crate::logging::redact_uri;

/// JSON request bodies larger than this get 413 `request_too_large` (the Verstak limit). Routes
/// that take larger bodies (blob uploads) set their own limit.
pub const JSON_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// What every handler can reach. Cheap to clone: everything is behind an `Arc`.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// Live WebSocket counts for `/api/status`, kept by the sync module.
    pub stats: Arc<LiveStats>,
    /// When the process started serving, for `uptime_seconds`.
    pub started: Instant,
    /// Accounts in memory: mailer, rate limits, revocation feed.
    pub accounts: Arc<Accounts>,
    /// Blob bytes: `<data>/blobs` or an S3 bucket (`--blob-store`).
    pub blobs: Arc<Blobs>,
    /// Live head announcements per operation-log scope, fed by pushes.
    pub events: Arc<ScopeEvents>,
    /// Open Yjs documents and their connections.
    pub sync: Arc<crate::sync::Hub>,
    /// Cancelled when shutdown begins, so long-lived tasks (WebSockets, periodic jobs) can finish.
    pub shutdown: CancellationToken,
    /// Open WebSockets and event streams: per-user caps and the credential watcher.
    pub live: Arc<crate::live::Live>,
    /// Renders the Prometheus text of `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    // Admin console.
    /// Server name, public URL, registration and SMTP as currently in force.
    pub settings: Arc<crate::live_settings::LiveSettings>,
    /// Where audit entries are recorded.
    pub audit: crate::audit::Audit,
    // Bus between nodes.
    /// This node's end of the bus (`crate::bus`); publishes nothing without `REDIS_URL`.
    pub bus: Arc<crate::bus::Fanout>,
    // Webhooks.
    /// Where hook points report events (see `crate::webhooks`).
    pub webhooks: crate::webhooks::Notifier,
}

#[derive(Debug, Default)]
pub struct LiveStats {
    pub connections: AtomicUsize,
    pub rooms: AtomicUsize,
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The strict policy of the Verstak reference, on every response; pages add nothing inline.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

pub fn router(state: AppState) -> Router {
    let cors = cors_layer(state.config.cors_origins.as_deref());
    let trusted = state.config.trusted_proxies.clone();
    let (documented, doc) = documented_routes().split_for_parts();
    let doc = Arc::new(crate::openapi::finish(doc));
    // Pages are for people, not programs: they stay out of the document (see `openapi_drift`).
    let routes = documented.merge(crate::web::routes()).layer(axum::Extension(doc));
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Hocuspocus providers pointed at the base URL upgrade `/`; the page on `/` is untouched.
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::sync::hocuspocus_root))
        // Inside the router, where the matched route template is known.
        .layer(axum::middleware::from_fn(crate::metrics::track))
        // Every form and cookie-carrying mutating request, on every route (see `web::csrf`).
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::web::csrf::protect))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::audit::rate_limits))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::custom(|_| ApiError::internal("handler panicked").into_response()))
                // Headers have the accept loop's timeout; this bounds the silence between body
                // chunks, so a stalled upload cannot hold a connection forever while a slow but
                // steady one (a 1 GiB blob) is never cut.
                .layer(RequestBodyTimeoutLayer::new(state.config.body_idle_timeout))
                .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
                .map_request(move |req| crate::client_addr::tag(&trusted, req))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request<_>| {
                            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                            let client = req.extensions().get::<crate::client_addr::ClientAddr>();
                            let client = client.map_or_else(|| "-".to_owned(), |c| c.ip.to_string());
                            tracing::info_span!("request", id, %client, method = %req.method(), uri = %redact_uri(req.uri()))
                        })
                        // Debug only: lets a test (or an operator) see a request arrive before it ends.
                        .on_request(|_: &Request<_>, _: &Span| tracing::debug!("started"))
                        .on_response(|res: &Response<_>, latency: Duration, _: &Span| {
                            tracing::info!(status = res.status().as_u16(), ms = latency.as_millis() as u64, "served");
                        })
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
                .layer(security_header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(security_header(header::REFERRER_POLICY, "same-origin"))
                .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
                .layer(cors),
        )
        .with_state(state)
}

/// Every route that belongs in the OpenAPI document, each registered with `routes!(handler)` so its
/// `#[utoipa::path]` feeds the document and the router at once.
pub fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(crate::openapi::document))
        .merge(api::health::routes())
        .merge(api::diaryx_auth::routes())
        .merge(api::verstak_client::routes())
        .merge(api::user_api::routes())
        .merge(api::oplog::routes())
        .merge(api::events::routes())
        .merge(api::blobs::routes())
        .merge(crate::sync::routes())
        .merge(crate::metrics::routes())
        .merge(api::shares::routes())
        .merge(api::docs::routes())
        .merge(api::history::routes())
        .merge(api::admin::routes())
        .merge(crate::webhooks::api::routes())
}

fn security_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

fn cors_layer(origins: Option<&[String]>) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::RANGE, header::IF_NONE_MATCH])
        .expose_headers([header::RETRY_AFTER, header::ETAG, header::CONTENT_RANGE, header::CONTENT_DISPOSITION])
        .max_age(Duration::from_secs(600));
    match origins {
        None => layer.allow_origin(Any),
        // Config validation guarantees every origin is a valid header value.
        Some(list) => layer.allow_origin(AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))),
    }
}

/// JSON under `/api/` (clients parse it), a small page elsewhere (people read it).
async fn not_found(State(state): State<AppState>, uri: Uri) -> axum::response::Response {
    if uri.path().starts_with("/api/") {
        ApiError::not_found("not found").into_response()
    } else {
        crate::web::page::not_found(&state)
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed")
}
