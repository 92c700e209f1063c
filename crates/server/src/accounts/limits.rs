//! Rate limits of the account routes: fixed windows that count an attempt before its outcome is
//! known, and password-check limits per (account, client) and per client.

use std::sync::Mutex;

use concord_core::rate_limit::{RateLimiter, RetryAfter};
use concord_store::UserRecord;

use super::request::ClientIp;
use crate::error::ApiError;

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
}
