//! The audit log: who did what, when, from which address, for the admin console. Never a secret:
//! entries name accounts, devices and settings, never a password, token, code or hash.
//!
//! Recording never delays or fails the action it describes: entries go through a bounded
//! channel to one writer task, which appends them in order. If the channel is full (a flood of
//! failed sign-ins faster than the disk), further entries are dropped and counted in
//! `concord_audit_dropped_total`, rather than queued without bound. Entries older than the
//! retention (`CONCORD_AUDIT_RETENTION_DAYS`) are purged by a job of `ops/jobs.rs`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use concord_store::{NewAuditEntry, Store};
use tokio::sync::mpsc;

use crate::client_addr::ClientAddr;
use crate::clock;

/// Entries waiting for the writer; far more than a burst of honest activity produces.
const QUEUE: usize = 1024;

/// What happened. The names are the Verstak reference's, plus sign-ins by link and code, failed
/// sign-ins and the admin console's own actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    DeviceAuthFailed,
    DevicePaired,
    DeviceRevoked,
    DeviceDeleted,
    RateLimitExceeded,
    RetentionCleanup,
    SmtpSettingsUpdated,
    SmtpTestFailed,
    SmtpTestPassed,
    UserBlockChanged,
    UserConfirmed,
    UserCreated,
    UserDeleted,
    UserPasswordReset,
    UserUpdated,
    WebSettingsUpdated,
    SignInMagicLink,
    SignInCode,
    SignInFailed,
    AdminSignIn,
    VaultDeleted,
    WorkspaceDeleted,
    StorageCleanup,
    BackupCreated,
    WebhookCreated,
    WebhookDeleted,
}

impl Event {
    pub const ALL: [Event; 26] = [
        Event::DeviceAuthFailed,
        Event::DevicePaired,
        Event::DeviceRevoked,
        Event::DeviceDeleted,
        Event::RateLimitExceeded,
        Event::RetentionCleanup,
        Event::SmtpSettingsUpdated,
        Event::SmtpTestFailed,
        Event::SmtpTestPassed,
        Event::UserBlockChanged,
        Event::UserConfirmed,
        Event::UserCreated,
        Event::UserDeleted,
        Event::UserPasswordReset,
        Event::UserUpdated,
        Event::WebSettingsUpdated,
        Event::SignInMagicLink,
        Event::SignInCode,
        Event::SignInFailed,
        Event::AdminSignIn,
        Event::VaultDeleted,
        Event::WorkspaceDeleted,
        Event::StorageCleanup,
        Event::BackupCreated,
        Event::WebhookCreated,
        Event::WebhookDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::DeviceAuthFailed => "device_auth_failed",
            Event::DevicePaired => "device_paired",
            Event::DeviceRevoked => "device_revoked",
            Event::DeviceDeleted => "device_deleted",
            Event::RateLimitExceeded => "rate_limit_exceeded",
            Event::RetentionCleanup => "retention_cleanup",
            Event::SmtpSettingsUpdated => "smtp_settings_updated",
            Event::SmtpTestFailed => "smtp_test_failed",
            Event::SmtpTestPassed => "smtp_test_passed",
            Event::UserBlockChanged => "user_block_changed",
            Event::UserConfirmed => "user_confirmed",
            Event::UserCreated => "user_created",
            Event::UserDeleted => "user_deleted",
            Event::UserPasswordReset => "user_password_reset",
            Event::UserUpdated => "user_updated",
            Event::WebSettingsUpdated => "web_settings_updated",
            Event::SignInMagicLink => "sign_in_magic_link",
            Event::SignInCode => "sign_in_code",
            Event::SignInFailed => "sign_in_failed",
            Event::AdminSignIn => "admin_sign_in",
            Event::VaultDeleted => "vault_deleted",
            Event::WorkspaceDeleted => "workspace_deleted",
            Event::StorageCleanup => "storage_cleanup",
            Event::BackupCreated => "backup_created",
            Event::WebhookCreated => "webhook_created",
            Event::WebhookDeleted => "webhook_deleted",
        }
    }
}

/// The client's address as the audit log records it (the forwarded one behind a trusted proxy).
#[derive(Debug, Clone, Default)]
pub struct Ip(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Ip {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Ip, Self::Rejection> {
        Ok(Ip(parts.extensions.get::<ClientAddr>().map(|c| c.ip.to_string())))
    }
}

/// The rate-limit key of the client, for the shared account rules that take only that: the
/// address itself for IPv4, its /64 network for IPv6 (which is what the limits count).
impl From<&crate::accounts::request::ClientIp> for Ip {
    fn from(key: &crate::accounts::request::ClientIp) -> Ip {
        Ip(key.0.strip_prefix("ip:").filter(|ip| !ip.is_empty()).map(str::to_owned))
    }
}

/// One entry to record; build with [`Entry::new`] and the `actor`/`subject` setters.
#[derive(Debug, Clone)]
pub struct Entry(NewAuditEntry);

impl Entry {
    pub fn new(event: Event, ip: &Ip, detail: impl Into<String>) -> Entry {
        Entry(NewAuditEntry {
            at: clock::now(),
            event: event.as_str().to_owned(),
            actor: None,
            subject: None,
            detail: detail.into(),
            ip: ip.0.clone(),
        })
    }

    pub fn actor(mut self, actor: impl Into<String>) -> Entry {
        self.0.actor = Some(actor.into());
        self
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Entry {
        self.0.subject = Some(subject.into());
        self
    }
}

/// The sending side of the audit writer; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<NewAuditEntry>,
}

impl Audit {
    /// Starts the writer task; it ends when every `Audit` is dropped, after writing what is queued.
    pub fn start(store: Arc<dyn Store>) -> Audit {
        let (tx, mut rx) = mpsc::channel::<NewAuditEntry>(QUEUE);
        tokio::spawn(async move {
            while let Some(entry) = rx.recv().await {
                if let Err(err) = store.append_audit(&entry).await {
                    tracing::error!(error = %err, event = %entry.event, "could not write an audit entry");
                }
            }
        });
        Audit { tx }
    }

    /// Queues the entry without waiting (see the module docs for a full queue).
    pub fn record(&self, entry: Entry) {
        if self.tx.try_send(entry.0).is_err() {
            metrics::counter!("concord_audit_dropped_total").increment(1);
        }
    }
}

/// Records a refused password check (wrong password, blocked or unconfirmed account) of `login`
/// as `event`; other errors (rate limits, a busy server) are not about the credentials.
pub fn refused_credentials(audit: &Audit, event: Event, ip: &Ip, login: &str, err: &crate::error::ApiError) {
    use axum::http::StatusCode;
    if matches!(err.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        audit.record(Entry::new(event, ip, err.message().to_owned()).subject(login));
    }
}

/// Records a 429 answer: one place for every rate-limited route, so none is forgotten.
pub async fn rate_limits(
    axum::extract::State(state): axum::extract::State<crate::app::AppState>,
    ip: Ip,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if response.status() == axum::http::StatusCode::TOO_MANY_REQUESTS {
        state.audit.record(Entry::new(Event::RateLimitExceeded, &ip, path));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_distinct_snake_case() {
        let names: std::collections::HashSet<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(names.len(), Event::ALL.len());
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
