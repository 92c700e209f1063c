//! Settings: what can be configured, their defaults, and how the layers combine.
//!
//! Layers, lowest to highest: built-in defaults < config file (`--config`, TOML) < environment <
//! command-line flags. clap merges the top two (a flag beats its environment variable); the file
//! fills whatever both left unset; [`Config::resolve`] applies defaults and validates. An invalid
//! value anywhere is a startup error naming the setting, never a silent fallback to the default.
//!
//! Each setting is defined once, as a field of [`Settings`]: its name (the flag, and the TOML key
//! in snake_case), environment variable, help and literal default (`default_value`) live in its
//! clap attribute, which `--help`, the file, the environment and the README table (checked by a
//! test) all read. [`Cli::parse_layered`] drops the defaults clap filled in, so that the file can
//! still set what the command line left unset; [`Settings::defaults`] is the bottom layer. Defaults
//! computed from other settings (`<data>/concord.db`) are said in the help text and computed here.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::client_addr::TrustedProxies;
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

impl Cli {
    /// Flags and environment, as clap parses them, without the defaults clap filled in: those are
    /// the bottom layer ([`Settings::defaults`]), below the config file. `--help` shows them.
    pub fn parse_layered<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut matches = Cli::command().try_get_matches_from(args)?;
        let defaulted: Vec<String> = Cli::command()
            .get_arguments()
            .filter(|arg| arg.get_action().takes_values())
            .map(|arg| arg.get_id().to_string())
            .filter(|id| matches.value_source(id) == Some(ValueSource::DefaultValue))
            .collect();
        for id in defaulted {
            matches.try_clear_id(&id).map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, e))?;
        }
        Cli::from_arg_matches_mut(&mut matches)
    }
}

