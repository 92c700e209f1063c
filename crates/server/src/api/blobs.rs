//! `POST /api/v1/blobs/` and `GET`/`HEAD /api/v1/blobs/{sha256}`: content-addressed attachments,
//! readable only from the scope that uploaded them. The bytes are handled by [`crate::blobstore`].

use std::time::{Duration, Instant};

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use concord_core::blob::{BlobHash, ByteRange, MultipartError, MultipartFile, multipart_boundary, parse_range};
use concord_store::AddBlobRef;
use futures_util::StreamExt;
use serde::Serialize;

use crate::api::oplog::sync_scope;
use crate::app::AppState;
use crate::blobstore::{UPLOAD_WAITS_FOR_CLAIM, UploadError};
use crate::clock;
use crate::error::ApiError;
use crate::extract::Auth;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(upload))
        .routes(utoipa_axum::routes!(upload_slash))
        .routes(utoipa_axum::routes!(download))
}

fn refused(err: MultipartError) -> ApiError {
    ApiError::bad_request("invalid_multipart", err.to_string())
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "blob_too_large", "blob is too large")
}

#[derive(Serialize, utoipa::ToSchema)]
struct Uploaded {
    sha256: String,
    size: u64,
}

/// The body's next chunk. A body that fails (the client gone, too slow, over a limit) or ends
/// before the closing delimiter is refused.
async fn next_chunk(body: &mut BodyDataStream, parser: &MultipartFile) -> Result<Bytes, ApiError> {
    match body.next().await {
        Some(Ok(chunk)) => Ok(chunk),
        Some(Err(_)) => Err(refused(MultipartError::Malformed)),
        None => Err(refused(parser.ended_early())),
    }
}

/// The same upload under the reference's trailing-slash path.
#[utoipa::path(post, path = "/api/v1/blobs/", tag = "blobs", security(("device_token" = [])), request_body(content = String, content_type = "multipart/form-data", description = "one file part holding the blob"), responses((status = 200, description = "success", body = Uploaded), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn upload_slash(state: State<AppState>, auth: Auth, request: Request) -> Result<axum::Json<Uploaded>, ApiError> {
    upload(state, auth, request).await
}

/// Streams the one `file` part into the blob store's staging while hashing it, references it from
/// the caller's scope (quotas permitting) and places it durably, all before answering. On any
/// failure, including the client vanishing mid-stream, the staging is removed (a temporary file
/// deleted, a multipart upload aborted) and no reference exists.
#[utoipa::path(post, path = "/api/v1/blobs", tag = "blobs", security(("device_token" = [])), request_body(content = String, content_type = "multipart/form-data", description = "one file part holding the blob"), responses((status = 200, description = "success", body = Uploaded), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn upload(
    State(state): State<AppState>,
    Auth(principal): Auth,
    request: Request,
) -> Result<axum::Json<Uploaded>, ApiError> {
    let scope = sync_scope(&principal)?;
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let boundary = multipart_boundary(content_type).ok_or_else(|| refused(MultipartError::Malformed))?;
    let mut parser = MultipartFile::new(&boundary);
    let mut body = request.into_body().into_data_stream();
    // No upload is begun before the part's headers are accepted, so a refused head never
    // touches the blob store.
    let mut pieces = loop {
        let pieces = parser.feed(next_chunk(&mut body, &parser).await?).map_err(refused)?;
        if parser.in_file() {
            break pieces;
        }
    };
    let limits = state.config.blobs;
    let mut upload = state.blobs.begin_upload(limits.max_bytes).await.map_err(ApiError::io)?;
    loop {
        for piece in pieces {
            upload.write(piece).await.map_err(|e| match e {
                UploadError::TooLarge => too_large(),
                UploadError::Io(e) => ApiError::io(e),
            })?;
        }
        if parser.is_complete() {
            break;
        }
        pieces = parser.feed(next_chunk(&mut body, &parser).await?).map_err(refused)?;
    }
    // Durability, on every blob store: the bytes are staged durably first (fsynced temporary file;
    // completed S3 multipart upload, or a small blob's buffer), then the reference commits, then
    // the blob is placed (rename and directory fsync; S3 PUT or copy returning, S3's own commit),
    // and only then does the client hear success. So an acknowledged upload has both its
    // reference and its bytes, and a crash at any point before the answer leaves at worst a
    // reference without bytes: the client, having no answer, retries, and placement reinstalls
    // them (a scope's reference without bytes downloads as 404 meanwhile, never as wrong bytes,
    // since the content address is the hash of what was staged).
    let mut finished = upload.finish().await.map_err(ApiError::io)?;
    let (hash, size) = (finished.hash.clone(), finished.size);
    state.blobs.prepare_place(&mut finished).await.map_err(ApiError::io)?;

    // A collector on any node may hold a claim on this blob while it deletes its bytes
    // (`Blobs::collect_garbage`): the reference waits for the claim to end, and placement then
    // puts the bytes back.
    let waiting = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        match state.store.add_blob_ref(&scope, &hash, size, limits.quota, clock::now()).await? {
            AddBlobRef::QuotaExceeded => {
                return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded", "blob quota exceeded"));
            }
            // Placing again when already referenced repairs bytes lost to a crash between the
            // reference and the placement; over intact bytes it changes nothing.
            AddBlobRef::Added | AddBlobRef::AlreadyReferenced => break,
            AddBlobRef::BeingCollected if waiting.elapsed() < UPLOAD_WAITS_FOR_CLAIM => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            // A claim left by a collector that died: it expires within a minute, so a retry every
            // few seconds gets through soon after.
            AddBlobRef::BeingCollected => {
                return Err(ApiError::unavailable(5, "blob_busy", "the blob is being collected; retry later"));
            }
        }
    }
    state.blobs.place(finished).await.map_err(ApiError::io)?;
    metrics::counter!("concord_blob_received_bytes_total").increment(size);
    Ok(axum::Json(Uploaded { sha256: hash.to_string(), size }))
}

