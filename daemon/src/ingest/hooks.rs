//! What agent CLIs' hooks say about a conversation: pure decoders from a hook's JSON payload to
//! a status signal (`POST /v1/hooks/{agent}` hands them to the conversation's follower). A hook
//! is the agent saying exactly what it does, where its transcript can only be read for hints (a
//! permission prompt is never written to any of them).
//!
//! Claude Code (`claude-code`):
//!
//! | hook | status |
//! |---|---|
//! | `Notification` `permission_prompt` | blocked (its message) |
//! | `Notification` `elicitation_dialog` | blocked: waiting for your answer |
//! | `Notification` `idle_prompt` | "your turn" (a minute after a turn ends): an open turn ends as success; a finished, failed or canceled one stays as it is |
//! | `UserPromptSubmit`, `PreToolUse`, `PostToolUse` | working |
//! | `Stop` | success |
//! | `StopFailure` | failed (its error) |
//! | `SessionEnd` | the signal ends; the transcript decides |
//!
//! Codex (`codex`):
//!
//! | hook | status |
//! |---|---|
//! | `PermissionRequest` | blocked: waiting for approval: TOOL, once it has stood for 1 s (Codex's auto-review settles most requests within that, and must not flash blocked) |
//! | `UserPromptSubmit`, `PreToolUse`, `PostToolUse`, `SessionStart` | working |
//! | `Stop` | success |
//! | `StopFailure` | failed (its error) |
//! | `Interrupt` | canceled: interrupted by the user |
//! | `SessionEnd` | the signal ends |
//!
//! Qwen Code (`qwen`) and Factory Droid (`droid`) have Claude Code's hooks and are decoded the
//! same way.
//!
//! Gemini CLI (`gemini`):
//!
//! | hook | status |
//! |---|---|
//! | `Notification` `ToolPermission` | blocked (its message) |
//! | `BeforeAgent`, `BeforeTool`, `AfterTool` | working |
//! | `AfterAgent` | success (it fires only when no tool call is pending) |
//! | `SessionEnd` | the signal ends |
//!
//! GitHub Copilot CLI (`copilot`; `notification` payloads are camelCase with `sessionId`, the
//! PascalCase events snake_case with `session_id`):
//!
//! | hook | status |
//! |---|---|
//! | `Notification` `permission_prompt` | blocked (its message) |
//! | `Notification` `elicitation_dialog` | blocked: waiting for your answer |
//! | `UserPromptSubmit`, `PreToolUse`, `PostToolUse` | working |
//! | `Stop` | success |
//! | `ErrorOccurred` that is not recoverable | failed (its message) |
//! | `SessionEnd` | the signal ends |
//!
//! Other hooks are accepted and ignored, so a hook configured for more events never fails.

use crate::sources::SourceKind;
use agentd_wire::Status;
use serde_json::Value;

/// What one hook says.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// `None` ends the signal (the session ended: the transcript decides again).
    pub status: Option<Status>,
    pub detail: Option<String>,
    /// It applies only while the transcript says a turn is open.
    pub if_active: bool,
    /// It counts only once it has stood this long without a newer hook (ms).
    pub settle_ms: i64,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(200).collect())
}

fn signal(status: Status, detail: Option<String>) -> Option<Decoded> {
    Some(Decoded {
        status: Some(status),
        detail,
        if_active: false,
        settle_ms: 0,
    })
}

fn end() -> Option<Decoded> {
    Some(Decoded {
        status: None,
        detail: None,
        if_active: false,
        settle_ms: 0,
    })
}

fn failed(v: &Value) -> Option<Decoded> {
    signal(
        Status::Failed,
        text(v, "error")
            .or_else(|| text(v, "error_type"))
            .or_else(|| text(v, "message"))
            .or_else(|| Some("the turn failed".into())),
    )
}

