//! The Concord server: everything that knows HTTP, WebSocket, JSON and configuration.
//!
//! - [`config`]: settings and their layering.
//! - [`app`]: shared state and the router with its middleware.
//! - [`api`]: one module per wire surface.
//! - [`blobstore`]: blob bytes, on the filesystem or in an S3-compatible bucket.
//! - [`extract`], [`error`]: how requests become trusted values and failures become JSON.
//! - [`serve`]: the accept loop and graceful shutdown; [`client_addr`]: who the client is behind a
//!   trusted reverse proxy.
//! - [`accounts`]: identity services shared by the surfaces (limits, request extractors,
//!   credentials, devices, the admin bootstrap);
//!   [`secret`]: the key of sign-in code hashes.
//! - [`mail`]: outgoing mail (SMTP through lettre, or dev mode).
//! - [`sync`]: Yjs document sync over WebSocket.
//! - [`ops`]: backup and restore, `doctor`, the recovery CLI, and the maintenance jobs.
//! - [`live`]: long-lived connections: per-user caps and the credential watcher.
//! - [`metrics`]: the Prometheus recorder, request metrics and `GET /metrics`.
//! - [`web`]: server-rendered pages, session cookies and CSRF protection.
//! - [`webhooks`]: signed deliveries of sync events to owners' URLs, through a durable outbox.
//! - [`audit`]: the audit log's events and writer; [`live_settings`]: settings the admin console
//!   changes while the server runs.
//! - [`bus`]: what nodes on one PostgreSQL tell each other (Redis pub/sub).
//!
//! Architecture invariant: only this crate serialises to the wire. `concord-core` and
//! `concord-store` know nothing of HTTP.

