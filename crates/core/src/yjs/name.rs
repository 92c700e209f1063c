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

/// Which part of a URL carries a document name; each is decoded as its real clients encode it.
///
/// - `Path` (`/sync/<name>`, y-websocket): RFC 3986 percent-decoding; `+` is a plus. y-websocket
///   appends the room name to the URL as it is, and the browser percent-encodes only spaces,
///   non-ASCII and a few delimiters, so `c++notes` arrives as `c++notes`.
/// - `Query` (`?doc=<name>`, Diaryx): form decoding (`application/x-www-form-urlencoded`), where
///   `+` is a space. Diaryx builds the URL with `URLSearchParams`, which sends a space as `+` and
///   a plus as `%2B`, so `c++notes` arrives as `c%2B%2Bnotes` and a bare `?doc=c++notes` means
///   `c  notes`.
///
/// In both forms a `%` not followed by two hex digits stays literal (the browser leaves a `%` in a
/// y-websocket room name unencoded), and a name whose bytes are not UTF-8 is refused rather than
/// patched with replacement characters, so no two spellings of different bytes meet in one
/// document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlForm {
    Path,
    Query,
}

/// Decodes one URL component (a path tail, a query key or value) by the rules of `form`.
pub fn decode_url_component(raw: &str, form: UrlForm) -> Result<String, DocNameError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' => match (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b))) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if form == UrlForm::Query => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
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

    /// Decodes a name from a URL (see [`UrlForm`]), then parses it.
    pub fn from_url(raw: &str, form: UrlForm) -> Result<DocName, DocNameError> {
        DocName::parse(&decode_url_component(raw, form)?)
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

    fn check_url(raw: &str, form: UrlForm, expected: Result<&str, DocNameError>) {
        assert_eq!(decode_url_component(raw, form).as_deref().map_err(Clone::clone), expected, "{raw:?} as {form:?}");
    }

    #[test]
    fn each_url_form_decodes_as_its_clients_encode() {
        use UrlForm::{Path, Query};
        check_url("c++notes", Path, Ok("c++notes"));
        check_url("c%2B%2Bnotes", Path, Ok("c++notes"));
        check_url("c%2B%2Bnotes", Query, Ok("c++notes"));
        check_url("c++notes", Query, Ok("c  notes"));
        check_url("two%20words", Path, Ok("two words"));
        check_url("two+words", Query, Ok("two words"));
        check_url("dir/sub", Path, Ok("dir/sub"));
        check_url("dir%2Fsub", Query, Ok("dir/sub"));
        check_url("%C3%BC%F0%9F%93%9D", Path, Ok("ü📝"));
        check_url("%c3%bc", Query, Ok("ü"));
        // A `%` that starts no escape stays literal, wherever it is.
        check_url("100%", Path, Ok("100%"));
        check_url("100%%20done", Path, Ok("100% done"));
        check_url("%zz%4", Query, Ok("%zz%4"));
        check_url("%25", Query, Ok("%"));
        // Bytes that are not UTF-8 are refused, not replaced.
        check_url("%FF", Path, Err(DocNameError::NotUtf8));
        check_url("a%C3", Query, Err(DocNameError::NotUtf8));
        assert_eq!(DocName::from_url("%0A", UrlForm::Path), Err(DocNameError::Control));
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(DocName::parse(""), Err(DocNameError::Empty));
        assert_eq!(DocName::parse(&"a".repeat(1025)), Err(DocNameError::TooLong));
        assert_eq!(DocName::parse("a\nb"), Err(DocNameError::Control));
        assert!(DocName::parse("a/b:c d").is_ok());
    }
}
