//! Settings: what can be configured, their defaults, and how the layers combine.
//!
//! Layers, lowest to highest: built-in defaults < config file (`--config`, TOML) < environment <
//! command-line flags. clap merges the top two (a flag beats its environment variable); the file
//! fills whatever both left unset; [`Config::resolve`] applies defaults and validates. An invalid
//! value anywhere is a startup error naming the setting, never a silent fallback to the default.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::{Args, Parser, ValueEnum};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    name = "concord",
    version,
    about = "Concord: a self-hosted sync server for Yjs documents, operation logs and blobs."
)]
pub struct Cli {
    /// TOML file with any of the settings below (snake_case keys, e.g. `smtp_host = "..."`).
    #[arg(long, env = "CONCORD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub settings: Settings,
}

/// Every setting, all optional, so that each layer can say "not set here". Value names default to
/// the field names, which are the environment names, so clap's errors name what a deployer set.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Data directory: holds the database and `blobs/` [default: ./data]
    #[arg(long, env = "CONCORD_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Address to listen on; overrides HOST and PORT [default: 127.0.0.1:3030]
    #[arg(long, env = "CONCORD_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Interface to listen on; 0.0.0.0 exposes the server on every interface [default: 127.0.0.1]
    #[arg(long, env = "HOST")]
    pub host: Option<IpAddr>,

    /// Port to listen on [default: 3030]
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,

    /// SQLite database file [default: <data>/concord.db]
    #[arg(long, env = "DATABASE_PATH")]
    pub database_path: Option<PathBuf>,

    /// Public URL of the web app that magic links point at [default: http://localhost:5173]
    #[arg(long, env = "APP_BASE_URL")]
    pub app_base_url: Option<String>,

    /// Comma-separated browser origins allowed by CORS, or `*` [default: http://localhost:5173,http://localhost:1420]
    #[arg(long, env = "CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// SMTP server [default: smtp.resend.com]
    #[arg(long, env = "SMTP_HOST")]
    pub smtp_host: Option<String>,

    /// SMTP port [default: 465]
    #[arg(long, env = "SMTP_PORT")]
    pub smtp_port: Option<u16>,

    /// SMTP user; mail is sent only when user and password are both set (otherwise dev mode)
    #[arg(long, env = "SMTP_USERNAME")]
    pub smtp_username: Option<String>,

    /// SMTP password
    #[arg(long, env = "SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<Secret>,

    /// SMTP transport security [default: tls on port 465, starttls otherwise]
    #[arg(long, env = "SMTP_SECURITY", value_enum)]
    pub smtp_security: Option<SmtpSecurity>,

    /// Sender address [default: noreply@diaryx.org]
    #[arg(long, env = "SMTP_FROM_EMAIL")]
    pub smtp_from_email: Option<String>,

    /// Sender name [default: Diaryx]
    #[arg(long, env = "SMTP_FROM_NAME")]
    pub smtp_from_name: Option<String>,

    /// Lifetime of a Diaryx session token, in days [default: 30]
    #[arg(long, env = "SESSION_EXPIRY_DAYS")]
    pub session_expiry_days: Option<u32>,

    /// Lifetime of a magic link, in minutes [default: 15]
    #[arg(long, env = "MAGIC_LINK_EXPIRY_MINUTES")]
    pub magic_link_expiry_minutes: Option<u32>,

    /// Public URL of this server, used in confirmation and password-reset mails [default: http://<listen address>]
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Create or update this admin user at start (needs one of the admin password settings)
    #[arg(long, env = "CONCORD_ADMIN_USER", value_name = "NAME")]
    pub admin_user: Option<String>,

    /// Email address of the admin user [default: <admin-user>@localhost]
    #[arg(long, env = "CONCORD_ADMIN_EMAIL", value_name = "EMAIL")]
    pub admin_email: Option<String>,

    /// Admin password (visible in the process list: prefer the file, stdin or the environment)
    #[arg(long, env = "CONCORD_ADMIN_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub admin_pass: Option<Secret>,

    /// Read the admin password from the first line of this file
    #[arg(long, value_name = "FILE")]
    pub admin_pass_file: Option<PathBuf>,

    /// Read the admin password from the first line of standard input
    #[arg(long)]
    #[serde(default)]
    pub admin_pass_stdin: bool,

    /// Seconds between runs of the job that deletes expired tokens and sessions [default: 3600]
    #[arg(long, env = "CONCORD_CLEANUP_INTERVAL_SECS", value_name = "SECONDS")]
    pub cleanup_interval_secs: Option<u64>,

    /// Seconds a request body may send nothing before the request is refused (slow-body clients) [default: 30]
    #[arg(long, env = "CONCORD_BODY_IDLE_TIMEOUT_SECS", value_name = "SECONDS")]
    pub body_idle_timeout_secs: Option<u64>,
    /// Largest blob one upload may store, in bytes [default: 268435456 (256 MiB)]
    #[arg(long, env = "BLOB_MAX_BYTES")]
    pub blob_max_bytes: Option<u64>,

    /// Blob bytes one (user, vault) scope may reference [default: 4294967296 (4 GiB)]
    #[arg(long, env = "BLOB_VAULT_QUOTA_BYTES")]
    pub blob_vault_quota_bytes: Option<u64>,

    /// Blob bytes all of one user's vaults may reference together [default: 8589934592 (8 GiB)]
    #[arg(long, env = "BLOB_USER_QUOTA_BYTES")]
    pub blob_user_quota_bytes: Option<u64>,

    /// Log format [default: text]
    #[arg(long, env = "CONCORD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Largest WebSocket message a Yjs client may send, in bytes; larger ones close with 1009
    /// [default: 16777216]
    #[arg(long, env = "SYNC_MAX_FRAME_BYTES")]
    pub sync_max_frame_bytes: Option<u32>,

    /// Bytes of Yjs updates stored after a document's snapshot before they are compacted into a
    /// new snapshot [default: 1048576]
    #[arg(long, env = "SYNC_COMPACT_BYTES")]
    pub sync_compact_bytes: Option<u32>,

    // Sync limits (WebSockets and event streams).
    /// Seconds a WebSocket client may take to receive one message (or a pong) before it is closed
    /// as too slow (1013) [default: 60]
    #[arg(long, env = "SYNC_SEND_TIMEOUT_SECS", value_name = "SECONDS")]
    pub sync_send_timeout_secs: Option<u64>,

    /// Yjs WebSocket connections one user may hold open at once; more are refused with 429
    /// [default: 256]
    #[arg(long, env = "SYNC_MAX_CONNECTIONS_PER_USER")]
    pub sync_max_connections_per_user: Option<u32>,

    /// Operation-log event streams one user may hold open at once; more are refused with 429
    /// [default: 64]
    #[arg(long, env = "SYNC_MAX_STREAMS_PER_USER")]
    pub sync_max_streams_per_user: Option<u32>,
}

