//! OpenAI Codex CLI rollout files (`$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl`, also
//! written by the Codex IDE extension and Codex Desktop): a pure fold, [`CodexFold`].
//!
//! Every line is `{"timestamp": RFC 3339, "type": ..., "payload": {...}}` with `type` one of
//! `session_meta`, `turn_context`, `response_item`, `event_msg` or `compacted`. The format is
//! internal to Codex and changes every few releases, so the fold reads only the few payload
//! fields it needs, skips unknown types, and refuses a line (with a short reason) only when it
//! is not a JSON object at all.
//!
//! Fields:
//! - **session id**: the *first* `session_meta.id` (a forked rollout repeats its parent's
//!   `session_meta` later in the file); **created** is that line's `payload.timestamp`, else
//!   the first line's timestamp; **updated** is the latest line timestamp.
//! - **cwd**: `session_meta.cwd`, replaced by each `turn_context.cwd`.
//! - **model**: the latest `turn_context.model` (or `collaboration_mode.model`); tokens that
//!   arrive before any model is known are priced as `gpt-5`, as ccusage does, but the model
//!   stays unknown.
//! - **title**: the latest `thread_name_updated` name, else the first `user_message` typed by
//!   the user (first line, at most 200 characters); messages Codex injects
//!   (`<environment_context>`, `<user_instructions>`, `<turn_aborted>`) are not prompts.
//! - **tokens**: `token_count` events carry the *cumulative* `total_token_usage` and are
//!   re-emitted unchanged for rate-limit refreshes, so each event adds only how far the total
//!   advanced; one that did not advance adds nothing; a total that went down (a reset after
//!   resume or compaction) adds that event's `last_token_usage` and counts on from the new
//!   total. Codex's `input_tokens` include the cached ones and `output_tokens` include
//!   reasoning, so usage is `input − cached` input, `cached` cache reads, `output` output and
//!   no cache writes. Each increment is priced with the model current at that moment. (The
//!   burst of parent `token_count`s a forked or sub-agent rollout replays at its start is not
//!   told apart yet: it counts as this file's.)
//!
//! Status, evaluated at `now` (a turn is one prompt and everything the agent did for it):
//!
//! | Status | When |
//! |---|---|
//! | `working` | a turn is open (`task_started`, or a `user_message` in rollouts that predate lifecycle events) and none of the rows below applies; also a session where no turn ever opened and no answer was given |
//! | `blocked` | the open turn has a tool call (`function_call`, `custom_tool_call`, `local_shell_call`) without its output, the approval policy (latest `turn_context.approval_policy`) is not `never`, and no line came for 5 s: "waiting for approval: *tool*"; a pending `request_user_input` call blocks under any policy: "waiting for your answer" |
//! | `success` | `task_complete` with an answer (its `last_agent_message`, or an assistant message in the turn); in rollouts without lifecycle events, an assistant message is the last meaningful item of the turn and no line came for 10 s; a session where no turn ever opened but the agent answered |
//! | `failed` | `task_complete` with no answer at all: "the turn ended without an answer"; an `error` event: its message; an open turn with no line for 30 minutes: "no activity for 30 minutes; the agent may have been closed" |
//! | `canceled` | `turn_aborted`: "interrupted by the user" for `interrupted`, else "turn aborted: *reason*" |
//!
//! An open turn is judged in this order: a quiet answer without lifecycle events (`success`),
//! then 30 minutes of silence (`failed`), then a quiet pending call (`blocked`), else `working`.
//! In a rollout that marks its turns, only `task_complete` ends one, however quiet the answer.
//! Only the last turn counts: a new `task_started` (or, between turns, a new `user_message`)
//! reopens the conversation as `working`, whatever the previous turn ended with. An `error` or
//! `turn_aborted` ends the turn, so a `task_complete` for the same turn after it changes
//! nothing. Codex never writes its approval prompts to the rollout, so `blocked` is an
//! inference: a command that simply runs longer than 5 s under an asking policy looks the same.

use super::convo::{
    ABANDONED_AFTER_MS, BLOCKED_AFTER_MS, Conversation, ConversationFold, CostSum, QUIET_DONE_MS,
    set_if_changed,
};
use super::lenient::{BorrowedStr, LazyStr, scalars_are_empty, skip_map, skip_seq, string};
use super::transcript::{say, tool};
use crate::prices::Prices;
use agentd_wire::{Millis, Status, Usage};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// The model tokens are priced as when the rollout never named one (early-September-2025
/// rollouts have no `turn_context`); ccusage makes the same guess.
pub const FALLBACK_MODEL: &str = "gpt-5";
/// `status_detail` of a turn that completed with no assistant message at all.
pub const NO_ANSWER: &str = "the turn ended without an answer";
/// `status_detail` of a turn left open with no line for [`ABANDONED_AFTER_MS`].
pub const ABANDONED: &str = super::convo::ABANDONED;
/// `status_detail` of a turn the user interrupted.
pub const INTERRUPTED: &str = "interrupted by the user";
/// `status_detail` of a turn waiting on a `request_user_input` call.
pub const WAITING_FOR_ANSWER: &str = "waiting for your answer";

/// Titles are cut to this many characters.
const TITLE_CHARS: usize = 200;
/// Tool names are cut to this many characters (they only feed a status detail).
const NAME_CHARS: usize = 100;
/// Pending calls kept at most; the oldest is dropped beyond it. Parallel tool calls make a few,
/// and a call whose output never came must not grow the stored state without bound.
const MAX_PENDING: usize = 32;
/// The latest timestamp accepted, as everywhere (see [`crate::model::LATEST_MS`]).
const MAX_TS: i64 = crate::model::LATEST_MS;
/// User messages Codex injects into the conversation: context, not prompts.
const INJECTED_PREFIXES: [&str; 3] = [
    "<environment_context>",
    "<user_instructions>",
    "<turn_aborted>",
];

/// The fold of one rollout file. Small on purpose (no message text beyond the title), since it
/// is stored in the file's cursor after every read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CodexFold {
    /// The first `session_meta` was seen: later ones belong to a forked parent.
    meta_seen: bool,
    session_id: Option<String>,
    cwd: Option<String>,
    model: Option<String>,
    /// The latest `thread_name_updated` name (`None` once cleared).
    thread_name: Option<String>,
    /// The first prompt the user typed, already cut to a title.
    first_prompt: Option<String>,
    /// `session_meta.payload.timestamp`.
    meta_created: Option<Millis>,
    first_ts: Option<Millis>,
    last_ts: Option<Millis>,
    /// The latest `turn_context.approval_policy`.
    approval_policy: Option<String>,
    usage: Usage,
    cost: CostSum,
    /// The last cumulative `total_token_usage`, to turn the next one into an increment.
    last_total: Option<Tokens>,
    /// A `task_started` / `task_complete` was seen: the file marks its turns, so a quiet
    /// answer does not end one.
    lifecycle: bool,
    phase: Phase,
    /// The open turn was opened by a `user_message` in a rollout without lifecycle events.
    legacy_turn: bool,
    /// An assistant message came in the current turn.
    answered: bool,
    /// An assistant message is the last meaningful item (for rollouts without lifecycle).
    answer_last: bool,
    /// An assistant message came at all.
    any_answer: bool,
    /// Tool calls of the current turn still waiting for their output.
    pending: Vec<PendingCall>,
}

