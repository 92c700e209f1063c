//! Identity services both wire surfaces share: the mailer, rate limits, password checks off the
//! async runtime, issuing and revoking devices, the admin bootstrap and the cleanup job.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use concord_core::code::CodeKey;
use concord_core::password::{self, HashMemory, Password};
use concord_core::rate_limit::{RateLimiter, RetryAfter};
use concord_core::token::{NewToken, TokenFormat};
use concord_store::{DeviceRecord, NewDevice, Store, StoreError, TokenKind, UserRecord};
use tokio::sync::{Semaphore, broadcast};

use crate::app::AppState;
use crate::client_addr::{ClientAddr, address_key};
use crate::config::{AdminBootstrap, AdminPassword};
use crate::error::ApiError;
use crate::mail::Mailer;

/// The workspace every user has once signed in or confirmed; Diaryx clients open it by this name.
pub const DEFAULT_WORKSPACE: &str = "default";

/// Account state that lives in memory: the mailer, the rate limiters, the revocation feed, the
/// key of sign-in code hashes and the slots for password hashing.
pub struct Accounts {
    pub mailer: Mailer,
    pub limits: Limits,
    /// Every device revocation (revoke, logout, password reset) is announced here, so long-lived
    /// connections of that device (WebSockets) can close at once. Subscribe with
    /// `state.accounts.revocations.subscribe()`. A lagging receiver misses notices; requests are
    /// still refused, because every request checks the database.
    pub revocations: broadcast::Sender<RevokedDevice>,
    /// Keys the stored hashes of sign-in codes; loaded from outside the database (see `secret.rs`).
    pub code_key: CodeKey,
    /// One permit per Argon2 run allowed at once (see [`hash_slots`]): each run takes 19 MiB and
    /// a core for tens of milliseconds, so unbounded parallel password checks would exhaust
    /// memory long before they exhaust the rate limits.
    hashing: Arc<Semaphore>,
    /// The runs' working memory, reused: a permit holder takes one (or makes one, up to one per
    /// permit) and puts it back, so hashing memory never exceeds `hash_slots() × 19 MiB`.
    hash_memory: Arc<Mutex<Vec<HashMemory>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedDevice {
    pub user_id: String,
    pub device_id: String,
}

/// How many Argon2 hashes may run at once: two per core keeps every core busy while a run waits
/// to be scheduled, and bounds their memory at `2 × cores × 19 MiB` (76 MiB on two cores).
pub fn hash_slots() -> usize {
    2 * std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// How long a password check waits for a hashing slot before it is answered 503: long enough to
/// absorb a burst of honest sign-ins, short enough that a flood is refused instead of queued.
const HASH_SLOT_WAIT: Duration = Duration::from_secs(5);

impl Accounts {
    pub fn new(mailer: Mailer, code_key: CodeKey) -> Accounts {
        Accounts {
            mailer,
            limits: Limits::default(),
            revocations: broadcast::channel(256).0,
            code_key,
            hashing: Arc::new(Semaphore::new(hash_slots())),
            hash_memory: Arc::default(),
        }
    }

    fn announce(&self, user_id: &str, device_id: &str) {
        // An error only means nobody is listening right now.
        let _ = self.revocations.send(RevokedDevice { user_id: user_id.to_owned(), device_id: device_id.to_owned() });
    }

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

/// One fixed-window limit, shared by all requests.
pub struct Limit(Mutex<RateLimiter>);

impl Limit {
    fn new(limit: u32, window_secs: i64) -> Limit {
        Limit(Mutex::new(RateLimiter::new(limit, window_secs)))
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, RateLimiter> {
        // A panic while holding the lock cannot leave the counters inconsistent; keep using them.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one hit for every key, unless one of them is already over the limit.
    pub fn check(&self, keys: &[&str], now: i64) -> Result<(), RetryAfter> {
        self.reserve(keys, now).map(drop)
    }

    /// Counts an attempt for every key before its outcome is known, unless one of them is already
    /// over the limit; [`Reservation::release`] takes it back when the attempt succeeds. Checking
    /// and counting under one lock is what keeps parallel attempts within the limit: with "check,
    /// run, then count the failure" every request of a burst passed the check before any counted.
    pub fn reserve(&self, keys: &[&str], now: i64) -> Result<Reservation<'_>, RetryAfter> {
        let mut limiter = self.limiter();
        for key in keys {
            limiter
                .peek(key, now)
                .inspect_err(|_| metrics::counter!("concord_rate_limit_refusals_total").increment(1))?;
        }
        let hits = keys.iter().map(|key| ((*key).to_owned(), limiter.hit(key, now))).collect();
        Ok(Reservation { limit: self, hits })
    }
}

/// Hits counted by [`Limit::reserve`]. Dropping it keeps them (a failure counts);
/// [`Reservation::release`] takes them back (a success is free).
#[must_use = "drop it to count the attempt as failed, or release it"]
pub struct Reservation<'a> {
    limit: &'a Limit,
    /// Each key with the start of the window its hit was counted in.
    hits: Vec<(String, i64)>,
}

impl Reservation<'_> {
    pub fn release(self) {
        let mut limiter = self.limit.limiter();
        for (key, window_start) in &self.hits {
            limiter.release(key, *window_start);
        }
    }
}

/// Limits on password checks, per (account, client) and per client, never per account alone: a
/// guesser locks out only itself, so the owner signing in from another address always gets
/// through, while each client stays bounded across all the accounts it tries.
pub struct CredentialLimit {
    per_account_client: Limit,
    per_client: Limit,
}

/// The reserved hits of one password check (see [`Limit::reserve`]).
#[must_use = "drop it to count the attempt as failed, or release it"]
pub struct CredentialAttempt<'a>(Reservation<'a>, Reservation<'a>);

impl CredentialAttempt<'_> {
    pub fn release(self) {
        self.0.release();
        self.1.release();
    }
}

impl CredentialLimit {
    fn new(per_account_client: u32, per_client: u32, window_secs: i64) -> CredentialLimit {
        CredentialLimit {
            per_account_client: Limit::new(per_account_client, window_secs),
            per_client: Limit::new(per_client, window_secs),
        }
    }

