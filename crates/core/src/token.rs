//! Bearer tokens: generation, their two wire encodings, and the SHA-256 hash that is all we store.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// How a token is spelled on the wire. Both carry 32 random bytes; the clients differ only in
/// encoding (Diaryx uses base64url without padding, Verstak 64 lowercase hex characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFormat {
    Base64Url,
    Hex,
}

/// A freshly minted bearer token. The plaintext is handed to the client once and never stored:
/// only [`TokenHash`] reaches the database, so a leaked database file grants no access.
pub struct NewToken {
    pub plaintext: String,
    pub hash: TokenHash,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken").field("plaintext", &"[redacted]").field("hash", &self.hash).finish()
    }
}

impl NewToken {
    pub fn generate(format: TokenFormat) -> NewToken {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let plaintext = match format {
            TokenFormat::Hex => hex::encode(bytes),
            TokenFormat::Base64Url => base64url_nopad(&bytes),
        };
        let hash = TokenHash::of(&plaintext);
        NewToken { plaintext, hash }
    }
}

/// SHA-256 of a token's wire spelling. Lookups go by this hash through a unique index, so the
/// comparison never touches the secret itself and takes no secret-dependent time.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> TokenHash {
        TokenHash(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for TokenHash {
    // Only a prefix: enough to correlate log lines, useless to an attacker.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenHash({}…)", hex::encode(&self.0[..4]))
    }
}

/// Compares two secrets in time independent of where they first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn base64url_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_the_clients() {
        let hex = NewToken::generate(TokenFormat::Hex).plaintext;
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));

        let b64 = NewToken::generate(TokenFormat::Base64Url).plaintext;
        assert_eq!(b64.len(), 43);
        assert!(b64.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        for (input, expected) in
            [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("\u{ff}\u{fe}", "w7_Dvg")]
        {
            assert_eq!(base64url_nopad(input.as_bytes()), expected, "input {input:?}");
        }
    }

    #[test]
    fn hash_is_sha256_of_the_wire_spelling() {
        let t = NewToken::generate(TokenFormat::Hex);
        assert_eq!(t.hash, TokenHash::of(&t.plaintext));
        assert_ne!(t.hash, TokenHash::of("something else"));
        assert!(!format!("{t:?}").contains(&t.plaintext));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
