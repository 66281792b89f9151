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

/// Sets `slot` to `value`, allocating only when it changes: transcripts repeat their model,
/// working dir and modes on every turn or line.
pub fn set_if_changed(slot: &mut Option<String>, value: &str) {
    if slot.as_deref() != Some(value) {
        *slot = Some(value.to_owned());
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

/// Everything besides its main file that decides a conversation's item: the conversation's
/// other files and the signals about it.
pub struct Signals<'a> {
    /// The main file's status as of its last line: a status that differs now was moved on by
    /// a quiet-time rule, and is a guess.
    pub at_last_line: Status,
    /// The conversation's other files (sub-agents): their tokens and cost add to it.
    pub parts: &'a [Conversation],
    /// The agent's live registry, when its process is running.
    pub live: Option<&'a LiveState>,
    /// The latest hook signal about the conversation.
    pub hook: Option<&'a super::HookSignal>,
    pub now: Millis,
}

/// The conversation its main file `main` and `signals` make, and where its status came from.
///
/// Precedence, highest first: a settled hook signal no older than the transcript's last line
/// (and not older than [`ABANDONED_AFTER_MS`]; an `if_active` one only over an open turn); the
/// live registry (blocked always, working over anything else, success over an open turn, and
/// confirming the transcript when it agrees); the transcript; a quiet-time rule (`inferred`).
/// Tokens add up over all files; cost too, unless a part's cost is unknown (then the total is).
pub fn merge(mut c: Conversation, s: Signals<'_>) -> (Conversation, agentd_wire::StatusSource) {
    use agentd_wire::StatusSource;
    let mut source = if s.at_last_line == c.status {
        StatusSource::Transcript
    } else {
        StatusSource::Inferred
    };
    if let Some(live) = s.live {
        match live.status {
            Status::Blocked => {
                c.status = Status::Blocked;
                c.status_detail = live.detail.clone();
                source = StatusSource::Registry;
            }
            Status::Working if c.status != Status::Working => {
                c.status = Status::Working;
                c.status_detail = None;
                source = StatusSource::Registry;
            }
            Status::Success if c.status.is_active() => {
                c.status = Status::Success;
                c.status_detail = None;
                source = StatusSource::Registry;
            }
            // The registry agrees with what the transcript shows: it confirms it.
            st if st == c.status => source = StatusSource::Registry,
            _ => {}
        }
    }
    if !s.parts.is_empty() {
        let mut usage = Usage::default();
        let mut cost = Some(0.0);
        for p in s.parts {
            usage.add(&p.usage);
            cost = match (cost, p.cost_usd) {
                (Some(a), Some(b)) => Some(a + b),
                // A part that used nothing costs nothing, priced or not.
                (Some(a), None) if p.usage == Usage::default() => Some(a),
                _ => None,
            };
        }
        c.usage.add(&usage);
        c.cost_usd = match (c.cost_usd, cost) {
            (Some(a), Some(b)) => Some(((a + b) * 1e6).round() / 1e6),
            (None, Some(b)) if b > 0.0 => Some(b),
            (a, _) => a.filter(|_| cost.is_some()),
        };
    }
    // A hook is the agent saying exactly what it does; it holds until the transcript has
    // something newer to say.
    if let Some(h) = s.hook
        && let Some(status) = h.status
        && (!h.if_active || c.status.is_active())
        && s.now.0 >= h.at.0.saturating_add(h.settle_ms)
        && c.updated_at.is_none_or(|u| u <= h.at)
        && s.now.0.saturating_sub(h.at.0) < ABANDONED_AFTER_MS
    {
        c.status = status;
        c.status_detail = h.detail.clone();
        source = StatusSource::Hook;
    }
    (c, source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::HookSignal;
    use agentd_wire::StatusSource;

    fn convo(status: Status, updated: i64, usage: u64, cost: Option<f64>) -> Conversation {
        Conversation {
            status,
            updated_at: Some(Millis(updated)),
            usage: Usage {
                input_tokens: usage,
                ..Usage::default()
            },
            cost_usd: cost,
            ..Conversation::default()
        }
    }

    fn hook(status: Status, at: i64) -> HookSignal {
        HookSignal {
            session_id: "s".into(),
            status: Some(status),
            detail: Some("from the hook".into()),
            if_active: false,
            settle_ms: 0,
            at: Millis(at),
        }
    }

    fn live(status: Status) -> LiveState {
        LiveState {
            pid: 1,
            started_at: Millis(0),
            status,
            detail: Some("from the registry".into()),
        }
    }

    /// Merges `main` with `parts`, `live` and `hook` at time 10 s; (status, detail, source).
    fn check(
        main: Conversation,
        at_last_line: Status,
        parts: &[Conversation],
        live: Option<&LiveState>,
        hook: Option<&HookSignal>,
    ) -> (Status, Option<String>, StatusSource, Option<f64>, u64) {
        let (c, source) = merge(
            main,
            Signals {
                at_last_line,
                parts,
                live,
                hook,
                now: Millis(10_000),
            },
        );
        (
            c.status,
            c.status_detail,
            source,
            c.cost_usd,
            c.usage.input_tokens,
        )
    }

    #[test]
    fn status_precedence_is_hook_then_registry_then_transcript_then_time() {
        use Status::*;
        let working = convo(Working, 5_000, 0, None);
        // The transcript, and time moving it on.
        assert_eq!(
            check(working.clone(), Working, &[], None, None).2,
            StatusSource::Transcript
        );
        assert_eq!(
            check(convo(Blocked, 5_000, 0, None), Working, &[], None, None).2,
            StatusSource::Inferred
        );
        // The registry: blocked always; working over a finished transcript; success only over
        // an open turn; agreeing confirms.
        let reg = check(working.clone(), Working, &[], Some(&live(Blocked)), None);
        assert_eq!(
            (reg.0, reg.1.as_deref(), reg.2),
            (Blocked, Some("from the registry"), StatusSource::Registry)
        );
        assert_eq!(
            check(
                convo(Success, 5_000, 0, None),
                Success,
                &[],
                Some(&live(Working)),
                None
            )
            .0,
            Working
        );
        assert_eq!(
            check(
                convo(Failed, 5_000, 0, None),
                Failed,
                &[],
                Some(&live(Success)),
                None
            )
            .0,
            Failed
        );
        assert_eq!(
            check(working.clone(), Working, &[], Some(&live(Success)), None).0,
            Success
        );
        assert_eq!(
            check(working.clone(), Working, &[], Some(&live(Working)), None).2,
            StatusSource::Registry
        );
        // A hook beats the registry, unless the transcript wrote after it.
        let h = hook(Blocked, 6_000);
        let got = check(
            working.clone(),
            Working,
            &[],
            Some(&live(Working)),
            Some(&h),
        );
        assert_eq!((got.0, got.2), (Blocked, StatusSource::Hook));
        let stale = hook(Blocked, 4_000);
        assert_eq!(
            check(working.clone(), Working, &[], None, Some(&stale)).0,
            Working
        );
        // Not settled yet; an idle-prompt hook over a finished turn; a hook from long ago.
        let settling = HookSignal {
            settle_ms: 5_000,
            ..hook(Blocked, 6_000)
        };
        assert_eq!(
            check(working.clone(), Working, &[], None, Some(&settling)).0,
            Working
        );
        let idle = HookSignal {
            if_active: true,
            ..hook(Success, 6_000)
        };
        assert_eq!(
            check(
                convo(Canceled, 5_000, 0, None),
                Canceled,
                &[],
                None,
                Some(&idle)
            )
            .0,
            Canceled
        );
        assert_eq!(
            check(working.clone(), Working, &[], None, Some(&idle)).0,
            Success
        );
        let old = hook(Blocked, 6_000);
        let (c, _) = merge(
            working,
            Signals {
                at_last_line: Working,
                parts: &[],
                live: None,
                hook: Some(&old),
                now: Millis(6_000 + ABANDONED_AFTER_MS),
            },
        );
        assert_eq!(c.status, Working);
    }

    #[test]
    fn parts_add_tokens_and_cost_and_an_unknown_cost_stays_unknown() {
        use Status::*;
        let main = convo(Working, 5_000, 100, Some(0.25));
        let priced = convo(Success, 5_000, 10, Some(0.125));
        let unpriced = convo(Success, 5_000, 10, None);
        let empty = convo(Success, 5_000, 0, None);
        let got = check(
            main.clone(),
            Working,
            &[priced.clone(), empty.clone()],
            None,
            None,
        );
        assert_eq!((got.3, got.4), (Some(0.375), 110));
        assert_eq!(
            check(
                main.clone(),
                Working,
                std::slice::from_ref(&unpriced),
                None,
                None
            )
            .3,
            None
        );
        assert_eq!(
            check(
                convo(Working, 5_000, 100, None),
                Working,
                std::slice::from_ref(&priced),
                None,
                None
            )
            .3,
            Some(0.125)
        );
        assert_eq!(
            check(
                convo(Working, 5_000, 0, None),
                Working,
                &[empty],
                None,
                None
            )
            .3,
            None
        );
        // Micro-dollar rounding of the sum.
        let third = convo(Success, 5_000, 1, Some(0.000_000_4));
        assert_eq!(
            check(main, Working, &[third.clone(), third], None, None).3,
            Some(0.250_001)
        );
    }
}
