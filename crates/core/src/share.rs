//! Share tokens: what a share grants and which documents it opens.
//!
//! A share lets whoever holds its token open one document of a workspace, or every document of
//! it, read-only or read-write. The document is placed by the owner's own rule
//! ([`crate::yjs::DocName::placement`] against the owner's workspaces), so a share reaches exactly
//! the documents its owner would reach under that name, inside the shared workspace.

use rand::RngCore;

use crate::token::{NewToken, TokenFormat};

/// What a share's connections may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receive the document and live updates, send awareness; updates sent are never applied.
    ReadOnly,
    ReadWrite,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access must be \"read-only\" or \"read-write\"")]
pub struct AccessError;

impl Access {
    pub fn parse(text: &str) -> Result<Access, AccessError> {
        match text {
            "read-only" => Ok(Access::ReadOnly),
            "read-write" => Ok(Access::ReadWrite),
            _ => Err(AccessError),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
        }
    }
}

/// A fresh share: its id and its token (plaintext shown to the owner once; only the hash is kept).
#[derive(Debug)]
pub struct NewShareToken {
    pub id: String,
    pub token: NewToken,
}

impl NewShareToken {
    pub fn generate() -> NewShareToken {
        let mut id = [0u8; 12];
        rand::rng().fill_bytes(&mut id);
        NewShareToken { id: format!("shr_{}", hex::encode(id)), token: NewToken::generate(TokenFormat::Base64Url) }
    }
}

/// Whether a share of `workspace_id` (and of `doc_name` alone, if given) opens the document
/// `name`, which the owner's placement rule puts in `placed_in`.
pub fn opens(workspace_id: &str, doc_name: Option<&str>, placed_in: &str, name: &str) -> bool {
    placed_in == workspace_id && doc_name.is_none_or(|shared| shared == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(share: (&str, Option<&str>), doc: (&str, &str), expected: bool) {
        assert_eq!(opens(share.0, share.1, doc.0, doc.1), expected, "share {share:?} opening {doc:?}");
    }

    #[test]
    fn a_share_opens_its_document_or_its_workspace_and_nothing_else() {
        check(("w1", Some("a")), ("w1", "a"), true);
        check(("w1", Some("a")), ("w1", "b"), false);
        check(("w1", Some("a")), ("w2", "a"), false);
        check(("w1", None), ("w1", "anything"), true);
        check(("w1", None), ("w2", "anything"), false);
    }

    #[test]
    fn access_has_two_spellings() {
        for access in [Access::ReadOnly, Access::ReadWrite] {
            assert_eq!(Access::parse(access.as_str()), Ok(access));
        }
        assert_eq!(Access::parse("readonly"), Err(AccessError));
        let share = NewShareToken::generate();
        assert!(share.id.starts_with("shr_") && share.id.len() == 28);
        assert!(!format!("{share:?}").contains(&share.token.plaintext));
    }
}
