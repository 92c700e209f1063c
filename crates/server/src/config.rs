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

    /// SMTP relay; setting it chooses mail mode smtp [default: smtp.resend.com, only with SMTP_USERNAME]
    #[arg(long, env = "SMTP_HOST")]
    pub smtp_host: Option<String>,

    /// SMTP port [default: 465]
    #[arg(long, env = "SMTP_PORT")]
    pub smtp_port: Option<u16>,

    /// SMTP user, for relays that need a login (then SMTP_PASSWORD too); without both, mail goes to
    /// SMTP_HOST unauthenticated
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

    // Edge (mail mode, connections):
    /// How sign-in and confirmation links reach people: `smtp` mails them, `dev` hands them to
    /// whoever asks (in responses and logs) [default: smtp if SMTP_HOST, SMTP_USERNAME or
    /// SMTP_PASSWORD is set, else dev on a loopback address with local PUBLIC_URL and APP_BASE_URL;
    /// required otherwise]
    #[arg(long, env = "CONCORD_MAIL", value_enum)]
    pub mail: Option<MailMode>,

    /// Seconds a new connection may stay silent before it is closed (its first request must have
    /// begun by then) [default: 10]
    #[arg(long, env = "CONCORD_FIRST_BYTE_TIMEOUT_SECS", value_name = "SECONDS")]
    pub first_byte_timeout_secs: Option<u64>,

    /// Open connections the server keeps at once; when full, the longest-silent one makes room,
    /// and if every one has sent a request, new ones get 503 [default: (open-file limit - 128) * 3/4]
    #[arg(long, env = "CONCORD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Open connections one client address keeps at once (IPv6: per /64) [default: 256]
    #[arg(long, env = "CONCORD_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// Exempt loopback clients (a reverse proxy on this host) from the per-address cap [default: true]
    #[arg(long, env = "CONCORD_PER_IP_EXEMPT_LOOPBACK", value_name = "BOOL")]
    pub per_ip_exempt_loopback: Option<bool>,
    // Accounts: the sign-in code key and the per-user caps.
    /// File holding the server secret that keys sign-in code hashes (64 hex characters); it must
    /// exist when set [default: <data>/secret.key, created with mode 0600 on first start]
    #[arg(long, env = "CONCORD_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// Live devices (paired clients and sign-in sessions) one user may have; at the cap a new
    /// sign-in revokes the least recently seen session, a new pairing is refused [default: 100]
    #[arg(long, env = "CONCORD_MAX_DEVICES_PER_USER", value_name = "N")]
    pub max_devices_per_user: Option<u32>,

    /// Workspaces one user may have, besides `default` [default: 100]
    #[arg(long, env = "CONCORD_MAX_WORKSPACES_PER_USER", value_name = "N")]
    pub max_workspaces_per_user: Option<u32>,
    // Operations (backups).
    /// Folder for scheduled backups; unset means no scheduled backups
    #[arg(long, env = "CONCORD_BACKUP_DIR", value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Time between scheduled backups: a number with s, m, h or d, e.g. `6h` [default: 24h]
    #[arg(long, env = "CONCORD_BACKUP_EVERY", value_name = "INTERVAL")]
    pub backup_every: Option<String>,

    /// Scheduled backups kept in the folder; older ones are deleted [default: 7]
    #[arg(long, env = "CONCORD_BACKUP_KEEP", value_name = "N")]
    pub backup_keep: Option<u32>,
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
    // Metrics and maintenance.
    /// Bearer token (at least 16 characters) that lets non-loopback peers read `/metrics`; unset
    /// means loopback only
    #[arg(long, env = "CONCORD_METRICS_TOKEN", value_name = "TOKEN")]
    pub metrics_token: Option<Secret>,

    /// Seconds between runs of the maintenance jobs (WAL checkpoint, old idempotency keys, idle
    /// document compaction) [default: 600]
    #[arg(long, env = "CONCORD_MAINTENANCE_INTERVAL_SECS", value_name = "SECONDS")]
    pub maintenance_interval_secs: Option<u64>,
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
            // Edge:
            mail: self.mail.or(lower.mail),
            first_byte_timeout_secs: self.first_byte_timeout_secs.or(lower.first_byte_timeout_secs),
            max_connections: self.max_connections.or(lower.max_connections),
            max_connections_per_ip: self.max_connections_per_ip.or(lower.max_connections_per_ip),
            per_ip_exempt_loopback: self.per_ip_exempt_loopback.or(lower.per_ip_exempt_loopback),
            // Accounts.
            secret_file: self.secret_file.or(lower.secret_file),
            max_devices_per_user: self.max_devices_per_user.or(lower.max_devices_per_user),
            max_workspaces_per_user: self.max_workspaces_per_user.or(lower.max_workspaces_per_user),
            backup_dir: self.backup_dir.or(lower.backup_dir),
            backup_every: self.backup_every.or(lower.backup_every),
            backup_keep: self.backup_keep.or(lower.backup_keep),
            // Sync limits.
            sync_send_timeout_secs: self.sync_send_timeout_secs.or(lower.sync_send_timeout_secs),
            sync_max_connections_per_user: self.sync_max_connections_per_user.or(lower.sync_max_connections_per_user),
            sync_max_streams_per_user: self.sync_max_streams_per_user.or(lower.sync_max_streams_per_user),
            // Metrics and maintenance.
            metrics_token: self.metrics_token.or(lower.metrics_token),
            maintenance_interval_secs: self.maintenance_interval_secs.or(lower.maintenance_interval_secs),
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

