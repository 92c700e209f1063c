//! Six-digit sign-in codes: generation, parsing, and the keyed hash that is stored instead.

use rand::{Rng, RngCore};

use crate::email::Email;
use crate::hmac::hmac_sha256;
use crate::token::TokenHash;

/// How many wrong codes an address may submit before its outstanding codes stop working. With a
/// million possible codes, five guesses give an attacker a 1 in 200,000 chance per issued mail.
pub const MAX_WRONG_ATTEMPTS: i64 = 5;

/// A code as mailed and typed: exactly six ASCII digits.
#[derive(Clone, PartialEq, Eq)]
pub struct SignInCode(String);

impl std::fmt::Debug for SignInCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignInCode([redacted])")
    }
}

impl SignInCode {
    pub fn generate() -> SignInCode {
        SignInCode(format!("{:06}", rand::rng().random_range(0..1_000_000u32)))
    }

    /// Accepts surrounding whitespace and a space or dash in the middle ("123 456"), as people copy
    /// codes from mail; anything else is not a code.
    pub fn parse(raw: &str) -> Option<SignInCode> {
        let digits: String = raw.trim().chars().filter(|c| *c != ' ' && *c != '-').collect();
        (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(SignInCode(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What is stored: HMAC-SHA256 under the server's secret key of the code bound to its address.
    /// The address binding means a code is only ever compared with codes issued to that address;
    /// the key means a copy of the database alone cannot be used to try the million codes of an
    /// unexpired sign-in, because checking a guess needs the key, which lives outside the database.
    pub fn hash_for(&self, email: &Email, key: &CodeKey) -> TokenHash {
        TokenHash::from_bytes(hmac_sha256(&key.0, format!("sign-in-code:{}:{}", email.as_str(), self.0).as_bytes()))
    }
}

/// The server secret that keys sign-in code hashes: 32 random bytes, kept outside the database.
/// Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeKey([u8; 32]);

impl std::fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKey([redacted])")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the secret must be 64 hexadecimal characters (32 bytes)")]
pub struct InvalidCodeKey;

impl CodeKey {
    pub fn generate() -> CodeKey {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        CodeKey(bytes)
    }

    /// The spelling of a secret file: 64 hex characters; surrounding whitespace (a final line
    /// break from an editor) is ignored.
    pub fn parse_hex(text: &str) -> Result<CodeKey, InvalidCodeKey> {
        let bytes = hex::decode(text.trim()).map_err(|_| InvalidCodeKey)?;
        Ok(CodeKey(bytes.try_into().map_err(|_| InvalidCodeKey)?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A secret of its own for `purpose` (HMAC of it under this key): what a copy of the database
    /// alone cannot recompute, so the database can hold `purpose` (e.g. a webhook's salt) in the
    /// clear.
    pub fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, purpose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        assert_eq!(SignInCode::parse(input).as_ref().map(SignInCode::as_str), expected, "input {input:?}");
    }

    #[test]
    fn parses_what_people_type() {
        check("123456", Some("123456"));
        check(" 012345\n", Some("012345"));
        check("123 456", Some("123456"));
        check("123-456", Some("123456"));
        check("12345", None);
        check("1234567", None);
        check("12345a", None);
        check("１２３４５６", None);
    }

    #[test]
    fn generated_codes_are_six_digits_and_hashes_bind_the_address_and_the_key() {
        let code = SignInCode::generate();
        assert_eq!(SignInCode::parse(code.as_str()), Some(code.clone()));
        let a = Email::parse("a@example.com").unwrap();
        let b = Email::parse("b@example.com").unwrap();
        let key = CodeKey::generate();
        assert_ne!(code.hash_for(&a, &key), code.hash_for(&b, &key));
        assert_ne!(code.hash_for(&a, &key), code.hash_for(&a, &CodeKey::generate()));
        assert_eq!(code.hash_for(&a, &key), SignInCode::parse(code.as_str()).unwrap().hash_for(&a, &key));
        // Without the key the stored value is not the plain hash anyone could recompute.
        assert_ne!(code.hash_for(&a, &key), TokenHash::of(&format!("sign-in-code:a@example.com:{}", code.as_str())));
        assert!(!format!("{code:?}").contains(code.as_str()));
    }

    #[test]
    fn keys_round_trip_through_their_file_spelling() {
        let key = CodeKey::generate();
        assert_eq!(CodeKey::parse_hex(&format!("{}\n", key.to_hex())), Ok(key.clone()));
        assert_eq!(CodeKey::parse_hex("abcd"), Err(InvalidCodeKey));
        assert_eq!(CodeKey::parse_hex(&"zz".repeat(32)), Err(InvalidCodeKey));
        assert!(!format!("{key:?}").contains(&key.to_hex()));
    }
}
