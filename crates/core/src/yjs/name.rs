//! Which workspace a document name belongs to.
//!
//! Diaryx clients name documents `<workspaceId>:workspace` and `<workspaceId>:doc:<path>`, with an
//! optional `workspace:` prefix; a plain y-websocket app uses any name it likes. The rule: a name
//! whose leading workspace id is one the user owns lives in that workspace, every other name lives
//! in the user's `default` workspace. Either way the document is keyed by its full name inside a
//! workspace of the requesting user, so no name can reach another user's document.

/// Longest accepted document name, in bytes; names are keys, not content.
const MAX_NAME_BYTES: usize = 1024;

/// A document name as a client gave it: non-empty, at most 1 KiB, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DocName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocNameError {
    #[error("document name is empty")]
    Empty,
    #[error("document name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    #[error("document name contains control characters")]
    Control,
    #[error("document name is not UTF-8 once percent-decoded")]
    NotUtf8,
}

/// Decodes one URL component holding a document name (the tail of `/sync/<name>`, or the key and
/// value of `?doc=<name>`), by one rule for both URL forms, so a name spelled the same way opens
/// the same document whichever form carries it: RFC 3986 percent-decoding, with `+` kept as a plus.
///
/// y-websocket appends the room name to the path as it is (the browser percent-encodes only
/// spaces, non-ASCII and a few delimiters), and Diaryx builds `?doc=` with `encodeURIComponent`,
/// which writes a space as `%20` and a plus as `%2B`; both round-trip under this rule. Form
/// decoding (`+` as a space) would instead make `?doc=c++notes` open `c  notes` while
/// `/sync/c++notes` opens `c++notes`. A `%` not followed by two hex digits stays literal (the
/// browser leaves a `%` in a y-websocket room name unencoded), and a name whose bytes are not
/// UTF-8 is refused rather than patched with replacement characters, so no two spellings of
/// different bytes meet in one document.
pub fn decode_url_component(raw: &str) -> Result<String, DocNameError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b))) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| DocNameError::NotUtf8)
}

/// Where a document lives, decided by [`DocName::placement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocPlacement<'a> {
    /// In this workspace, which the user owns.
    Workspace(&'a str),
    /// In the user's `default` workspace.
    Default,
}

impl DocName {
    pub fn parse(name: &str) -> Result<DocName, DocNameError> {
        if name.is_empty() {
            Err(DocNameError::Empty)
        } else if name.len() > MAX_NAME_BYTES {
            Err(DocNameError::TooLong)
        } else if name.chars().any(char::is_control) {
            Err(DocNameError::Control)
        } else {
            Ok(DocName(name.to_owned()))
        }
    }

    /// Decodes a name from a URL (see [`decode_url_component`]), then parses it.
    pub fn from_url(raw: &str) -> Result<DocName, DocNameError> {
        DocName::parse(&decode_url_component(raw)?)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The workspace id a name claims: the text before the first `:`, after an optional
    /// `workspace:` prefix. A name without a `:` after the id claims nothing unless it had the
    /// prefix (`workspace:<id>`).
    pub fn claimed_workspace(&self) -> Option<&str> {
        let (rest, prefixed) = match self.0.strip_prefix("workspace:") {
            Some(rest) => (rest, true),
            None => (self.0.as_str(), false),
        };
        let id = match rest.split_once(':') {
            Some((id, _)) => id,
            None if prefixed => rest,
            None => return None,
        };
        (!id.is_empty()).then_some(id)
    }

    /// Places the document: in the claimed workspace if `owns` says the user owns it, else in
    /// the user's default workspace.
    pub fn placement(&self, owns: impl FnOnce(&str) -> bool) -> DocPlacement<'_> {
        match self.claimed_workspace() {
            Some(id) if owns(id) => DocPlacement::Workspace(id),
            _ => DocPlacement::Default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, owned: &[&str], expected: DocPlacement<'_>) {
        let parsed = DocName::parse(name).unwrap();
        assert_eq!(parsed.placement(|id| owned.contains(&id)), expected, "name {name:?}");
    }

    #[test]
    fn names_are_placed_by_the_rules_of_the_issue() {
        let mine = ["ab12"];
        check("ab12:workspace", &mine, DocPlacement::Workspace("ab12"));
        check("ab12:doc:notes/a.md", &mine, DocPlacement::Workspace("ab12"));
        check("workspace:ab12", &mine, DocPlacement::Workspace("ab12"));
        check("workspace:ab12:doc:x", &mine, DocPlacement::Workspace("ab12"));
        // Someone else's workspace id, or none at all: the caller's default workspace.
        check("ff99:workspace", &mine, DocPlacement::Default);
        check("workspace:ff99", &mine, DocPlacement::Default);
        check("default", &mine, DocPlacement::Default);
        check("ab12", &mine, DocPlacement::Default);
        check(":x", &mine, DocPlacement::Default);
        check("workspace:", &mine, DocPlacement::Default);
    }

    fn check_url(raw: &str, expected: Result<&str, DocNameError>) {
        assert_eq!(decode_url_component(raw).as_deref().map_err(Clone::clone), expected, "{raw:?}");
    }

    #[test]
    fn both_url_forms_decode_by_one_rule() {
        check_url("c++notes", Ok("c++notes"));
        check_url("c%2B%2Bnotes", Ok("c++notes"));
        check_url("two%20words", Ok("two words"));
        check_url("two+words", Ok("two+words"));
        check_url("dir/sub", Ok("dir/sub"));
        check_url("dir%2Fsub", Ok("dir/sub"));
        check_url("%C3%BC%F0%9F%93%9D", Ok("ü📝"));
        check_url("%c3%bc", Ok("ü"));
        // A `%` that starts no escape stays literal, wherever it is.
        check_url("100%", Ok("100%"));
        check_url("100%%20done", Ok("100% done"));
        check_url("%zz%4", Ok("%zz%4"));
        check_url("%25", Ok("%"));
        // Bytes that are not UTF-8 are refused, not replaced.
        check_url("%FF", Err(DocNameError::NotUtf8));
        check_url("a%C3", Err(DocNameError::NotUtf8));
        assert_eq!(DocName::from_url("%0A"), Err(DocNameError::Control));
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(DocName::parse(""), Err(DocNameError::Empty));
        assert_eq!(DocName::parse(&"a".repeat(1025)), Err(DocNameError::TooLong));
        assert_eq!(DocName::parse("a\nb"), Err(DocNameError::Control));
        assert!(DocName::parse("a/b:c d").is_ok());
    }
}