/// Every setting, all optional, so that each layer can say "not set here". Value names default to
/// the field names, which are the environment names, so clap's errors name what a deployer set.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Data directory: holds the database and `blobs/`; created with mode 0750
    #[arg(long, env = "CONCORD_DATA", value_name = "DIR", default_value = "./data")]
    pub data: Option<PathBuf>,

    /// Address to listen on; overrides HOST and PORT [default: 127.0.0.1:3030]
    #[arg(long, env = "CONCORD_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Interface to listen on; 0.0.0.0 exposes the server on every interface
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: Option<IpAddr>,

    /// Port to listen on
    #[arg(long, env = "PORT", default_value = "3030")]
    pub port: Option<u16>,

    /// SQLite database file [default: <data>/concord.db]
    #[arg(long, env = "DATABASE_PATH")]
    pub database_path: Option<PathBuf>,

    /// Public URL of the web app that magic links point at
    #[arg(long, env = "APP_BASE_URL", default_value = "http://localhost:5173")]
    pub app_base_url: Option<String>,

    /// Comma-separated browser origins allowed by CORS, or `*`
    #[arg(long, env = "CORS_ORIGINS", default_value = "http://localhost:5173,http://localhost:1420")]
    pub cors_origins: Option<String>,

    /// SMTP relay; setting it chooses mail mode smtp [default: smtp.resend.com, only with SMTP_USERNAME]
    #[arg(long, env = "SMTP_HOST")]
    pub smtp_host: Option<String>,

    /// SMTP port
    #[arg(long, env = "SMTP_PORT", default_value = "465")]
    pub smtp_port: Option<u16>,

    /// SMTP user, for relays that need a login (then SMTP_PASSWORD too); without both, mail goes to
    /// SMTP_HOST unauthenticated
    #[arg(long, env = "SMTP_USERNAME")]
    pub smtp_username: Option<String>,

    /// SMTP password
    #[arg(long, env = "SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<Secret>,

    /// SMTP transport security: `tls`, `starttls` or `none` [default: tls on port 465, starttls otherwise]
    #[arg(long, env = "SMTP_SECURITY", value_enum)]
    pub smtp_security: Option<SmtpSecurity>,

    /// Sender address
    #[arg(long, env = "SMTP_FROM_EMAIL", default_value = "noreply@diaryx.org")]
    pub smtp_from_email: Option<String>,

    /// Sender name
    #[arg(long, env = "SMTP_FROM_NAME", default_value = "Diaryx")]
    pub smtp_from_name: Option<String>,

    /// Lifetime of a Diaryx session token, in days
    #[arg(long, env = "SESSION_EXPIRY_DAYS", default_value = "30")]
    pub session_expiry_days: Option<u32>,

    /// Lifetime of a magic link, in minutes
    #[arg(long, env = "MAGIC_LINK_EXPIRY_MINUTES", default_value = "15")]
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

    /// Read the admin password from this file (a trailing newline is dropped); systemd credential
    /// `admin_password` [default: $CREDENTIALS_DIRECTORY/admin_password if present]
    #[arg(long, env = "CONCORD_ADMIN_PASSWORD_FILE", value_name = "FILE")]
    pub admin_pass_file: Option<PathBuf>,

    /// Read the admin password from the first line of standard input
    #[arg(long)]
    #[serde(default)]
    pub admin_pass_stdin: bool,

    /// Seconds between runs of the job that deletes expired tokens and sessions
    #[arg(long, env = "CONCORD_CLEANUP_INTERVAL_SECS", value_name = "SECONDS", default_value = "3600")]
    pub cleanup_interval_secs: Option<u64>,

    /// Seconds a request body may send nothing before the request is refused with 400 (slow-body clients; headers must arrive within 10 s)
    #[arg(long, env = "CONCORD_BODY_IDLE_TIMEOUT_SECS", value_name = "SECONDS", default_value = "30")]
    pub body_idle_timeout_secs: Option<u64>,
    /// Largest blob one upload may store, in bytes
    #[arg(long, env = "BLOB_MAX_BYTES", default_value = "268435456")]
    pub blob_max_bytes: Option<u64>,

    /// Blob bytes one (user, vault) scope may reference
    #[arg(long, env = "BLOB_VAULT_QUOTA_BYTES", default_value = "4294967296")]
    pub blob_vault_quota_bytes: Option<u64>,

    /// Blob bytes all of one user's vaults may reference together
    #[arg(long, env = "BLOB_USER_QUOTA_BYTES", default_value = "8589934592")]
    pub blob_user_quota_bytes: Option<u64>,

    /// Log format, `text` or `json`; filter with `CONCORD_LOG` (e.g. `debug`)
    #[arg(long, env = "CONCORD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: Option<LogFormat>,

    /// Largest WebSocket message a Yjs client may send, in bytes; larger ones close with 1009
    #[arg(long, env = "SYNC_MAX_FRAME_BYTES", default_value = "16777216")]
    pub sync_max_frame_bytes: Option<u32>,

    /// Bytes of Yjs updates stored after a document's snapshot before they are compacted into a
    /// new snapshot
    #[arg(long, env = "SYNC_COMPACT_BYTES", default_value = "1048576")]
    pub sync_compact_bytes: Option<u32>,

    // Edge (mail mode, connections):
    /// How sign-in and confirmation links reach people: `smtp` mails them, `dev` hands them to
    /// whoever asks (in responses and logs) [default: smtp if SMTP_HOST, SMTP_USERNAME or
    /// SMTP_PASSWORD is set, else dev on a loopback address with local PUBLIC_URL and APP_BASE_URL;
    /// required otherwise]
    #[arg(long, env = "CONCORD_MAIL", value_enum)]
    pub mail: Option<MailMode>,

    /// Seconds a new connection may stay silent before it is closed (its first request must have
    /// begun by then)
    #[arg(long, env = "CONCORD_FIRST_BYTE_TIMEOUT_SECS", value_name = "SECONDS", default_value = "10")]
    pub first_byte_timeout_secs: Option<u64>,

    /// Open connections the server keeps at once; when full, the longest-silent one makes room,
    /// and if every one has sent a request, new ones get 503 [default: (open-file limit - 128) * 3/4]
    #[arg(long, env = "CONCORD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Open connections one client address keeps at once (IPv6: per /64)
    #[arg(long, env = "CONCORD_MAX_CONNECTIONS_PER_IP", value_name = "N", default_value = "256")]
    pub max_connections_per_ip: Option<usize>,

    /// Exempt loopback clients (a reverse proxy on this host) from the per-address cap
    #[arg(long, env = "CONCORD_PER_IP_EXEMPT_LOOPBACK", value_name = "BOOL", default_value = "true")]
    pub per_ip_exempt_loopback: Option<bool>,
    // Accounts: the sign-in code key and the per-user caps.
    /// File holding the server secret that keys sign-in code hashes (64 hex characters); it must
    /// exist when set [default: <data>/secret.key, created with mode 0600 on first start]
    #[arg(long, env = "CONCORD_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// Live devices (paired clients and sign-in sessions) one user may have; at the cap a new
    /// sign-in revokes the least recently seen session, a new pairing gets 403 `device_limit_reached`
    #[arg(long, env = "CONCORD_MAX_DEVICES_PER_USER", value_name = "N", default_value = "100")]
    pub max_devices_per_user: Option<u32>,

    /// Workspaces one user may have, besides `default`; beyond it 403 `workspace_limit_reached`
    #[arg(long, env = "CONCORD_MAX_WORKSPACES_PER_USER", value_name = "N", default_value = "100")]
    pub max_workspaces_per_user: Option<u32>,
    // Operations (backups).
    /// Folder for scheduled backups; unset means no scheduled backups
    #[arg(long, env = "CONCORD_BACKUP_DIR", value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Time between scheduled backups: a number with s, m, h or d, e.g. `6h`
    #[arg(long, env = "CONCORD_BACKUP_EVERY", value_name = "INTERVAL", default_value = "24h")]
    pub backup_every: Option<String>,

    /// Scheduled backups kept in the folder; older ones are deleted
    #[arg(long, env = "CONCORD_BACKUP_KEEP", value_name = "N", default_value = "7")]
    pub backup_keep: Option<u32>,
    // Sync limits (WebSockets and event streams).
    /// Seconds a WebSocket client may take to receive one message (or a pong) before it is closed
    /// as too slow (1013)
    #[arg(long, env = "SYNC_SEND_TIMEOUT_SECS", value_name = "SECONDS", default_value = "60")]
    pub sync_send_timeout_secs: Option<u64>,

    /// Yjs WebSocket connections one user may hold open at once; more are refused at the upgrade with
    /// 429 `too_many_connections`
    #[arg(long, env = "SYNC_MAX_CONNECTIONS_PER_USER", default_value = "256")]
    pub sync_max_connections_per_user: Option<u32>,

    /// Operation-log event streams (`/api/v1/sync/events`) one user may hold open at once; more get 429
    /// `too_many_streams`
    #[arg(long, env = "SYNC_MAX_STREAMS_PER_USER", default_value = "64")]
    pub sync_max_streams_per_user: Option<u32>,
    // Proxy and secrets (operations).
    /// Comma-separated networks of reverse proxies (e.g. `127.0.0.1/32,10.0.0.0/8`) whose
    /// X-Forwarded-For, Forwarded and X-Forwarded-Proto headers are believed; unset believes none
    #[arg(long, env = "CONCORD_TRUSTED_PROXIES", value_name = "CIDR,...")]
    pub trusted_proxies: Option<String>,

    /// Read the SMTP password from this file (a trailing newline is dropped); systemd credential
    /// `smtp_password` [default: $CREDENTIALS_DIRECTORY/smtp_password if present]
    #[arg(long, env = "SMTP_PASSWORD_FILE", value_name = "FILE")]
    pub smtp_password_file: Option<PathBuf>,

    /// systemd's credentials folder (`LoadCredential=`), set by systemd, not a setting.
    #[arg(skip)]
    #[serde(skip)]
    pub credentials_directory: Option<PathBuf>,
    // Metrics and maintenance.
    /// Bearer token (at least 16 characters) that lets non-loopback peers read `/metrics`; unset
    /// means loopback only
    #[arg(long, env = "CONCORD_METRICS_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret>,

    /// Seconds between runs of the maintenance jobs (WAL checkpoint, old idempotency keys, idle
    /// document compaction)
    #[arg(long, env = "CONCORD_MAINTENANCE_INTERVAL_SECS", value_name = "SECONDS", default_value = "600")]
    pub maintenance_interval_secs: Option<u64>,
    // Storage backend (pg).
    /// PostgreSQL database (`postgres://user:password@host/db`, or `?host=/socket/dir`) instead of
    /// the SQLite file; for several nodes on one database [default: SQLite at DATABASE_PATH]
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    // Web pages.
    /// Whether people may register themselves (`/register` and `POST /api/v1/auth/register`);
    /// with false, `/register` is 404 and the API answers 403 `registration_closed`
    #[arg(long, env = "CONCORD_REGISTRATION", value_name = "BOOL", default_value = "true")]
    pub registration: Option<bool>,
    // Admin console (live settings and the audit log).
    /// Name of this server, shown on its pages; the admin console can override it
    #[arg(long, env = "CONCORD_SERVER_NAME", value_name = "NAME", default_value = "Concord")]
    pub server_name: Option<String>,

    /// Days the audit log keeps an entry
    #[arg(long, env = "CONCORD_AUDIT_RETENTION_DAYS", value_name = "DAYS", default_value = "90")]
    pub audit_retention_days: Option<u32>,
    // Document history.
    /// Seconds of editing between automatic versions of a document (one is also taken when it
    /// compacts, if it changed since the last)
    #[arg(long, env = "HISTORY_INTERVAL_SECS", value_name = "SECONDS", default_value = "600")]
    pub history_interval_secs: Option<u64>,

    /// Versions kept per document (automatic and labelled alike); older ones are deleted as new ones
    /// are taken
    #[arg(long, env = "HISTORY_KEEP", default_value = "50")]
    pub history_keep: Option<u32>,

    /// Days a version is kept at most, however few a document has
    #[arg(long, env = "HISTORY_MAX_AGE_DAYS", value_name = "DAYS", default_value = "30")]
    pub history_max_age_days: Option<u32>,
    // Blob storage (s3).
    /// Where blob bytes live: `s3://bucket/prefix` for an S3-compatible bucket, which must exist
    /// (the prefix is optional) [default: the filesystem, <data>/blobs]
    #[arg(long, env = "CONCORD_BLOB_STORE", value_name = "URL")]
    pub blob_store: Option<String>,

    /// S3 endpoint, for S3-compatible servers (MinIO, Garage, Ceph, R2, …) [default: AWS S3 in
    /// BLOB_S3_REGION]
    #[arg(long, env = "BLOB_S3_ENDPOINT", value_name = "URL")]
    pub blob_s3_endpoint: Option<String>,

    /// S3 region (signed into every request; S3-compatible servers mostly accept any)
    #[arg(long, env = "BLOB_S3_REGION", value_name = "REGION", default_value = "us-east-1")]
    pub blob_s3_region: Option<String>,

    /// S3 access key id, with BLOB_S3_SECRET_ACCESS_KEY [default: none, the instance's IAM role]
    #[arg(long, env = "BLOB_S3_ACCESS_KEY_ID", value_name = "ID")]
    pub blob_s3_access_key_id: Option<String>,

    /// S3 secret access key (visible in the process list: prefer the file or the environment)
    #[arg(long, env = "BLOB_S3_SECRET_ACCESS_KEY", hide_env_values = true, value_name = "KEY")]
    pub blob_s3_secret_access_key: Option<Secret>,

    /// Read the S3 secret access key from this file (a trailing newline is dropped); systemd
    /// credential `blob_s3_secret_access_key` [default: $CREDENTIALS_DIRECTORY/blob_s3_secret_access_key if present]
    #[arg(long, env = "BLOB_S3_SECRET_ACCESS_KEY_FILE", value_name = "FILE")]
    pub blob_s3_secret_access_key_file: Option<PathBuf>,

    /// Allow an `http://` BLOB_S3_ENDPOINT, which must then be on a loopback address (blob bytes
    /// would cross any network unencrypted)
    #[arg(long, env = "BLOB_S3_ALLOW_HTTP", value_name = "BOOL", default_value = "false")]
    pub blob_s3_allow_http: Option<bool>,
    // Bus between nodes (bus).
    /// Redis (`redis://[:password@]host[:port][/db]`) that several nodes on one PostgreSQL use to
    /// hear each other's document edits, awareness, pushes and revocations at once; needs
    /// DATABASE_URL [default: none, one node alone]
    #[arg(long, env = "REDIS_URL", value_name = "URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
    // Webhooks.
    /// Milliseconds a document's edits are gathered into one `document.updated` event (the first
    /// edit starts the window; the event carries the latest seq)
    #[arg(long, env = "WEBHOOK_DEBOUNCE_MS", value_name = "MILLISECONDS", default_value = "2000")]
    pub webhook_debounce_ms: Option<u64>,

    /// Seconds before the first retry of a failed webhook delivery; each retry waits twice as
    /// long as the one before (at most 30 minutes), for 6 hours
    #[arg(long, env = "WEBHOOK_RETRY_BASE_SECS", value_name = "SECONDS", default_value = "10")]
    pub webhook_retry_base_secs: Option<u64>,

    /// Seconds one webhook request may take, connecting included, before it counts as failed
    #[arg(long, env = "WEBHOOK_TIMEOUT_SECS", value_name = "SECONDS", default_value = "10")]
    pub webhook_timeout_secs: Option<u64>,

    /// Whether webhooks may be delivered to loopback, private and link-local addresses (refused
    /// by default, so a hook cannot reach inside the server's network)
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE", value_name = "BOOL", default_value = "false")]
    pub webhook_allow_private: Option<bool>,
    // Operation log.
    /// Seconds an op-log push's idempotency key is remembered, so a retry with the same key is
    /// answered from the first push instead of storing its ops again (a day by default)
    #[arg(long, env = "OPLOG_IDEMPOTENCY_RETENTION_SECS", value_name = "SECONDS", default_value = "86400")]
    pub oplog_idempotency_retention_secs: Option<u64>,
}

