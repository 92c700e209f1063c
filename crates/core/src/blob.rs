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
}
