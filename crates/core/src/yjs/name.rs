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

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(DocName::parse(""), Err(DocNameError::Empty));
        assert_eq!(DocName::parse(&"a".repeat(1025)), Err(DocNameError::TooLong));
        assert_eq!(DocName::parse("a\nb"), Err(DocNameError::Control));
        assert!(DocName::parse("a/b:c d").is_ok());
    }
}
