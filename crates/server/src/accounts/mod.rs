//! Identity services every surface shares (Diaryx, Verstak, the web pages), split by concern:
//!
//! - [`limits`]: the rate limits and the key of an account for them.
//! - [`request`]: extractors for who is asking (client address, user agent).
//! - [`credentials`]: Argon2 off the async runtime within bounded slots, and the password check.
//! - [`devices`]: issuing and revoking devices and sessions, password changes that sign out.
//! - [`registration`]: registering with a password and confirming the address.
//! - [`sign_in`]: signing in by mailed link or code, or by password; opening a session.
//! - [`recovery`]: forgotten passwords (the reset mail, spending its token).
//! - [`bootstrap`]: the `--admin-user` account at start.
//!
//! The cleanup of expired credentials is a job of `ops/jobs.rs`, over the store.

pub mod bootstrap;
pub mod credentials;
pub mod devices;
pub mod limits;
pub mod recovery;
pub mod registration;
pub mod request;
pub mod sign_in;

use std::sync::{Arc, Mutex};

use concord_core::code::CodeKey;
use concord_core::password::HashMemory;
use tokio::sync::{Semaphore, broadcast};

use crate::mail::Mailer;
use limits::Limits;

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
    /// One permit per Argon2 run allowed at once (see [`credentials::hash_slots`]): each run
    /// takes 19 MiB and a core for tens of milliseconds, so unbounded parallel password checks
    /// would exhaust memory long before they exhaust the rate limits.
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

impl Accounts {
    pub fn new(mailer: Mailer, code_key: CodeKey) -> Accounts {
        Accounts {
            mailer,
            limits: Limits::default(),
            revocations: broadcast::channel(256).0,
            code_key,
            hashing: Arc::new(Semaphore::new(credentials::hash_slots())),
            hash_memory: Arc::default(),
        }
    }

    fn announce(&self, user_id: &str, device_id: &str) {
        // An error only means nobody is listening right now.
        let _ = self.revocations.send(RevokedDevice { user_id: user_id.to_owned(), device_id: device_id.to_owned() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_reach_subscribers() {
        let accounts = Accounts::new(Mailer::dev(), CodeKey::generate());
        let mut feed = accounts.revocations.subscribe();
        accounts.announce("user", "dev_1");
        let expected = RevokedDevice { user_id: "user".to_owned(), device_id: "dev_1".to_owned() };
        assert_eq!(feed.try_recv().unwrap(), expected);
    }
}
