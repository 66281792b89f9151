//! Claude Code transcripts: `projects/<cwd-slug>/<sessionId>.jsonl`, folded line by line.
//!
//! Each line is one JSON object (`user`, `assistant`, `system` with a subtype, `progress`,
//! `summary`, `ai-title`, `custom-title`, `queue-operation`, `file-history-snapshot`, …). The
//! fold keeps what the item needs and decides status from the *main chain* only: sidechain
//! lines (`isSidechain`, sub-agent files) count for tokens but never for status.
//!
//! Tokens: one API response is written as several lines (one per content block) sharing
//! `message.id` + `requestId`, each repeating a usage snapshot whose `output_tokens` grows. A
//! response counts once, with its largest snapshot (the difference is added when a larger one
//! arrives). Cost is priced per response with that response's model; `<synthetic>` (error
//! placeholders) is skipped.
//!
//! Title: the last `custom-title`, else the last `ai-title`, else a `summary`, else the first
//! real prompt (not meta, not a compaction summary, not a command wrapper, not an interrupt).
//!
//! Status, from the last meaningful main-chain line (metadata lines do not count):
//!
//! | last line | status | detail |
//! |---|---|---|
//! | user text `[Request interrupted by user…]`, or a rejected tool use | canceled | interrupted by the user / tool use rejected |
//! | assistant with `isApiErrorMessage` | failed | the error text |
//! | assistant `tool_use` of `AskUserQuestion` / `ExitPlanMode`, unanswered | blocked | waiting for your answer / plan approval |
//! | any other unanswered `tool_use`, no progress since, quiet ≥ 5 s, permission mode not `bypassPermissions` | blocked | waiting for permission: TOOL |
//! | `system/stop_hook_summary` or `system/turn_duration` after the answer, or `stop_reason` `end_turn`/`stop_sequence`/`max_tokens`/`refusal` with no pending tool | success | |
//! | assistant text with no `stop_reason` (2.x writes none), quiet ≥ 10 s | success | |
//! | a prompt, a tool result, progress, an API retry, or an answer still streaming | working | retrying after an API error, when so |
//! | an open turn quiet for 30 min | failed | no activity for 30 minutes |
//!
//! Time-based rows are evaluated at `now`, so a silent session moves on without a new line.

use super::convo::{
    ABANDONED_AFTER_MS, BLOCKED_AFTER_MS, Conversation, ConversationFold, CostSum, LiveState,
    QUIET_DONE_MS, set_if_changed,
};
use super::lenient::{BorrowedStr, LazyStr, string};
use super::transcript::{say, tool};
use crate::prices::Prices;
use agentd_wire::{Millis, Status, Usage};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::marker::PhantomData;

/// How many recent responses are remembered for de-duplication: the lines of one response are
/// written together, so a short memory is enough and the fold stays small.
const RECENT_RESPONSES: usize = 64;
/// Titles and details are cut to this many characters.
const TEXT_CHARS: usize = 200;

/// What the last meaningful main-chain line was.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
enum Last {
    /// Nothing yet.
    #[default]
    Nothing,
    /// A typed prompt or a tool result: the agent is on it.
    Input,
    /// The assistant wrote text; `done` when its `stop_reason` ends the turn.
    Answer { done: bool },
    /// A turn-end marker (`stop_hook_summary`, `turn_duration`).
    TurnEnd,
    /// The user interrupted or rejected a tool use.
    Canceled(String),
    /// The API failed and the turn ended.
    ApiError(String),
    /// An API call failed and is being retried.
    Retrying(String),
}

/// A response counted in the totals, remembered to take back a smaller snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Response {
    key: u64,
    model: String,
    usage: Usage,
}

/// The folded state of one transcript file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClaudeFold {
    session_id: Option<String>,
    cwd: Option<String>,
    model: Option<String>,
    created_at: Option<Millis>,
    updated_at: Option<Millis>,
    custom_title: Option<String>,
    ai_title: Option<String>,
    summary: Option<String>,
    first_prompt: Option<String>,
    last: Last,
    /// Unanswered tool calls of the main chain: (tool_use id, tool name).
    pending: Vec<(String, String)>,
    /// A progress line arrived after the newest pending call: the tool is running.
    progress_since_call: bool,
    /// When the last main-chain line (progress included) was written.
    last_main: Option<Millis>,
    permission_mode: Option<String>,
    usage: Usage,
    cost: CostSum,
    /// Oldest first. A deque, so that a full one drops its oldest without shifting the rest
    /// (it is full in most conversations, and a response comes every few lines).
    recent: VecDeque<Response>,
    /// Set when this file is the live registry (`sessions/<pid>.json`), not a transcript.
    registry: Option<Registry>,
}

/// Claude Code's live-session registry file: one per running CLI, removed when it exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Registry {
    pid: u32,
    started_at: Millis,
    status: Status,
    detail: Option<String>,
}

