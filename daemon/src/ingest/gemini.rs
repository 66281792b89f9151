//! Gemini CLI chat recordings: a pure parser and fold.
//!
//! Gemini CLI records each session under `~/.gemini/tmp/<project>/chats/`. Since 2026-04 the file
//! is `session-<YYYY-MM-DDTHH-MM>-<id8>.jsonl`, an append-only log of JSON objects, one a line
//! (gemini-cli `chatRecordingService.ts`):
//!
//! - a **metadata** object `{sessionId, projectHash, startTime, lastUpdated, kind, directories,
//!   summary?}` (line 1, and again when a legacy file is migrated): it has no `id` and no `type`;
//! - `{"$set": {...}}` merges metadata: `lastUpdated` after every message, `summary`, `sessionId`
//!   on resume; a `messages` array in it is a checkpoint that **replaces** the message list;
//! - `{"$rewindTo": "<message id>"}` deletes that message and everything after it (`/rewind`);
//! - a **message** `{id, timestamp, type, content, displayContent?, toolCalls?, tokens?, model?}`
//!   with `type` one of `user`, `gemini`, `info`, `error`, `warning`. The whole message is
//!   appended again, with the same `id`, whenever it changes (its tokens arrive, its tool calls
//!   complete, their results are updated): the later version replaces the earlier one **in
//!   place**, keeping its position.
//!
//! Before that the file was `session-*.json`, one pretty-printed `ConversationRecord` (the
//! metadata plus `messages`) rewritten whole on every change: [`fold_legacy_json`] reads it.
//!
//! The fold keeps a compact summary of each message (id, type, time, whether it has text, the
//! states of its tool calls, its tokens and model, and a short text only where a title or a
//! status detail may need it), since it is serialized with the file's cursor after every read.
//!
//! Fields:
//! - **session id**: `sessionId` of the metadata (the latest `$set` wins after a resume);
//! - **title**: the metadata `summary`, else the first `user` message whose text
//!   (`displayContent`, what was typed, before `content`) is not empty and does not start with
//!   `/`, `?`, `<session_context>` or `<hook_context>` (the messages gemini itself skips when
//!   listing sessions); a `user` message of only `functionResponse` parts is a tool result;
//! - **model**: `model` of the latest `gemini` message;
//! - **created / updated**: `startTime`, else the first message's time; the later of
//!   `lastUpdated` and the latest message time;
//! - **tokens**: `tokens` of each `gemini` message (one per API response), each id counted once
//!   with its latest version, and taken back when the message is rewound or replaced by a
//!   checkpoint. `input` already contains `cached` (as ccusage reads it): input tokens are
//!   `input − cached + tool`, cache reads `cached`, output `output + thoughts`;
//! - **cost**: each message priced with its own model (else the latest known one);
//! - **cwd**: not in the file (the project directory's `.project_root` names it).
//!
//! Status comes from the last message that decides; `warning` lines, `info` lines other than a
//! cancellation, and unknown types do not:
//!
//! | Last deciding message | Status | Detail |
//! |---|---|---|
//! | none | working | |
//! | `error` | failed | its text, first line |
//! | `info` "Request cancelled." or "User cancelled the request." | canceled | |
//! | `gemini` with a tool call `cancelled` | canceled | |
//! | `user` (a prompt, or a tool result) | working | |
//! | `gemini` with text and no tool calls | success | |
//! | `gemini` whose tool calls all finished (their results go back to the model), quiet ≥ 10 s | success | |
//! | `gemini` without text and without tool calls (a call is pending), quiet ≥ 5 s | blocked | waiting for approval |
//! | any other `gemini` | working | |
//! | working (pending call included), quiet ≥ 30 min | failed | no activity for 30 minutes; the agent may have been closed |
//!
//! "Quiet" is the time since `updated_at`. Gemini CLI records a tool call only once it has
//! completed, so an approval prompt never reaches the file: a text-less response with no
//! recorded call that stays quiet is the only sign of one.

use super::convo::{
    ABANDONED_AFTER_MS, BLOCKED_AFTER_MS, Conversation, ConversationFold, CostSum, QUIET_DONE_MS,
};
use super::lenient::{scalars_are_empty, skip_map, skip_seq};
use super::transcript::{say, tool};
use crate::prices::Prices;
use agentd_wire::{Millis, Status, Usage};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// `status_detail` of a pending tool call that has been quiet for [`BLOCKED_AFTER_MS`].
pub const WAITING_FOR_APPROVAL: &str = "waiting for approval";
/// `status_detail` of an open turn with no line for [`ABANDONED_AFTER_MS`].
pub const NO_ACTIVITY: &str = super::convo::ABANDONED;
/// The texts of the `info` message Gemini CLI records when the user cancels a request.
pub const CANCELLED_TEXTS: [&str; 2] = ["Request cancelled.", "User cancelled the request."];

/// Prompts that gemini itself does not take as the start of a conversation: slash commands,
/// help, and context it injects.
const NOT_A_TITLE: [&str; 4] = ["/", "?", "<session_context>", "<hook_context>"];
/// Longest title or detail, in characters.
const SHORT_CHARS: usize = 200;
/// Bytes of a text looked at to shorten it: enough for a title or a first line after
/// whitespace is collapsed, without going through a pasted file.
const TEXT_KEEP: usize = 2_000;

/// What a message is, as far as status and title are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    /// A `user` message: a prompt (or a command, kept out of the title).
    Prompt,
    /// A `user` message of only `functionResponse` parts: tool results going back to the model.
    ToolResult,
    Gemini,
    /// An `info` message saying the request was cancelled.
    Cancelled,
    Info,
    Error,
    Warning,
    /// A type this version does not know.
    Other,
}

impl Kind {
    /// Whether a message of this kind, when last, decides the status.
    fn decides(self) -> bool {
        !matches!(self, Kind::Info | Kind::Warning | Kind::Other)
    }
}

/// A recorded tool call's `status`. Only completed calls are recorded, so anything but the three
/// final states is unexpected and read as still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Call {
    Success,
    Error,
    Cancelled,
    Open,
}

impl Call {
    fn from_status(status: Option<&str>) -> Call {
        match status {
            Some("success") => Call::Success,
            Some("error") => Call::Error,
            Some("cancelled") => Call::Cancelled,
            _ => Call::Open,
        }
    }
}

