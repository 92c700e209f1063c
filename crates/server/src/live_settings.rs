//! Settings an admin changes while the server runs: server name, public URL, registration on or
//! off, and the SMTP relay. They take effect at once (the mail transport is swapped in place,
//! registration and mail links read the current value) and survive restarts (saved in the store).
//!
//! How they combine with flags, environment and the config file: those give the starting value;
//! a value saved in the console overrides it until it is cleared there, which brings the starting
//! value back. The SMTP settings are one block: saved, they replace the whole startup mail
//! configuration (switching a dev-mode server to smtp); cleared, the startup one applies again.

use std::sync::{Arc, RwLock};

use clap::ValueEnum;
use concord_core::email::Email;
use concord_store::{Store, StoreError};

use crate::clock;
use crate::config::{MailConfig, Secret, SmtpConfig, SmtpSecurity, server_name};
use crate::error::ApiError;
use crate::mail::Mailer;

/// The names settings are saved under.
mod key {
    pub const SERVER_NAME: &str = "server_name";
    pub const PUBLIC_URL: &str = "public_url";
    pub const REGISTRATION: &str = "registration";
    pub const SMTP_HOST: &str = "smtp_host";
    pub const SMTP_PORT: &str = "smtp_port";
    pub const SMTP_SECURITY: &str = "smtp_security";
    pub const SMTP_USERNAME: &str = "smtp_username";
    pub const SMTP_PASSWORD: &str = "smtp_password";
    pub const SMTP_FROM_EMAIL: &str = "smtp_from_email";
    pub const SMTP_FROM_NAME: &str = "smtp_from_name";
    pub const SMTP: [&str; 7] =
        [SMTP_HOST, SMTP_PORT, SMTP_SECURITY, SMTP_USERNAME, SMTP_PASSWORD, SMTP_FROM_EMAIL, SMTP_FROM_NAME];
}

/// The values in force, and which of them come from the console rather than from startup.
#[derive(Debug, Clone)]
pub struct Current {
    pub server_name: String,
    /// Without a trailing slash.
    pub public_url: String,
    pub registration: bool,
    pub mail: MailConfig,
    pub server_name_saved: bool,
    pub public_url_saved: bool,
    pub registration_saved: bool,
    pub smtp_saved: bool,
}

/// What the general settings form changes: `None` leaves a setting as it is, `Some(None)` clears
/// the saved value (back to startup), `Some(Some(v))` saves `v`.
#[derive(Debug, Clone, Default)]
pub struct GeneralChange {
    pub server_name: Option<Option<String>>,
    pub public_url: Option<Option<String>>,
    pub registration: Option<Option<bool>>,
}

/// What happens to the SMTP password when the SMTP settings are saved. It is never shown back,
/// so an empty field keeps it.
#[derive(Debug, Clone)]
pub enum PasswordChange {
    Keep,
    Set(Secret),
    Clear,
}

#[derive(Debug, Clone)]
pub struct SmtpChange {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Empty means a relay without a login.
    pub username: String,
    pub password: PasswordChange,
    pub from_email: String,
    pub from_name: String,
}

pub struct LiveSettings {
    store: Arc<dyn Store>,
    /// The shared mailer of `Accounts`; replacing its transport reaches every sender.
    mailer: Mailer,
    /// The values from flags, environment, file and defaults.
    startup: Current,
    /// Locked only to read or replace the whole value, never across an await.
    current: RwLock<Current>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_setting", message.into())
}

fn security_name(security: SmtpSecurity) -> &'static str {
    match security {
        SmtpSecurity::Tls => "tls",
        SmtpSecurity::Starttls => "starttls",
        SmtpSecurity::None => "none",
    }
}

/// `http://` or `https://` and a host, without whitespace; stored without a trailing slash.
fn public_url(url: &str) -> Result<String, ApiError> {
    let url = url.trim().trim_end_matches('/');
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Ok(url.to_owned())
        }
        _ => Err(invalid("the public URL must start with http:// or https:// and name a host")),
    }
}

impl LiveSettings {
    /// Reads the saved settings over the startup ones and puts the mail transport in force. A
    /// saved SMTP block that no longer builds (it was checked when saved) is logged and the
    /// startup mail configuration applies.
    pub async fn load(
        store: Arc<dyn Store>,
        config: &crate::config::Config,
        mailer: Mailer,
    ) -> Result<Arc<LiveSettings>, StoreError> {
        let startup = Current {
            server_name: config.server_name.clone(),
            public_url: config.public_url(),
            registration: config.registration,
            mail: config.mail.clone(),
            server_name_saved: false,
            public_url_saved: false,
            registration_saved: false,
            smtp_saved: false,
        };
        let saved = store.live_settings().await?;
        let current = overlay(&startup, &saved);
        if let Err(err) = mailer.replace(&current.mail) {
            tracing::error!(error = %err, "the SMTP settings saved in the admin console do not work; using the startup ones");
            mailer.replace(&startup.mail).ok();
        }
        Ok(Arc::new(LiveSettings { store, mailer, startup, current: RwLock::new(current) }))
    }

