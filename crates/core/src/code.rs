//! Six-digit sign-in codes: generation, parsing, and the keyed hash that is stored instead.

use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

use crate::email::Email;
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
}

/// HMAC-SHA256 as RFC 2104 defines it (checked against the RFC 4231 vectors below). Written out
/// over the `sha2` the workspace already uses: the current `hmac` release needs a newer `digest`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
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

    fn check_hmac(key: &[u8], message: &[u8], expected: &str) {
        assert_eq!(hex::encode(hmac_sha256(key, message)), expected, "key {key:02x?}");
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        check_hmac(&[0x0b; 20], b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        check_hmac(
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        );
        check_hmac(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        );
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
