//! Outgoing mail: the SMTP transport (lettre), dev mode, and the messages Concord sends.
//!
//! Dev mode (`--mail dev`, see `config::mail_config` for when it is the default): nothing is sent;
//! callers show the link instead (the Diaryx `dev_link`) and the mail is logged. In smtp mode no
//! link, code or mail body is ever logged: the only log lines here carry the subject and the
//! relay's error. Every send is bounded by [`SEND_TIMEOUT`], so a request that
//! waits for its mail (the magic link, whose failure the client must see) never hangs on a slow
//! relay; mails whose failure must not change the answer (forgot, register) go out in the background.
//! Links carry configured base URLs, so every value put into an HTML part is escaped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use concord_core::email::Email;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailConfig, SmtpConfig, SmtpSecurity};
use askama::Template;

/// Long enough for a distant relay, short enough that a client waiting on the answer gets one.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("SMTP_FROM_EMAIL is not a valid address: {0}")]
    InvalidFrom(String),
    #[error("invalid SMTP_HOST: {0}")]
    InvalidHost(String),
    #[error("building the message failed: {0}")]
    Build(String),
    #[error("sending failed: {0}")]
    Send(String),
    #[error("sending timed out after {} s", SEND_TIMEOUT.as_secs())]
    Timeout,
}

/// A message ready to send: one recipient, a subject, and the same content as text and HTML.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub to: Email,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Sends mail, or in dev mode logs it. Cheap to clone: clones share the transport, so replacing
/// it ([`Mailer::replace`], when an admin saves new SMTP settings) takes effect for every holder
/// at once; a send already under way finishes on the transport it started with.
#[derive(Clone)]
pub struct Mailer {
    /// `None` in dev mode. Locked only to clone or swap the transport, never across a send.
    smtp: Arc<RwLock<Option<Smtp>>>,
    /// Whether the last send failed, for the admin dashboard's warnings.
    failing: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Smtp {
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = self.current().map(|smtp| smtp.from);
        f.debug_struct("Mailer").field("from", &from).field("dev_mode", &self.is_dev()).finish()
    }
}

impl Mailer {
    pub fn new(config: &MailConfig) -> Result<Mailer, MailError> {
        let mailer = Mailer::dev();
        mailer.replace(config)?;
        Ok(mailer)
    }

    /// A mailer that sends nothing (see [`MailConfig::Dev`]).
    pub fn dev() -> Mailer {
        Mailer { smtp: Arc::default(), failing: Arc::default() }
    }

    /// Switches every clone of this mailer to `config`; on an error nothing changes.
    pub fn replace(&self, config: &MailConfig) -> Result<(), MailError> {
        let smtp = match config {
            MailConfig::Dev => None,
            MailConfig::Smtp(settings) => Some(Smtp::new(settings)?),
        };
        *self.smtp.write().unwrap_or_else(std::sync::PoisonError::into_inner) = smtp;
        self.failing.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn current(&self) -> Option<Smtp> {
        self.smtp.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn is_dev(&self) -> bool {
        self.current().is_none()
    }

    /// Whether the most recent send failed (reset by a success or a new transport).
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Sends and waits for the relay's answer (at most [`SEND_TIMEOUT`]). In dev mode the mail is
    /// logged instead and this succeeds.
    pub async fn send(&self, mail: OutgoingMail) -> Result<(), MailError> {
        let Some(smtp) = self.current() else {
            tracing::info!(to = %mail.to, subject = %mail.subject, body = %mail.text, "dev mode: mail not sent");
            return Ok(());
        };
        let message = smtp.build(mail)?;
        let sent = match tokio::time::timeout(SEND_TIMEOUT, smtp.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(MailError::Send(format!("{e}"))),
            Err(_) => Err(MailError::Timeout),
        };
        metrics::counter!(if sent.is_ok() { "concord_mail_sent_total" } else { "concord_mail_failed_total" })
            .increment(1);
        self.failing.store(sent.is_err(), Ordering::Relaxed);
        sent
    }

    /// Sends without making the caller wait; a failure is logged, which is all that can be done
    /// for mails whose outcome must not show in the response (it would reveal whether an account
    /// exists).
    pub fn send_in_background(&self, mail: OutgoingMail) {
        let mailer = self.clone();
        tokio::spawn(async move {
            let subject = mail.subject.clone();
            if let Err(e) = mailer.send(mail).await {
                tracing::error!(error = %e, subject = %subject, "sending mail failed");
            }
        });
    }
}

impl Smtp {
    /// With a login when the settings have one; otherwise the relay is sent to without AUTH.
    fn new(settings: &SmtpConfig) -> Result<Smtp, MailError> {
        let address = settings.from_email.parse().map_err(|e| MailError::InvalidFrom(format!("{e}")))?;
        // `Mailbox` quotes and encodes the display name (RFC 2047 where needed), so quotes or commas
        // cannot add recipients. Configuration refuses control characters in the name; they are
        // dropped here as well because lettre panics on a line break in a name.
        let name: String = settings.from_name.chars().filter(|c| !c.is_control()).collect();
        let from = Mailbox::new(Some(name), address);
        let host = settings.host.as_str();
        let mut builder = match settings.security {
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)),
        }
        .map_err(|e| MailError::InvalidHost(format!("{e}")))?
        .port(settings.port)
        .timeout(Some(SEND_TIMEOUT));
        if let Some((user, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Smtp { from, transport: builder.build() })
    }

    fn build(&self, mail: OutgoingMail) -> Result<Message, MailError> {
        let to = Mailbox::new(None, mail.to.as_str().parse().map_err(|e| MailError::Build(format!("{e}")))?);
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .map_err(|e| MailError::Build(format!("{e}")))
    }
}

/// The HTML parts of the mails, escaped by askama like every page.
#[derive(Template)]
#[template(path = "mail/sign_in.html")]
struct SignInHtml<'a> {
    link: &'a str,
    code: &'a str,
    expiry_minutes: u64,
}

