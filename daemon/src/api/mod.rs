//! The HTTP API (contract section 4): the only module that knows HTTP and JSON shapes.
//!
//! One [`router`] serves both listeners. The TCP listener wraps it in [`auth::tcp_guard`] (Host
//! check, bearer token or cookie); the Unix socket relies on its file permissions and the peer
//! uid check in `listen`. Every handler answers JSON errors through [`ApiError`]; a panic in a
//! handler becomes a `500` and never takes the daemon down.

pub mod auth;
pub mod error;
mod events;
mod hooks;
mod log;
pub mod params;

use crate::ingest::SourceStats;
use crate::model::{Item, Millis, derive_on_read};
use crate::store::Store;
use crate::store::writer::{Published, WriterHandle};
use agentd_wire::{AgentsPage, Health, HttpInfo, SourceHealth};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
pub use error::ApiError;
use futures_util::FutureExt;
use params::Params;
use std::sync::Arc;
use tokio::sync::watch;

/// Largest request body accepted (hook payloads are a few KiB).
const MAX_BODY: usize = 1024 * 1024;

/// Everything handlers read. Cheap to clone: all handles.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub published: Published,
    pub writer: WriterHandle,
    pub sources: Vec<Arc<SourceStats>>,
    pub started_at: Millis,
    /// The bound TCP address, if any.
    pub http_addr: Option<String>,
    /// Flips to `true` at shutdown so that streaming answers end.
    pub shutdown: watch::Receiver<bool>,
    /// The cloud source, when an API key is configured.
    pub cloud: Option<Arc<crate::cloud::sync::CloudHandle>>,
    /// Copies of transcripts, read when an agent has deleted its own.
    pub history: crate::history::History,
    /// Stops agents (`POST /v1/agents/{id}/cancel`).
    pub control: crate::control::Control,
    /// Where each agent CLI's hook signals go (the follower of its store).
    pub hooks: std::collections::HashMap<
        crate::sources::SourceKind,
        std::sync::mpsc::SyncSender<crate::ingest::IngestEvent>,
    >,
    /// What `/metrics` reports of this process.
    pub metrics: crate::metrics::Metrics,
    /// The database file (`agentd_database_size_bytes`).
    pub db_path: std::path::PathBuf,
    /// The OpenTelemetry exporter's counts, when it runs.
    pub otel: Option<Arc<crate::otel::OtelStats>>,
}

/// The routes, shared by both listeners.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/v1/health", get(health))
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{id}", get(get_agent))
        .route("/v1/agents/{id}/log", get(log::agent_log))
        .route("/v1/agents/{id}/cancel", post(cancel_agent))
        .route("/v1/summary", get(summary))
        .route("/v1/events", get(events::events))
        .route("/v1/sync", post(sync))
        .route("/v1/hooks/{agent}", post(hooks::hook))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such route; see /v1/health") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(catch_panics))
        .layer(axum::middleware::from_fn_with_state(
            state.published.store_error.clone(),
            while_the_store_fails,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// While the writer reports a store error (a full disk, a write that failed), a read that fails
/// in any way (redb's handle half closed, a reopen under way) is that passing state: answered
/// `503 unavailable`, which clients retry, rather than `500` (the cause is still logged).
async fn while_the_store_fails(
    State(store_error): State<Arc<std::sync::RwLock<Option<String>>>>,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    if resp.status() == axum::http::StatusCode::INTERNAL_SERVER_ERROR
        && store_error
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    {
        return ApiError::store_unavailable().into_response();
    }
    resp
}

/// The separate metrics listener's routes: `/metrics` only, behind its own token.
pub fn metrics_router(state: AppState, token: Arc<str>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("this listener serves /metrics only") })
        .layer(axum::middleware::from_fn_with_state(
            token,
            auth::metrics_guard,
        ))
        .with_state(state)
}

/// Counts every answered request by its route pattern and status code, with its latency
/// (`agentd_http_requests_total`, `agentd_http_request_duration_seconds`). A path that matched
/// no route counts as `unmatched`, so that random paths cannot make new series.
async fn count_requests(
    State(metrics): State<crate::metrics::Metrics>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    metrics.request(&route, resp.status().as_u16(), started.elapsed());
    resp
}

