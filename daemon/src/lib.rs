//! agentd: a per-user daemon that tracks every AI coding agent the user runs.
//!
//! Layout (see ARCHITECTURE.md for the bird's-eye view and the invariants):
//! - [`config`]: flags, environment and config file resolved once into a [`Config`].
//! - [`model`]: the agent item and its derived fields, computed in one place.
//! - [`store`]: the redb database, its indexes and queries, and the one writer thread.
//! - [`summary`]: the in-memory counts behind `/v1/summary` and the shell prompt.
//! - [`sources`]: the registry of source kinds (names, id schemes, log rendering).
//! - [`ingest`]: followers of run logs and conversation stores that turn files into item updates
//!   for the writer.
//! - [`control`]: acting on agents: stopping runs, cloud runs and conversations.
//! - [`api`]: the HTTP API, the only module that knows HTTP.
//! - [`listen`]: the Unix socket and TCP listeners and their accept loops.
//! - [`instance`]: the single-instance lock and the TCP token.
//! - [`liveness`]: whether the process writing a run is still there.
//! - [`fsread`]: opening files agentd did not create: regular files only, bounded, no links
//!   planted by other users.
//!
//! [`run`] wires them together; `main.rs` only parses flags and waits for a signal.

pub mod api;
pub mod cloud;
pub mod config;
pub mod control;
pub mod desktop;
pub mod fsread;
pub mod history;
pub mod ingest;
pub mod instance;
pub mod listen;
pub mod liveness;
pub mod metrics;
pub mod model;
pub mod otel;
pub mod prices;
pub mod sources;
pub mod store;
pub mod summary;

pub use config::Config;

use std::future::Future;
use std::sync::Arc;

/// Exit status when an internal thread fails: the service manager restarts the daemon, which
/// resumes from its committed cursors.
pub const EXIT_INTERNAL: i32 = 70;

/// Wraps a thread body so that a panic in it ends the process with a clear message instead of
/// leaving a daemon that answers but no longer ingests.
pub(crate) fn supervised<F: FnOnce() + Send + 'static>(
    name: &'static str,
    body: F,
) -> impl FnOnce() + Send + 'static {
    move || {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(
                "the {name} thread failed ({what}); agentd exits so that it is restarted"
            );
            eprintln!("agentd: the {name} thread failed ({what}); exiting");
            std::process::exit(EXIT_INTERNAL);
        }
    }
}

/// Why the daemon could not start (or stopped with an error). Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Instance(#[from] instance::InstanceError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    #[error("cannot start a worker thread: {0}")]
    Thread(std::io::Error),
}