/// Where the last turn stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
enum Phase {
    /// No turn opened yet.
    #[default]
    Idle,
    Open,
    /// The turn ended; a new one reopens.
    Ended {
        status: Status,
        detail: Option<String>,
    },
}

/// A tool call without its output yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingCall {
    call_id: String,
    name: String,
}

/// Codex's `TokenUsage`, the fields that are billed (`reasoning_output_tokens` is inside
/// `output_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Tokens {
    input: u64,
    cached: u64,
    output: u64,
    total: u64,
}

impl Tokens {
    /// How far the cumulative count has gone: `total_tokens`, or input + output without it.
    fn size(&self) -> u64 {
        if self.total > 0 {
            self.total
        } else {
            self.input.saturating_add(self.output)
        }
    }

    fn minus(&self, earlier: &Tokens) -> Tokens {
        Tokens {
            input: self.input.saturating_sub(earlier.input),
            cached: self.cached.saturating_sub(earlier.cached),
            output: self.output.saturating_sub(earlier.output),
            total: self.total.saturating_sub(earlier.total),
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input.saturating_sub(self.cached),
            output_tokens: self.output,
            cache_read_tokens: self.cached,
            cache_write_tokens: 0,
        }
    }
}

impl CodexFold {
    fn session_meta(&mut self, p: &Payload) {
        if self.meta_seen {
            return;
        }
        self.meta_seen = true;
        self.session_id = p.id.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        self.meta_created = p.timestamp.as_deref().and_then(timestamp);
        if let Some(cwd) = p.cwd.as_deref().filter(|s| !s.is_empty()) {
            set_if_changed(&mut self.cwd, cwd);
        }
    }

    fn turn_context(&mut self, p: &Payload) {
        if let Some(cwd) = p.cwd.as_deref().filter(|s| !s.is_empty()) {
            set_if_changed(&mut self.cwd, cwd);
        }
        let collab = p.collaboration_mode.as_ref().and_then(|c| {
            c.get("model")
                .or_else(|| c.get("settings")?.get("model"))?
                .as_str()
        });
        if let Some(model) = p.model.as_deref().or(collab).filter(|s| !s.is_empty()) {
            set_if_changed(&mut self.model, model);
        }
        if let Some(policy) = &p.approval_policy {
            set_if_changed(&mut self.approval_policy, policy);
        }
    }

    fn response_item(&mut self, p: &Payload) {
        match p.kind.as_deref() {
            Some("message") if p.role.as_deref() == Some("assistant") => self.answer(),
            Some(kind @ ("function_call" | "custom_tool_call" | "local_shell_call")) => {
                self.answer_last = false;
                if let Some(call_id) = &p.call_id {
                    if self.pending.len() >= MAX_PENDING {
                        self.pending.remove(0);
                    }
                    let name = p.name.as_deref().filter(|n| !n.is_empty());
                    let name = name.unwrap_or(match kind {
                        "local_shell_call" => "local_shell",
                        other => other,
                    });
                    self.pending.push(PendingCall {
                        call_id: call_id.to_string(),
                        name: name.chars().take(NAME_CHARS).collect(),
                    });
                }
            }
            Some("function_call_output" | "custom_tool_call_output") => {
                self.answer_last = false;
                if let Some(id) = &p.call_id {
                    self.pending.retain(|c| c.call_id != *id);
                }
            }
            // Reasoning, user and developer messages, searches, snapshots: the agent is busy.
            _ => self.answer_last = false,
        }
    }

    fn event(&mut self, p: &Payload, prices: &Prices) {
        match p.kind.as_deref() {
            Some("task_started" | "turn_started") => {
                self.lifecycle = true;
                self.open_turn();
            }
            Some("task_complete" | "turn_complete") => {
                self.lifecycle = true;
                if !p.last_agent_message && !self.answered {
                    self.end_turn(Status::Failed, Some(NO_ANSWER.to_owned()));
                } else {
                    self.end_turn(Status::Success, None);
                }
            }
            Some("turn_aborted") => {
                let detail = match p.reason.as_deref() {
                    Some("interrupted") => INTERRUPTED.to_owned(),
                    Some(reason) if !reason.is_empty() => format!("turn aborted: {reason}"),
                    _ => "turn aborted".to_owned(),
                };
                self.end_turn(Status::Canceled, Some(detail));
            }
            Some("error") if error_ends_turn(p.codex_error_info.as_ref()) => {
                let message = p.message.get();
                let detail = message.as_deref().filter(|m| !m.trim().is_empty());
                self.end_turn(Status::Failed, Some(detail.unwrap_or("error").to_owned()));
            }
            Some("user_message") => {
                let message = p.message.get();
                let text = message.as_deref().unwrap_or("");
                if is_injected(text) {
                    return;
                }
                if self.first_prompt.is_none() {
                    self.first_prompt = title(text);
                }
                // Inside a marked turn a message steers it; otherwise it starts a new one.
                if self.phase != Phase::Open || self.legacy_turn {
                    self.open_turn();
                }
                self.answer_last = false;
            }
            Some("agent_message") => self.answer(),
            Some("agent_reasoning" | "agent_reasoning_raw_content") => self.answer_last = false,
            Some("thread_name_updated") => {
                self.thread_name = match &p.thread_name {
                    Some(Value::String(name)) => title(name),
                    _ => None,
                };
            }
            Some("token_count") => self.tokens(p.info.as_ref(), prices),
            _ => {}
        }
    }

    fn open_turn(&mut self) {
        self.phase = Phase::Open;
        self.legacy_turn = !self.lifecycle;
        self.answered = false;
        self.answer_last = false;
        self.pending.clear();
    }

    /// Ends the turn unless it already ended (an `error` or `turn_aborted` is followed by the
    /// same turn's `task_complete`, which must not turn the failure into a success).
    fn end_turn(&mut self, status: Status, detail: Option<String>) {
        if matches!(self.phase, Phase::Idle | Phase::Open) {
            self.phase = Phase::Ended { status, detail };
        }
    }

    fn answer(&mut self) {
        self.answered = true;
        self.answer_last = true;
        self.any_answer = true;
    }

    fn tokens(&mut self, info: Option<&TokenInfo>, prices: &Prices) {
        let Some(total) = info.and_then(|i| i.total) else {
            return; // `info: null`: a rate-limit refresh only
        };
        let delta = match self.last_total {
            None => total,
            Some(prev) if total.size() > prev.size() => total.minus(&prev),
            Some(prev) if total.size() == prev.size() => return, // a re-emit
            Some(_) => info.and_then(|i| i.last).unwrap_or_default(),
        };
        self.last_total = Some(total);
        let usage = delta.usage();
        if usage == Usage::default() {
            return;
        }
        self.usage.add(&usage);
        let model = self.model.as_deref().unwrap_or(FALLBACK_MODEL);
        self.cost.add(prices, model, &usage, 1.0);
    }

    fn status(&self, now: Millis) -> (Status, Option<String>) {
        match &self.phase {
            Phase::Idle if self.any_answer => (Status::Success, None),
            Phase::Idle => (Status::Working, None),
            Phase::Ended { status, detail } => (*status, detail.clone()),
            Phase::Open => {
                let quiet = self.last_ts.map_or(0, |t| now.0.saturating_sub(t.0));
                if self.legacy_turn && self.answer_last && quiet >= QUIET_DONE_MS {
                    (Status::Success, None)
                } else if quiet >= ABANDONED_AFTER_MS {
                    (Status::Failed, Some(ABANDONED.to_owned()))
                } else if quiet >= BLOCKED_AFTER_MS
                    && let Some(detail) = self.blocked_on()
                {
                    (Status::Blocked, Some(detail))
                } else {
                    (Status::Working, None)
                }
            }
        }
    }

