//! The document HTTP API: list a workspace's Yjs documents, read one as a Yjs update (whole, or
//! the diff against a state vector) or as JSON, post an update, delete one. Bearer auth by a
//! device or a share, resolved by the sockets' own [`Opener`], so isolation and shares are the
//! sockets' rules; writes go through the document's room, so an update posted here is stored and
//! relayed exactly as a connection's.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use concord_core::share::Access;
use concord_core::yjs::{DocName, Room};
use concord_store::DocId;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::token_hash;
use crate::sync::opener::Opener;
use crate::sync::{ApplyError, Change, Deleting, DocKey};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(read, write, remove)).routes(routes!(read_json))
}

/// The request's credential, resolved as the sockets resolve theirs.
pub(super) struct DocAuth(pub Opener);

impl FromRequestParts<AppState> for DocAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Opener::resolve(state, &token_hash(parts)?).await.map(DocAuth)
    }
}

/// The document `name` of workspace `workspace_id`, if the opener may reach it there: the name
/// is placed by the sockets' rule (so it is the document a socket opens by that name), and a
/// workspace that is not the caller's, or a name placed elsewhere, is 404 as a missing document
/// (a share for another document is the sockets' 403).
pub(super) async fn locate(
    state: &AppState,
    opener: &Opener,
    workspace_id: &str,
    name: &str,
) -> Result<DocKey, ApiError> {
    let name = DocName::parse(name).map_err(|e| ApiError::bad_request("invalid_doc", e.to_string()))?;
    let placed = opener.place(state, &name).await?;
    if placed != workspace_id {
        return Err(ApiError::not_found("Document not found"));
    }
    Ok(DocKey { workspace_id: placed, name: name.as_str().to_owned() })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DocView {
    name: String,
    /// Stored bytes: the last snapshot plus the updates after it.
    bytes: i64,
    /// Unix seconds of its creation or last stored update.
    updated_at: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DocList {
    documents: Vec<DocView>,
}

/// `GET /api/workspaces/{id}/docs` → `{"documents":[{"name","bytes","updated_at"}]}` by name.
/// 404 for a workspace that is not the caller's; a share lists only the workspace it shares
/// whole (403 for a share of one document).
#[utoipa::path(get, path = "/api/workspaces/{id}/docs", tag = "documents", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id")), responses((status = 200, description = "the workspace's documents", body = DocList), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn list(
    State(state): State<AppState>,
    DocAuth(opener): DocAuth,
    Path(workspace_id): Path<String>,
) -> Result<axum::Json<DocList>, ApiError> {
    match &opener {
        Opener::User(principal) => {
            let workspaces = state.store.workspaces_of(&principal.user.id).await?;
            if !workspaces.iter().any(|w| w.id == workspace_id) {
                return Err(ApiError::not_found("Workspace not found"));
            }
        }
        Opener::Share(share) if share.workspace_id != workspace_id => {
            return Err(ApiError::not_found("Workspace not found"));
        }
        Opener::Share(share) if share.doc_name.is_some() => {
            return Err(ApiError::forbidden("this share opens one document, not the workspace"));
        }
        Opener::Share(_) => {}
    }
    let docs = state.store.docs_of(&workspace_id).await?;
    let documents = docs.into_iter().map(|d| DocView { name: d.name, bytes: d.bytes, updated_at: d.updated_at });
    Ok(axum::Json(DocList { documents: documents.collect() }))
}

#[derive(Debug, Deserialize)]
struct ReadQuery {
    /// A lib0 v1 state vector in base64url (padding optional; the standard alphabet, properly
    /// percent-encoded, is accepted too).
    sv: Option<String>,
}

/// base64url or standard base64, padded or not: `+` and `/` cannot collide with `-` and `_`.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let indifferent = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    [
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, indifferent),
        GeneralPurpose::new(&base64::alphabet::STANDARD, indifferent),
    ]
    .iter()
    .find_map(|engine| engine.decode(text).ok())
}

/// The stored document's id, and the document loaded into a room of its own (never the live one,
/// which keeps serving).
pub(super) async fn stored(state: &AppState, key: &DocKey) -> Result<(DocId, Room), ApiError> {
    let doc = state.store.find_doc(&key.workspace_id, &key.name).await?;
    let doc = doc.ok_or_else(|| ApiError::not_found("Document not found"))?;
    let room =
        Room::load(doc.snapshot.as_deref(), doc.updates.iter().map(Vec::as_slice)).map_err(ApiError::internal)?;
    Ok((doc.id, room))
}

/// 403 `read_only` unless the opener may change documents.
pub(super) fn writable(opener: &Opener) -> Result<(), ApiError> {
    if opener.access() == Access::ReadOnly {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only",
            "this share may read the document, not change it",
        ));
    }
    Ok(())
}