/// Runs the daemon until `shutdown` resolves: takes the instance lock, opens the store, starts
/// the writer and the ingestors, binds both listeners and serves. On shutdown it stops
/// accepting, lets open requests finish, commits everything queued and removes the socket.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let started_at = model::Millis::now();
    let lock = instance::Lock::acquire(&config.state_dir)?;
    let token = instance::load_or_create_token(&config.state_dir)?;
    let tz = jiff::tz::TimeZone::system();
    let store = store::Store::open(
        &config.db_path(),
        store::IndexContext {
            me: config.user.clone(),
            tz,
        },
    )?;
    let metrics = metrics::Metrics::new(config.host.clone());
    let (writer, published, writer_thread) =
        store::writer::spawn(store.clone(), config.min_free_bytes, metrics.clone())?;

    let unix = if config.activated_socket {
        tracing::info!("using the socket passed by the service manager");
        listen::activated_unix()?
    } else {
        listen::bind_unix(&config.socket)?
    };
    let tcp = match config.http {
        Some(addr) => Some(listen::bind_tcp(addr).await?),
        None => None,
    };
    let http_addr = tcp
        .as_ref()
        .and_then(|t| t.local_addr().ok())
        .map(|a| a.to_string());

    let runs_stats = Arc::new(ingest::SourceStats::new(
        sources::SourceKind::Runs,
        &config.runs_dirs,
    ));
    // The default runs dir is ours (in the state dir): create it so that it is watched at once.
    if let Err(e) = listen::private_dir(&config.runs_dirs[0]) {
        tracing::warn!("{e}");
    }
    let stop_ingest = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // What every local source is connected to; only its figures differ.
    let wiring = |stats: Arc<ingest::SourceStats>| ingest::follow::Wiring {
        store: store.clone(),
        writer: writer.clone(),
        stats,
        resync: published.resync.clone(),
        stop: stop_ingest.clone(),
    };
    let (runs_tx, runs_thread) =
        ingest::runs::spawn(config.runs_dirs.clone(), &wiring(runs_stats.clone()))
            .map_err(DaemonError::Thread)?;

    let prices = Arc::new(match &config.prices_file {
        Some(path) => prices::Prices::with_overrides(path).unwrap_or_else(|e| {
            tracing::error!("{e}; using the built-in prices");
            prices::Prices::builtin()
        }),
        None => prices::Prices::builtin(),
    });
    let history = history::History::start(config.history.clone());
    let mut sources = vec![runs_stats];
    let mut store_threads = Vec::new();
    // The sources whose files are copied into the history.
    let mut copied_sources = Vec::new();
    macro_rules! start_store {
        ($format:ty, $roots:expr) => {{
            let roots: Vec<std::path::PathBuf> = $roots.clone();
            let dirs: Vec<std::path::PathBuf> = roots
                .iter()
                .flat_map(|r| <$format as ingest::stores::Format>::watch_dirs(r))
                .collect();
            let stats = Arc::new(ingest::SourceStats::new(
                <$format as ingest::stores::Format>::KIND,
                &dirs,
            ));
            sources.push(stats.clone());
            copied_sources.push(stats.clone());
            store_threads.push((
                <$format as ingest::stores::Format>::KIND,
                ingest::stores::spawn::<$format>(
                    roots,
                    prices.clone(),
                    history.clone(),
                    &wiring(stats),
                )
                .map_err(DaemonError::Thread)?,
            ));
        }};
    }
    start_store!(ingest::formats::ClaudeCode, config.claude_roots);
    start_store!(ingest::formats::Codex, config.codex_roots);
    start_store!(ingest::formats::Gemini, config.gemini_roots);
    start_store!(ingest::formats::Qwen, config.qwen_roots);
    start_store!(ingest::formats::Droid, config.droid_roots);
    start_store!(ingest::formats::Copilot, config.copilot_roots);
    start_store!(ingest::formats::Kimi, config.kimi_roots);
    // The copies of what the first scans read are made once the scans are done: a backfill's
    // CPU goes to making the agents queryable first.
    history.copy_once(move || {
        copied_sources
            .iter()
            .all(|s| s.scanned.load(std::sync::atomic::Ordering::Relaxed))
    });
    // Stores kept in SQLite databases: the same shape of follower, over a database.
    macro_rules! start_database {
        ($db:ty, $roots:expr) => {{
            let roots: Vec<std::path::PathBuf> = $roots.clone();
            let kind = <$db as ingest::databases::Database>::KIND;
            let stats = Arc::new(ingest::SourceStats::new(kind, &roots));
            sources.push(stats.clone());
            store_threads.push((
                kind,
                ingest::databases::spawn::<$db>(roots, prices.clone(), &wiring(stats))
                    .map_err(DaemonError::Thread)?,
            ));
        }};
    }
    start_database!(ingest::opencode::OpenCode, config.opencode_roots);
    start_database!(ingest::goose::Goose, config.goose_roots);
    // Hook signals go to the follower of the source whose hooks they are.
    let hooks = store_threads
        .iter()
        .map(|(kind, (tx, _))| (*kind, tx.clone()))
        .collect();
    let cloud = match &config.cloud {
        Some(cfg) => {
            let stats = Arc::new(ingest::SourceStats::new(
                sources::SourceKind::Cloud,
                &[std::path::PathBuf::from(&cfg.base_url)],
            ));
            sources.push(stats.clone());
            let (handle, thread) =
                cloud::sync::spawn(cfg.clone(), store.clone(), writer.clone(), stats)
                    .map_err(DaemonError::Thread)?;
            Some((handle, thread))
        }
        None => None,
    };

    // OpenTelemetry export, when a collector is configured.
    let otel = match config.otel.clone() {
        Some(cfg) => match otel::start(
            cfg,
            &config.host,
            store.clone(),
            published.changes.subscribe(),
            otel::Ingest {
                sources: sources.clone(),
                errors: published.errors.clone(),
                db_path: config.db_path(),
            },
        ) {
            Ok(o) => Some(o),
            Err(e) => {
                tracing::error!("{e}; OpenTelemetry export is off");
                None
            }
        },
        None => None,
    };

    if let Some(cfg) = config.desktop_notify.clone() {
        tokio::spawn(desktop::run(cfg, published.changes.subscribe()));
    }

    let claude_sessions = config
        .claude_roots
        .iter()
        .flat_map(|r| <ingest::formats::ClaudeCode as ingest::stores::Format>::watch_dirs(r))
        .filter(|d| d.ends_with("sessions"))
        .collect();
    let control = control::Control::new(
        store.clone(),
        cloud.as_ref().map(|(h, _)| h.clone()),
        claude_sessions,
    );
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let state = api::AppState {
        otel: otel.as_ref().map(|o| o.stats.clone()),
        metrics,
        db_path: config.db_path(),
        history: history.clone(),
        control,
        store: store.clone(),
        published,
        writer: writer.clone(),
        sources,
        cloud: cloud.as_ref().map(|(h, _)| h.clone()),
        hooks,
        started_at,
        http_addr: http_addr.clone(),
        shutdown: shutdown_rx.clone(),
    };
    // The separate metrics listener, when configured: `/metrics` only, its own token.
    let metrics_server = match config.metrics_addr {
        Some(addr) => {
            let token: Arc<str> = instance::load_or_create_metrics_token(&config.state_dir)?.into();
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| listen::ListenError::Tcp { addr, source })?;
            tracing::info!("serving /metrics on {addr} (token in metrics-token)");
            let router = api::metrics_router(state.clone(), token);
            let mut stop = shutdown_rx.clone();
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            }))
        }
        None => None,
    };
    let unix_router = api::router(state.clone());
    let tcp_router = api::router(state).layer(axum::middleware::from_fn_with_state(
        Arc::<str>::from(token),
        api::auth::tcp_guard,
    ));
    tracing::info!(
        socket = %config.socket.display(),
        http = http_addr.as_deref().unwrap_or("off"),
        items = store.count(&store::Partition::All).unwrap_or(0),
        pid = std::process::id(),
        "agentd ready"
    );
    let listeners = listen::Listeners {
        unix,
        unix_path: config.socket.clone(),
        remove_socket: !config.activated_socket,
        tcp,
    };
    let server = tokio::spawn(listen::serve(
        listeners,
        unix_router,
        tcp_router,
        shutdown_rx,
    ));
    // The database is open and both listeners are bound: connections are queued from here on.
    if let Some(socket) = &config.notify_socket {
        listen::notify(socket, &format!("READY=1\nMAINPID={}", std::process::id()));
    }

    shutdown.await;
    tracing::info!("shutting down");
    if let Some(socket) = &config.notify_socket {
        listen::notify(socket, "STOPPING=1");
    }
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    // Ingestors stop between files (a long backfill does not hold shutdown up); the event only
    // wakes an idle one. `try_send`: never block a runtime thread on a full queue.
    stop_ingest.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = runs_tx.try_send(ingest::IngestEvent::Shutdown);
    for (_, (tx, _)) in &store_threads {
        let _ = tx.try_send(ingest::IngestEvent::Shutdown);
    }
    if let Some((handle, _)) = &cloud {
        handle.stop();
    }
    let writer_for_stop = writer.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let _ = runs_thread.join();
        for (_, (_, thread)) in store_threads {
            let _ = thread.join();
        }
        if let Some((_, thread)) = cloud {
            let _ = thread.join();
        }
        let _ = writer_for_stop.send(store::writer::WriteOp::Shutdown);
        let _ = writer_thread.join();
        // What is queued for the collector goes out (bounded by the exporters' timeouts).
        if let Some(o) = otel {
            o.shutdown();
        }
    })
    .await;
    drop(lock);
    tracing::info!("stopped");
    Ok(())
}
