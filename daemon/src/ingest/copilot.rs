//! GitHub Copilot CLI sessions (`~/.copilot/session-state/<sessionId>/events.jsonl`, or the flat
//! `session-state/<sessionId>.jsonl` of older builds): the parser and fold, pure. One event a
//! line: `{type, data, id, timestamp, parentId}`. Copilot CLI keeps its per-call usage and its
//! idle events in memory only (`ephemeral`), so the file says less than the screen; what it says
//! about waiting is exact: a permission request is written when it is shown.
//!
//! | last deciding event | status | status_detail |
//! |---|---|---|
//! | `permission.requested` with no `permission.completed` (and not answered by a hook) | blocked | waiting for approval: KIND |
//! | `tool.execution_start` of `ask_user` with no `tool.execution_complete` | blocked | waiting for your answer |
//! | `user.message`, `assistant.turn_start`, a tool starting or finishing, a permission answered | working | |
//! | `assistant.turn_end` after a message that asked for tools | working | (the tools run next) |
//! | `assistant.turn_end` after a message that asked for none | success | |
//! | `assistant.turn_end` with `status: "error"` | failed | its error message |
//! | `abort` | canceled | the reason (`user_initiated` …) |
//! | `session.error` | failed | its message |
//! | `session.shutdown` with `shutdownType: "error"` | failed | its `errorReason` |
//! | `session.shutdown` right after an answer, or after a turn ended | success | |
//! | `session.shutdown` in the middle of a turn | canceled | closed during a turn |
//! | an open turn quiet for 30 minutes | failed | no activity for 30 minutes; the agent may have been closed |
//!
//! Tokens: only `session.shutdown` carries them, in `modelMetrics`, cumulative for the session
//! so far (a resumed session writes a larger snapshot at its next shutdown): per model, the
//! largest snapshot counts. `inputTokens` includes both cache buckets, so input is
//! `inputTokens − cacheReadTokens − cacheWriteTokens`; reasoning is inside `outputTokens`.
//! Until a session shuts down, each `assistant.message`'s `outputTokens` is added, so a running
//! session's output grows; the next snapshot replaces those. Credits: `totalNanoAiu` (the
//! largest seen in `session.usage_checkpoint` or `session.shutdown`) / 10⁹, GitHub's AI credits.
//! Cost: the tokens at the built-in prices (API-equivalent, as for every other CLI).
//! Title: the first prompt.

use super::convo::{
    ABANDONED, ABANDONED_AFTER_MS, Conversation, ConversationFold, CostSum, cut_title, note_rfc3339,
};
use super::transcript::{say, tool};
use crate::model::Millis;
use crate::prices::Prices;
use agentd_wire::{Status, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Nano AI units in one AI credit.
const NANO_AIU_PER_CREDIT: f64 = 1e9;

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
    timestamp: Option<String>,
}

/// One model's cumulative counters from a shutdown snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Counters {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
}

impl Counters {
    fn of(metric: &Value) -> Counters {
        let n = |k: &str| {
            metric
                .pointer(&format!("/usage/{k}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Counters {
            input: n("inputTokens"),
            output: n("outputTokens"),
            cache_read: n("cacheReadTokens"),
            cache_write: n("cacheWriteTokens"),
        }
    }

    fn max(self, o: Counters) -> Counters {
        Counters {
            input: self.input.max(o.input),
            output: self.output.max(o.output),
            cache_read: self.cache_read.max(o.cache_read),
            cache_write: self.cache_write.max(o.cache_write),
        }
    }

    fn usage(self) -> Usage {
        Usage {
            input_tokens: self
                .input
                .saturating_sub(self.cache_read)
                .saturating_sub(self.cache_write),
            output_tokens: self.output,
            cache_read_tokens: self.cache_read,
            cache_write_tokens: self.cache_write,
        }
    }
}

/// What the last deciding event said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
enum Last {
    #[default]
    Nothing,
    Working,
    /// A turn ended; `true` when its last message asked for tools (so more comes).
    TurnEnded(bool),
    Blocked(String),
    Ended(Status, Option<String>),
}

/// The folded state of one session's event log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CopilotFold {
    session_id: Option<String>,
    cwd: Option<String>,
    model: Option<String>,
    first_prompt: Option<String>,
    first_ts: Option<Millis>,
    last_ts: Option<Millis>,
    last: Last,
    /// Permission requests not answered yet (request id → kind).
    pending: BTreeMap<String, String>,
    /// `ask_user` calls not answered yet.
    asking: Vec<String>,
    /// Whether the latest assistant message asked for tools.
    wants_tools: bool,
    /// Whether the latest event was an answer in text that asked for no tools (a session shut
    /// down right after one finished its turn, even when no `turn_end` was written).
    answered: bool,
    /// The largest snapshot per model.
    snapshots: BTreeMap<String, Counters>,
    /// Output tokens of messages since the last snapshot.
    unsnapshotted_output: u64,
    /// Their cost.
    unsnapshotted_cost: CostSum,
    /// The cost of `snapshots`, computed when they change.
    snapshot_cost: CostSum,
    nano_aiu: u64,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
}

impl CopilotFold {
    fn blocked_detail(&self) -> Option<String> {
        if let Some(kind) = self.pending.values().next() {
            return Some(format!("waiting for approval: {kind}"));
        }
        (!self.asking.is_empty()).then(|| "waiting for your answer".to_owned())
    }

