//! Factory Droid sessions (`~/.factory/sessions/<workspace>/<uuid>.jsonl` and its sibling
//! `<uuid>.settings.json`): the parser and fold, pure.
//!
//! The transcript holds a `session_start` record (`id`, `title`, `cwd`, `model`?) and `message`
//! records (`{timestamp, message{role, content: text or parts, model?}}`); the settings file holds
//! the session's token totals (`tokenUsage`), rewritten as it goes, and is folded whole. Droid
//! writes no turn-end or approval record, so every status but "working" is inferred:
//!
//! | last message | status | status_detail |
//! |---|---|---|
//! | a prompt, or a tool result | working | |
//! | `assistant` asking for a tool (`tool_use`) with no result yet, quiet ≥ 5 s | blocked | waiting for approval: TOOL (inferred; Droid's `Notification` hook is exact) |
//! | `assistant` text, quiet ≥ 10 s | success | (inferred) |
//! | an open turn quiet for 30 minutes | failed | no activity for 30 minutes; the agent may have been closed |
//!
//! Tokens and cost come from the settings file only (Droid keeps no per-message usage): input,
//! output plus thinking, cache reads and writes, priced with the session's model (`custom:` and a
//! `[Provider]` prefix stripped, as ccusage does).

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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
enum Last {
    #[default]
    Nothing,
    Working,
    ToolPending(String),
    Answered,
}

/// The folded state of one Droid file (a transcript, or a settings file).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DroidFold {
    session_id: Option<String>,
    title: Option<String>,
    first_prompt: Option<String>,
    cwd: Option<String>,
    model: Option<String>,
    first_ts: Option<Millis>,
    last_ts: Option<Millis>,
    last: Last,
    usage: Usage,
    cost: Option<f64>,
}

/// The text of a message's content: a string, or the `text` parts.
fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Array(parts) => {
            let t: Vec<&str> = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            (!t.is_empty()).then(|| t.join("\n"))
        }
        _ => None,
    }
}

/// The model name as the price table knows it (ccusage's normalisation).
pub fn normalize_model(model: &str) -> String {
    let m = model.trim().strip_prefix("custom:").unwrap_or(model.trim());
    let m = match m.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(m, |(_, r)| r.trim()),
        None => m,
    };
    m.replace('.', "-")
}

impl DroidFold {
    /// Folds a `<uuid>.settings.json` file: the session's token totals, priced.
    pub fn from_settings(bytes: &[u8], prices: &Prices) -> Result<DroidFold, String> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not a Droid settings file: {e}"))?;
        let t = v.get("tokenUsage").cloned().unwrap_or(Value::Null);
        let n = |k: &str| t.get(k).and_then(Value::as_u64).unwrap_or(0);
        let usage = Usage {
            input_tokens: n("inputTokens"),
            output_tokens: n("outputTokens") + n("thinkingTokens"),
            cache_read_tokens: n("cacheReadTokens"),
            cache_write_tokens: n("cacheCreationTokens"),
        };
        let model = v.get("model").and_then(Value::as_str).map(normalize_model);
        let mut cost = CostSum::default();
        cost.add(prices, model.as_deref().unwrap_or(""), &usage, 1.0);
        Ok(DroidFold {
            model,
            usage,
            cost: cost.usd(),
            ..DroidFold::default()
        })
    }
}

impl ConversationFold for DroidFold {
    fn apply(&mut self, line: &[u8], _prices: &Prices) -> Result<(), String> {
        let v: Value = super::lenient::from_json_bytes(line)
            .map_err(|e| format!("not a Droid record: {e}"))?;
        note_rfc3339(
            &mut self.first_ts,
            &mut self.last_ts,
            v.get("timestamp").and_then(Value::as_str),
        );
        match v.get("type").and_then(Value::as_str) {
            Some("session_start") => {
                let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
                self.title = s("title").map(cut_title).or(self.title.take());
                self.cwd = s("cwd").map(str::to_owned).or(self.cwd.take());
                if let Some(m) = s("model") {
                    self.model = Some(normalize_model(m));
                }
            }
            Some("message") => {
                let m = v.get("message").unwrap_or(&Value::Null);
                let content = m.get("content").unwrap_or(&Value::Null);
                if let Some(model) = m.get("model").and_then(Value::as_str) {
                    self.model = Some(normalize_model(model));
                }
                let parts = content.as_array().map(Vec::as_slice).unwrap_or(&[]);
                let has = |kind: &str| {
                    parts
                        .iter()
                        .any(|p| p.get("type").and_then(Value::as_str) == Some(kind))
                };
                match m.get("role").and_then(Value::as_str) {
                    Some("user") => {
                        if !has("tool_result")
                            && self.first_prompt.is_none()
                            && let Some(t) = text_of(content)
                        {
                            self.first_prompt = Some(cut_title(&t));
                        }
                        self.last = Last::Working;
                    }
                    Some("assistant") => {
                        let tool = parts
                            .iter()
                            .filter(|p| p.get("type").and_then(Value::as_str) == Some("tool_use"))
                            .filter_map(|p| p.get("name").and_then(Value::as_str))
                            .next_back();
                        self.last = match tool {
                            Some(t) => Last::ToolPending(t.to_owned()),
                            None if text_of(content).is_some() => Last::Answered,
                            None => Last::Working,
                        };
                    }
                    _ => {}
                }
            }
            Some(_) => {} // todo_state and other records say nothing about status
            None => return Err("a record without a type".into()),
        }
        Ok(())
    }

