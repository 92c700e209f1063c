//! Content-addressed blobs: the SHA-256 name, its on-disk layout, streaming hashing, quotas,
//! `Range` requests and the upload's multipart body.

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// The SHA-256 of a blob's content, spelled as 64 lowercase hex characters.
///
/// Invariant: the inner string is always exactly 64 characters from `[0-9a-f]`, so it is safe to
/// use as a file name and as a path component without further checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobHash(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a blob hash is 64 lowercase hex characters")]
pub struct InvalidBlobHash;

impl BlobHash {
    /// Accepts only the canonical spelling. Uppercase hex is rejected rather than folded, as the
    /// Verstak server does, so one blob never has two names.
    pub fn parse(s: &str) -> Result<BlobHash, InvalidBlobHash> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(BlobHash(s.to_owned()))
        } else {
            Err(InvalidBlobHash)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the blob lives below the blob root: `<aa>/<bb>/<sha256>`. Two levels of 256 fan-out
    /// keep directories small even with millions of blobs.
    pub fn relative_path(&self) -> [&str; 3] {
        [&self.0[0..2], &self.0[2..4], &self.0]
    }
}

impl std::fmt::Display for BlobHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hashes a blob chunk by chunk as it streams in, so no upload is ever held in memory whole.
#[derive(Default)]
pub struct BlobHasher {
    digest: Sha256,
    size: u64,
}

impl BlobHasher {
    pub fn new() -> BlobHasher {
        BlobHasher::default()
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.digest.update(chunk);
        self.size += chunk.len() as u64;
    }

    /// Bytes seen so far; callers compare it with their size limit after every chunk.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> (BlobHash, u64) {
        (BlobHash(hex::encode(self.digest.finalize())), self.size)
    }
}

/// Storage limits for blobs. Quotas count the logical bytes a scope references, not physical
/// bytes: two vaults holding the same file each pay for it, so one tenant's usage never depends on
/// what another tenant happens to have uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobQuota {
    /// Bytes referenced by one (user, vault) scope.
    pub per_vault: u64,
    /// Bytes referenced by all of a user's vaults together.
    pub per_user: u64,
}

impl BlobQuota {
    /// Whether a new reference of `size` bytes fits next to what the vault and user already use.
    pub fn admits(&self, vault_used: u64, user_used: u64, size: u64) -> bool {
        vault_used.saturating_add(size) <= self.per_vault && user_used.saturating_add(size) <= self.per_user
    }
}

/// What a `Range` request header asks of a blob of known size (RFC 9110 §14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Serve the whole blob (200): no header, a header we may ignore, or one we choose to.
    Whole,
    /// One part (206), inclusive bounds, both within the blob.
    Part { start: u64, end: u64 },
    /// Nothing the client asked for exists (416 with `Content-Range: bytes */size`).
    Unsatisfiable,
}

/// One range-spec of a `bytes` range set, before it meets the blob's size.
enum Spec {
    /// `first-last` or `first-`: `last` is `None` for "to the end", or when it overflows (every
    /// blob ends before it).
    From { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes (saturated on overflow: more bytes than any blob has).
    Suffix(u64),
    /// `first-` whose first position overflows: beyond the end of every blob.
    Beyond,
}

/// Decides a `Range` header against a blob of `size` bytes. The unit is case-insensitive.
/// Syntactically invalid headers, other units, and sets of several ranges that are not all
/// unsatisfiable are ignored (the whole blob), as RFC 9110 permits; positions too large for
/// `u64` are beyond every blob, never parse failures.
pub fn parse_range(header: &str, size: u64) -> ByteRange {
    let Some((unit, set)) = header.split_once('=') else { return ByteRange::Whole };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return ByteRange::Whole;
    }
    let Some(specs) = set.split(',').map(parse_spec).collect::<Option<Vec<Spec>>>() else { return ByteRange::Whole };
    let decided: Vec<ByteRange> = specs.iter().map(|spec| decide(spec, size)).collect();
    match decided.as_slice() {
        [one] => *one,
        many if many.iter().all(|r| *r == ByteRange::Unsatisfiable) => ByteRange::Unsatisfiable,
        // Several ranges would need multipart/byteranges; the whole blob is a valid answer.
        _ => ByteRange::Whole,
    }
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let (first, last) = spec.trim().split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => Some(Spec::Suffix(digits(last)?.unwrap_or(u64::MAX))),
        (false, true) => Some(digits(first)?.map_or(Spec::Beyond, |first| Spec::From { first, last: None })),
        (false, false) => {
            // A last position below the first makes the spec invalid (RFC 9110 §14.1.1).
            if numeric_order(first, last) == std::cmp::Ordering::Greater {
                return None;
            }
            let last = digits(last)?;
            Some(digits(first)?.map_or(Spec::Beyond, |first| Spec::From { first, last }))
        }
    }
}

