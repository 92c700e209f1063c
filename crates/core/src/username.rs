//! Usernames for password sign-in: which spellings are allowed and why.

/// 3–64 characters from `A-Z a-z 0-9 . _ -`, starting with a letter or digit. No `@`, so a login
/// is never ambiguous between a username and an email; no spaces or look-alike Unicode, so two
/// accounts cannot differ only in invisible ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("username must be 3-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit")]
pub struct InvalidUsername;

impl Username {
    pub fn parse(raw: &str) -> Result<Username, InvalidUsername> {
        let name = raw.trim();
        let ok = (3..=64).contains(&name.len())
            && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok { Ok(Username(name.to_owned())) } else { Err(InvalidUsername) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        assert_eq!(Username::parse(input).ok().as_ref().map(Username::as_str), expected, "input {input:?}");
    }

    #[test]
    fn allowed_spellings() {
        check("alice", Some("alice"));
        check(" Bob.Smith_2-x ", Some("Bob.Smith_2-x"));
        check("ab", None);
        check(&"a".repeat(64), Some(&"a".repeat(64)));
        check(&"a".repeat(65), None);
        check("_alice", None);
        check("alice@example.com", None);
        check("ali ce", None);
        check("alicé", None);
    }
}
