//! The fuzz targets: one function per decoder that takes client bytes, each checking its
//! properties (never panic, output bounded by input, round trips and reference oracles) by
//! panicking when one fails.
//!
//! The same functions run in two drivers: the seeded loop of `cargo test` (`main.rs`) and the
//! coverage-guided libFuzzer binaries in `crates/core/fuzz/`, which include this file by path.
//! Each takes plain bytes; the structured ones read them through `arbitrary::Unstructured`, so a
//! mutation of the bytes is a mutation of the structure.

use std::collections::BTreeMap;

use arbitrary::{Result as ArbResult, Unstructured};
use concord_core::blob::{
    ByteRange, MAX_MULTIPART_HEADERS, MAX_MULTIPART_PREAMBLE, MultipartError, MultipartFile, MultipartHead, parse_range,
};
use concord_core::hocuspocus::{self, Session, Step};
use concord_core::oplog::{MAX_PUSH_OPS, PushOp, PushRequest, validate_push};
use concord_core::share::Access;
use concord_core::yjs::{AWARENESS_TIMEOUT_SECS, DocName, Effects, Room, decode_url_component};
use yrs::{ReadTxn, Transact};

/// Output a room may produce for one input, beyond a constant: each message is relayed at most
/// twice (reply and broadcast) and a SyncStep1 answer is at most the document, which itself came
/// from the input.
const OUTPUT_FACTOR: usize = 4;
const OUTPUT_SLACK: usize = 4096;

fn effects_len(effects: &Effects) -> usize {
    effects
        .reply
        .iter()
        .chain(&effects.broadcast)
        .map(|frame| frame.len())
        .chain(effects.persist.iter().map(Vec::len))
        .sum()
}

/// Replays what a room persisted into a fresh room: both must hold the same document, or an
/// acknowledged update would be lost after a restart.
fn check_persisted_reload(room: &Room, persisted: &[Vec<u8>]) {
    assert_eq!(clocks(&load_persisted(persisted)), clocks(room), "the persisted updates rebuild the document");
}

/// What a room stored loads after a restart, and none of it is the empty update.
fn load_persisted(persisted: &[Vec<u8>]) -> Room {
    assert!(!persisted.iter().any(|u| u == &[0, 0]), "an empty update was persisted");
    Room::load(None, persisted.iter().map(Vec::as_slice)).expect("persisted updates reload")
}

/// The document's state vector without clock-0 entries, which yrs adds for a client whose
/// update waits for a missing predecessor and which mean "nothing of this client".
fn clocks(room: &Room) -> BTreeMap<yrs::block::ClientID, u32> {
    room.doc()
        .expect("a fuzzed room never hibernates")
        .transact()
        .state_vector()
        .iter()
        .filter(|(_, clock)| **clock > 0)
        .map(|(c, k)| (*c, *k))
        .collect()
}

/// Every frame the server sends is valid y-protocols: a fresh room accepts it.
fn check_frames_valid(frames: &[bytes::Bytes]) {
    for frame in frames {
        let mut peer = Room::default();
        let _ = peer.connect(1);
        if let Err(e) = peer.receive(1, frame, 0) {
            panic!("the server sent a frame a peer refuses ({e}): {frame:02x?}");
        }
    }
}

/// One raw client frame (y-protocols sync, update, awareness, query) into a room with two
/// connections; then the same frame again from the other connection.
pub fn yjs_frame(data: &[u8]) {
    let mut room = Room::default();
    let _ = room.connect(1);
    let _ = room.connect(2);
    let Ok(first) = room.receive(1, data, 1_000) else { return };
    assert!(
        effects_len(&first) <= OUTPUT_FACTOR * data.len() + OUTPUT_SLACK,
        "output {} bytes for a {}-byte frame",
        effects_len(&first),
        data.len()
    );
    check_persisted_reload(&room, &first.persist);
    check_frames_valid(&first.reply);
    check_frames_valid(&first.broadcast);
    // Updates are idempotent: the same frame from another connection adds nothing to the
    // document. (It may be stored again: a delete set naming items the document lacks stays
    // pending in yrs and counts as a change each time; that costs no more than a new update.)
    let known = clocks(&room);
    if room.receive(2, data, 1_001).is_ok() {
        assert_eq!(clocks(&room), known, "a repeated update changed the document");
    }
}

/// A session of several connections sending frames, leaving and being swept, over time.
pub fn yjs_session(data: &[u8]) {
    let _ = yjs_session_inner(&mut Unstructured::new(data));
}

