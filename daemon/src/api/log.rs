//! `GET /v1/agents/{id}/log`: a run's output, or a conversation's transcript, as plain text,
//! read from the file on disk (the database keeps only the item, so hundreds of MB of output
//! cost the daemon nothing until someone reads them). The file is streamed a line at a time
//! through the same checked, non-blocking reader as ingestion (a FIFO or device planted in its
//! place is refused, and nothing is read whole). With `follow=true` the answer stays open and
//! streams new output until the agent finishes (Gemini CLI chats, which rewrite messages, are
//! rendered once; so are sessions kept in a database, read from it).

use super::params::Params;
use super::{ApiError, AppState};
use crate::ingest::runlog::output_data;
use crate::ingest::runs::MAX_LINE;
use crate::ingest::tail::{FileCursor, Opened};
use crate::ingest::transcript::{Transcript, render_gemini_json};
use crate::sources::SourceKind;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::Response;
use std::time::Duration;

/// How often a followed log is checked for new output. Runs print in bursts; this keeps a
/// follower responsive without a watch per request.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The largest compressed transcript (a Codex `.jsonl.zst` rollout) rendered.
const MAX_COMPRESSED_TRANSCRIPT: u64 = 256 * 1024 * 1024;

/// The largest legacy (whole-document) Gemini chat rendered.
const MAX_WHOLE_TRANSCRIPT: u64 = 64 * 1024 * 1024;

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
    let kind = SourceKind::of_id(&id);
    if kind == Some(SourceKind::Cloud) {
        // A cloud run's log is its conversation, fetched on demand.
        let run_id = id.split_once(':').map_or("", |(_, r)| r);
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
    if let Some(render) = kind.and_then(SourceKind::database_log) {
        // A session kept in a database (OpenCode, Goose): rendered from it, once.
        let session = id.split_once(':').map_or("", |(_, s)| s).to_owned();
        let text = tokio::task::spawn_blocking(move || render(&path, &session))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::not_found)?;
        return text_response(Body::from(text));
    }
    let transcript = kind.and_then(SourceKind::transcript);
    if kind.is_some_and(|k| k.is_whole_document(&path)) {
        // A legacy chat is one JSON document: read whole, with a bound.
        let text = tokio::task::spawn_blocking(move || {
            let mut cursor = FileCursor::default();
            Opened::open(&path, &mut cursor)
                .and_then(|o| o.read_whole(MAX_WHOLE_TRANSCRIPT))
                .map(|bytes| render_gemini_json(&bytes))
                .map_err(|e| ApiError::not_found(format!("cannot read {}: {e}", path.display())))
        })
        .await
        .map_err(ApiError::internal)??;
        return text_response(Body::from(text));
    }
    // The agent deleted its transcript: agentd's own copy is read instead.
    let copy = (!path.exists())
        .then(|| s.history.copy_of(&path))
        .flatten()
        .filter(|_| transcript.is_some());
    if (copy.is_some() || path.extension().is_some_and(|e| e == "zst"))
        && let Some(mut t) = kind.and_then(SourceKind::transcript)
    {
        // A compressed transcript (an old Codex rollout, or agentd's copy of a deleted one):
        // decompressed a line at a time.
        let path = copy.unwrap_or(path);
        let text = tokio::task::spawn_blocking(move || {
            let mut cursor = FileCursor::default();
            let bytes = Opened::open(&path, &mut cursor)
                .and_then(|o| o.read_whole(MAX_COMPRESSED_TRANSCRIPT))
                .map_err(|e| ApiError::not_found(format!("cannot read {}: {e}", path.display())))?;
            let mut out = String::new();
            crate::ingest::tail::zstd_lines(&bytes, MAX_LINE, &mut |line| {
                out.push_str(&t.line(line))
            })
            .map_err(|e| ApiError::not_found(format!("cannot read {}: {e}", path.display())))?;
            out.push_str(&t.finish());
            Ok::<_, ApiError>(out)
        })
        .await
        .map_err(ApiError::internal)??;
        return text_response(Body::from(text));
    }
    // A run's log is its output records; a conversation's is its transcript, rendered. Both
    // are streamed a line at a time (memory stays bounded whatever the file's size) and, when
    // asked and the format allows, followed.
    let mut render = match transcript {
        Some(t) => LogText::Transcript(t),
        None => LogText::Output,
    };
    let follow = follow && render.streams();
    // The first open answers the request: a file that cannot be read (gone, or something
    // other than a regular file put in its place) is an error answer, not an empty log.
    let first = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let mut cursor = FileCursor::default();
            Opened::open(&path, &mut cursor).map(|o| (o, cursor))
        })
    }
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::not_found(format!("cannot read {}: {e}", path.display())))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    let store = s.store.clone();
    let shutdown = s.shutdown.clone();
    tokio::task::spawn_blocking(move || {
        let (first, mut cursor) = first;
        let mut first = Some(first);
        loop {
            // Decide before reading, so that output written just before the end is not missed.
            let finished = !follow
                || *shutdown.borrow()
                || store
                    .get(&id)
                    .ok()
                    .flatten()
                    .is_none_or(|i| !i.status.is_active());
            let opened = match first
                .take()
                .map_or_else(|| Opened::open(&path, &mut cursor), Ok)
            {
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
            let read = opened.read_lines(&mut cursor, MAX_LINE, &mut |line| {
                if let (true, Some(data)) = (open, render.line(line)) {
                    // Stop reading as soon as the client is gone or agentd is stopping.
                    open = !*shutdown.borrow() && tx.blocking_send(Ok(data.into())).is_ok();
                }
            });
            if let Err(e) = read {
                let _ = tx.blocking_send(Ok(format!("[agentd: {e}]\n").into()));
                return;
            }
            if finished || !open || tx.is_closed() {
                let rest = render.finish();
                if open && !rest.is_empty() {
                    let _ = tx.blocking_send(Ok(rest.into()));
                }
                return; // done, or the client went away
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    text_response(Body::from_stream(stream))
}

/// What a log shows of each line of its file.
enum LogText {
    /// A run log: its output records' data.
    Output,
    /// A conversation store's transcript.
    Transcript(Transcript),
}

impl LogText {
    fn streams(&self) -> bool {
        match self {
            LogText::Output => true,
            LogText::Transcript(t) => t.streams(),
        }
    }

    fn line(&mut self, line: &[u8]) -> Option<String> {
        match self {
            LogText::Output => output_data(line),
            LogText::Transcript(t) => Some(t.line(line)).filter(|text| !text.is_empty()),
        }
    }

    /// What a format holds back until the whole file is read.
    fn finish(&mut self) -> String {
        match self {
            LogText::Output => String::new(),
            LogText::Transcript(t) => std::mem::replace(t, Transcript::Claude).finish(),
        }
    }
}

fn text_response(body: Body) -> Result<Response, ApiError> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .map_err(ApiError::internal)
}
