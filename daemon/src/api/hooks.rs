//! `POST /v1/hooks/claude-code`: Claude Code's hooks say exactly what a conversation is doing,
//! where its transcript can only be read for hints (a permission prompt is never written to it).
//!
//! | hook | status |
//! |---|---|
//! | `Notification` `permission_prompt` | blocked (its message) |
//! | `Notification` `idle_prompt` | "your turn" (sent a minute after a turn ends): an open turn ends as success; a finished, failed or canceled one stays as it is — never blocked |
//! | `Notification` `elicitation_dialog` | blocked: waiting for your answer |
//! | `UserPromptSubmit`, `PreToolUse`, `PostToolUse` | working |
//! | `Stop` | success |
//! | `StopFailure` | failed (its error) |
//! | `SessionEnd` | the signal ends; the transcript decides |
//!
//! A signal holds until the transcript has a line newer than it. Other hooks are accepted and
//! ignored (`{"accepted":false}`), so a hook configured for more events never fails.

use super::{ApiError, AppState, json};
use crate::ingest::{HookSignal, IngestEvent};
use agentd_wire::{Millis, Status};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(200).collect())
}

/// The status and detail a hook payload implies, and whether it applies only to an open turn;
/// `Ok(None)` for hooks that say nothing about status, a `None` status for the end of a session.
type Signal = Option<(Option<Status>, Option<String>, bool)>;

fn signal_of(v: &Value) -> Result<Signal, ApiError> {
    let event = text(v, "hook_event_name")
        .ok_or_else(|| ApiError::bad_request("hook_event_name", "missing in the hook payload"))?;
    Ok(match event.as_str() {
        "Notification" => {
            let message = text(v, "message");
            let kind = text(v, "notification_type").unwrap_or_else(|| {
                // Older builds send only the message.
                match message.as_deref() {
                    Some(m) if m.contains("permission") => "permission_prompt".into(),
                    Some(m) if m.contains("waiting for your input") => "idle_prompt".into(),
                    _ => String::new(),
                }
            });
            match kind.as_str() {
                "permission_prompt" => Some((
                    Some(Status::Blocked),
                    message.or_else(|| Some("waiting for permission".into())),
                    false,
                )),
                // Claude Code is idle at its prompt: the turn is over, nothing waits on you.
                "idle_prompt" => Some((Some(Status::Success), None, true)),
                "elicitation_dialog" => Some((
                    Some(Status::Blocked),
                    Some("waiting for your answer".into()),
                    false,
                )),
                _ => None,
            }
        }
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" => {
            Some((Some(Status::Working), None, false))
        }
        "Stop" => Some((Some(Status::Success), None, false)),
        "StopFailure" => Some((
            Some(Status::Failed),
            text(v, "error")
                .or_else(|| text(v, "error_type"))
                .or_else(|| text(v, "message"))
                .or_else(|| Some("the turn failed".into())),
            false,
        )),
        "SessionEnd" => Some((None, None, false)),
        _ => None,
    })
}

pub async fn claude_code(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("body", format!("not a JSON hook payload: {e}")))?;
    let session_id = text(&v, "session_id")
        .filter(|id| {
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "session_id",
                "missing or not a session id in the hook payload",
            )
        })?;
    let Some((status, detail, if_active)) = signal_of(&v)? else {
        return Ok(json(&serde_json::json!({"accepted": false})));
    };
    let accepted = s.claude_hooks.as_ref().is_some_and(|tx| {
        tx.try_send(IngestEvent::Hook(HookSignal {
            session_id,
            status,
            detail,
            if_active,
            at: Millis::now(),
        }))
        .is_ok()
    });
    Ok(json(&serde_json::json!({ "accepted": accepted })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hooks_map_to_statuses() {
        for (payload, want) in [
            (
                json!({"hook_event_name": "Notification", "notification_type": "permission_prompt",
                    "message": "Claude needs your permission to use Bash"}),
                Some((
                    Some(Status::Blocked),
                    Some("Claude needs your permission to use Bash"),
                    false,
                )),
            ),
            (
                // Regression: "your turn" made a finished conversation blocked.
                json!({"hook_event_name": "Notification", "message": "Claude is waiting for your input"}),
                Some((Some(Status::Success), None, true)),
            ),
            (
                json!({"hook_event_name": "Notification", "notification_type": "idle_prompt"}),
                Some((Some(Status::Success), None, true)),
            ),
            (
                json!({"hook_event_name": "PreToolUse", "tool_name": "Bash"}),
                Some((Some(Status::Working), None, false)),
            ),
            (
                json!({"hook_event_name": "Stop"}),
                Some((Some(Status::Success), None, false)),
            ),
            (
                json!({"hook_event_name": "StopFailure", "error": "rate_limit"}),
                Some((Some(Status::Failed), Some("rate_limit"), false)),
            ),
            (
                json!({"hook_event_name": "SessionEnd", "reason": "exit"}),
                Some((None, None, false)),
            ),
            (json!({"hook_event_name": "PreCompact"}), None),
            (
                json!({"hook_event_name": "Notification", "notification_type": "auth_success"}),
                None,
            ),
        ] {
            let got = signal_of(&payload).unwrap();
            let got = got.as_ref().map(|(s, d, a)| (*s, d.as_deref(), *a));
            assert_eq!(got, want, "{payload}");
        }
        assert!(signal_of(&json!({"session_id": "x"})).is_err());
    }
}