/// The summary of one message kept in the fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Msg {
    id: String,
    kind: Kind,
    ts: Option<Millis>,
    /// Non-blank text outside thoughts (for a `gemini` message: it said something).
    has_text: bool,
    calls: Vec<Call>,
    /// Tokens of a `gemini` message, already mapped to [`Usage`].
    usage: Option<Usage>,
    /// The model a `gemini` message was priced with: its own, else the latest known.
    model: Option<String>,
    /// A prompt's title candidate, or an error's first line; `None` elsewhere.
    text: Option<String>,
}

/// The state of one Gemini CLI session, built from its lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeminiFold {
    session_id: Option<String>,
    summary: Option<String>,
    start_time: Option<Millis>,
    last_updated: Option<Millis>,
    /// Earliest and latest message times ever read (rewound messages were activity too).
    first_ts: Option<Millis>,
    last_ts: Option<Millis>,
    /// The latest model named by a `gemini` message, to price one that names none.
    last_model: Option<String>,
    /// The conversation as gemini sees it, in order.
    messages: Vec<Msg>,
    usage: Usage,
    cost: CostSum,
}

impl ConversationFold for GeminiFold {
    fn apply(&mut self, line: &[u8], prices: &Prices) -> Result<(), String> {
        match parse_record(line)? {
            Some(record) => self.apply_record(record, prices),
            None => Ok(()), // a blank line
        }
    }

    fn conversation(&self, now: Millis) -> Conversation {
        let updated_at = match (self.last_updated, self.last_ts) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let title = self.summary.as_deref().map(short).or_else(|| {
            self.messages
                .iter()
                .filter(|m| m.kind == Kind::Prompt)
                .find_map(|m| m.text.clone())
        });
        let model = self
            .messages
            .iter()
            .rev()
            .filter(|m| m.kind == Kind::Gemini)
            .find_map(|m| m.model.clone())
            .or_else(|| self.last_model.clone());
        let (status, status_detail) = self.status(now, updated_at);
        Conversation {
            session_id: self.session_id.clone(),
            title,
            cwd: None,
            model,
            created_at: self.start_time.or(self.first_ts),
            updated_at,
            status,
            status_detail,
            usage: self.usage,
            cost_usd: self.cost.usd(),
            credits: None,
            live: None,
        }
    }
}

impl GeminiFold {
    fn apply_record(&mut self, mut record: Record, prices: &Prices) -> Result<(), String> {
        if let Some(target) = record.rewind_to.take() {
            return match target {
                Value::String(id) => self.rewind(&id, prices),
                _ => Err("\"$rewindTo\" is not a message id".into()),
            };
        }
        if let Some(MaybeRecord(set)) = record.set.take() {
            let set = set.ok_or("\"$set\" is not an object")?;
            self.merge_metadata(*set, prices);
            return Ok(());
        }
        match record.id.take() {
            Some(Value::String(id)) => {
                self.upsert(id, record, prices);
                Ok(())
            }
            Some(_) => Err("a message id that is not a string".into()),
            None if record.kind.is_some() => Err("a message without an id".into()),
            None => {
                self.merge_metadata(record, prices);
                Ok(())
            }
        }
    }

    /// Merges a metadata object (line 1, a `$set`, or a legacy file). Its `messages`, applied
    /// after the other fields, replace the list.
    fn merge_metadata(&mut self, meta: Record, prices: &Prices) {
        if let Some(id) = as_string(meta.session_id) {
            self.session_id = Some(id);
        }
        if let Some(summary) = as_string(meta.summary) {
            let summary = summary.trim();
            self.summary = (!summary.is_empty()).then(|| summary.to_owned());
        }
        if let Some(t) = timestamp(meta.start_time.as_ref()) {
            self.start_time = Some(t);
        }
        if let Some(t) = timestamp(meta.last_updated.as_ref()) {
            self.last_updated = Some(self.last_updated.map_or(t, |l| l.max(t)));
        }
        if let Some(Messages(list)) = meta.messages {
            // Start the sums afresh rather than subtracting: a model without a price that left
            // with the old list no longer makes the cost unknown.
            self.messages.clear();
            self.usage = Usage::default();
            self.cost = CostSum::default();
            for mut m in list {
                if let Some(Value::String(id)) = m.id.take() {
                    self.upsert(id, m, prices);
                }
            }
        }
    }

    /// Adds a message, or replaces the one with the same id where it stands.
    fn upsert(&mut self, id: String, m: Record, prices: &Prices) {
        let ts = timestamp(m.timestamp.as_ref());
        if let Some(t) = ts {
            self.first_ts = Some(self.first_ts.map_or(t, |f| f.min(t)));
            self.last_ts = Some(self.last_ts.map_or(t, |l| l.max(t)));
        }
        let content = m.content.unwrap_or_default();
        let display = m.display_content.unwrap_or_default();
        // What was typed (`displayContent`) reads better than what was sent, which may carry
        // expanded `@file` contents.
        let typed = if display.has_text { &display } else { &content };
        let (kind, text) = match m.kind.as_ref().and_then(Value::as_str) {
            Some("user") if content.parts > 0 && content.function_responses == content.parts => {
                (Kind::ToolResult, None)
            }
            Some("user") => (Kind::Prompt, title_candidate(&typed.text())),
            Some("gemini") => (Kind::Gemini, None),
            Some("info") if CANCELLED_TEXTS.contains(&content.text().trim()) => {
                (Kind::Cancelled, None)
            }
            Some("info") => (Kind::Info, None),
            Some("error") => (Kind::Error, first_line(&typed.text())),
            Some("warning") => (Kind::Warning, None),
            _ => (Kind::Other, None),
        };
        let (calls, usage, model) = if kind == Kind::Gemini {
            let own = as_string(m.model);
            if own.is_some() {
                self.last_model.clone_from(&own);
            }
            (
                m.tool_calls
                    .map(|c| c.0.into_iter().map(|call| call.status).collect())
                    .unwrap_or_default(),
                m.tokens.as_ref().and_then(usage_of),
                own.or_else(|| self.last_model.clone()),
            )
        } else {
            (Vec::new(), None, None)
        };
        let msg = Msg {
            id,
            kind,
            ts,
            has_text: content.has_text || display.has_text,
            calls,
            usage,
            model,
            text,
        };
        self.count(&msg, prices, 1.0);
        // A re-appended message is nearly always one of the last few: search from the end.
        match self.messages.iter().rposition(|old| old.id == msg.id) {
            Some(i) => {
                let old = std::mem::replace(&mut self.messages[i], msg);
                self.count(&old, prices, -1.0);
            }
            None => self.messages.push(msg),
        }
    }

