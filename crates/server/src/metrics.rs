//! Prometheus metrics: the recorder every `metrics::counter!`/`gauge!`/`histogram!` call site
//! reports to, the HTTP middleware that counts requests, and `GET /metrics`, which renders them
//! with the gauges that are read at scrape time (database and WAL size, loaded documents).
//!
//! `/metrics` is open to loopback peers (a local Prometheus or `curl` on the host) and to others
//! only with `Authorization: Bearer <--metrics-token>`: the numbers reveal activity patterns.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Extension;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::app::AppState;
use crate::client_addr::ClientAddr;
use crate::error::ApiError;

/// Seconds: from a fast JSON answer (sub-millisecond) to a large upload or a slow fsync.
const SECONDS_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Updates per group commit: 1 when idle, up to the writer's batch cap under load.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// The process-wide recorder's handle. The `metrics` macros report to one global recorder, so it
/// is installed once per process however many states are built (unit tests build several); the
/// handle in [`AppState`] is what renders.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("concord_yjs_commit_batch_updates".into()), BATCH_BUCKETS)
                })
                .expect("bucket lists are non-empty constants")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first, which this crate never does;
            // the handle then renders nothing, which is visible rather than fatal.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

/// The `# HELP` line of every series (the README's Metrics table says the same for people).
fn describe() {
    use metrics::{describe_counter as counter, describe_gauge as gauge, describe_histogram as histogram};
    counter!("concord_http_requests_total", "HTTP requests by method, route template and status");
    histogram!("concord_http_request_duration_seconds", "Time to the response head, by method and route template");
    gauge!("concord_websockets_open", "Open Yjs WebSocket connections");
    gauge!("concord_event_streams_open", "Open op-log event streams");
    gauge!("concord_documents_loaded", "Yjs documents in memory");
    counter!("concord_yjs_frames_received_total", "Yjs WebSocket frames received from clients");
    counter!("concord_yjs_updates_persisted_total", "Yjs updates that changed a document, stored");
    counter!("concord_yjs_persisted_bytes_total", "Bytes of Yjs updates stored");
    counter!("concord_yjs_frames_relayed_total", "Yjs frames sent on to the other connections of a document");
    histogram!("concord_yjs_commit_batch_updates", "Yjs updates per group commit");
    histogram!("concord_yjs_commit_duration_seconds", "Group commit latency");
    counter!("concord_yjs_compactions_total", "Yjs document snapshots written");
    counter!(
        "concord_yjs_hibernations_total",
        "Idle Yjs rooms that dropped their in-memory document, keeping it encoded"
    );
    counter!("concord_oplog_pushes_total", "Op-log push requests stored or replayed");
    counter!("concord_oplog_ops_pushed_total", "Ops stored by pushes");
    counter!("concord_oplog_pulls_total", "Op-log pull requests served");
    counter!("concord_oplog_ops_pulled_total", "Ops returned by pulls");
    counter!("concord_blob_received_bytes_total", "Blob bytes uploaded");
    counter!("concord_blob_sent_bytes_total", "Blob bytes served");
    counter!("concord_blob_reclaimed_bytes_total", "Bytes of unreferenced blobs and stale uploads removed");
    gauge!("concord_database_size_bytes", "Database file size");
    gauge!("concord_database_wal_size_bytes", "Write-ahead log file size");
    counter!("concord_mail_sent_total", "Mails the SMTP relay accepted");
    counter!("concord_mail_failed_total", "Mails that could not be sent");
    counter!("concord_rate_limit_refusals_total", "Requests refused by a rate limit");
    counter!("concord_maintenance_runs_total", "Maintenance job runs by job and outcome");
    histogram!("concord_maintenance_duration_seconds", "Maintenance job run time by job");
    gauge!("concord_backup_last_success", "1 if the last scheduled backup succeeded, 0 if it failed");
    gauge!("concord_backup_last_success_timestamp_seconds", "Unix time of the last successful scheduled backup");
    gauge!("concord_uptime_seconds", "Seconds since the server started");
    // Soak (issue 14): tasks that outlive their work are a leak RSS shows only much later.
    gauge!("concord_tokio_tasks_alive", "Tasks alive in the server's async runtime");
}

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(scrape))
}

#[utoipa::path(get, path = "/metrics", tag = "meta", security(("device_token" = [])), responses((status = 200, description = "Prometheus text (loopback, or the metrics token)", body = String), crate::openapi::Authed, crate::openapi::Common))]
async fn scrape(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // The client as `client_addr` resolved it: a request that a trusted proxy forwards for a remote
    // client is remote, though its TCP peer is the proxy on loopback.
    let local = client.is_some_and(|Extension(client)| client.ip.to_canonical().is_loopback());
    if !local && !bearer_matches(&headers, state.config.metrics_token.as_ref()) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "metrics need the metrics token"));
    }
    read_gauges(&state);
    state.metrics.run_upkeep();
    let mut response = state.metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(response)
}

/// Whether the request carries `Bearer <token>`; compared in constant time, so the answer's
/// timing tells nothing about how much of a guess was right.
fn bearer_matches(headers: &HeaderMap, token: Option<&crate::config::Secret>) -> bool {
    let Some(token) = token else { return false };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let (given, wanted) = (given.unwrap_or_default().as_bytes(), token.expose().as_bytes());
    given.len() == wanted.len() && given.iter().zip(wanted).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Gauges whose truth lives elsewhere, read when Prometheus asks rather than tracked.
fn read_gauges(state: &AppState) {
    let db = &state.config.database_path;
    metrics::gauge!("concord_database_size_bytes").set(file_size(db) as f64);
    metrics::gauge!("concord_database_wal_size_bytes").set(file_size(&wal_path(db)) as f64);
    metrics::gauge!("concord_documents_loaded").set(state.stats.rooms.load(Ordering::Relaxed) as f64);
    metrics::gauge!("concord_uptime_seconds").set(state.started.elapsed().as_secs_f64());
    let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    metrics::gauge!("concord_tokio_tasks_alive").set(tasks as f64);
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// SQLite's write-ahead log beside the database: `<name>-wal`.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Counts every request by route template (never the raw path, whose ids would make a series per
/// document) and status, and times it.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("concord_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("concord_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Methods a client can invent are one label, so they cannot create series without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(authorization: Option<&str>, token: Option<&str>, expected: bool) {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        let token: Option<crate::config::Secret> = token.map(|t| serde_json::from_value(t.into()).unwrap());
        assert_eq!(bearer_matches(&headers, token.as_ref()), expected, "{authorization:?} against {token:?}");
    }

    #[test]
    fn only_the_exact_bearer_token_matches() {
        check(Some("Bearer s3cret"), Some("s3cret"), true);
        check(Some("Bearer s3cre"), Some("s3cret"), false);
        check(Some("Bearer s3cret!"), Some("s3cret"), false);
        check(Some("bearer s3cret"), Some("s3cret"), false);
        check(Some("s3cret"), Some("s3cret"), false);
        check(None, Some("s3cret"), false);
        check(Some("Bearer "), None, false);
        check(None, None, false);
    }

    #[test]
    fn the_wal_sits_beside_the_database() {
        assert_eq!(wal_path(Path::new("/d/concord.db")), PathBuf::from("/d/concord.db-wal"));
    }
}