    pub fn current(&self) -> Current {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn server_name(&self) -> String {
        self.current().server_name
    }

    /// The base of links to this server in mails (confirm, reset).
    pub fn public_url(&self) -> String {
        self.current().public_url
    }

    pub fn registration_open(&self) -> bool {
        self.current().registration
    }

    /// Re-reads the store and applies what it holds.
    async fn reload(&self) -> Result<(), ApiError> {
        let saved = self.store.live_settings().await?;
        let current = overlay(&self.startup, &saved);
        self.mailer.replace(&current.mail).map_err(|e| invalid(e.to_string()))?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = current;
        Ok(())
    }

    /// Validates and saves the general settings; returns the names of those that changed.
    pub async fn save_general(&self, change: GeneralChange) -> Result<Vec<&'static str>, ApiError> {
        let name = change
            .server_name
            .map(|n| {
                n.map(|n| server_name("server_name", n))
                    .transpose()
                    .map_err(|_| invalid("the server name must be 1 to 100 characters without control characters"))
            })
            .transpose()?;
        let url = change.public_url.map(|u| u.as_deref().map(public_url).transpose()).transpose()?;
        let registration = change.registration.map(|r| r.map(|r| r.to_string()));
        let before = self.current();
        let changes: Vec<(&str, Option<&str>)> = [
            (key::SERVER_NAME, name.as_ref()),
            (key::PUBLIC_URL, url.as_ref()),
            (key::REGISTRATION, registration.as_ref()),
        ]
        .into_iter()
        .filter_map(|(key, change)| change.map(|value| (key, value.as_deref())))
        .collect();
        self.store.save_live_settings(&changes, clock::now()).await?;
        self.reload().await?;
        let after = self.current();
        let mut changed = Vec::new();
        if before.server_name != after.server_name {
            changed.push(key::SERVER_NAME);
        }
        if before.public_url != after.public_url {
            changed.push(key::PUBLIC_URL);
        }
        if before.registration != after.registration {
            changed.push(key::REGISTRATION);
        }
        Ok(changed)
    }

    /// Validates the SMTP block by building a transport from it, then saves it and puts it in
    /// force. Nothing is saved if it does not build.
    pub async fn save_smtp(&self, change: SmtpChange) -> Result<SmtpConfig, ApiError> {
        let host = change.host.trim().to_owned();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("the SMTP host must be a host name or address"));
        }
        if change.port == 0 {
            return Err(invalid("the SMTP port must be 1 to 65535"));
        }
        Email::parse(&change.from_email).map_err(|_| invalid("the sender address is not an email address"))?;
        if change.from_name.chars().any(char::is_control) || change.from_name.chars().count() > 100 {
            return Err(invalid("the sender name must be at most 100 characters without control characters"));
        }
        let username = change.username.trim().to_owned();
        let kept = match &self.current().mail {
            MailConfig::Smtp(SmtpConfig { credentials: Some((_, password)), .. }) => Some(password.clone()),
            _ => None,
        };
        let password = match change.password {
            PasswordChange::Keep => kept,
            PasswordChange::Set(secret) => Some(secret).filter(|s| !s.expose().is_empty()),
            PasswordChange::Clear => None,
        };
        let credentials = match (username.is_empty(), password) {
            (true, None) => None,
            (false, Some(password)) => Some((username, password)),
            // Half a login is refused, as at startup, rather than sending without one.
            _ => return Err(invalid("an SMTP username needs a password, and a password needs a username")),
        };
        let smtp = SmtpConfig {
            host,
            port: change.port,
            security: change.security,
            credentials,
            from_email: change.from_email.trim().to_owned(),
            from_name: change.from_name,
        };
        Mailer::new(&MailConfig::Smtp(smtp.clone())).map_err(|e| invalid(e.to_string()))?;
        let port = smtp.port.to_string();
        let (user, password) = match &smtp.credentials {
            Some((user, password)) => (Some(user.as_str()), Some(password.expose())),
            None => (None, None),
        };
        let changes = [
            (key::SMTP_HOST, Some(smtp.host.as_str())),
            (key::SMTP_PORT, Some(port.as_str())),
            (key::SMTP_SECURITY, Some(security_name(smtp.security))),
            (key::SMTP_USERNAME, user),
            (key::SMTP_PASSWORD, password),
            (key::SMTP_FROM_EMAIL, Some(smtp.from_email.as_str())),
            (key::SMTP_FROM_NAME, Some(smtp.from_name.as_str())),
        ];
        self.store.save_live_settings(&changes, clock::now()).await?;
        self.reload().await?;
        Ok(smtp)
    }

    /// Forgets the saved SMTP block: the startup mail configuration applies again.
    pub async fn clear_smtp(&self) -> Result<(), ApiError> {
        let changes: Vec<(&str, Option<&str>)> = key::SMTP.iter().map(|k| (*k, None)).collect();
        self.store.save_live_settings(&changes, clock::now()).await?;
        self.reload().await
    }
}