    /// What a quiet open turn with pending calls is waiting for, if it may be waiting at all.
    fn blocked_on(&self) -> Option<String> {
        if self.pending.iter().any(|c| c.name == "request_user_input") {
            return Some(WAITING_FOR_ANSWER.to_owned());
        }
        if self.approval_policy.as_deref() == Some("never") {
            return None;
        }
        let call = self.pending.last()?;
        Some(format!("waiting for approval: {}", call.name))
    }
}

impl ConversationFold for CodexFold {
    fn apply(&mut self, bytes: &[u8], prices: &Prices) -> Result<(), String> {
        let mut line = Line::default();
        super::lenient::from_json_bytes_seed(bytes, LineSeed(&mut line))
            .map_err(|e| format!("not a rollout line: {e}"))?;
        if let Some(ts) = line.timestamp.as_deref().and_then(timestamp) {
            self.first_ts.get_or_insert(ts);
            self.last_ts = Some(self.last_ts.map_or(ts, |t| t.max(ts)));
        }
        // Borrowed, not moved: a payload is a few hundred bytes, copied at each move.
        let payload = &line.payload;
        match line.kind.as_deref() {
            Some("session_meta") => self.session_meta(payload),
            Some("turn_context") => self.turn_context(payload),
            Some("response_item") => self.response_item(payload),
            Some("event_msg") => self.event(payload, prices),
            _ => {}
        }
        Ok(())
    }

    fn conversation(&self, now: Millis) -> Conversation {
        let (status, status_detail) = self.status(now);
        Conversation {
            session_id: self.session_id.clone(),
            title: self
                .thread_name
                .clone()
                .or_else(|| self.first_prompt.clone()),
            cwd: self.cwd.clone(),
            model: self.model.clone(),
            created_at: self.meta_created.or(self.first_ts),
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

/// An RFC 3339 timestamp within the years a wire timestamp can spell.
fn timestamp(s: &str) -> Option<Millis> {
    agentd_wire::parse_rfc3339_ms(s)
        .filter(|ms| (0..=MAX_TS).contains(ms))
        .map(Millis)
}

/// A title from free text: its first non-empty line, trimmed and cut.
fn title(text: &str) -> Option<String> {
    let line = text.trim().lines().next()?.trim();
    (!line.is_empty()).then(|| line.chars().take(TITLE_CHARS).collect())
}

/// Whether a `user_message` is context Codex injected rather than a prompt the user typed.
fn is_injected(text: &str) -> bool {
    let start = text.trim_start();
    INJECTED_PREFIXES.iter().any(|p| start.starts_with(p))
}

/// Whether an `error` event ends its turn: all do except the two kinds Codex itself says leave
/// the turn running (`CodexErrorInfo::affects_turn_status`).
fn error_ends_turn(info: Option<&Value>) -> bool {
    let kind = match info {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(m)) => m.keys().next().map(String::as_str),
        _ => None,
    };
    !matches!(
        kind,
        Some("thread_rollback_failed" | "active_turn_not_steerable")
    )
}

/// One rollout line: `timestamp`, `type` and the `payload`, read without building the parts
/// this fold does not use (tool outputs and instructions are most of a rollout's bytes).
/// Decoded in place ([`LineSeed`]).
#[derive(Default)]
struct Line<'a> {
    timestamp: Option<Cow<'a, str>>,
    kind: Option<Cow<'a, str>>,
    /// Empty when the line has none, or one that is not an object.
    payload: Payload<'a>,
}

/// The payload fields any line type of interest uses; everything else is skipped unparsed.
/// Each is taken only when it has the expected JSON type, so an odd value never fails a line.
#[derive(Default)]
struct Payload<'a> {
    kind: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    cwd: Option<Cow<'a, str>>,
    model: Option<Cow<'a, str>>,
    collaboration_mode: Option<Value>,
    approval_policy: Option<Cow<'a, str>>,
    thread_name: Option<Value>,
    /// Decoded where read: an agent message is long and the fold only notes that it came.
    message: LazyStr<'a>,
    role: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    call_id: Option<Cow<'a, str>>,
    /// `last_agent_message` is present and not null.
    last_agent_message: bool,
    reason: Option<Cow<'a, str>>,
    info: Option<TokenInfo>,
    codex_error_info: Option<Value>,
}

/// `token_count.info`: the two usage objects the fold reads, each kept only when it is an
/// object; the rest of `info` (and an `info` that is not an object) is skipped unbuilt.
#[derive(Default)]
struct TokenInfo {
    /// `total_token_usage`: the session's running total.
    total: Option<Tokens>,
    /// `last_token_usage`: the latest request's.
    last: Option<Tokens>,
}