/// The `--mail` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailMode {
    /// Send mail through an SMTP relay.
    Smtp,
    /// Send nothing: links and codes go back in the response and into the log. Anyone who can
    /// reach the server can then sign in as anyone, so it is the default only on loopback.
    Dev,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How mail goes out, resolved from `--mail` and the SMTP settings.
#[derive(Debug, Clone)]
pub enum MailConfig {
    /// See [`MailMode::Dev`].
    Dev,
    Smtp(SmtpConfig),
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Username and password; `None` is a relay that takes mail without a login.
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
    pub mail: MailConfig,
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
    // Edge:
    pub connections: ConnectionSettings,
    // Accounts.
    /// The sign-in code key file; `None` means `<data>/secret.key`, created if missing (see
    /// [`Config::secret_path`]).
    pub secret_file: Option<PathBuf>,
    pub caps: AccountCaps,
    /// Scheduled backups, if `--backup-dir` is set (operations).
    pub backup: Option<BackupSchedule>,
    // Metrics and maintenance.
    /// Bearer token for `/metrics` from non-loopback peers; `None`: loopback peers only.
    pub metrics_token: Option<Secret>,
    /// Time between runs of the maintenance jobs (`ops::jobs`).
    pub maintenance_interval: std::time::Duration,
}

/// Per-user caps, enforced by the store in the inserting statement.
#[derive(Debug, Clone, Copy)]
pub struct AccountCaps {
    pub devices_per_user: u32,
    pub workspaces_per_user: u32,
}

/// Limits of the accept loop (see `serve.rs`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    /// How long a new connection may send nothing before it is closed.
    pub first_byte_timeout: std::time::Duration,
    /// `None`: derived from the open-file limit at start (`serve::connection_limits`).
    pub max_total: Option<usize>,
    pub max_per_ip: usize,
    /// Loopback peers are counted in the total only, not per address.
    pub exempt_loopback: bool,
}