/// The startup values with the saved ones on top. Saved values were validated when saved; one
/// that no longer parses (edited by hand) is ignored with a warning.
fn overlay(startup: &Current, saved: &[(String, String)]) -> Current {
    let get = |name: &str| saved.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mut current = startup.clone();
    if let Some(name) = get(key::SERVER_NAME) {
        current.server_name = name.to_owned();
        current.server_name_saved = true;
    }
    if let Some(url) = get(key::PUBLIC_URL) {
        current.public_url = url.to_owned();
        current.public_url_saved = true;
    }
    if let Some(open) = get(key::REGISTRATION).and_then(|v| v.parse().ok()) {
        current.registration = open;
        current.registration_saved = true;
    }
    if let Some(host) = get(key::SMTP_HOST) {
        let port = get(key::SMTP_PORT).and_then(|p| p.parse().ok());
        let security = get(key::SMTP_SECURITY).and_then(|s| SmtpSecurity::from_str(s, true).ok());
        let from_email = get(key::SMTP_FROM_EMAIL);
        match (port, security, from_email) {
            (Some(port), Some(security), Some(from_email)) => {
                let credentials = get(key::SMTP_USERNAME).zip(get(key::SMTP_PASSWORD)).map(|(user, password)| {
                    (user.to_owned(), password.parse::<Secret>().unwrap_or_else(|never| match never {}))
                });
                current.mail = MailConfig::Smtp(SmtpConfig {
                    host: host.to_owned(),
                    port,
                    security,
                    credentials,
                    from_email: from_email.to_owned(),
                    from_name: get(key::SMTP_FROM_NAME).unwrap_or_default().to_owned(),
                });
                current.smtp_saved = true;
            }
            _ => tracing::warn!("the saved SMTP settings are incomplete; using the startup ones"),
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        assert_eq!(public_url(input).ok().as_deref(), expected, "input {input:?}");
    }

    #[test]
    fn public_urls_are_http_with_a_host() {
        check("https://sync.example.com/", Some("https://sync.example.com"));
        check(" http://10.0.0.1:3030 ", Some("http://10.0.0.1:3030"));
        check("ftp://example.com", None);
        check("https://", None);
        check("https://exa mple.com", None);
        check("javascript:alert(1)", None);
    }

    fn startup() -> Current {
        Current {
            server_name: "Concord".into(),
            public_url: "http://127.0.0.1:1".into(),
            registration: true,
            mail: MailConfig::Dev,
            server_name_saved: false,
            public_url_saved: false,
            registration_saved: false,
            smtp_saved: false,
        }
    }

    #[test]
    fn saved_values_override_startup_and_incomplete_smtp_is_ignored() {
        let saved = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        let current = overlay(&startup(), &saved(&[("registration", "false"), ("server_name", "Ours")]));
        assert_eq!((current.registration, current.server_name.as_str()), (false, "Ours"));
        assert!(current.registration_saved && !current.public_url_saved);
        let smtp = [
            ("smtp_host", "mail.example.com"),
            ("smtp_port", "2525"),
            ("smtp_security", "starttls"),
            ("smtp_from_email", "a@example.com"),
        ];
        let current = overlay(&startup(), &saved(&smtp));
        let MailConfig::Smtp(cfg) = current.mail else { panic!("smtp expected") };
        assert_eq!((cfg.port, cfg.security, cfg.credentials.is_none()), (2525, SmtpSecurity::Starttls, true));
        let current = overlay(&startup(), &saved(&smtp[..3]));
        assert!(matches!(current.mail, MailConfig::Dev) && !current.smtp_saved);
    }
}