impl ClaudeFold {
    /// Reads a `sessions/<pid>.json` registry file (`{pid, sessionId, startedAt, status,
    /// waitingFor, …}`). Builds that write it without `status` say nothing about status.
    pub fn from_registry(bytes: &[u8]) -> Result<ClaudeFold, String> {
        #[derive(Deserialize)]
        struct File {
            pid: u32,
            #[serde(rename = "sessionId")]
            session_id: String,
            #[serde(rename = "startedAt")]
            started_at: i64,
            status: Option<String>,
            #[serde(rename = "waitingFor")]
            waiting_for: Option<String>,
        }
        let f: File = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a Claude Code session registry file: {e}"))?;
        let (status, detail) = match f.status.as_deref() {
            Some("busy") => (Status::Working, None),
            Some("idle") => (Status::Success, None),
            Some("waiting") => (
                Status::Blocked,
                Some(match f.waiting_for.as_deref() {
                    Some("permission prompt") => "waiting for permission".to_owned(),
                    Some("input needed") => "waiting for your input".to_owned(),
                    Some(other) => format!("waiting: {}", cut(other)),
                    None => "waiting for you".to_owned(),
                }),
            ),
            _ => {
                return Ok(ClaudeFold {
                    session_id: Some(f.session_id),
                    ..ClaudeFold::default()
                });
            }
        };
        Ok(ClaudeFold {
            session_id: Some(f.session_id),
            registry: Some(Registry {
                pid: f.pid,
                started_at: Millis(f.started_at),
                status,
                detail,
            }),
            ..ClaudeFold::default()
        })
    }
}

fn cut(text: &str) -> String {
    let line = text.trim();
    let line = line.lines().next().unwrap_or("").trim();
    if line.chars().count() > TEXT_CHARS {
        let mut s: String = line.chars().take(TEXT_CHARS - 1).collect();
        s.push('…');
        s
    } else {
        line.to_owned()
    }
}

/// One transcript line: only the fields the fold reads are decoded; the rest (tool inputs and
/// results, thinking, file snapshots) is skipped without being built, which is most of a
/// transcript's bytes.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Line<'a> {
    #[serde(rename = "type", borrow, deserialize_with = "super::lenient::opt_str")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "super::lenient::opt_str")]
    subtype: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "super::lenient::opt_str")]
    timestamp: Option<Cow<'a, str>>,
    #[serde(
        rename = "sessionId",
        borrow,
        deserialize_with = "super::lenient::opt_str"
    )]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "super::lenient::opt_str")]
    cwd: Option<Cow<'a, str>>,
    #[serde(rename = "isSidechain")]
    sidechain: Option<bool>,
    #[serde(rename = "isMeta")]
    meta: Option<bool>,
    #[serde(rename = "isCompactSummary")]
    compact_summary: Option<bool>,
    #[serde(rename = "isApiErrorMessage")]
    api_error: Option<bool>,
    #[serde(
        rename = "permissionMode",
        borrow,
        deserialize_with = "super::lenient::opt_str"
    )]
    permission_mode: Option<Cow<'a, str>>,
    #[serde(
        rename = "requestId",
        borrow,
        deserialize_with = "super::lenient::opt_str"
    )]
    request_id: Option<Cow<'a, str>>,
    /// Only its string form matters ("User rejected tool use"); objects are skipped.
    #[serde(rename = "toolUseResult")]
    #[serde(borrow)]
    tool_use_result: Text<'a>,
    #[serde(
        rename = "customTitle",
        borrow,
        deserialize_with = "super::lenient::opt_str"
    )]
    custom_title: Option<Cow<'a, str>>,
    #[serde(
        rename = "aiTitle",
        borrow,
        deserialize_with = "super::lenient::opt_str"
    )]
    ai_title: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "super::lenient::opt_str")]
    summary: Option<Cow<'a, str>>,
    /// `system/api_error`: `{message}`; an API error assistant line: a short code.
    #[serde(borrow)]
    error: Text<'a>,
    #[serde(borrow)]
    message: Option<Message<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Message<'a> {
    #[serde(borrow, deserialize_with = "super::lenient::opt_str")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "super::lenient::opt_str")]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "super::lenient::opt_str")]
    stop_reason: Option<Cow<'a, str>>,
    usage: Option<RawUsage>,
    #[serde(borrow)]
    content: Content<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

/// A message's content: a plain string, or blocks.
#[derive(Default)]
enum Content<'a> {
    #[default]
    None,
    Text(Cow<'a, str>),
    Blocks(Vec<Block<'a>>),
}

/// One content block, reduced to what status and titles need.
#[derive(Default)]
struct Block<'a> {
    kind: BlockKind,
    /// `text` blocks: the text, decoded only where it is read (a user's prompt, an API error,
    /// the transcript): an answer's text is most of what a fold would otherwise copy.
    text: LazyStr<'a>,
    /// `tool_use` blocks: the tool's name.
    name: Option<Cow<'a, str>>,
    /// `tool_use`: its id; `tool_result`: the id it answers.
    id: Option<Cow<'a, str>>,
}