    /// Reserves one attempt on `account` (see [`account_key`]) from `client`.
    pub fn reserve(&self, account: &str, client: &ClientIp, now: i64) -> Result<CredentialAttempt<'_>, RetryAfter> {
        let per_client = self.per_client.reserve(&[&client.0], now)?;
        let pair = format!("{account}|{}", client.0);
        match self.per_account_client.reserve(&[&pair], now) {
            Ok(per_pair) => Ok(CredentialAttempt(per_client, per_pair)),
            Err(retry) => {
                per_client.release();
                Err(retry)
            }
        }
    }
}

/// The rate-limit key of the account a login names: its id when it exists, so the username and
/// the email (in any case) are one account with one count; otherwise the name as logins compare
/// it, lowercased, so an unknown name is limited exactly like a known one and the answers do not
/// tell which names exist.
pub fn account_key(user: Option<&UserRecord>, login: &str) -> String {
    match user {
        Some(user) => format!("user:{}", user.id),
        None => format!("login:{}", login.trim().to_lowercase()),
    }
}

/// The limits of the references. Endpoints that send mail count every request per client IP and
/// per address; password checks and sign-in codes count only failures, so a person who signs in
/// correctly is never locked out by their own devices while guessing stays bounded.
pub struct Limits {
    /// 3 links per address per hour (Diaryx).
    pub magic_link_email: Limit,
    pub magic_link_ip: Limit,
    /// Wrong sign-in codes per IP; the store also limits wrong guesses per mailed code.
    pub verify_code: Limit,
    /// 5 failed pairings per 15 minutes per (account, client) (Verstak), 20 per client.
    pub pair: CredentialLimit,
    /// 10 failed tests per 10 minutes per (account, client), 40 per client.
    pub auth_test: CredentialLimit,
    /// 10 failed logins (and wrong passwords on revoke) per 10 minutes per (account, client), 40
    /// per client.
    pub login: CredentialLimit,
    /// 5 registrations per hour.
    pub register: Limit,
    /// 5 reset mails per hour.
    pub forgot: Limit,
    /// 8 reset attempts per hour.
    pub reset: Limit,
}

impl Default for Limits {
    fn default() -> Limits {
        const MINUTE: i64 = 60;
        const HOUR: i64 = 3600;
        // A client may fail against a few accounts (a household or office behind one address)
        // before it is refused everywhere; four accounts' worth of guesses.
        const CLIENT_FACTOR: u32 = 4;
        Limits {
            magic_link_email: Limit::new(3, HOUR),
            magic_link_ip: Limit::new(20, HOUR),
            verify_code: Limit::new(20, 15 * MINUTE),
            pair: CredentialLimit::new(5, 5 * CLIENT_FACTOR, 15 * MINUTE),
            auth_test: CredentialLimit::new(10, 10 * CLIENT_FACTOR, 10 * MINUTE),
            login: CredentialLimit::new(10, 10 * CLIENT_FACTOR, 10 * MINUTE),
            register: Limit::new(5, HOUR),
            forgot: Limit::new(5, HOUR),
            reset: Limit::new(8, HOUR),
        }
    }
}

/// The Verstak wording of a 429; Diaryx routes use their own.
pub fn too_many(retry: RetryAfter) -> ApiError {
    ApiError::rate_limited(retry.0, "too many requests")
}

/// The client's address as rate-limit key: the forwarded one behind a trusted proxy (see
/// [`crate::client_addr`]), keyed by its IPv6 /64 so one customer's block is one client.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientIp, Self::Rejection> {
        let ip = parts.extensions.get::<ClientAddr>().map(|c| address_key(c.ip).to_string());
        Ok(ClientIp(format!("ip:{}", ip.unwrap_or_default())))
    }
}