/// `GET /api/workspaces/{id}/docs/{name}?sv=<base64url>` → `application/octet-stream`: one Yjs
/// update (lib0 v1) holding what the document has beyond the state vector (all of it without
/// `sv`). `{name}` is the document's full name as clients open it, percent-encoded as one path
/// segment. 400 `invalid_sv` for a state vector that does not decode; 404 for a document that
/// does not exist.
#[utoipa::path(get, path = "/api/workspaces/{id}/docs/{name}", tag = "documents", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id"), ("name" = String, Path, description = "document name, percent-encoded as one segment"), ("sv" = Option<String>, Query, description = "state vector, base64url")), responses((status = 200, description = "a Yjs update (lib0 v1)", content_type = "application/octet-stream", body = Vec<u8>), (status = 400, description = "invalid state vector or document name", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn read(
    State(state): State<AppState>,
    DocAuth(opener): DocAuth,
    Path((workspace_id, name)): Path<(String, String)>,
    Query(query): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    let sv = match query.sv.as_deref() {
        None | Some("") => Vec::new(),
        Some(text) => decode_base64(text)
            .ok_or_else(|| ApiError::bad_request("invalid_sv", "sv must be a state vector in base64url"))?,
    };
    let key = locate(&state, &opener, &workspace_id, &name).await?;
    let (_, room) = stored(&state, &key).await?;
    let update = room.diff_since(&sv).map_err(|e| ApiError::bad_request("invalid_sv", e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], update).into_response())
}

/// `GET /api/workspaces/{id}/docs/{name}/json` → every top-level type of the document, by name:
/// texts as strings, maps as objects, arrays as arrays, XML as its string form.
#[utoipa::path(get, path = "/api/workspaces/{id}/docs/{name}/json", tag = "documents", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id"), ("name" = String, Path, description = "document name, percent-encoded as one segment")), responses((status = 200, description = "the top-level types as JSON", body = Object), (status = 400, description = "invalid document name", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn read_json(
    State(state): State<AppState>,
    DocAuth(opener): DocAuth,
    Path((workspace_id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let key = locate(&state, &opener, &workspace_id, &name).await?;
    let (_, room) = stored(&state, &key).await?;
    Ok(axum::Json(room.to_json().map_err(ApiError::internal)?).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct WriteView {
    /// False when the document already held everything in the update: nothing was stored.
    changed: bool,
    /// The seq of the document's newest stored update.
    seq: i64,
}

/// `POST /api/workspaces/{id}/docs/{name}` with a Yjs update (lib0 v1) as the body → 200
/// `{"changed","seq"}` once it is stored and relayed to the document's live connections
/// (creating the document if needed). 400 `invalid_update` for bytes that are not an update
/// (nothing is stored), 413 `request_too_large` past `SYNC_MAX_FRAME_BYTES` (what one WebSocket
/// message may carry), 403 `read_only` for a read-only share.
#[utoipa::path(post, path = "/api/workspaces/{id}/docs/{name}", tag = "documents", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id"), ("name" = String, Path, description = "document name, percent-encoded as one segment")), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "a Yjs update (lib0 v1)"), responses((status = 200, description = "stored and relayed", body = WriteView), (status = 400, description = "not a Yjs update, or an invalid document name", body = crate::openapi::ErrorBody), (status = 413, description = "request body too large", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn write(
    State(state): State<AppState>,
    DocAuth(opener): DocAuth,
    Path((workspace_id, name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    writable(&opener)?;
    let key = locate(&state, &opener, &workspace_id, &name).await?;
    let update = read_body(body, state.config.sync.max_frame_bytes).await?;
    apply(&state, &key, Change::Update(update)).await
}

/// Applies the change through the document's room and answers `{"changed","seq"}`.
pub(super) async fn apply(state: &AppState, key: &DocKey, change: Change) -> Result<Response, ApiError> {
    match state.sync.apply(key, change).await {
        Ok(applied) => Ok(axum::Json(WriteView { changed: applied.changed, seq: applied.seq }).into_response()),
        Err(ApplyError::Invalid(err)) => Err(ApiError::bad_request("invalid_update", err.to_string())),
        Err(err @ (ApplyError::Storage | ApplyError::Unavailable)) => {
            Err(ApiError::unavailable(1, "storage_unavailable", err.to_string()))
        }
        Err(ApplyError::Corrupt(err)) => Err(ApiError::internal(err)),
        Err(ApplyError::Deleted) => Err(ApiError::not_found("Document not found")),
    }
}

/// The whole body, or 413 as soon as it passes `limit` (read no further).
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("invalid_request", "could not read request body"))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", "request body too large"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(bytes))
}

/// `DELETE /api/workspaces/{id}/docs/{name}` → 204, closing its live connections (1000,
/// "document deleted"); the owner's devices only, not shares. 404 if it does not exist.
#[utoipa::path(delete, path = "/api/workspaces/{id}/docs/{name}", tag = "documents", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id"), ("name" = String, Path, description = "document name, percent-encoded as one segment")), responses((status = 204, description = "deleted"), (status = 400, description = "invalid document name", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn remove(
    State(state): State<AppState>,
    DocAuth(opener): DocAuth,
    Path((workspace_id, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if matches!(opener, Opener::Share(_)) {
        return Err(ApiError::forbidden("a share may not delete documents"));
    }
    let key = locate(&state, &opener, &workspace_id, &name).await?;
    let delete = state.store.delete_doc(&key.workspace_id, &key.name);
    if !state.sync.deleting(Deleting::Doc(key.clone()), delete).await? {
        return Err(ApiError::not_found("Document not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&[u8]>) {
        assert_eq!(decode_base64(input).as_deref(), expected, "{input:?}");
    }

    #[test]
    fn state_vectors_decode_from_either_base64_alphabet_padded_or_not() {
        check("AQID", Some(&[1, 2, 3]));
        check("-_8", Some(&[0xfb, 0xff]));
        check("-_8=", Some(&[0xfb, 0xff]));
        check("+/8=", Some(&[0xfb, 0xff]));
        check("+/8", Some(&[0xfb, 0xff]));
        check("not base64!", None);
        check("A", None);
    }
}
