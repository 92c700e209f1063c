//! `POST /api/v1/sync/push` and `POST /api/v1/sync/pull`: the Verstak operation log on the wire.
//!
//! This module only translates: JSON in, `concord_core::oplog` rules, the store, JSON out. Wire
//! types live here and nowhere else.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use concord_core::oplog::{self, PullError, PullParams, PushOp, PushRequest, RejectKind};
use concord_store::{Conflict, Principal, PushOutcome, PushResult, Scope, StoredOp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::app::AppState;
use crate::clock;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth};

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(push)).routes(utoipa_axum::routes!(pull))
}

/// The caller's log: its user and the vault its device was paired with. Sessions that are not
/// bound to a vault (browser sign-ins) have no log.
pub fn sync_scope(principal: &Principal) -> Result<Scope, ApiError> {
    match principal.device.vault_id.as_deref().filter(|v| !v.is_empty()) {
        Some(vault) => Ok(Scope { user_id: principal.user.id.clone(), vault_id: vault.to_owned() }),
        None => Err(ApiError::forbidden("device is not paired with a vault")),
    }
}

// Every field is optional with a zero default, as in the original's Go decoding.
#[derive(Deserialize, utoipa::ToSchema)]
struct PushBody {
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    ops: Option<Vec<PushOpBody>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PushOpBody {
    #[serde(default)]
    op_id: Option<String>,
    #[serde(default)]
    entity_type: Option<String>,
    #[serde(default)]
    entity_id: Option<String>,
    #[serde(default)]
    op_type: Option<String>,
    #[serde(default)]
    payload_json: Option<String>,
    #[serde(default)]
    client_sequence: Option<i64>,
    #[serde(default)]
    last_seen_server_seq: Option<i64>,
    #[serde(default)]
    created_at: Option<String>,
}

impl From<PushBody> for PushRequest {
    fn from(body: PushBody) -> PushRequest {
        PushRequest {
            device_id: body.device_id.unwrap_or_default(),
            idempotency_key: body.idempotency_key.unwrap_or_default(),
            ops: body
                .ops
                .unwrap_or_default()
                .into_iter()
                .map(|op| PushOp {
                    op_id: op.op_id.unwrap_or_default(),
                    entity_type: op.entity_type.unwrap_or_default(),
                    entity_id: op.entity_id.unwrap_or_default(),
                    op_type: op.op_type.unwrap_or_default(),
                    payload_json: op.payload_json.unwrap_or_default(),
                    client_sequence: op.client_sequence.unwrap_or_default(),
                    last_seen_server_seq: op.last_seen_server_seq.unwrap_or_default(),
                    created_at: op.created_at.unwrap_or_default(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct PushResponse<'a> {
    accepted: &'a [String],
    conflicts: Vec<ConflictWire<'a>>,
    count: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ConflictWire<'a> {
    device_id: &'a str,
    entity_id: &'a str,
    entity_type: &'a str,
    op_id: &'a str,
    op_type: &'a str,
    server_sequence: i64,
}

impl<'a> From<&'a Conflict> for ConflictWire<'a> {
    fn from(c: &'a Conflict) -> Self {
        ConflictWire {
            device_id: &c.device_id,
            entity_id: &c.entity_id,
            entity_type: &c.entity_type,
            op_id: &c.op_id,
            op_type: &c.op_type,
            server_sequence: c.server_sequence,
        }
    }
}

/// The push response's bytes. Also what the store keeps under an idempotency key, so a replay is
/// byte-identical to the first answer.
fn encode_push(result: &PushResult) -> Vec<u8> {
    let response = PushResponse {
        accepted: &result.accepted,
        conflicts: result.conflicts.iter().map(ConflictWire::from).collect(),
        count: result.accepted.len(),
    };
    serde_json::to_vec(&response).unwrap_or_default()
}

fn json_bytes(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], Body::from(bytes)).into_response()
}

/// Decodes a body that must be a JSON object into its wire type. Serde's derived structs would
/// also take an array of their fields in order (so `[]` read as an empty push), and the original
/// server refused every non-object; here that is a precise `invalid_request`, and an op that is
/// not an object is an `invalid_operation`.
fn wire_body<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("invalid_request", "request body must be a JSON object"));
    }
    if let Some(ops) = body.get("ops").and_then(Value::as_array)
        && !ops.iter().all(Value::is_object)
    {
        return Err(ApiError::bad_request("invalid_operation", "each operation must be a JSON object"));
    }
    serde_json::from_value(body).map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON: {e}")))
}

