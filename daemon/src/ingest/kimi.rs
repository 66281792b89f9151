//! Kimi's wire logs, both generations, the parser and fold, pure:
//! - kimi-cli (Python, 1.x): `~/.kimi/sessions/<md5 of the work dir>/<sessionId>/wire.jsonl`,
//!   a metadata line then `{"timestamp": <unix s>, "message": {"type", "payload"}}`;
//! - Kimi Code (TypeScript): `~/.kimi-code/sessions/<workDirKey>/<sessionId>/agents/main/wire.jsonl`
//!   (sub-agents beside it in `agents/<id>/wire.jsonl`), a metadata line then
//!   `{"type", …payload, "time": <unix ms>}`.
//!
//! Both record approvals and questions as they are shown, so blocked is exact.
//!
//! | last deciding record (kimi-cli / Kimi Code) | status | status_detail |
//! |---|---|---|
//! | `ApprovalRequest` / `interaction.request` `approval` with no response yet | blocked | waiting for approval: ACTION |
//! | `QuestionRequest` / `interaction.request` `question` with no response yet | blocked | waiting for your answer |
//! | `TurnBegin` / `turn.prompt`, a step, a response to a request | working | |
//! | `TurnEnd` / `turn.ended` `completed` | success | |
//! | `turn.ended` `cancelled`, `turn.cancel` | canceled | interrupted |
//! | `turn.ended` `failed` or `blocked` | failed | its error message |
//! | `StepInterrupted` with no `TurnEnd` (kimi-cli cannot tell a cancel from an error) | canceled | interrupted |
//! | an open turn quiet for 30 minutes | failed | no activity for 30 minutes; the agent may have been closed |
//!
//! Tokens: kimi-cli's `StatusUpdate.token_usage` (one per step: `input_other`, `output`,
//! `input_cache_read`, `input_cache_creation`), as ccusage counts them; Kimi Code's
//! `usage.record` (every record adds to the session's totals, whatever its `usageScope`, as
//! Kimi Code itself folds them; `step.end` repeats the same call's usage and is not counted).
//! Model: Kimi Code's `usage.record`/`llm.request` `model`; kimi-cli's log does not say (its
//! config file holds API keys and is not read), so its usage is priced as `kimi-for-coding`,
//! the model of a Kimi Code plan (as ccusage prices it) and no model is shown. Title: the first
//! prompt.

use super::convo::{
    ABANDONED, ABANDONED_AFTER_MS, Conversation, ConversationFold, CostSum, cut_title, note_time,
};
use super::transcript::{say, tool};
use crate::model::Millis;
use crate::prices::Prices;
use agentd_wire::{Status, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The model kimi-cli's usage is priced as: its log does not name one.
const KIMI_CLI_MODEL: &str = "kimi-for-coding";

/// kimi-cli usage records counted, kept to count each once (a bound for memory).
const COUNTED_KEYS: usize = 4096;

/// What the last deciding record said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
enum Last {
    #[default]
    Nothing,
    Working,
    Ended(Status, Option<String>),
}

/// The folded state of one wire log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KimiFold {
    cwd: Option<String>,
    model: Option<String>,
    first_prompt: Option<String>,
    first_ts: Option<Millis>,
    last_ts: Option<Millis>,
    last: Last,
    /// Requests shown and not answered (request id → what is asked).
    waiting: BTreeMap<String, String>,
    usage: Usage,
    cost: CostSum,
    counted: Vec<String>,
}

/// The text of a prompt or a message's content: a string, or its parts' texts.
fn full_text(input: &Value) -> Option<String> {
    let text = match input {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| {
                p.get("type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t == "text")
            })
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => return None,
    };
    (!text.trim().is_empty()).then_some(text)
}

fn prompt_text(input: &Value) -> Option<String> {
    full_text(input).map(|t| cut_title(&t))
}

/// A tool call's name: `function.name` (kimi-cli, OpenAI style) or `name`.
fn tool_name(call: &Value) -> Option<&str> {
    call.pointer("/function/name")
        .or_else(|| call.get("name"))
        .and_then(Value::as_str)
}

fn first_line(s: &str) -> String {
    cut_title(s.lines().next().unwrap_or(s))
}

impl KimiFold {
    fn at(&mut self, ms: i64) {
        note_time(&mut self.first_ts, &mut self.last_ts, ms);
    }