impl Settings {
    /// Fills every setting left unset here from `lower`.
    fn or(self, lower: Settings) -> Settings {
        Settings {
            data: self.data.or(lower.data),
            listen: self.listen.or(lower.listen),
            host: self.host.or(lower.host),
            port: self.port.or(lower.port),
            database_path: self.database_path.or(lower.database_path),
            app_base_url: self.app_base_url.or(lower.app_base_url),
            cors_origins: self.cors_origins.or(lower.cors_origins),
            smtp_host: self.smtp_host.or(lower.smtp_host),
            smtp_port: self.smtp_port.or(lower.smtp_port),
            smtp_username: self.smtp_username.or(lower.smtp_username),
            smtp_password: self.smtp_password.or(lower.smtp_password),
            smtp_security: self.smtp_security.or(lower.smtp_security),
            smtp_from_email: self.smtp_from_email.or(lower.smtp_from_email),
            smtp_from_name: self.smtp_from_name.or(lower.smtp_from_name),
            session_expiry_days: self.session_expiry_days.or(lower.session_expiry_days),
            magic_link_expiry_minutes: self.magic_link_expiry_minutes.or(lower.magic_link_expiry_minutes),
            public_url: self.public_url.or(lower.public_url),
            admin_user: self.admin_user.or(lower.admin_user),
            admin_email: self.admin_email.or(lower.admin_email),
            admin_pass: self.admin_pass.or(lower.admin_pass),
            admin_pass_file: self.admin_pass_file.or(lower.admin_pass_file),
            admin_pass_stdin: self.admin_pass_stdin || lower.admin_pass_stdin,
            cleanup_interval_secs: self.cleanup_interval_secs.or(lower.cleanup_interval_secs),
            body_idle_timeout_secs: self.body_idle_timeout_secs.or(lower.body_idle_timeout_secs),
            blob_max_bytes: self.blob_max_bytes.or(lower.blob_max_bytes),
            blob_vault_quota_bytes: self.blob_vault_quota_bytes.or(lower.blob_vault_quota_bytes),
            blob_user_quota_bytes: self.blob_user_quota_bytes.or(lower.blob_user_quota_bytes),
            log_format: self.log_format.or(lower.log_format),
            sync_max_frame_bytes: self.sync_max_frame_bytes.or(lower.sync_max_frame_bytes),
            sync_compact_bytes: self.sync_compact_bytes.or(lower.sync_compact_bytes),
            // Sync limits.
            sync_send_timeout_secs: self.sync_send_timeout_secs.or(lower.sync_send_timeout_secs),
            sync_max_connections_per_user: self.sync_max_connections_per_user.or(lower.sync_max_connections_per_user),
            sync_max_streams_per_user: self.sync_max_streams_per_user.or(lower.sync_max_streams_per_user),
        }
    }
}

