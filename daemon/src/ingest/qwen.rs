//! Qwen Code chats (`~/.qwen/projects/<project>/chats/<sessionId>.jsonl`): the parser and fold,
//! pure. One JSON record a line: `{uuid, sessionId, timestamp, type: user|assistant|tool_result|
//! system, subtype?, cwd, message{role, parts[]}, usageMetadata?, model?, systemPayload?}`.
//!
//! | last deciding record | status | status_detail |
//! |---|---|---|
//! | `system` `turn_result` `completed` | success | |
//! | `system` `turn_result` `cancelled` | canceled | interrupted by the user |
//! | `system` `turn_result` `error` | failed | its error message |
//! | `user` (a prompt) or `tool_result` | working | |
//! | `assistant` asking for a tool (`functionCall`) with no result yet, quiet ≥ 5 s | blocked | waiting for approval: TOOL (inferred: Qwen Code writes no approval prompt) |
//! | `assistant` text with no `turn_result` (older versions), quiet ≥ 10 s | success | (inferred) |
//! | an open turn quiet for 30 minutes | failed | no activity for 30 minutes; the agent may have been closed |
//!
//! Tokens: each `assistant` record's `usageMetadata` once (by its `uuid`): input is
//! `promptTokenCount` less `cachedContentTokenCount` (Gemini's prompt count includes the cached
//! part), output `candidatesTokenCount` + `thoughtsTokenCount`, cache reads the cached count.
//! Title: the latest `custom_title`, else the first prompt.

use super::convo::{
    ABANDONED, ABANDONED_AFTER_MS, BLOCKED_AFTER_MS, Conversation, ConversationFold, CostSum,
    QUIET_DONE_MS, cut_title, note_rfc3339,
};
use super::transcript::{say, tool};
use crate::model::Millis;
use crate::prices::Prices;
use agentd_wire::{Status, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Assistant records whose usage was counted, kept to count each once (a bound for memory).
const COUNTED_IDS: usize = 4096;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    #[serde(rename = "type")]
    kind: String,
    uuid: Option<String>,
    session_id: Option<String>,
    timestamp: Option<String>,
    subtype: Option<String>,
    cwd: Option<String>,
    message: Option<Message>,
    usage_metadata: Option<UsageMetadata>,
    model: Option<String>,
    system_payload: Option<Value>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    parts: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

/// What the last deciding record said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
enum Last {
    #[default]
    Nothing,
    Working,
    /// A tool was asked for and no result came yet.
    ToolPending(String),
    /// Answered in text, with no turn result (yet, or ever: older versions).
    Answered,
    Ended(Status, Option<String>),
}

/// The folded state of one chat file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QwenFold {
    session_id: Option<String>,
    cwd: Option<String>,
    model: Option<String>,
    custom_title: Option<String>,
    first_prompt: Option<String>,
    first_ts: Option<Millis>,
    last_ts: Option<Millis>,
    last: Last,
    usage: Usage,
    cost: CostSum,
    counted: Vec<String>,
}

fn text_of(parts: &[Value]) -> Option<String> {
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .filter(|t| !t.trim().is_empty())
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n"))
}

impl QwenFold {
    fn on_assistant(&mut self, r: &Record, prices: &Prices) {
        if let Some(m) = &r.model {
            self.model = Some(m.clone());
        }
        if let Some(u) = &r.usage_metadata {
            let fresh = r.uuid.as_ref().is_none_or(|id| !self.counted.contains(id));
            if fresh {
                if let Some(id) = &r.uuid {
                    if self.counted.len() >= COUNTED_IDS {
                        self.counted.remove(0);
                    }
                    self.counted.push(id.clone());
                }
                let usage = Usage {
                    input_tokens: u
                        .prompt_token_count
                        .saturating_sub(u.cached_content_token_count),
                    output_tokens: u.candidates_token_count + u.thoughts_token_count,
                    cache_read_tokens: u.cached_content_token_count,
                    cache_write_tokens: 0,
                };
                self.usage.add(&usage);
                let model = r.model.as_deref().or(self.model.as_deref()).unwrap_or("");
                self.cost.add(prices, model, &usage, 1.0);
            }
        }
        let parts = r
            .message
            .as_ref()
            .map(|m| m.parts.as_slice())
            .unwrap_or(&[]);
        let call = parts
            .iter()
            .filter_map(|p| p.get("functionCall"))
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .next_back();
        self.last = match call {
            Some(name) => Last::ToolPending(name.to_owned()),
            None if text_of(parts).is_some() => Last::Answered,
            None => Last::Working,
        };
    }

