//! Password rules (8–256 bytes) and Argon2id hashing; hashing is CPU-bound, so callers run it off
//! the async runtime.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
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

/// Hashes with Argon2id and a fresh random salt, returning the PHC string that is stored.
pub fn hash(password: &Password) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_str().as_bytes(), &salt)
        .expect("default Argon2id parameters accept any password within MAX_LEN")
        .to_string()
}

/// Checks `candidate` against a stored PHC string. When there is none (unknown user, or a user who
/// never set a password) it verifies against a dummy hash instead, so the answer takes as long as a
/// real check and timing reveals nothing about which accounts exist.
pub fn verify(candidate: &str, stored: Option<&str>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash(&Password("dummy password never matched".to_owned())));
    let (phc, real) = match stored {
        Some(phc) => (phc, true),
        None => (dummy.as_str(), false),
    };
    // Over-long candidates never match a stored hash (the policy refused them) and would only cost CPU.
    let candidate = if candidate.len() > MAX_LEN { "" } else { candidate };
    let matches = PasswordHash::new(phc)
        .map(|parsed| Argon2::default().verify_password(candidate.as_bytes(), &parsed).is_ok())
        .unwrap_or(false);
    matches && real
}

#[cfg(test)]
mod tests {
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
        let pw = Password::parse("correct horse".to_owned()).unwrap();
        let phc = hash(&pw);
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("correct horse"));
        assert!(verify("correct horse", Some(&phc)));
        assert!(!verify("correct horsf", Some(&phc)));
        assert!(!verify("correct horse", None));
        assert!(!verify("correct horse", Some("not a phc string")));
        assert_ne!(hash(&pw), phc, "salts are random");
        assert!(!format!("{pw:?}").contains("horse"));
    }
}