/// ASCII digits only (no sign, no inner spaces): `Some(None)` when they overflow `u64`.
fn digits(s: &str) -> Option<Option<u64>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().ok())
}

/// Compares two runs of ASCII digits as numbers of any length.
fn numeric_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn decide(spec: &Spec, size: u64) -> ByteRange {
    match *spec {
        Spec::Beyond => ByteRange::Unsatisfiable,
        Spec::Suffix(0) => ByteRange::Unsatisfiable,
        // The only satisfiable range of an empty blob is a non-zero suffix: it is the empty blob.
        Spec::Suffix(_) if size == 0 => ByteRange::Whole,
        Spec::Suffix(n) => ByteRange::Part { start: size.saturating_sub(n), end: size - 1 },
        Spec::From { first, .. } if first >= size => ByteRange::Unsatisfiable,
        Spec::From { first, last } => {
            ByteRange::Part { start: first, end: last.map_or(size - 1, |last| last.min(size - 1)) }
        }
    }
}

/// Most bytes a multipart upload may send before its first boundary (the preamble, which
/// clients leave empty).
pub const MAX_MULTIPART_PREAMBLE: usize = 8 * 1024;
/// Most bytes of one part's header block (after the boundary line, before the blank line); a
/// `Content-Disposition` with a long file name and a `Content-Type` take a few hundred.
pub const MAX_MULTIPART_HEADERS: usize = 16 * 1024;

/// Why a multipart head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MultipartHeadError {
    #[error("multipart preamble exceeds {MAX_MULTIPART_PREAMBLE} bytes")]
    PreambleTooLong,
    #[error("multipart part headers exceed {MAX_MULTIPART_HEADERS} bytes")]
    HeadersTooLong,
}

/// Reads the start of a multipart body, chunk by chunk, until the first part's headers are
/// complete, and refuses a preamble or header block beyond its bound: both must be held whole
/// until their end arrives, so without the bounds a header that never ends would cost memory and
/// CPU without limit. The framing is multer's (first `--boundary` anywhere, transport padding,
/// CRLF, then headers up to a blank line); [`MultipartFile`] reads an upload's head with it.
#[derive(Debug)]
pub struct MultipartHead {
    /// `--` and the boundary.
    delimiter: Vec<u8>,
    /// The body so far, never more than the bounds need.
    seen: Vec<u8>,
    stage: HeadStage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadStage {
    /// Looking for the delimiter from this offset on.
    Preamble { scan_from: usize },
    /// The delimiter ended at `end`; transport padding is skipped up to `at`, the CRLF follows.
    Delimiter { end: usize, at: usize },
    /// The header block starts at `start`; looking for its blank line from `scan_from`.
    Headers { start: usize, scan_from: usize },
    /// The watch is over: how the head ended.
    Done(HeadEnd),
}

/// How a multipart head ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadEnd {
    /// The closing delimiter came first: the body has no parts.
    NoParts,
    /// Neither padding and CRLF nor `--` followed the first delimiter.
    Malformed,
    /// The first part's header block is `seen[start..end]`; its data starts at `end + 4`, after
    /// the blank line.
    Headers { start: usize, end: usize },
}

impl MultipartHead {
    pub fn new(boundary: &str) -> MultipartHead {
        let delimiter = [b"--", boundary.as_bytes()].concat();
        MultipartHead { delimiter, seen: Vec::new(), stage: HeadStage::Preamble { scan_from: 0 } }
    }