/// Serves a blob referenced by the caller's scope. Blobs never change under their name, so the
/// hash is a strong `ETag`; single byte ranges are honoured, anything fancier gets the whole blob
/// (which RFC 9110 allows); [`parse_range`] decides. `HEAD` (which axum routes here) answers the
/// same headers from the blob's size alone: an S3 store is asked with a HEAD, not a GET.
#[utoipa::path(get, path = "/api/v1/blobs/{sha256}", tag = "blobs", security(("device_token" = [])), params(("sha256" = String, Path), ("Range" = Option<String>, Header), ("If-None-Match" = Option<String>, Header)), responses((status = 200, description = "the bytes", body = String), (status = 206, description = "one byte range"), (status = 304, description = "not modified (If-None-Match)"), (status = 400, description = "not a SHA-256 in lowercase hex (`invalid_blob_hash`)", body = crate::openapi::ErrorBody), (status = 416, description = "range not satisfiable"), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn download(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(sha256): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let scope = sync_scope(&principal)?;
    let hash = BlobHash::parse(&sha256).map_err(|_| ApiError::bad_request("invalid_blob_hash", "invalid SHA-256"))?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "blob_not_found", "blob not found");
    let size = state.store.blob_size(&scope, &hash).await?.ok_or_else(not_found)?;
    let etag = format!("\"{hash}\"");
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| etag_matches(v, &etag)) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    // `If-Range` with another validator asks for the whole (changed) representation.
    let if_range_ok = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v == etag);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) if if_range_ok => parse_range(spec, size),
        _ => ByteRange::Whole,
    };
    let (status, start, len) = match range {
        ByteRange::Whole => (StatusCode::OK, 0, size),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            response.headers_mut().insert(header::CONTENT_RANGE, header_value(format!("bytes */{size}")));
            return Ok(response);
        }
    };
    // The whole blob is read without a range, so an empty one needs no empty range.
    let wanted = (status == StatusCode::PARTIAL_CONTENT).then_some(start..start + len);
    let (stored, body) = if method == Method::HEAD {
        (state.blobs.blob_size(&hash).await.map_err(ApiError::internal)?, Body::empty())
    } else {
        match state.blobs.open_blob(&hash, wanted).await.map_err(ApiError::internal)? {
            Some(read) => (Some(read.size), Body::from_stream(read.body)),
            None => (None, Body::empty()),
        }
    };
    let Some(stored) = stored else {
        tracing::error!(%hash, "referenced blob is missing from the blob store");
        return Err(not_found());
    };
    if stored != size {
        tracing::error!(%hash, size, stored, "stored blob has the wrong size");
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "blob_unavailable", "blob is unavailable"));
    }
    if method != Method::HEAD {
        metrics::counter!("concord_blob_sent_bytes_total").increment(len);
    }
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CONTENT_DISPOSITION, header_value(format!("attachment; filename=\"{hash}\"")));
    h.insert(header::ETAG, header_value(etag));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(header::CONTENT_RANGE, header_value(format!("bytes {start}-{}/{size}", start + len - 1)));
    }
    Ok(response)
}

/// Only ever called with ASCII built from a hash and numbers.
fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `If-None-Match`: `*` or a list of tags; weak comparison, as RFC 9110 prescribes for it.
fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match() {
        let etag = "\"abc\"";
        for (header, expected) in
            [("\"abc\"", true), ("W/\"abc\"", true), ("\"x\", \"abc\"", true), ("*", true), ("\"abd\"", false)]
        {
            assert_eq!(etag_matches(header, etag), expected, "{header}");
        }
    }
}
