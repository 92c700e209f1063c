//! The operation log's rules, free of I/O: push validation with the Verstak server's exact error
//! codes, blob-reference checks, the advisory conflict rule, and pull paging.
//!
//! The store and the HTTP layer call these functions and do nothing protocol-specific themselves,
//! so every rule below can be read, and is tested, in one place.

use crate::blob::BlobHash;

/// Most operations one push may carry; the desktop client halves its batch on `too_many_operations`.
pub const MAX_PUSH_OPS: usize = 100;
/// Largest and default pull page.
pub const MAX_PULL_PAGE: i64 = 100;
/// Largest `payload_json`, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

const MAX_DEVICE_ID: usize = 128;
const MAX_IDEMPOTENCY_KEY: usize = 128;
const MAX_OP_ID: usize = 128;
const MAX_ENTITY_TYPE: usize = 64;
const MAX_ENTITY_ID: usize = 4096;
const MAX_OP_TYPE: usize = 64;

/// A push as the client sent it. `device_id` is only length-checked: the stored device is always
/// the authenticated one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushRequest {
    pub device_id: String,
    pub idempotency_key: String,
    pub ops: Vec<PushOp>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOp {
    /// Client-chosen id, unique within the scope; a re-sent id is acknowledged, not stored again.
    pub op_id: String,
    pub entity_type: String,
    /// For files, the vault-relative path.
    pub entity_id: String,
    pub op_type: String,
    /// Opaque JSON text (may be empty); stored and returned byte for byte.
    pub payload_json: String,
    pub client_sequence: i64,
    /// The highest server sequence the client had applied when it made this op; drives conflicts.
    pub last_seen_server_seq: i64,
    /// Client time, stored as given.
    pub created_at: String,
}

/// Whether a rejection is about size (HTTP 413) or shape (HTTP 400). Core says which; the server
/// picks the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    Invalid,
    TooLarge,
}

/// Why a push was rejected as a whole. `code` and `message` are the wire values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushError {
    pub kind: RejectKind,
    pub code: &'static str,
    pub message: String,
}

impl PushError {
    fn invalid(code: &'static str, message: impl Into<String>) -> PushError {
        PushError { kind: RejectKind::Invalid, code, message: message.into() }
    }

    fn too_large(code: &'static str, message: &str) -> PushError {
        PushError { kind: RejectKind::TooLarge, code, message: message.to_owned() }
    }
}

/// A blob a file operation points at: `payload.blob = {sha256, size}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub hash: BlobHash,
    pub size: u64,
}

/// A push that passed every check that needs no stored data. The blob-ownership check needs the
/// scope's blob references and runs inside the store's write transaction ([`ValidPush::check_blobs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPush {
    /// `None` when the client sent none (the desktop client never does).
    pub idempotency_key: Option<String>,
    pub ops: Vec<PushOp>,
    /// Per op, in order: its blob reference, or the error its file payload earns. Kept per op so
    /// that the first failing op decides the error, exactly as in the original server.
    blobs: Vec<Result<Option<BlobRef>, PushError>>,
}

impl ValidPush {
    /// Hashes whose stored size [`ValidPush::check_blobs`] will ask for.
    pub fn referenced_blobs(&self) -> impl Iterator<Item = &BlobHash> {
        self.blobs.iter().filter_map(|b| b.as_ref().ok().and_then(|r| r.as_ref()).map(|r| &r.hash))
    }

