//! Identity services both wire surfaces share: the mailer, rate limits, password checks off the
//! async runtime, issuing and revoking devices, the admin bootstrap and the cleanup job.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use concord_core::password::{self, Password};
use concord_core::rate_limit::{RateLimiter, RetryAfter};
use concord_core::token::{NewToken, TokenFormat};
use concord_store::{DeviceRecord, NewDevice, Store, StoreError, TokenKind, UserRecord};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::config::{AdminBootstrap, AdminPassword};
use crate::error::ApiError;
use crate::mail::Mailer;

/// The workspace every user has once signed in or confirmed; Diaryx clients open it by this name.
pub const DEFAULT_WORKSPACE: &str = "default";

/// Account state that lives in memory: the mailer, the rate limiters, and the revocation feed.
pub struct Accounts {
    pub mailer: Mailer,
    pub limits: Limits,
    /// Every device revocation (revoke, logout, password reset) is announced here, so long-lived
    /// connections of that device (WebSockets) can close at once. Subscribe with
    /// `state.accounts.revocations.subscribe()`. A lagging receiver misses notices; requests are
    /// still refused, because every request checks the database.
    pub revocations: broadcast::Sender<RevokedDevice>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedDevice {
    pub user_id: String,
    pub device_id: String,
}

impl Accounts {
    pub fn new(mailer: Mailer) -> Accounts {
        Accounts { mailer, limits: Limits::default(), revocations: broadcast::channel(256).0 }
    }

    fn announce(&self, user_id: &str, device_id: &str) {
        // An error only means nobody is listening right now.
        let _ = self.revocations.send(RevokedDevice { user_id: user_id.to_owned(), device_id: device_id.to_owned() });
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
        let mut limiter = self.limiter();
        for key in keys {
            limiter.peek(key, now)?;
        }
        for key in keys {
            limiter.hit(key, now);
        }
        Ok(())
    }

    /// Refuses when a key is over the limit, counting nothing (see [`Limit::fail`]).
    pub fn peek(&self, keys: &[&str], now: i64) -> Result<(), RetryAfter> {
        let mut limiter = self.limiter();
        keys.iter().try_for_each(|key| limiter.peek(key, now))
    }

    /// Counts a failure for every key.
    pub fn fail(&self, keys: &[&str], now: i64) {
        let mut limiter = self.limiter();
        keys.iter().for_each(|key| limiter.hit(key, now));
    }
}

/// The limits of the references, per client IP and per account. Endpoints that send mail count
/// every request; endpoints that check a password count only failures, so a person who signs in
/// correctly is never locked out by their own devices while guessing stays bounded.
pub struct Limits {
    /// 3 links per address per hour (Diaryx).
    pub magic_link_email: Limit,
    pub magic_link_ip: Limit,
    /// Wrong sign-in codes per IP; the store also limits wrong guesses per mailed code.
    pub verify_code: Limit,
    /// 5 failed pairings per 15 minutes (Verstak).
    pub pair: Limit,
    /// 10 failed tests per 10 minutes.
    pub auth_test: Limit,
    /// 10 failed logins (and wrong passwords on revoke) per 10 minutes.
    pub login: Limit,
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
        Limits {
            magic_link_email: Limit::new(3, HOUR),
            magic_link_ip: Limit::new(20, HOUR),
            verify_code: Limit::new(20, 15 * MINUTE),
            pair: Limit::new(5, 15 * MINUTE),
            auth_test: Limit::new(10, 10 * MINUTE),
            login: Limit::new(10, 10 * MINUTE),
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

/// The client's IP address as rate-limit key. Behind a reverse proxy this is the proxy's address;
/// trusting forwarded headers would let any client pick its own key.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientIp, Self::Rejection> {
        let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
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

/// Argon2id takes tens of milliseconds of CPU: run it on the blocking pool, never on the runtime.
pub async fn hash_password(password: Password) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || password::hash(&password)).await.map_err(ApiError::internal)
}

/// Checks a password against a stored hash (or a dummy one, see [`password::verify`]).
pub async fn verify_password(candidate: String, stored: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || password::verify(&candidate, stored.as_deref()))
        .await
        .map_err(ApiError::internal)
}

