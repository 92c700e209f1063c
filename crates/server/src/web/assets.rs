//! Static assets, compiled into the binary so a page never needs another host (no CDN): today one
//! stylesheet, `GET /assets/concord.css`.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::app::AppState;

/// The stylesheet of every page. Phone first: one column, large touch targets, no fixed widths.
const STYLESHEET: &str = include_str!("../../templates/concord.css");

pub fn routes() -> Router<AppState> {
    Router::new().route("/assets/concord.css", get(stylesheet))
}

async fn stylesheet() -> impl IntoResponse {
    // An hour of caching: short enough that an upgrade's new style shows the same day.
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], STYLESHEET)
}