impl Settings {
    /// The built-in defaults: each setting's `default_value`, and nothing from the environment.
    pub fn defaults() -> Settings {
        let matches: ArgMatches = Cli::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["concord"])
            .expect("the defaults parse: each is a valid value of its setting");
        Settings::from_arg_matches(&matches).expect("the defaults parse")
    }

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
            // Proxy and secrets:
            trusted_proxies: self.trusted_proxies.or(lower.trusted_proxies),
            smtp_password_file: self.smtp_password_file.or(lower.smtp_password_file),
            credentials_directory: self.credentials_directory.or(lower.credentials_directory),
            // Metrics and maintenance.
            metrics_token: self.metrics_token.or(lower.metrics_token),
            maintenance_interval_secs: self.maintenance_interval_secs.or(lower.maintenance_interval_secs),
            // Storage backend.
            database_url: self.database_url.or(lower.database_url),
            // Web pages.
            registration: self.registration.or(lower.registration),
            // Admin console.
            server_name: self.server_name.or(lower.server_name),
            audit_retention_days: self.audit_retention_days.or(lower.audit_retention_days),
            // Document history.
            history_interval_secs: self.history_interval_secs.or(lower.history_interval_secs),
            history_keep: self.history_keep.or(lower.history_keep),
            history_max_age_days: self.history_max_age_days.or(lower.history_max_age_days),
            // Blob storage.
            blob_store: self.blob_store.or(lower.blob_store),
            blob_s3_endpoint: self.blob_s3_endpoint.or(lower.blob_s3_endpoint),
            blob_s3_region: self.blob_s3_region.or(lower.blob_s3_region),
            blob_s3_access_key_id: self.blob_s3_access_key_id.or(lower.blob_s3_access_key_id),
            blob_s3_secret_access_key: self.blob_s3_secret_access_key.or(lower.blob_s3_secret_access_key),
            blob_s3_secret_access_key_file: self
                .blob_s3_secret_access_key_file
                .or(lower.blob_s3_secret_access_key_file),
            blob_s3_allow_http: self.blob_s3_allow_http.or(lower.blob_s3_allow_http),
            // Bus between nodes.
            redis_url: self.redis_url.or(lower.redis_url),
            // Webhooks.
            webhook_debounce_ms: self.webhook_debounce_ms.or(lower.webhook_debounce_ms),
            webhook_retry_base_secs: self.webhook_retry_base_secs.or(lower.webhook_retry_base_secs),
            webhook_timeout_secs: self.webhook_timeout_secs.or(lower.webhook_timeout_secs),
            webhook_allow_private: self.webhook_allow_private.or(lower.webhook_allow_private),
            // Operation log.
            oplog_idempotency_retention_secs: self
                .oplog_idempotency_retention_secs
                .or(lower.oplog_idempotency_retention_secs),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, utoipa::ToSchema)]
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

