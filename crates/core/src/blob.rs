//! Content-addressed blobs: the SHA-256 name, its on-disk layout, streaming hashing and quotas.

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

/// Watches the start of a multipart body, chunk by chunk, until the first part's headers are
/// complete, and refuses a preamble or header block beyond its bound. The multipart parser
/// buffers both until their end arrives, so without this a header that never ends costs memory
/// and CPU without limit. It follows the parser's own framing (first `--boundary` anywhere,
/// transport padding, CRLF, then headers up to a blank line), so it never ends its watch
/// before the parser has left the headers.
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
    /// The first part's headers are complete (or the parser will refuse the body by itself).
    Done,
}

impl MultipartHead {
    pub fn new(boundary: &str) -> MultipartHead {
        let delimiter = [b"--", boundary.as_bytes()].concat();
        MultipartHead { delimiter, seen: Vec::new(), stage: HeadStage::Preamble { scan_from: 0 } }
    }

    /// Takes the next chunk of the body. `Ok(true)` once the head is complete: later chunks need
    /// no watching.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<bool, MultipartHeadError> {
        if self.stage == HeadStage::Done {
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
            if self.stage == HeadStage::Done {
                self.seen = Vec::new();
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
                    return Ok(HeadStage::Done); // the closing delimiter: no parts at all
                }
                let at = at + seen[at..].iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
                match seen.get(at..at + 2) {
                    Some(b"\r\n") => HeadStage::Headers { start: at + 2, scan_from: at + 2 },
                    // Anything else after the delimiter is refused by the parser itself.
                    Some(_) => HeadStage::Done,
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
                Some(_) => HeadStage::Done,
                None if seen.len() - start >= MAX_MULTIPART_HEADERS + 4 => {
                    return Err(MultipartHeadError::HeadersTooLong);
                }
                None => HeadStage::Headers { start, scan_from: seen.len().saturating_sub(3).max(start) },
            },
            HeadStage::Done => HeadStage::Done,
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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