    /// Takes the next chunk of the body. `Ok(true)` once the head is complete: later chunks need
    /// no watching.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<bool, MultipartHeadError> {
        if let HeadStage::Done(_) = self.stage {
            return Ok(true);
        }
        // Enough to see every bound decided: the longest preamble, the delimiter, the longest
        // transport padding (bounded like a header block), CRLF, the longest header block and its
        // blank line. A smaller buffer would stop short of the blank line or of the header bound
        // after a long preamble and padding, and the watch would never end or refuse.
        let cap = MAX_MULTIPART_PREAMBLE + self.delimiter.len() + MAX_MULTIPART_HEADERS + 2 + MAX_MULTIPART_HEADERS + 4;
        let take = chunk.len().min(cap.saturating_sub(self.seen.len()));
        self.seen.extend_from_slice(&chunk[..take]);
        loop {
            let before = self.stage;
            self.stage = self.advance()?;
            if let HeadStage::Done(_) = self.stage {
                return Ok(true);
            }
            if self.stage == before {
                return Ok(false);
            }
        }
    }

    fn advance(&self) -> Result<HeadStage, MultipartHeadError> {
        let seen = &self.seen;
        Ok(match self.stage {
            HeadStage::Preamble { scan_from } => match find(&seen[scan_from..], &self.delimiter) {
                Some(i) if scan_from + i > MAX_MULTIPART_PREAMBLE => return Err(MultipartHeadError::PreambleTooLong),
                Some(i) => {
                    let end = scan_from + i + self.delimiter.len();
                    HeadStage::Delimiter { end, at: end }
                }
                None if seen.len() >= MAX_MULTIPART_PREAMBLE + self.delimiter.len() => {
                    return Err(MultipartHeadError::PreambleTooLong);
                }
                None => HeadStage::Preamble { scan_from: seen.len().saturating_sub(self.delimiter.len() - 1) },
            },
            HeadStage::Delimiter { end, at } => {
                if at == end && seen[end..].starts_with(b"--") {
                    return Ok(HeadStage::Done(HeadEnd::NoParts)); // the closing delimiter
                }
                let at = at + seen[at..].iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
                match seen.get(at..at + 2) {
                    Some(b"\r\n") => HeadStage::Headers { start: at + 2, scan_from: at + 2 },
                    Some(_) => HeadStage::Done(HeadEnd::Malformed),
                    None if at - end > MAX_MULTIPART_HEADERS => return Err(MultipartHeadError::HeadersTooLong),
                    // At most one byte past the padding: "--" or CRLF still to come.
                    None if at == end => self.stage,
                    None => HeadStage::Delimiter { end, at },
                }
            }
            HeadStage::Headers { start, scan_from } => match find(&seen[scan_from..], b"\r\n\r\n") {
                Some(j) if scan_from + j - start > MAX_MULTIPART_HEADERS => {
                    return Err(MultipartHeadError::HeadersTooLong);
                }
                Some(j) => HeadStage::Done(HeadEnd::Headers { start, end: scan_from + j }),
                None if seen.len() - start >= MAX_MULTIPART_HEADERS + 4 => {
                    return Err(MultipartHeadError::HeadersTooLong);
                }
                None => HeadStage::Headers { start, scan_from: seen.len().saturating_sub(3).max(start) },
            },
            HeadStage::Done(end) => HeadStage::Done(end),
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// Why a multipart upload was refused; the text is the client's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error(transparent)]
    Head(#[from] MultipartHeadError),
    #[error("file field is required")]
    NoParts,
    #[error("exactly one file field is required")]
    NotAFile,
    #[error("exactly one file field is required: nothing but the closing delimiter may follow the file part")]
    MoreParts,
    #[error("invalid multipart request")]
    Malformed,
    #[error("the multipart body ended before its closing delimiter")]
    Truncated,
}

/// The `boundary` of a `multipart/form-data` content type; `None` for any other type, or a
/// boundary that is empty, longer than RFC 2046's 70 characters or not printable ASCII.
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let value = disposition_param(params.as_bytes(), b"boundary")?;
    let printable = value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    (!value.is_empty() && value.len() <= 70 && printable).then_some(value)
}

/// Parses an upload's `multipart/form-data` body as it streams, without I/O: exactly one part, a
/// field named `file` with a file name, then the closing delimiter. The file's bytes come out as
/// slices of the chunks fed in, never copied, except the few at a chunk's end that might begin
/// the delimiter (held back until the next chunk says), so parsing costs one search per chunk
/// and memory stays bounded by the head's bounds and the delimiter's length.
pub struct MultipartFile {
    stage: FileStage,
    /// CRLF, `--` and the boundary: what ends the file's bytes.
    delimiter: Vec<u8>,
    finder: memchr::memmem::Finder<'static>,
    /// Bytes fed so far, where the next chunk starts in the body (the head's offsets are from
    /// the body's start).
    fed: usize,
}

enum FileStage {
    Head(MultipartHead),
    /// In the file's bytes. `held` are the last bytes fed, fewer than the delimiter's length,
    /// which begin the delimiter as far as they go: not yet known to be the file's.
    Data {
        held: Vec<u8>,
    },
    /// The delimiter has ended the file's bytes; `dashes` of the `--` that must close the body
    /// have followed.
    Delimited {
        dashes: usize,
    },
    /// The closing delimiter has been read; whatever follows is the epilogue, ignored.
    Complete,
}

/// The file's bytes one chunk completed, in order: at most the held-back bytes and a slice.
#[derive(Debug, Default)]
pub struct FileBytes([Option<Bytes>; 2]);

impl FileBytes {
    fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        let free = self.0.iter_mut().find(|piece| piece.is_none());
        debug_assert!(free.is_some(), "a chunk completes at most two pieces");
        if let Some(free) = free {
            *free = Some(bytes);
        }
    }
}

impl Iterator for FileBytes {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        self.0.iter_mut().find_map(Option::take)
    }
}