    fn conversation(&self, now: Millis) -> Conversation {
        let quiet = self.last_ts.map_or(0, |t| now.0.saturating_sub(t.0));
        let (status, status_detail) = match &self.last {
            Last::Answered if quiet >= QUIET_DONE_MS => (Status::Success, None),
            Last::Nothing => (Status::Working, None),
            _ if quiet >= ABANDONED_AFTER_MS => (Status::Failed, Some(ABANDONED.into())),
            Last::ToolPending(t) if quiet >= BLOCKED_AFTER_MS => {
                (Status::Blocked, Some(format!("waiting for approval: {t}")))
            }
            _ => (Status::Working, None),
        };
        Conversation {
            session_id: self.session_id.clone(),
            title: self.title.clone().or_else(|| self.first_prompt.clone()),
            cwd: self.cwd.clone(),
            model: self.model.clone(),
            created_at: self.first_ts,
            updated_at: self.last_ts,
            status,
            status_detail,
            usage: self.usage,
            cost_usd: self.cost,
            credits: None,
            live: None,
        }
    }
}

/// Renders one record for the transcript (see [`super::transcript`]), read as the fold reads
/// it: prompts, answers and the tools used.
pub fn render(bytes: &[u8], out: &mut String) {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    if v.get("type").and_then(Value::as_str) != Some("message") {
        return;
    }
    let m = v.get("message").unwrap_or(&Value::Null);
    let content = m.get("content").unwrap_or(&Value::Null);
    match m.get("role").and_then(Value::as_str) {
        Some("user") => {
            if let Some(t) = text_of(content) {
                say(out, "you", &t);
            }
        }
        Some("assistant") => {
            if let Some(t) = text_of(content) {
                say(out, "droid", &t);
            }
            for p in content.as_array().into_iter().flatten() {
                if p.get("type").and_then(Value::as_str) == Some("tool_use") {
                    tool(out, p.get("name").and_then(Value::as_str));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"type":"session_start","id":"factory-sess-001","title":"Refactor authentication module","owner":"developer","cwd":"/home/user/webapp"}"#;
    const ASK: &str = r#"{"type":"message","timestamp":"2025-12-01T10:00:00Z","message":{"role":"user","content":"Refactor the auth module to use JWT instead of session cookies"}}"#;
    const ANSWER: &str = r#"{"type":"message","timestamp":"2025-12-01T10:00:08Z","message":{"role":"assistant","content":"I'll help you refactor the auth module.","model":"claude-opus"}}"#;
    const TOOL: &str = r#"{"type":"message","timestamp":"2025-12-01T10:01:00Z","message":{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"Execute","input":{"command":"cargo test"}}]}}"#;

    fn fold(lines: &[&str]) -> DroidFold {
        let mut f = DroidFold::default();
        for l in lines {
            f.apply(l.as_bytes(), &Prices::builtin()).unwrap();
        }
        f
    }

    fn at(f: &DroidFold, secs: i64) -> Status {
        f.conversation(Millis(f.last_ts.unwrap().0 + secs * 1000))
            .status
    }

    #[test]
    fn statuses_are_inferred_from_the_last_message() {
        assert_eq!(at(&fold(&[START, ASK]), 0), Status::Working);
        let answered = fold(&[START, ASK, ANSWER]);
        assert_eq!(at(&answered, 5), Status::Working);
        assert_eq!(at(&answered, 11), Status::Success);
        let pending = fold(&[START, ASK, TOOL]);
        assert_eq!(at(&pending, 6), Status::Blocked);
        assert_eq!(at(&pending, 1801), Status::Failed);
        let c = answered.conversation(Millis(0));
        assert_eq!(c.title.as_deref(), Some("Refactor authentication module"));
        assert_eq!(c.cwd.as_deref(), Some("/home/user/webapp"));
        assert_eq!(c.model.as_deref(), Some("claude-opus"));
    }

    #[test]
    fn settings_carry_the_usage_and_models_are_normalised() {
        let f = DroidFold::from_settings(
            br#"{"model":"custom:[Anthropic] claude-sonnet-4.5-20250929","tokenUsage":{"inputTokens":1000,"outputTokens":200,"cacheCreationTokens":50,"cacheReadTokens":3000,"thinkingTokens":20}}"#,
            &Prices::builtin(),
        )
        .unwrap();
        let c = f.conversation(Millis(0));
        assert_eq!(
            (
                c.usage.input_tokens,
                c.usage.output_tokens,
                c.usage.cache_read_tokens,
                c.usage.cache_write_tokens
            ),
            (1000, 220, 3000, 50)
        );
        assert_eq!(c.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert!(c.cost_usd.is_some_and(|usd| usd > 0.0), "{c:?}");
        assert!(DroidFold::from_settings(b"nope", &Prices::builtin()).is_err());
    }
}
