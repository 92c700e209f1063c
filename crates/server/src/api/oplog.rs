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

/// A pull's answer. The handler writes its bytes with [`PullResponse::to_json`] rather than
/// through a serde derive: a page repeats the same eight keys for every op, and the derive spent
/// about a third of a pull's CPU escaping them and growing its buffer. The derive is kept, in
/// tests only, as the reference the hand-written bytes must equal; the schema is this type's.
#[derive(utoipa::ToSchema)]
#[cfg_attr(test, derive(Serialize))]
struct PullResponse<'a> {
    has_more: bool,
    ops: Vec<OpWire<'a>>,
    page_last_sequence: i64,
    server_sequence: i64,
}

/// One pulled op, borrowed from the store's row (the wire view copies nothing).
#[derive(utoipa::ToSchema)]
#[cfg_attr(test, derive(Serialize))]
struct OpWire<'a> {
    op_id: &'a str,
    server_sequence: i64,
    device_id: &'a str,
    entity_type: &'a str,
    entity_id: &'a str,
    op_type: &'a str,
    payload_json: &'a str,
    created_at: &'a str,
}

impl<'a> From<&'a StoredOp> for OpWire<'a> {
    fn from(op: &'a StoredOp) -> Self {
        OpWire {
            op_id: &op.op_id,
            server_sequence: op.server_sequence,
            device_id: &op.device_id,
            entity_type: &op.entity_type,
            entity_id: &op.entity_id,
            op_type: &op.op_type,
            payload_json: &op.payload_json,
            created_at: &op.created_at,
        }
    }
}

/// Bytes of an op's JSON besides its strings' own: the keys, quotes, commas and two integers.
const OP_FRAME: usize = 160;

impl PullResponse<'_> {
    /// The JSON serde's derive would write for this value, byte for byte (keys in declaration
    /// order, no whitespace), into one buffer sized up front. Every value goes through serde_json
    /// itself, so strings are escaped exactly as before; only the fixed keys are written here.
    fn to_json(&self) -> Vec<u8> {
        let text: usize = self.ops.iter().map(OpWire::text_len).sum();
        // A few escapes fit without growing; more only cost a reallocation.
        let mut out = Vec::with_capacity(96 + self.ops.len() * OP_FRAME + text + text / 16);
        out.extend_from_slice(b"{\"has_more\":");
        json_value(&mut out, &self.has_more);
        out.extend_from_slice(b",\"ops\":[");
        for (i, op) in self.ops.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            op.write_json(&mut out);
        }
        out.extend_from_slice(b"],\"page_last_sequence\":");
        json_value(&mut out, &self.page_last_sequence);
        out.extend_from_slice(b",\"server_sequence\":");
        json_value(&mut out, &self.server_sequence);
        out.push(b'}');
        out
    }
}

impl OpWire<'_> {
    fn text_len(&self) -> usize {
        [self.op_id, self.device_id, self.entity_type, self.entity_id, self.op_type, self.payload_json, self.created_at]
            .iter()
            .map(|s| s.len())
            .sum()
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"op_id\":");
        json_value(out, self.op_id);
        out.extend_from_slice(b",\"server_sequence\":");
        json_value(out, &self.server_sequence);
        let strings: [(&[u8], &str); 6] = [
            (b",\"device_id\":", self.device_id),
            (b",\"entity_type\":", self.entity_type),
            (b",\"entity_id\":", self.entity_id),
            (b",\"op_type\":", self.op_type),
            (b",\"payload_json\":", self.payload_json),
            (b",\"created_at\":", self.created_at),
        ];
        for (key, value) in strings {
            out.extend_from_slice(key);
            json_value(out, value);
        }
        out.push(b'}');
    }
}

/// Appends one JSON value as serde_json writes it (its string escaping, its integer digits).
fn json_value<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("strings, integers and booleans always serialise into a Vec");
}

#[utoipa::path(post, path = "/api/v1/sync/pull", tag = "op log", security(("device_token" = [])), request_body = PullBody, responses((status = 200, description = "success", body = PullResponse), (status = 409, description = "`resync_required`: since_sequence is ahead of the server head", body = crate::openapi::ErrorBody), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn pull(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let scope = sync_scope(&principal)?;
    let body: PullBody = wire_body(body)?;
    let params =
        PullParams::parse(body.since_sequence.unwrap_or(0), body.page_limit.unwrap_or(0)).map_err(pull_error)?;
    let snapshot = state.store.pull(&scope, params.since, params.fetch_limit()).await?;
    let page = oplog::page(params, snapshot.head, snapshot.ops, |op| op.server_sequence).map_err(pull_error)?;
    metrics::counter!("concord_oplog_pulls_total").increment(1);
    metrics::counter!("concord_oplog_ops_pulled_total").increment(page.ops.len() as u64);
    let response = PullResponse {
        has_more: page.has_more,
        ops: page.ops.iter().map(OpWire::from).collect(),
        page_last_sequence: page.page_last_sequence,
        server_sequence: page.server_sequence,
    };
    Ok(json_bytes(response.to_json()))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings that exercise every escaping rule serde_json has: quotes, backslashes, each
    /// control character (short escapes and `\u00XX`), DEL, multi-byte and astral characters,
    /// U+2028 (left raw by serde_json), JSON inside a string, and nothing at all.
    const AWKWARD: &[&str] = &[
        "",
        "plain",
        "\"quoted\"",
        "back\\slash\\",
        "\u{0}\u{1}\u{7}\u{8}\t\n\u{b}\u{c}\r\u{1b}\u{1f}",
        "\u{7f}",
        "é ü 漢字 😀",
        "line\u{2028}sep\u{2029}",
        r#"{"path":"a/b","tags":["x","y"],"n":-1.5e3}"#,
        "</script>&<>'",
    ];

    fn op(i: usize, server_sequence: i64) -> OpWire<'static> {
        let s = |k: usize| AWKWARD[(i + k) % AWKWARD.len()];
        OpWire {
            op_id: s(0),
            server_sequence,
            device_id: s(1),
            entity_type: s(2),
            entity_id: s(3),
            op_type: s(4),
            payload_json: s(5),
            created_at: s(6),
        }
    }

    fn check(response: PullResponse<'_>) {
        let expected = serde_json::to_vec(&response).unwrap();
        let got = response.to_json();
        assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(expected).unwrap());
    }

    #[test]
    fn pull_json_is_byte_identical_to_the_serde_derive() {
        check(PullResponse { has_more: false, ops: Vec::new(), page_last_sequence: 0, server_sequence: 0 });
        check(PullResponse { has_more: true, ops: vec![op(0, 1)], page_last_sequence: 1, server_sequence: 2 });
        let sequences = [0, 1, 9, 10, 99_999, i64::from(u32::MAX) + 1, i64::MAX - 1, i64::MAX, -1, i64::MIN];
        let ops = sequences.iter().enumerate().map(|(i, &seq)| op(i, seq)).collect();
        check(PullResponse { has_more: true, ops, page_last_sequence: i64::MAX, server_sequence: i64::MAX });
        // Every awkward string in every field, across a full page.
        let ops = (0..100).map(|i| op(i, i as i64 + 1)).collect();
        check(PullResponse { has_more: false, ops, page_last_sequence: 100, server_sequence: 100 });
        // Every control character in one string, in both short and `\u00XX` forms.
        let controls: String = (0u8..0x20).map(char::from).collect();
        let ops = vec![OpWire { op_id: &controls, payload_json: &controls, ..op(0, 7) }];
        check(PullResponse { has_more: false, ops, page_last_sequence: 7, server_sequence: 7 });
    }
}
