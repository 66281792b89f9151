//! The registry of sources: every kind of thing agentd follows is one [`SourceKind`], and
//! everything else (the API, the store, the log route, stopping) asks it rather than matching
//! source names or id prefixes as strings.
//!
//! | kind | name in `/v1/health` and cursor keys | item id scheme | what it reads |
//! |---|---|---|---|
//! | `Runs` | `runs` | `cli` | run logs (`<state>/runs/*.jsonl` and configured dirs) |
//! | `ClaudeCode` | `claude-code` | `claude-code` | Claude Code's transcripts and live registry |
//! | `Codex` | `codex` | `codex` | Codex rollouts |
//! | `Gemini` | `gemini` | `gemini` | Gemini CLI chats |
//! | `Qwen` | `qwen` | `qwen` | Qwen Code chats |
//! | `Droid` | `droid` | `droid` | Factory Droid sessions |
//! | `Copilot` | `copilot` | `copilot` | GitHub Copilot CLI session event logs |
//! | `Kimi` | `kimi` | `kimi` | kimi-cli and Kimi Code wire logs |
//! | `OpenCode` | `opencode` | `opencode` | OpenCode's SQLite database, and its older JSON tree |
//! | `Goose` | `goose` | `goose` | Goose's SQLite database |
//! | `Cloud` | `cloud` | `cloud` | Warp's Oz Agent API |
//!
//! Adding an agent CLI adds a variant here (its names), a `Format` in `ingest::formats`, and a
//! line in `lib.rs` that starts its follower.

use crate::ingest::transcript::Transcript;

/// Renders a session's log from the database it lives in (its path) and the session id.
pub type DatabaseLog = fn(&std::path::Path, &str) -> Result<String, String>;

/// One kind of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Runs,
    ClaudeCode,
    Codex,
    Gemini,
    Qwen,
    Droid,
    Copilot,
    Kimi,
    OpenCode,
    Goose,
    Cloud,
}

impl SourceKind {
    /// Every source, in the order `/v1/health` lists them.
    pub const ALL: [SourceKind; 11] = [
        SourceKind::Runs,
        SourceKind::ClaudeCode,
        SourceKind::Codex,
        SourceKind::Gemini,
        SourceKind::Qwen,
        SourceKind::Droid,
        SourceKind::Copilot,
        SourceKind::Kimi,
        SourceKind::OpenCode,
        SourceKind::Goose,
        SourceKind::Cloud,
    ];