fn yjs_session_inner(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let mut room = Room::default();
    let mut persisted = Vec::new();
    let mut now = 0i64;
    let mut input = 0usize;
    let mut output = 0usize;
    for conn in 0..3 {
        let _ = room.connect(conn);
    }
    while !u.is_empty() {
        now += u.int_in_range(0..=AWARENESS_TIMEOUT_SECS)?;
        let conn = u.int_in_range(0..=2u64)?;
        let effects = match u.int_in_range(0..=9u8)? {
            0 => room.disconnect(conn, now),
            1 => room.sweep(now),
            2 => {
                let _ = room.connect(conn);
                continue;
            }
            _ => {
                let len = u.arbitrary_len::<u8>()?;
                let frame = u.bytes(len)?;
                input += frame.len();
                match room.receive(conn, frame, now) {
                    Ok(effects) => effects,
                    // A poisoned room is dropped and reloaded from storage by the server.
                    Err(e) if e.poisons_room() => {
                        room = Room::load(None, persisted.iter().map(Vec::as_slice)).expect("reload");
                        continue;
                    }
                    // The server closes the offending connection.
                    Err(_) => room.disconnect(conn, now),
                }
            }
        };
        output += effects_len(&effects);
        persisted.extend(effects.persist);
    }
    // Awareness removals are bounded by what the room holds, itself bounded by its limits.
    assert!(output <= OUTPUT_FACTOR * input + 64 * OUTPUT_SLACK, "output {output} bytes for {input} input bytes");
    // Across several frames only "what was stored loads": garbage updates whose structs lean on
    // pending ones can integrate in memory yet not from storage (corpus entry
    // `yjs_session/reload-diverges`); one frame at a time, `yjs_frame` checks the equality.
    load_persisted(&persisted);
    Ok(())
}

/// A Hocuspocus socket: frames (raw, or behind one of a few keys) into a [`Session`], whose
/// authentications succeed or fail as the input says, and whose document messages go to one room
/// through `hocuspocus::receive` (key "b" read-only). Checks: a document message re-encodes to its
/// frame, only open keys reach the room, a Step1 is answered with the server's Step1 first, every
/// Step2 or Update the room took is acknowledged exactly once, last, and a read-only key changes
/// nothing.
pub fn hocuspocus_session(data: &[u8]) {
    let mut state = HocusState {
        session: Session::default(),
        room: Room::default(),
        persisted: Vec::new(),
        open: BTreeMap::new(),
        next_conn: 1,
    };
    let mut now = 0i64;
    // Records of `control · length · body`, so corpus entries are written by hand: the control
    // byte's low two bits pick the key (none, "a", "b", "a\0session"), bit 2 says whether an
    // Auth in this record succeeds, the rest is seconds to advance.
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let body = &tail[..usize::from(*len).min(tail.len())];
        rest = &tail[body.len()..];
        now += i64::from(control >> 3);
        let frame = match control & 3 {
            0 => body.to_vec(),
            k => hocuspocus::frame(["a", "b", "a\0session"][usize::from(k) - 1], body),
        };
        let Ok(step) = state.session.receive(&frame) else { return };
        if let Step::Authenticate { key, .. } = step {
            let key = key.to_owned();
            if control & 4 == 0 {
                state.session.denied(&key);
                continue;
            }
            state.open.insert(key.clone(), state.next_conn);
            state.next_conn += 1;
            for queued in state.session.opened(&key) {
                let Ok(step) = state.session.receive(&queued) else { return };
                assert!(!matches!(step, Step::Authenticate { .. }), "an Auth was queued");
                if !hocus_step(&mut state, step, &queued, now) {
                    return;
                }
            }
        } else if !hocus_step(&mut state, step, &frame, now) {
            return;
        }
    }
    load_persisted(&state.persisted);
}

struct HocusState {
    session: Session,
    room: Room,
    persisted: Vec<Vec<u8>>,
    open: BTreeMap<String, u64>,
    next_conn: u64,
}