/// The Verstak credential check (pair, auth test, login). The password is checked before the
/// account's status, so a wrong password reads the same for every account, existing or not;
/// only someone who knows the password learns that the account is blocked or unconfirmed.
pub async fn check_credentials(
    state: &AppState,
    limit: &Limit,
    ip: &ClientIp,
    login: &str,
    password: String,
    now: i64,
) -> Result<UserRecord, ApiError> {
    let account = format!("login:{}", login.to_lowercase());
    let keys = [ip.0.as_str(), account.as_str()];
    limit.peek(&keys, now).map_err(too_many)?;
    let user = state.store.user_by_login(login).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    if !verify_password(password, stored).await? {
        limit.fail(&keys, now);
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

/// Creates a device with a fresh bearer token and returns the token's only plaintext copy.
pub async fn issue_device(
    state: &AppState,
    device: NewDevice,
    format: TokenFormat,
    kind: TokenKind,
    expires_at: Option<i64>,
    now: i64,
) -> Result<(DeviceRecord, String), ApiError> {
    let token = NewToken::generate(format);
    let device = state.store.create_device_with_token(device, &token.hash, kind, expires_at, now).await?;
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
    let hash = hash_password(password).await?;
    for device_id in state.store.reset_password(user_id, &hash, now).await? {
        state.accounts.announce(user_id, &device_id);
    }
    Ok(())
}

/// Revokes `device_id` for its owner after re-checking the owner's password: the shared rule of
/// the desktop client's revoke-device and the user API. Wrong passwords count as failed logins.
pub async fn revoke_with_password(
    state: &AppState,
    user: &UserRecord,
    device_id: &str,
    password: String,
    now: i64,
) -> Result<(), ApiError> {
    let key = format!("user:{}", user.id);
    let keys = [key.as_str()];
    state.accounts.limits.login.peek(&keys, now).map_err(too_many)?;
    if !verify_password(password, user.password_hash.clone()).await? {
        state.accounts.limits.login.fail(&keys, now);
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
        AdminPassword::File(path) => first_line(std::fs::read_to_string(path).map_err(BootstrapError::Read)?),
        AdminPassword::Stdin => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(BootstrapError::Read)?;
            first_line(line)
        }
    };
    let password = Password::parse(raw)?;
    let hash = tokio::task::spawn_blocking(move || password::hash(&password)).await?;
    let user = store.upsert_admin(&admin.username, &admin.email, &hash, now).await?;
    store.ensure_workspace(&user.id, DEFAULT_WORKSPACE, now).await?;
    tracing::info!(username = %admin.username, user_id = %user.id, "admin user ready");
    Ok(())
}

/// A password file or stdin holds the password on its first line; the line break is not part of it.
fn first_line(text: String) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// Deletes expired tokens, used links and dead sessions now and then every `interval`, until
/// `shutdown` is cancelled.
pub fn spawn_cleanup(store: std::sync::Arc<dyn Store>, interval: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            match store.cleanup_expired(crate::clock::now()).await {
                Ok(counts) => tracing::info!(
                    tokens = counts.tokens,
                    magic_tokens = counts.magic_tokens,
                    account_tokens = counts.account_tokens,
                    devices = counts.devices,
                    "cleanup removed expired tokens and sessions"
                ),
                Err(err) => tracing::error!(error = %err, "cleanup failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    });
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
        assert!(limit.peek(&["login:z"], 0).is_err());
        assert!(limit.peek(&["login:new"], 0).is_ok());
        limit.fail(&["login:new"], 0);
        limit.fail(&["login:new"], 0);
        assert_eq!(limit.peek(&["login:new"], 10), Err(RetryAfter(50)));
    }

    #[test]
    fn revocations_reach_subscribers() {
        let accounts = Accounts::new(Mailer::dev());
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
