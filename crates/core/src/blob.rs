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
}