/// Handles one step; false when the server would close the socket.
fn hocus_step(state: &mut HocusState, step: Step<'_>, frame: &[u8], now: i64) -> bool {
    match step {
        Step::Nothing | Step::Authenticate { .. } => true,
        Step::Stateless { key, .. } => {
            assert!(state.open.contains_key(key), "stateless for a key that is not open");
            true
        }
        Step::Close { key } => {
            assert!(state.open.remove(key).is_some(), "close of a key that is not open");
            true
        }
        Step::Room { key, ydoc } => {
            assert_eq!(hocuspocus::frame(key, ydoc), frame, "a document message re-encodes to its frame");
            let conn = *state.open.get(key).expect("only open keys reach the room");
            // Key "b" is a read-only share: nothing it sends may change the document.
            let access = if key == "b" { Access::ReadOnly } else { Access::ReadWrite };
            let before = clocks(&state.room);
            match hocuspocus::receive(&mut state.room, conn, ydoc, access, now) {
                Ok(effects) => {
                    if access == Access::ReadOnly {
                        assert!(
                            effects.persist.is_empty() && clocks(&state.room) == before,
                            "a read-only edit applied"
                        );
                    }
                    let acks = effects.reply.iter().filter(|f| matches!(&f[..], [8, 0 | 1])).count();
                    match ydoc {
                        [0, 0, ..] => {
                            assert_eq!(effects.reply[0], state.room.sync_step1(), "the server's Step1 comes first");
                            assert_eq!(acks, 0);
                        }
                        [0, 1 | 2, ..] => {
                            assert_eq!(acks, 1, "one ack per Step2 or Update");
                            assert_eq!(effects.reply.last().map(|f| f[0]), Some(8), "the ack comes last");
                        }
                        _ => assert_eq!(acks, 0),
                    }
                    state.persisted.extend(effects.persist);
                    true
                }
                // The server closes the socket (and reloads a poisoned room from storage).
                Err(_) => false,
            }
        }
    }
}

/// The Range header, as raw text against a few sizes: the answer is always within the blob.
pub fn range_raw(data: &[u8]) {
    let header = String::from_utf8_lossy(data);
    for size in [0, 1, 7, 1000, u64::MAX] {
        check_part_bounds(parse_range(&header, size), size, &header);
    }
}

fn check_part_bounds(range: ByteRange, size: u64, header: &str) {
    if let ByteRange::Part { start, end } = range {
        assert!(start <= end && end < size, "{header:?} on {size} bytes gave {start}..={end}");
    }
}

/// The Range header built from parts, against a reference implementation that decides in `u128`.
pub fn range_oracle(data: &[u8]) {
    let _ = range_oracle_inner(&mut Unstructured::new(data));
}

/// One range-spec as the generator built it: positions may exceed `u64`.
#[derive(Debug)]
struct RefSpec {
    first: Option<u128>,
    last: Option<u128>,
}

fn range_oracle_inner(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let size: u64 = match u.int_in_range(0..=3u8)? {
        0 => 0,
        1 => u.int_in_range(1..=20)?,
        2 => u.arbitrary()?,
        _ => u64::MAX,
    };
    let unit = *u.choose(&["bytes", "BYTES", " Bytes ", "items", ""])?;
    let count = u.int_in_range(1..=4usize)?;
    let mut specs = Vec::new();
    let mut text = Vec::new();
    for _ in 0..count {
        let position = |u: &mut Unstructured<'_>| -> ArbResult<Option<u128>> {
            Ok(match u.int_in_range(0..=4u8)? {
                0 => None,
                1 => Some(u.int_in_range(0..=30)?),
                2 => Some(u128::from(u.arbitrary::<u64>()?)),
                3 => Some(u128::from(u64::MAX) + u128::from(u.int_in_range(0..=2u8)?)),
                _ => Some(u.arbitrary::<u128>()?),
            })
        };
        let spec = RefSpec { first: position(u)?, last: position(u)? };
        let zeros = "0".repeat(u.int_in_range(0..=2)?);
        let pad = *u.choose(&["", " ", "\t"])?;
        let show = |p: Option<u128>| p.map_or(String::new(), |p| format!("{zeros}{p}"));
        text.push(format!("{pad}{}-{}{pad}", show(spec.first), show(spec.last)));
        specs.push(spec);
    }
    let header = format!("{unit}={}", text.join(","));
    let got = parse_range(&header, size);
    let expected = reference_range(unit, &specs, size);
    assert_eq!(got, expected, "{header:?} on a {size}-byte blob");
    check_part_bounds(got, size, &header);
    Ok(())
}

/// RFC 9110 §14 read plainly, with positions in `u128` so nothing overflows.
fn reference_range(unit: &str, specs: &[RefSpec], size: u64) -> ByteRange {
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return ByteRange::Whole;
    }
    let size128 = u128::from(size);
    let mut decided = Vec::new();
    for spec in specs {
        let range = match (spec.first, spec.last) {
            (None, None) => return ByteRange::Whole,
            (Some(first), Some(last)) if last < first => return ByteRange::Whole,
            (None, Some(0)) => ByteRange::Unsatisfiable,
            (None, Some(_)) if size == 0 => ByteRange::Whole,
            (None, Some(n)) => ByteRange::Part { start: (size128 - n.min(size128)) as u64, end: size - 1 },
            (Some(first), _) if first >= size128 => ByteRange::Unsatisfiable,
            (Some(first), last) => {
                ByteRange::Part { start: first as u64, end: last.map_or(size128 - 1, |l| l.min(size128 - 1)) as u64 }
            }
        };
        decided.push(range);
    }
    match decided.as_slice() {
        [one] => *one,
        many if many.iter().all(|r| *r == ByteRange::Unsatisfiable) => ByteRange::Unsatisfiable,
        _ => ByteRange::Whole,
    }
}