/// Where the bootstrap admin's password comes from; read once at start (a file as the
/// configuration is read, see [`secret_from_file`]).
#[derive(Debug, Clone)]
pub enum AdminPassword {
    Given(Secret),
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
    /// Reverse proxies whose forwarded headers are believed (see `client_addr`).
    pub trusted_proxies: TrustedProxies,
    // Metrics and maintenance.
    /// Bearer token for `/metrics` from non-loopback peers; `None`: loopback peers only.
    pub metrics_token: Option<Secret>,
    /// Time between runs of the maintenance jobs (`ops::jobs`).
    pub maintenance_interval: std::time::Duration,
    // Storage backend (pg).
    /// PostgreSQL instead of the SQLite file at `database_path`, if set.
    pub database_url: Option<Secret>,
    // Web pages.
    /// Whether people may register themselves (`accounts::registration::open`).
    pub registration: bool,
    // Admin console: starting values of the live settings (see `live_settings`; registration too).
    pub server_name: String,
    /// How long audit entries are kept.
    pub audit_retention: std::time::Duration,
    // Blob storage (s3).
    /// Where blob bytes live (see `blobstore`).
    pub blob_store: BlobStoreConfig,
    // Bus between nodes (bus).
    /// Redis pub/sub between the nodes on one PostgreSQL (`crate::bus`), if set.
    pub redis_url: Option<Secret>,
    // Webhooks.
    pub webhooks: WebhookSettings,
    // Operation log.
    /// How long idempotency keys are remembered (the maintenance job purges older ones).
    pub oplog_idempotency_retention: std::time::Duration,
}

/// The `--blob-store` setting, resolved.
#[derive(Debug, Clone)]
pub enum BlobStoreConfig {
    /// `<data>/blobs`.
    Filesystem,
    S3(S3Settings),
}

/// An S3-compatible bucket and how to reach it (see `blobstore::s3`).
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
    /// `None`: AWS S3 in `region`.
    pub endpoint: Option<String>,
    pub region: String,
    /// Both or neither; neither leaves the credentials to the instance's role.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Plain HTTP, allowed only to a loopback endpoint.
    pub allow_http: bool,
}