/// The `User-Agent` header, truncated, stored with sign-in devices for their owner to recognise.
#[derive(Debug, Clone)]
pub struct UserAgent(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for UserAgent {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<UserAgent, Self::Rejection> {
        let agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
        Ok(UserAgent(agent.map(|a| truncate(a, 256))))
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
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
async fn checked_password(
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
    let key = account_key(Some(user), "");
    let limit = &state.accounts.limits.login;
    if !checked_password(&state.accounts, limit, &key, ip, password, user.password_hash.clone(), now).await? {
        return Err(ApiError::forbidden("wrong password"));
    }
    let device = state.store.device_by_id(device_id).await?.ok_or_else(|| ApiError::not_found("device not found"))?;
    if device.user_id != user.id {
        return Err(ApiError::forbidden("device does not belong to you"));
    }
    revoke_device(state, &user.id, device_id, now).await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot read the admin password: {0}")]
    Read(std::io::Error),
    #[error("admin password: {0}")]
    Policy(#[from] concord_core::password::PasswordError),
    #[error("cannot store the admin user: {0}")]
    Store(#[from] StoreError),
    #[error("hashing the admin password failed: {0}")]
    Hash(#[from] tokio::task::JoinError),
}

/// Creates or updates the `--admin-user` account with its password, confirmed and admin.
pub async fn bootstrap_admin(store: &dyn Store, admin: &AdminBootstrap, now: i64) -> Result<(), BootstrapError> {
    let raw = match &admin.password {
        AdminPassword::Given(secret) => secret.expose().to_owned(),
        AdminPassword::Stdin => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(BootstrapError::Read)?;
            first_line(line)
        }
    };
    let password = Password::parse(raw)?;
    let hash = tokio::task::spawn_blocking(move || password::hash(&password, &mut HashMemory::default())).await?;
    let user = store.upsert_admin(&admin.username, &admin.email, &hash, now).await?;
    store.ensure_workspace(&user.id, DEFAULT_WORKSPACE, now).await?;
    tracing::info!(username = %admin.username, user_id = %user.id, "admin user ready");
    Ok(())
}

/// Stdin holds the password on its first line; the line break is not part of it.
fn first_line(text: String) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_check_every_key_and_count_only_when_all_pass() {
        let limit = Limit::new(2, 60);
        assert!(limit.check(&["ip:a", "login:x"], 0).is_ok());
        assert!(limit.check(&["ip:a", "login:y"], 0).is_ok());
        // ip:a is full, so login:z is refused and not counted.
        assert!(limit.check(&["ip:a", "login:z"], 0).is_err());
        assert!(limit.check(&["ip:b", "login:z"], 0).is_ok());
        assert!(limit.check(&["ip:c", "login:z"], 0).is_ok());
        assert!(limit.check(&["login:z"], 0).is_err());
        // Released reservations leave no trace; kept ones count.
        limit.reserve(&["login:new"], 0).unwrap().release();
        limit.reserve(&["login:new"], 0).unwrap().release();
        drop(limit.reserve(&["login:new"], 0).unwrap());
        drop(limit.reserve(&["login:new"], 0).unwrap());
        assert_eq!(limit.check(&["login:new"], 10).map(drop), Err(RetryAfter(50)));
    }

    fn ip(s: &str) -> ClientIp {
        ClientIp(format!("ip:{s}"))
    }

    #[test]
    fn failures_lock_out_the_guessing_client_not_the_account() {
        let limit = CredentialLimit::new(2, 3, 60);
        drop(limit.reserve("user:1", &ip("a"), 0).unwrap());
        drop(limit.reserve("user:1", &ip("a"), 0).unwrap());
        assert!(limit.reserve("user:1", &ip("a"), 0).is_err(), "(account, client) is full");
        // The refused pair did not use up the client's own count.
        drop(limit.reserve("user:2", &ip("a"), 0).unwrap());
        assert!(limit.reserve("user:3", &ip("a"), 0).is_err(), "the client is full across accounts");
        // The owner from elsewhere still gets through, and successes never count.
        for _ in 0..10 {
            limit.reserve("user:1", &ip("b"), 0).unwrap().release();
        }
    }

    #[test]
    fn one_account_is_one_key_whatever_it_is_called() {
        let user = UserRecord {
            id: "u1".to_owned(),
            email: "bob@example.com".to_owned(),
            username: Some("Bob".to_owned()),
            password_hash: None,
            confirmed: true,
            blocked: false,
            is_admin: false,
            created_at: 0,
        };
        assert_eq!(account_key(Some(&user), "bob"), account_key(Some(&user), "BOB@example.com"));
        assert_eq!(account_key(None, " Nobody "), account_key(None, "nobody"));
        assert_ne!(account_key(None, "u1"), account_key(Some(&user), "u1"));
    }

    #[test]
    fn revocations_reach_subscribers() {
        let accounts = Accounts::new(Mailer::dev(), CodeKey::generate());
        let mut feed = accounts.revocations.subscribe();
        accounts.announce("user", "dev_1");
        let expected = RevokedDevice { user_id: "user".to_owned(), device_id: "dev_1".to_owned() };
        assert_eq!(feed.try_recv().unwrap(), expected);
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(first_line("pw with spaces \r\nsecond".to_owned()), "pw with spaces ");
    }
}