/// Where and how often the server backs itself up, and how many archives it keeps.
#[derive(Debug, Clone)]
pub struct BackupSchedule {
    pub dir: PathBuf,
    pub every: std::time::Duration,
    pub keep: usize,
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
    #[error("{setting} must be set: {reason}")]
    Missing { setting: &'static str, reason: String },
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
        let listen = s
            .listen
            .unwrap_or_else(|| SocketAddr::new(s.host.unwrap_or(IpAddr::from([127, 0, 0, 1])), s.port.unwrap_or(3030)));
        // Before any field moves out of `s`: the mail mode reads several of them.
        let mail = mail_config(&s, listen)?;
        let data_dir = s.data.unwrap_or_else(|| PathBuf::from("./data"));
        let database_path = s.database_path.unwrap_or_else(|| data_dir.join("concord.db"));

        let app_base_url = s.app_base_url.unwrap_or_else(|| "http://localhost:5173".into());
        if !(app_base_url.starts_with("http://") || app_base_url.starts_with("https://")) {
            return Err(invalid("APP_BASE_URL", "must start with http:// or https://"));
        }
        let app_base_url = app_base_url.trim_end_matches('/').to_owned();

        let cors_origins =
            parse_origins(&s.cors_origins.unwrap_or_else(|| "http://localhost:5173,http://localhost:1420".into()))?;

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
            mail,
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
            connections: ConnectionSettings {
                first_byte_timeout: std::time::Duration::from_secs(positive(
                    "CONCORD_FIRST_BYTE_TIMEOUT_SECS",
                    s.first_byte_timeout_secs.unwrap_or(10),
                )?),
                max_total: s.max_connections.map(|n| positive("CONCORD_MAX_CONNECTIONS", n)).transpose()?,
                max_per_ip: positive("CONCORD_MAX_CONNECTIONS_PER_IP", s.max_connections_per_ip.unwrap_or(256))?,
                exempt_loopback: s.per_ip_exempt_loopback.unwrap_or(true),
            },
            secret_file: s.secret_file,
            caps: AccountCaps {
                devices_per_user: positive("CONCORD_MAX_DEVICES_PER_USER", s.max_devices_per_user.unwrap_or(100))?,
                workspaces_per_user: positive(
                    "CONCORD_MAX_WORKSPACES_PER_USER",
                    s.max_workspaces_per_user.unwrap_or(100),
                )?,
            },
            backup: backup_schedule(s.backup_dir, s.backup_every, s.backup_keep)?,
            // Metrics and maintenance.
            metrics_token: metrics_token(s.metrics_token)?,
            maintenance_interval: std::time::Duration::from_secs(positive(
                "CONCORD_MAINTENANCE_INTERVAL_SECS",
                s.maintenance_interval_secs.unwrap_or(600),
            )?),
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

    /// Where the sign-in code key lives: `CONCORD_SECRET_FILE`, else `<data>/secret.key`.
    pub fn secret_path(&self) -> PathBuf {
        self.secret_file.clone().unwrap_or_else(|| self.data_dir.join("secret.key"))
    }
}

/// The mail mode and, for smtp, the relay. Dev mode hands sign-in links to anyone who asks, so it
/// is chosen by default only on a loopback address, and never because a setting was forgotten:
/// any SMTP setting means smtp, and half a login is an error rather than no login.
fn mail_config(s: &Settings, listen: SocketAddr) -> Result<MailConfig, ConfigError> {
    let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let host = nonempty(&s.smtp_host);
    let username = nonempty(&s.smtp_username);
    let password = s.smtp_password.clone().filter(|p| !p.0.is_empty());
    // The sender is checked in every mode, so switching to smtp later cannot reveal a bad one.
    let from_email = s.smtp_from_email.clone().unwrap_or_else(|| "noreply@diaryx.org".into());
    concord_core::email::Email::parse(&from_email).map_err(|_| invalid("SMTP_FROM_EMAIL", "not an email address"))?;
    let from_name = s.smtp_from_name.clone().unwrap_or_else(|| "Diaryx".into());
    if from_name.chars().any(char::is_control) {
        return Err(invalid("SMTP_FROM_NAME", "must not contain control characters"));
    }
    let any_smtp = host.is_some() || username.is_some() || password.is_some();
    // Behind a reverse proxy the listen address is loopback too; a public URL says otherwise.
    let exposed = if !listen.ip().to_canonical().is_loopback() {
        Some(format!("{listen} is not a loopback address"))
    } else {
        [("PUBLIC_URL", &s.public_url), ("APP_BASE_URL", &s.app_base_url)].into_iter().find_map(|(name, url)| {
            let url = url.as_deref()?;
            (!is_local_url(url)).then(|| format!("{name} {url} is not on this machine"))
        })
    };
    let mode = match (s.mail, exposed) {
        (Some(mode), _) => mode,
        (None, _) if any_smtp => MailMode::Smtp,
        (None, None) => MailMode::Dev,
        (None, Some(exposed)) => {
            return Err(ConfigError::Missing {
                setting: "CONCORD_MAIL (--mail)",
                reason: format!(
                    "{exposed}, so sign-in links must go out by mail: set SMTP_HOST (and SMTP_USERNAME and \
                     SMTP_PASSWORD if the relay wants a login), or set CONCORD_MAIL=dev to hand links to whoever asks"
                ),
            });
        }
    };
    if mode == MailMode::Dev {
        return Ok(MailConfig::Dev);
    }
    let credentials = match (username, password) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::Missing { setting: "SMTP_PASSWORD", reason: "SMTP_USERNAME is set".into() });
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing { setting: "SMTP_USERNAME", reason: "SMTP_PASSWORD is set".into() });
        }
    };
    // The reference's relay needs a login; a relay without one must be named.
    let host = match (host, &credentials) {
        (Some(host), _) => host,
        (None, Some(_)) => "smtp.resend.com".to_owned(),
        (None, None) => {
            return Err(ConfigError::Missing {
                setting: "SMTP_HOST",
                reason: "mail mode smtp needs a relay (or SMTP_USERNAME and SMTP_PASSWORD for smtp.resend.com)".into(),
            });
        }
    };
    let port = s.smtp_port.unwrap_or(465);
    Ok(MailConfig::Smtp(SmtpConfig {
        host,
        port,
        security: s.smtp_security.unwrap_or(if port == 465 { SmtpSecurity::Tls } else { SmtpSecurity::Starttls }),
        credentials,
        from_email,
        from_name,
    }))
}

