//! Entry point of the `concord` binary: parse settings, open storage, serve until a signal; or,
//! when the first argument names an operator command (`concord backup …`), run that instead.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use concord_server::config::{Cli, Config};
use concord_server::{app, logging, serve};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).and_then(|a| a.to_str()).is_some_and(concord_server::ops::cli::is_command) {
        return concord_server::ops::cli::run(args).await;
    }
    // clap reports bad flags or environment values itself (naming them) and exits with status 2.
    let cli = Cli::parse();
    let config = match Config::load(cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("concord: {err}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_format);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let listener = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    // With port 0 the real port is known only now; links built from the listen address need it.
    config.listen = addr;
    let state = concord_server::build(config).await?;
    tracing::info!(%addr, data = %state.config.data_dir.display(), "listening");
    // On stdout, one line, so scripts and tests can learn the port when started with port 0.
    println!("listening on http://{addr}");
    let cancel = state.shutdown.clone();
    serve::serve(listener, app::router(state), cancel, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