    /// Deletes the message `id` and everything after it. An id not in the list changes nothing
    /// (gemini only writes a rewind to a message it has), so a line this fold could not read
    /// never empties the conversation.
    fn rewind(&mut self, id: &str, prices: &Prices) -> Result<(), String> {
        let at = self
            .messages
            .iter()
            .rposition(|m| m.id == id)
            .ok_or("\"$rewindTo\" names a message not in the conversation")?;
        for m in self.messages.split_off(at) {
            self.count(&m, prices, -1.0);
        }
        Ok(())
    }

    /// Adds (`sign` 1.0) or takes back (-1.0) a message's tokens and cost.
    fn count(&mut self, m: &Msg, prices: &Prices, sign: f64) {
        let Some(u) = &m.usage else { return };
        if sign > 0.0 {
            self.usage.add(u);
        } else {
            let t = &mut self.usage;
            t.input_tokens = t.input_tokens.saturating_sub(u.input_tokens);
            t.output_tokens = t.output_tokens.saturating_sub(u.output_tokens);
            t.cache_read_tokens = t.cache_read_tokens.saturating_sub(u.cache_read_tokens);
            t.cache_write_tokens = t.cache_write_tokens.saturating_sub(u.cache_write_tokens);
        }
        // No model at all prices as unknown, which makes the total unknown (tokens still count).
        self.cost
            .add(prices, m.model.as_deref().unwrap_or(""), u, sign);
    }

    /// The status table of the module doc.
    fn status(&self, now: Millis, updated_at: Option<Millis>) -> (Status, Option<String>) {
        let last = self.messages.iter().rev().find(|m| m.kind.decides());
        // `pending`: a response with no text and no recorded call, i.e. a call not yet run.
        // `settled`: a response whose calls all finished: their results are normally on their
        // way back to the model (Gemini CLI records them in the call, not as a new message), so
        // the turn goes on; only a quiet one is taken as the end.
        let (status, detail, pending, settled) = match last {
            None => (Status::Working, None, false, false),
            Some(m) => match m.kind {
                Kind::Error => (Status::Failed, m.text.clone(), false, false),
                Kind::Cancelled => (Status::Canceled, None, false, false),
                Kind::Gemini if m.calls.contains(&Call::Cancelled) => {
                    (Status::Canceled, None, false, false)
                }
                Kind::Gemini if m.has_text && m.calls.is_empty() => {
                    (Status::Success, None, false, false)
                }
                Kind::Gemini => (
                    Status::Working,
                    None,
                    !m.has_text && m.calls.is_empty(),
                    !m.calls.is_empty() && !m.calls.contains(&Call::Open),
                ),
                Kind::Prompt | Kind::ToolResult | Kind::Info | Kind::Warning | Kind::Other => {
                    (Status::Working, None, false, false)
                }
            },
        };
        if status == Status::Working {
            let quiet = updated_at.map_or(0, |u| now.0.saturating_sub(u.0));
            if quiet >= ABANDONED_AFTER_MS {
                return (Status::Failed, Some(NO_ACTIVITY.to_owned()));
            }
            if settled && quiet >= QUIET_DONE_MS {
                return (Status::Success, None);
            }
            if pending && quiet >= BLOCKED_AFTER_MS {
                return (Status::Blocked, Some(WAITING_FOR_APPROVAL.to_owned()));
            }
        }
        (status, detail)
    }
}

/// Folds an older whole-file `session-*.json` (one `ConversationRecord`): its metadata, then
/// each of its messages. `Err` when the file is not one JSON object naming a session or holding
/// messages; such files were written in place, so a torn one reads fine on the next change.
pub fn fold_legacy_json(bytes: &[u8], prices: &Prices) -> Result<GeminiFold, String> {
    let record = parse_record(bytes)?.ok_or("an empty file")?;
    if record.session_id.is_none() && record.messages.is_none() {
        return Err("not a Gemini conversation record (no sessionId and no messages)".into());
    }
    let mut fold = GeminiFold::default();
    fold.merge_metadata(record, prices);
    Ok(fold)
}

/// Parses one line; `None` for a blank one.
fn parse_record(bytes: &[u8]) -> Result<Option<Record>, String> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(None),
        Some(b'{') => serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| format!("not a JSON object: {e}")),
        Some(_) => Err("not a JSON object".into()),
    }
}

fn as_string(v: Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn timestamp(v: Option<&Value>) -> Option<Millis> {
    v?.as_str()
        .and_then(agentd_wire::parse_rfc3339_ms)
        .map(Millis)
}

/// Maps a `tokens` object (`TokensSummary`) to [`Usage`], as ccusage does: `input`
/// (promptTokenCount) includes `cached`; `tool` (toolUsePromptTokenCount) is input; `thoughts`
/// are billed as output.
fn usage_of(tokens: &Value) -> Option<Usage> {
    let t = tokens.as_object()?;
    let n = |key: &str| t.get(key).and_then(Value::as_u64).unwrap_or(0);
    let (input, cached) = (n("input"), n("cached"));
    Some(Usage {
        input_tokens: (input - input.min(cached)).saturating_add(n("tool")),
        output_tokens: n("output").saturating_add(n("thoughts")),
        cache_read_tokens: cached,
        cache_write_tokens: 0,
    })
}

/// A prompt's text as a title, unless it is empty or one gemini does not list sessions by.
fn title_candidate(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() || NOT_A_TITLE.iter().any(|p| text.starts_with(p)) {
        None
    } else {
        Some(short(text))
    }
}

/// The first non-blank line, shortened.
fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(short)
}

