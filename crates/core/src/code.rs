//! Six-digit sign-in codes: generation, parsing, and the keyed hash that is stored instead.

use rand::Rng;

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

    /// What is stored: the hash binds the code to its address, so a code is only ever compared with
    /// codes issued to the same address and the stored value reveals nothing on its own.
    pub fn hash_for(&self, email: &Email) -> TokenHash {
        TokenHash::of(&format!("sign-in-code:{}:{}", email.as_str(), self.0))
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
    fn generated_codes_are_six_digits_and_hashes_bind_the_address() {
        let code = SignInCode::generate();
        assert_eq!(SignInCode::parse(code.as_str()), Some(code.clone()));
        let a = Email::parse("a@example.com").unwrap();
        let b = Email::parse("b@example.com").unwrap();
        assert_ne!(code.hash_for(&a), code.hash_for(&b));
        assert_eq!(code.hash_for(&a), SignInCode::parse(code.as_str()).unwrap().hash_for(&a));
        assert!(!format!("{code:?}").contains(code.as_str()));
    }
}