/// The multipart head watcher: the same body cut into arbitrary chunks gets the same verdict as
/// fed whole, and a body whose preamble and headers are within the bounds is never refused.
pub fn multipart_head(data: &[u8]) {
    let _ = multipart_head_inner(&mut Unstructured::new(data));
}

fn multipart_head_inner(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let boundary = *u.choose(&["b", "X-BOUNDARY", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "\r\n--"])?;
    let body: Vec<u8> = if u.arbitrary()? {
        // Shaped like a real upload: preamble, delimiter, padding, CRLF, headers, blank line.
        let preamble = repeat_byte(u, b'p', MAX_MULTIPART_PREAMBLE + 16)?;
        let padding = repeat_byte(u, b' ', 8)?;
        let headers = repeat_byte(u, b'h', MAX_MULTIPART_HEADERS + 16)?;
        let mut body = [&preamble[..], b"--", boundary.as_bytes(), &padding, b"\r\n", &headers, b"\r\n\r\n"].concat();
        let tail_len = u.arbitrary_len::<u8>()?;
        body.extend_from_slice(u.bytes(tail_len)?);
        let fits = preamble.len() <= MAX_MULTIPART_PREAMBLE
            && headers.len() <= MAX_MULTIPART_HEADERS
            && !boundary.contains('p')
            && !boundary.contains('h');
        if fits && !boundary.starts_with('\r') {
            let mut whole = MultipartHead::new(boundary);
            let (pre, pad, head) = (preamble.len(), padding.len(), headers.len());
            assert_eq!(whole.feed(&body), Ok(true), "complete head: preamble {pre}, padding {pad}, headers {head}");
        }
        body
    } else {
        let len = u.arbitrary_len::<u8>()?;
        u.bytes(len)?.to_vec()
    };
    let mut whole = MultipartHead::new(boundary);
    let whole_verdict = whole.feed(&body);
    let mut chunked = MultipartHead::new(boundary);
    let mut verdict = Ok(false);
    let mut rest = &body[..];
    while !rest.is_empty() && verdict == Ok(false) {
        let cut = u.int_in_range(1..=rest.len())?;
        verdict = chunked.feed(&rest[..cut]);
        rest = &rest[cut..];
    }
    assert_eq!(verdict, whole_verdict, "chunking changed the verdict for boundary {boundary:?}");
    Ok(())
}

/// The upload's multipart parser: the same body cut into arbitrary chunks gives the same file
/// bytes or the same refusal as fed whole, and a well-formed upload of any bytes (delimiter
/// look-alikes included) gives exactly those bytes.
pub fn multipart_file(data: &[u8]) {
    let _ = multipart_file_inner(&mut Unstructured::new(data));
}

fn multipart_file_inner(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let boundary = *u.choose(&["b", "X-BOUNDARY", "----WebKitFormBoundary7MA4YWxkTrZu0gW"])?;
    let delimiter = format!("\r\n--{boundary}");
    // File bytes drawn from pieces of the delimiter and arbitrary bytes, so near misses abound.
    let mut file = Vec::new();
    for _ in 0..u.int_in_range(0..=8)? {
        if u.arbitrary()? {
            let len = u.int_in_range(1..=delimiter.len() - 1)?;
            file.extend_from_slice(&delimiter.as_bytes()[..len]);
        } else {
            let len = u.int_in_range(0..=16)?;
            file.extend_from_slice(u.bytes(len)?);
        }
    }
    // The file ends where the delimiter first appears after it.
    let ended = [&file[..], delimiter.as_bytes()].concat();
    let well_formed = ended.windows(delimiter.len()).position(|w| w == delimiter.as_bytes()) == Some(file.len());
    let head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n");
    let mut body = [head.as_bytes(), &file, delimiter.as_bytes(), b"--\r\n"].concat();
    if u.arbitrary()? {
        // Damaged: cut short, or with bytes flipped.
        let keep = u.int_in_range(0..=body.len())?;
        body.truncate(keep);
        for _ in 0..u.int_in_range(0..=2)? {
            if !body.is_empty() {
                let at = u.int_in_range(0..=body.len() - 1)?;
                body[at] ^= u.int_in_range(1..=255u8)?;
            }
        }
    } else if well_formed {
        assert_eq!(parse_upload(boundary, &body, &[]), Ok(file.clone()), "boundary {boundary:?}");
    }
    let whole = parse_upload(boundary, &body, &[]);
    let mut cuts = Vec::new();
    let mut at = 0;
    while at < body.len() && u.arbitrary()? {
        at += u.int_in_range(1..=body.len() - at)?;
        cuts.push(at);
    }
    assert_eq!(parse_upload(boundary, &body, &cuts), whole, "chunking changed the outcome for {boundary:?}");
    Ok(())
}