    fn prompt(&mut self, input: Option<&Value>) {
        if self.first_prompt.is_none() {
            self.first_prompt = input.and_then(prompt_text);
        }
        self.waiting.clear();
        self.last = Last::Working;
    }

    fn end(&mut self, status: Status, detail: Option<String>) {
        self.waiting.clear();
        self.last = Last::Ended(status, detail);
    }

    fn add_usage(&mut self, usage: Usage, model: Option<&str>, prices: &Prices) {
        self.usage.add(&usage);
        let model = model.or(self.model.as_deref()).unwrap_or("");
        self.cost.add(prices, model, &usage, 1.0);
    }

    /// kimi-cli: `{"timestamp": s, "message": {"type", "payload"}}`.
    fn apply_cli(&mut self, ts: Option<f64>, kind: &str, p: &Value, prices: &Prices) {
        if let Some(ts) = ts {
            self.at((ts * 1000.0) as i64);
        }
        let s = |k: &str| p.get(k).and_then(Value::as_str);
        match kind {
            "TurnBegin" => self.prompt(p.get("user_input")),
            // A new step goes on with the turn (after an interrupted step too).
            "SteerInput" | "StepBegin" | "StepRetry" => self.last = Last::Working,
            "ToolCall" | "ToolResult" if !matches!(self.last, Last::Ended(..)) => {
                self.last = Last::Working
            }
            "TurnEnd" => self.end(Status::Success, None),
            "StepInterrupted" => self.end(Status::Canceled, Some("interrupted".into())),
            "ApprovalRequest" => {
                if let Some(id) = s("id") {
                    let what = s("action").or(s("sender")).unwrap_or("a tool");
                    self.waiting
                        .insert(id.to_owned(), format!("waiting for approval: {what}"));
                }
            }
            "QuestionRequest" => {
                if let Some(id) = s("id") {
                    self.waiting
                        .insert(id.to_owned(), "waiting for your answer".into());
                }
            }
            "ApprovalResponse" | "QuestionResponse" | "ApprovalRequestResolved" => {
                if let Some(id) = s("request_id").or(s("id")) {
                    self.waiting.remove(id);
                }
            }
            "StatusUpdate" => {
                let Some(u) = p.get("token_usage").filter(|u| u.is_object()) else {
                    return;
                };
                let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
                let usage = Usage {
                    input_tokens: n("input_other"),
                    output_tokens: n("output"),
                    cache_read_tokens: n("input_cache_read"),
                    cache_write_tokens: n("input_cache_creation"),
                };
                // ccusage's key: the message, its time and its counts.
                let key = format!(
                    "{}:{}:{}:{}:{}:{}",
                    s("message_id").unwrap_or(""),
                    ts.unwrap_or(0.0),
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_read_tokens,
                    usage.cache_write_tokens
                );
                if self.counted.contains(&key) {
                    return;
                }
                if self.counted.len() >= COUNTED_KEYS {
                    self.counted.remove(0);
                }
                self.counted.push(key);
                self.add_usage(usage, Some(KIMI_CLI_MODEL), prices);
            }
            _ => {}
        }
    }