    fn on_system(&mut self, r: &Record) {
        let payload = r.system_payload.as_ref();
        match r.subtype.as_deref() {
            Some("custom_title") => {
                if let Some(t) = payload
                    .and_then(|p| p.get("customTitle"))
                    .and_then(Value::as_str)
                    .filter(|t| !t.trim().is_empty())
                {
                    self.custom_title = Some(cut_title(t));
                }
            }
            Some("turn_result") => {
                let state = payload.and_then(|p| p.get("state")).and_then(Value::as_str);
                self.last = match state {
                    Some("completed") => Last::Ended(Status::Success, None),
                    Some("cancelled") => {
                        Last::Ended(Status::Canceled, Some("interrupted by the user".into()))
                    }
                    Some("error") => Last::Ended(
                        Status::Failed,
                        payload
                            .and_then(|p| p.pointer("/error/message"))
                            .and_then(Value::as_str)
                            .map(|m| cut_title(m.lines().next().unwrap_or(m)))
                            .or_else(|| Some("the turn failed".into())),
                    ),
                    _ => self.last.clone(),
                };
            }
            _ => {}
        }
    }
}

impl ConversationFold for QwenFold {
    fn apply(&mut self, line: &[u8], prices: &Prices) -> Result<(), String> {
        let r: Record = super::lenient::from_json_bytes(line)
            .map_err(|e| format!("not a Qwen Code record: {e}"))?;
        note_rfc3339(
            &mut self.first_ts,
            &mut self.last_ts,
            r.timestamp.as_deref(),
        );
        if let Some(s) = &r.session_id {
            self.session_id = Some(s.clone());
        }
        if let Some(c) = r.cwd.as_ref().filter(|c| !c.is_empty()) {
            self.cwd = Some(c.clone());
        }
        match r.kind.as_str() {
            "user" => {
                let text = r.message.as_ref().and_then(|m| text_of(&m.parts));
                if self.first_prompt.is_none()
                    && let Some(t) = &text
                {
                    self.first_prompt = Some(cut_title(t));
                }
                self.last = Last::Working;
            }
            "tool_result" => self.last = Last::Working,
            "assistant" => self.on_assistant(&r, prices),
            "system" => self.on_system(&r),
            other => return Err(format!("unknown record type {other:?}")),
        }
        Ok(())
    }

    fn conversation(&self, now: Millis) -> Conversation {
        let quiet = self.last_ts.map_or(0, |t| now.0.saturating_sub(t.0));
        let abandoned = || (Status::Failed, Some(ABANDONED.to_owned()));
        let (status, status_detail) = match &self.last {
            Last::Ended(s, d) => (*s, d.clone()),
            Last::Nothing => (Status::Working, None),
            Last::Answered if quiet >= QUIET_DONE_MS => (Status::Success, None),
            _ if quiet >= ABANDONED_AFTER_MS => abandoned(),
            Last::ToolPending(tool) if quiet >= BLOCKED_AFTER_MS => (
                Status::Blocked,
                Some(format!("waiting for approval: {tool}")),
            ),
            _ => (Status::Working, None),
        };
        Conversation {
            session_id: self.session_id.clone(),
            title: self
                .custom_title
                .clone()
                .or_else(|| self.first_prompt.clone()),
            cwd: self.cwd.clone(),
            model: self.model.clone(),
            created_at: self.first_ts,
            updated_at: self.last_ts,
            status,
            status_detail,
            usage: self.usage,
            cost_usd: self.cost.usd(),
            credits: None,
            live: None,
        }
    }
}