impl MultipartFile {
    pub fn new(boundary: &str) -> MultipartFile {
        let delimiter = [b"\r\n--", boundary.as_bytes()].concat();
        MultipartFile {
            stage: FileStage::Head(MultipartHead::new(boundary)),
            finder: memchr::memmem::Finder::new(&delimiter).into_owned(),
            delimiter,
            fed: 0,
        }
    }

    /// Takes the next chunk of the body; the file's bytes it completed.
    pub fn feed(&mut self, chunk: Bytes) -> Result<FileBytes, MultipartError> {
        let mut out = FileBytes::default();
        let at = self.fed;
        self.fed += chunk.len();
        match std::mem::replace(&mut self.stage, FileStage::Complete) {
            FileStage::Head(mut head) => {
                if !head.feed(&chunk)? {
                    self.stage = FileStage::Head(head);
                    return Ok(out);
                }
                let HeadStage::Done(end) = head.stage else { return Err(MultipartError::Malformed) };
                let (start, end) = match end {
                    HeadEnd::NoParts => return Err(MultipartError::NoParts),
                    HeadEnd::Malformed => return Err(MultipartError::Malformed),
                    HeadEnd::Headers { start, end } => (start, end),
                };
                check_file_part(&head.seen[start..end])?;
                // The blank line ended in this chunk, so the data starts in it (or right after).
                self.data(Vec::new(), chunk.slice(end + 4 - at..), &mut out)?;
            }
            FileStage::Data { held } => self.data(held, chunk, &mut out)?,
            FileStage::Delimited { dashes } => self.delimited(dashes, &chunk)?,
            FileStage::Complete => {}
        }
        Ok(out)
    }

    /// Whether the part's headers were accepted: the file's bytes are coming.
    pub fn in_file(&self) -> bool {
        !matches!(self.stage, FileStage::Head(_))
    }

    /// Whether the closing delimiter has been read, so the file's bytes are all out.
    pub fn is_complete(&self) -> bool {
        matches!(self.stage, FileStage::Complete)
    }

    /// Why the body is refused when it ends before [`MultipartFile::is_complete`].
    pub fn ended_early(&self) -> MultipartError {
        match self.stage {
            FileStage::Head(_) => MultipartError::Malformed,
            FileStage::Data { .. } | FileStage::Delimited { .. } | FileStage::Complete => MultipartError::Truncated,
        }
    }

    /// File bytes: `held` (from the chunk before) followed by `chunk`.
    fn data(&mut self, mut held: Vec<u8>, chunk: Bytes, out: &mut FileBytes) -> Result<(), MultipartError> {
        let n = self.delimiter.len();
        if !held.is_empty() {
            if chunk.len() < n - 1 {
                // Too short to settle what is held: it is all held (fewer than 2n bytes).
                held.extend_from_slice(&chunk);
                return self.scan(Bytes::from(held), out);
            }
            // A delimiter that starts in `held` ends in the window.
            let mut window = held.clone();
            window.extend_from_slice(&chunk[..n - 1]);
            if let Some(p) = self.finder.find(&window) {
                out.push(Bytes::copy_from_slice(&window[..p]));
                return self.delimited(0, &chunk[p + n - held.len()..]);
            }
            out.push(Bytes::from(held));
        }
        self.scan(chunk, out)
    }

    /// File bytes with nothing held before them.
    fn scan(&mut self, bytes: Bytes, out: &mut FileBytes) -> Result<(), MultipartError> {
        if let Some(p) = self.finder.find(&bytes) {
            out.push(bytes.slice(..p));
            return self.delimited(0, &bytes[p + self.delimiter.len()..]);
        }
        let keep = self.delimiter_start_at_end(&bytes);
        let file_len = bytes.len() - keep;
        self.stage = FileStage::Data { held: bytes[file_len..].to_vec() };
        out.push(bytes.slice(..file_len));
        Ok(())
    }

    /// How many bytes at the end of `bytes` are the start of the delimiter (the longest such).
    fn delimiter_start_at_end(&self, bytes: &[u8]) -> usize {
        let from = bytes.len().saturating_sub(self.delimiter.len() - 1);
        let tail = &bytes[from..];
        // The delimiter starts with CR, so only a CR can start a candidate.
        memchr::memchr_iter(b'\r', tail).find(|&i| self.delimiter.starts_with(&tail[i..])).map_or(0, |i| tail.len() - i)
    }

    /// After the delimiter: `--` closes the body; anything else starts another part.
    fn delimited(&mut self, mut dashes: usize, bytes: &[u8]) -> Result<(), MultipartError> {
        for &b in bytes.iter().take(2 - dashes) {
            if b != b'-' {
                return Err(MultipartError::MoreParts);
            }
            dashes += 1;
        }
        self.stage = if dashes == 2 { FileStage::Complete } else { FileStage::Delimited { dashes } };
        Ok(())
    }
}