pub mod accounts;
pub mod api;
pub mod app;
pub mod audit;
pub mod blobstore;
pub mod bus;
pub mod client_addr;
pub mod clock;
pub mod config;
pub mod error;
pub mod extract;
pub mod live;
pub mod live_settings;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod secret;
pub mod serve;
pub mod sync;
pub mod web;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use concord_store::postgres::PgStore;
use concord_store::sqlite::SqliteStore;
use concord_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, LiveStats};
use crate::blobstore::{Blobs, FsBlobs, S3Blobs};
use crate::config::{BlobStoreConfig, Config};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create directory {path}: {source}")]
    Directory { path: PathBuf, source: std::io::Error },
    #[error("cannot open database {path}: {source}")]
    Database { path: PathBuf, source: StoreError },
    #[error("invalid SMTP settings: {0}")]
    Mail(#[from] mail::MailError),
    #[error("admin bootstrap failed: {0}")]
    Admin(#[from] accounts::bootstrap::BootstrapError),
    #[error("{0}")]
    Secret(#[from] secret::SecretError),
    #[error("cannot record the per-user caps: {0}")]
    Caps(StoreError),
    #[error("cannot read the settings saved in the admin console: {0}")]
    LiveSettings(StoreError),
    #[error("blob store {url}: {reason}")]
    BlobStore { url: String, reason: String },
    #[error("{0}")]
    Bus(#[from] bus::redis_pubsub::BadUrl),
}

/// Prepares the data directory and opens the store: everything before the first request.
pub async fn build(config: Config) -> Result<AppState, StartError> {
    // Blob storage: object_store's HTTP client brings rustls with aws-lc-rs beside lettre's ring,
    // and rustls refuses to guess between two providers; ring is the one the rest already uses.
    // An error only says a provider is installed already (a second build in one process).
    let _ = rustls::crypto::ring::default_provider().install_default();
    create_private_dir(&config.data_dir)?;
    if matches!(config.blob_store, BlobStoreConfig::Filesystem) {
        create_private_dir(&config.blob_dir())?;
    }
    if let Some(parent) = config.database_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    let store = open_store(&config).await?;
    if let Some(admin) = &config.admin {
        accounts::bootstrap::bootstrap_admin(&*store, admin, clock::now()).await?;
    }
    let caps = config.caps;
    store.set_caps(caps.devices_per_user, caps.workspaces_per_user).await.map_err(StartError::Caps)?;
    let code_key = secret::load_code_key(&config)?;
    let mailer = mail::Mailer::new(&config.mail)?;
    let blobs = open_blobs(&config).await?;
    let stats = Arc::new(LiveStats::default());
    let shutdown = CancellationToken::new();
    let accounts = Arc::new(accounts::Accounts::new(mailer, code_key));
    let settings = live_settings::LiveSettings::load(store.clone(), &config, accounts.mailer.clone())
        .await
        .map_err(StartError::LiveSettings)?;
    let audit = audit::Audit::start(store.clone());
    let revocations = accounts.revocations.subscribe();
    let (fanout, heard) = bus::start(config.redis_url.as_ref().map(|url| url.expose()), shutdown.clone())?;
    let fanout = Arc::new(fanout);
    // Webhooks: started before the hub, whose rooms report their commits to it.
    let webhooks = webhooks::start(store.clone(), accounts.code_key.clone(), config.webhooks, shutdown.clone());
    let sync = sync::Hub::start(store.clone(), stats.clone(), config.sync.clone(), fanout.clone(), webhooks.clone());
    let caps = live::Caps {
        websockets: config.sync.max_connections_per_user,
        event_streams: config.sync.max_streams_per_user,
    };
    let live = live::Live::start(store.clone(), caps, revocations, shutdown.clone());
    let state = AppState {
        config: Arc::new(config),
        store,
        stats,
        accounts,
        blobs: Arc::new(blobs),
        events: Arc::default(),
        sync,
        started: Instant::now(),
        shutdown,
        live,
        metrics: metrics::handle(),
        settings,
        audit,
        bus: fanout,
        webhooks,
    };
    if let Some(heard) = heard {
        bus::spawn_listener(&state, heard);
    }
    ops::jobs::spawn_all(&state);
    ops::backup::spawn_scheduled(&state);
    Ok(state)
}

/// The configured backend: PostgreSQL when `DATABASE_URL` is set, else the SQLite file.
async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    match &config.database_url {
        Some(url) => match PgStore::connect(url.expose()).await {
            Ok(store) => Ok(Arc::new(store)),
            // The URL may hold a password, so the error names the backend, not the URL.
            Err(source) => Err(StartError::Database { path: PathBuf::from("DATABASE_URL"), source }),
        },
        None => match SqliteStore::open(&config.database_path).await {
            Ok(store) => Ok(Arc::new(store)),
            Err(source) => Err(StartError::Database { path: config.database_path.clone(), source }),
        },
    }
}

/// The configured blob store. An S3 bucket is probed with a write at start, so a missing bucket
/// or wrong credentials stop the server with a clear message instead of failing every upload.
async fn open_blobs(config: &Config) -> Result<Blobs, StartError> {
    match &config.blob_store {
        BlobStoreConfig::Filesystem => FsBlobs::open(&config.blob_dir())
            .map(Blobs::new)
            .map_err(|source| StartError::Directory { path: config.blob_dir(), source }),
        BlobStoreConfig::S3(settings) => {
            let failed = |reason: String| StartError::BlobStore { url: settings.url(), reason };
            let blobs = Blobs::new(S3Blobs::new(settings).map_err(|e| failed(e.to_string()))?);
            blobs
                .probe_writable(tokio::time::Instant::now())
                .await
                .map_err(|e| failed(format!("cannot write a probe object: {e}")))?;
            tracing::info!(store = %settings.url(), "blobs are stored in S3");
            Ok(blobs)
        }
    }
}

/// Mode 0750: the data directory holds the database and every blob, so other users get nothing.
fn create_private_dir(path: &Path) -> Result<(), StartError> {
    ops::create_private_dir(path).map_err(|source| StartError::Directory { path: path.to_owned(), source })
}