/// A secret setting. `Debug` and `Display` never show it, so it cannot leak through logs.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Implicit TLS from the first byte (SMTPS).
    Tls,
    /// Plain connection upgraded with STARTTLS, which is required.
    Starttls,
    /// No encryption; only for a relay on a trusted network, and only when asked for explicitly.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Username and password; `None` means dev mode: no mail is sent and links are returned and logged.
    pub credentials: Option<(String, Secret)>,
    pub from_email: String,
    pub from_name: String,
}

/// Where the bootstrap admin's password comes from; read once at start.
#[derive(Debug, Clone)]
pub enum AdminPassword {
    Given(Secret),
    File(PathBuf),
    Stdin,
}

/// `--admin-user` and its password: the admin created or updated at start.
#[derive(Debug, Clone)]
pub struct AdminBootstrap {
    pub username: String,
    pub email: String,
    pub password: AdminPassword,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub database_path: PathBuf,
    /// Without a trailing slash, so paths can be appended.
    pub app_base_url: String,
    /// `None` allows any origin (`*`).
    pub cors_origins: Option<Vec<String>>,
    pub smtp: SmtpConfig,
    pub session_expiry_days: u32,
    pub magic_link_expiry_minutes: u32,
    /// This server's own URL, without a trailing slash, if set (see [`Config::public_url`]).
    pub public_url: Option<String>,
    pub admin: Option<AdminBootstrap>,
    pub cleanup_interval_secs: u64,
    /// Longest silence allowed between two chunks of a request body.
    pub body_idle_timeout: std::time::Duration,
    pub log_format: LogFormat,
    pub blobs: BlobLimits,
    pub sync: SyncSettings,
}

/// Limits of the Yjs sync endpoint.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub max_frame_bytes: usize,
    pub compact_bytes: usize,
    // Sync limits.
    /// Longest a client may take to receive one message or pong; then it is closed as too slow.
    pub send_timeout: std::time::Duration,
    /// Open WebSocket connections per user.
    pub max_connections_per_user: usize,
    /// Open event streams per user.
    pub max_streams_per_user: usize,
}

/// Size limit and quotas for blob uploads (the Verstak server's values by default).
#[derive(Debug, Clone, Copy)]
pub struct BlobLimits {
    /// Largest single blob; larger uploads get 413 `blob_too_large`.
    pub max_bytes: u64,
    pub quota: concord_core::blob::BlobQuota,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for {setting}: {reason}")]
    Invalid { setting: &'static str, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting, reason: reason.into() }
}

impl Config {
    /// Combines the command line (flags and environment, as clap parsed them) with the config
    /// file it names, then applies defaults and validates.
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        Config::resolve(cli.settings.or(file))
    }

