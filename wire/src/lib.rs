//! Wire types of the agentd API, shared by the daemon and every Rust client.
//!
//! Everything here is part of the external contract (shared/CONTRACT.md, sections 3 and 4):
//! field names, enum spellings and timestamp formats are fixed. Adding fields is fine; renaming
//! or removing them is not. The types carry no behaviour beyond (de)serialisation and the small
//! helpers a client needs to display them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub mod paths;

/// How agentd asks a run's writer to stop (`POST /v1/agents/{id}/cancel` on a CLI run).
///
/// agentd signals the run log's `pid` with `sigqueue(2)`, and the queued value tells a writer
/// that understands it (`agentctl run`) that the signal comes from agentd, so that it records
/// the run as `canceled` with [`stop::DETAIL`]. A writer that does not understand it just gets
/// the signal.
pub mod stop {
    /// Pass the signal on to the command (its process group was not signalled).
    pub const FORWARD: usize = 0x6167_6401;
    /// Only note it: agentd has signalled the command's process group (`pgid`) itself.
    pub const NOTE: usize = 0x6167_6402;
    /// The end record's `error` for a run stopped this way.
    pub const DETAIL: &str = "stopped from agentd";
}
mod time;
pub use time::{Millis, format_rfc3339_ms, parse_rfc3339_ms};

/// Whether a person drives the agent or it runs in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A conversation a person drives (Claude Code, Codex, Gemini CLI sessions).
    Interactive,
    /// A background execution: CLI runs and cloud runs.
    Run,
}

/// Defines a closed string enum with its contract spelling, parsing and listing in one place,
/// so that the API's filter parser, the store's index keys and the client agree by construction.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The contract spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        value: s.to_owned(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}

/// A string that is not one of an enum's contract spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    /// What was given.
    pub value: String,
    /// The accepted spellings.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown value {:?} (expected one of: {})",
            self.value,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownValue {}

wire_enum! {
    /// Where the work came from: the management view's source column.
    Source {
        Interactive => "interactive",
        Cli => "cli",
        Api => "api",
        Slack => "slack",
        Linear => "linear",
        Scheduled => "scheduled",
        GithubActions => "github_actions",
        Web => "web",
        Other => "other",
    }
}

wire_enum! {
    /// What the agent is doing now, or how it ended.
    Status {
        /// Queued or running.
        Working => "working",
        /// Waiting on user input or an approval.
        Blocked => "blocked",
        Canceled => "canceled",
        Failed => "failed",
        Success => "success",
    }
}

wire_enum! {
    /// Where an item's status came from: how far it can be trusted.
    StatusSource {
        /// The agent's own hook said so, as it happened.
        Hook => "hook",
        /// The agent's live session registry (Claude Code's `sessions/<pid>.json`).
        Registry => "registry",
        /// A line of the transcript said so.
        Transcript => "transcript",
        /// A run log record (or its writer's exit).
        RunLog => "run_log",
        /// The cloud API.
        CloudApi => "cloud_api",
        /// A quiet-time rule: e.g. a tool call with no progress for 5 s is taken as waiting
        /// for permission. A guess, however good.
        Inferred => "inferred",
    }
}

impl Status {
    /// `working` and `blocked` are active; the other three are final.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Working | Status::Blocked)
    }

    /// The management view's icon for this status.
    pub fn icon(self) -> &'static str {
        match self {
            Status::Working => "⚙",
            Status::Blocked => "🟨",
            Status::Canceled => "⬜",
            Status::Failed => "🔺",
            Status::Success => "✅",
        }
    }
}

/// Token counts, summed over the item's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Adds another usage record to this one, saturating rather than wrapping.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cache_read_tokens = self
            .cache_read_tokens
            .saturating_add(other.cache_read_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(other.cache_write_tokens);
    }
}

/// Where a click on the row goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Open {
    /// A cloud run's shared session.
    pub url: Option<String>,
    /// A command that resumes or shows the item.
    pub command: Option<String>,
}

