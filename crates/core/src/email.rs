//! Email addresses, parsed once at the edge so the rest of the code can trust them.

/// A trimmed, lowercased address that is safe to put in a mail header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid email address")]
pub struct InvalidEmail;

/// RFC 5321 caps a path at 256 octets; the Verstak client caps logins at 320. We take the larger so
/// no address either client accepts is refused here.
const MAX_LEN: usize = 320;

impl Email {
    /// Accepts what the Diaryx server accepted (contains `@`, at least five characters) and refuses
    /// what would be dangerous in a header: whitespace and control characters (CR/LF injection).
    pub fn parse(raw: &str) -> Result<Email, InvalidEmail> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.split_once('@').ok_or(InvalidEmail)?;
        let well_formed = email.len() >= 5
            && email.len() <= MAX_LEN
            && !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',');
        if well_formed { Ok(Email(email)) } else { Err(InvalidEmail) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        assert_eq!(Email::parse(input).ok().as_ref().map(Email::as_str), expected, "input {input:?}");
    }

    #[test]
    fn parses_like_the_clients_expect() {
        check("  Alice@Example.COM ", Some("alice@example.com"));
        check("a@b.c", Some("a@b.c"));
        check("a@b", None);
        check("no-at-sign.example", None);
        check("@example.com", None);
        check("alice@", None);
        check("a@b@c.com", None);
        check("alice@example.com\r\nBcc: x@y.z", None);
        check("alice smith@example.com", None);
        check("<alice@example.com>", None);
        check(&format!("{}@example.com", "a".repeat(320)), None);
    }
}
