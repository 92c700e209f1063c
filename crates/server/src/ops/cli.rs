//! The operator's commands: `concord backup|restore|doctor|user|device …`, for when the web or
//! mail is unavailable. Each works on a data directory, also while the server runs on it.
//!
//! Exit codes (documented in `--help`): 0 done, 1 failed (or `doctor` found a problem), 2 bad
//! usage or a refused request (non-empty restore target, existing backup file, missing `--yes`),
//! 3 the named user, device or database does not exist, 4 conflict (username or email taken).

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use concord_core::email::Email;
use concord_core::password::{self, Password};
use concord_core::username::Username;
use concord_store::postgres::PgStore;
use concord_store::sqlite::SqliteStore;
use concord_store::{DeviceRecord, NewUser, Store, StoreError, UserRecord};

use crate::clock;
use crate::ops::backup::{self, BackupError, RestoreError, Target};
use crate::ops::doctor::{self, Severity};

const EXIT_CODES: &str = "Exit codes: 0 done; 1 failed, or doctor found a problem; 2 bad usage or refused \
(non-empty restore target, existing backup file, delete without --yes); 3 no such user, device or \
database; 4 username or email already taken.";

/// The first arguments that select a command rather than running the server.
const COMMANDS: [&str; 5] = ["backup", "restore", "doctor", "user", "device"];

/// Whether `concord <first>` is one of these commands (otherwise the server runs).
pub fn is_command(first: &str) -> bool {
    COMMANDS.contains(&first)
}

#[derive(Debug, Parser)]
#[command(name = "concord", version, about = "Concord operations: backup, restore, doctor, users and devices.", after_help = EXIT_CODES)]
struct OpsCli {
    #[command(flatten)]
    data: DataArgs,

    #[command(subcommand)]
    command: Command,
}

/// Which data directory to work on; the same settings (and environment) as the server's.
#[derive(Debug, Args)]
struct DataArgs {
    /// Data directory: holds the database and `blobs/`
    #[arg(long, env = "CONCORD_DATA", value_name = "DIR", default_value = "./data", global = true)]
    data: PathBuf,

    /// SQLite database file [default: <data>/concord.db]
    #[arg(long, env = "DATABASE_PATH", value_name = "FILE", global = true)]
    database_path: Option<PathBuf>,

    /// PostgreSQL instead of the SQLite file: `user` and `device` work on it, the file commands
    /// (`backup`, `restore`, `doctor`) refuse (pg).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    /// The server's blob store: with an S3 bucket (`s3://bucket/prefix`) `backup` and `doctor`,
    /// which read `<data>/blobs`, refuse rather than archive or check an empty folder
    #[arg(long, env = "CONCORD_BLOB_STORE", value_name = "URL", global = true)]
    blob_store: Option<String>,
}

