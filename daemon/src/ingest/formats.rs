//! Where each conversation store keeps its files, and how a file maps to a conversation.
//!
//! | store | watched under each root | main file | other files |
//! |---|---|---|---|
//! | Claude Code (`claude-code`) | `projects/` | `projects/<slug>/<sessionId>.jsonl` | sub-agents: `projects/<slug>/<sessionId>/**.jsonl` (tokens add to the session); older `projects/<slug>/agent-*.jsonl` (belong to the `sessionId` inside) |
//! | Codex (`codex`) | `sessions/`, `archived_sessions/` | `rollout-<ts>-<uuid>.jsonl` at any depth | |
//! | Gemini CLI (`gemini`) | `tmp/` | `tmp/<project>/chats/session-*.jsonl` (or legacy `.json`) | sub-agents: `chats/<parentSessionId>/*.jsonl` |
//!
//! The project directory names are lossy encodings of paths and are never decoded: the
//! project comes from the lines themselves (Gemini CLI: from `.project_root` beside `chats/`).

use super::claude::ClaudeFold;
use super::convo::Conversation;
use super::runlog::shell_quote;
use super::stores::{Format, has_extension};
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
    const NAME: &'static str = "claude-code";

    fn watch_dirs(root: &Path) -> Vec<PathBuf> {
        // A root may name the config dir or its projects dir.
        if root.file_name().is_some_and(|n| n == "projects") {
            vec![root.to_owned()]
        } else {
            vec![root.join("projects")]
        }
    }

    fn is_store_file(path: &Path) -> bool {
        has_extension(path, "jsonl") && after(path, "projects").is_some_and(|rel| rel.len() >= 2)
    }

    fn session_of(path: &Path, c: &Conversation) -> Option<(String, bool)> {
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