    pub fn resolve(s: Settings) -> Result<Config, ConfigError> {
        let data_dir = s.data.unwrap_or_else(|| PathBuf::from("./data"));
        let listen = s
            .listen
            .unwrap_or_else(|| SocketAddr::new(s.host.unwrap_or(IpAddr::from([127, 0, 0, 1])), s.port.unwrap_or(3030)));
        let database_path = s.database_path.unwrap_or_else(|| data_dir.join("concord.db"));

        let app_base_url = s.app_base_url.unwrap_or_else(|| "http://localhost:5173".into());
        if !(app_base_url.starts_with("http://") || app_base_url.starts_with("https://")) {
            return Err(invalid("APP_BASE_URL", "must start with http:// or https://"));
        }
        let app_base_url = app_base_url.trim_end_matches('/').to_owned();

        let cors_origins =
            parse_origins(&s.cors_origins.unwrap_or_else(|| "http://localhost:5173,http://localhost:1420".into()))?;

        let port = s.smtp_port.unwrap_or(465);
        let credentials = match (s.smtp_username.filter(|u| !u.is_empty()), s.smtp_password.filter(|p| !p.0.is_empty()))
        {
            (Some(user), Some(password)) => Some((user, password)),
            _ => None,
        };
        let from_email = s.smtp_from_email.unwrap_or_else(|| "noreply@diaryx.org".into());
        concord_core::email::Email::parse(&from_email)
            .map_err(|_| invalid("SMTP_FROM_EMAIL", "not an email address"))?;
        let from_name = s.smtp_from_name.unwrap_or_else(|| "Diaryx".into());
        if from_name.chars().any(char::is_control) {
            return Err(invalid("SMTP_FROM_NAME", "must not contain control characters"));
        }
        let smtp = SmtpConfig {
            host: s.smtp_host.unwrap_or_else(|| "smtp.resend.com".into()),
            port,
            security: s.smtp_security.unwrap_or(if port == 465 { SmtpSecurity::Tls } else { SmtpSecurity::Starttls }),
            credentials,
            from_email,
            from_name,
        };

        let session_expiry_days = positive("SESSION_EXPIRY_DAYS", s.session_expiry_days.unwrap_or(30))?;
        let magic_link_expiry_minutes =
            positive("MAGIC_LINK_EXPIRY_MINUTES", s.magic_link_expiry_minutes.unwrap_or(15))?;

        if let Some(url) = &s.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("PUBLIC_URL", "must start with http:// or https://"));
        }
        let public_url = s.public_url.map(|url| url.trim_end_matches('/').to_owned());
        let admin = admin_bootstrap(s.admin_user, s.admin_email, s.admin_pass, s.admin_pass_file, s.admin_pass_stdin)?;
        let cleanup_interval_secs = positive("CONCORD_CLEANUP_INTERVAL_SECS", s.cleanup_interval_secs.unwrap_or(3600))?;
        let body_idle_timeout = std::time::Duration::from_secs(positive(
            "CONCORD_BODY_IDLE_TIMEOUT_SECS",
            s.body_idle_timeout_secs.unwrap_or(30),
        )?);
        let blobs = BlobLimits {
            max_bytes: positive("BLOB_MAX_BYTES", s.blob_max_bytes.unwrap_or(256 << 20))?,
            quota: concord_core::blob::BlobQuota {
                per_vault: positive("BLOB_VAULT_QUOTA_BYTES", s.blob_vault_quota_bytes.unwrap_or(4 << 30))?,
                per_user: positive("BLOB_USER_QUOTA_BYTES", s.blob_user_quota_bytes.unwrap_or(8 << 30))?,
            },
        };

        Ok(Config {
            data_dir,
            listen,
            database_path,
            app_base_url,
            cors_origins,
            smtp,
            session_expiry_days,
            magic_link_expiry_minutes,
            public_url,
            admin,
            cleanup_interval_secs,
            body_idle_timeout,
            log_format: s.log_format.unwrap_or(LogFormat::Text),
            blobs,
            sync: SyncSettings {
                max_frame_bytes: positive("SYNC_MAX_FRAME_BYTES", s.sync_max_frame_bytes.unwrap_or(16 << 20))? as usize,
                compact_bytes: positive("SYNC_COMPACT_BYTES", s.sync_compact_bytes.unwrap_or(1 << 20))? as usize,
                // Sync limits. A minute is far longer than any live client takes to take one message
                // (or the 127-byte pong of its own ping), yet bounds what a client that never reads
                // can make the server hold. 256 documents and 64 event streams per user are many
                // times what a person's devices open (one stream per device and vault, a handful of
                // documents per open window), while a single account can no longer exhaust the
                // server's connections.
                send_timeout: std::time::Duration::from_secs(positive(
                    "SYNC_SEND_TIMEOUT_SECS",
                    s.sync_send_timeout_secs.unwrap_or(60),
                )?),
                max_connections_per_user: positive(
                    "SYNC_MAX_CONNECTIONS_PER_USER",
                    s.sync_max_connections_per_user.unwrap_or(256),
                )? as usize,
                max_streams_per_user: positive("SYNC_MAX_STREAMS_PER_USER", s.sync_max_streams_per_user.unwrap_or(64))?
                    as usize,
            },
        })
    }

    /// The URL links to this server use (confirm and reset mails): `PUBLIC_URL`, else the
    /// listen address (main sets it to the bound address, so port 0 resolves to the real port).
    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen))
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }
}