    /// The name in `/v1/health`, in cursor keys and in error counters.
    pub const fn name(self) -> &'static str {
        match self {
            SourceKind::Runs => "runs",
            SourceKind::ClaudeCode => "claude-code",
            SourceKind::Codex => "codex",
            SourceKind::Gemini => "gemini",
            SourceKind::Qwen => "qwen",
            SourceKind::Droid => "droid",
            SourceKind::Copilot => "copilot",
            SourceKind::Kimi => "kimi",
            SourceKind::OpenCode => "opencode",
            SourceKind::Goose => "goose",
            SourceKind::Cloud => "cloud",
        }
    }

    /// The tool's name, for people.
    pub const fn title(self) -> &'static str {
        match self {
            SourceKind::Runs => "the run's writer",
            SourceKind::ClaudeCode => "Claude Code",
            SourceKind::Codex => "Codex",
            SourceKind::Gemini => "Gemini CLI",
            SourceKind::Qwen => "Qwen Code",
            SourceKind::Droid => "Factory Droid",
            SourceKind::Copilot => "GitHub Copilot CLI",
            SourceKind::Kimi => "Kimi",
            SourceKind::OpenCode => "OpenCode",
            SourceKind::Goose => "Goose",
            SourceKind::Cloud => "the cloud",
        }
    }

    /// The prefix of its items' ids (`cli:…`, `claude-code:…`).
    pub const fn id_scheme(self) -> &'static str {
        match self {
            SourceKind::Runs => "cli",
            other => other.name(),
        }
    }

    /// The source of an item, from its id.
    pub fn of_id(id: &str) -> Option<SourceKind> {
        let scheme = id.split_once(':').map(|(s, _)| s)?;
        SourceKind::ALL
            .into_iter()
            .find(|k| k.id_scheme() == scheme)
    }

    /// The source with this name (see [`SourceKind::name`]).
    pub fn from_name(name: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// How its items' logs are rendered when they are conversation transcripts (`None`: a run's
    /// output, or a cloud conversation fetched from the API).
    pub fn transcript(self) -> Option<Transcript> {
        match self {
            SourceKind::ClaudeCode => Some(Transcript::Claude),
            SourceKind::Codex => Some(Transcript::Codex),
            SourceKind::Gemini => Some(Transcript::Gemini(Default::default())),
            SourceKind::Qwen => Some(Transcript::Qwen),
            SourceKind::Droid => Some(Transcript::Droid),
            SourceKind::Copilot => Some(Transcript::Copilot),
            SourceKind::Kimi => Some(Transcript::Kimi),
            SourceKind::Runs | SourceKind::Cloud | SourceKind::OpenCode | SourceKind::Goose => None,
        }
    }

    /// How its items' logs are read when they live in a database rather than a file: a
    /// renderer from the database (the item's origin) and the session id.
    pub fn database_log(self) -> Option<DatabaseLog> {
        match self {
            SourceKind::OpenCode => Some(crate::ingest::opencode::render_log),
            SourceKind::Goose => Some(crate::ingest::goose::render_log),
            _ => None,
        }
    }

    /// Whether agentd decodes this CLI's hooks (`POST /v1/hooks/{name}`, `agentctl hook`).
    pub const fn has_hooks(self) -> bool {
        matches!(
            self,
            SourceKind::ClaudeCode
                | SourceKind::Codex
                | SourceKind::Gemini
                | SourceKind::Qwen
                | SourceKind::Droid
                | SourceKind::Copilot
        )
    }

    /// Whether a transcript file of this source may be one whole JSON document rather than
    /// lines (Gemini CLI's legacy chats).
    pub fn is_whole_document(self, path: &std::path::Path) -> bool {
        self == SourceKind::Gemini && path.extension().is_some_and(|e| e == "json")
    }
}

/// Agent CLIs recorded runs commonly name as their harness, beside the ones agentd reads.
const OTHER_HARNESSES: [&str; 10] = [
    "aider",
    "amp",
    "cline",
    "crush",
    "cursor",
    "openhands",
    "oz",
    "pi",
    "roo",
    "warp",
];

/// The harness as a metric label: a known agent CLI's name, `other` for any other text (a run
/// log's harness is free text: a label must not take unbounded values), `none` for none.
pub fn harness_label(harness: Option<&str>) -> &'static str {
    let Some(h) = harness else { return "none" };
    SourceKind::ALL
        .into_iter()
        .filter(|k| !matches!(k, SourceKind::Runs | SourceKind::Cloud))
        .map(SourceKind::name)
        .chain(OTHER_HARNESSES)
        .find(|name| *name == h)
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_schemes_round_trip() {
        for k in SourceKind::ALL {
            assert_eq!(SourceKind::from_name(k.name()), Some(k));
            assert_eq!(SourceKind::of_id(&format!("{}:x", k.id_scheme())), Some(k));
        }
        assert_eq!(SourceKind::of_id("cli:7f3a"), Some(SourceKind::Runs));
        assert_eq!(SourceKind::of_id("runs:7f3a"), None);
        assert_eq!(SourceKind::of_id("7f3a"), None);
    }

    #[test]
    fn harness_labels_are_bounded() {
        assert_eq!(harness_label(Some("claude-code")), "claude-code");
        assert_eq!(harness_label(Some("goose")), "goose");
        assert_eq!(harness_label(Some("aider")), "aider");
        assert_eq!(harness_label(Some("my own script 42")), "other");
        assert_eq!(harness_label(Some("runs")), "other");
        assert_eq!(harness_label(None), "none");
    }
}
