//! Passwords: Argon2id on the blocking pool within a bounded number of slots, and the credential
//! check that every password sign-in goes through.

use std::time::Duration;

use concord_core::password::{self, HashMemory, Password};
use concord_store::UserRecord;

use super::Accounts;
use super::limits::{CredentialLimit, account_key, too_many};
use super::request::ClientIp;
use crate::app::AppState;
use crate::error::ApiError;

/// How many Argon2 hashes may run at once: two per core keeps every core busy while a run waits
/// to be scheduled, and bounds their memory at `2 × cores × 19 MiB` (76 MiB on two cores).
pub fn hash_slots() -> usize {
    2 * std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// How long a password check waits for a hashing slot before it is answered 503: long enough to
/// absorb a burst of honest sign-ins, short enough that a flood is refused instead of queued.
const HASH_SLOT_WAIT: Duration = Duration::from_secs(5);

impl Accounts {
    /// Runs an Argon2 job on the blocking pool once a hashing slot is free. The permit moves into
    /// the job, so a request that is cancelled while its hash runs still holds the slot until the
    /// hash ends: the bound counts running hashes, not waiting requests.
    async fn argon2<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(HASH_SLOT_WAIT, self.hashing.clone().acquire_owned())
            .await
            .map_err(|_| ApiError::unavailable(1, "server_busy", "too many password checks at once; try again"))?
            .map_err(ApiError::internal)?;
        let pool = self.hash_memory.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let lock = || pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut memory = lock().pop().unwrap_or_default();
            let result = job(&mut memory);
            lock().push(memory);
            result
        })
        .await
        .map_err(ApiError::internal)
    }
}

/// Argon2id takes tens of milliseconds of CPU and 19 MiB: run it on the blocking pool, never on
/// the runtime, within a hashing slot.
pub async fn hash_password(accounts: &Accounts, password: Password) -> Result<String, ApiError> {
    accounts.argon2(move |memory| password::hash(&password, memory)).await
}

/// Checks a password against a stored hash (or a dummy one, see [`password::verify`]).
async fn verify_password(accounts: &Accounts, candidate: String, stored: Option<String>) -> Result<bool, ApiError> {
    accounts.argon2(move |memory| password::verify(&candidate, stored.as_deref(), memory)).await
}

/// Checks `password` for the account `key` names (see [`account_key`]) with `stored`, counting
/// the attempt against `limit` before hashing and taking it back if the password was right. A
/// check that never ran (no hashing slot) does not count either.
pub(super) async fn checked_password(
    accounts: &Accounts,
    limit: &CredentialLimit,
    key: &str,
    ip: &ClientIp,
    password: String,
    stored: Option<String>,
    now: i64,
) -> Result<bool, ApiError> {
    let attempt = limit.reserve(key, ip, now).map_err(too_many)?;
    match verify_password(accounts, password, stored).await {
        Ok(true) => {
            attempt.release();
            Ok(true)
        }
        Ok(false) => Ok(false),
        Err(err) => {
            attempt.release();
            Err(err)
        }
    }
}

/// The Verstak credential check (pair, auth test, login). The password is checked before the
/// account's status, so a wrong password reads the same for every account, existing or not;
/// only someone who knows the password learns that the account is blocked or unconfirmed. An
/// unconfirmed account opens nothing: its password may be a stranger's.
pub async fn check_credentials(
    state: &AppState,
    limit: &CredentialLimit,
    ip: &ClientIp,
    login: &str,
    password: String,
    now: i64,
) -> Result<UserRecord, ApiError> {
    let user = state.store.user_by_login(login).await?;
    let key = account_key(user.as_ref(), login);
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    if !checked_password(&state.accounts, limit, &key, ip, password, stored, now).await? {
        return Err(ApiError::unauthorized("invalid credentials"));
    }
    let user = user.ok_or_else(|| ApiError::internal("a password matched without a user"))?;
    if user.blocked {
        return Err(ApiError::forbidden("account blocked"));
    }
    if !user.confirmed {
        return Err(ApiError::forbidden("email not confirmed"));
    }
    Ok(user)
}