    fn after_answer(&mut self) {
        self.last = match self.blocked_detail() {
            Some(d) => Last::Blocked(d),
            None => Last::Working,
        };
    }

    fn end_turn_open(&mut self) {
        self.pending.clear();
        self.asking.clear();
    }

    fn usage(&self) -> Usage {
        let mut u = Usage::default();
        for c in self.snapshots.values() {
            u.add(&c.usage());
        }
        u.output_tokens += self.unsnapshotted_output;
        u
    }

    /// The snapshots' cost: every model's tokens at its price.
    fn price_snapshots(&self, prices: &Prices) -> CostSum {
        let mut sum = CostSum::default();
        for (model, c) in &self.snapshots {
            sum.add(prices, model, &c.usage(), 1.0);
        }
        sum
    }

    fn cost(&self) -> Option<f64> {
        let mut sum = self.snapshot_cost;
        sum.micros += self.unsnapshotted_cost.micros;
        sum.any |= self.unsnapshotted_cost.any;
        sum.unknown |= self.unsnapshotted_cost.unknown;
        sum.usd()
    }
}

impl ConversationFold for CopilotFold {
    fn apply(&mut self, line: &[u8], prices: &Prices) -> Result<(), String> {
        let e: Event = super::lenient::from_json_bytes(line)
            .map_err(|e| format!("not a Copilot CLI event: {e}"))?;
        note_rfc3339(
            &mut self.first_ts,
            &mut self.last_ts,
            e.timestamp.as_deref(),
        );
        let d = &e.data;
        let answered = std::mem::take(&mut self.answered);
        match e.kind.as_str() {
            "session.start" | "session.resume" => {
                if let Some(id) = text(d, "sessionId") {
                    self.session_id = Some(id);
                }
                if let Some(m) = text(d, "selectedModel") {
                    self.model = Some(m);
                }
                if let Some(cwd) = d.get("context").and_then(|c| text(c, "cwd")) {
                    self.cwd = Some(cwd);
                }
            }
            "session.model_change" => {
                if let Some(m) = text(d, "newModel") {
                    self.model = Some(m);
                }
            }
            "user.message" => {
                if self.first_prompt.is_none()
                    && let Some(t) = text(d, "content")
                {
                    self.first_prompt = Some(cut_title(&t));
                }
                self.end_turn_open();
                self.last = Last::Working;
            }
            "assistant.turn_start" => self.last = Last::Working,
            "assistant.message" => {
                if let Some(m) = text(d, "model") {
                    self.model = Some(m);
                }
                let output = d.get("outputTokens").and_then(Value::as_u64).unwrap_or(0);
                if output > 0 {
                    self.unsnapshotted_output += output;
                    let usage = Usage {
                        output_tokens: output,
                        ..Usage::default()
                    };
                    let model = self.model.clone().unwrap_or_default();
                    self.unsnapshotted_cost.add(prices, &model, &usage, 1.0);
                }
                self.wants_tools = d
                    .get("toolRequests")
                    .and_then(Value::as_array)
                    .is_some_and(|r| !r.is_empty());
                self.answered = !self.wants_tools && text(d, "content").is_some();
                self.last = Last::Working;
            }
            "assistant.turn_end" => {
                if let Some(m) = text(d, "model") {
                    self.model = Some(m);
                }
                self.last = if d.get("status").and_then(Value::as_str) == Some("error") {
                    let msg = d
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .map(|m| cut_title(m.lines().next().unwrap_or(m)))
                        .unwrap_or_else(|| "the turn failed".into());
                    Last::Ended(Status::Failed, Some(msg))
                } else if let Some(detail) = self.blocked_detail() {
                    Last::Blocked(detail)
                } else {
                    Last::TurnEnded(self.wants_tools)
                };
            }
            "tool.execution_start" => {
                if d.get("toolName").and_then(Value::as_str) == Some("ask_user")
                    && let Some(id) = text(d, "toolCallId")
                {
                    self.asking.push(id);
                }
                self.after_answer();
            }
            "tool.execution_complete" => {
                if let Some(id) = text(d, "toolCallId") {
                    self.asking.retain(|a| *a != id);
                }
                self.after_answer();
            }
            "permission.requested" => {
                let by_hook = d
                    .get("resolvedByHook")
                    .is_some_and(|h| !h.is_null() && h != &Value::Bool(false));
                if !by_hook && let Some(id) = text(d, "requestId") {
                    let kind = d
                        .pointer("/permissionRequest/kind")
                        .and_then(Value::as_str)
                        .unwrap_or("a tool")
                        .to_owned();
                    self.pending.insert(id, kind);
                }
                self.after_answer();
            }
            "permission.completed" => {
                if let Some(id) = text(d, "requestId") {
                    self.pending.remove(&id);
                }
                self.after_answer();
            }
            "abort" => {
                self.end_turn_open();
                let reason = text(d, "reason").unwrap_or_else(|| "aborted".into());
                self.last = Last::Ended(Status::Canceled, Some(reason.replace('_', " ")));
            }
            "session.error" => {
                self.end_turn_open();
                let msg = text(d, "message")
                    .or_else(|| text(d, "errorType"))
                    .map(|m| cut_title(m.lines().next().unwrap_or(&m)))
                    .unwrap_or_else(|| "session error".into());
                self.last = Last::Ended(Status::Failed, Some(msg));
            }
            "session.usage_checkpoint" => {
                if let Some(n) = d.get("totalNanoAiu").and_then(Value::as_u64) {
                    self.nano_aiu = self.nano_aiu.max(n);
                }
            }
            "session.shutdown" => {
                if let Some(n) = d.get("totalNanoAiu").and_then(Value::as_u64) {
                    self.nano_aiu = self.nano_aiu.max(n);
                }
                if let Some(metrics) = d.get("modelMetrics").and_then(Value::as_object) {
                    for (model, metric) in metrics {
                        let now = Counters::of(metric);
                        let slot = self.snapshots.entry(model.clone()).or_default();
                        *slot = slot.max(now);
                    }
                    self.unsnapshotted_output = 0;
                    self.unsnapshotted_cost = CostSum::default();
                    self.snapshot_cost = self.price_snapshots(prices);
                }
                if let Some(m) = text(d, "currentModel") {
                    self.model = Some(m);
                }
                let open = !answered
                    && matches!(
                        self.last,
                        Last::Working | Last::Blocked(_) | Last::TurnEnded(true)
                    );
                self.end_turn_open();
                if d.get("shutdownType").and_then(Value::as_str) == Some("error") {
                    let reason = text(d, "errorReason")
                        .unwrap_or_else(|| "the session ended with an error".into());
                    self.last = Last::Ended(Status::Failed, Some(cut_title(&reason)));
                } else if open {
                    self.last = Last::Ended(Status::Canceled, Some("closed during a turn".into()));
                } else if answered || matches!(self.last, Last::TurnEnded(false)) {
                    self.last = Last::Ended(Status::Success, None);
                }
            }
            // Every other event (hooks, compaction, system messages, …) says nothing of status.
            _ => {}
        }
        Ok(())
    }