/// Collapses whitespace and cuts to [`SHORT_CHARS`] characters, marking a cut with `…`.
fn short(text: &str) -> String {
    let mut end = TEXT_KEEP.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let collapsed = text[..end].split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= SHORT_CHARS {
        return collapsed;
    }
    let mut out: String = collapsed.chars().take(SHORT_CHARS - 1).collect();
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

// ---- Reading lines ----
//
// A line is deserialized into `Record`, which names only the fields the fold reads. Small fields
// are kept as raw JSON values, so that an unexpected type drops the field rather than the line.
// The bulky ones (content, tool calls with their arguments and results, a checkpoint's messages)
// go through visitors that keep what is needed and skip the rest without building it.

#[derive(Default, Deserialize)]
#[serde(default)]
struct Record {
    #[serde(rename = "$rewindTo")]
    rewind_to: Option<Value>,
    #[serde(rename = "$set")]
    set: Option<MaybeRecord>,
    id: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
    timestamp: Option<Value>,
    content: Option<Content>,
    #[serde(rename = "displayContent")]
    display_content: Option<Content>,
    #[serde(rename = "toolCalls")]
    tool_calls: Option<ToolCalls>,
    tokens: Option<Value>,
    model: Option<Value>,
    #[serde(rename = "sessionId")]
    session_id: Option<Value>,
    #[serde(rename = "startTime")]
    start_time: Option<Value>,
    #[serde(rename = "lastUpdated")]
    last_updated: Option<Value>,
    summary: Option<Value>,
    messages: Option<Messages>,
}

/// `$set`: an object, or `None` for anything else (refused by the caller).
#[derive(Default)]
struct MaybeRecord(Option<Box<Record>>);

impl<'de> Deserialize<'de> for MaybeRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeRecord;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            scalars_are_empty!();
            fn visit_str<E: de::Error>(self, _: &str) -> Result<MaybeRecord, E> {
                Ok(MaybeRecord(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MaybeRecord, A::Error> {
                skip_seq(seq).map(|()| MaybeRecord(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MaybeRecord, A::Error> {
                Record::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|r| MaybeRecord(Some(Box::new(r))))
            }
        }
        d.deserialize_any(V)
    }
}

/// A checkpoint's `messages`: its objects, anything else in the array skipped.
#[derive(Default)]
struct Messages(Vec<Record>);

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Messages;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of messages")
            }
            scalars_are_empty!();
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Messages, E> {
                Ok(Messages::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Messages, A::Error> {
                let mut out = Vec::new();
                while let Some(MaybeRecord(m)) = seq.next_element()? {
                    out.extend(m.map(|m| *m));
                }
                Ok(Messages(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Messages, A::Error> {
                skip_map(map).map(|()| Messages::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// `toolCalls`: each call's state and name; arguments and results are skipped.
#[derive(Default)]
struct ToolCalls(Vec<RecordedCall>);

/// One recorded tool call.
struct RecordedCall {
    status: Call,
    /// The tool's name (for the transcript).
    name: Option<String>,
}

impl<'de> Deserialize<'de> for ToolCalls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ToolCalls;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of tool calls")
            }
            scalars_are_empty!();
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ToolCalls, E> {
                Ok(ToolCalls::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ToolCalls, A::Error> {
                let mut out = Vec::new();
                while let Some(ToolCall(call)) = seq.next_element()? {
                    out.extend(call);
                }
                Ok(ToolCalls(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ToolCalls, A::Error> {
                skip_map(map).map(|()| ToolCalls::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// One tool call: its `status` and `name`; `None` when the entry is not an object.
#[derive(Default)]
struct ToolCall(Option<RecordedCall>);

impl<'de> Deserialize<'de> for ToolCall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ToolCall;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a tool call")
            }
            scalars_are_empty!();
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ToolCall, E> {
                Ok(ToolCall(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ToolCall, A::Error> {
                skip_seq(seq).map(|()| ToolCall(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ToolCall, A::Error> {
                let (mut status, mut name) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "status" => status = as_string(map.next_value()?),
                        "name" => name = as_string(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(ToolCall(Some(RecordedCall {
                    status: Call::from_status(status.as_deref()),
                    name,
                })))
            }
        }
        d.deserialize_any(V)
    }
}

/// `content` or `displayContent` (a `PartListUnion`: a string, a part, or an array of either),
/// reduced to its text.
#[derive(Debug, Default)]
struct Content {
    /// The text parts (not thoughts), as decoded (not copied).
    texts: Vec<String>,
    /// Some text part is not blank.
    has_text: bool,
    parts: usize,
    function_responses: usize,
}

impl Content {
    fn add(&mut self, part: Part) {
        self.parts += 1;
        if part.function_response {
            self.function_responses += 1;
        }
        if let Some(text) = part.text.filter(|_| !part.thought) {
            self.push_text(text);
        }
    }

    fn push_text(&mut self, s: String) {
        self.has_text |= s.chars().any(|c| !c.is_whitespace());
        self.texts.push(s);
    }

    /// The text parts, a line between two.
    fn text(&self) -> std::borrow::Cow<'_, str> {
        match self.texts.as_slice() {
            [] => "".into(),
            [one] => one.as_str().into(),
            many => many.join("\n").into(),
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("message content")
            }
            scalars_are_empty!();
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Content, E> {
                let mut c = Content::default();
                c.push_text(s.to_owned());
                Ok(c)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut c = Content::default();
                while let Some(part) = seq.next_element::<Part>()? {
                    c.add(part);
                }
                Ok(c)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Content, A::Error> {
                let mut c = Content::default();
                c.add(PartVisitor.visit_map(map)?);
                Ok(c)
            }
        }
        d.deserialize_any(V)
    }
}

/// One part of a content: a string, or `{text, thought?}`, `{functionCall}`,
/// `{functionResponse}`, `{inlineData}`…
#[derive(Default)]
struct Part {
    text: Option<String>,
    thought: bool,
    function_response: bool,
}

struct PartVisitor;

impl<'de> Visitor<'de> for PartVisitor {
    type Value = Part;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a content part")
    }
    scalars_are_empty!();
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Part, E> {
        Ok(Part {
            text: Some(s.to_owned()),
            ..Part::default()
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Part, A::Error> {
        skip_seq(seq).map(|()| Part::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Part, A::Error> {
        let mut part = Part::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "text" => part.text = as_string(map.next_value()?),
                "thought" => part.thought = map.next_value::<Value>()? == Value::Bool(true),
                "functionResponse" => {
                    map.next_value::<IgnoredAny>()?;
                    part.function_response = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(part)
    }
}

impl<'de> Deserialize<'de> for Part {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PartVisitor)
    }
}

/// A Gemini CLI chat's transcript (see [`super::transcript`]), read with the fold's own
/// decoding and rules: a message re-appended when it changes replaces the earlier version
/// where it stands, `$rewindTo` drops it and what follows, and a checkpoint (`$set`, or a
/// metadata line) with `messages` replaces the list whole. So the text is known only once the
/// file has been read.
#[derive(Debug, Default)]
pub struct Transcript {
    /// Message id and its rendered text, in order.
    messages: Vec<(String, String)>,
}

impl Transcript {
    /// Takes one line of the file.
    pub fn line(&mut self, bytes: &[u8]) {
        let Ok(Some(mut record)) = parse_record(bytes) else {
            return;
        };
        if let Some(target) = record.rewind_to.take() {
            if let Value::String(id) = target
                && let Some(i) = self.messages.iter().position(|(m, _)| *m == id)
            {
                self.messages.truncate(i);
            }
            return;
        }
        if let Some(MaybeRecord(set)) = record.set.take() {
            if let Some(set) = set {
                self.checkpoint(*set);
            }
            return;
        }
        match record.id.take() {
            Some(Value::String(id)) => {
                let text = render_message(&record);
                match self.messages.iter_mut().find(|(m, _)| *m == id) {
                    Some(slot) => slot.1 = text,
                    None => self.messages.push((id, text)),
                }
            }
            Some(_) => {}
            None => self.checkpoint(record),
        }
    }

    /// A metadata object: its `messages`, when it has them, replace the list.
    fn checkpoint(&mut self, meta: Record) {
        if let Some(Messages(list)) = meta.messages {
            self.messages = list
                .into_iter()
                .filter_map(|mut m| match m.id.take() {
                    Some(Value::String(id)) => Some((id, render_message(&m))),
                    _ => None,
                })
                .collect();
        }
    }

    /// The transcript, once the whole file has been read.
    pub fn finish(self) -> String {
        self.messages.into_iter().map(|(_, text)| text).collect()
    }
}

/// Renders an older whole-file chat (see [`fold_legacy_json`]).
pub fn render_legacy_json(bytes: &[u8]) -> String {
    let mut t = Transcript::default();
    if let Ok(Some(record)) = parse_record(bytes) {
        t.checkpoint(record);
    }
    t.finish()
}

/// One message as the transcript shows it: what was typed (as the fold reads it), the answer
/// and its tool calls, errors and notices.
fn render_message(m: &Record) -> String {
    let mut out = String::new();
    let display = m.display_content.as_ref().filter(|c| c.has_text);
    let text = display
        .or(m.content.as_ref())
        .map(Content::text)
        .unwrap_or_default();
    match m.kind.as_ref().and_then(Value::as_str) {
        Some("user") => say(&mut out, "you", &text),
        Some("gemini") => {
            say(&mut out, "gemini", &text);
            for call in m.tool_calls.iter().flat_map(|c| &c.0) {
                tool(&mut out, call.name.as_deref());
            }
        }
        Some("error") => say(&mut out, "error", &text),
        Some("info") => say(&mut out, "info", &text),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "3f9c2a71-5d4e-4b8a-9c61-7e2d1f0a8b34";

    const META: &str = r#"{"sessionId":"3f9c2a71-5d4e-4b8a-9c61-7e2d1f0a8b34","projectHash":"8f14e45fceea167a5a36dedd4bea2543a8b9c1d2e3f4051627384950a6b7c8d9","startTime":"2026-05-12T14:03:10.211Z","lastUpdated":"2026-05-12T14:03:10.211Z","kind":"main"}"#;
    const U1: &str = r#"{"id":"5c1e7a2b-9d3f-4e6a-8b0c-1d2e3f4a5b6c","timestamp":"2026-05-12T14:03:21.480Z","type":"user","content":[{"text":"Add a --dry-run flag to scripts/deploy.sh"}]}"#;
    const SET_U1: &str = r#"{"$set":{"lastUpdated":"2026-05-12T14:03:21.481Z"}}"#;
    /// A response that only called a tool: recorded when the call completed, tokens queued.
    const G1_PARTIAL: &str = r##"{"id":"8a4d2f6e-3b7c-4d1e-9f0a-2b3c4d5e6f70","timestamp":"2026-05-12T14:03:27.015Z","type":"gemini","content":"","toolCalls":[{"id":"read_file-1778594606902-3fa9c1e27b4d5","name":"read_file","args":{"absolute_path":"/home/ana/src/shipit/scripts/deploy.sh"},"result":[{"functionResponse":{"id":"read_file-1778594606902-3fa9c1e27b4d5","name":"read_file","response":{"output":"#!/usr/bin/env bash\nset -euo pipefail\nrsync -az dist/ \"$HOST:/srv/shipit/\"\n"}}}],"status":"success","timestamp":"2026-05-12T14:03:27.015Z","displayName":"ReadFile","description":"Reads and returns the content of a specified file.","renderOutputAsMarkdown":true}],"thoughts":[{"subject":"Inspecting the deploy script","description":"I need to see how the script calls rsync before adding a flag.","timestamp":"2026-05-12T14:03:24.310Z"}],"tokens":{"input":12480,"output":12,"cached":8192,"thoughts":310,"tool":40,"total":12842},"model":"gemini-2.5-pro"}"##;
    /// The same message once the response's final usage arrived.
    const G1: &str = r##"{"id":"8a4d2f6e-3b7c-4d1e-9f0a-2b3c4d5e6f70","timestamp":"2026-05-12T14:03:27.015Z","type":"gemini","content":"","toolCalls":[{"id":"read_file-1778594606902-3fa9c1e27b4d5","name":"read_file","args":{"absolute_path":"/home/ana/src/shipit/scripts/deploy.sh"},"result":[{"functionResponse":{"id":"read_file-1778594606902-3fa9c1e27b4d5","name":"read_file","response":{"output":"#!/usr/bin/env bash\nset -euo pipefail\nrsync -az dist/ \"$HOST:/srv/shipit/\"\n"}}}],"status":"success","timestamp":"2026-05-12T14:03:27.015Z","displayName":"ReadFile","description":"Reads and returns the content of a specified file.","renderOutputAsMarkdown":true}],"thoughts":[{"subject":"Inspecting the deploy script","description":"I need to see how the script calls rsync before adding a flag.","timestamp":"2026-05-12T14:03:24.310Z"}],"tokens":{"input":12480,"output":96,"cached":8192,"thoughts":310,"tool":40,"total":12926},"model":"gemini-2.5-pro"}"##;
    const G2: &str = r#"{"id":"c3e5a7b9-1d2f-4a6b-8c0d-3e4f5a6b7c8d","timestamp":"2026-05-12T14:03:41.377Z","type":"gemini","content":"Added a `--dry-run` flag to `scripts/deploy.sh`: it passes `--dry-run` to rsync and prints what would be copied.","thoughts":[],"tokens":{"input":13210,"output":240,"cached":12288,"thoughts":128,"tool":0,"total":13578},"model":"gemini-2.5-pro"}"#;
    const SET_G2: &str = r#"{"$set":{"lastUpdated":"2026-05-12T14:03:41.378Z"}}"#;
    const U2: &str = r#"{"id":"e7f9b1d3-5a6c-4e8f-9a1b-4c5d6e7f8a9b","timestamp":"2026-05-12T14:04:02.118Z","type":"user","content":[{"text":"Also add it to the Makefile"}]}"#;
    const G3: &str = r#"{"id":"1b3d5f7a-9c0e-4b2d-8f4a-5d6e7f8a9b0c","timestamp":"2026-05-12T14:04:19.640Z","type":"gemini","content":"Done: `make deploy DRY_RUN=1` now runs the script with `--dry-run`.","thoughts":[],"tokens":{"input":14002,"output":512,"cached":12288,"thoughts":256,"tool":0,"total":14770},"model":"gemini-2.5-pro"}"#;
    const REWIND_U2: &str = r#"{"$rewindTo":"e7f9b1d3-5a6c-4e8f-9a1b-4c5d6e7f8a9b"}"#;
    const U3: &str = r#"{"id":"2c4e6a8b-0d1f-4c3e-9a5b-6e7f8a9b0c1d","timestamp":"2026-05-12T14:05:30.902Z","type":"user","content":[{"text":"Put it in the README instead"}]}"#;
    const TITLE: &str = "Add a --dry-run flag to scripts/deploy.sh";

    /// The usage of G1 and G2: (12480 − 8192 + 40) + (13210 − 12288) input,
    /// (96 + 310) + (240 + 128) output, 8192 + 12288 cache reads.
    const EXCHANGE_USAGE: Usage = Usage {
        input_tokens: 5_250,
        output_tokens: 774,
        cache_read_tokens: 20_480,
        cache_write_tokens: 0,
    };
    /// gemini-2.5-pro: 5250 × 1.25 + 774 × 10 + 20480 × 0.125 = 16862.5 micro-dollars, kept to
    /// the micro-dollar (the half rounds up).
    const EXCHANGE_COST: f64 = 0.016_863;

    /// The expected outcome of one table row.
    struct Want<'a> {
        status: Status,
        detail: Option<&'a str>,
        title: Option<&'a str>,
        /// Lines refused.
        bad: usize,
    }

    fn want<'a>(status: Status, detail: Option<&'a str>, title: Option<&'a str>) -> Want<'a> {
        Want {
            status,
            detail,
            title,
            bad: 0,
        }
    }

    fn fold(lines: &[&str]) -> (GeminiFold, usize) {
        let prices = Prices::builtin();
        let mut f = GeminiFold::default();
        let bad = lines
            .iter()
            .filter(|l| f.apply(l.as_bytes(), &prices).is_err())
            .count();
        (f, bad)
    }

    /// Folds the lines and looks at the conversation `now_offset_ms` after its last activity.
    fn check(lines: &[&str], now_offset_ms: i64, want: Want<'_>) -> Conversation {
        let (f, bad) = fold(lines);
        let now = f.conversation(Millis(0)).updated_at.unwrap_or_default().0 + now_offset_ms;
        let c = f.conversation(Millis(now));
        assert_eq!(
            (
                c.status,
                c.status_detail.as_deref(),
                c.title.as_deref(),
                bad
            ),
            (want.status, want.detail, want.title, want.bad),
            "lines: {lines:#?}"
        );
        c
    }

    fn ms(s: &str) -> Millis {
        Millis(agentd_wire::parse_rfc3339_ms(s).unwrap())
    }

    #[test]
    fn a_finished_exchange_succeeds() {
        let c = check(
            &[META, U1, SET_U1, G1_PARTIAL, G1, G2, SET_G2],
            0,
            want(Status::Success, None, Some(TITLE)),
        );
        assert_eq!(c.session_id.as_deref(), Some(SESSION));
        assert_eq!(c.model.as_deref(), Some("gemini-2.5-pro"));
        assert_eq!(c.usage, EXCHANGE_USAGE);
        assert_eq!(c.cost_usd, Some(EXCHANGE_COST));
        assert_eq!(c.created_at, Some(ms("2026-05-12T14:03:10.211Z")));
        assert_eq!(c.updated_at, Some(ms("2026-05-12T14:03:41.378Z")));
        assert_eq!(c.cwd, None);
        // Done is done, however long ago.
        check(
            &[META, U1, G1, G2],
            ABANDONED_AFTER_MS * 2,
            want(Status::Success, None, Some(TITLE)),
        );
    }

    #[test]
    fn a_reappended_message_counts_once_and_keeps_its_place() {
        // G1 arrives with partial tokens, is re-appended with the final ones, and once more
        // after G2 (gemini re-records a message when its tool results are updated). Were it
        // moved to the end, the text-less G1 would make the turn look open.
        let c = check(
            &[META, U1, G1_PARTIAL, G1, G2, SET_G2, G1],
            0,
            want(Status::Success, None, Some(TITLE)),
        );
        assert_eq!(c.usage, EXCHANGE_USAGE);
        assert_eq!(c.cost_usd, Some(EXCHANGE_COST));
    }

    #[test]
    fn rewind_removes_later_messages_and_their_tokens() {
        let c = check(
            &[META, U1, G1, G2, SET_G2, U2, G3, REWIND_U2],
            0,
            want(Status::Success, None, Some(TITLE)),
        );
        assert_eq!(c.usage, EXCHANGE_USAGE);
        assert_eq!(c.cost_usd, Some(EXCHANGE_COST));
        // The edited prompt that follows a rewind opens a new turn.
        check(
            &[META, U1, G1, G2, U2, G3, REWIND_U2, U3],
            0,
            want(Status::Working, None, Some(TITLE)),
        );
        // Rewinding to the first prompt empties the conversation.
        let c = check(
            &[
                META,
                U1,
                G1,
                G2,
                r#"{"$rewindTo":"5c1e7a2b-9d3f-4e6a-8b0c-1d2e3f4a5b6c"}"#,
            ],
            0,
            want(Status::Working, None, None),
        );
        assert_eq!(c.usage, Usage::default());
        // A rewind to a message never seen is refused and changes nothing.
        let c = check(
            &[META, U1, G1, G2, r#"{"$rewindTo":"0000"}"#],
            0,
            Want {
                bad: 1,
                ..want(Status::Success, None, Some(TITLE))
            },
        );
        assert_eq!(c.usage, EXCHANGE_USAGE);
    }

    #[test]
    fn a_set_summary_becomes_the_title() {
        check(
            &[
                META,
                U1,
                G1,
                G2,
                r#"{"$set":{"summary":"Dry-run flag for the deploy script"}}"#,
            ],
            0,
            want(
                Status::Success,
                None,
                Some("Dry-run flag for the deploy script"),
            ),
        );
        // The session id of a resumed session is replaced.
        let (f, _) = fold(&[
            META,
            U1,
            r#"{"$set":{"sessionId":"9d8c7b6a-0000-4000-8000-000000000001"}}"#,
        ]);
        assert_eq!(
            f.conversation(Millis(0)).session_id.as_deref(),
            Some("9d8c7b6a-0000-4000-8000-000000000001")
        );
    }

    #[test]
    fn titles_skip_commands_injected_context_and_tool_results() {
        check(
            &[
                META,
                r#"{"id":"u-a","timestamp":"2026-05-12T14:03:11.000Z","type":"user","content":"/model"}"#,
                r#"{"id":"u-b","timestamp":"2026-05-12T14:03:12.000Z","type":"user","content":[{"text":"<session_context>\nThis is the Gemini CLI. We are setting up the context for our chat.\n</session_context>"}]}"#,
                r#"{"id":"u-c","timestamp":"2026-05-12T14:03:13.000Z","type":"user","content":[{"functionResponse":{"id":"x","name":"ls","response":{"output":"a b"}}}]}"#,
                r#"{"id":"u-d","timestamp":"2026-05-12T14:03:14.000Z","type":"user","content":[{"text":"Explain   @src/main.rs\n"},{"text":"--- Content from referenced files ---\nfn main() {}"}],"displayContent":[{"text":"Explain @src/main.rs"}]}"#,
            ],
            0,
            want(Status::Working, None, Some("Explain @src/main.rs")),
        );
        // Long prompts are collapsed and cut to 200 characters.
        let long = format!(
            r#"{{"id":"u-e","timestamp":"2026-05-12T14:03:11.000Z","type":"user","content":"{}"}}"#,
            "word\\n ".repeat(100)
        );
        let mut title: String = "word ".repeat(40).chars().take(199).collect();
        title.push('…');
        let c = check(&[META, &long], 0, want(Status::Working, None, Some(&title)));
        assert_eq!(c.title.map(|t| t.chars().count()), Some(200));
    }

    #[test]
    fn a_set_messages_checkpoint_replaces_the_list() {
        let checkpoint = format!(r#"{{"$set":{{"messages":[{U1},{G2}]}}}}"#);
        let c = check(
            &[META, U1, G1, G2, U2, G3, &checkpoint],
            0,
            want(Status::Success, None, Some(TITLE)),
        );
        // G2 alone: (13210 − 12288) input, 240 + 128 output, 12288 cache reads.
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: 922,
                output_tokens: 368,
                cache_read_tokens: 12_288,
                cache_write_tokens: 0
            }
        );
    }

    #[test]
    fn request_cancelled_is_canceled() {
        check(
            &[
                META,
                U1,
                r#"{"id":"i-1","timestamp":"2026-05-12T14:03:25.002Z","type":"info","content":"Request cancelled."}"#,
            ],
            0,
            want(Status::Canceled, None, Some(TITLE)),
        );
        // Also the other wording, and a warning after it does not change it.
        check(
            &[
                META,
                U1,
                r#"{"id":"i-2","timestamp":"2026-05-12T14:03:25.002Z","type":"info","content":"User cancelled the request."}"#,
                r#"{"id":"w-1","timestamp":"2026-05-12T14:03:26.000Z","type":"warning","content":"Skipping unreadable directory: node_modules/.cache"}"#,
            ],
            0,
            want(Status::Canceled, None, Some(TITLE)),
        );
        // A tool call the user declined is recorded as cancelled.
        check(
            &[
                META,
                U1,
                r#"{"id":"g-c","timestamp":"2026-05-12T14:03:30.500Z","type":"gemini","content":"I'll run the script in dry-run mode.","toolCalls":[{"id":"run_shell_command-1778594610500-9e8d7c6b5a4f3","name":"run_shell_command","args":{"command":"bash scripts/deploy.sh --dry-run"},"result":[{"functionResponse":{"id":"run_shell_command-1778594610500-9e8d7c6b5a4f3","name":"run_shell_command","response":{"error":"[Operation Cancelled] Reason: User cancelled the operation."}}}],"status":"cancelled","timestamp":"2026-05-12T14:03:34.120Z"}],"tokens":{"input":12950,"output":41,"cached":8192,"thoughts":0,"tool":0,"total":12991},"model":"gemini-2.5-pro"}"#,
            ],
            0,
            want(Status::Canceled, None, Some(TITLE)),
        );
        // Other info lines do not decide.
        check(
            &[
                META,
                U1,
                r#"{"id":"i-3","timestamp":"2026-05-12T14:03:22.000Z","type":"info","content":"Switched to fallback model gemini-2.5-flash"}"#,
            ],
            0,
            want(Status::Working, None, Some(TITLE)),
        );
    }

    #[test]
    fn an_error_message_fails() {
        let c = check(
            &[
                META,
                U1,
                r#"{"id":"e-1","timestamp":"2026-05-12T14:03:23.771Z","type":"error","content":"[API Error: You have exhausted your capacity on this model. Your quota will reset after 19h42m.]\nPlease wait and try again later, or switch to another model with /model."}"#,
            ],
            0,
            want(
                Status::Failed,
                Some(
                    "[API Error: You have exhausted your capacity on this model. Your quota will reset after 19h42m.]",
                ),
                Some(TITLE),
            ),
        );
        assert_eq!(c.usage, Usage::default());
        assert_eq!(c.cost_usd, None);
        // A new prompt after the error reopens the conversation.
        check(
            &[
                META,
                U1,
                r#"{"id":"e-1","timestamp":"2026-05-12T14:03:23.771Z","type":"error","content":"[API Error: fetch failed]"}"#,
                U2,
            ],
            0,
            want(Status::Working, None, Some(TITLE)),
        );
    }

    #[test]
    fn a_pending_tool_call_is_blocked_after_quiet_time() {
        // A response that is only a function call: no text, no recorded call yet.
        const PENDING: &str = r#"{"id":"g-p","timestamp":"2026-05-12T14:03:30.500Z","type":"gemini","content":[{"functionCall":{"id":"run_shell_command-1778594610500-9e8d7c6b5a4f3","name":"run_shell_command","args":{"command":"bash scripts/deploy.sh --dry-run"}}}],"thoughts":[],"tokens":{"input":12950,"output":41,"cached":8192,"thoughts":0,"tool":0,"total":12991},"model":"gemini-2.5-pro"}"#;
        let lines = [META, U1, PENDING];
        check(&lines, 1_000, want(Status::Working, None, Some(TITLE)));
        check(
            &lines,
            6_000,
            want(Status::Blocked, Some(WAITING_FOR_APPROVAL), Some(TITLE)),
        );
        check(
            &lines,
            ABANDONED_AFTER_MS + 1_000,
            want(Status::Failed, Some(NO_ACTIVITY), Some(TITLE)),
        );
        // A prompt waiting for its answer is never blocked, but is abandoned in time.
        check(&[META, U1], 6_000, want(Status::Working, None, Some(TITLE)));
        check(
            &[META, U1],
            ABANDONED_AFTER_MS,
            want(Status::Failed, Some(NO_ACTIVITY), Some(TITLE)),
        );
        // A text-less response whose calls completed is waiting for the model, not the user.
        check(
            &[META, U1, G1],
            6_000,
            want(Status::Working, None, Some(TITLE)),
        );
        // ... and if nothing follows it for long, that was the end of the turn.
        check(
            &[META, U1, G1],
            QUIET_DONE_MS + 1_000,
            want(Status::Success, None, Some(TITLE)),
        );
        // No messages yet.
        check(&[META], 6_000, want(Status::Working, None, None));
    }

    #[test]
    fn the_legacy_json_file() {
        let prices = Prices::builtin();
        let mut record: Value = serde_json::from_str(META).unwrap();
        record["lastUpdated"] = "2026-05-12T14:03:41.378Z".into();
        record["messages"] = Value::Array(
            [U1, G1, G2]
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        );
        let file = serde_json::to_string_pretty(&record).unwrap();
        let legacy = fold_legacy_json(file.as_bytes(), &prices).unwrap();
        let (jsonl, _) = fold(&[META, U1, G1, G2, SET_G2]);
        let now = ms("2026-05-12T14:04:00Z");
        assert_eq!(legacy.conversation(now), jsonl.conversation(now));
        assert_eq!(legacy.conversation(now).status, Status::Success);
        assert_eq!(legacy.conversation(now).usage, EXCHANGE_USAGE);
        // A torn write, and JSON that is not a conversation, are refused.
        assert!(fold_legacy_json(&file.as_bytes()[..file.len() / 2], &prices).is_err());
        assert!(fold_legacy_json(b"[]", &prices).is_err());
        assert!(fold_legacy_json(b"{\"hello\":1}", &prices).is_err());
        assert!(fold_legacy_json(b"", &prices).is_err());
    }

    #[test]
    fn a_garbage_line_is_refused_and_the_rest_folds() {
        let c = check(
            &[
                META,
                "garbage",
                U1,
                "[1,2]",
                r#"{"$rewindTo":42}"#,
                r#"{"$set":"oops"}"#,
                r#"{"type":"user","content":"a message without an id"}"#,
                r#"{"id":7,"type":"user","content":"a numeric id"}"#,
                r#"{"id":"8a4d2f6e-3b7c-4d1e-9f0a-2b3c4d5e6f70","timestamp":"2026-05-12T14:0"#,
                "",
                G1,
                // Odd shapes inside a message drop the field, not the line.
                r#"{"id":"x-1","timestamp":"not a time","type":"warning","content":42,"toolCalls":"none","tokens":"many"}"#,
                G2,
                SET_G2,
            ],
            0,
            Want {
                bad: 7,
                ..want(Status::Success, None, Some(TITLE))
            },
        );
        assert_eq!(c.usage, EXCHANGE_USAGE);
    }

    #[test]
    fn serialized_mid_file_then_continued_equals_one_pass() {
        let lines = [
            META,
            U1,
            SET_U1,
            G1_PARTIAL,
            "garbage",
            G1,
            G2,
            SET_G2,
            U2,
            G3,
            REWIND_U2,
            U3,
            r#"{"$set":{"summary":"Dry-run flag for the deploy script"}}"#,
        ];
        let prices = Prices::builtin();
        let (whole, _) = fold(&lines);
        let now = ms("2026-05-12T14:05:40Z");
        for split in 0..=lines.len() {
            let (head, _) = fold(&lines[..split]);
            let mut f: GeminiFold = crate::store::decode(&crate::store::encode(&head)).unwrap();
            for l in &lines[split..] {
                let _ = f.apply(l.as_bytes(), &prices);
            }
            assert_eq!(f, whole, "split at {split}");
            assert_eq!(
                f.conversation(now),
                whole.conversation(now),
                "split at {split}"
            );
        }
    }

    #[test]
    fn tokens_follow_ccusage() {
        let u = usage_of(&serde_json::json!({
            "input": 7269, "output": 46, "cached": 5811, "thoughts": 58, "tool": 0, "total": 7373
        }));
        assert_eq!(
            u,
            Some(Usage {
                input_tokens: 1458,
                output_tokens: 104,
                cache_read_tokens: 5811,
                cache_write_tokens: 0
            })
        );
        // Missing fields are zero; cached beyond input does not underflow.
        let u = usage_of(&serde_json::json!({"input": 10, "cached": 50, "output": 1}));
        assert_eq!(
            u,
            Some(Usage {
                input_tokens: 0,
                output_tokens: 1,
                cache_read_tokens: 50,
                cache_write_tokens: 0
            })
        );
        assert_eq!(usage_of(&Value::Null), None);
    }
}