/// Checks a part's header block (CRLF-separated `Name: value` lines): it must be a field named
/// `file` with a non-empty file name, as the Verstak clients send.
fn check_file_part(block: &[u8]) -> Result<(), MultipartError> {
    let mut disposition = None;
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else { return Err(MultipartError::Malformed) };
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
            return Err(MultipartError::Malformed);
        }
        if name.eq_ignore_ascii_case(b"content-disposition") {
            disposition = Some(&line[colon + 1..]);
        }
    }
    let disposition = disposition.ok_or(MultipartError::NotAFile)?;
    let is_file = disposition_param(disposition, b"name").as_deref() == Some("file")
        && disposition_param(disposition, b"filename").is_some_and(|name| !name.is_empty());
    if is_file { Ok(()) } else { Err(MultipartError::NotAFile) }
}

/// The value of parameter `key` (case-insensitive) in a header value of `; key=value`
/// parameters: a quoted string (backslash escapes a character) or, as older clients send, a bare
/// token up to `;` or whitespace. `None` when absent or not UTF-8.
fn disposition_param(value: &[u8], key: &[u8]) -> Option<String> {
    let trim = |s: &[u8]| -> usize { s.iter().take_while(|b| b.is_ascii_whitespace()).count() };
    let mut at = 0;
    while at + key.len() <= value.len() {
        let found = value[at..].windows(key.len()).position(|w| w.eq_ignore_ascii_case(key))? + at;
        at = found + key.len();
        // A parameter's name starts after `;` or whitespace (so `name` is not `filename`'s end).
        if found > 0 && !(value[found - 1] == b';' || value[found - 1].is_ascii_whitespace()) {
            continue;
        }
        let rest = &value[at..];
        let rest = &rest[trim(rest)..];
        let Some(rest) = rest.strip_prefix(b"=") else { continue };
        let rest = &rest[trim(rest)..];
        let raw = match rest.strip_prefix(b"\"") {
            Some(quoted) => {
                let mut raw = Vec::new();
                let mut bytes = quoted.iter();
                loop {
                    match bytes.next()? {
                        b'"' => break,
                        b'\\' => raw.push(*bytes.next()?),
                        &b => raw.push(b),
                    }
                }
                raw
            }
            None => rest.iter().take_while(|&&b| b != b';' && !b.is_ascii_whitespace()).copied().collect(),
        };
        return String::from_utf8(raw).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_accepts_only_canonical_hashes() {
        let upper = EMPTY.to_uppercase();
        let cases: [(&str, bool); 6] = [
            (EMPTY, true),
            (&upper, false),
            (&EMPTY[1..], false),
            ("", false),
            ("../../../../etc/passwd/0000000000000000000000000000000000000000000", false),
            ("g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", false),
        ];
        for (input, ok) in cases {
            assert_eq!(BlobHash::parse(input).is_ok(), ok, "input {input:?}");
        }
    }

    #[test]
    fn relative_path_fans_out_by_prefix() {
        let h = BlobHash::parse(EMPTY).unwrap();
        assert_eq!(h.relative_path(), ["e3", "b0", EMPTY]);
    }

    #[test]
    fn hasher_matches_sha256_in_any_chunking() {
        let (empty, size) = BlobHasher::new().finish();
        assert_eq!((empty.as_str(), size), (EMPTY, 0));

        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut whole = BlobHasher::new();
        whole.update(&data);
        let mut pieces = BlobHasher::new();
        for chunk in data.chunks(777) {
            pieces.update(chunk);
        }
        assert_eq!(pieces.size(), 10_000);
        assert_eq!(whole.finish(), pieces.finish());
    }

    #[test]
    fn quota_counts_vault_and_user() {
        let q = BlobQuota { per_vault: 100, per_user: 150 };
        for (vault, user, size, ok) in
            [(0, 0, 100, true), (0, 0, 101, false), (50, 140, 10, true), (50, 141, 10, false), (0, 0, u64::MAX, false)]
        {
            assert_eq!(q.admits(vault, user, size), ok, "vault {vault} user {user} size {size}");
        }
    }
    #[test]
    fn ranges() {
        use ByteRange::*;
        fn check(header: &str, size: u64, expected: ByteRange) {
            assert_eq!(parse_range(header, size), expected, "{header:?} of {size}");
        }
        let huge = "99999999999999999999"; // 20 digits, above u64::MAX
        let cases: &[(&str, u64, ByteRange)] = &[
            ("bytes=0-9", 100, Part { start: 0, end: 9 }),
            ("bytes=90-200", 100, Part { start: 90, end: 99 }),
            ("bytes=50-", 100, Part { start: 50, end: 99 }),
            ("bytes=99-99", 100, Part { start: 99, end: 99 }),
            ("bytes=-10", 100, Part { start: 90, end: 99 }),
            ("bytes=-500", 100, Part { start: 0, end: 99 }),
            ("bytes=-0", 100, Unsatisfiable),
            ("bytes=100-", 100, Unsatisfiable),
            ("bytes=100-200", 100, Unsatisfiable),
            ("bytes=0-0", 0, Unsatisfiable),
            ("bytes=-1", 0, Whole),
            // The unit is case-insensitive; whitespace around the parts is tolerated.
            ("BYTES=0-1", 100, Part { start: 0, end: 1 }),
            ("Bytes=0-1", 100, Part { start: 0, end: 1 }),
            (" bytes = 2 - 3 ", 100, Part { start: 2, end: 3 }),
            ("bytes=\t4-5\t", 100, Part { start: 4, end: 5 }),
            // Overflowing positions are beyond every blob, or the end of it.
            ("bytes=99999999999999999999-", 100, Unsatisfiable),
            ("bytes=18446744073709551615-", 100, Unsatisfiable),
            ("bytes=18446744073709551616-", 100, Unsatisfiable),
            ("bytes=0-99999999999999999999", 100, Part { start: 0, end: 99 }),
            ("bytes=-99999999999999999999", 100, Part { start: 0, end: 99 }),
            ("bytes=99999999999999999999-99999999999999999999", 100, Unsatisfiable),
            ("bytes=99999999999999999999-5", 100, Whole),
            ("bytes=99999999999999999999-100000000000000000000", 100, Unsatisfiable),
            ("bytes=100000000000000000000-99999999999999999999", 100, Whole),
            ("bytes=007-0010", 100, Part { start: 7, end: 10 }),
            ("bytes=10-010", 100, Part { start: 10, end: 10 }),
            // Invalid specs: the header is ignored.
            ("bytes=5-2", 100, Whole),
            ("bytes=x-1", 100, Whole),
            ("bytes=+1-2", 100, Whole),
            ("bytes=1-+2", 100, Whole),
            ("bytes=-+2", 100, Whole),
            ("bytes=1 0-20", 100, Whole),
            ("bytes=-", 100, Whole),
            ("bytes=", 100, Whole),
            ("bytes", 100, Whole),
            ("bytes=0-1-2", 100, Whole),
            ("items=0-1", 100, Whole),
            ("bytes0-1", 100, Whole),
            ("", 100, Whole),
            // Several ranges: the whole blob, unless none of them can be satisfied.
            ("bytes=0-1,5-6", 100, Whole),
            ("bytes=0-1, 5-", 100, Whole),
            ("bytes=200-300,400-", 100, Unsatisfiable),
            ("bytes=200-300,-0", 100, Unsatisfiable),
            ("bytes=0-1,x", 100, Whole),
            ("bytes=0-1,", 100, Whole),
        ];
        for &(header, size, expected) in cases {
            check(header, size, expected);
        }
        check(&format!("bytes={huge}-"), u64::MAX, Unsatisfiable);
        check("bytes=18446744073709551614-", u64::MAX, Part { start: u64::MAX - 1, end: u64::MAX - 1 });
    }
    /// Feeds `body` cut at `cuts` into a [`MultipartFile`]: the file's bytes, or why it was
    /// refused (also when the body ends before completing), and how many bytes were copied
    /// rather than sliced from the chunks.
    fn parse_file(body: &[u8], cuts: &[usize]) -> (Result<Vec<u8>, MultipartError>, usize) {
        let mut parser = MultipartFile::new("b0undary");
        let (mut file, mut copied, mut from) = (Vec::new(), 0, 0);
        for &to in cuts.iter().chain([&body.len()]) {
            let chunk = Bytes::copy_from_slice(&body[from..to]);
            from = to;
            let pieces = match parser.feed(chunk.clone()) {
                Ok(pieces) => pieces,
                Err(err) => return (Err(err), copied),
            };
            for piece in pieces {
                let inside = chunk.as_ptr_range();
                if !(inside.contains(&piece.as_ptr()) || piece.as_ptr() == inside.end) {
                    copied += piece.len();
                }
                file.extend_from_slice(&piece);
            }
            if parser.is_complete() {
                return (Ok(file), copied);
            }
        }
        (Err(parser.ended_early()), copied)
    }

    #[test]
    fn multipart_files() {
        use MultipartError::*;
        let head = "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n";
        let body = |data: &[u8]| [head.as_bytes(), data, b"\r\n--b0undary--\r\n"].concat();
        // Files that hold every prefix of the delimiter, at their start, middle and end.
        let delimiter = b"\r\n--b0undary";
        let mut files: Vec<Vec<u8>> = vec![Vec::new(), b"x".to_vec(), (0..=255).collect()];
        for k in 1..delimiter.len() {
            let part = &delimiter[..k];
            files.push(part.to_vec());
            files.push([b"abc", part, b"def"].concat());
            files.push([b"abc", part].concat());
            files.push([part, part, b"\r\n--b0undar"].concat());
        }
        for file in &files {
            let body = body(file);
            // Every single cut, and chunks of several sizes around the delimiter's length.
            let mut cuttings: Vec<Vec<usize>> = (1..body.len()).map(|cut| vec![cut]).collect();
            for size in [1, 2, 3, 11, 12, 13, 64] {
                cuttings.push((size..body.len()).step_by(size).collect());
            }
            for cuts in cuttings {
                assert_eq!(parse_file(&body, &cuts).0.as_ref(), Ok(file), "{file:?} cut at {cuts:?}");
                // Cut off at any point before the closing `--`, the body is refused.
                let short = &body[..*cuts.last().unwrap_or(&0)];
                if short.len() < body.len() - 4 {
                    let refused = parse_file(short, &cuts[..cuts.len() - 1]).0;
                    let expected = if short.len() < head.len() { Malformed } else { Truncated };
                    assert_eq!(refused, Err(expected), "{file:?} cut off after {}", short.len());
                }
            }
        }
        // Large chunks are sliced, not copied: only bytes held back at a chunk's end are.
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 13) as u8 + b'\n').collect();
        let cuts: Vec<usize> = (4096..big.len()).step_by(4096).collect();
        let (parsed, copied) = parse_file(&body(&big), &cuts);
        assert!(parsed.is_ok_and(|file| file == big));
        assert!(copied <= cuts.len() * 2 * delimiter.len(), "{copied} bytes copied");
        // The epilogue is ignored, whatever it holds.
        let with_epilogue = [body(b"data"), b"--b0undary\r\nmore".to_vec()].concat();
        assert_eq!(parse_file(&with_epilogue, &[]).0, Ok(b"data".to_vec()));

        let part = |headers: &str, rest: &str| format!("--b0undary\r\n{headers}\r\n\r\ndata{rest}");
        let disposition = "Content-Disposition: form-data; name=\"file\"; filename=\"a\"";
        let cases: Vec<(String, Result<&[u8], MultipartError>)> = vec![
            (part(disposition, "\r\n--b0undary--"), Ok(b"data")),
            (part("content-disposition: form-data; name=file; filename=x.bin", "\r\n--b0undary--"), Ok(b"data")),
            (
                part("X-A: 1\r\nContent-Disposition: form-data;name=\"file\";filename=\"q\\\"\"", "\r\n--b0undary--"),
                Ok(b"data"),
            ),
            (format!("preamble\r\n{}", part(disposition, "\r\n--b0undary--")), Ok(b"data")),
            (part("Content-Disposition: form-data; name=\"upload\"; filename=\"a\"", ""), Err(NotAFile)),
            (part("Content-Disposition: form-data; name=\"file\"", ""), Err(NotAFile)),
            (part("Content-Disposition: form-data; name=\"file\"; filename=\"\"", ""), Err(NotAFile)),
            (part("Content-Disposition: form-data; filename=\"a\"", ""), Err(NotAFile)),
            (part("Content-Type: text/plain", ""), Err(NotAFile)),
            (part("not a header", ""), Err(Malformed)),
            (part(disposition, "\r\n--b0undary\r\nContent-Disposition: form-data"), Err(MoreParts)),
            (part(disposition, "\r\n--b0undary-x"), Err(MoreParts)),
            (part(disposition, "\r\n--b0undary"), Err(Truncated)),
            (part(disposition, "\r\n--b0undary-"), Err(Truncated)),
            (part(disposition, "\r\n--b0undar"), Err(Truncated)),
            ("--b0undary--\r\n".to_owned(), Err(NoParts)),
            ("--b0undaryX\r\n".to_owned(), Err(Malformed)),
            ("".to_owned(), Err(Malformed)),
        ];
        for (body, expected) in cases {
            let got = parse_file(body.as_bytes(), &[]).0;
            assert_eq!(got, expected.map(<[u8]>::to_vec), "{body:?}");
        }
        let long = format!("--b0undary\r\nX: {}\r\n\r\n", "x".repeat(MAX_MULTIPART_HEADERS));
        assert_eq!(parse_file(long.as_bytes(), &[]).0, Err(Head(MultipartHeadError::HeadersTooLong)));
    }

    #[test]
    fn multipart_boundaries() {
        let check = |content_type: &str, expected: Option<&str>| {
            assert_eq!(multipart_boundary(content_type).as_deref(), expected, "{content_type:?}");
        };
        check("multipart/form-data; boundary=abc", Some("abc"));
        check("Multipart/Form-Data;boundary=\"a b\"", Some("a b"));
        check("multipart/form-data; charset=utf-8; Boundary=x-1", Some("x-1"));
        check("multipart/form-data; boundary=", None);
        check(&format!("multipart/form-data; boundary={}", "b".repeat(71)), None);
        check("multipart/form-data", None);
        check("multipart/mixed; boundary=abc", None);
        check("text/plain; boundary=abc", None);
    }

    #[test]
    fn multipart_heads() {
        use MultipartHeadError::*;
        /// Feeds `body` in chunks of `chunk` bytes; the verdict and how many bytes it took.
        fn run(body: &[u8], chunk: usize) -> (Result<bool, MultipartHeadError>, usize) {
            let mut head = MultipartHead::new("b0undary");
            let mut fed = 0;
            for piece in body.chunks(chunk) {
                fed += piece.len();
                match head.feed(piece) {
                    Ok(false) => {}
                    verdict => return (verdict, fed),
                }
            }
            (Ok(false), fed)
        }
        fn check(body: &[u8], expected: Result<bool, MultipartHeadError>) {
            for chunk in [1, 7, 4096, body.len().max(1)] {
                assert_eq!(run(body, chunk).0, expected, "{:?}… in chunks of {chunk}", &body[..body.len().min(60)]);
            }
        }
        let part = |headers: &str| format!("--b0undary\r\n{headers}\r\n\r\ndata\r\n--b0undary--\r\n");
        let long = |n: usize| "x".repeat(n);
        let disposition = "Content-Disposition: form-data; name=\"file\"; filename=\"a\"";
        check(part(disposition).as_bytes(), Ok(true));
        check(format!("preamble\r\n{}", part(disposition)).as_bytes(), Ok(true));
        check(format!("--b0undary \t\r\n{disposition}\r\n\r\n").as_bytes(), Ok(true));
        check(b"--b0undary--\r\n", Ok(true));
        check(b"--b0undaryX\r\n", Ok(true));
        check(format!("{}{}", long(MAX_MULTIPART_PREAMBLE), part(disposition)).as_bytes(), Ok(true));
        check(format!("{}{}", long(MAX_MULTIPART_PREAMBLE + 1), part(disposition)).as_bytes(), Err(PreambleTooLong));
        let header_of = |n: usize| format!("X: {}", long(n - 3));
        check(part(&header_of(MAX_MULTIPART_HEADERS)).as_bytes(), Ok(true));
        check(part(&header_of(MAX_MULTIPART_HEADERS + 1)).as_bytes(), Err(HeadersTooLong));
        // Padding that never ends counts as header bytes.
        check(format!("--b0undary{}", " ".repeat(MAX_MULTIPART_HEADERS + 10)).as_bytes(), Err(HeadersTooLong));
        // A blank line right after the delimiter line is not the end of the headers for the
        // parser either (it reads headers from after that CRLF).
        check(format!("--b0undary\r\n\r\n{}", long(MAX_MULTIPART_HEADERS + 10)).as_bytes(), Err(HeadersTooLong));
        // After the longest preamble and some transport padding, the header bound still holds
        // and a head within the bounds still completes (found by the fuzz target multipart_head:
        // the watcher's buffer ended before either, so it watched forever and bounded nothing).
        let padded =
            |headers: &str| format!("{}--b0undary{}\r\n{headers}", long(MAX_MULTIPART_PREAMBLE), " ".repeat(64));
        check(padded(&format!("{}\r\n\r\n", header_of(MAX_MULTIPART_HEADERS))).as_bytes(), Ok(true));
        check(padded(&long(MAX_MULTIPART_HEADERS + 10)).as_bytes(), Err(HeadersTooLong));
        let endless = padded(&long(10 << 20));
        assert_eq!(run(endless.as_bytes(), 64 * 1024), (Err(HeadersTooLong), 64 * 1024));
        // Not finished yet: more is needed, nothing is refused.
        check(b"--b0undary\r\nContent-Disposition: form", Ok(false));
        check(b"pre", Ok(false));
        // A header that never ends is refused after its bound, not after the whole body.
        let endless = format!("--b0undary\r\nX: {}", long(10 << 20));
        assert_eq!(run(endless.as_bytes(), 64 * 1024), (Err(HeadersTooLong), 64 * 1024));
        let endless = long(10 << 20);
        assert_eq!(run(endless.as_bytes(), 64 * 1024), (Err(PreambleTooLong), 64 * 1024));
    }
}
