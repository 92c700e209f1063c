//! Password rules (8–256 bytes) and Argon2id hashing; hashing is CPU-bound, so callers run it off
//! the async runtime.

use std::sync::OnceLock;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;

/// Shorter passwords fall to offline guessing too fast; the Verstak server used the same bound.
pub const MIN_LEN: usize = 8;
/// Argon2 accepts more, but an unbounded input lets one request burn CPU on hashing megabytes.
pub const MAX_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least 8 bytes")]
    TooShort,
    #[error("password must be at most 256 bytes")]
    TooLong,
}

impl PasswordError {
    /// The machine-readable code the Verstak clients know.
    pub fn code(self) -> &'static str {
        match self {
            PasswordError::TooShort => "PASSWORD_TOO_SHORT",
            PasswordError::TooLong => "PASSWORD_TOO_LONG",
        }
    }
}

/// A password that satisfies the policy. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    /// Lengths are counted in bytes, as the reference does; the content is not otherwise
    /// restricted (spaces and any Unicode are fine).
    pub fn parse(raw: String) -> Result<Password, PasswordError> {
        match raw.len() {
            n if n < MIN_LEN => Err(PasswordError::TooShort),
            n if n > MAX_LEN => Err(PasswordError::TooLong),
            _ => Ok(Password(raw)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Working memory for one Argon2 run at the policy's cost (19 MiB). Argon2 otherwise allocates
/// and frees this much on every run, and the allocator keeps much of what was freed (a burst of
/// 200 checks left 750 MB resident with only four running at a time); callers keep one per
/// hashing slot and reuse it, so memory stays flat at slots × 19 MiB.
pub struct HashMemory(Vec<Block>);

impl Default for HashMemory {
    fn default() -> HashMemory {
        HashMemory(vec![Block::new(); Params::default().block_count()])
    }
}

impl HashMemory {
    /// The first `count` blocks, growing (for good) only for a stored hash of a higher memory cost
    /// than the policy's, which this server never makes.
    fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.0.len() < count {
            self.0.resize(count, Block::new());
        }
        &mut self.0[..count]
    }
}

/// Hashes with Argon2id and a fresh random salt, returning the PHC string that is stored.
pub fn hash(password: &Password, memory: &mut HashMemory) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let argon2 = Argon2::default();
    let params = argon2.params();
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(
            password.as_str().as_bytes(),
            &salt,
            &mut output,
            memory.blocks(params.block_count()),
        )
        .expect("default Argon2id parameters accept any password within MAX_LEN");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).expect("default parameters have a PHC spelling"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).expect("32 bytes is a valid output length")),
    }
    .to_string()
}

/// Checks `candidate` against a stored PHC string. When there is none (unknown user, or a user who
/// never set a password) it verifies against a dummy hash instead, so the answer takes as long as a
/// real check and timing reveals nothing about which accounts exist.
pub fn verify(candidate: &str, stored: Option<&str>, memory: &mut HashMemory) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash(&Password("dummy password never matched".to_owned()), memory));
    let (phc, real) = match stored {
        Some(phc) => (phc, true),
        None => (dummy.as_str(), false),
    };
    // Over-long candidates never match a stored hash (the policy refused them) and would only cost CPU.
    let candidate = if candidate.len() > MAX_LEN { "" } else { candidate };
    matches(candidate.as_bytes(), phc, memory).unwrap_or(false) && real
}

/// Recomputes the hash of `candidate` with the parameters and salt of `phc` in `memory` and
/// compares in constant time; `None` if `phc` is not an Argon2 PHC string.
fn matches(candidate: &[u8], phc: &str, memory: &mut HashMemory) -> Option<bool> {
    let parsed = PasswordHash::new(phc).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = parsed.version.map(Version::try_from).transpose().ok()?.unwrap_or_default();
    let params = Params::try_from(&parsed).ok()?;
    let expected = parsed.hash?;
    let mut salt = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
    let mut output = [0u8; 64];
    let output = output.get_mut(..expected.len())?;
    let blocks = memory.blocks(params.block_count());
    Argon2::new(algorithm, version, params).hash_password_into_with_memory(candidate, salt, output, blocks).ok()?;
    Some(crate::token::constant_time_eq(output, expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher, PasswordVerifier};

    use super::*;

    fn check(len: usize, expected: Result<(), PasswordError>) {
        assert_eq!(Password::parse("x".repeat(len)).map(|_| ()), expected, "length {len}");
    }

    #[test]
    fn policy_bounds_are_in_bytes() {
        check(0, Err(PasswordError::TooShort));
        check(7, Err(PasswordError::TooShort));
        check(8, Ok(()));
        check(256, Ok(()));
        check(257, Err(PasswordError::TooLong));
        // Four 2-byte characters are eight bytes.
        assert!(Password::parse("éééé".to_owned()).is_ok());
        assert_eq!(PasswordError::TooShort.code(), "PASSWORD_TOO_SHORT");
        assert_eq!(PasswordError::TooLong.code(), "PASSWORD_TOO_LONG");
    }

    #[test]
    fn hash_verifies_only_the_right_password() {
        let memory = &mut HashMemory::default();
        let pw = Password::parse("correct horse".to_owned()).unwrap();
        let phc = hash(&pw, memory);
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(verify("correct horse", Some(&phc), memory));
        assert!(!verify("correct horsf", Some(&phc), memory));
        assert!(!verify("correct horse", None, memory));
        assert!(!verify("correct horse", Some("not a phc string"), memory));
        assert_ne!(hash(&pw, memory), phc, "salts are random");
        assert!(!format!("{pw:?}").contains("horse"));
    }

    /// Hashes stored before memory was reused came from the argon2 crate's own hasher, and
    /// hashes of other costs must verify too; the crate's own verifier agrees with ours.
    #[test]
    fn hashes_interoperate_with_the_argon2_crate() {
        let memory = &mut HashMemory::default();
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let cheap = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(64, 1, 1, None).unwrap());
        for argon2 in [Argon2::default(), cheap] {
            let theirs = argon2.hash_password(b"old password", &salt).unwrap().to_string();
            assert!(verify("old password", Some(&theirs), memory), "{theirs}");
            assert!(!verify("new password", Some(&theirs), memory), "{theirs}");
        }
        let ours = hash(&Password::parse("mine mine".to_owned()).unwrap(), memory);
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"mine mine", &parsed).is_ok());
    }
}