impl DataArgs {
    fn target(&self) -> Target {
        Target {
            data_dir: self.data.clone(),
            database_path: self.database_path.clone().unwrap_or_else(|| self.data.join("concord.db")),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a backup archive (database copy, blobs, checksums) while the server keeps running
    #[command(after_help = EXIT_CODES)]
    Backup {
        /// Archive to create; must not exist
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a backup archive into a data directory (stop the server on it first)
    #[command(after_help = EXIT_CODES)]
    Restore {
        /// Archive written by `concord backup` or the scheduled backups
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Replace the data already in the directory (only after the archive is verified)
        #[arg(long)]
        force: bool,
    },
    /// Check a data directory: integrity, schema version, orphan and temporary files, free space
    #[command(after_help = EXIT_CODES)]
    Doctor,
    /// List and manage users
    #[command(subcommand)]
    User(UserCommand),
    /// List and revoke devices
    #[command(subcommand)]
    Device(DeviceCommand),
}

/// `USER` is a username, an email address or a user id.
#[derive(Debug, Subcommand)]
enum UserCommand {
    /// List every user
    #[command(after_help = EXIT_CODES)]
    List,
    /// Create a confirmed user; the password is read from the first line of standard input
    #[command(after_help = EXIT_CODES)]
    Create {
        username: String,
        #[arg(long)]
        email: String,
        /// Make the user an admin
        #[arg(long)]
        admin: bool,
    },
    /// Set a user's password, read from the first line of standard input
    #[command(after_help = EXIT_CODES)]
    SetPassword { user: String },
    /// Block a user: every request is refused and open connections close
    #[command(after_help = EXIT_CODES)]
    Block { user: String },
    /// Unblock a user
    #[command(after_help = EXIT_CODES)]
    Unblock { user: String },
    /// Mark a user's email address confirmed (when the confirmation mail never arrived)
    #[command(after_help = EXIT_CODES)]
    Confirm { user: String },
    /// Grant a user admin rights (or withdraw them with --revoke)
    #[command(after_help = EXIT_CODES)]
    MakeAdmin {
        user: String,
        #[arg(long)]
        revoke: bool,
    },
    /// Delete a user with all their devices, documents, operation logs and blob references
    #[command(after_help = EXIT_CODES)]
    Delete {
        user: String,
        /// Required: deleting cannot be undone
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// List devices, of one user or of everyone
    #[command(after_help = EXIT_CODES)]
    List {
        /// Username, email or user id
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a device: its tokens stop working and its open connections close
    #[command(after_help = EXIT_CODES)]
    Revoke { device_id: String },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Conflict(_) => 4,
        }
    }
}

impl From<StoreError> for CliError {
    fn from(err: StoreError) -> CliError {
        match err {
            StoreError::Conflict(what) => CliError::Conflict(format!("already taken ({})", what.as_str())),
            other => CliError::Failed(other.to_string()),
        }
    }
}

impl From<BackupError> for CliError {
    fn from(err: BackupError) -> CliError {
        match err {
            BackupError::Exists(_) => CliError::Usage(err.to_string()),
            other => CliError::Failed(other.to_string()),
        }
    }
}

impl From<RestoreError> for CliError {
    fn from(err: RestoreError) -> CliError {
        match err {
            RestoreError::NotEmpty(_) => CliError::Usage(err.to_string()),
            other => CliError::Failed(other.to_string()),
        }
    }
}

/// Parses `args` (the whole command line, program name first) and runs the command.
pub async fn run(args: Vec<OsString>) -> ExitCode {
    let cli = match OpsCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = err.print();
            return ExitCode::from(err.exit_code().clamp(0, 255) as u8);
        }
    };
    match execute(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("concord: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

async fn execute(cli: OpsCli) -> Result<ExitCode, CliError> {
    let target = cli.data.target();
    if let Some(url) = &cli.data.database_url {
        return on_postgres(url, cli.command).await;
    }
    // The blob store's settings (credentials, endpoint) are the server's; these commands read only
    // `<data>/blobs`, which beside a bucket holds nothing.
    if let Some(url) = cli.data.blob_store.as_deref().filter(|url| url.starts_with("s3://")) {
        let instead = match cli.command {
            Command::Backup { .. } => {
                Some("the server's scheduled backups (CONCORD_BACKUP_DIR) archive the bucket's blobs")
            }
            Command::Doctor => Some("check the bucket with the S3 provider's tools"),
            _ => None,
        };
        if let Some(instead) = instead {
            return Err(CliError::Usage(format!(
                "backup and doctor read <data>/blobs only, and the blob store is the S3 bucket {url}: {instead}"
            )));
        }
    }
    match cli.command {
        Command::Backup { out } => {
            let store = open_existing(&target, Access::ReadOnly).await?;
            let blobs = crate::blobstore::Blobs::new(crate::blobstore::FsBlobs::at(&target.data_dir.join("blobs")));
            let result = backup::create(&store, std::sync::Arc::new(blobs), &out).await;
            store.close().await;
            let summary = result?;
            println!("backup written to {}: {} blobs, {} bytes", out.display(), summary.blobs, summary.bytes);
        }
        Command::Restore { from, force } => {
            let summary = backup::restore(&from, &target, force).await?;
            println!(
                "restored {} into {}: {} blobs, {} bytes, schema {}",
                from.display(),
                target.data_dir.display(),
                summary.blobs,
                summary.bytes,
                summary.schema_version
            );
        }
        Command::Doctor => {
            let report = doctor::examine(&target).await;
            for finding in &report.findings {
                let label = match finding.severity {
                    Severity::Ok => "ok",
                    Severity::Warning => "warning",
                    Severity::Problem => "PROBLEM",
                };
                println!("{label:<8} {:<16} {}", finding.check, finding.detail);
            }
            if report.worst() == Severity::Problem {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::User(command) => {
            let store = open_existing(&target, Access::ReadWrite).await?;
            let result = user_command(&store, command).await;
            store.close().await;
            result?;
        }
        Command::Device(command) => {
            let store = open_existing(&target, Access::ReadWrite).await?;
            let result = device_command(&store, command).await;
            store.close().await;
            result?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The commands on PostgreSQL: accounts and devices as on SQLite; the file commands refuse, naming
/// PostgreSQL's own tool, rather than act on an SQLite file the server does not use.
async fn on_postgres(url: &str, command: Command) -> Result<ExitCode, CliError> {
    let refuse =
        |what: &str, instead: &str| CliError::Usage(format!("{what} is SQLite-only; with DATABASE_URL {instead}"));
    let result = match command {
        Command::Backup { .. } => return Err(refuse("backup", "use pg_dump and copy <data>/blobs")),
        Command::Restore { .. } => return Err(refuse("restore", "use pg_restore and copy <data>/blobs back")),
        Command::Doctor => return Err(refuse("doctor", "use pg_amcheck")),
        Command::User(command) => {
            let store = PgStore::connect(url).await?;
            let result = user_command(&store, command).await;
            store.close().await;
            result
        }
        Command::Device(command) => {
            let store = PgStore::connect(url).await?;
            let result = device_command(&store, command).await;
            store.close().await;
            result
        }
    };
    result.map(|()| ExitCode::SUCCESS)
}

enum Access {
    ReadOnly,
    ReadWrite,
}

/// Opens the database the server uses; never creates one (a typo in `--data` must not yield an
/// empty installation).
async fn open_existing(target: &Target, access: Access) -> Result<SqliteStore, CliError> {
    let path = &target.database_path;
    if !path.is_file() {
        return Err(CliError::NotFound(format!("no database at {} (is --data right?)", path.display())));
    }
    let opened = match access {
        Access::ReadOnly => SqliteStore::open_read_only(path).await,
        Access::ReadWrite => SqliteStore::open(path).await,
    };
    Ok(opened?)
}

async fn find_user(store: &dyn Store, user: &str) -> Result<UserRecord, CliError> {
    if let Some(found) = store.user_by_login(user).await? {
        return Ok(found);
    }
    store.user_by_id(user).await?.ok_or_else(|| CliError::NotFound(format!("no user {user:?}")))
}

/// The first line of standard input, without its line ending, checked against the password policy.
fn read_password() -> Result<Password, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (input is shown): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| CliError::Failed(format!("cannot read standard input: {e}")))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    Password::parse(line.to_owned()).map_err(|e| CliError::Usage(format!("password refused: {e}")))
}

async fn hash_password(password: Password) -> Result<String, CliError> {
    tokio::task::spawn_blocking(move || password::hash(&password, &mut password::HashMemory::default()))
        .await
        .map_err(|e| CliError::Failed(e.to_string()))
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

fn timestamp(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map_or_else(|| unix.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

async fn user_command(store: &dyn Store, command: UserCommand) -> Result<(), CliError> {
    match command {
        UserCommand::List => {
            println!("id\tusername\temail\tconfirmed\tblocked\tadmin\tcreated");
            for u in store.all_users().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    u.id,
                    u.username.as_deref().unwrap_or("-"),
                    u.email,
                    yes_no(u.confirmed),
                    yes_no(u.blocked),
                    yes_no(u.is_admin),
                    timestamp(u.created_at)
                );
            }
        }
        UserCommand::Create { username, email, admin } => {
            let username = Username::parse(&username).map_err(|e| CliError::Usage(format!("username refused: {e}")))?;
            let email =
                Email::parse(&email).map_err(|_| CliError::Usage(format!("{email:?} is not an email address")))?;
            let password_hash = hash_password(read_password()?).await?;
            let new =
                NewUser { email: email.as_str().to_owned(), username: username.as_str().to_owned(), password_hash };
            let user = store.create_user(new, clock::now()).await?;
            store.confirm_user(&user.id).await?;
            if admin {
                store.set_user_admin(&user.id, true).await?;
            }
            println!("created {} ({}){}", username.as_str(), user.id, if admin { " as admin" } else { "" });
        }
        UserCommand::SetPassword { user } => {
            let found = find_user(store, &user).await?;
            let hash = hash_password(read_password()?).await?;
            store.set_password(&found.id, &hash).await?;
            println!("password of {user} set");
        }
        UserCommand::Block { user } => {
            let found = find_user(store, &user).await?;
            store.set_user_blocked(&found.id, true).await?;
            println!("blocked {user}: their requests are refused and their open connections close");
        }
        UserCommand::Unblock { user } => {
            let found = find_user(store, &user).await?;
            store.set_user_blocked(&found.id, false).await?;
            println!("unblocked {user}");
        }
        UserCommand::Confirm { user } => {
            let found = find_user(store, &user).await?;
            store.confirm_user(&found.id).await?;
            println!("confirmed {user}");
        }
        UserCommand::MakeAdmin { user, revoke } => {
            let found = find_user(store, &user).await?;
            store.set_user_admin(&found.id, !revoke).await?;
            println!("{user} is {}an admin", if revoke { "no longer " } else { "" });
        }
        UserCommand::Delete { user, yes } => {
            let found = find_user(store, &user).await?;
            if !yes {
                return Err(CliError::Usage(format!("deleting {user} cannot be undone; pass --yes to do it")));
            }
            store.delete_user(&found.id).await?;
            println!("deleted {user} and everything that was theirs");
        }
    }
    Ok(())
}

async fn device_command(store: &dyn Store, command: DeviceCommand) -> Result<(), CliError> {
    match command {
        DeviceCommand::List { user } => {
            let users = match user {
                Some(user) => vec![find_user(store, &user).await?],
                None => store.all_users().await?,
            };
            println!("id\tuser\tkind\tname\tvault\tlast_seen\trevoked");
            for u in &users {
                for d in store.devices_of(&u.id).await? {
                    print_device(u, &d);
                }
            }
        }
        DeviceCommand::Revoke { device_id } => {
            let device = store
                .device_by_id(&device_id)
                .await?
                .ok_or_else(|| CliError::NotFound(format!("no device {device_id:?}")))?;
            store.revoke_device(&device.user_id, &device.id, clock::now()).await?;
            println!("revoked {device_id}: its tokens are refused and its open connections close");
        }
    }
    Ok(())
}

fn print_device(user: &UserRecord, d: &DeviceRecord) {
    println!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        d.id,
        user.username.as_deref().unwrap_or(&user.email),
        d.kind.as_str(),
        d.name.as_deref().unwrap_or("-"),
        d.vault_id.as_deref().unwrap_or("-"),
        timestamp(d.last_seen_at),
        d.revoked_at.map_or_else(|| "-".to_owned(), timestamp)
    );
}