#[derive(Template)]
#[template(path = "mail/confirm.html")]
struct ConfirmHtml<'a> {
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/reset.html")]
struct ResetHtml<'a> {
    link: &'a str,
    token: &'a str,
}

#[derive(Template)]
#[template(path = "mail/test.html")]
struct TestHtml<'a> {
    server_name: &'a str,
}

/// Rendering these templates cannot fail (no fallible code in them); an empty HTML part
/// would still leave the text part.
fn render(template: impl Template) -> String {
    template.render().unwrap_or_default()
}

/// The sign-in mail: a link for the device that reads it, and a code for any other device.
pub fn sign_in_mail(to: Email, link: &str, code: &str, expiry_minutes: u64) -> OutgoingMail {
    let text = format!(
        "Sign in to Diaryx by opening this link:\n\n{link}\n\n\
         Or enter this code on the device you are signing in on:\n\n{code}\n\n\
         The link and the code expire in {expiry_minutes} minutes and work once.\n\n\
         If you didn't ask to sign in, you can ignore this email."
    );
    let html = render(SignInHtml { link, code, expiry_minutes });
    OutgoingMail { to, subject: "Sign in to Diaryx".to_owned(), text, html }
}

/// Sent after registration; the account cannot pair devices until the link is opened.
pub fn confirm_mail(to: Email, link: &str) -> OutgoingMail {
    let text = format!(
        "Confirm your email address by opening this link:\n\n{link}\n\n\
         The link expires in 48 hours. If you didn't create an account, you can ignore this email."
    );
    let html = render(ConfirmHtml { link });
    OutgoingMail { to, subject: "Confirm your email address".to_owned(), text, html }
}

/// Sent by forgot; the token also works with `POST /api/v1/auth/reset` directly.
pub fn reset_mail(to: Email, link: &str, token: &str) -> OutgoingMail {
    let text = format!(
        "Someone asked to reset the password of your account. To choose a new one, open:\n\n{link}\n\n\
         Reset token: {token}\n\n\
         The link expires in 1 hour and works once. Resetting signs out all your other sessions and devices. \
         If you didn't ask, you can ignore this email; your password stays as it is."
    );
    let html = render(ResetHtml { link, token });
    OutgoingMail { to, subject: "Reset your password".to_owned(), text, html }
}

/// The admin console's "send a test mail".
pub fn test_mail(to: Email, server_name: &str) -> OutgoingMail {
    let text = format!("This is a test mail from {server_name}. Its SMTP settings work.");
    let html = render(TestHtml { server_name });
    OutgoingMail { to, subject: format!("Test mail from {server_name}"), text, html }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(credentials: Option<(&str, &str)>) -> MailConfig {
        MailConfig::Smtp(SmtpConfig {
            host: "127.0.0.1".to_owned(),
            port: 2525,
            security: SmtpSecurity::None,
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.parse().unwrap())),
            from_email: "noreply@example.com".to_owned(),
            from_name: "Concord\r\nBcc: victim@example.com".to_owned(),
        })
    }

    // Building a real transport spawns its connection pool, which needs a runtime.
    #[tokio::test]
    async fn dev_mode_only_when_configured() {
        assert!(Mailer::new(&MailConfig::Dev).unwrap().is_dev());
        assert!(!Mailer::new(&settings(None)).unwrap().is_dev(), "a relay without a login still sends");
        assert!(!Mailer::new(&settings(Some(("u", "p")))).unwrap().is_dev());
        let MailConfig::Smtp(smtp) = settings(None) else { unreachable!() };
        let bad = MailConfig::Smtp(SmtpConfig { from_email: "not an address".to_owned(), ..smtp });
        assert!(matches!(Mailer::new(&bad), Err(MailError::InvalidFrom(_))));
    }

    #[tokio::test]
    async fn replacing_the_transport_reaches_every_clone() {
        let mailer = Mailer::dev();
        let clone = mailer.clone();
        mailer.replace(&settings(None)).unwrap();
        assert!(!clone.is_dev());
        let MailConfig::Smtp(smtp) = settings(None) else { unreachable!() };
        let bad = MailConfig::Smtp(SmtpConfig { from_email: "bad".to_owned(), ..smtp });
        assert!(mailer.replace(&bad).is_err());
        assert!(!clone.is_dev(), "a refused configuration changes nothing");
        clone.replace(&MailConfig::Dev).unwrap();
        assert!(mailer.is_dev());
    }

    #[tokio::test]
    async fn headers_cannot_be_injected_and_both_parts_are_present() {
        let MailConfig::Smtp(smtp) = settings(None) else { unreachable!() };
        let mailer = Smtp::new(&smtp).unwrap();
        let to = Email::parse("alice@example.com").unwrap();
        let mail = sign_in_mail(to, "http://app/auth/verify?token=a\"<b>&c", "123456", 15);
        let raw = String::from_utf8(mailer.build(mail).unwrap().formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(!headers.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:")), "{headers}");
        assert!(headers.contains("Subject: Sign in to Diaryx"));
        let from = headers.lines().find(|l| l.starts_with("From: ")).unwrap();
        assert!(from.ends_with(" <noreply@example.com>"), "the name stays inside one From header: {from}");
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert!(raw.contains("&#34;&#60;b&#62;&#38;c"), "the link is escaped in HTML");
    }
}
