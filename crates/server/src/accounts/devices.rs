//! Devices and sessions: issuing one with a fresh token, revoking, signing out, and the password
//! changes that sign every device out. Every revocation is announced on the accounts feed, which
//! `live.rs` watches to close the device's sockets and streams at once.

use concord_core::password::Password;
use concord_core::token::{NewToken, TokenFormat};
use concord_store::{DeviceKind, DeviceRecord, NewDevice, TokenKind, UserRecord};

use super::credentials::{checked_password, hash_password};
use super::limits::account_key;
use super::request::ClientIp;
use crate::app::AppState;
use crate::error::ApiError;

/// Creates a device with a fresh bearer token and returns the token's only plaintext copy (see
/// [`concord_store::AccountStore::create_device_with_token`] for the device cap).
pub async fn issue_device(
    state: &AppState,
    device: NewDevice,
    format: TokenFormat,
    kind: TokenKind,
    expires_at: Option<i64>,
    now: i64,
) -> Result<(DeviceRecord, String), ApiError> {
    let token = NewToken::generate(format);
    let (device, evicted) = state.store.create_device_with_token(device, &token.hash, kind, expires_at, now).await?;
    for old in evicted {
        // A session revoked to stay under the device cap closes like any other revoked device.
        state.accounts.announce(&device.user_id, &old);
    }
    Ok((device, token.plaintext))
}

/// Revokes a device of `user_id` and announces it; false if the user has no such device.
pub async fn revoke_device(state: &AppState, user_id: &str, device_id: &str, now: i64) -> Result<bool, ApiError> {
    let revoked = state.store.revoke_device(user_id, device_id, now).await?;
    if revoked {
        state.accounts.announce(user_id, device_id);
    }
    Ok(revoked)
}

/// Deletes a sign-in device with its token and announces it.
pub async fn log_out(state: &AppState, user_id: &str, device_id: &str) -> Result<(), ApiError> {
    if state.store.delete_device(user_id, device_id).await? {
        state.accounts.announce(user_id, device_id);
    }
    Ok(())
}

/// Sets a new password and revokes all the user's devices (see [`concord_store::AccountStore::reset_password`]).
pub async fn reset_password(state: &AppState, user_id: &str, password: Password, now: i64) -> Result<(), ApiError> {
    let hash = hash_password(&state.accounts, password).await?;
    for device_id in state.store.reset_password(user_id, &hash, now).await? {
        state.accounts.announce(user_id, &device_id);
    }
    Ok(())
}

/// Revokes `device_id` for its owner after re-checking the owner's password: the shared rule of
/// the desktop client's revoke-device and the user API. Wrong passwords count as failed logins
/// of the account from this client.
pub async fn revoke_with_password(
    state: &AppState,
    user: &UserRecord,
    ip: &ClientIp,
    device_id: &str,
    password: String,
    now: i64,
) -> Result<(), ApiError> {
    confirm_password(state, user, ip, password, now).await?;
    let device = state.store.device_by_id(device_id).await?.ok_or_else(|| ApiError::not_found("device not found"))?;
    if device.user_id != user.id {
        return Err(ApiError::forbidden("device does not belong to you"));
    }
    revoke_device(state, &user.id, device_id, now).await?;
    Ok(())
}

/// Re-checks the signed-in user's password before something they cannot undo (403 `wrong
/// password`). Wrong passwords count as failed logins of the account from this client.
pub async fn confirm_password(
    state: &AppState,
    user: &UserRecord,
    ip: &ClientIp,
    password: String,
    now: i64,
) -> Result<(), ApiError> {
    let key = account_key(Some(user), "");
    let limit = &state.accounts.limits.login;
    if !checked_password(&state.accounts, limit, &key, ip, password, user.password_hash.clone(), now).await? {
        return Err(ApiError::forbidden("wrong password"));
    }
    Ok(())
}

/// Changes the password of a signed-in user who knows the current one. Like a reset, it signs
/// out every device: whoever learned the old password loses what it opened.
pub async fn change_password(
    state: &AppState,
    user: &UserRecord,
    ip: &ClientIp,
    current: String,
    new: String,
    now: i64,
) -> Result<(), ApiError> {
    // The new password's policy first: a typo in it should not cost a password check.
    let new = Password::parse(new).map_err(super::registration::password_error)?;
    confirm_password(state, user, ip, current, now).await?;
    reset_password(state, &user.id, new, now).await
}

/// Revokes every sign-in session of the user (browsers, Diaryx apps, user API logins), this one
/// included; paired desktop clients stay paired. Each revocation is announced.
pub async fn sign_out_everywhere(state: &AppState, user_id: &str, now: i64) -> Result<usize, ApiError> {
    let sessions = state.store.devices_of(user_id).await?;
    let mut revoked = 0;
    for device in sessions.iter().filter(|d| d.kind == DeviceKind::Session && d.revoked_at.is_none()) {
        if revoke_device(state, user_id, &device.id, now).await? {
            revoked += 1;
        }
    }
    Ok(revoked)
}

/// Announces every live device of the user on the revocation feed, so their open WebSockets
/// and event streams close at once (blocking and deleting a user, which revoke no device
/// themselves). A feed that lags drops notices; the periodic re-check in `live.rs` then
/// catches them within its interval.
async fn end_connections_of(state: &AppState, user_id: &str) -> Result<(), ApiError> {
    for device in state.store.devices_of(user_id).await? {
        if device.revoked_at.is_none() {
            state.accounts.announce(user_id, &device.id);
        }
    }
    Ok(())
}

/// Blocks or unblocks a user; blocking ends their open connections at once.
pub async fn set_blocked(state: &AppState, user_id: &str, blocked: bool) -> Result<(), ApiError> {
    state.store.set_user_blocked(user_id, blocked).await?;
    if blocked {
        end_connections_of(state, user_id).await?;
    }
    Ok(())
}

/// Deletes a user with everything they own (see [`concord_store::AdminStore::delete_user`]) and
/// ends their open connections; false if there was no such user.
pub async fn delete_user(state: &AppState, user_id: &str) -> Result<bool, ApiError> {
    let devices = state.store.devices_of(user_id).await?;
    let deleted = state.store.delete_user(user_id).await?;
    if deleted {
        for device in devices {
            state.accounts.announce(user_id, &device.id);
        }
    }
    Ok(deleted)
}

/// Revokes any user's device (the admin console) and announces it; false if there is none.
pub async fn revoke_any(state: &AppState, device_id: &str, now: i64) -> Result<bool, ApiError> {
    match state.store.device_by_id(device_id).await? {
        Some(device) => revoke_device(state, &device.user_id, device_id, now).await,
        None => Ok(false),
    }
}

/// Deletes any user's device with its tokens (the admin console) and announces it.
pub async fn delete_any(state: &AppState, device_id: &str) -> Result<bool, ApiError> {
    let Some(device) = state.store.device_by_id(device_id).await? else { return Ok(false) };
    let deleted = state.store.delete_device(&device.user_id, device_id).await?;
    if deleted {
        state.accounts.announce(&device.user_id, device_id);
    }
    Ok(deleted)
}

/// Announces devices revoked elsewhere (a deleted vault's clients).
pub fn announce_revoked(state: &AppState, user_id: &str, device_ids: &[String]) {
    for device_id in device_ids {
        state.accounts.announce(user_id, device_id);
    }
}