/// The conversation a payload is about (its `session_id`, or Copilot CLI's camelCase
/// `sessionId`), checked to be an id.
pub fn session_of(v: &Value) -> Result<String, String> {
    let is_id = |id: &String| {
        id.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    text(v, "session_id")
        .filter(is_id)
        .or_else(|| text(v, "sessionId").filter(is_id))
        .ok_or_else(|| "`session_id`: missing or not a session id in the hook payload".into())
}

/// Decodes a hook payload of `kind`'s CLI. `Err` names what is wrong with the payload;
/// `Ok(None)` is a hook that says nothing about status.
pub fn decode(kind: SourceKind, v: &Value) -> Result<Option<Decoded>, String> {
    let event =
        text(v, "hook_event_name").ok_or("`hook_event_name`: missing in the hook payload")?;
    Ok(match kind {
        // Qwen Code's hooks are Claude Code's, event for event.
        SourceKind::ClaudeCode | SourceKind::Qwen | SourceKind::Droid => claude_code(&event, v),
        SourceKind::Codex => codex(&event, v),
        SourceKind::Gemini => gemini(&event, v),
        SourceKind::Copilot => copilot(&event, v),
        SourceKind::Kimi
        | SourceKind::OpenCode
        | SourceKind::Goose
        | SourceKind::Runs
        | SourceKind::Cloud => None,
    })
}

fn claude_code(event: &str, v: &Value) -> Option<Decoded> {
    match event {
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
                "permission_prompt" => signal(
                    Status::Blocked,
                    message.or_else(|| Some("waiting for permission".into())),
                ),
                // Claude Code is idle at its prompt: the turn is over, nothing waits on you.
                "idle_prompt" => Some(Decoded {
                    status: Some(Status::Success),
                    detail: None,
                    if_active: true,
                    settle_ms: 0,
                }),
                "elicitation_dialog" => {
                    signal(Status::Blocked, Some("waiting for your answer".into()))
                }
                _ => None,
            }
        }
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" => signal(Status::Working, None),
        "Stop" => signal(Status::Success, None),
        "StopFailure" => failed(v),
        "SessionEnd" => end(),
        _ => None,
    }
}

/// How long a Codex permission request must stand before it counts as waiting on you.
const CODEX_AUTO_REVIEW_MS: i64 = 1000;

fn codex(event: &str, v: &Value) -> Option<Decoded> {
    match event {
        "PermissionRequest" => Some(Decoded {
            status: Some(Status::Blocked),
            detail: Some(format!(
                "waiting for approval: {}",
                text(v, "tool_name").unwrap_or_else(|| "a tool".into())
            )),
            if_active: false,
            settle_ms: CODEX_AUTO_REVIEW_MS,
        }),
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" | "SessionStart" => {
            signal(Status::Working, None)
        }
        "Stop" => signal(Status::Success, None),
        "StopFailure" => failed(v),
        "Interrupt" => signal(Status::Canceled, Some("interrupted by the user".into())),
        "SessionEnd" => end(),
        _ => None,
    }
}

fn copilot(event: &str, v: &Value) -> Option<Decoded> {
    match event {
        "Notification" => match text(v, "notification_type").as_deref() {
            Some("permission_prompt") => signal(
                Status::Blocked,
                text(v, "message").or_else(|| Some("waiting for approval".into())),
            ),
            Some("elicitation_dialog") => {
                signal(Status::Blocked, Some("waiting for your answer".into()))
            }
            // Background shells and agents finishing: nothing about this conversation's turn.
            _ => None,
        },
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" => signal(Status::Working, None),
        "Stop" => signal(Status::Success, None),
        "ErrorOccurred" if v.get("recoverable").and_then(Value::as_bool) != Some(true) => signal(
            Status::Failed,
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(|m| m.chars().take(200).collect())
                .or_else(|| Some("an error occurred".into())),
        ),
        "SessionEnd" => end(),
        _ => None,
    }
}