/// One row of the management view (contract section 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub kind: Kind,
    pub source: Source,
    pub status: Status,
    pub status_detail: Option<String>,
    pub harness: Option<String>,
    pub title: Option<String>,
    pub creator: Option<String>,
    pub mine: bool,
    pub project: Option<String>,
    pub model: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub finished_at: Option<Millis>,
    pub duration_ms: Option<u64>,
    pub credits: Option<f64>,
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default)]
    pub open: Open,
    /// Where `status` came from; `null` for items stored before agentd recorded it.
    #[serde(default)]
    pub status_source: Option<StatusSource>,
    /// Total time spent `blocked` (waiting on you), including the current wait.
    #[serde(default)]
    pub blocked_ms: u64,
    /// When the current wait began, while `blocked`.
    #[serde(default)]
    pub blocked_since: Option<Millis>,
}

/// `GET /v1/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentsPage {
    pub items: Vec<Item>,
    pub next_cursor: Option<String>,
}

/// Today's totals in `GET /v1/summary`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Today {
    pub success: u64,
    pub failed: u64,
    pub canceled: u64,
    pub credits: f64,
    pub cost_usd: f64,
    /// Time those items spent blocked (waiting on you).
    #[serde(default)]
    pub blocked_ms: u64,
}

/// `GET /v1/summary`: what a shell prompt shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub working: u64,
    pub blocked: u64,
    /// `working + blocked`.
    pub active: u64,
    /// Items whose last update fell on today's local date, by their current status.
    pub today: Today,
    /// When the longest current wait began (the oldest blocked agent's `blocked_since`).
    #[serde(default)]
    pub waiting_since: Option<Millis>,
}

/// One ingest source in `GET /v1/health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceHealth {
    pub name: String,
    pub roots: Vec<String>,
    pub files: u64,
    pub items: u64,
    /// Lines or files skipped as malformed, unreadable or oversized, since the database was made.
    pub errors: u64,
    pub last_error: Option<String>,
    /// Whether the initial scan (backfill) of the roots has finished.
    #[serde(default)]
    pub scan_done: bool,
    /// Files the latest scan found: while it runs, `files` of `scan_total` are read.
    #[serde(default)]
    pub scan_total: u64,
}

/// The TCP listener in `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpInfo {
    pub addr: String,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub pid: u32,
    pub started_at: Millis,
    pub items: u64,
    pub http: Option<HttpInfo>,
    pub sources: Vec<SourceHealth>,
    /// The last failed database commit, until a commit succeeds (a full disk, say).
    #[serde(default)]
    pub store_error: Option<String>,
}

/// `POST /v1/agents/{id}/cancel`'s answer: `{"cancel":"requested"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelAnswer {
    pub cancel: String,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// `{"code","message"}` inside [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found` or `internal`.
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_their_contract_spelling() {
        for s in Source::ALL {
            assert_eq!(s.as_str().parse::<Source>().unwrap(), *s);
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), *s);
        }
        let err = "done".parse::<Status>().unwrap_err();
        assert!(
            err.to_string()
                .contains("working, blocked, canceled, failed, success")
        );
    }

    #[test]
    fn item_serialises_with_contract_field_names() {
        let item = Item {
            id: "cli:abc".into(),
            kind: Kind::Run,
            source: Source::Cli,
            status: Status::Blocked,
            status_detail: Some("waiting".into()),
            harness: Some("claude-code".into()),
            title: None,
            creator: Some("alice".into()),
            mine: true,
            project: None,
            model: None,
            created_at: Millis(1_795_857_243_120),
            updated_at: Millis(1_795_857_641_002),
            finished_at: None,
            duration_ms: None,
            credits: None,
            cost_usd: Some(0.5),
            usage: Usage::default(),
            open: Open {
                url: None,
                command: Some("agentctl logs cli:abc".into()),
            },
            status_source: Some(StatusSource::RunLog),
            blocked_ms: 0,
            blocked_since: None,
        };
        let v = serde_json::to_value(&item).unwrap();
        assert_eq!(v["created_at"], "2026-11-28T09:14:03.120Z");
        assert_eq!(v["status_source"], "run_log");
        assert_eq!(v["kind"], "run");
        assert_eq!(v["finished_at"], serde_json::Value::Null);
        assert_eq!(v["usage"]["cache_write_tokens"], 0);
        let back: Item = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, item);
        // An item from before `status_source` existed still reads.
        let mut old = v;
        old.as_object_mut().unwrap().remove("status_source");
        let back: Item = serde_json::from_value(old).unwrap();
        assert_eq!(back.status_source, None);
    }
}
