//! Where each conversation store keeps its files, and how a file maps to a conversation.
//!
//! | store | watched under each root | main file | other files |
//! |---|---|---|---|
//! | Claude Code (`claude-code`) | `projects/`, `sessions/` | `projects/<slug>/<sessionId>.jsonl` | sub-agents: `projects/<slug>/<sessionId>/**.jsonl` (tokens add to the session); older `projects/<slug>/agent-*.jsonl` (belong to the `sessionId` inside); the live registry `sessions/<pid>.json` (its status wins while its process runs) |
//! | Codex (`codex`) | `sessions/`, `archived_sessions/` | `rollout-<ts>-<uuid>.jsonl` at any depth | |
//! | Gemini CLI (`gemini`) | `tmp/` | `tmp/<project>/chats/session-*.jsonl` (or legacy `.json`) | sub-agents: `chats/<parentSessionId>/*.jsonl` |
//!
//! The project directory names are lossy encodings of paths and are never decoded: the
//! project comes from the lines themselves (Gemini CLI: from `.project_root` beside `chats/`).

use super::claude::ClaudeFold;
use super::convo::Conversation;
use super::runlog::shell_quote;
use super::stores::{Format, has_extension};
use crate::sources::SourceKind;
use std::path::{Component, Path, PathBuf};

/// `cd DIR && PROGRAM ARGS…`, quoted for a POSIX shell.
fn resume(cwd: Option<&str>, words: &[&str]) -> Option<String> {
    let cmd: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
    Some(match cwd {
        Some(dir) => format!("cd {} && {}", shell_quote(dir), cmd.join(" ")),
        None => cmd.join(" "),
    })
}

/// The components of `path` after the last component named `dir`.
fn after(path: &Path, dir: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let i = parts.iter().rposition(|p| p == dir)?;
    Some(parts[i + 1..].to_vec())
}

fn stem(path: &Path) -> Option<String> {
    path.file_stem().map(|s| s.to_string_lossy().into_owned())
}

/// Claude Code transcripts.
pub struct ClaudeCode;

impl Format for ClaudeCode {
    type Fold = ClaudeFold;
    const KIND: SourceKind = SourceKind::ClaudeCode;

    fn watch_dirs(root: &Path) -> Vec<PathBuf> {
        // A root may name the config dir or its projects dir.
        let root = if root.file_name().is_some_and(|n| n == "projects") {
            root.parent().unwrap_or(root)
        } else {
            root
        };
        vec![root.join("projects"), root.join("sessions")]
    }

    fn is_store_file(path: &Path) -> bool {
        (has_extension(path, "jsonl") && after(path, "projects").is_some_and(|rel| rel.len() >= 2))
            || Self::is_whole_file(path)
    }

    fn is_whole_file(path: &Path) -> bool {
        // The live registry: sessions/<pid>.json, rewritten by the running CLI.
        has_extension(path, "json") && after(path, "sessions").is_some_and(|rel| rel.len() == 1)
    }

    /// A registry entry is a few hundred bytes; a megabyte is not one.
    const MAX_WHOLE_FILE: u64 = 1024 * 1024;

    fn fold_whole_file(
        bytes: &[u8],
        _prices: &crate::prices::Prices,
    ) -> Result<Self::Fold, String> {
        ClaudeFold::from_registry(bytes)
    }

    fn session_of(path: &Path, c: &Conversation) -> Option<(String, bool)> {
        if Self::is_whole_file(path) {
            return Some((c.session_id.clone()?, false));
        }
        let rel = after(path, "projects")?;
        match rel.len() {
            2 if rel[1].starts_with("agent-") => Some((c.session_id.clone()?, false)),
            2 => Some((stem(path)?, true)),
            n if n > 2 => Some((rel[1].clone(), false)),
            _ => None,
        }
    }

    fn resume_command(session: &str, cwd: Option<&str>) -> Option<String> {
        resume(cwd, &["claude", "--resume", session])
    }
}

/// Codex rollouts.
pub struct Codex;

impl Format for Codex {
    type Fold = super::codex::CodexFold;
    const KIND: SourceKind = SourceKind::Codex;

    fn watch_dirs(root: &Path) -> Vec<PathBuf> {
        vec![root.join("sessions"), root.join("archived_sessions")]
    }

    fn is_store_file(path: &Path) -> bool {
        // Compressed rollouts (`.jsonl.zst`) are not read: Codex keeps the plain file while a
        // session is live, and compresses only old ones.
        has_extension(path, "jsonl")
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("rollout-"))
    }

    fn session_of(path: &Path, c: &Conversation) -> Option<(String, bool)> {
        // The uuid ends the file name: rollout-YYYY-MM-DDThh-mm-ss-<uuid>.jsonl
        let from_name = stem(path).and_then(|s| {
            let tail = s.get(s.len().checked_sub(36)?..)?;
            (tail.len() == 36 && tail.chars().filter(|c| *c == '-').count() == 4)
                .then(|| tail.to_owned())
        });
        Some((c.session_id.clone().or(from_name)?, true))
    }

    fn resume_command(session: &str, cwd: Option<&str>) -> Option<String> {
        resume(cwd, &["codex", "resume", session])
    }
}

/// Gemini CLI chat recordings.
pub struct Gemini;

impl Format for Gemini {
    type Fold = super::gemini::GeminiFold;
    const KIND: SourceKind = SourceKind::Gemini;

    fn watch_dirs(root: &Path) -> Vec<PathBuf> {
        vec![root.join("tmp")]
    }

    fn is_store_file(path: &Path) -> bool {
        let Some(rel) = after(path, "chats") else {
            return false;
        };
        match rel.len() {
            1 => {
                (has_extension(path, "jsonl") || has_extension(path, "json"))
                    && rel[0].starts_with("session-")
            }
            2 => has_extension(path, "jsonl"),
            _ => false,
        }
    }

    fn session_of(path: &Path, c: &Conversation) -> Option<(String, bool)> {
        let rel = after(path, "chats")?;
        if rel.len() == 2 {
            return Some((rel[0].clone(), false));
        }
        Some((c.session_id.clone()?, true))
    }

    fn resume_command(session: &str, cwd: Option<&str>) -> Option<String> {
        resume(cwd, &["gemini", "--resume", session])
    }

    fn project_of(path: &Path) -> Option<String> {
        // tmp/<project>/chats/<file>: the project's root is recorded beside `chats/`.
        let project_dir = path.ancestors().find(|a| a.ends_with("chats"))?.parent()?;
        let root = crate::fsread::read_text(
            &project_dir.join(".project_root"),
            crate::fsread::Trust::Found,
            64 * 1024,
        )
        .ok()?;
        let root = root.trim();
        (!root.is_empty()).then(|| root.to_owned())
    }

    fn is_whole_file(path: &Path) -> bool {
        has_extension(path, "json")
    }

    fn fold_whole_file(bytes: &[u8], prices: &crate::prices::Prices) -> Result<Self::Fold, String> {
        super::gemini::fold_legacy_json(bytes, prices)
    }
}
