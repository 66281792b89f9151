//! `POST /v1/hooks/{agent}` (the sources whose [`SourceKind::has_hooks`]): an agent CLI's hook payload,
//! decoded by [`crate::ingest::hooks`] and handed to that source's follower, where it overrides
//! the transcript's status until the transcript has a newer line. A hook that says nothing about
//! status is accepted and ignored (`{"accepted":false}`), so a hook configured for more events
//! never fails.

use super::{ApiError, AppState, json};
use crate::ingest::{HookSignal, IngestEvent};
use crate::sources::SourceKind;
use agentd_wire::Millis;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::Value;

pub async fn hook(
    State(s): State<AppState>,
    Path(agent): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some((kind, tx)) = SourceKind::from_name(&agent)
        .filter(|k| k.has_hooks())
        .and_then(|k| s.hooks.get(&k).map(|tx| (k, tx)))
    else {
        let known: Vec<&str> = SourceKind::ALL
            .into_iter()
            .filter(|k| k.has_hooks())
            .map(SourceKind::name)
            .collect();
        return Err(ApiError::not_found(format!(
            "no hooks for {agent:?}; agentd takes hooks of {}",
            known.join(", ")
        )));
    };
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("body", format!("not a JSON hook payload: {e}")))?;
    let session_id =
        crate::ingest::hooks::session_of(&v).map_err(|m| ApiError::bad_request("session_id", m))?;
    let Some(d) = crate::ingest::hooks::decode(kind, &v)
        .map_err(|m| ApiError::bad_request("hook_event_name", m))?
    else {
        return Ok(json(&serde_json::json!({"accepted": false})));
    };
    let accepted = tx
        .try_send(IngestEvent::Hook(Box::new(HookSignal {
            session_id,
            status: d.status,
            detail: d.detail,
            if_active: d.if_active,
            settle_ms: d.settle_ms,
            at: Millis::now(),
        })))
        .is_ok();
    Ok(json(&serde_json::json!({ "accepted": accepted })))
}