#[utoipa::path(post, path = "/api/v1/sync/push", tag = "op log", security(("device_token" = [])), request_body = PushBody, responses((status = 200, description = "success", body = PushResponse), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Conflict, crate::openapi::Common))]
async fn push(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let scope = sync_scope(&principal)?;
    let body: PushBody = wire_body(body)?;
    let valid = oplog::validate_push(body.into()).map_err(rejection)?;
    // The authenticated device is recorded, never the body's `device_id`.
    let outcome = state.store.push(&scope, &principal.device.id, valid, encode_push, clock::now()).await?;
    metrics::counter!("concord_oplog_pushes_total").increment(1);
    match outcome {
        PushOutcome::Committed(result) => {
            metrics::counter!("concord_oplog_ops_pushed_total").increment(result.accepted.len() as u64);
            state.events.publish(&scope, result.head);
            state.bus.head(&scope, result.head);
            state.webhooks.oplog_pushed(&scope, result.head);
            Ok(json_bytes(encode_push(&result)))
        }
        PushOutcome::Replayed(stored) => Ok(json_bytes(stored)),
        PushOutcome::Rejected(error) => Err(rejection(error)),
    }
}

fn rejection(error: oplog::PushError) -> ApiError {
    let status = match error.kind {
        RejectKind::Invalid => StatusCode::BAD_REQUEST,
        RejectKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
    };
    ApiError::new(status, error.code, error.message)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PullBody {
    #[serde(default)]
    since_sequence: Option<i64>,
    #[serde(default)]
    page_limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct PullResponse {
    has_more: bool,
    ops: Vec<OpWire>,
    page_last_sequence: i64,
    server_sequence: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct OpWire {
    op_id: String,
    server_sequence: i64,
    device_id: String,
    entity_type: String,
    entity_id: String,
    op_type: String,
    payload_json: String,
    created_at: String,
}

impl From<StoredOp> for OpWire {
    fn from(op: StoredOp) -> Self {
        OpWire {
            op_id: op.op_id,
            server_sequence: op.server_sequence,
            device_id: op.device_id,
            entity_type: op.entity_type,
            entity_id: op.entity_id,
            op_type: op.op_type,
            payload_json: op.payload_json,
            created_at: op.created_at,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/sync/pull", tag = "op log", security(("device_token" = [])), request_body = PullBody, responses((status = 200, description = "success", body = PullResponse), (status = 409, description = "`resync_required`: since_sequence is ahead of the server head", body = crate::openapi::ErrorBody), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn pull(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<Value>,
) -> Result<axum::Json<PullResponse>, ApiError> {
    let scope = sync_scope(&principal)?;
    let body: PullBody = wire_body(body)?;
    let params =
        PullParams::parse(body.since_sequence.unwrap_or(0), body.page_limit.unwrap_or(0)).map_err(pull_error)?;
    let snapshot = state.store.pull(&scope, params.since, params.fetch_limit()).await?;
    let page = oplog::page(params, snapshot.head, snapshot.ops, |op| op.server_sequence).map_err(pull_error)?;
    metrics::counter!("concord_oplog_pulls_total").increment(1);
    metrics::counter!("concord_oplog_ops_pulled_total").increment(page.ops.len() as u64);
    Ok(axum::Json(PullResponse {
        has_more: page.has_more,
        ops: page.ops.into_iter().map(OpWire::from).collect(),
        page_last_sequence: page.page_last_sequence,
        server_sequence: page.server_sequence,
    }))
}

fn pull_error(error: PullError) -> ApiError {
    match error {
        PullError::Negative => {
            ApiError::bad_request("invalid_request", "since_sequence and page_limit must be non-negative")
        }
        PullError::ResyncRequired { head } => ApiError::new(
            StatusCode::CONFLICT,
            "resync_required",
            format!("since_sequence is ahead of the server head {head}; resync required"),
        ),
    }
}