fn gemini(event: &str, v: &Value) -> Option<Decoded> {
    match event {
        "Notification" if text(v, "notification_type").as_deref() == Some("ToolPermission") => {
            signal(
                Status::Blocked,
                text(v, "message").or_else(|| Some("waiting for approval".into())),
            )
        }
        "BeforeAgent" | "BeforeTool" | "AfterTool" => signal(Status::Working, None),
        "AfterAgent" => signal(Status::Success, None),
        "SessionEnd" => end(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Decodes `payload` for `kind` as (status, detail, if_active, settle_ms).
    fn check(
        kind: SourceKind,
        payload: Value,
        want: Option<(Option<Status>, Option<&str>, bool, i64)>,
    ) {
        let got = decode(kind, &payload).unwrap();
        let got = got
            .as_ref()
            .map(|d| (d.status, d.detail.as_deref(), d.if_active, d.settle_ms));
        assert_eq!(got, want, "{kind:?} {payload}");
    }

    #[test]
    fn claude_code_hooks() {
        use SourceKind::ClaudeCode as C;
        check(
            C,
            json!({"hook_event_name": "Notification", "notification_type": "permission_prompt",
                "message": "Claude needs your permission to use Bash"}),
            Some((
                Some(Status::Blocked),
                Some("Claude needs your permission to use Bash"),
                false,
                0,
            )),
        );
        // Regression: "your turn" made a finished conversation blocked.
        check(
            C,
            json!({"hook_event_name": "Notification", "message": "Claude is waiting for your input"}),
            Some((Some(Status::Success), None, true, 0)),
        );
        check(
            C,
            json!({"hook_event_name": "PreToolUse", "tool_name": "Bash"}),
            Some((Some(Status::Working), None, false, 0)),
        );
        check(
            C,
            json!({"hook_event_name": "Stop"}),
            Some((Some(Status::Success), None, false, 0)),
        );
        check(
            C,
            json!({"hook_event_name": "StopFailure", "error": "rate_limit"}),
            Some((Some(Status::Failed), Some("rate_limit"), false, 0)),
        );
        check(
            C,
            json!({"hook_event_name": "SessionEnd"}),
            Some((None, None, false, 0)),
        );
        check(C, json!({"hook_event_name": "PreCompact"}), None);
        check(
            C,
            json!({"hook_event_name": "Notification", "notification_type": "auth_success"}),
            None,
        );
        assert!(decode(C, &json!({"session_id": "x"})).is_err());
    }

    #[test]
    fn codex_hooks() {
        use SourceKind::Codex as X;
        check(
            X,
            json!({"hook_event_name": "PermissionRequest", "tool_name": "Bash",
                "tool_input": {"command": "rm -rf build"}}),
            Some((
                Some(Status::Blocked),
                Some("waiting for approval: Bash"),
                false,
                1000,
            )),
        );
        check(
            X,
            json!({"hook_event_name": "Interrupt"}),
            Some((
                Some(Status::Canceled),
                Some("interrupted by the user"),
                false,
                0,
            )),
        );
        check(
            X,
            json!({"hook_event_name": "Stop"}),
            Some((Some(Status::Success), None, false, 0)),
        );
        check(X, json!({"hook_event_name": "PreCompact"}), None);
    }

    #[test]
    fn copilot_hooks() {
        use SourceKind::Copilot as P;
        let note = json!({"sessionId": "7cf4", "timestamp": 1784000000000u64, "cwd": "/src",
            "hook_event_name": "Notification", "title": "Permission needed",
            "message": "Copilot wants to run bash", "notification_type": "permission_prompt"});
        assert_eq!(session_of(&note).unwrap(), "7cf4");
        check(
            P,
            note,
            Some((
                Some(Status::Blocked),
                Some("Copilot wants to run bash"),
                false,
                0,
            )),
        );
        check(
            P,
            json!({"hook_event_name": "Notification", "notification_type": "agent_idle"}),
            None,
        );
        check(
            P,
            json!({"hook_event_name": "PostToolUse", "session_id": "s", "tool_name": "bash"}),
            Some((Some(Status::Working), None, false, 0)),
        );
        check(
            P,
            json!({"hook_event_name": "Stop", "stop_reason": "end_turn"}),
            Some((Some(Status::Success), None, false, 0)),
        );
        check(
            P,
            json!({"hook_event_name": "ErrorOccurred", "error": {"message": "model overloaded", "name": "E"},
                "error_context": "model_call", "recoverable": false}),
            Some((Some(Status::Failed), Some("model overloaded"), false, 0)),
        );
        check(
            P,
            json!({"hook_event_name": "ErrorOccurred", "error": {"message": "retrying"}, "recoverable": true}),
            None,
        );
        check(
            P,
            json!({"hook_event_name": "SessionEnd", "reason": "user_exit"}),
            Some((None, None, false, 0)),
        );
    }

    #[test]
    fn gemini_hooks() {
        use SourceKind::Gemini as G;
        check(
            G,
            json!({"hook_event_name": "Notification", "notification_type": "ToolPermission",
                "message": "Tool Shell requires execution"}),
            Some((
                Some(Status::Blocked),
                Some("Tool Shell requires execution"),
                false,
                0,
            )),
        );
        check(
            G,
            json!({"hook_event_name": "AfterAgent"}),
            Some((Some(Status::Success), None, false, 0)),
        );
        check(
            G,
            json!({"hook_event_name": "BeforeTool"}),
            Some((Some(Status::Working), None, false, 0)),
        );
        check(
            G,
            json!({"hook_event_name": "Notification", "notification_type": "Other"}),
            None,
        );
    }
}
