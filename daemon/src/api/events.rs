//! `GET /v1/events`: server-sent events for plugins and the web page.
//!
//! On connect the stream sends the tab's current summary; then `event: agent` with the item on
//! every committed change (Personal tab: only the user's items), `event: summary` whenever the
//! tab's counts move, and a `: heartbeat` comment every [`HEARTBEAT`] so that proxies and clients
//! can tell a quiet stream from a dead one. A subscriber that falls behind the change bus gets
//! `event: resync` (reload your list) and a fresh summary, and carries on; it never slows the
//! writer.

use super::params::Params;
use super::{ApiError, AppState};
use crate::model::{Millis, derive_on_read};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::Response;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// At most this long between two writes on an open stream (contract: at least every 15 s).
pub const HEARTBEAT: Duration = Duration::from_secs(15);

fn frame(event: &str, data: &impl serde::Serialize) -> bytes::Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
    bytes::Bytes::from(format!("event: {event}\ndata: {json}\n\n"))
}

pub async fn events(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &["tab"])?;
    let personal = p.personal()?;
    let changes = s.published.changes.subscribe();
    let mut summary = s.published.summary.clone();
    let first = summary.borrow_and_update().tab(personal);
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = (
        changes,
        summary,
        s.shutdown.clone(),
        heartbeat,
        Some(first),
        first,
    );
    let stream = futures_util::stream::unfold(state, move |mut st| async move {
        let (changes, summary, shutdown, heartbeat, pending, last) = &mut st;
        if let Some(first) = pending.take() {
            return Some((Ok::<_, std::io::Error>(frame("summary", &first)), st));
        }
        loop {
            tokio::select! {
                r = changes.recv() => match r {
                    Ok(item) if !personal || item.mine => {
                        let mut item = (*item).clone();
                        derive_on_read(&mut item, Millis::now());
                        return Some((Ok(frame("agent", &item)), st));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        // Changes were missed: tell the client to reload its list, then carry on.
                        tracing::debug!("an event stream lagged by {n} changes");
                        let now = summary.borrow().tab(personal);
                        *last = now;
                        let mut out = frame("resync", &serde_json::json!({"missed": n})).to_vec();
                        out.extend_from_slice(&frame("summary", &now));
                        return Some((Ok(bytes::Bytes::from(out)), st));
                    }
                    Err(RecvError::Closed) => return None,
                },
                r = summary.changed() => {
                    if r.is_err() { return None; }
                    let now = summary.borrow_and_update().tab(personal);
                    if now != *last {
                        *last = now;
                        return Some((Ok(frame("summary", &now)), st));
                    }
                }
                _ = heartbeat.tick() => {
                    return Some((Ok(bytes::Bytes::from_static(b": heartbeat\n\n")), st));
                }
                _ = shutdown.changed() => return None,
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .map_err(ApiError::internal)
}