    /// Checks file ops against the scope's blobs: `stored_size` answers the size of a blob uploaded
    /// in this scope, or `None`. A referenced blob must be there with the same size, so every device
    /// that later pulls the op can download what it names.
    pub fn check_blobs(&self, stored_size: impl Fn(&BlobHash) -> Option<u64>) -> Result<(), PushError> {
        for blob in &self.blobs {
            let Some(reference) = blob.clone()? else { continue };
            match stored_size(&reference.hash) {
                None => return Err(PushError::invalid("blob_not_owned", "blob must be uploaded before its operation")),
                Some(size) if size != reference.size => {
                    return Err(PushError::invalid(
                        "invalid_blob_reference",
                        "blob size does not match uploaded content",
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Validates a push in the original server's order, stopping at the first failure: operation
/// count, request fields, then each op's fields, payload size, payload JSON and sequences.
pub fn validate_push(request: PushRequest) -> Result<ValidPush, PushError> {
    if request.ops.len() > MAX_PUSH_OPS {
        return Err(PushError::too_large("too_many_operations", "too many operations in one push"));
    }
    check_length("device_id", &request.device_id, MAX_DEVICE_ID)?;
    check_length("idempotency_key", &request.idempotency_key, MAX_IDEMPOTENCY_KEY)?;
    for (name, value) in [("device_id", &request.device_id), ("idempotency_key", &request.idempotency_key)] {
        check_printable("invalid_request", name, value)?;
    }
    let mut payloads = Vec::with_capacity(request.ops.len());
    for op in &request.ops {
        for (name, value, max) in [
            ("op_id", &op.op_id, MAX_OP_ID),
            ("entity_type", &op.entity_type, MAX_ENTITY_TYPE),
            ("entity_id", &op.entity_id, MAX_ENTITY_ID),
            ("op_type", &op.op_type, MAX_OP_TYPE),
        ] {
            if value.trim().is_empty() {
                return Err(PushError::invalid("invalid_operation", format!("{name} is required")));
            }
            check_length(name, value, max)?;
            check_printable("invalid_operation", name, value)?;
        }
        check_printable("invalid_operation", "created_at", &op.created_at)?;
        if op.payload_json.len() > MAX_PAYLOAD_BYTES {
            return Err(PushError::too_large("payload_too_large", "operation payload is too large"));
        }
        let payload = if op.payload_json.is_empty() {
            None
        } else {
            Some(serde_json::from_str::<serde_json::Value>(&op.payload_json).map_err(|_| invalid_payload())?)
        };
        if op.client_sequence < 0 || op.last_seen_server_seq < 0 {
            return Err(PushError::invalid("invalid_operation", "operation sequences must be non-negative"));
        }
        payloads.push(payload);
    }
    let blobs = request
        .ops
        .iter()
        .zip(&payloads)
        .map(|(op, payload)| match payload {
            Some(payload) if op.entity_type == "file" => file_blob_reference(payload),
            _ => Ok(None),
        })
        .collect();
    let idempotency_key = Some(request.idempotency_key).filter(|k| !k.is_empty());
    Ok(ValidPush { idempotency_key, ops: request.ops, blobs })
}

fn check_length(name: &str, value: &str, max: usize) -> Result<(), PushError> {
    if value.len() > max { Err(PushError::invalid("field_too_long", format!("{name} is too long"))) } else { Ok(()) }
}

/// Ids, names and timestamps are text that other devices compare, show and use as paths: a NUL,
/// newline or other control character in them is never meant and breaks C strings, logs and file
/// systems downstream. `payload_json` is exempt: it is opaque JSON, validated as such.
fn check_printable(code: &'static str, name: &str, value: &str) -> Result<(), PushError> {
    if value.chars().any(char::is_control) {
        Err(PushError::invalid(code, format!("{name} must not contain control characters")))
    } else {
        Ok(())
    }
}

fn invalid_payload() -> PushError {
    PushError::invalid("invalid_payload", "operation payload_json must be valid JSON")
}

/// File payloads carry content inline (`content`) or by reference (`blob`); binary content must
/// go through blob storage, never through the log (`dataBase64` is refused).
fn file_blob_reference(payload: &serde_json::Value) -> Result<Option<BlobRef>, PushError> {
    use serde_json::Value;
    let fields = match payload {
        Value::Object(fields) => fields,
        Value::Null => return Ok(None),
        _ => return Err(invalid_payload()),
    };
    if fields.get("dataBase64").is_some_and(|v| !v.is_null()) {
        return Err(PushError::invalid("inline_binary_forbidden", "binary file payload must reference a blob"));
    }
    let blob = match fields.get("blob") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(blob)) => blob,
        Some(_) => return Err(invalid_blob_reference()),
    };
    let hash = blob.get("sha256").and_then(Value::as_str).and_then(|s| BlobHash::parse(s).ok());
    // A missing size reads as 0, as in the original's typed decoding.
    let size = match blob.get("size") {
        None => Some(0),
        Some(size) => size.as_u64(),
    };
    match (hash, size) {
        (Some(hash), Some(size)) => Ok(Some(BlobRef { hash, size })),
        _ => Err(invalid_blob_reference()),
    }
}

fn invalid_blob_reference() -> PushError {
    PushError::invalid("invalid_blob_reference", "invalid blob reference")
}

/// Conflict candidates for a pushed op are the stored ops on the same entity with a sequence above
/// this floor. `None` means the client saw nothing yet (`last_seen_server_seq` 0) and no op can
/// conflict.
pub fn conflict_floor(op: &PushOp) -> Option<i64> {
    (op.last_seen_server_seq > 0).then_some(op.last_seen_server_seq)
}

/// Whether a candidate (see [`conflict_floor`]) is reported as a conflict: it came from another
/// device and did not delete the entity. Conflicts are advisory: the pushed op is stored anyway
/// and the client decides what to show.
pub fn is_conflict(pusher_device: &str, candidate_device: &str, candidate_op_type: &str) -> bool {
    candidate_device != pusher_device && candidate_op_type != "delete"
}

/// Whether an op removes its entity and therefore leaves a tombstone.
pub fn is_delete(op: &PushOp) -> bool {
    op.op_type == "delete"
}

/// A pull's parameters after the reference's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullParams {
    pub since: i64,
    /// 1..=[`MAX_PULL_PAGE`]; the store fetches one more to learn `has_more`.
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullError {
    /// Negative `since_sequence` or `page_limit`.
    Negative,
    /// The client has seen more than the scope holds (a restore from an older backup, or another
    /// server): it must rebuild its state instead of silently waiting for sequences that were lost.
    ResyncRequired { head: i64 },
}

impl PullParams {
    /// `page_limit` 0 (the desktop client's choice) or above the maximum means the maximum.
    pub fn parse(since_sequence: i64, page_limit: i64) -> Result<PullParams, PullError> {
        if since_sequence < 0 || page_limit < 0 {
            return Err(PullError::Negative);
        }
        let limit = if page_limit == 0 || page_limit > MAX_PULL_PAGE { MAX_PULL_PAGE } else { page_limit };
        Ok(PullParams { since: since_sequence, limit })
    }

    /// How many ops the store reads: one beyond the page, to learn whether more follow.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }
}

/// One page of a pull, shaped for the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub ops: Vec<T>,
    pub has_more: bool,
    /// The last returned op's sequence, or `since` for an empty page, so a client can always
    /// store it as its cursor.
    pub page_last_sequence: i64,
    /// The scope head in the same snapshot as `ops`.
    pub server_sequence: i64,
}

/// Builds the page from the scope head and the ops after `since` (ascending, at most
/// [`PullParams::fetch_limit`]), both read in one snapshot.
pub fn page<T>(
    params: PullParams,
    head: i64,
    mut fetched: Vec<T>,
    sequence_of: impl Fn(&T) -> i64,
) -> Result<Page<T>, PullError> {
    if params.since > head {
        return Err(PullError::ResyncRequired { head });
    }
    let has_more = fetched.len() as i64 > params.limit;
    fetched.truncate(params.limit as usize);
    let page_last_sequence = fetched.last().map_or(params.since, &sequence_of);
    Ok(Page { ops: fetched, has_more, page_last_sequence, server_sequence: head })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn op(id: &str) -> PushOp {
        PushOp {
            op_id: id.into(),
            entity_type: "folder".into(),
            entity_id: "notes".into(),
            op_type: "create".into(),
            payload_json: "{}".into(),
            created_at: "2026-07-10T00:00:00Z".into(),
            ..PushOp::default()
        }
    }

    fn file(payload: &str) -> PushOp {
        PushOp { entity_type: "file".into(), payload_json: payload.into(), ..op("f") }
    }

    /// One case: a request and the code it must earn (`None` = accepted), through both stages of
    /// validation, in a scope that owns the blob `SHA` of size 0.
    fn check(name: &str, request: PushRequest, expected: Option<(&'static str, RejectKind)>) {
        let owned = |h: &BlobHash| (h.as_str() == SHA).then_some(0);
        let got = validate_push(request).and_then(|v| v.check_blobs(owned)).err().map(|e| (e.code, e.kind));
        assert_eq!(got, expected, "case {name}");
    }

    #[test]
    fn push_validation_matches_the_reference() {
        use RejectKind::{Invalid, TooLarge};
        let one = |op: PushOp| PushRequest { ops: vec![op], ..PushRequest::default() };
        let long = |n: usize| "x".repeat(n);
        type Case = (&'static str, PushRequest, Option<(&'static str, RejectKind)>);
        let cases: Vec<Case> = vec![
            ("empty push", PushRequest::default(), None),
            ("plain op", one(op("a")), None),
            ("100 ops", PushRequest { ops: vec![op("a"); 100], ..PushRequest::default() }, None),
            (
                "101 ops beat every other error",
                PushRequest { device_id: long(500), ops: vec![op(""); 101], ..PushRequest::default() },
                Some(("too_many_operations", TooLarge)),
            ),
            ("device_id 128", PushRequest { device_id: long(128), ..PushRequest::default() }, None),
            (
                "device_id 129",
                PushRequest { device_id: long(129), ..PushRequest::default() },
                Some(("field_too_long", Invalid)),
            ),
            (
                "idempotency_key 129",
                PushRequest { idempotency_key: long(129), ..PushRequest::default() },
                Some(("field_too_long", Invalid)),
            ),
            ("blank op_id", one(op("  ")), Some(("invalid_operation", Invalid))),
            (
                "blank entity_type",
                one(PushOp { entity_type: "".into(), ..op("a") }),
                Some(("invalid_operation", Invalid)),
            ),
            (
                "blank entity_id",
                one(PushOp { entity_id: "\t".into(), ..op("a") }),
                Some(("invalid_operation", Invalid)),
            ),
            ("blank op_type", one(PushOp { op_type: "".into(), ..op("a") }), Some(("invalid_operation", Invalid))),
            ("op_id 129", one(op(&long(129))), Some(("field_too_long", Invalid))),
            ("entity_type 65", one(PushOp { entity_type: long(65), ..op("a") }), Some(("field_too_long", Invalid))),
            ("entity_id 4096", one(PushOp { entity_id: long(4096), ..op("a") }), None),
            ("entity_id 4097", one(PushOp { entity_id: long(4097), ..op("a") }), Some(("field_too_long", Invalid))),
            ("op_type 65", one(PushOp { op_type: long(65), ..op("a") }), Some(("field_too_long", Invalid))),
            ("NUL in op_id", one(op("a\0b")), Some(("invalid_operation", Invalid))),
            ("newline in op_id", one(op("a\nb")), Some(("invalid_operation", Invalid))),
            ("DEL in op_id", one(op("a\u{7f}")), Some(("invalid_operation", Invalid))),
            ("C1 control in op_id", one(op("a\u{85}")), Some(("invalid_operation", Invalid))),
            ("non-ASCII op_id", one(op("zażółć-✓")), None),
            ("space inside op_id", one(op("a b")), None),
            (
                "tab in entity_type",
                one(PushOp { entity_type: "fi\tle".into(), ..op("a") }),
                Some(("invalid_operation", Invalid)),
            ),
            (
                "NUL in entity_id",
                one(PushOp { entity_id: "a/\0.md".into(), ..op("a") }),
                Some(("invalid_operation", Invalid)),
            ),
            (
                "escape in op_type",
                one(PushOp { op_type: "create\u{1b}[2J".into(), ..op("a") }),
                Some(("invalid_operation", Invalid)),
            ),
            (
                "newline in created_at",
                one(PushOp { created_at: "2026-07-10\n".into(), ..op("a") }),
                Some(("invalid_operation", Invalid)),
            ),
            (
                "NUL in device_id",
                PushRequest { device_id: "dev\0".into(), ..PushRequest::default() },
                Some(("invalid_request", Invalid)),
            ),
            (
                "CR in idempotency_key",
                PushRequest { idempotency_key: "k\r".into(), ..PushRequest::default() },
                Some(("invalid_request", Invalid)),
            ),
            (
                "control characters inside payload JSON strings are the payload's business",
                one(PushOp { payload_json: r#"{"text":"a\u0000b"}"#.into(), ..op("a") }),
                None,
            ),
            (
                "payload 256 KiB",
                one(PushOp { payload_json: format!("\"{}\"", long(MAX_PAYLOAD_BYTES - 2)), ..op("a") }),
                None,
            ),
            (
                "payload over 256 KiB",
                one(PushOp { payload_json: format!("\"{}\"", long(MAX_PAYLOAD_BYTES - 1)), ..op("a") }),
                Some(("payload_too_large", TooLarge)),
            ),
            ("empty payload", one(PushOp { payload_json: "".into(), ..op("a") }), None),
            (
                "non-JSON payload",
                one(PushOp { payload_json: "{nope".into(), ..op("a") }),
                Some(("invalid_payload", Invalid)),
            ),
            (
                "two JSON values",
                one(PushOp { payload_json: "{} {}".into(), ..op("a") }),
                Some(("invalid_payload", Invalid)),
            ),
            (
                "negative client_sequence",
                one(PushOp { client_sequence: -1, ..op("a") }),
                Some(("invalid_operation", Invalid)),
            ),
            (
                "negative last_seen_server_seq",
                one(PushOp { last_seen_server_seq: -1, ..op("a") }),
                Some(("invalid_operation", Invalid)),
            ),
            (
                "the first failing op decides",
                PushRequest { ops: vec![op("a"), op(""), op(&long(200))], ..PushRequest::default() },
                Some(("invalid_operation", Invalid)),
            ),
            ("file with content", one(file(r#"{"path":"a.md","contentHash":"x","content":"hi"}"#)), None),
            ("file with null dataBase64", one(file(r#"{"path":"a","dataBase64":null}"#)), None),
            (
                "file with dataBase64",
                one(file(r#"{"path":"a","dataBase64":"aGk="}"#)),
                Some(("inline_binary_forbidden", Invalid)),
            ),
            (
                "dataBase64 on a non-file entity is not our business",
                one(PushOp { payload_json: r#"{"dataBase64":"aGk="}"#.into(), ..op("a") }),
                None,
            ),
            ("file payload not an object", one(file("[1]")), Some(("invalid_payload", Invalid))),
            (
                "blob with uppercase hash",
                one(file(&format!(r#"{{"blob":{{"sha256":"{}","size":1}}}}"#, SHA.to_uppercase()))),
                Some(("invalid_blob_reference", Invalid)),
            ),
            (
                "blob with negative size",
                one(file(&format!(r#"{{"blob":{{"sha256":"{SHA}","size":-1}}}}"#))),
                Some(("invalid_blob_reference", Invalid)),
            ),
            ("blob not an object", one(file(r#"{"blob":"abc"}"#)), Some(("invalid_blob_reference", Invalid))),
            ("valid blob shape", one(file(&format!(r#"{{"blob":{{"sha256":"{SHA}","size":0}}}}"#))), None),
        ];
        for (name, request, expected) in cases {
            check(name, request, expected);
        }
    }

    #[test]
    fn messages_name_the_field() {
        let err =
            validate_push(PushRequest { ops: vec![PushOp { entity_id: " ".into(), ..op("a") }], ..Default::default() })
                .unwrap_err();
        assert_eq!(err.message, "entity_id is required");
        let err = validate_push(PushRequest { idempotency_key: "k".repeat(129), ..Default::default() }).unwrap_err();
        assert_eq!(err.message, "idempotency_key is too long");
    }

    #[test]
    fn idempotency_key_is_optional() {
        assert_eq!(validate_push(PushRequest::default()).unwrap().idempotency_key, None);
        let keyed = PushRequest { idempotency_key: "k1".into(), ..Default::default() };
        assert_eq!(validate_push(keyed).unwrap().idempotency_key.as_deref(), Some("k1"));
    }

    #[test]
    fn blob_ownership_is_checked_in_op_order() {
        let other = "a".repeat(64);
        let blob = |sha: &str, size: i64| file(&format!(r#"{{"blob":{{"sha256":"{sha}","size":{size}}}}}"#));
        let owned = |h: &BlobHash| (h.as_str() == SHA).then_some(10);
        let cases: Vec<(&str, Vec<PushOp>, Option<&str>)> = vec![
            ("owned, same size", vec![blob(SHA, 10)], None),
            ("no file ops", vec![op("a")], None),
            ("owned, other size", vec![blob(SHA, 11)], Some("invalid_blob_reference")),
            ("not owned", vec![blob(&other, 10)], Some("blob_not_owned")),
            (
                "not owned before inline binary",
                vec![blob(&other, 1), file(r#"{"dataBase64":"x"}"#)],
                Some("blob_not_owned"),
            ),
            (
                "inline binary before not owned",
                vec![file(r#"{"dataBase64":"x"}"#), blob(&other, 1)],
                Some("inline_binary_forbidden"),
            ),
        ];
        for (name, ops, expected) in cases {
            let valid = validate_push(PushRequest { ops, ..Default::default() });
            let valid = valid.unwrap_or_else(|e| panic!("case {name}: shape rejected: {e:?}"));
            assert_eq!(valid.check_blobs(owned).err().map(|e| e.code), expected, "case {name}");
        }
        let refs =
            validate_push(PushRequest { ops: vec![blob(SHA, 1), op("a"), blob(&other, 2)], ..Default::default() })
                .unwrap();
        let hashes: Vec<&str> = refs.referenced_blobs().map(BlobHash::as_str).collect();
        assert_eq!(hashes, [SHA, other.as_str()]);
    }

    #[test]
    fn conflict_rule() {
        let seen = |n: i64| PushOp { last_seen_server_seq: n, ..op("a") };
        assert_eq!(conflict_floor(&seen(0)), None);
        assert_eq!(conflict_floor(&seen(7)), Some(7));
        for (candidate_device, candidate_type, expected) in [
            ("dev_b", "update", true),
            ("dev_a", "update", false),
            ("dev_b", "delete", false),
            ("dev_b", "hard-delete", true),
        ] {
            assert_eq!(
                is_conflict("dev_a", candidate_device, candidate_type),
                expected,
                "{candidate_device} {candidate_type}"
            );
        }
        assert!(is_delete(&PushOp { op_type: "delete".into(), ..op("a") }));
        assert!(!is_delete(&PushOp { op_type: "trash".into(), ..op("a") }));
    }

    #[test]
    fn pull_params() {
        for (since, limit, expected) in [
            (0, 0, Ok(PullParams { since: 0, limit: 100 })),
            (5, 1, Ok(PullParams { since: 5, limit: 1 })),
            (5, 100, Ok(PullParams { since: 5, limit: 100 })),
            (5, 101, Ok(PullParams { since: 5, limit: 100 })),
            (-1, 0, Err(PullError::Negative)),
            (0, -1, Err(PullError::Negative)),
        ] {
            assert_eq!(PullParams::parse(since, limit), expected, "since {since} limit {limit}");
        }
        assert_eq!(PullParams { since: 0, limit: 100 }.fetch_limit(), 101);
    }

    #[test]
    fn paging() {
        let params = |since, limit| PullParams { since, limit };
        let id = |s: &i64| *s;
        // (params, head, fetched) -> (ops, has_more, page_last_sequence) or resync.
        type Case = (PullParams, i64, Vec<i64>, Result<(Vec<i64>, bool, i64), PullError>);
        let cases: Vec<Case> = vec![
            (params(0, 100), 0, vec![], Ok((vec![], false, 0))),
            (params(3, 2), 5, vec![4, 5], Ok((vec![4, 5], false, 5))),
            (params(3, 2), 9, vec![4, 5, 6], Ok((vec![4, 5], true, 5))),
            (params(5, 2), 5, vec![], Ok((vec![], false, 5))),
            (params(6, 2), 5, vec![], Err(PullError::ResyncRequired { head: 5 })),
        ];
        for (p, head, fetched, expected) in cases {
            let got = page(p, head, fetched, id).map(|pg| {
                assert_eq!(pg.server_sequence, head);
                (pg.ops, pg.has_more, pg.page_last_sequence)
            });
            assert_eq!(got, expected, "{p:?} head {head}");
        }
    }
}