impl<'de> Deserialize<'de> for TokenInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TokenInfo, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TokenInfo;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TokenInfo, A::Error> {
                let mut info = TokenInfo::default();
                while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
                    match key.0.as_ref() {
                        "total_token_usage" => info.total = map.next_value::<Counts>()?.0,
                        "last_token_usage" => info.last = map.next_value::<Counts>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(info)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TokenInfo, A::Error> {
                skip_seq(seq).map(|()| TokenInfo::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<TokenInfo, E> {
                Ok(TokenInfo::default())
            }
            scalars_are_empty!();
        }
        d.deserialize_any(V)
    }
}

/// A usage object's counts (`Some` only for an object); a count that is not a non-negative
/// integer is 0.
#[derive(Default)]
struct Counts(Option<Tokens>);

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Counts, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Counts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Counts, A::Error> {
                let mut t = Tokens::default();
                while let Some(key) = map.next_key::<BorrowedStr<'de>>()? {
                    let slot = match key.0.as_ref() {
                        "input_tokens" => &mut t.input,
                        "cached_input_tokens" => &mut t.cached,
                        "output_tokens" => &mut t.output,
                        "total_tokens" => &mut t.total,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = map.next_value::<Count>()?.0;
                }
                Ok(Counts(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Counts, A::Error> {
                skip_seq(seq).map(|()| Counts(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Counts, E> {
                Ok(Counts(None))
            }
            scalars_are_empty!();
        }
        d.deserialize_any(V)
    }
}

/// A token count: a non-negative integer, anything else 0.
struct Count(u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Count, A::Error> {
                skip_map(map).map(|()| Count(0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Count, A::Error> {
                skip_seq(seq).map(|()| Count(0))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                Ok(Count(u64::try_from(v).unwrap_or(0)))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
                Ok(Count(0))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum LineField {
    Timestamp,
    Type,
    Payload,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum PayloadField {
    Type,
    Id,
    Timestamp,
    Cwd,
    Model,
    CollaborationMode,
    ApprovalPolicy,
    ThreadName,
    Message,
    Role,
    Name,
    CallId,
    LastAgentMessage,
    Reason,
    Info,
    CodexErrorInfo,
    #[serde(other)]
    Other,
}

/// Decodes a line into a [`Line`] the caller holds. A payload is a few hundred bytes: built on
/// the stack, then moved into its line and the line out to the fold, it cost a Codex backfill
/// about a twentieth of its CPU time in copies.
struct LineSeed<'l, 'a>(&'l mut Line<'a>);

impl<'de> DeserializeSeed<'de> for LineSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        struct V<'l, 'a>(&'l mut Line<'a>);
        impl<'de> Visitor<'de> for V<'_, 'de> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                let line = self.0;
                let mut payload_seen = false;
                while let Some(key) = map.next_key::<LineField>()? {
                    match key {
                        LineField::Timestamp => line.timestamp = string(&mut map)?,
                        LineField::Type => line.kind = string(&mut map)?,
                        LineField::Payload => {
                            // A key given twice: the last one counts, whole.
                            if std::mem::replace(&mut payload_seen, true) {
                                line.payload = Payload::default();
                            }
                            map.next_value_seed(PayloadSeed(&mut line.payload))?
                        }
                        LineField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(())
            }
        }
        d.deserialize_map(V(self.0))
    }
}

/// Decodes a payload into the [`Payload`] of a line (see [`LineSeed`]), which is empty.
struct PayloadSeed<'p, 'a>(&'p mut Payload<'a>);

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        struct V<'p, 'a>(&'p mut Payload<'a>);
        impl<'de> Visitor<'de> for V<'_, 'de> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                let p = self.0;
                while let Some(key) = map.next_key::<PayloadField>()? {
                    match key {
                        PayloadField::Type => p.kind = string(&mut map)?,
                        PayloadField::Id => p.id = string(&mut map)?,
                        PayloadField::Timestamp => p.timestamp = string(&mut map)?,
                        PayloadField::Cwd => p.cwd = string(&mut map)?,
                        PayloadField::Model => p.model = string(&mut map)?,
                        PayloadField::CollaborationMode => {
                            p.collaboration_mode = map.next_value()?
                        }
                        PayloadField::ApprovalPolicy => p.approval_policy = string(&mut map)?,
                        PayloadField::ThreadName => p.thread_name = map.next_value()?,
                        PayloadField::Message => p.message = map.next_value()?,
                        PayloadField::Role => p.role = string(&mut map)?,
                        PayloadField::Name => p.name = string(&mut map)?,
                        PayloadField::CallId => p.call_id = string(&mut map)?,
                        PayloadField::LastAgentMessage => {
                            p.last_agent_message = map.next_value::<Option<IgnoredAny>>()?.is_some()
                        }
                        PayloadField::Reason => p.reason = string(&mut map)?,
                        PayloadField::Info => p.info = map.next_value()?,
                        PayloadField::CodexErrorInfo => p.codex_error_info = map.next_value()?,
                        PayloadField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(())
            }
            // A payload that is not an object has none of the fields: the line is ignored.
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
                skip_seq(seq)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
                Ok(())
            }
            scalars_are_empty!();
        }
        d.deserialize_any(V(self.0))
    }
}

/// Renders one line for the transcript (see [`super::transcript`]), from the fold's own
/// decoding: prompts, answers, the tools called, interruptions.
pub fn render(bytes: &[u8], out: &mut String) {
    let mut line = Line::default();
    if super::lenient::from_json_bytes_seed(bytes, LineSeed(&mut line)).is_err() {
        return;
    }
    let p = &line.payload;
    let text = |v: &Option<Cow<str>>| v.as_deref().unwrap_or("").to_owned();
    match (line.kind.as_deref(), p.kind.as_deref().unwrap_or("")) {
        (Some("event_msg"), "user_message") => say(out, "you", &text(&p.message.get())),
        (Some("event_msg"), "agent_message") => say(out, "codex", &text(&p.message.get())),
        (Some("response_item"), "function_call" | "custom_tool_call") => {
            tool(out, p.name.as_deref())
        }
        (Some("event_msg"), "turn_aborted") => out.push_str("  (interrupted)\n"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = r#"{"timestamp":"2026-02-23T19:34:26.098Z","type":"session_meta","payload":{"id":"019c8bfe-ec25-79e0-97d7-bda6a9c575ff","timestamp":"2026-02-23T19:34:25.573Z","cwd":"/home/ana/src/shop","originator":"codex_cli_rs","cli_version":"0.104.0","source":"cli","model_provider":"openai","base_instructions":{"text":"You are Codex, based on GPT-5."},"git":{"commit_hash":"19f8748648146d82ee1ad92387fc9d93613f022b","branch":"main","repository_url":"git@github.com:ana/shop.git"}}}"#;
    const DEVELOPER: &str = r#"{"timestamp":"2026-02-23T19:34:26.098Z","type":"response_item","payload":{"type":"message","role":"developer","content":[{"type":"input_text","text":"<permissions instructions>approval_policy is on-request</permissions instructions>"}]}}"#;
    const STARTED: &str = r#"{"timestamp":"2026-02-23T19:34:26.099Z","type":"event_msg","payload":{"type":"task_started","turn_id":"019c8bfe-ed40-7a21-b57f-6447436c5881","model_context_window":258400,"collaboration_mode_kind":"default"}}"#;
    const ENV_ITEM: &str = r#"{"timestamp":"2026-02-23T19:34:26.099Z","type":"response_item","payload":{"type":"message","role":"user","content":[{"type":"input_text","text":"<environment_context>\n  <cwd>/home/ana/src/shop</cwd>\n</environment_context>"}]}}"#;
    const PROMPT: &str = r#"{"timestamp":"2026-02-23T19:34:26.099Z","type":"event_msg","payload":{"type":"user_message","message":"  Fix the failing test in cart.rs\nIt broke with the tax change.","images":[],"local_images":[],"text_elements":[]}}"#;
    const CONTEXT: &str = r#"{"timestamp":"2026-02-23T19:34:33.389Z","type":"turn_context","payload":{"turn_id":"019c8bfe-ed40-7a21-b57f-6447436c5881","cwd":"/home/ana/src/shop/cart","approval_policy":"on-request","sandbox_policy":{"type":"workspace-write","writable_roots":["/home/ana/src/shop"],"network_access":false},"model":"gpt-5-codex","personality":"pragmatic","collaboration_mode":{"mode":"default","settings":{"model":"gpt-5-codex","reasoning_effort":"medium"}},"effort":"medium","summary":"auto","truncation_policy":{"mode":"tokens","limit":10000}}}"#;
    const CONTEXT_NEVER: &str = r#"{"timestamp":"2026-02-23T19:34:33.389Z","type":"turn_context","payload":{"turn_id":"019c8bfe-ed40-7a21-b57f-6447436c5881","cwd":"/home/ana/src/shop","approval_policy":"never","sandbox_policy":{"type":"danger-full-access"},"model":"gpt-5-codex","effort":"medium","summary":"auto"}}"#;
    const NO_INFO: &str = r#"{"timestamp":"2026-02-23T19:34:34.390Z","type":"event_msg","payload":{"type":"token_count","info":null,"rate_limits":{"limit_id":"codex","primary":{"used_percent":4.0,"window_minutes":300,"resets_at":1771890497},"secondary":{"used_percent":10.0,"window_minutes":10080,"resets_at":1772355702},"credits":{"has_credits":false,"unlimited":false,"balance":null},"plan_type":null}}}"#;
    const REASONING: &str = r#"{"timestamp":"2026-02-23T19:34:38.549Z","type":"response_item","payload":{"type":"reasoning","summary":[{"type":"summary_text","text":"**Running the tests**"}],"content":null,"encrypted_content":"gAAAAABpnK"}}"#;
    const COMMENTARY_EVENT: &str = r#"{"timestamp":"2026-02-23T19:34:39.069Z","type":"event_msg","payload":{"type":"agent_message","message":"Running the tests first."}}"#;
    const COMMENTARY: &str = r#"{"timestamp":"2026-02-23T19:34:39.069Z","type":"response_item","payload":{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Running the tests first."}],"phase":"commentary"}}"#;
    const EXEC: &str = r#"{"timestamp":"2026-02-23T19:34:39.357Z","type":"response_item","payload":{"type":"function_call","name":"exec_command","arguments":"{\"cmd\":\"cargo test -p cart\"}","call_id":"call_OIMY41RetdVChp5U51mMLGOD"}}"#;
    const TOKENS_1: &str = r#"{"timestamp":"2026-02-23T19:34:39.388Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":10000,"cached_input_tokens":2000,"output_tokens":300,"reasoning_output_tokens":200,"total_tokens":10300},"last_token_usage":{"input_tokens":10000,"cached_input_tokens":2000,"output_tokens":300,"reasoning_output_tokens":200,"total_tokens":10300},"model_context_window":258400},"rate_limits":null}}"#;
    const EXEC_OUTPUT: &str = r#"{"timestamp":"2026-02-23T19:34:41.532Z","type":"response_item","payload":{"type":"function_call_output","call_id":"call_OIMY41RetdVChp5U51mMLGOD","output":"test cart::tax ... FAILED"}}"#;
    /// The same total as `TOKENS_1`, re-emitted for a rate-limit refresh.
    const TOKENS_1_AGAIN: &str = r#"{"timestamp":"2026-02-23T19:34:42.053Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":10000,"cached_input_tokens":2000,"output_tokens":300,"reasoning_output_tokens":200,"total_tokens":10300},"last_token_usage":{"input_tokens":10000,"cached_input_tokens":2000,"output_tokens":300,"reasoning_output_tokens":200,"total_tokens":10300},"model_context_window":258400},"rate_limits":{"limit_id":"codex","primary":{"used_percent":7.0,"window_minutes":300,"resets_at":1771890497}}}}"#;
    const ANSWER_EVENT: &str = r#"{"timestamp":"2026-02-23T19:36:02.615Z","type":"event_msg","payload":{"type":"agent_message","message":"Fixed: the tax rate is now read from the region."}}"#;
    const ANSWER: &str = r#"{"timestamp":"2026-02-23T19:36:02.615Z","type":"response_item","payload":{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Fixed: the tax rate is now read from the region."}],"phase":"final_answer"}}"#;
    const TOKENS_2: &str = r#"{"timestamp":"2026-02-23T19:36:02.633Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":22000,"cached_input_tokens":12000,"output_tokens":800,"reasoning_output_tokens":400,"total_tokens":22800},"last_token_usage":{"input_tokens":12000,"cached_input_tokens":10000,"output_tokens":500,"reasoning_output_tokens":200,"total_tokens":12500},"model_context_window":258400},"rate_limits":null}}"#;
    const COMPLETE: &str = r#"{"timestamp":"2026-02-23T19:36:02.635Z","type":"event_msg","payload":{"type":"task_complete","turn_id":"019c8bfe-ed40-7a21-b57f-6447436c5881","last_agent_message":"Fixed: the tax rate is now read from the region."}}"#;
    const COMPLETE_NULL: &str = r#"{"timestamp":"2026-02-23T19:36:02.635Z","type":"event_msg","payload":{"type":"task_complete","turn_id":"019c8bfe-ed40-7a21-b57f-6447436c5881","last_agent_message":null}}"#;

    /// A whole turn of a current (0.104) rollout, from the first line to `task_complete`.
    const TURN: [&str; 19] = [
        META,
        DEVELOPER,
        STARTED,
        ENV_ITEM,
        PROMPT,
        CONTEXT,
        NO_INFO,
        REASONING,
        COMMENTARY_EVENT,
        COMMENTARY,
        EXEC,
        TOKENS_1,
        EXEC_OUTPUT,
        CONTEXT,
        TOKENS_1_AGAIN,
        ANSWER_EVENT,
        ANSWER,
        TOKENS_2,
        COMPLETE,
    ];

    /// Folds the lines as the daemon does; returns the fold and the reasons of skipped lines.
    fn fold(lines: &[&str]) -> (CodexFold, Vec<String>) {
        let prices = Prices::builtin();
        let mut f = CodexFold::default();
        let errors = lines
            .iter()
            .filter_map(|l| f.apply(l.as_bytes(), &prices).err())
            .collect();
        (f, errors)
    }

    /// The latest line time, which `now` is counted from.
    fn last_ts(f: &CodexFold) -> i64 {
        f.last_ts.map_or(0, |t| t.0)
    }

    /// One table row: the lines, `now` as milliseconds after the last line, and the status
    /// and detail expected then. Returns the conversation for further checks.
    fn check(lines: &[&str], now_offset_ms: i64, expected: (Status, Option<&str>)) -> Conversation {
        let (f, _) = fold(lines);
        let c = f.conversation(Millis(last_ts(&f) + now_offset_ms));
        assert_eq!(
            (c.status, c.status_detail.as_deref()),
            expected,
            "now +{now_offset_ms} ms, lines: {lines:#?}"
        );
        c
    }

    fn ms(s: &str) -> Millis {
        timestamp(s).unwrap()
    }

    /// `TURN` with `last` in place of its final `task_complete`.
    fn turn_ending(last: &[&'static str]) -> Vec<&'static str> {
        let mut lines = TURN[..TURN.len() - 1].to_vec();
        lines.extend_from_slice(last);
        lines
    }

    #[test]
    fn a_completed_turn() {
        let c = check(&TURN, 1_000, (Status::Success, None));
        assert_eq!(
            c.session_id.as_deref(),
            Some("019c8bfe-ec25-79e0-97d7-bda6a9c575ff")
        );
        assert_eq!(c.title.as_deref(), Some("Fix the failing test in cart.rs"));
        assert_eq!(c.cwd.as_deref(), Some("/home/ana/src/shop/cart"));
        assert_eq!(c.model.as_deref(), Some("gpt-5-codex"));
        assert_eq!(c.created_at, Some(ms("2026-02-23T19:34:25.573Z")));
        assert_eq!(c.updated_at, Some(ms("2026-02-23T19:36:02.635Z")));
        // The re-emitted TOKENS_1 adds nothing: 22000 in (12000 cached), 800 out in all.
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: 10_000,
                output_tokens: 800,
                cache_read_tokens: 12_000,
                cache_write_tokens: 0,
            }
        );
        // gpt-5-codex, USD per million: 10000 × 1.25 + 12000 × 0.125 + 800 × 10 = 22000 µ$.
        assert_eq!(c.cost_usd, Some(0.022));
    }

    #[test]
    fn status_table() {
        // A fresh session: nothing asked yet.
        check(&[META], 60_000, (Status::Working, None));
        check(&TURN[..9], 1_000, (Status::Working, None));
        // An answer with null `last_agent_message` still counts when the turn had a message.
        check(&turn_ending(&[COMPLETE_NULL]), 0, (Status::Success, None));
        // No assistant message at all and a null answer: the turn failed.
        check(
            &[
                META,
                STARTED,
                PROMPT,
                CONTEXT,
                NO_INFO,
                REASONING,
                COMPLETE_NULL,
            ],
            0,
            (Status::Failed, Some(NO_ANSWER)),
        );
        check(
            &turn_ending(&[
                r#"{"timestamp":"2026-02-23T19:36:03.001Z","type":"event_msg","payload":{"type":"turn_aborted","turn_id":"019c8bfe-ed40-7a21-b57f-6447436c5881","reason":"interrupted"}}"#,
            ]),
            0,
            (Status::Canceled, Some(INTERRUPTED)),
        );
        check(
            &[
                META,
                PROMPT,
                r#"{"timestamp":"2026-02-23T19:36:03.001Z","type":"event_msg","payload":{"type":"turn_aborted","reason":"review_ended"}}"#,
            ],
            0,
            (Status::Canceled, Some("turn aborted: review_ended")),
        );
        // An error ends the turn; the same turn's task_complete does not undo it, a new turn does.
        let error = r#"{"timestamp":"2026-02-23T19:34:40.000Z","type":"event_msg","payload":{"type":"error","message":"Your input exceeds the context window of this model.","codex_error_info":"context_window_exceeded"}}"#;
        check(
            &[META, STARTED, PROMPT, CONTEXT, error, COMPLETE_NULL],
            0,
            (
                Status::Failed,
                Some("Your input exceeds the context window of this model."),
            ),
        );
        check(
            &[META, STARTED, PROMPT, CONTEXT, error, STARTED],
            0,
            (Status::Working, None),
        );
        // Errors Codex says leave the turn running do not end it.
        check(
            &[
                META,
                STARTED,
                PROMPT,
                r#"{"timestamp":"2026-02-23T19:34:40.000Z","type":"event_msg","payload":{"type":"error","message":"cannot steer","codex_error_info":"active_turn_not_steerable"}}"#,
            ],
            0,
            (Status::Working, None),
        );
        // A pending exec under on-request: running for 1 s, waiting for approval after 6 s.
        let pending = [
            META, STARTED, PROMPT, CONTEXT, NO_INFO, REASONING, EXEC, TOKENS_1,
        ];
        check(&pending, 1_000, (Status::Working, None));
        check(
            &pending,
            6_000,
            (Status::Blocked, Some("waiting for approval: exec_command")),
        );
        // Its output came: just working.
        let mut answered = pending.to_vec();
        answered.push(EXEC_OUTPUT);
        check(&answered, 6_000, (Status::Working, None));
        // Under `never` nothing waits for approval.
        let never = [META, STARTED, PROMPT, CONTEXT_NEVER, EXEC, TOKENS_1];
        check(&never, 6_000, (Status::Working, None));
        // ...but a question to the user does.
        check(
            &[
                META,
                STARTED,
                PROMPT,
                CONTEXT_NEVER,
                r#"{"timestamp":"2026-02-23T19:34:40.000Z","type":"response_item","payload":{"type":"function_call","name":"request_user_input","arguments":"{\"questions\":[]}","call_id":"call_q1"}}"#,
            ],
            6_000,
            (Status::Blocked, Some(WAITING_FOR_ANSWER)),
        );
        // An apply_patch custom tool call pending is named as such.
        check(
            &[
                META,
                STARTED,
                PROMPT,
                CONTEXT,
                r#"{"timestamp":"2026-02-23T19:34:40.000Z","type":"response_item","payload":{"type":"custom_tool_call","status":"completed","call_id":"call_p1","name":"apply_patch","input":"*** Begin Patch\n*** End Patch"}}"#,
            ],
            6_000,
            (Status::Blocked, Some("waiting for approval: apply_patch")),
        );
        // An open turn silent for half an hour was abandoned, pending call or not.
        check(
            &TURN[..11],
            ABANDONED_AFTER_MS,
            (Status::Failed, Some(ABANDONED)),
        );
        check(
            &pending,
            ABANDONED_AFTER_MS + 1,
            (Status::Failed, Some(ABANDONED)),
        );
        check(
            &pending,
            ABANDONED_AFTER_MS - 1,
            (Status::Blocked, Some("waiting for approval: exec_command")),
        );
        // A finished turn stays finished however long ago.
        check(&TURN, ABANDONED_AFTER_MS * 10, (Status::Success, None));
        // A new turn reopens a finished conversation.
        let mut again = TURN.to_vec();
        again.extend([
            r#"{"timestamp":"2026-02-23T19:40:00.000Z","type":"event_msg","payload":{"type":"task_started","turn_id":"019c8c03-0000-7000-8000-000000000002","model_context_window":258400}}"#,
            r#"{"timestamp":"2026-02-23T19:40:00.001Z","type":"event_msg","payload":{"type":"user_message","message":"now run clippy","images":[]}}"#,
        ]);
        let c = check(&again, 1_000, (Status::Working, None));
        assert_eq!(c.title.as_deref(), Some("Fix the failing test in cart.rs"));
        // In a marked turn a quiet answer is not the end: only task_complete is.
        check(&TURN[..17], QUIET_DONE_MS * 2, (Status::Working, None));
    }

    /// Rollouts of builds that wrote no task_started / task_complete (0.47, 0.89).
    #[test]
    fn rollouts_without_lifecycle_events() {
        let meta = r#"{"timestamp":"2026-01-25T10:32:00.707Z","type":"session_meta","payload":{"id":"019bf4b5-e7b0-75a0-8bf2-05fbf1b13c9b","timestamp":"2026-01-25T10:32:00.688Z","cwd":"/Users/philipp/dev/agentlogs/fixtures","originator":"codex_exec","cli_version":"0.89.0","source":"exec","model_provider":"openai"}}"#;
        let env = r#"{"timestamp":"2026-01-25T10:32:00.708Z","type":"response_item","payload":{"type":"message","role":"user","content":[{"type":"input_text","text":"<environment_context>\n  <cwd>/Users/philipp/dev/agentlogs/fixtures</cwd>\n</environment_context>"}]}}"#;
        let prompt = r#"{"timestamp":"2026-01-25T10:32:00.709Z","type":"event_msg","payload":{"type":"user_message","message":"Create a CRUD API for todos","images":[]}}"#;
        let context = r#"{"timestamp":"2026-01-25T10:32:00.712Z","type":"turn_context","payload":{"cwd":"/Users/philipp/dev/agentlogs/fixtures","approval_policy":"never","sandbox_policy":{"type":"danger-full-access"},"model":"gpt-5.2-codex","effort":"xhigh","summary":"auto"}}"#;
        let call = r#"{"timestamp":"2026-01-25T10:32:04.100Z","type":"response_item","payload":{"type":"function_call","name":"shell_command","arguments":"{\"command\":\"ls\"}","call_id":"call_ls"}}"#;
        let output = r#"{"timestamp":"2026-01-25T10:32:04.300Z","type":"response_item","payload":{"type":"function_call_output","call_id":"call_ls","output":"Exit code: 0\nOutput:\nREADME.md\n"}}"#;
        let answer_event = r#"{"timestamp":"2026-01-25T10:33:10.000Z","type":"event_msg","payload":{"type":"agent_message","message":"Created `todos.ts` with the CRUD routes."}}"#;
        let answer = r#"{"timestamp":"2026-01-25T10:33:10.000Z","type":"response_item","payload":{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Created `todos.ts` with the CRUD routes."}]}}"#;
        let tokens = r#"{"timestamp":"2026-01-25T10:33:10.200Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":5000,"cached_input_tokens":1000,"output_tokens":700,"reasoning_output_tokens":500,"total_tokens":5700},"last_token_usage":{"input_tokens":5000,"cached_input_tokens":1000,"output_tokens":700,"reasoning_output_tokens":500,"total_tokens":5700},"model_context_window":258400},"rate_limits":null}}"#;
        let done = [
            meta,
            env,
            prompt,
            context,
            call,
            output,
            answer_event,
            answer,
            tokens,
        ];
        check(&done[..3], 60_000, (Status::Working, None));
        check(&done[..6], 60_000, (Status::Working, None));
        check(&done, 2_000, (Status::Working, None));
        let c = check(&done, QUIET_DONE_MS, (Status::Success, None));
        assert_eq!(c.title.as_deref(), Some("Create a CRUD API for todos"));
        assert_eq!(c.model.as_deref(), Some("gpt-5.2-codex"));
        // A quiet answer is done even half an hour later.
        check(&done, ABANDONED_AFTER_MS * 2, (Status::Success, None));
        // A next prompt opens a new turn.
        let next = r#"{"timestamp":"2026-01-25T10:40:00.000Z","type":"event_msg","payload":{"type":"user_message","message":"add tests","images":[]}}"#;
        let mut more = done.to_vec();
        more.push(next);
        check(&more, QUIET_DONE_MS, (Status::Working, None));
        more.push(call);
        check(&more, 6_000, (Status::Working, None)); // approval policy never
        // A trailing call under an asking policy looks like a prompt on screen.
        let asking = context.replace("\"never\"", "\"on-request\"");
        check(
            &[meta, prompt, &asking, call],
            6_000,
            (Status::Blocked, Some("waiting for approval: shell_command")),
        );
        // No prompt event at all, but an answer: done.
        check(&[meta, answer], 0, (Status::Success, None));
    }

    #[test]
    fn tokens_count_each_response_once() {
        // Re-emits of the same total add nothing.
        let c = check(
            &[
                META,
                CONTEXT,
                TOKENS_1,
                TOKENS_1_AGAIN,
                TOKENS_1_AGAIN,
                NO_INFO,
            ],
            0,
            (Status::Working, None),
        );
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: 8_000,
                output_tokens: 300,
                cache_read_tokens: 2_000,
                cache_write_tokens: 0,
            }
        );
        // 8000 × 1.25 + 2000 × 0.125 + 300 × 10 = 13250 µ$
        assert_eq!(c.cost_usd, Some(0.01325));

        // A reset: the total drops, so that event's last usage is added and counting goes on
        // from the new total.
        let reset = r#"{"timestamp":"2026-02-23T19:50:00.000Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":3000,"cached_input_tokens":0,"output_tokens":100,"reasoning_output_tokens":0,"total_tokens":3100},"last_token_usage":{"input_tokens":3000,"cached_input_tokens":0,"output_tokens":100,"reasoning_output_tokens":0,"total_tokens":3100},"model_context_window":258400},"rate_limits":null}}"#;
        let after = r#"{"timestamp":"2026-02-23T19:50:10.000Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":5000,"cached_input_tokens":1000,"output_tokens":150,"reasoning_output_tokens":20,"total_tokens":5150},"last_token_usage":{"input_tokens":2000,"cached_input_tokens":1000,"output_tokens":50,"reasoning_output_tokens":20,"total_tokens":2050},"model_context_window":258400},"rate_limits":null}}"#;
        let (f, _) = fold(&[META, CONTEXT, TOKENS_1, reset, reset, after]);
        let c = f.conversation(Millis(last_ts(&f)));
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: 8_000 + 3_000 + 1_000,
                output_tokens: 300 + 100 + 50,
                cache_read_tokens: 2_000 + 1_000,
                cache_write_tokens: 0,
            }
        );
        // 12000 × 1.25 + 3000 × 0.125 + 450 × 10 = 19875 µ$
        assert_eq!(c.cost_usd, Some(0.019875));

        // Tokens before any model is named are priced as gpt-5, but no model is claimed.
        let (f, _) = fold(&[META, TOKENS_1]);
        let c = f.conversation(Millis(last_ts(&f)));
        assert_eq!(c.model, None);
        assert_eq!(c.cost_usd, Some(0.01325));

        // Each increment is priced with the model of its time.
        let mini = CONTEXT.replace("gpt-5-codex", "gpt-5-mini");
        let (f, _) = fold(&[META, CONTEXT, TOKENS_1, &mini, TOKENS_2]);
        let c = f.conversation(Millis(last_ts(&f)));
        assert_eq!(c.model.as_deref(), Some("gpt-5-mini"));
        // 13250 µ$ on gpt-5-codex, then 2000 × 0.25 + 10000 × 0.025 + 500 × 2 = 1750 µ$ on mini.
        assert_eq!(c.cost_usd, Some(0.015));

        // An unknown model's tokens count, but the cost is unknown.
        let local = CONTEXT.replace("gpt-5-codex", "qwen3-coder-30b");
        let (f, _) = fold(&[META, &local, TOKENS_1]);
        let c = f.conversation(Millis(last_ts(&f)));
        assert_eq!(c.usage.input_tokens, 8_000);
        assert_eq!(c.cost_usd, None);
    }

    /// Token counts read straight from the line equal what reading `info` as a JSON value and
    /// taking `as_u64` of each field gave, for every odd shape a count or `info` can have.
    #[test]
    fn odd_token_values_read_as_the_json_value_reading_did() {
        fn by_value(info: &Value) -> Option<Tokens> {
            let t = info.get("total_token_usage").filter(|v| v.is_object())?;
            let n = |key: &str| t.get(key).and_then(Value::as_u64).unwrap_or(0);
            Some(Tokens {
                input: n("input_tokens"),
                cached: n("cached_input_tokens"),
                output: n("output_tokens"),
                total: n("total_tokens"),
            })
        }
        let counts = [
            "12",
            "-5",
            "1.5",
            "1e3",
            "\"7\"",
            "true",
            "null",
            "{}",
            "[1,2]",
            "{\"a\":[3]}",
            "18446744073709551615",
        ];
        let mut infos = vec![
            "null".to_owned(),
            "\"x\"".to_owned(),
            "[1]".to_owned(),
            "{}".to_owned(),
            r#"{"total_token_usage":null}"#.to_owned(),
            r#"{"total_token_usage":[{"input_tokens":1}]}"#.to_owned(),
            r#"{"total_token_usage":"9"}"#.to_owned(),
            // A repeated key: the last one counts, as in a JSON value.
            r#"{"total_token_usage":{"input_tokens":5},"total_token_usage":{"input_tokens":6}}"#
                .to_owned(),
            r#"{"total_token_usage":{"input_tokens":5},"total_token_usage":7}"#.to_owned(),
        ];
        for c in counts {
            infos.push(format!(
                r#"{{"model_context_window":1,"total_token_usage":{{"input_tokens":{c},"cached_input_tokens":3,"output_tokens":{c},"total_tokens":{c},"reasoning":{{"x":[{c}]}}}},"last_token_usage":{{"input_tokens":{c}}}}}"#
            ));
        }
        for info in &infos {
            let line = format!(
                r#"{{"timestamp":"2026-02-23T19:50:00.000Z","type":"event_msg","payload":{{"type":"token_count","info":{info},"rate_limits":null}}}}"#
            );
            let mut typed = Line::default();
            super::super::lenient::from_json_bytes_seed(line.as_bytes(), LineSeed(&mut typed))
                .unwrap();
            let value: Value = serde_json::from_str(info).unwrap();
            let read = typed.payload.info.and_then(|i| i.total);
            assert_eq!(read, by_value(&value), "{info}");
            // And the fold takes such a line without failing.
            let (_, errors) = fold(&[META, &line]);
            assert!(errors.is_empty(), "{info}: {errors:?}");
        }
    }

    /// A line decoded in place reads as one decoded whole did: a key given twice counts once,
    /// the last one, whole (no field of the first payload is left over in the second).
    #[test]
    fn a_payload_given_twice_is_the_last_one_whole() {
        let twice = r#"{"timestamp":"2026-02-23T19:34:26.099Z","type":"event_msg","payload":{"type":"user_message","message":"from the first"},"payload":{"message":"from the second"}}"#;
        let (f, errors) = fold(&[META, twice]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(f.conversation(Millis(0)).title, None);
        let swapped = r#"{"timestamp":"2026-02-23T19:34:26.099Z","type":"event_msg","payload":{"message":"from the first"},"payload":{"type":"user_message","message":"from the second"}}"#;
        let (f, _) = fold(&[META, swapped]);
        assert_eq!(
            f.conversation(Millis(0)).title.as_deref(),
            Some("from the second")
        );
        let not_an_object = r#"{"timestamp":"2026-02-23T19:34:26.099Z","type":"event_msg","payload":{"type":"user_message","message":"from the first"},"payload":[1]}"#;
        let (f, errors) = fold(&[META, not_an_object]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(f.conversation(Millis(0)).title, None);
    }

    #[test]
    fn titles_and_session_fields() {
        let injected = r#"{"timestamp":"2026-02-23T19:34:26.099Z","type":"event_msg","payload":{"type":"user_message","message":"<user_instructions>\nAlways use bun.\n</user_instructions>","images":[]}}"#;
        let aborted = r#"{"timestamp":"2026-02-23T19:34:26.099Z","type":"event_msg","payload":{"type":"user_message","message":"<turn_aborted>\nThe user interrupted the previous turn.\n</turn_aborted>"}}"#;
        let c = check(&[META, injected, aborted], 0, (Status::Working, None));
        assert_eq!(c.title, None);
        let c = check(&[META, injected, PROMPT], 0, (Status::Working, None));
        assert_eq!(c.title.as_deref(), Some("Fix the failing test in cart.rs"));

        // The latest thread name wins over the prompt.
        let named = |name: &str| {
            format!(
                r#"{{"timestamp":"2026-02-23T19:36:05.000Z","type":"event_msg","payload":{{"type":"thread_name_updated","thread_id":"019c8bfe-ec25-79e0-97d7-bda6a9c575ff","thread_name":{name}}}}}"#
            )
        };
        let (first, second, cleared) = (
            named("\"Cart tax\""),
            named("\"Cart tax fix\""),
            named("null"),
        );
        let c = check(&[META, PROMPT, &first, &second], 0, (Status::Working, None));
        assert_eq!(c.title.as_deref(), Some("Cart tax fix"));
        let c = check(
            &[META, PROMPT, &first, &cleared],
            0,
            (Status::Working, None),
        );
        assert_eq!(c.title.as_deref(), Some("Fix the failing test in cart.rs"));

        // Long prompts are cut to 200 characters (not bytes).
        let long = format!(
            r#"{{"timestamp":"2026-02-23T19:34:26.099Z","type":"event_msg","payload":{{"type":"user_message","message":"{}"}}}}"#,
            "é".repeat(300)
        );
        let c = check(&[META, &long], 0, (Status::Working, None));
        assert_eq!(c.title.map(|t| t.chars().count()), Some(200));

        // A forked rollout repeats its parent's session_meta: the first one is the thread.
        let parent = r#"{"timestamp":"2026-02-23T19:34:26.200Z","type":"session_meta","payload":{"id":"019c0000-0000-7000-8000-00000000parent","timestamp":"2026-02-20T08:00:00.000Z","cwd":"/elsewhere"}}"#;
        let c = check(&[META, parent], 0, (Status::Working, None));
        assert_eq!(
            c.session_id.as_deref(),
            Some("019c8bfe-ec25-79e0-97d7-bda6a9c575ff")
        );
        assert_eq!(c.cwd.as_deref(), Some("/home/ana/src/shop"));
        assert_eq!(c.created_at, Some(ms("2026-02-23T19:34:25.573Z")));

        // Without session_meta the first line dates the conversation; the model may come from
        // the collaboration mode alone.
        let collab = r#"{"timestamp":"2026-02-23T19:34:33.389Z","type":"turn_context","payload":{"cwd":"/w","approval_policy":"on-request","collaboration_mode":{"mode":"plan","model":"gpt-5.1-codex","reasoning_effort":"high"}}}"#;
        let c = check(&[PROMPT, collab], 0, (Status::Working, None));
        assert_eq!(c.session_id, None);
        assert_eq!(c.model.as_deref(), Some("gpt-5.1-codex"));
        assert_eq!(c.created_at, Some(ms("2026-02-23T19:34:26.099Z")));
        assert_eq!(c.updated_at, Some(ms("2026-02-23T19:34:33.389Z")));
    }

    #[test]
    fn bad_lines_are_skipped_and_the_rest_folds() {
        let mut lines = vec![
            META,
            "not json",
            "[1,2]",
            r#""a string""#,
            r#"{"timestamp":"2026-02-23T19:34:26.098Z","type":"session_meta","payload":{"id":"x""#,
        ];
        // Lines Codex might write in a later version, or odd values, are not errors.
        lines.extend([
            r#"{"timestamp":"2026-02-23T19:34:26.098Z","type":"compacted","payload":{"message":"summary","replacement_history":[]}}"#,
            r#"{"timestamp":"2026-02-23T19:34:26.098Z","type":"hologram","payload":[1,2,3]}"#,
            r#"{"timestamp":"2026-02-23T19:34:26.098Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":"lots"}}}"#,
            r#"{"timestamp":"yesterday","type":"event_msg","payload":{"type":"user_message","message":42}}"#,
            r#"{"type":"event_msg","payload":null}"#,
            r#"{}"#,
        ]);
        lines.extend_from_slice(&TURN[1..]);
        let (f, errors) = fold(&lines);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors.iter().all(|e| e.starts_with("not a rollout line")),
            "{errors:?}"
        );
        let whole = fold(&TURN).0.conversation(Millis(last_ts(&f)));
        assert_eq!(f.conversation(Millis(last_ts(&f))), whole);
    }

    #[test]
    fn folding_in_pieces_equals_folding_whole() {
        let prices = Prices::builtin();
        let mut lines = TURN.to_vec();
        lines.extend([STARTED, PROMPT, CONTEXT, EXEC]);
        let (whole, _) = fold(&lines);
        for split in 0..=lines.len() {
            let mut f = CodexFold::default();
            for l in &lines[..split] {
                f.apply(l.as_bytes(), &prices).unwrap();
            }
            // Persist and restore the state as the daemon does between reads.
            let mut f: CodexFold = crate::store::decode(&crate::store::encode(&f)).unwrap();
            for l in &lines[split..] {
                f.apply(l.as_bytes(), &prices).unwrap();
            }
            for offset in [0, 6_000, ABANDONED_AFTER_MS] {
                let now = Millis(last_ts(&whole) + offset);
                assert_eq!(
                    f.conversation(now),
                    whole.conversation(now),
                    "split at {split}"
                );
            }
        }
        // JSON too, should the cursor ever be stored that way.
        let json = serde_json::to_string(&whole).unwrap();
        let back: CodexFold = serde_json::from_str(&json).unwrap();
        let now = Millis(last_ts(&whole) + 6_000);
        assert_eq!(back.conversation(now), whole.conversation(now));
        assert_eq!(whole.conversation(now).status, Status::Blocked);
    }
}