    /// Kimi Code: `{"type", …payload, "time": ms}`.
    fn apply_code(&mut self, v: &Value, kind: &str, prices: &Prices) {
        if let Some(ms) = v.get("time").and_then(Value::as_i64) {
            self.at(ms);
        }
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        match kind {
            "config.update" | "profile.bind" => {
                if let Some(cwd) = v
                    .pointer("/environmentDisclosure/cwd")
                    .and_then(Value::as_str)
                    .or(s("cwd"))
                    .filter(|c| !c.is_empty())
                {
                    self.cwd = Some(cwd.to_owned());
                }
            }
            "environment.set_binding" => {
                if let Some(cwd) = s("cwd").filter(|c| !c.is_empty()) {
                    self.cwd = Some(cwd.to_owned());
                }
            }
            "llm.request" => {
                if let Some(m) = s("model").filter(|m| !m.is_empty()) {
                    self.model = Some(m.to_owned());
                }
                if !matches!(self.last, Last::Ended(..)) {
                    self.last = Last::Working;
                }
            }
            "turn.prompt" => {
                // Prompts from the runtime itself (retries, tasks, hooks) are not the title.
                let origin =
                    s("origin").or_else(|| v.pointer("/origin/kind").and_then(Value::as_str));
                let by_user = origin.is_none_or(|o| o == "user");
                if by_user {
                    self.prompt(v.get("input"));
                } else {
                    self.waiting.clear();
                    self.last = Last::Working;
                }
            }
            "turn.steer" => self.last = Last::Working,
            "turn.ended" => {
                let msg = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(first_line);
                match s("reason") {
                    Some("completed") => self.end(Status::Success, None),
                    Some("cancelled") => self.end(Status::Canceled, Some("interrupted".into())),
                    Some("blocked") => self.end(
                        Status::Failed,
                        Some(msg.map_or_else(|| "blocked".into(), |m| format!("blocked: {m}"))),
                    ),
                    _ => self.end(
                        Status::Failed,
                        Some(msg.unwrap_or_else(|| "the turn failed".into())),
                    ),
                }
            }
            // Cancelling a queued prompt leaves the running turn alone.
            "turn.cancel" if s("target") != Some("queued") => {
                self.end(Status::Canceled, Some("interrupted".into()))
            }
            "interaction.request" => {
                let what = match s("kind") {
                    Some("approval") => {
                        let action = v
                            .pointer("/request/action")
                            .or_else(|| v.pointer("/request/toolName"))
                            .and_then(Value::as_str)
                            .unwrap_or("a tool");
                        format!("waiting for approval: {action}")
                    }
                    Some("question") => "waiting for your answer".into(),
                    // A tool run by the client, not a person.
                    _ => return,
                };
                if let Some(id) = s("id") {
                    self.waiting.insert(id.to_owned(), what);
                }
            }
            "interaction.resolved" => {
                if let Some(id) = s("id") {
                    self.waiting.remove(id);
                }
            }
            "usage.record" => {
                let Some(u) = v.get("usage").filter(|u| u.is_object()) else {
                    return;
                };
                let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
                let usage = Usage {
                    input_tokens: n("inputOther"),
                    output_tokens: n("output"),
                    cache_read_tokens: n("inputCacheRead"),
                    cache_write_tokens: n("inputCacheCreation"),
                };
                let model = s("model").filter(|m| !m.is_empty()).map(str::to_owned);
                if let Some(m) = &model {
                    self.model = Some(m.clone());
                }
                self.add_usage(usage, model.as_deref(), prices);
            }
            _ => {}
        }
    }
}

impl ConversationFold for KimiFold {
    fn apply(&mut self, line: &[u8], prices: &Prices) -> Result<(), String> {
        let v: Value = super::lenient::from_json_bytes(line)
            .map_err(|e| format!("not a Kimi wire record: {e}"))?;
        if let Some(message) = v.get("message").filter(|m| m.is_object()) {
            let kind = message
                .get("type")
                .and_then(Value::as_str)
                .ok_or("a kimi-cli record without a message type")?;
            let payload = message.get("payload").unwrap_or(&Value::Null);
            self.apply_cli(
                v.get("timestamp").and_then(Value::as_f64),
                kind,
                payload,
                prices,
            );
            return Ok(());
        }
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .ok_or("a Kimi record without a type")?;
        if kind == "metadata" {
            if let Some(ms) = v.get("created_at").and_then(Value::as_i64) {
                self.at(ms);
            }
            return Ok(());
        }
        self.apply_code(&v, kind, prices);
        Ok(())
    }

