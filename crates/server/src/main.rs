//! Entry point of the `concord` binary: parse settings, open storage, serve until a signal; or,
//! when the first argument names an operator command (`concord backup …`), run that instead.

use std::process::ExitCode;

use anyhow::Context;
use concord_server::config::{Cli, Config, MailConfig};
use concord_server::{app, logging, serve};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).and_then(|a| a.to_str()).is_some_and(concord_server::ops::cli::is_command) {
        return concord_server::ops::cli::run(args).await;
    }
    // clap reports bad flags or environment values itself (naming them) and exits with status 2.
    let cli = Cli::parse_layered(std::env::args_os()).unwrap_or_else(|err| err.exit());
    let open_files = serve::raise_open_file_limit();
    let loaded = Config::load(cli).and_then(|config| {
        let limits = serve::connection_limits(&config.connections, open_files)?;
        Ok((config, limits))
    });
    let (config, limits) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("concord: {err}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_format);
    tracing::info!(
        max_connections = limits.max_total,
        max_per_ip = limits.max_per_ip,
        exempt_loopback = limits.exempt_loopback,
        first_byte_timeout_secs = limits.first_byte_timeout.as_secs(),
        open_files,
        "connection limits"
    );
    match run(config, limits).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut config: Config, limits: serve::ConnectionLimits) -> anyhow::Result<()> {
    let listen = config.listen;
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    // With port 0 the real port is known only now; links built from the listen address need it.
    config.listen = addr;
    let state = concord_server::build(config).await?;
    log_mail_mode(&state.config.mail, addr);
    tracing::info!(%addr, data = %state.config.data_dir.display(), "listening");
    // On stdout, one line, so scripts and tests can learn the port when started with port 0.
    println!("listening on http://{addr}");
    let cancel = state.shutdown.clone();
    serve::serve(listener, app::router(state), limits, cancel, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Says how sign-in links reach people, loudly when dev mode hands them to a network.
fn log_mail_mode(mail: &MailConfig, addr: std::net::SocketAddr) {
    match mail {
        MailConfig::Smtp(smtp) => tracing::info!(
            relay = %format_args!("{}:{}", smtp.host, smtp.port),
            security = ?smtp.security,
            login = smtp.credentials.is_some(),
            "mail mode smtp"
        ),
        MailConfig::Dev if addr.ip().to_canonical().is_loopback() => {
            tracing::info!("mail mode dev: nothing is mailed; sign-in and confirmation links go back to the caller")
        }
        MailConfig::Dev => tracing::warn!(
            %addr,
            "mail mode dev on a non-loopback address: nothing is mailed and sign-in and confirmation links \
             go back to the caller, so anyone who reaches this server can sign in as any address; \
             set SMTP_HOST (and CONCORD_MAIL=smtp) for real use"
        ),
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