/// Whether an `http(s)://` URL names this machine: `localhost` (and `*.localhost`) or a loopback IP.
fn is_local_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    }
    .to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
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

/// Metrics and maintenance: an empty token means none; a short one is refused, since it guards
/// activity data from the whole network.
fn metrics_token(token: Option<Secret>) -> Result<Option<Secret>, ConfigError> {
    match token.filter(|t| !t.0.is_empty()) {
        Some(t) if t.0.len() < 16 => Err(invalid("CONCORD_METRICS_TOKEN", "must be at least 16 characters")),
        token => Ok(token),
    }
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

/// The backup settings: an interval or a count without a folder is a mistake worth stopping for.
fn backup_schedule(
    dir: Option<PathBuf>,
    every: Option<String>,
    keep: Option<u32>,
) -> Result<Option<BackupSchedule>, ConfigError> {
    let Some(dir) = dir else {
        if every.is_some() || keep.is_some() {
            return Err(invalid("CONCORD_BACKUP_DIR", "backup interval or count given without a backup folder"));
        }
        return Ok(None);
    };
    let every = match every {
        Some(text) => parse_interval(&text).ok_or_else(|| {
            invalid("CONCORD_BACKUP_EVERY", format!("{text:?} is not an interval like 30m, 6h or 1d"))
        })?,
        None => std::time::Duration::from_secs(86_400),
    };
    let keep = positive("CONCORD_BACKUP_KEEP", keep.unwrap_or(7))? as usize;
    Ok(Some(BackupSchedule { dir, every, keep }))
}

/// `90s`, `15m`, `6h`, `1d` (a positive whole number and one unit).
fn parse_interval(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let seconds_per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let count: u64 = text[..text.len() - 1].parse().ok().filter(|n| *n > 0)?;
    count.checked_mul(seconds_per).map(std::time::Duration::from_secs)
}

fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::File { path: path.into(), reason: e.to_string() })?;
    toml::from_str(&text).map_err(|e| ConfigError::File { path: path.into(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(c: &Config) -> &SmtpConfig {
        match &c.mail {
            MailConfig::Smtp(smtp) => smtp,
            MailConfig::Dev => panic!("expected mail mode smtp"),
        }
    }

    /// What the mail settings resolve to: `Ok((mode, host, has_login))`, or the setting an error names.
    fn check_mail(args: &[&str], expected: Result<(&str, &str, bool), &str>) {
        let got = Config::resolve(parse(args)).map(|c| match c.mail {
            MailConfig::Dev => ("dev", String::new(), false),
            MailConfig::Smtp(smtp) => ("smtp", smtp.host, smtp.credentials.is_some()),
        });
        match (got, expected) {
            (Ok((mode, host, login)), Ok(want)) => assert_eq!((mode, host.as_str(), login), want, "{args:?}"),
            (Err(err), Err(setting)) => {
                assert!(err.to_string().contains(setting), "{args:?}: {err} should name {setting}")
            }
            (got, want) => panic!("{args:?}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn local_urls_are_told_apart() {
        for (url, local) in [
            ("http://localhost:5173", true),
            ("http://LOCALHOST", true),
            ("http://app.localhost:1420/x", true),
            ("http://127.0.0.1:3030", true),
            ("http://[::1]:3030/", true),
            ("http://user@localhost", true),
            ("https://sync.example.com", false),
            ("https://localhost.example.com", false),
            ("http://[2001:db8::1]:80", false),
            ("http://10.0.0.1", false),
            ("https://evil.com?localhost", false),
            ("https://localhost@evil.com", false),
        ] {
            assert_eq!(is_local_url(url), local, "{url}");
        }
    }

    #[test]
    fn mail_mode_is_explicit_off_loopback() {
        // Loopback without settings: dev, so `cargo run` works as it is.
        check_mail(&[], Ok(("dev", "", false)));
        check_mail(&["--listen", "[::1]:3030"], Ok(("dev", "", false)));
        check_mail(&["--listen", "127.0.0.2:3030"], Ok(("dev", "", false)));
        // Anywhere else, no mail settings is an error naming the setting; dev must be asked for.
        check_mail(&["--host", "0.0.0.0"], Err("CONCORD_MAIL"));
        check_mail(&["--listen", "[::]:3030"], Err("--mail"));
        check_mail(&["--listen", "192.168.1.5:3030"], Err("CONCORD_MAIL"));
        check_mail(&["--host", "0.0.0.0", "--mail", "dev"], Ok(("dev", "", false)));
        check_mail(&["--host", "0.0.0.0", "--mail", "dev", "--smtp-host", "relay"], Ok(("dev", "", false)));
        // Any SMTP setting means smtp, on loopback too: a host alone is a relay without a login.
        check_mail(&["--smtp-host", "relay"], Ok(("smtp", "relay", false)));
        check_mail(&["--host", "0.0.0.0", "--smtp-host", "relay"], Ok(("smtp", "relay", false)));
        check_mail(&["--smtp-username", "u", "--smtp-password", "p"], Ok(("smtp", "smtp.resend.com", true)));
        check_mail(
            &["--smtp-host", "relay", "--smtp-username", "u", "--smtp-password", "p"],
            Ok(("smtp", "relay", true)),
        );
        // Half a login, or smtp with nowhere to send, is refused, naming what is missing.
        check_mail(&["--smtp-host", "relay", "--smtp-username", "u"], Err("SMTP_PASSWORD"));
        check_mail(&["--smtp-host", "relay", "--smtp-password", "p"], Err("SMTP_USERNAME"));
        check_mail(&["--mail", "dev", "--smtp-username", "u"], Ok(("dev", "", false)));
        check_mail(&["--mail", "smtp"], Err("SMTP_HOST"));
        // Behind a reverse proxy on this machine: a public URL elsewhere means exposed all the same.
        check_mail(&["--public-url", "https://sync.example.com"], Err("CONCORD_MAIL"));
        check_mail(&["--app-base-url", "https://app.example.com/"], Err("CONCORD_MAIL"));
        check_mail(&["--public-url", "https://sync.example.com", "--mail", "dev"], Ok(("dev", "", false)));
        check_mail(&["--public-url", "https://sync.example.com", "--smtp-host", "relay"], Ok(("smtp", "relay", false)));
        check_mail(
            &["--public-url", "http://localhost:3030", "--app-base-url", "http://127.0.0.1:5173"],
            Ok(("dev", "", false)),
        );
        // Empty values count as unset (templated environment files produce them).
        check_mail(&["--smtp-host", "", "--smtp-username", ""], Ok(("dev", "", false)));
        let file: Settings = toml::from_str("mail = \"dev\"\nhost = \"0.0.0.0\"").unwrap();
        assert!(matches!(Config::resolve(file).unwrap().mail, MailConfig::Dev), "the file's `mail` key");
    }

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
        assert!(matches!(c.mail, MailConfig::Dev), "no mail settings on loopback means dev mode");
        assert_eq!((c.session_expiry_days, c.magic_link_expiry_minutes), (30, 15));
        assert_eq!((c.blobs.max_bytes, c.blobs.quota.per_vault, c.blobs.quota.per_user), (256 << 20, 4 << 30, 8 << 30));
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file: Settings =
            toml::from_str("port = 4000\nsmtp_host = \"relay\"\nsmtp_port = 587\nsmtp_from_name = \"File\"").unwrap();
        let c = Config::resolve(parse(&["--port", "5000"]).or(file)).unwrap();
        assert_eq!(c.listen.port(), 5000);
        let smtp = smtp(&c);
        assert_eq!((smtp.port, smtp.security), (587, SmtpSecurity::Starttls));
        assert_eq!(smtp.from_name, "File");
    }

    #[test]
    fn listen_overrides_host_and_port() {
        let c = Config::resolve(parse(&["--listen", "0.0.0.0:9", "--port", "10", "--mail", "dev"])).unwrap();
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
            (Settings { max_connections: Some(0), ..Settings::default() }, "CONCORD_MAX_CONNECTIONS"),
            (Settings { max_connections_per_ip: Some(0), ..Settings::default() }, "CONCORD_MAX_CONNECTIONS_PER_IP"),
            (Settings { first_byte_timeout_secs: Some(0), ..Settings::default() }, "CONCORD_FIRST_BYTE_TIMEOUT_SECS"),
            (Settings { max_devices_per_user: Some(0), ..Settings::default() }, "CONCORD_MAX_DEVICES_PER_USER"),
            (Settings { max_workspaces_per_user: Some(0), ..Settings::default() }, "CONCORD_MAX_WORKSPACES_PER_USER"),
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
    fn backup_settings_need_a_folder_and_a_valid_interval() {
        assert!(Config::resolve(Settings::default()).unwrap().backup.is_none());
        let c = Config::resolve(parse(&["--backup-dir", "/b"])).unwrap().backup.unwrap();
        assert_eq!((c.dir, c.every.as_secs(), c.keep), (PathBuf::from("/b"), 86_400, 7));
        for (interval, secs) in [("90s", Some(90)), ("15m", Some(900)), ("6h", Some(21_600)), ("2d", Some(172_800))]
            .into_iter()
            .chain([("0h", None), ("h", None), ("6", None), ("6w", None), ("-1s", None), ("1.5h", None)])
        {
            assert_eq!(parse_interval(interval).map(|d| d.as_secs()), secs, "{interval}");
        }
        for args in [&["--backup-every", "1h"][..], &["--backup-dir", "/b", "--backup-every", "soon"]] {
            let err = Config::resolve(parse(args)).unwrap_err().to_string();
            assert!(err.contains("CONCORD_BACKUP"), "{args:?}: {err}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = Config::resolve(parse(&["--smtp-username", "u", "--smtp-password", "hunter2"])).unwrap();
        assert!(smtp(&c).credentials.is_some());
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
