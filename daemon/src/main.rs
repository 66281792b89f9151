//! `agentd`: parses flags, sets up logging and the runtime, and runs the daemon until SIGTERM or
//! SIGINT. Everything else lives in the library (`agentd::run`).

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// The per-user agent daemon: watches agent stores and run logs, serves the agents API.
#[derive(Debug, Parser)]
#[command(name = "agentd", version, about)]
struct Args {
    /// State dir (database, token, runs). Default: $XDG_STATE_HOME/agentd or ~/.local/state/agentd.
    #[arg(long, env = "AGENTD_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Unix socket path. Default: $XDG_RUNTIME_DIR/agentd/agentd.sock, else <state dir>/agentd.sock.
    #[arg(long, env = "AGENTD_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Config file (TOML). Default: $XDG_CONFIG_HOME/agentd/config.toml.
    #[arg(long, env = "AGENTD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Loopback HTTP listener: ADDRESS:PORT (port 0 picks one) or `off`. Default: 127.0.0.1:7431.
    #[arg(long, env = "AGENTD_HTTP", value_name = "ADDR")]
    http: Option<String>,
}

fn init_logging() {
    use tracing_subscriber::prelude::*;
    let spec = std::env::var("AGENTD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    let filter: tracing_subscriber::filter::Targets = match spec.parse() {
        Ok(f) if !spec.is_empty() => f,
        _ => "info".parse().unwrap_or_default(),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false),
        )
        .with(filter)
        .init();
}

/// Installs the SIGTERM and SIGINT handlers now (before any listener is bound, so that a signal
/// arriving during start-up is never fatal) and returns the future that resolves on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        // A second signal while shutting down (a stuck client, an impatient user): exit now.
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("agentd: second signal during shutdown; exiting now");
            std::process::exit(130);
        });
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let overrides = agentd::config::Overrides {
        state_dir: args.state_dir,
        socket: args.socket,
        config: args.config,
        http: args.http,
    };
    let config = match agentd::Config::resolve(&overrides, &agentd_wire::paths::process_env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentd: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentd: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let shutdown = match shutdown_signal() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("agentd: cannot install signal handlers: {e}");
                return Ok(false);
            }
        };
        agentd::run(config, shutdown).await.map(|()| true)
    });
    // A reader blocked in the kernel (a hung network file system, say) must not keep a stopped
    // daemon alive: blocking tasks get a moment to finish, then the process exits regardless.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("agentd: {e}");
            ExitCode::from(1)
        }
    }
}