/// `GET /metrics`: Prometheus' text format, or OpenMetrics when the scraper asks for it.
async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let openmetrics = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let errors = s.published.errors_now();
    let rendered = tokio::task::spawn_blocking(move || {
        crate::metrics::render(
            &crate::metrics::Scrape {
                metrics: &s.metrics,
                store: &s.store,
                sources: &s.sources,
                errors: &errors,
                db_path: &s.db_path,
                otel: s.otel.as_deref(),
            },
            openmetrics,
        )
    })
    .await;
    match rendered {
        Ok(Ok(text)) => (
            [(
                axum::http::header::CONTENT_TYPE,
                if openmetrics {
                    "application/openmetrics-text; version=1.0.0; charset=utf-8"
                } else {
                    "text/plain; version=0.0.4; charset=utf-8"
                },
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => ApiError::internal(format!("cannot read the metrics: {e}")).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// Turns a panic inside a handler into a `500` answer instead of a dropped connection, and any
/// error answer that is not JSON yet (the framework's own rejections: a malformed path, a body
/// over the limit) into the contract's JSON error.
async fn catch_panics(req: Request, next: Next) -> Response {
    let resp = match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(_) => return ApiError::internal("a request handler panicked").into_response(),
    };
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .unwrap_or_default();
    let code = match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        s if s >= 500 => "internal",
        _ => "bad_request",
    };
    ApiError {
        status,
        code,
        message: String::from_utf8_lossy(&text).trim().to_owned(),
    }
    .into_response()
}

/// `POST /v1/agents/{id}/cancel[?force=true]`: `202 {"cancel":"requested"}` once the stop is
/// under way (see [`crate::control`] for what that means per kind of agent).
async fn cancel_agent(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    use crate::control::CancelError;
    let p = Params::parse(q.as_deref(), &["force"])?;
    let force = p.flag("force")?;
    match s.control.cancel(&id, force).await {
        Ok(()) => Ok((
            axum::http::StatusCode::ACCEPTED,
            axum::Json(agentd_wire::CancelAnswer {
                cancel: "requested".into(),
            }),
        )
            .into_response()),
        Err(CancelError::NotFound(id)) => {
            Err(ApiError::not_found(format!("no agent with id {id:?}")))
        }
        Err(CancelError::AlreadyFinished(m)) => Err(ApiError::conflict("already_finished", m)),
        Err(CancelError::NotCancelable(m)) => Err(ApiError::conflict("not_cancelable", m)),
        Err(CancelError::Upstream(m)) => Err(ApiError::upstream(m)),
        Err(CancelError::Internal(m)) => Err(ApiError::internal(m)),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    axum::Json(value).into_response()
}

async fn health(State(s): State<AppState>) -> Result<Response, ApiError> {
    let errors = s.published.errors_now();
    let mut sources = Vec::new();
    for src in &s.sources {
        let e = errors.get(src.name).cloned().unwrap_or_default();
        sources.push(SourceHealth {
            name: src.name.to_owned(),
            roots: src.roots.clone(),
            files: src.files(),
            items: s
                .store
                .count(&crate::store::Partition::Scheme(src.kind.id_scheme()))
                .unwrap_or(0),
            errors: e.errors,
            last_error: e.last_error,
            scan_done: src.scanned.load(std::sync::atomic::Ordering::Relaxed),
            scan_total: src.scan_total.load(std::sync::atomic::Ordering::Relaxed),
        });
    }
    let store_error = s
        .published
        .store_error
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let body = Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        started_at: s.started_at,
        items: s.store.count(&crate::store::Partition::All).unwrap_or(0),
        http: s.http_addr.clone().map(|addr| HttpInfo { addr }),
        sources,
        store_error,
    };
    Ok(json(&body))
}

fn finish(mut item: Item, now: Millis) -> Item {
    derive_on_read(&mut item, now);
    item
}

async fn list_agents(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), params::AGENT_PARAMS)?;
    let now = Millis::now();
    if let Some(prefix) = p.one("id_prefix") {
        let limit = params::filter(&p, &s.store.context().tz)?.limit;
        let store = s.store.clone();
        let prefix = prefix.to_owned();
        let items = tokio::task::spawn_blocking(move || find_by_prefix(&store, &prefix, limit))
            .await
            .map_err(ApiError::internal)??;
        let items = items.into_iter().map(|i| finish(i, now)).collect();
        return Ok(json(&AgentsPage {
            items,
            next_cursor: None,
        }));
    }
    let filter = params::filter(&p, &s.store.context().tz)?;
    let store = s.store.clone();
    let page = tokio::task::spawn_blocking(move || store.list(&filter))
        .await
        .map_err(ApiError::internal)??;
    Ok(json(&AgentsPage {
        items: page.items.into_iter().map(|i| finish(i, now)).collect(),
        next_cursor: page.next_cursor.as_deref().map(params::encode_cursor),
    }))
}

/// Items whose id starts with `prefix`; a prefix without a scheme (`3f2a`) is tried after each
/// known scheme (`cli:3f2a`, …) so that short ids from `agentctl ls` resolve.
fn find_by_prefix(
    store: &Store,
    prefix: &str,
    limit: usize,
) -> Result<Vec<Item>, crate::store::StoreError> {
    let mut out = store.ids_with_prefix(prefix, limit)?;
    if !prefix.contains(':') {
        for kind in crate::sources::SourceKind::ALL {
            if out.len() >= limit {
                break;
            }
            out.extend(
                store.ids_with_prefix(
                    &format!("{}:{prefix}", kind.id_scheme()),
                    limit - out.len(),
                )?,
            );
        }
    }
    Ok(out)
}

async fn get_agent(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match s.store.get(&id)? {
        Some(item) => Ok(json(&finish(item, Millis::now()))),
        None => Err(ApiError::not_found(format!("no agent with id {id:?}"))),
    }
}

async fn summary(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &["tab"])?;
    let personal = p.personal()?;
    let snapshot = s.published.summary.borrow().tab(personal);
    Ok(json(&snapshot))
}

/// Cloud sync arrives with the cloud source; until one is configured there is nothing to fetch,
/// so the answer is an honest zero once everything queued is committed.
/// `POST /v1/sync`: a cloud sync now (joining one that runs), then everything committed.
async fn sync(State(s): State<AppState>) -> Result<Response, ApiError> {
    let synced = match &s.cloud {
        Some(cloud) => cloud.sync_now().await.map_err(ApiError::upstream)?,
        None => 0,
    };
    let writer = s.writer.clone();
    tokio::task::spawn_blocking(move || writer.barrier())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(json(&serde_json::json!({ "synced": synced })))
}

/// The management page. It may not be framed by another page (clickjacking), and its own
/// Content-Security-Policy (a meta tag) keeps it to this origin.
async fn index() -> Response {
    use axum::http::{HeaderValue, header};
    let mut resp = Html(include_str!("index.html")).into_response();
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
