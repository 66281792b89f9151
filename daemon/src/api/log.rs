//! `GET /v1/agents/{id}/log`: a run's output as plain text, read from the run log on disk (the
//! database keeps only the item, so hundreds of MB of output cost the daemon nothing until
//! someone reads them). With `follow=true` the answer stays open and streams new output until
//! the run finishes.

use super::params::Params;
use super::{ApiError, AppState};
use crate::ingest::runlog::output_data;
use crate::ingest::runs::MAX_LINE;
use crate::ingest::tail::{FileCursor, Opened};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::Response;
use std::time::Duration;

/// How often a followed log is checked for new output. Runs print in bursts; this keeps a
/// follower responsive without a watch per request.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub async fn agent_log(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &["follow"])?;
    let follow = p.flag("follow")?;
    let Some(item) = s.store.get(&id)? else {
        return Err(ApiError::not_found(format!("no agent with id {id:?}")));
    };
    if let Some(run_id) = id.strip_prefix("cloud:") {
        // A cloud run's log is its conversation, fetched on demand.
        let Some(cloud) = &s.cloud else {
            return Err(ApiError::not_found(format!(
                "{id} is a cloud run, and no cloud API key is configured"
            )));
        };
        let text = cloud
            .conversation(run_id, !item.status.is_active())
            .await
            .map_err(ApiError::upstream)?;
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from(text))
            .map_err(ApiError::internal);
    }
    let Some(path) = s.store.origin(&id)? else {
        return Err(ApiError::not_found(format!("{id} has no log")));
    };
    let scheme = crate::store::id_scheme(&id).to_owned();
    if matches!(scheme.as_str(), "claude-code" | "codex" | "gemini") {
        // A conversation's log is its transcript, rendered.
        let text = tokio::task::spawn_blocking(move || {
            crate::ingest::transcript::render(&scheme, &path)
                .map_err(|e| ApiError::not_found(format!("cannot read {}: {e}", path.display())))
        })
        .await
        .map_err(ApiError::internal)??;
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from(text))
            .map_err(ApiError::internal);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    let store = s.store.clone();
    let shutdown = s.shutdown.clone();
    tokio::task::spawn_blocking(move || {
        let mut cursor = FileCursor::default();
        loop {
            // Decide before reading, so that output written just before the end is not missed.
            let finished = !follow
                || *shutdown.borrow()
                || store
                    .get(&id)
                    .ok()
                    .flatten()
                    .is_none_or(|i| !i.status.is_active());
            let opened = match Opened::open(&path, &mut cursor) {
                Ok(o) => o,
                Err(e) => {
                    let _ = tx.blocking_send(Ok(format!(
                        "[agentd: cannot read {}: {e}]\n",
                        path.display()
                    )
                    .into()));
                    return;
                }
            };
            let mut open = true;
            let _ = opened.read_lines(&mut cursor, MAX_LINE, &mut |line| {
                if let (true, Some(data)) = (open, output_data(line)) {
                    open = tx.blocking_send(Ok(data.into())).is_ok();
                }
            });
            if finished || !open || tx.is_closed() {
                return; // done, or the client went away
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .map_err(ApiError::internal)
}