#[derive(Default, PartialEq)]
enum BlockKind {
    Text,
    Thinking,
    ToolUse,
    ToolResult,
    #[default]
    Other,
}

/// A value read only when it is a string (or an object's `message` string): anything else is
/// skipped unbuilt.
#[derive(Default)]
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'a>, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut found = None;
                while let Some(k) = m.next_key::<BorrowedStr<'de>>()? {
                    if k.0 == "message" {
                        found = string(&mut m)?;
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Text(found))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Content<'a>, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Content<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of content blocks")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                let mut blocks = Vec::new();
                while let Some(b) = s.next_element::<BlockSeed<'de>>()? {
                    blocks.push(b.0);
                }
                Ok(Content::Blocks(blocks))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Content::None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Reads one block; anything that is not an object is an `Other` block.
struct BlockSeed<'a>(Block<'a>);

impl<'de> Deserialize<'de> for BlockSeed<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<BlockSeed<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BlockSeed<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a content block")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut b = Block::default();
                let (mut text, mut name) = (LazyStr::default(), None);
                while let Some(k) = m.next_key::<BorrowedStr<'de>>()? {
                    match k.0.as_ref() {
                        "type" => {
                            let t: BorrowedStr<'de> = m.next_value()?;
                            b.kind = match t.0.as_ref() {
                                "text" => BlockKind::Text,
                                "thinking" | "redacted_thinking" => BlockKind::Thinking,
                                "tool_use" => BlockKind::ToolUse,
                                "tool_result" => BlockKind::ToolResult,
                                _ => BlockKind::Other,
                            };
                        }
                        "text" => text = m.next_value()?,
                        "name" => name = string(&mut m)?,
                        "id" | "tool_use_id" => b.id = string(&mut m)?,
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if b.kind == BlockKind::ToolUse {
                    b.name = name;
                } else {
                    b.text = text;
                }
                Ok(BlockSeed(b))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(BlockSeed(Block::default()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(BlockSeed(Block::default()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(BlockSeed(Block::default()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(BlockSeed(Block::default()))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(BlockSeed(Block::default()))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(BlockSeed(Block::default()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(BlockSeed(Block::default()))
            }
        }
        d.deserialize_any(V)
    }
}

/// FNV-1a of the response key.
fn key_hash(message_id: &str, request_id: &str) -> u64 {
    message_id
        .bytes()
        .chain([0])
        .chain(request_id.bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The typed text of a user message (not tool results), borrowed unless it is in several
/// blocks (joined with newlines).
fn user_text<'c>(content: &'c Content) -> Option<Cow<'c, str>> {
    match content {
        Content::Text(s) => Some(Cow::Borrowed(s)),
        Content::Blocks(blocks) => {
            let mut texts = blocks
                .iter()
                .filter(|b| b.kind == BlockKind::Text)
                .filter_map(|b| b.text.get());
            let first = texts.next()?;
            match texts.next() {
                None => Some(first),
                Some(second) => {
                    let mut joined = [first, second].join("\n");
                    for more in texts {
                        joined.push('\n');
                        joined.push_str(&more);
                    }
                    Some(Cow::Owned(joined))
                }
            }
        }
        Content::None => None,
    }
}

/// Whether a typed text is a real prompt (a title candidate) rather than a wrapper.
fn is_real_prompt(text: &str) -> bool {
    let t = text.trim_start();
    !t.is_empty()
        && ![
            "<command-name>",
            "<command-message>",
            "<local-command-stdout>",
            "<local-command-stderr>",
            "Caveat:",
            "[Request interrupted",
            "<system-reminder>",
        ]
        .iter()
        .any(|p| t.starts_with(p))
}

impl ClaudeFold {
    fn touch(&mut self, ts: Option<Millis>, main: bool) {
        if let Some(ts) = ts {
            if self.created_at.is_none_or(|c| ts < c) {
                self.created_at = Some(ts);
            }
            if self.updated_at.is_none_or(|u| ts > u) {
                self.updated_at = Some(ts);
            }
            if main && self.last_main.is_none_or(|u| ts > u) {
                self.last_main = Some(ts);
            }
        }
    }

    fn count_usage(&mut self, request_id: Option<&str>, message: &Message, prices: &Prices) {
        let Some(u) = &message.usage else {
            return;
        };
        let model = message.model.as_deref().unwrap_or("");
        if model == "<synthetic>" {
            return;
        }
        let usage = Usage {
            input_tokens: u.input_tokens.unwrap_or(0),
            output_tokens: u.output_tokens.unwrap_or(0),
            cache_read_tokens: u.cache_read_input_tokens.unwrap_or(0),
            cache_write_tokens: u.cache_creation_input_tokens.unwrap_or(0),
        };
        let key = message
            .id
            .as_deref()
            .map(|m| key_hash(m, request_id.unwrap_or("")));
        if let Some(key) = key
            && let Some(i) = self.recent.iter().position(|r| r.key == key)
        {
            let old = &self.recent[i];
            let total = |u: &Usage| {
                u.input_tokens
                    .saturating_add(u.output_tokens)
                    .saturating_add(u.cache_read_tokens)
                    .saturating_add(u.cache_write_tokens)
            };
            if total(&usage) <= total(&old.usage) {
                return; // an earlier, smaller snapshot of a response already counted
            }
            let Some(old) = self.recent.remove(i) else {
                return;
            };
            self.usage.input_tokens = self
                .usage
                .input_tokens
                .saturating_sub(old.usage.input_tokens);
            self.usage.output_tokens = self
                .usage
                .output_tokens
                .saturating_sub(old.usage.output_tokens);
            self.usage.cache_read_tokens = self
                .usage
                .cache_read_tokens
                .saturating_sub(old.usage.cache_read_tokens);
            self.usage.cache_write_tokens = self
                .usage
                .cache_write_tokens
                .saturating_sub(old.usage.cache_write_tokens);
            self.cost.add(prices, &old.model, &old.usage, -1.0);
        }
        self.usage.add(&usage);
        self.cost.add(prices, model, &usage, 1.0);
        if let Some(key) = key {
            // The dropped oldest entry's string is reused: a full memory allocates nothing.
            let mut name = if self.recent.len() >= RECENT_RESPONSES {
                self.recent.pop_front().map(|r| r.model).unwrap_or_default()
            } else {
                String::new()
            };
            name.clear();
            name.push_str(model);
            self.recent.push_back(Response {
                key,
                model: name,
                usage,
            });
        }
    }

    fn on_user(&mut self, line: &Line) {
        if let Some(mode) = &line.permission_mode {
            set_if_changed(&mut self.permission_mode, mode);
        }
        let meta = line.meta == Some(true) || line.compact_summary == Some(true);
        let Some(message) = &line.message else {
            return;
        };
        if line.tool_use_result.0.as_deref() == Some("User rejected tool use") {
            if let Content::Blocks(blocks) = &message.content {
                for b in blocks.iter().filter(|b| b.kind == BlockKind::ToolResult) {
                    self.pending
                        .retain(|(pid, _)| Some(pid.as_str()) != b.id.as_deref());
                }
            }
            self.last = Last::Canceled("tool use rejected by the user".into());
            return;
        }
        // Tool results answer pending calls.
        let mut answered = false;
        if let Content::Blocks(blocks) = &message.content {
            for b in blocks.iter().filter(|b| b.kind == BlockKind::ToolResult) {
                answered = true;
                if let Some(id) = &b.id {
                    self.pending.retain(|(pid, _)| pid != id);
                }
            }
        }
        if answered {
            self.last = Last::Input;
            return;
        }
        let Some(text) = user_text(&message.content) else {
            return;
        };
        if text
            .trim_start()
            .starts_with("[Request interrupted by user")
        {
            self.pending.clear();
            self.last = Last::Canceled("interrupted by the user".into());
            return;
        }
        if meta {
            return;
        }
        if self.first_prompt.is_none() && is_real_prompt(&text) {
            self.first_prompt = Some(cut(&text));
        }
        self.last = Last::Input;
    }

    fn on_assistant(&mut self, line: &Line, message: &Message) {
        if line.api_error == Some(true) {
            let text = user_text(&message.content)
                .map(|t| cut(&t))
                .unwrap_or_else(|| "API error".into());
            self.pending.clear();
            self.last = Last::ApiError(text);
            return;
        }
        if let Some(model) = message.model.as_deref().filter(|m| *m != "<synthetic>") {
            set_if_changed(&mut self.model, model);
        }
        let stop = message.stop_reason.as_deref();
        let mut wrote_text = false;
        if let Content::Blocks(blocks) = &message.content {
            for b in blocks {
                match b.kind {
                    BlockKind::ToolUse => {
                        let id = b.id.clone().unwrap_or_default();
                        let name = b.name.clone().unwrap_or_else(|| "a tool".into());
                        if !self.pending.iter().any(|(pid, _)| *pid == id) {
                            self.pending.push((id.into_owned(), name.into_owned()));
                        }
                        self.progress_since_call = false;
                    }
                    BlockKind::Text | BlockKind::Thinking => wrote_text = true,
                    _ => {}
                }
            }
        }
        if wrote_text || stop.is_some() {
            let done = matches!(
                stop,
                Some("end_turn" | "stop_sequence" | "max_tokens" | "refusal")
            );
            self.last = Last::Answer { done };
        }
    }

    fn on_system(&mut self, line: &Line) {
        match line.subtype.as_deref() {
            Some("stop_hook_summary" | "turn_duration") => {
                self.last = Last::TurnEnd;
            }
            Some("api_error") => {
                let detail = line
                    .error
                    .0
                    .as_deref()
                    .map(cut)
                    .unwrap_or_else(|| "API error".into());
                self.last = Last::Retrying(format!("retrying after an API error: {detail}"));
            }
            _ => {}
        }
    }
}

impl ConversationFold for ClaudeFold {
    fn apply(&mut self, bytes: &[u8], prices: &Prices) -> Result<(), String> {
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err("not a JSON object".into());
        }
        let line: Line =
            super::lenient::from_json_bytes(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let Some(kind) = line.kind.as_deref() else {
            return Ok(()); // an object of a kind this version does not know
        };
        let ts = line
            .timestamp
            .as_deref()
            .and_then(agentd_wire::parse_rfc3339_ms)
            .map(Millis);
        let sidechain = line.sidechain == Some(true);
        if self.session_id.is_none()
            && let Some(id) = &line.session_id
        {
            self.session_id = Some(id.to_string());
        }
        let title = |t: &Option<Cow<str>>| t.as_deref().map(cut).filter(|t| !t.is_empty());
        match kind {
            "custom-title" => {
                if let Some(t) = title(&line.custom_title) {
                    self.custom_title = Some(t);
                }
            }
            "ai-title" => {
                if let Some(t) = title(&line.ai_title) {
                    self.ai_title = Some(t);
                }
            }
            "summary" => {
                if let Some(t) = title(&line.summary) {
                    self.summary = Some(t);
                }
            }
            "user" | "assistant" | "system" | "progress" => {
                self.touch(ts, !sidechain);
                if let Some(cwd) = line.cwd.as_deref().filter(|c| !c.is_empty()) {
                    set_if_changed(&mut self.cwd, cwd);
                }
                if kind == "assistant"
                    && let Some(message) = &line.message
                {
                    self.count_usage(line.request_id.as_deref(), message, prices);
                }
                if sidechain {
                    return Ok(());
                }
                match kind {
                    "user" => self.on_user(&line),
                    "assistant" => match &line.message {
                        Some(message) => self.on_assistant(&line, message),
                        None => self.on_assistant(&line, &Message::default()),
                    },
                    "system" => self.on_system(&line),
                    _ => self.progress_since_call = true,
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn conversation(&self, now: Millis) -> Conversation {
        let quiet = self.last_main.map_or(0, |t| now.0 - t.0);
        let (status, detail) = match &self.last {
            Last::Canceled(d) => (Status::Canceled, Some(d.clone())),
            Last::ApiError(d) => (Status::Failed, Some(d.clone())),
            _ if !self.pending.is_empty() && quiet >= ABANDONED_AFTER_MS => {
                (Status::Failed, Some(super::convo::ABANDONED.into()))
            }
            _ if !self.pending.is_empty() => {
                let waiting_on = |name: &str| self.pending.iter().any(|(_, n)| n == name);
                if waiting_on("AskUserQuestion") {
                    (Status::Blocked, Some("waiting for your answer".into()))
                } else if waiting_on("ExitPlanMode") {
                    (Status::Blocked, Some("waiting for plan approval".into()))
                } else if quiet >= BLOCKED_AFTER_MS
                    && !self.progress_since_call
                    && self.permission_mode.as_deref() != Some("bypassPermissions")
                {
                    let tool = self.pending.last().map_or("a tool", |(_, n)| n.as_str());
                    (
                        Status::Blocked,
                        Some(format!("waiting for permission: {tool}")),
                    )
                } else {
                    (Status::Working, None)
                }
            }
            Last::TurnEnd | Last::Answer { done: true } => (Status::Success, None),
            Last::Answer { done: false } if quiet >= QUIET_DONE_MS => (Status::Success, None),
            Last::Nothing => (Status::Success, None),
            _ if quiet >= ABANDONED_AFTER_MS => {
                (Status::Failed, Some(super::convo::ABANDONED.into()))
            }
            Last::Retrying(d) => (Status::Working, Some(d.clone())),
            _ => (Status::Working, None),
        };
        let title = self
            .custom_title
            .clone()
            .or_else(|| self.ai_title.clone())
            .or_else(|| self.summary.clone())
            .or_else(|| self.first_prompt.clone());
        Conversation {
            session_id: self.session_id.clone(),
            title,
            cwd: self.cwd.clone(),
            model: self.model.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            status,
            status_detail: detail,
            usage: self.usage,
            cost_usd: self.cost.usd(),
            credits: None,
            live: self.registry.as_ref().map(|r| LiveState {
                pid: r.pid,
                started_at: r.started_at,
                status: r.status,
                detail: r.detail.clone(),
            }),
        }
    }
}

/// Renders one line for the transcript (see [`super::transcript`]), from the fold's own
/// decoding: what was asked (not tool results), the answer's text and the tools it used.
/// Sub-agent and meta lines are not shown (a sub-agent's transcript is its own file).
pub fn render(bytes: &[u8], out: &mut String) {
    let Ok(line) = serde_json::from_slice::<Line>(bytes) else {
        return;
    };
    if line.sidechain == Some(true) || line.meta == Some(true) {
        return;
    }
    let Some(message) = &line.message else {
        return;
    };
    match (line.kind.as_deref(), &message.content) {
        (Some("user"), Content::Blocks(blocks))
            if blocks.iter().any(|b| b.kind == BlockKind::ToolResult) => {}
        (Some("user"), content) => {
            if let Some(text) = user_text(content) {
                say(out, "you", &text);
            }
        }
        (Some("assistant"), Content::Text(text)) => say(out, "claude", text),
        (Some("assistant"), Content::Blocks(blocks)) => {
            for b in blocks {
                match b.kind {
                    BlockKind::Text => say(out, "claude", &b.text.get().unwrap_or_default()),
                    BlockKind::ToolUse => tool(out, b.name.as_deref()),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const T0: i64 = 1_795_856_400_000; // 2026-11-28T09:00:00Z

    fn ts(offset_s: i64) -> String {
        agentd_wire::format_rfc3339_ms(T0 + offset_s * 1000)
    }

    fn user(at: i64, text: &str) -> String {
        serde_json::json!({"type": "user", "timestamp": ts(at), "sessionId": "s1", "cwd": "/src/app",
            "isSidechain": false, "permissionMode": "default",
            "message": {"role": "user", "content": text}})
        .to_string()
    }

    fn assistant(at: i64, id: &str, content: Value, output: u64, stop: Option<&str>) -> String {
        serde_json::json!({"type": "assistant", "timestamp": ts(at), "sessionId": "s1", "cwd": "/src/app",
            "requestId": format!("req_{id}"), "isSidechain": false,
            "message": {"id": id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                "content": content, "stop_reason": stop,
                "usage": {"input_tokens": 10, "output_tokens": output, "cache_read_input_tokens": 1000,
                    "cache_creation_input_tokens": 200}}})
        .to_string()
    }

    fn text(t: &str) -> Value {
        serde_json::json!([{"type": "text", "text": t}])
    }

    fn tool_use(id: &str, name: &str) -> Value {
        serde_json::json!([{"type": "tool_use", "id": id, "name": name, "input": {}}])
    }

    fn tool_result(at: i64, id: &str, content: &str) -> String {
        serde_json::json!({"type": "user", "timestamp": ts(at), "sessionId": "s1", "isSidechain": false,
            "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": content}]}})
        .to_string()
    }

    fn system(at: i64, subtype: &str) -> String {
        serde_json::json!({"type": "system", "subtype": subtype, "timestamp": ts(at), "sessionId": "s1",
            "isSidechain": false})
        .to_string()
    }

    fn fold(lines: &[String]) -> ClaudeFold {
        let prices = Prices::builtin();
        let mut f = ClaudeFold::default();
        for l in lines {
            let _ = f.apply(l.as_bytes(), &prices);
        }
        f
    }

    /// Folds `lines`, looks at the conversation `quiet_s` after the last line, and compares the
    /// status and detail.
    fn check(name: &str, lines: &[String], quiet_s: i64, status: Status, detail: Option<&str>) {
        let f = fold(lines);
        let last = f.last_main.map_or(T0, |t| t.0);
        let c = f.conversation(Millis(last + quiet_s * 1000));
        assert_eq!(
            (c.status, c.status_detail.as_deref()),
            (status, detail),
            "{name}"
        );
    }

    #[test]
    fn statuses() {
        let prompt = user(0, "fix the flaky login test");
        /// Name, lines, seconds of quiet after the last line, expected status and detail.
        type Case = (&'static str, Vec<String>, i64, Status, Option<&'static str>);
        let cases: Vec<Case> = vec![
            ("prompt just typed", vec![prompt.clone()], 1, Status::Working, None),
            (
                "answer with end_turn",
                vec![prompt.clone(), assistant(2, "m1", text("done"), 50, Some("end_turn"))],
                0,
                Status::Success,
                None,
            ),
            (
                "2.x answer without stop_reason, still streaming",
                vec![prompt.clone(), assistant(2, "m1", text("looking"), 5, None)],
                3,
                Status::Working,
                None,
            ),
            (
                "2.x answer without stop_reason, quiet",
                vec![prompt.clone(), assistant(2, "m1", text("done"), 5, None)],
                11,
                Status::Success,
                None,
            ),
            (
                "stop hook summary ends the turn",
                vec![
                    prompt.clone(),
                    assistant(2, "m1", text("done"), 5, None),
                    system(3, "stop_hook_summary"),
                ],
                0,
                Status::Success,
                None,
            ),
            (
                "pending Bash, quiet: permission prompt",
                vec![prompt.clone(), assistant(2, "m1", tool_use("t1", "Bash"), 5, None)],
                6,
                Status::Blocked,
                Some("waiting for permission: Bash"),
            ),
            (
                "pending Bash, just written",
                vec![prompt.clone(), assistant(2, "m1", tool_use("t1", "Bash"), 5, None)],
                1,
                Status::Working,
                None,
            ),
            (
                "pending Bash with progress: running",
                vec![
                    prompt.clone(),
                    assistant(2, "m1", tool_use("t1", "Bash"), 5, None),
                    serde_json::json!({"type": "progress", "timestamp": ts(4), "sessionId": "s1",
                        "data": {"type": "bash_progress", "elapsedTimeSeconds": 2}, "toolUseID": "t1"})
                    .to_string(),
                ],
                20,
                Status::Working,
                None,
            ),
            (
                "AskUserQuestion waits at once",
                vec![prompt.clone(), assistant(2, "m1", tool_use("t1", "AskUserQuestion"), 5, None)],
                0,
                Status::Blocked,
                Some("waiting for your answer"),
            ),
            (
                "tool answered, agent continues",
                vec![
                    prompt.clone(),
                    assistant(2, "m1", tool_use("t1", "Bash"), 5, None),
                    tool_result(3, "t1", "ok"),
                ],
                1,
                Status::Working,
                None,
            ),
            (
                "interrupt",
                vec![prompt.clone(), user(3, "[Request interrupted by user]")],
                0,
                Status::Canceled,
                Some("interrupted by the user"),
            ),
            (
                "rejected tool use",
                vec![
                    prompt.clone(),
                    assistant(2, "m1", tool_use("t1", "Bash"), 5, None),
                    tool_result(3, "t1", "The user doesn't want to proceed with this tool use. The tool use was rejected"),
                    user(3, "[Request interrupted by user for tool use]"),
                ],
                0,
                Status::Canceled,
                Some("interrupted by the user"),
            ),
            (
                "a rejection recorded in toolUseResult alone",
                vec![
                    prompt.clone(),
                    assistant(2, "m1", tool_use("t1", "Edit"), 5, None),
                    serde_json::json!({"type": "user", "timestamp": ts(3), "sessionId": "s1",
                        "isSidechain": false, "toolUseResult": "User rejected tool use",
                        "message": {"role": "user", "content": [{"type": "tool_result",
                            "tool_use_id": "t1", "content": "rejected", "is_error": true}]}})
                    .to_string(),
                ],
                0,
                Status::Canceled,
                Some("tool use rejected by the user"),
            ),
            (
                "API error ends the turn",
                vec![
                    prompt.clone(),
                    serde_json::json!({"type": "assistant", "timestamp": ts(3), "sessionId": "s1",
                        "isApiErrorMessage": true, "error": "rate_limit",
                        "message": {"id": "x", "model": "<synthetic>", "role": "assistant",
                            "content": [{"type": "text", "text": "API Error: 529 Overloaded"}],
                            "usage": {"input_tokens": 0, "output_tokens": 0}}})
                    .to_string(),
                ],
                0,
                Status::Failed,
                Some("API Error: 529 Overloaded"),
            ),
            (
                "API retry keeps working",
                vec![
                    prompt.clone(),
                    serde_json::json!({"type": "system", "subtype": "api_error", "timestamp": ts(3),
                        "sessionId": "s1", "level": "error", "error": {"message": "overloaded"},
                        "retryAttempt": 1, "maxRetries": 10})
                    .to_string(),
                ],
                2,
                Status::Working,
                Some("retrying after an API error: overloaded"),
            ),
            (
                "abandoned mid-turn",
                vec![prompt.clone()],
                31 * 60,
                Status::Failed,
                Some("no activity for 30 minutes; the agent may have been closed"),
            ),
            (
                "sidechain lines do not decide status",
                vec![
                    prompt.clone(),
                    assistant(2, "m1", text("done"), 5, Some("end_turn")),
                    serde_json::json!({"type": "user", "timestamp": ts(3), "sessionId": "s1",
                        "isSidechain": true, "message": {"role": "user", "content": "sub task"}})
                    .to_string(),
                ],
                0,
                Status::Success,
                None,
            ),
        ];
        for (name, lines, quiet, status, detail) in cases {
            check(name, &lines, quiet, status, detail);
        }
    }

    #[test]
    fn a_streamed_response_counts_once_with_its_largest_snapshot() {
        let lines = vec![
            user(0, "hi"),
            assistant(
                1,
                "m1",
                serde_json::json!([{"type": "thinking", "thinking": "…"}]),
                3,
                None,
            ),
            assistant(1, "m1", text("hello"), 7, None),
            assistant(1, "m1", tool_use("t1", "Read"), 12, None),
            tool_result(2, "t1", "file"),
            assistant(3, "m2", text("done"), 20, Some("end_turn")),
        ];
        let c = fold(&lines).conversation(Millis(T0 + 4000));
        assert_eq!(
            c.usage,
            Usage {
                input_tokens: 20,
                output_tokens: 32,
                cache_read_tokens: 2000,
                cache_write_tokens: 400
            }
        );
        // sonnet-4-5: 20*3 + 32*15 + 2000*0.3 + 400*3.75 = 2640 micro-dollars
        assert_eq!(c.cost_usd, Some(0.00264));
        assert_eq!(c.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    }

    #[test]
    fn titles_follow_their_priority() {
        let base = vec![
            user(0, "<command-name>/model</command-name>"),
            user(1, "fix the flaky login test\nand more"),
        ];
        let c = fold(&base).conversation(Millis(T0));
        assert_eq!(c.title.as_deref(), Some("fix the flaky login test"));
        let mut more = base.clone();
        more.push(r#"{"type":"summary","summary":"Login test fix","leafUuid":"u1"}"#.into());
        assert_eq!(
            fold(&more).conversation(Millis(T0)).title.as_deref(),
            Some("Login test fix")
        );
        more.push(r#"{"type":"ai-title","aiTitle":"Fixing login","sessionId":"s1"}"#.into());
        more.push(r#"{"type":"custom-title","customTitle":"login","sessionId":"s1"}"#.into());
        more.push(r#"{"type":"ai-title","aiTitle":"Later AI title","sessionId":"s1"}"#.into());
        let c = fold(&more).conversation(Millis(T0));
        assert_eq!(c.title.as_deref(), Some("login"));
        assert_eq!(c.session_id.as_deref(), Some("s1"));
        assert_eq!(c.cwd.as_deref(), Some("/src/app"));
        assert_eq!(c.created_at, Some(Millis(T0)));
    }

    #[test]
    fn bad_lines_are_errors_and_the_fold_goes_on() {
        let prices = Prices::builtin();
        let mut f = ClaudeFold::default();
        assert!(f.apply(b"{not json", &prices).is_err());
        assert!(f.apply(b"[1,2]", &prices).is_err());
        assert!(f.apply(br#"{"no_type":1}"#, &prices).is_ok());
        assert!(f.apply(user(0, "still here").as_bytes(), &prices).is_ok());
        assert_eq!(
            f.conversation(Millis(T0)).title.as_deref(),
            Some("still here")
        );
    }

    /// Lines are checked for UTF-8 whole before they are parsed as text; one that is not UTF-8
    /// only in a field no fold reads (a tool's raw output, say) still counts, as it did when
    /// the parser checked only the strings it kept.
    #[test]
    fn a_stray_byte_in_a_field_no_fold_reads_still_counts() {
        /// `line` with the byte 0xff (never UTF-8) in place of the first `marker`.
        fn with_stray_byte(line: &str, marker: &str) -> Vec<u8> {
            let at = line.find(marker).expect("the marker is in the line");
            let mut bytes = line.as_bytes().to_vec();
            bytes.splice(at..at + marker.len(), [0xff]);
            assert!(std::str::from_utf8(&bytes).is_err());
            bytes
        }
        let prices = Prices::builtin();
        let mut f = ClaudeFold::default();
        f.apply(user(0, "hi").as_bytes(), &prices).unwrap();
        let answer = assistant(1, "m1", text("hello"), 7, Some("end_turn")).replacen(
            '{',
            r#"{"debugOutput":"raw MARK output","#,
            1,
        );
        f.apply(&with_stray_byte(&answer, "MARK"), &prices)
            .expect("the stray byte is in a field no fold reads");
        let c = f.conversation(Millis(T0 + 2000));
        assert_eq!(c.usage.output_tokens, 7);
        assert_eq!(c.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        // The same byte where a fold reads it makes the line an error, not a wrong value.
        let mut f = ClaudeFold::default();
        let bad_cwd = with_stray_byte(&user(0, "hi"), "/src/app");
        assert!(f.apply(&bad_cwd, &prices).is_err());
    }

    #[test]
    fn a_restored_fold_continues_like_one_pass() {
        let lines = vec![
            user(0, "hi"),
            assistant(1, "m1", text("a"), 3, None),
            assistant(1, "m1", text("b"), 9, None),
            assistant(2, "m2", text("c"), 4, Some("end_turn")),
        ];
        let prices = Prices::builtin();
        let mut f = ClaudeFold::default();
        for l in &lines[..2] {
            f.apply(l.as_bytes(), &prices).unwrap();
        }
        let mut f: ClaudeFold =
            crate::store::decode(&crate::store::encode(&f)).expect("round trip");
        for l in &lines[2..] {
            f.apply(l.as_bytes(), &prices).unwrap();
        }
        let now = Millis(T0 + 3000);
        assert_eq!(f.conversation(now), fold(&lines).conversation(now));
    }

    /// A block field of an unexpected type (a number where the text, name or id is) is read
    /// as nothing; it used to fail the whole line, losing its usage.
    #[test]
    fn a_block_field_of_another_type_does_not_fail_the_line() {
        let prices = Prices::builtin();
        let mut f = ClaudeFold::default();
        let odd = serde_json::json!([{"type": "text", "text": 5}, {"type": "tool_use", "id": ["x"], "name": {"n": 1}, "input": {}}]);
        f.apply(assistant(1, "m1", odd, 7, None).as_bytes(), &prices)
            .expect("an odd field is not an error");
        let c = f.conversation(Millis(T0 + 2000));
        assert_eq!(c.usage.output_tokens, 7);
    }
}