impl S3Settings {
    /// The store as `--blob-store` names it, for logs and errors (no credentials in it).
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// How webhook events are gathered and delivered (see `crate::webhooks`).
#[derive(Debug, Clone, Copy)]
pub struct WebhookSettings {
    /// The window of `document.updated` per document.
    pub debounce: std::time::Duration,
    /// The first retry's delay, in seconds; later ones double.
    pub retry_base_secs: i64,
    /// The longest one request may take.
    pub timeout: std::time::Duration,
    /// Whether loopback and private addresses may be reached.
    pub allow_private: bool,
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
    // Document history.
    /// Seconds of editing between automatic versions.
    pub history_interval_secs: i64,
    /// Which versions are kept.
    pub history_retention: concord_core::history::Retention,
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
    #[error("{first} and {second} are both set; set one of them")]
    Conflict { first: &'static str, second: &'static str },
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Every setting with a `default_value` has a value once [`Settings::defaults`] is the bottom layer.
const HAS_DEFAULT: &str = "a setting with a default_value is set after the defaults layer";

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
        let systemd = Settings {
            credentials_directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            ..Settings::default()
        };
        Config::resolve(cli.settings.or(file).or(systemd))
    }

    pub fn resolve(s: Settings) -> Result<Config, ConfigError> {
        // Whether a backup interval or count was set, before the defaults fill them in.
        let backup_tuned = s.backup_every.is_some() || s.backup_keep.is_some();
        let mut s = s.or(Settings::defaults());
        // Secrets from files first: the mail mode depends on whether a password is set.
        s.smtp_password = secret_setting(
            ("SMTP_PASSWORD", s.smtp_password.take()),
            ("SMTP_PASSWORD_FILE", s.smtp_password_file.take()),
            s.credentials_directory.as_deref(),
            "smtp_password",
        )?;
        // Blob storage, while `s` is whole: it takes several settings.
        let blob_max_bytes = s.blob_max_bytes.expect(HAS_DEFAULT);
        let blob_store = blob_store(&mut s, blob_max_bytes)?;
        let listen =
            s.listen.unwrap_or_else(|| SocketAddr::new(s.host.expect(HAS_DEFAULT), s.port.expect(HAS_DEFAULT)));
        // Before any field moves out of `s`: the mail mode reads several of them.
        let mail = mail_config(&s, listen)?;
        let data_dir = s.data.expect(HAS_DEFAULT);
        // Storage backend: whether these were set, before they move out of `s`.
        let (database_path_set, backup_dir_set) = (s.database_path.is_some(), s.backup_dir.is_some());
        // Bus between nodes: read before `database_url` moves into the config.
        let database_url_set = s.database_url.is_some();
        let database_path = s.database_path.unwrap_or_else(|| data_dir.join("concord.db"));

        let app_base_url = s.app_base_url.expect(HAS_DEFAULT);
        if !(app_base_url.starts_with("http://") || app_base_url.starts_with("https://")) {
            return Err(invalid("APP_BASE_URL", "must start with http:// or https://"));
        }
        let app_base_url = app_base_url.trim_end_matches('/').to_owned();

        let cors_origins = parse_origins(&s.cors_origins.expect(HAS_DEFAULT))?;

        let session_expiry_days = positive("SESSION_EXPIRY_DAYS", s.session_expiry_days.expect(HAS_DEFAULT))?;
        let magic_link_expiry_minutes =
            positive("MAGIC_LINK_EXPIRY_MINUTES", s.magic_link_expiry_minutes.expect(HAS_DEFAULT))?;

        if let Some(url) = &s.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("PUBLIC_URL", "must start with http:// or https://"));
        }
        let public_url = s.public_url.map(|url| url.trim_end_matches('/').to_owned());
        let admin = admin_bootstrap(
            s.admin_user,
            s.admin_email,
            s.admin_pass,
            s.admin_pass_file,
            s.admin_pass_stdin,
            s.credentials_directory.as_deref(),
        )?;
        let cleanup_interval_secs =
            positive("CONCORD_CLEANUP_INTERVAL_SECS", s.cleanup_interval_secs.expect(HAS_DEFAULT))?;
        let body_idle_timeout = std::time::Duration::from_secs(positive(
            "CONCORD_BODY_IDLE_TIMEOUT_SECS",
            s.body_idle_timeout_secs.expect(HAS_DEFAULT),
        )?);
        let blobs = BlobLimits {
            max_bytes: positive("BLOB_MAX_BYTES", s.blob_max_bytes.expect(HAS_DEFAULT))?,
            quota: concord_core::blob::BlobQuota {
                per_vault: positive("BLOB_VAULT_QUOTA_BYTES", s.blob_vault_quota_bytes.expect(HAS_DEFAULT))?,
                per_user: positive("BLOB_USER_QUOTA_BYTES", s.blob_user_quota_bytes.expect(HAS_DEFAULT))?,
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
            log_format: s.log_format.expect(HAS_DEFAULT),
            blobs,
            sync: SyncSettings {
                max_frame_bytes: positive("SYNC_MAX_FRAME_BYTES", s.sync_max_frame_bytes.expect(HAS_DEFAULT))? as usize,
                compact_bytes: positive("SYNC_COMPACT_BYTES", s.sync_compact_bytes.expect(HAS_DEFAULT))? as usize,
                // Sync limits. A minute is far longer than any live client takes to take one message
                // (or the 127-byte pong of its own ping), yet bounds what a client that never reads
                // can make the server hold. 256 documents and 64 event streams per user are many
                // times what a person's devices open (one stream per device and vault, a handful of
                // documents per open window), while a single account can no longer exhaust the
                // server's connections.
                send_timeout: std::time::Duration::from_secs(positive(
                    "SYNC_SEND_TIMEOUT_SECS",
                    s.sync_send_timeout_secs.expect(HAS_DEFAULT),
                )?),
                max_connections_per_user: positive(
                    "SYNC_MAX_CONNECTIONS_PER_USER",
                    s.sync_max_connections_per_user.expect(HAS_DEFAULT),
                )? as usize,
                max_streams_per_user: positive(
                    "SYNC_MAX_STREAMS_PER_USER",
                    s.sync_max_streams_per_user.expect(HAS_DEFAULT),
                )? as usize,
                // Document history. Ten minutes of editing per version and 50 versions per document
                // cover a working day of steady editing, and with 30 days bound what a document's
                // history can hold to 50 copies of it.
                history_interval_secs: positive("HISTORY_INTERVAL_SECS", s.history_interval_secs.expect(HAS_DEFAULT))?
                    as i64,
                history_retention: concord_core::history::Retention {
                    keep: positive("HISTORY_KEEP", s.history_keep.expect(HAS_DEFAULT))? as usize,
                    max_age_secs: i64::from(positive(
                        "HISTORY_MAX_AGE_DAYS",
                        s.history_max_age_days.expect(HAS_DEFAULT),
                    )?) * 86_400,
                },
            },
            connections: ConnectionSettings {
                first_byte_timeout: std::time::Duration::from_secs(positive(
                    "CONCORD_FIRST_BYTE_TIMEOUT_SECS",
                    s.first_byte_timeout_secs.expect(HAS_DEFAULT),
                )?),
                max_total: s.max_connections.map(|n| positive("CONCORD_MAX_CONNECTIONS", n)).transpose()?,
                max_per_ip: positive("CONCORD_MAX_CONNECTIONS_PER_IP", s.max_connections_per_ip.expect(HAS_DEFAULT))?,
                exempt_loopback: s.per_ip_exempt_loopback.expect(HAS_DEFAULT),
            },
            secret_file: s.secret_file,
            caps: AccountCaps {
                devices_per_user: positive("CONCORD_MAX_DEVICES_PER_USER", s.max_devices_per_user.expect(HAS_DEFAULT))?,
                workspaces_per_user: positive(
                    "CONCORD_MAX_WORKSPACES_PER_USER",
                    s.max_workspaces_per_user.expect(HAS_DEFAULT),
                )?,
            },
            backup: backup_schedule(
                s.backup_dir,
                backup_tuned,
                s.backup_every.expect(HAS_DEFAULT),
                s.backup_keep.expect(HAS_DEFAULT),
            )?,
            trusted_proxies: s
                .trusted_proxies
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|reason| invalid("CONCORD_TRUSTED_PROXIES", reason))?
                .unwrap_or_default(),
            // Metrics and maintenance.
            metrics_token: metrics_token(s.metrics_token)?,
            maintenance_interval: std::time::Duration::from_secs(positive(
                "CONCORD_MAINTENANCE_INTERVAL_SECS",
                s.maintenance_interval_secs.expect(HAS_DEFAULT),
            )?),
            // Storage backend.
            database_url: database_url(s.database_url, database_path_set, backup_dir_set)?,
            // Web pages.
            registration: s.registration.expect(HAS_DEFAULT),
            // Admin console.
            server_name: server_name("CONCORD_SERVER_NAME", s.server_name.expect(HAS_DEFAULT))?,
            audit_retention: std::time::Duration::from_secs(
                u64::from(positive("CONCORD_AUDIT_RETENTION_DAYS", s.audit_retention_days.expect(HAS_DEFAULT))?)
                    * 86_400,
            ),
            // Blob storage.
            blob_store,
            // Bus between nodes.
            redis_url: redis_url(s.redis_url, database_url_set)?,
            // Webhooks.
            webhooks: WebhookSettings {
                debounce: std::time::Duration::from_millis(positive(
                    "WEBHOOK_DEBOUNCE_MS",
                    s.webhook_debounce_ms.expect(HAS_DEFAULT),
                )?),
                retry_base_secs: positive("WEBHOOK_RETRY_BASE_SECS", s.webhook_retry_base_secs.expect(HAS_DEFAULT))?
                    as i64,
                timeout: std::time::Duration::from_secs(positive(
                    "WEBHOOK_TIMEOUT_SECS",
                    s.webhook_timeout_secs.expect(HAS_DEFAULT),
                )?),
                allow_private: s.webhook_allow_private.expect(HAS_DEFAULT),
            },
            // Operation log.
            oplog_idempotency_retention: std::time::Duration::from_secs(positive(
                "OPLOG_IDEMPOTENCY_RETENTION_SECS",
                s.oplog_idempotency_retention_secs.expect(HAS_DEFAULT),
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

/// A server name: 1 to 100 characters, none of them control characters (it goes into page
/// titles and mail). Shared with the admin console, which saves the same setting.
pub fn server_name(setting: &'static str, name: String) -> Result<String, ConfigError> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(invalid(setting, "must be 1 to 100 characters without control characters"));
    }
    Ok(name)
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
    let from_email = s.smtp_from_email.clone().expect(HAS_DEFAULT);
    concord_core::email::Email::parse(&from_email).map_err(|_| invalid("SMTP_FROM_EMAIL", "not an email address"))?;
    let from_name = s.smtp_from_name.clone().expect(HAS_DEFAULT);
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
    let port = s.smtp_port.expect(HAS_DEFAULT);
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
/// for no user, or two passwords, is a mistake worth stopping for. The systemd credential
/// `admin_password` counts only where no other source was given, as a default does.
fn admin_bootstrap(
    user: Option<String>,
    email: Option<String>,
    pass: Option<Secret>,
    file: Option<PathBuf>,
    stdin: bool,
    credentials: Option<&Path>,
) -> Result<Option<AdminBootstrap>, ConfigError> {
    let given = usize::from(pass.is_some()) + usize::from(file.is_some()) + usize::from(stdin);
    let Some(user) = user else {
        if given == 0 && email.is_none() {
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
    let password = match (given, stdin) {
        (1, true) => Some(AdminPassword::Stdin),
        (1, false) => {
            secret_setting(("CONCORD_ADMIN_PASSWORD", pass), ("CONCORD_ADMIN_PASSWORD_FILE", file), None, "")?
                .map(AdminPassword::Given)
        }
        (0, _) => credential(credentials, "admin_password")?.map(AdminPassword::Given),
        _ => None,
    };
    let Some(password) = password else {
        return Err(invalid(
            "--admin-user",
            "needs exactly one of --admin-pass (CONCORD_ADMIN_PASSWORD), --admin-pass-file \
             (CONCORD_ADMIN_PASSWORD_FILE), --admin-pass-stdin or the credential admin_password",
        ));
    };
    Ok(Some(AdminBootstrap { username, email, password }))
}

/// A secret given as a value, as a file (`<NAME>_FILE`), or as the systemd credential `credential`
/// in `$CREDENTIALS_DIRECTORY`: the one way every secret setting is read. A value and a file both
/// set is an error naming both; the credential is used only when neither is.
fn secret_setting(
    (value_name, value): (&'static str, Option<Secret>),
    (file_name, file): (&'static str, Option<PathBuf>),
    credentials: Option<&Path>,
    credential_name: &str,
) -> Result<Option<Secret>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::Conflict { first: value_name, second: file_name }),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => secret_from_file(file_name, &path).map(Some),
        (None, None) => credential(credentials, credential_name),
    }
}

/// The systemd credential `name`, if the folder is set and holds it.
fn credential(dir: Option<&Path>, name: &str) -> Result<Option<Secret>, ConfigError> {
    let Some(path) = dir.map(|dir| dir.join(name)).filter(|path| path.exists()) else { return Ok(None) };
    secret_from_file("CREDENTIALS_DIRECTORY", &path).map(Some)
}

/// A secret file's contents without the trailing newline editors and `echo` add (`\n` or `\r\n`).
fn secret_from_file(setting: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| invalid(setting, format!("cannot read {}: {e}", path.display())))?;
    let secret = text.strip_suffix('\n').map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if secret.is_empty() {
        return Err(invalid(setting, format!("{} is empty", path.display())));
    }
    Ok(Secret(secret.to_owned()))
}

/// Metrics and maintenance: an empty token means none; a short one is refused, since it guards
/// activity data from the whole network.
/// `DATABASE_URL`: a PostgreSQL URL, never beside `DATABASE_PATH` (which database would be
/// meant?) or scheduled backups, which copy the SQLite file (PostgreSQL's are `pg_dump`'s).
fn database_url(url: Option<Secret>, path_set: bool, backups_set: bool) -> Result<Option<Secret>, ConfigError> {
    let Some(url) = url else { return Ok(None) };
    if !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://")) {
        return Err(invalid("DATABASE_URL", "must start with postgres:// or postgresql://"));
    }
    if path_set {
        return Err(ConfigError::Conflict { first: "DATABASE_URL", second: "DATABASE_PATH" });
    }
    if backups_set {
        return Err(invalid(
            "CONCORD_BACKUP_DIR",
            "scheduled backups copy the SQLite file; with DATABASE_URL back up with pg_dump and copy <data>/blobs",
        ));
    }
    Ok(Some(url))
}

/// `REDIS_URL`: a `redis://` URL, and only with `DATABASE_URL`: nodes share state through
/// PostgreSQL, and the bus only tells them when to look (a SQLite file has one node).
fn redis_url(url: Option<Secret>, database_url_set: bool) -> Result<Option<Secret>, ConfigError> {
    let Some(url) = url else { return Ok(None) };
    if !url.expose().starts_with("redis://") {
        return Err(invalid("REDIS_URL", "must start with redis://"));
    }
    if !database_url_set {
        return Err(invalid("REDIS_URL", "needs DATABASE_URL: several nodes share one PostgreSQL, not a SQLite file"));
    }
    Ok(Some(url))
}

fn metrics_token(token: Option<Secret>) -> Result<Option<Secret>, ConfigError> {
    match token.filter(|t| !t.0.is_empty()) {
        Some(t) if t.0.len() < 16 => Err(invalid("CONCORD_METRICS_TOKEN", "must be at least 16 characters")),
        token => Ok(token),
    }
}

/// Blob storage: `--blob-store` and the S3 settings, which mean nothing without it (a forgotten
/// `--blob-store` must not put blobs on the local disk unnoticed).
fn blob_store(s: &mut Settings, max_bytes: u64) -> Result<BlobStoreConfig, ConfigError> {
    let secret_access_key = secret_setting(
        ("BLOB_S3_SECRET_ACCESS_KEY", s.blob_s3_secret_access_key.take()),
        ("BLOB_S3_SECRET_ACCESS_KEY_FILE", s.blob_s3_secret_access_key_file.take()),
        s.credentials_directory.as_deref(),
        "blob_s3_secret_access_key",
    )?;
    let allow_http = s.blob_s3_allow_http.expect(HAS_DEFAULT);
    let Some(url) = s.blob_store.take().filter(|url| !url.is_empty()) else {
        let stray = [
            ("BLOB_S3_ENDPOINT", s.blob_s3_endpoint.is_some()),
            ("BLOB_S3_ACCESS_KEY_ID", s.blob_s3_access_key_id.is_some()),
            ("BLOB_S3_SECRET_ACCESS_KEY", secret_access_key.is_some()),
            ("BLOB_S3_ALLOW_HTTP", allow_http),
        ];
        return match stray.iter().find(|(_, set)| *set) {
            Some((setting, _)) => Err(invalid(setting, "only applies with CONCORD_BLOB_STORE=s3://bucket/prefix")),
            None => Ok(BlobStoreConfig::Filesystem),
        };
    };
    let (bucket, prefix) = parse_s3_url(&url).ok_or_else(|| {
        invalid(
            "CONCORD_BLOB_STORE",
            "must be s3://bucket or s3://bucket/prefix (letters, digits, `.`, `-`, `_` and `/`)",
        )
    })?;
    let endpoint = s.blob_s3_endpoint.take().filter(|e| !e.is_empty());
    if let Some(endpoint) = &endpoint {
        let rest = endpoint.strip_prefix("https://").or_else(|| endpoint.strip_prefix("http://"));
        let host = rest.and_then(|r| r.split('/').next()).unwrap_or_default();
        let host =
            host.rsplit_once(':').filter(|(h, _)| !h.ends_with(']') || h.starts_with('[')).map_or(host, |(h, _)| h);
        if rest.is_none() || host.is_empty() {
            return Err(invalid("BLOB_S3_ENDPOINT", "must be an http:// or https:// URL"));
        }
        if endpoint.starts_with("http://") {
            let loopback =
                host == "localhost" || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !allow_http {
                return Err(invalid(
                    "BLOB_S3_ENDPOINT",
                    "is plain http://; set BLOB_S3_ALLOW_HTTP=true for a loopback endpoint",
                ));
            }
            if !loopback {
                return Err(invalid(
                    "BLOB_S3_ALLOW_HTTP",
                    "plain HTTP is allowed only to a loopback endpoint; use https://",
                ));
            }
        }
    }
    let access_key_id = s.blob_s3_access_key_id.take().filter(|id| !id.is_empty());
    if access_key_id.is_some() != secret_access_key.is_some() {
        return Err(ConfigError::Missing {
            setting: if access_key_id.is_some() { "BLOB_S3_SECRET_ACCESS_KEY" } else { "BLOB_S3_ACCESS_KEY_ID" },
            reason: "S3 credentials are an access key id and a secret access key together".into(),
        });
    }
    if max_bytes > crate::blobstore::MAX_COPY_BYTES {
        return Err(invalid(
            "BLOB_MAX_BYTES",
            "must be at most 5 GiB with an S3 blob store (one S3 copy places a blob)",
        ));
    }
    let region = s.blob_s3_region.take().expect(HAS_DEFAULT);
    Ok(BlobStoreConfig::S3(S3Settings {
        bucket,
        prefix,
        endpoint,
        region,
        access_key_id,
        secret_access_key,
        allow_http,
    }))
}

/// `s3://bucket[/prefix]`: a bucket name as S3 allows it and a prefix of plain path segments.
fn parse_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_end_matches('/');
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let segment_ok = |seg: &str| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    (bucket_ok && (prefix.is_empty() || prefix.split('/').all(segment_ok)))
        .then(|| (bucket.to_owned(), prefix.to_owned()))
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

/// The backup settings: an interval or a count set without a folder is a mistake worth stopping for.
fn backup_schedule(
    dir: Option<PathBuf>,
    tuned: bool,
    every: String,
    keep: u32,
) -> Result<Option<BackupSchedule>, ConfigError> {
    let Some(dir) = dir else {
        if tuned {
            return Err(invalid("CONCORD_BACKUP_DIR", "backup interval or count given without a backup folder"));
        }
        return Ok(None);
    };
    let every = parse_interval(&every)
        .ok_or_else(|| invalid("CONCORD_BACKUP_EVERY", format!("{every:?} is not an interval like 30m, 6h or 1d")))?;
    let keep = positive("CONCORD_BACKUP_KEEP", keep)? as usize;
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
        Cli::parse_layered(std::iter::once("concord").chain(args.iter().copied())).expect("valid arguments").settings
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

    #[test]
    fn the_file_fills_what_clap_defaulted_and_defaults_come_from_the_definitions() {
        // Every literal default is the clap attribute's, and a file value beats it.
        let defaults = Settings::defaults();
        assert_eq!(
            (defaults.port, defaults.session_expiry_days, defaults.backup_keep),
            (Some(3030), Some(30), Some(7))
        );
        assert!(defaults.smtp_host.is_none() && defaults.database_path.is_none(), "computed defaults stay unset");
        let parsed = parse(&[]);
        assert!(
            parsed.port.is_none() && parsed.log_format.is_none(),
            "clap's defaults are dropped from the command line"
        );
        let file: Settings = toml::from_str("session_expiry_days = 7\nlog_format = \"json\"").unwrap();
        let c = Config::resolve(parse(&[]).or(file)).unwrap();
        assert_eq!((c.session_expiry_days, c.log_format), (7, LogFormat::Json));
    }

    #[test]
    fn secrets_come_from_one_of_a_value_a_file_or_a_credential() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let file = write("pw", "from file\r\n");
        write("smtp_password", "from credential\n");
        let password = |s: Settings| {
            let mut s = Settings { smtp_username: Some("u".into()), smtp_host: Some("relay".into()), ..s };
            s.credentials_directory.get_or_insert_with(|| dir.path().to_owned());
            Config::resolve(s).map(|c| smtp(&c).credentials.clone().unwrap().1.expose().to_owned())
        };
        assert_eq!(
            password(Settings { smtp_password_file: Some(file.clone()), ..Settings::default() }).unwrap(),
            "from file"
        );
        assert_eq!(password(Settings::default()).unwrap(), "from credential");
        assert_eq!(
            password(Settings { smtp_password: Some(Secret("given".into())), ..Settings::default() }).unwrap(),
            "given"
        );
        let both =
            Settings { smtp_password: Some(Secret("x".into())), smtp_password_file: Some(file), ..Settings::default() };
        let err = password(both).unwrap_err().to_string();
        assert!(err.contains("SMTP_PASSWORD and SMTP_PASSWORD_FILE"), "{err}");
        let err = Config::resolve(Settings { trusted_proxies: Some("10.0.0.0/8,nope".into()), ..Settings::default() })
            .unwrap_err()
            .to_string();
        assert!(err.contains("CONCORD_TRUSTED_PROXIES"), "{err}");
    }
}