    fn conversation(&self, now: Millis) -> Conversation {
        let quiet = self.last_ts.map_or(0, |t| now.0.saturating_sub(t.0));
        let (status, status_detail) = match (&self.last, self.waiting.values().next()) {
            (_, Some(what)) if quiet < ABANDONED_AFTER_MS => (Status::Blocked, Some(what.clone())),
            (Last::Ended(s, d), _) => (*s, d.clone()),
            (Last::Nothing, _) => (Status::Working, None),
            _ if quiet >= ABANDONED_AFTER_MS => (Status::Failed, Some(ABANDONED.to_owned())),
            _ => (Status::Working, None),
        };
        Conversation {
            session_id: None,
            title: self.first_prompt.clone(),
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

/// Renders one record for the transcript (see [`super::transcript`]), read as the fold reads
/// it, in both layouts: prompts, answers, the tools called, approvals, interruptions.
pub fn render(bytes: &[u8], out: &mut String) {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    // kimi-cli wraps each record in `message`; Kimi Code writes it at the top level.
    if let Some(m) = v.get("message").filter(|m| m.get("type").is_some()) {
        let p = m.get("payload").unwrap_or(&Value::Null);
        match m.get("type").and_then(Value::as_str).unwrap_or("") {
            "TurnBegin" => {
                if let Some(t) = p.get("user_input").and_then(full_text) {
                    say(out, "you", &t);
                }
            }
            "ContentPart" if p.get("type").and_then(Value::as_str) == Some("text") => say(
                out,
                "kimi",
                p.get("text").and_then(Value::as_str).unwrap_or(""),
            ),
            "ToolCall" => tool(out, tool_name(p)),
            "ApprovalRequest" => out.push_str("  (asks for approval)\n"),
            "StepInterrupted" => out.push_str("  (interrupted)\n"),
            _ => {}
        }
        return;
    }
    match v.get("type").and_then(Value::as_str).unwrap_or("") {
        "turn.prompt" => {
            if let Some(t) = v.get("input").and_then(full_text) {
                say(out, "you", &t);
            }
        }
        "context.append_message"
            if v.pointer("/message/role").and_then(Value::as_str) == Some("assistant") =>
        {
            let m = &v["message"];
            if let Some(t) = m.get("content").and_then(full_text) {
                say(out, "kimi", &t);
            }
            for c in m
                .get("toolCalls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                tool(out, tool_name(c));
            }
        }
        "interaction.request" => out.push_str("  (asks for approval)\n"),
        "turn.cancel" => out.push_str("  (interrupted)\n"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(lines: &[&str]) -> KimiFold {
        let mut f = KimiFold::default();
        for l in lines {
            let _ = f.apply(l.as_bytes(), &Prices::builtin());
        }
        f
    }

    fn cli(t: f64, kind: &str, payload: &str) -> String {
        format!(r#"{{"timestamp":{t},"message":{{"type":"{kind}","payload":{payload}}}}}"#)
    }

    fn at(f: &KimiFold, secs: i64) -> (Status, Option<String>) {
        let c = f.conversation(Millis(f.last_ts.unwrap().0 + secs * 1000));
        (c.status, c.status_detail)
    }

    const META: &str = r#"{"type":"metadata","protocol_version":"1.10"}"#;

    #[test]
    fn kimi_cli_statuses_and_tokens_follow_the_table() {
        let begin = cli(
            1784000000.5,
            "TurnBegin",
            r#"{"user_input":"list the files"}"#,
        );
        let step = cli(1784000001.0, "StepBegin", r#"{"n":1}"#);
        let usage = cli(
            1784000002.0,
            "StatusUpdate",
            r#"{"context_usage":0.1,"token_usage":{"input_other":1200,"output":80,"input_cache_read":4000,"input_cache_creation":300},"message_id":"m1"}"#,
        );
        let ask = cli(
            1784000003.0,
            "ApprovalRequest",
            r#"{"id":"req_1","tool_call_id":"call_1","sender":"Shell","action":"run shell command","description":"ls -la","display":[]}"#,
        );
        let yes = cli(
            1784000004.0,
            "ApprovalResponse",
            r#"{"request_id":"req_1","response":"approve"}"#,
        );
        let end = cli(1784000005.0, "TurnEnd", "{}");
        assert_eq!(at(&fold(&[META, &begin, &step]), 0).0, Status::Working);
        assert_eq!(
            at(&fold(&[META, &begin, &step, &ask]), 0),
            (
                Status::Blocked,
                Some("waiting for approval: run shell command".into())
            )
        );
        assert_eq!(
            at(&fold(&[META, &begin, &step, &ask, &yes]), 0).0,
            Status::Working
        );
        let all = [META, &begin, &step, &usage, &ask, &yes, &end];
        assert_eq!(at(&fold(&all), 0).0, Status::Success);
        let q = cli(
            1784000003.0,
            "QuestionRequest",
            r#"{"id":"q1","questions":[]}"#,
        );
        assert_eq!(
            at(&fold(&[META, &begin, &q]), 0),
            (Status::Blocked, Some("waiting for your answer".into()))
        );
        let stop = cli(1784000003.0, "StepInterrupted", "{}");
        assert_eq!(
            at(&fold(&[META, &begin, &step, &stop]), 0),
            (Status::Canceled, Some("interrupted".into()))
        );
        assert_eq!(at(&fold(&[META, &begin, &step]), 1801).0, Status::Failed);
        let c = fold(&[&all[..], &[&usage]].concat()).conversation(Millis(0));
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: 1200,
                output_tokens: 80,
                cache_read_tokens: 4000,
                cache_write_tokens: 300
            },
            "the same record twice counts once"
        );
        assert_eq!(c.title.as_deref(), Some("list the files"));
        assert_eq!(c.created_at, Some(Millis(1784000000500)));
    }

    #[test]
    fn kimi_code_statuses_and_tokens_follow_the_table() {
        let config = r#"{"type":"config.update","agentId":"main","environmentDisclosure":{"cwd":"/src/app"},"time":1784000000000}"#;
        let prompt = r#"{"type":"turn.prompt","agentId":"main","input":[{"type":"text","text":"hi"}],"origin":"user","time":1784000001000}"#;
        let retry = r#"{"type":"turn.prompt","agentId":"main","input":[{"type":"text","text":"again"}],"origin":"retry","time":1784000001500}"#;
        let req = r#"{"type":"interaction.request","agentId":"main","id":"i1","kind":"approval","toolCallId":"c1","request":{"action":"edit file"},"time":1784000002000}"#;
        let done = r#"{"type":"interaction.resolved","agentId":"main","id":"i1","response":{"kind":"approve"},"time":1784000003000}"#;
        let step_end = r#"{"type":"context.append_loop_event","event":{"type":"step.end","usage":{"inputOther":10,"output":5,"inputCacheRead":0,"inputCacheCreation":0}},"time":1784000003500}"#;
        let usage = r#"{"type":"usage.record","agentId":"main","model":"kimi-k2","usage":{"inputOther":10,"output":5,"inputCacheRead":7,"inputCacheCreation":2},"usageScope":"turn","time":1784000003600}"#;
        let ended = |reason: &str| {
            format!(
                r#"{{"type":"turn.ended","agentId":"main","turnId":1,"reason":"{reason}","error":{{"code":"x","message":"rate limited\nby the provider","retryable":true}},"time":1784000004000}}"#
            )
        };
        assert_eq!(at(&fold(&[META, config, prompt]), 0).0, Status::Working);
        assert_eq!(
            at(&fold(&[META, config, prompt, req]), 0),
            (
                Status::Blocked,
                Some("waiting for approval: edit file".into())
            )
        );
        assert_eq!(
            at(&fold(&[META, config, prompt, req, done]), 0).0,
            Status::Working
        );
        let completed = ended("completed");
        let f = fold(&[
            META, config, prompt, retry, req, done, step_end, usage, &completed,
        ]);
        assert_eq!(at(&f, 0), (Status::Success, None));
        assert_eq!(
            at(&fold(&[META, prompt, &ended("cancelled")]), 0),
            (Status::Canceled, Some("interrupted".into()))
        );
        assert_eq!(
            at(&fold(&[META, prompt, &ended("failed")]), 0),
            (Status::Failed, Some("rate limited".into()))
        );
        let cancel = r#"{"type":"turn.cancel","agentId":"main","turnId":1,"target":"active","reason":"user_cancelled","time":1784000004000}"#;
        assert_eq!(at(&fold(&[META, prompt, cancel]), 0).0, Status::Canceled);
        let c = f.conversation(Millis(0));
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: 10,
                output_tokens: 5,
                cache_read_tokens: 7,
                cache_write_tokens: 2
            },
            "usage.record counts, step.end does not"
        );
        assert_eq!(c.title.as_deref(), Some("hi"), "a retry is not the title");
        assert_eq!(c.cwd.as_deref(), Some("/src/app"));
        assert_eq!(c.model.as_deref(), Some("kimi-k2"));
        // The 1.1 sample's shape: `cwd` at the top level, origin as an object.
        let old = fold(&[
            r#"{"type":"config.update","cwd":"/tmp/work","time":1}"#,
            r#"{"type":"turn.prompt","input":[{"type":"text","text":"hello"}],"origin":{"kind":"user"},"time":2}"#,
        ]);
        let c = old.conversation(Millis(0));
        assert_eq!(
            (c.cwd.as_deref(), c.title.as_deref()),
            (Some("/tmp/work"), Some("hello"))
        );
        let mut g = fold(&[META]);
        assert!(g.apply(b"[1,2]", &Prices::builtin()).is_err());
    }
}