/// Exactly one password source goes with `--admin-user`, and none without it: a password given
/// for no user, or two passwords, is a mistake worth stopping for.
fn admin_bootstrap(
    user: Option<String>,
    email: Option<String>,
    pass: Option<Secret>,
    file: Option<PathBuf>,
    stdin: bool,
) -> Result<Option<AdminBootstrap>, ConfigError> {
    let mut sources: Vec<AdminPassword> = Vec::new();
    sources.extend(pass.map(AdminPassword::Given));
    sources.extend(file.map(AdminPassword::File));
    if stdin {
        sources.push(AdminPassword::Stdin);
    }
    let Some(user) = user else {
        if sources.is_empty() && email.is_none() {
            return Ok(None);
        }
        return Err(invalid("--admin-user", "an admin password or email was given without --admin-user"));
    };
    let username = concord_core::username::Username::parse(&user)
        .map_err(|e| invalid("--admin-user", e.to_string()))?
        .as_str()
        .to_owned();
    let email = email.unwrap_or_else(|| format!("{username}@localhost"));
    let email = concord_core::email::Email::parse(&email)
        .map_err(|_| invalid("--admin-email", "not an email address"))?
        .as_str()
        .to_owned();
    if sources.len() != 1 {
        return Err(invalid(
            "--admin-user",
            "needs exactly one of --admin-pass, --admin-pass-file, --admin-pass-stdin or CONCORD_ADMIN_PASSWORD",
        ));
    }
    Ok(Some(AdminBootstrap { username, email, password: sources.remove(0) }))
}

fn positive<T: Default + PartialEq>(setting: &'static str, value: T) -> Result<T, ConfigError> {
    if value == T::default() { Err(invalid(setting, "must be at least 1")) } else { Ok(value) }
}

fn parse_origins(list: &str) -> Result<Option<Vec<String>>, ConfigError> {
    if list.trim() == "*" {
        return Ok(None);
    }
    let origins: Vec<String> =
        list.split(',').map(str::trim).filter(|o| !o.is_empty()).map(|o| o.trim_end_matches('/').to_owned()).collect();
    for origin in &origins {
        let scheme_ok = origin.starts_with("http://") || origin.starts_with("https://");
        if !scheme_ok || origin.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("CORS_ORIGINS", format!("{origin:?} is not an origin like https://app.example.com")));
        }
    }
    Ok(Some(origins))
}

fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::File { path: path.into(), reason: e.to_string() })?;
    toml::from_str(&text).map_err(|e| ConfigError::File { path: path.into(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Settings {
        Cli::try_parse_from(std::iter::once("concord").chain(args.iter().copied())).expect("valid arguments").settings
    }

    #[test]
    fn defaults_match_the_reference() {
        let c = Config::resolve(Settings::default()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:3030".parse().unwrap());
        assert_eq!(c.database_path, PathBuf::from("./data/concord.db"));
        assert_eq!(c.app_base_url, "http://localhost:5173");
        assert_eq!(c.cors_origins, Some(vec!["http://localhost:5173".into(), "http://localhost:1420".into()]));
        assert_eq!((c.smtp.port, c.smtp.security), (465, SmtpSecurity::Tls));
        assert!(c.smtp.credentials.is_none(), "no credentials means dev mode");
        assert_eq!((c.session_expiry_days, c.magic_link_expiry_minutes), (30, 15));
        assert_eq!((c.blobs.max_bytes, c.blobs.quota.per_vault, c.blobs.quota.per_user), (256 << 20, 4 << 30, 8 << 30));
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file: Settings = toml::from_str("port = 4000\nsmtp_port = 587\nsmtp_from_name = \"File\"").unwrap();
        let c = Config::resolve(parse(&["--port", "5000"]).or(file)).unwrap();
        assert_eq!(c.listen.port(), 5000);
        assert_eq!((c.smtp.port, c.smtp.security), (587, SmtpSecurity::Starttls));
        assert_eq!(c.smtp.from_name, "File");
    }

    #[test]
    fn listen_overrides_host_and_port() {
        let c = Config::resolve(parse(&["--listen", "0.0.0.0:9", "--port", "10"])).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9".parse().unwrap());
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (settings, name) in [
            (Settings { session_expiry_days: Some(0), ..Settings::default() }, "SESSION_EXPIRY_DAYS"),
            (Settings { app_base_url: Some("localhost".into()), ..Settings::default() }, "APP_BASE_URL"),
            (Settings { cors_origins: Some("localhost:5173".into()), ..Settings::default() }, "CORS_ORIGINS"),
            (Settings { smtp_from_email: Some("nobody".into()), ..Settings::default() }, "SMTP_FROM_EMAIL"),
            (Settings { blob_max_bytes: Some(0), ..Settings::default() }, "BLOB_MAX_BYTES"),
            (Settings { sync_send_timeout_secs: Some(0), ..Settings::default() }, "SYNC_SEND_TIMEOUT_SECS"),
            (
                Settings { sync_max_connections_per_user: Some(0), ..Settings::default() },
                "SYNC_MAX_CONNECTIONS_PER_USER",
            ),
            (Settings { sync_max_streams_per_user: Some(0), ..Settings::default() }, "SYNC_MAX_STREAMS_PER_USER"),
        ] {
            let err = Config::resolve(settings).unwrap_err().to_string();
            assert!(err.contains(name), "{err:?} should name {name}");
        }
        assert!(toml::from_str::<Settings>("prot = 1").is_err(), "unknown keys in the file are refused");
    }

    #[test]
    fn admin_bootstrap_needs_exactly_one_password_source() {
        let c = Config::resolve(parse(&["--admin-user", "root", "--admin-pass-stdin"])).unwrap();
        let admin = c.admin.unwrap();
        assert_eq!((admin.username.as_str(), admin.email.as_str()), ("root", "root@localhost"));
        assert!(matches!(admin.password, AdminPassword::Stdin));
        for args in [
            &["--admin-user", "root"][..],
            &["--admin-user", "root", "--admin-pass", "a", "--admin-pass-file", "f"],
            &["--admin-pass", "secret-password"],
            &["--admin-user", "no spaces", "--admin-pass", "x"],
        ] {
            let err = Config::resolve(parse(args)).unwrap_err().to_string();
            assert!(err.contains("--admin-user"), "{args:?}: {err}");
        }
        let c = Config::resolve(parse(&["--admin-user", "root", "--admin-pass", "hunter22"])).unwrap();
        assert!(!format!("{c:?}").contains("hunter22"));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = Config::resolve(parse(&["--smtp-username", "u", "--smtp-password", "hunter2"])).unwrap();
        assert!(c.smtp.credentials.is_some());
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
