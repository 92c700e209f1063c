//! Liveness, readiness and status endpoints of both reference servers.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::clock;
use crate::openapi::ErrorBody;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(livez))
        .routes(routes!(readyz))
        .routes(routes!(api_health))
        .routes(routes!(status))
}

#[utoipa::path(get, path = "/health", tag = "health", responses(
    (status = 200, description = "the process serves", body = String, content_type = "text/plain"),
    (status = 429, body = ErrorBody), (status = 500, body = ErrorBody)))]
async fn health() -> &'static str {
    "OK"
}

/// Set by CI or packagers at build time; "dev" for local builds.
pub const BUILD_COMMIT: &str = match option_env!("CONCORD_BUILD_COMMIT") {
    Some(commit) => commit,
    None => "dev",
};

#[derive(Serialize, ToSchema)]
struct Readiness {
    status: &'static str,
    version: &'static str,
    build_commit: &'static str,
    uptime_seconds: u64,
    database_reachable: bool,
    blob_storage_writable: bool,
    schema_version: i64,
    /// Storage: a committed write succeeded just now (false while the disk is full).
    database_writable: bool,
    server_time: String,
}

/// 200 when the database answers and takes a write and the blob store takes a write (a probe
/// file, or a probe object in S3), 503 otherwise, so a load balancer stops sending traffic to an
/// instance that would fail writes. The probes are real writes, so the answer turns back to ok by
/// itself once space is freed. The blob store's probe is reused for
/// [`PROBE_FRESH_FOR`](crate::blobstore::PROBE_FRESH_FOR) (2 s), so `blob_storage_writable` may be
/// up to 2 s stale (plus one probe's duration): polled often, this endpoint still costs an S3
/// bucket at most one PUT and one DELETE per 2 s.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready", body = Readiness), (status = 503, description = "degraded", body = Readiness),
    (status = 429, body = ErrorBody), (status = 500, body = ErrorBody)))]
async fn readyz(state: State<AppState>) -> (StatusCode, axum::Json<Readiness>) {
    readiness(state).await
}

/// The Verstak reference's name for [`readyz`].
#[utoipa::path(get, path = "/api/v1/health", tag = "health", responses(
    (status = 200, description = "ready", body = Readiness), (status = 503, description = "degraded", body = Readiness),
    (status = 429, body = ErrorBody), (status = 500, body = ErrorBody)))]
async fn api_health(state: State<AppState>) -> (StatusCode, axum::Json<Readiness>) {
    readiness(state).await
}

async fn readiness(State(state): State<AppState>) -> (StatusCode, axum::Json<Readiness>) {
    let (database_reachable, schema_version) = match state.store.schema_version().await {
        Ok(version) => (true, version),
        Err(err) => {
            tracing::warn!(error = %err, "health: database unreachable");
            (false, 0)
        }
    };
    let blob_storage_writable = match state.blobs.probe_writable(tokio::time::Instant::now()).await {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(error = %err, "health: blob storage not writable");
            false
        }
    };
    let database_writable = match state.store.probe_write(clock::now()).await {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(error = %err, "health: database does not take writes");
            false
        }
    };
    let ok = database_reachable && blob_storage_writable && database_writable;
    let body = Readiness {
        status: if ok { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        build_commit: BUILD_COMMIT,
        uptime_seconds: state.started.elapsed().as_secs(),
        database_reachable,
        blob_storage_writable,
        schema_version,
        database_writable,
        server_time: clock::rfc3339(clock::now()),
    };
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, axum::Json(body))
}

#[utoipa::path(get, path = "/livez", tag = "health", responses((status = 200, body = Liveness), crate::openapi::Common))]
async fn livez() -> axum::Json<Liveness> {
    axum::Json(Liveness { server_time: clock::rfc3339(clock::now()), status: "ok" })
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct Liveness {
    server_time: String,
    status: &'static str,
}

/// `GET /api/status`: what this process is serving right now.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ServerStatus {
    status: &'static str,
    version: &'static str,
    active_connections: usize,
    active_rooms: usize,
}

#[utoipa::path(get, path = "/api/status", tag = "health", responses((status = 200, body = ServerStatus), crate::openapi::Common))]
async fn status(State(state): State<AppState>) -> axum::Json<ServerStatus> {
    axum::Json(ServerStatus {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        active_connections: state.stats.connections.load(Ordering::Relaxed),
        active_rooms: state.stats.rooms.load(Ordering::Relaxed),
    })
}