/// The file bytes of `body` cut at `cuts`, or why it was refused.
fn parse_upload(boundary: &str, body: &[u8], cuts: &[usize]) -> Result<Vec<u8>, MultipartError> {
    let mut parser = MultipartFile::new(boundary);
    let (mut file, mut from) = (Vec::new(), 0);
    for &to in cuts.iter().chain([&body.len()]) {
        for piece in parser.feed(bytes::Bytes::copy_from_slice(&body[from..to]))? {
            file.extend_from_slice(&piece);
        }
        from = to;
        if parser.is_complete() {
            return Ok(file);
        }
    }
    Err(parser.ended_early())
}

fn repeat_byte(u: &mut Unstructured<'_>, byte: u8, max: usize) -> ArbResult<Vec<u8>> {
    let len = match u.int_in_range(0..=3u8)? {
        0 => 0,
        1 => u.int_in_range(0..=64)?,
        _ => u.int_in_range(max.saturating_sub(32)..=max)?,
    };
    Ok(vec![byte; len])
}

/// Document names from URLs: accepted names obey the name rules, re-encoding round-trips, and a
/// claimed workspace is a `:`-free prefix of the name.
pub fn doc_name(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    if let Ok(decoded) = decode_url_component(&raw) {
        assert_eq!(decode_url_component(&encode_component(&decoded)).as_deref(), Ok(decoded.as_str()));
        if !raw.contains('%') {
            assert_eq!(decoded, raw, "without a percent sign decoding changes nothing");
        }
    }
    let Ok(name) = DocName::from_url(&raw) else { return };
    let text = name.as_str();
    assert!(!text.is_empty() && text.len() <= 1024 && !text.chars().any(char::is_control), "{text:?}");
    if let Some(id) = name.claimed_workspace() {
        assert!(!id.is_empty() && !id.contains(':'), "claimed {id:?} of {text:?}");
        assert!(text.starts_with(id) || text.starts_with(&format!("workspace:{id}")), "claimed {id:?} of {text:?}");
    }
}

/// `encodeURIComponent` of the name's bytes: every byte but the unreserved ones as `%XX`.
fn encode_component(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Op-log pushes built from arbitrary fields: validation never panics, is deterministic, and an
/// accepted push keeps its ops as sent.
pub fn oplog_push(data: &[u8]) {
    let _ = oplog_push_inner(&mut Unstructured::new(data));
}

fn oplog_push_inner(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let text = |u: &mut Unstructured<'_>| -> ArbResult<String> {
        Ok(match u.int_in_range(0..=5u8)? {
            0 => String::new(),
            1 => "file".to_owned(),
            2 => "a".repeat(u.int_in_range(60..=4100)?),
            3 => {
                let hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
                let size: i64 = u.arbitrary()?;
                let key = *u.choose(&["blob", "dataBase64", "content"])?;
                format!(r#"{{"{key}":{{"sha256":"{hash}","size":{size}}}}}"#)
            }
            _ => u.arbitrary()?,
        })
    };
    let ops_len = u.int_in_range(0..=MAX_PUSH_OPS + 1)?;
    let mut ops = Vec::new();
    for _ in 0..ops_len {
        if u.is_empty() {
            break;
        }
        ops.push(PushOp {
            op_id: text(u)?,
            entity_type: text(u)?,
            entity_id: text(u)?,
            op_type: text(u)?,
            payload_json: text(u)?,
            client_sequence: u.arbitrary()?,
            last_seen_server_seq: u.arbitrary()?,
            created_at: text(u)?,
        });
    }
    let request = PushRequest { device_id: text(u)?, idempotency_key: text(u)?, ops };
    let first = validate_push(request.clone());
    assert_eq!(first, validate_push(request.clone()), "validation is deterministic");
    if let Ok(valid) = first {
        assert_eq!(valid.ops, request.ops, "an accepted push keeps its ops");
        assert!(valid.ops.len() <= MAX_PUSH_OPS);
        let _ = valid.check_blobs(|_| Some(0));
    }
    Ok(())
}
