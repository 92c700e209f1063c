//! Identifiers for users, devices and workspaces, in the spellings both client families expect.

use rand::RngCore;

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Verstak user ids are 24 hex characters; Diaryx clients treat ids as opaque strings, so one
/// spelling serves both.
pub fn new_user_id() -> String {
    random_hex(12)
}

/// `dev_` followed by 24 hex characters, as the Verstak desktop displays them.
pub fn new_device_id() -> String {
    format!("dev_{}", random_hex(12))
}

/// Workspace ids appear inside Yjs document names (`<workspaceId>:doc:<path>`), so they must not
/// contain `:` or `/`; hex never does.
pub fn new_workspace_id() -> String {
    random_hex(12)
}

/// `doc_` followed by 24 hex characters: a Yjs document's store id, opaque to every caller.
pub fn new_document_id() -> String {
    format!("doc_{}", random_hex(12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shapes() {
        assert_eq!(new_user_id().len(), 24);
        let dev = new_device_id();
        assert!(dev.starts_with("dev_") && dev.len() == 28);
        assert_ne!(new_workspace_id(), new_workspace_id());
        assert!(new_document_id().starts_with("doc_") && new_document_id().len() == 28);
    }
}
