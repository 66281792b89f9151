//! What every conversation-store parser produces, and the trait the store ingestor drives.
//!
//! A parser is a *fold*: it takes a file's lines one at a time (never failing the file on one
//! bad line) and keeps just enough state to say, at any moment, what the conversation is:
//! its title, project, model, tokens, cost and status. The fold is serialized into the file's
//! cursor after each read, so a restart continues from where it stopped without re-reading.
//!
//! Status can depend on time (a pending tool call with no progress for a few seconds means the
//! agent is waiting for the user), so [`ConversationFold::conversation`] takes `now`, and the
//! ingestor re-evaluates live conversations on a timer, not only when a file changes.

use crate::prices::Prices;
use agentd_wire::{Millis, Status, Usage};
use serde::{Serialize, de::DeserializeOwned};

/// Quiet time after which an open turn with a pending tool call, under an approval policy
/// that asks, is taken as waiting for the user (Claude Code prints Bash progress about 2 s
/// after a command starts, so a longer silence means a prompt is on screen).
pub const BLOCKED_AFTER_MS: i64 = 5_000;
/// Quiet time after which a turn whose end is not marked (Claude Code 2.x often writes no
/// `stop_reason`) is taken as finished.
pub const QUIET_DONE_MS: i64 = 10_000;
/// A conversation with an open turn and no line for this long is no longer `working`: its
/// agent was closed or killed mid-turn (the store records no exit).
pub const ABANDONED_AFTER_MS: i64 = 30 * 60_000;
/// The status detail of a conversation taken as abandoned (see [`ABANDONED_AFTER_MS`]).
pub const ABANDONED: &str = "no activity for 30 minutes; the agent may have been closed";

/// Notes a line's time (epoch ms) as a fold's first and latest times; a time no clock gives
/// (before 1970, or past [`crate::model::LATEST_MS`]) is ignored.
pub fn note_time(first: &mut Option<Millis>, last: &mut Option<Millis>, ms: i64) {
    if (0..=crate::model::LATEST_MS).contains(&ms) {
        first.get_or_insert(Millis(ms));
        *last = Some(last.map_or(Millis(ms), |l| l.max(Millis(ms))));
    }
}

/// [`note_time`] of an RFC 3339 timestamp, when there is a readable one.
pub fn note_rfc3339(first: &mut Option<Millis>, last: &mut Option<Millis>, ts: Option<&str>) {
    if let Some(ms) = ts.and_then(agentd_wire::parse_rfc3339_ms) {
        note_time(first, last, ms);
    }
}

/// One conversation as its store describes it at some moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// The session id (item id is `<harness>:<session id>`); `None` until the file says it.
    pub session_id: Option<String>,
    pub title: Option<String>,
    /// The working directory (project) of the conversation.
    pub cwd: Option<String>,
    /// The latest model used.
    pub model: Option<String>,
    /// The first timestamp in the file.
    pub created_at: Option<Millis>,
    /// The last meaningful activity.
    pub updated_at: Option<Millis>,
    pub status: Status,
    pub status_detail: Option<String>,
    /// Tokens over the whole conversation, each API response counted once.
    pub usage: Usage,
    /// `None` when any response's model has no price (tokens still counted) or none was made.
    pub cost_usd: Option<f64>,
    /// Credits the tool itself reports (GitHub Copilot's AI credits), when it does.
    pub credits: Option<f64>,
    /// What the agent's own live registry says, when it keeps one (Claude Code's
    /// `sessions/<pid>.json`): exact where the transcript can only guess. The ingestor uses it
    /// only while that process is running.
    pub live: Option<LiveState>,
}

/// A running agent's own account of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveState {
    pub pid: u32,
    /// When the process started (guards against pid reuse).
    pub started_at: Millis,
    /// `working` (busy), `blocked` (waiting on the user) or `success` (idle at the prompt).
    pub status: Status,
    pub detail: Option<String>,
}

impl Default for Conversation {
    fn default() -> Conversation {
        Conversation {
            session_id: None,
            title: None,
            cwd: None,
            model: None,
            created_at: None,
            updated_at: None,
            status: Status::Working,
            status_detail: None,
            usage: Usage::default(),
            cost_usd: None,
            credits: None,
            live: None,
        }
    }
}

/// A parser of one store format, folded line by line.
pub trait ConversationFold: Default + Serialize + DeserializeOwned + Send + 'static {
    /// Takes one complete line (without its newline). `Err` says why the line was skipped; it
    /// is counted in `/v1/health` and the fold goes on.
    fn apply(&mut self, line: &[u8], prices: &Prices) -> Result<(), String>;

    /// The conversation as of `now` (epoch ms).
    fn conversation(&self, now: Millis) -> Conversation;
}

/// Titles and details are cut to this many characters.
pub const TITLE_CHARS: usize = 200;

/// `s` trimmed and cut to [`TITLE_CHARS`], ending with "…" when cut.
pub fn cut_title(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > TITLE_CHARS {
        format!("{}…", s.chars().take(TITLE_CHARS - 1).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// Sums cost over responses: stays `None` once a response of an unknown model is seen, so a
/// partial sum is never shown as the total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct CostSum {
    /// Micro-dollars so far (exact to add and subtract; f64 is kept for display only).
    pub micros: f64,
    /// A response had a model without a price.
    pub unknown: bool,
    /// At least one response was priced.
    pub any: bool,
}

impl CostSum {
    /// Adds (or with `sign` -1.0, takes back) the cost of one response.
    pub fn add(&mut self, prices: &Prices, model: &str, usage: &Usage, sign: f64) {
        match prices.cost(model, usage) {
            Some(c) => {
                self.micros += sign * c * 1e6;
                self.any = true;
            }
            None if usage != &Usage::default() => self.unknown = true,
            None => {}
        }
    }

    /// The total in USD, or `None` when it is unknown.
    pub fn usd(&self) -> Option<f64> {
        (self.any && !self.unknown).then(|| (self.micros.max(0.0)).round() / 1e6)
    }
}