    fn conversation(&self, now: Millis) -> Conversation {
        let quiet = self.last_ts.map_or(0, |t| now.0.saturating_sub(t.0));
        let (status, status_detail) = match &self.last {
            Last::Ended(s, d) => (*s, d.clone()),
            Last::TurnEnded(false) => (Status::Success, None),
            Last::Nothing => (Status::Working, None),
            _ if quiet >= ABANDONED_AFTER_MS => (Status::Failed, Some(ABANDONED.to_owned())),
            Last::Blocked(d) => (Status::Blocked, Some(d.clone())),
            _ => (Status::Working, None),
        };
        let usage = self.usage();
        Conversation {
            session_id: self.session_id.clone(),
            title: self.first_prompt.clone(),
            cwd: self.cwd.clone(),
            model: self.model.clone(),
            created_at: self.first_ts,
            updated_at: self.last_ts,
            status,
            status_detail,
            usage,
            cost_usd: self.cost(),
            credits: (self.nano_aiu > 0)
                .then(|| (self.nano_aiu as f64 / NANO_AIU_PER_CREDIT * 1e4).round() / 1e4),
            live: None,
        }
    }
}

/// Renders one event for the transcript (see [`super::transcript`]), from the fold's own
/// decoding: prompts, answers, the tools asked for, approvals, interruptions, errors.
pub fn render(bytes: &[u8], out: &mut String) {
    let Ok(e) = serde_json::from_slice::<Event>(bytes) else {
        return;
    };
    let d = &e.data;
    let s = |k: &str| text(d, k).unwrap_or_default();
    match e.kind.as_str() {
        "user.message" => say(out, "you", &s("content")),
        "assistant.message" => {
            say(out, "copilot", &s("content"));
            for r in d
                .get("toolRequests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                tool(out, r.get("name").and_then(Value::as_str));
            }
        }
        "permission.requested" => out.push_str("  (asks for approval)\n"),
        "abort" => out.push_str("  (interrupted)\n"),
        "session.error" => say(out, "error", &s("message")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold<S: AsRef<str>>(lines: &[S]) -> CopilotFold {
        let mut f = CopilotFold::default();
        for l in lines {
            let _ = f.apply(l.as_ref().as_bytes(), &Prices::builtin());
        }
        f
    }

    fn ev(kind: &str, secs: u32, data: &str) -> String {
        format!(
            r#"{{"type":"{kind}","data":{data},"id":"e{secs}","timestamp":"2026-07-20T05:14:{secs:02}.000Z","parentId":null}}"#
        )
    }

    fn at(f: &CopilotFold, secs: i64) -> (Status, Option<String>) {
        let c = f.conversation(Millis(f.last_ts.unwrap().0 + secs * 1000));
        (c.status, c.status_detail)
    }

    #[test]
    fn statuses_follow_the_table() {
        let start = ev(
            "session.start",
            0,
            r#"{"sessionId":"7cf4","copilotVersion":"1.0.82","context":{"cwd":"/src/gw"}}"#,
        );
        let prompt = ev(
            "user.message",
            1,
            r#"{"content":"why is the pool exhausted"}"#,
        );
        let turn = ev("assistant.turn_start", 2, r#"{"turnId":"0"}"#);
        let ask = ev(
            "assistant.message",
            3,
            r#"{"messageId":"m1","model":"gpt-5-mini","content":"","toolRequests":[{"toolCallId":"c1","name":"bash"}],"outputTokens":40}"#,
        );
        let end_tools = ev("assistant.turn_end", 4, r#"{"turnId":"0"}"#);
        let perm = ev(
            "permission.requested",
            5,
            r#"{"requestId":"r1","permissionRequest":{"kind":"shell"}}"#,
        );
        let granted = ev(
            "permission.completed",
            6,
            r#"{"requestId":"r1","result":{"kind":"approved"}}"#,
        );
        let answer = ev(
            "assistant.message",
            7,
            r#"{"messageId":"m2","model":"gpt-5-mini","content":"Close the rows.","toolRequests":[],"outputTokens":60}"#,
        );
        let end = ev("assistant.turn_end", 8, r#"{"turnId":"1"}"#);

        assert_eq!(at(&fold(&[&start, &prompt]), 0).0, Status::Working);
        assert_eq!(
            at(&fold(&[&start, &prompt, &turn, &ask, &end_tools]), 0).0,
            Status::Working,
            "tools run next"
        );
        let blocked = fold(&[&start, &prompt, &turn, &ask, &end_tools, &perm]);
        assert_eq!(
            at(&blocked, 0),
            (Status::Blocked, Some("waiting for approval: shell".into())),
            "exact: no quiet time needed"
        );
        assert_eq!(at(&blocked, 1801).0, Status::Failed, "abandoned");
        let by_hook = perm.replace(
            r#""kind":"shell"}"#,
            r#""kind":"shell"},"resolvedByHook":true"#,
        );
        assert_eq!(
            at(&fold(&[&start, &prompt, &by_hook]), 0).0,
            Status::Working
        );
        let all = [
            &start, &prompt, &turn, &ask, &end_tools, &perm, &granted, &answer, &end,
        ];
        assert_eq!(at(&fold(&all[..7]), 0).0, Status::Working);
        assert_eq!(at(&fold(&all), 0).0, Status::Success);
        let question = ev(
            "tool.execution_start",
            9,
            r#"{"toolCallId":"q1","toolName":"ask_user","arguments":{}}"#,
        );
        let answered = ev(
            "tool.execution_complete",
            10,
            r#"{"toolCallId":"q1","success":true}"#,
        );
        assert_eq!(
            at(&fold(&[&start, &prompt, &question]), 0),
            (Status::Blocked, Some("waiting for your answer".into()))
        );
        assert_eq!(
            at(&fold(&[&start, &prompt, &question, &answered]), 0).0,
            Status::Working
        );
        assert_eq!(
            at(
                &fold(&[
                    &start,
                    &prompt,
                    &ev("abort", 3, r#"{"reason":"user_initiated"}"#)
                ]),
                0
            ),
            (Status::Canceled, Some("user initiated".into()))
        );
        assert_eq!(
            at(
                &fold(&[
                    &start,
                    &prompt,
                    &ev(
                        "session.error",
                        3,
                        r#"{"errorType":"quota","message":"Quota exceeded\nlater"}"#
                    )
                ]),
                0
            ),
            (Status::Failed, Some("Quota exceeded".into()))
        );
        let failed_turn = ev(
            "assistant.turn_end",
            4,
            r#"{"turnId":"0","status":"error","error":{"message":"model overloaded"}}"#,
        );
        assert_eq!(
            at(&fold(&[&start, &prompt, &failed_turn]), 0),
            (Status::Failed, Some("model overloaded".into()))
        );
        let shutdown = ev("session.shutdown", 20, r#"{"shutdownType":"routine"}"#);
        assert_eq!(
            at(&fold(&[&start, &prompt, &shutdown]), 0),
            (Status::Canceled, Some("closed during a turn".into()))
        );
        assert_eq!(
            at(&fold(&[&all[..], &[&shutdown]].concat()), 0).0,
            Status::Success
        );
        let crashed = ev(
            "session.shutdown",
            20,
            r#"{"shutdownType":"error","errorReason":"network lost"}"#,
        );
        assert_eq!(
            at(&fold(&[&start, &prompt, &crashed]), 0),
            (Status::Failed, Some("network lost".into()))
        );
        // A new prompt reopens a finished session (resumed).
        assert_eq!(
            at(&fold(&[&all[..], &[&shutdown, &prompt]].concat()), 0).0,
            Status::Working
        );
        let c = fold(&all).conversation(Millis(0));
        assert_eq!(c.title.as_deref(), Some("why is the pool exhausted"));
        assert_eq!(c.cwd.as_deref(), Some("/src/gw"));
        assert_eq!(c.session_id.as_deref(), Some("7cf4"));
        assert_eq!(c.model.as_deref(), Some("gpt-5-mini"));
    }

    #[test]
    fn a_session_shut_down_after_its_answer_is_a_success() {
        // The shape of the public Copilot CLI 1.0.71 recording: no turn_end before shutdown.
        let lines = [
            ev(
                "session.start",
                0,
                r#"{"sessionId":"7cf4","version":1,"producer":"copilot-agent","copilotVersion":"1.0.71","startTime":"2026-07-20T05:13:54.687Z","context":{"cwd":"/Users/x/coding/gateway"}}"#,
            ),
            ev(
                "session.model_change",
                1,
                r#"{"newModel":"gpt-5-mini","reasoningEffort":null}"#,
            ),
            ev(
                "system.message",
                2,
                r#"{"role":"system","content":"You are the GitHub Copilot CLI"}"#,
            ),
            ev(
                "user.message",
                3,
                r#"{"content":"why is the connection pool exhausted"}"#,
            ),
            ev("assistant.turn_start", 4, "{}"),
            ev(
                "assistant.message",
                5,
                r#"{"content":"the metrics poller leaks rows; add rows.Close in the scan loop"}"#,
            ),
            ev("session.shutdown", 6, "{}"),
        ];
        let f = fold(&lines);
        assert_eq!(at(&f, 0), (Status::Success, None));
        let c = f.conversation(Millis(0));
        assert_eq!(c.model.as_deref(), Some("gpt-5-mini"));
        assert_eq!(c.cwd.as_deref(), Some("/Users/x/coding/gateway"));
        assert_eq!(c.usage, Usage::default());
        assert_eq!((c.cost_usd, c.credits), (None, None));
    }

    #[test]
    fn tokens_come_from_the_largest_snapshot_and_live_output_until_then() {
        let start = ev("session.start", 0, r#"{"sessionId":"s"}"#);
        let msg = ev(
            "assistant.message",
            1,
            r#"{"model":"claude-sonnet-4.5","content":"ok","outputTokens":50}"#,
        );
        let snapshot = |secs: u32, input: u64, output: u64, read: u64| {
            ev(
                "session.shutdown",
                secs,
                &format!(
                    r#"{{"shutdownType":"routine","totalNanoAiu":6056400000,"modelMetrics":{{"claude-sonnet-4.5":{{"requests":{{"count":2,"cost":1}},"usage":{{"inputTokens":{input},"outputTokens":{output},"cacheReadTokens":{read},"cacheWriteTokens":100,"reasoningTokens":7}}}}}}}}"#
                ),
            )
        };
        let live = fold(&[&start, &msg, &msg]);
        let c = live.conversation(Millis(0));
        assert_eq!(c.usage.output_tokens, 100);
        assert!(c.cost_usd.is_some_and(|x| x > 0.0));
        // The snapshot replaces the live count; input excludes both cache buckets.
        let first = snapshot(2, 5000, 120, 3000);
        let c = fold(&[&start, &msg, &msg, &first]).conversation(Millis(0));
        assert_eq!(
            (
                c.usage.input_tokens,
                c.usage.output_tokens,
                c.usage.cache_read_tokens,
                c.usage.cache_write_tokens
            ),
            (1900, 120, 3000, 100)
        );
        assert_eq!(c.credits, Some(6.0564));
        let want = Prices::builtin()
            .cost(
                "claude-sonnet-4.5",
                &Usage {
                    input_tokens: 1900,
                    output_tokens: 120,
                    cache_read_tokens: 3000,
                    cache_write_tokens: 100,
                },
            )
            .unwrap();
        assert_eq!(c.cost_usd, Some((want * 1e6).round() / 1e6));
        // A repeated block adds nothing; a resumed leg's larger snapshot replaces the first.
        let c2 = fold(&[&start, &msg, &first, &first]).conversation(Millis(0));
        assert_eq!(c2.usage, c.usage);
        let resumed = snapshot(30, 9000, 300, 6000);
        let c3 = fold(&[&start, &first, &msg, &resumed]).conversation(Millis(0));
        assert_eq!(c3.usage.output_tokens, 300);
        assert_eq!(c3.usage.input_tokens, 9000 - 6000 - 100);
        // Output since the last snapshot adds on top of it.
        let c4 = fold(&[&start, &first, &msg]).conversation(Millis(0));
        assert_eq!(c4.usage.output_tokens, 170);
        // Garbage is refused and the fold goes on.
        let mut g = fold(&[&start]);
        assert!(g.apply(b"{not json", &Prices::builtin()).is_err());
        assert_eq!(g.conversation(Millis(0)).session_id.as_deref(), Some("s"));
    }
}