/// Renders one record for the transcript (see [`super::transcript`]), from the fold's own
/// decoding: prompts, answers and the tools called.
pub fn render(bytes: &[u8], out: &mut String) {
    let Ok(r) = serde_json::from_slice::<Record>(bytes) else {
        return;
    };
    let parts = r.message.as_ref().map_or(&[][..], |m| m.parts.as_slice());
    let text = text_of(parts).unwrap_or_default();
    match r.kind.as_str() {
        "user" => say(out, "you", &text),
        "assistant" => {
            say(out, "qwen", &text);
            for p in parts {
                if let Some(name) = p.pointer("/functionCall/name").and_then(Value::as_str) {
                    tool(out, Some(name));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(lines: &[&str]) -> QwenFold {
        let mut f = QwenFold::default();
        for l in lines {
            let _ = f.apply(l.as_bytes(), &Prices::builtin());
        }
        f
    }

    const PROMPT: &str = r#"{"uuid":"u1","sessionId":"s1","timestamp":"2026-07-17T09:00:00Z","type":"user","cwd":"/src/reg","message":{"role":"user","parts":[{"text":"Inspect the sample parser."}]}}"#;
    const CALL: &str = r#"{"uuid":"a1","sessionId":"s1","timestamp":"2026-07-17T09:00:01Z","type":"assistant","model":"qwen3-coder-plus","message":{"role":"model","parts":[{"functionCall":{"name":"run_shell_command","args":{}}}]},"usageMetadata":{"promptTokenCount":1000,"candidatesTokenCount":20,"cachedContentTokenCount":600,"thoughtsTokenCount":5}}"#;
    const RESULT: &str = r#"{"uuid":"t1","sessionId":"s1","timestamp":"2026-07-17T09:00:05Z","type":"tool_result","message":{"role":"user","parts":[{"functionResponse":{"name":"run_shell_command"}}]}}"#;
    const ANSWER: &str = r#"{"uuid":"a2","sessionId":"s1","timestamp":"2026-07-17T09:00:06Z","type":"assistant","model":"qwen3-coder-plus","message":{"role":"model","parts":[{"text":"I found the parser fixture."}]},"usageMetadata":{"promptTokenCount":1200,"candidatesTokenCount":30,"cachedContentTokenCount":1000}}"#;
    const DONE: &str = r#"{"uuid":"r1","sessionId":"s1","timestamp":"2026-07-17T09:00:07Z","type":"system","subtype":"turn_result","systemPayload":{"state":"completed"}}"#;

    fn at(f: &QwenFold, secs: i64) -> (Status, Option<String>) {
        let c = f.conversation(Millis(f.last_ts.unwrap().0 + secs * 1000));
        (c.status, c.status_detail)
    }

    #[test]
    fn statuses_follow_the_table() {
        assert_eq!(at(&fold(&[PROMPT]), 0).0, Status::Working);
        let pending = fold(&[PROMPT, CALL]);
        assert_eq!(at(&pending, 1).0, Status::Working);
        assert_eq!(
            at(&pending, 6),
            (
                Status::Blocked,
                Some("waiting for approval: run_shell_command".into())
            )
        );
        assert_eq!(at(&pending, 1801).0, Status::Failed);
        let answered = fold(&[PROMPT, CALL, RESULT, ANSWER]);
        assert_eq!(at(&answered, 1).0, Status::Working, "no turn result yet");
        assert_eq!(
            at(&answered, 11).0,
            Status::Success,
            "older versions: quiet answer"
        );
        assert_eq!(
            at(&fold(&[PROMPT, CALL, RESULT, ANSWER, DONE]), 0).0,
            Status::Success
        );
        let cancelled = DONE.replace("completed", "cancelled");
        assert_eq!(
            at(&fold(&[PROMPT, CALL, &cancelled]), 0),
            (Status::Canceled, Some("interrupted by the user".into()))
        );
        let failed = DONE.replace(
            r#""state":"completed""#,
            r#""state":"error","error":{"message":"quota exceeded\nretry later"}"#,
        );
        assert_eq!(
            at(&fold(&[PROMPT, &failed]), 0),
            (Status::Failed, Some("quota exceeded".into()))
        );
        // A new prompt reopens the conversation.
        assert_eq!(at(&fold(&[PROMPT, DONE, PROMPT]), 0).0, Status::Working);
    }

    #[test]
    fn usage_counts_each_response_once_and_titles_prefer_the_custom_one() {
        let f = fold(&[PROMPT, CALL, CALL, RESULT, ANSWER]);
        let c = f.conversation(Millis(0));
        assert_eq!(
            (
                c.usage.input_tokens,
                c.usage.output_tokens,
                c.usage.cache_read_tokens
            ),
            (400 + 200, 25 + 30, 600 + 1000)
        );
        assert_eq!(c.title.as_deref(), Some("Inspect the sample parser."));
        assert_eq!(c.cwd.as_deref(), Some("/src/reg"));
        assert_eq!(c.session_id.as_deref(), Some("s1"));
        assert_eq!(c.model.as_deref(), Some("qwen3-coder-plus"));
        let titled = fold(&[
            PROMPT,
            r#"{"uuid":"x","sessionId":"s1","timestamp":"2026-07-17T09:00:02Z","type":"system","subtype":"custom_title","systemPayload":{"customTitle":"parser review","titleSource":"manual"}}"#,
        ]);
        assert_eq!(
            titled.conversation(Millis(0)).title.as_deref(),
            Some("parser review")
        );
        // Garbage is refused, and the fold goes on.
        let mut g = fold(&[PROMPT]);
        assert!(g.apply(b"not json", &Prices::builtin()).is_err());
        assert_eq!(
            g.conversation(Millis(0)).title.as_deref(),
            Some("Inspect the sample parser.")
        );
    }
}
