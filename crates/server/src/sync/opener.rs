//! Who opens a document: a user's device, or a share. Both WebSocket protocols resolve the token
//! here, so shares work on both by one rule: the share's document is placed as its owner would
//! place the name, and must land in the shared workspace (and be the shared document).

use axum::http::StatusCode;
use concord_core::share::{self, Access};
use concord_core::token::TokenHash;
use concord_core::yjs::DocName;
use concord_store::{Principal, ShareRecord};

use crate::app::AppState;
use crate::clock;
use crate::error::ApiError;
use crate::extract::authenticate;
use crate::live::{Kind, Lease, OverCap};

pub(crate) enum Opener {
    User(Principal),
    Share(ShareRecord),
}

impl Opener {
    /// The credential behind `token`: a live device of an unblocked user (with `Auth`'s checks
    /// and answers), else a live share; a token that is neither gets the device check's 401.
    pub async fn resolve(state: &AppState, token: &TokenHash) -> Result<Opener, ApiError> {
        match authenticate(state, token).await {
            Err(err) if err.status() == StatusCode::UNAUTHORIZED => {
                match state.store.share_by_token(token, clock::now()).await? {
                    Some(share) => Ok(Opener::Share(share)),
                    None => Err(err),
                }
            }
            other => other.map(Opener::User),
        }
    }

    pub fn access(&self) -> Access {
        match self {
            Opener::User(_) => Access::ReadWrite,
            Opener::Share(share) => share.access,
        }
    }

    pub fn lease(&self, state: &AppState, token: TokenHash) -> Result<Lease, OverCap> {
        match self {
            Opener::User(principal) => state.live.open(Kind::WebSocket, principal, token),
            Opener::Share(share) => state.live.open_share(Kind::WebSocket, share, token),
        }
    }

    /// The workspace the document lives in; 403 for a share that does not open it.
    pub async fn place(&self, state: &AppState, name: &DocName) -> Result<String, ApiError> {
        match self {
            Opener::User(principal) => super::place(state, &principal.user.id, name).await,
            Opener::Share(grant) => {
                let placed = super::place(state, &grant.user_id, name).await?;
                if share::opens(&grant.workspace_id, grant.doc_name.as_deref(), &placed, name.as_str()) {
                    Ok(placed)
                } else {
                    Err(ApiError::forbidden("this share does not open that document"))
                }
            }
        }
    }
}
