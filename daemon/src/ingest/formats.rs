//! Where each conversation store keeps its files, and how a file maps to a conversation.
//!
//! | store | watched under each root | main file | other files |
//! |---|---|---|---|
//! | Claude Code (`claude-code`) | `projects/`, `sessions/` | `projects/<slug>/<sessionId>.jsonl` | sub-agents: `projects/<slug>/<sessionId>/**.jsonl` (tokens add to the session); older `projects/<slug>/agent-*.jsonl` (belong to the `sessionId` inside); the live registry `sessions/<pid>.json` (its status wins while its process runs) |
//! | Codex (`codex`) | `sessions/`, `archived_sessions/` | `rollout-<ts>-<uuid>.jsonl` at any depth, or its compressed form `….jsonl.zst` (folded whole, decompressed a line at a time; the plain file wins while both exist) | |
//! | Qwen Code (`qwen`) | `projects/` | `projects/<project>/chats/<sessionId>.jsonl` | sub-agents: `projects/<project>/subagents/**.jsonl` (tokens add to the session inside) |
//! | Factory Droid (`droid`) | the sessions dir | `<workspace>/<uuid>.jsonl` | `<workspace>/<uuid>.settings.json`: the session's token totals |
//! | GitHub Copilot CLI (`copilot`) | `session-state/` | `session-state/<sessionId>/events.jsonl` (older builds: `session-state/<sessionId>.jsonl`) | |
//! | Kimi (`kimi`) | `sessions/` | kimi-cli: `sessions/<md5 of the work dir>/<sessionId>/wire.jsonl`; Kimi Code: `sessions/<workDirKey>/<sessionId>/agents/main/wire.jsonl` | Kimi Code sub-agents: `agents/<id>/wire.jsonl` (tokens add to the session) |
//! | Gemini CLI (`gemini`) | `tmp/` | `tmp/<project>/chats/session-*.jsonl` (or legacy `.json`) | sub-agents: `chats/<parentSessionId>/*.jsonl` |
//!
//! The project directory names are lossy encodings of paths and are never decoded: the
//! project comes from the lines themselves (Gemini CLI: from `.project_root` beside `chats/`,
//! or, in a legacy dir named by the SHA-256 of the project's path, from the path in
//! `projects.json` with that hash; kimi-cli: from `kimi.json`'s `session_to_workdir`, or the
//! work dir whose MD5 names the dir).

use super::claude::ClaudeFold;
use super::convo::Conversation;
use super::convo::ConversationFold;
use super::runlog::shell_quote;
use super::stores::{Format, has_extension};
use crate::sources::SourceKind;
use std::path::{Component, Path, PathBuf};

/// `cd DIR && PROGRAM ARGS…`, quoted for a POSIX shell.
pub(crate) fn resume(cwd: Option<&str>, words: &[&str]) -> Option<String> {
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

/// Lower-case hex SHA-256, as Gemini CLI names its legacy project dirs.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        (has_extension(path, "jsonl") || Self::is_whole_file(path))
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("rollout-"))
    }

    /// Codex compresses old rollouts (`rollout-….jsonl.zst`), written once: each is folded
    /// whole, decompressed line by line. When both forms of a rollout exist the plain one wins.
    fn is_whole_file(path: &Path) -> bool {
        path.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with("rollout-") && n.ends_with(".jsonl.zst")
        })
    }

    /// A compressed rollout; what it holds decompressed is bounded by the line reader.
    const MAX_WHOLE_FILE: u64 = 256 * 1024 * 1024;

    fn fold_whole_file(bytes: &[u8], prices: &crate::prices::Prices) -> Result<Self::Fold, String> {
        let mut fold = super::codex::CodexFold::default();
        let mut bad = 0u64;
        let skipped = super::tail::zstd_lines(bytes, super::stores::MAX_LINE, &mut |line| {
            if fold.apply(line, prices).is_err() {
                bad += 1;
            }
        })
        .map_err(|e| format!("not a readable zstd rollout: {e}"))?;
        if bad + skipped > 0 {
            tracing::warn!(
                "a compressed rollout had {bad} unreadable and {skipped} oversized lines"
            );
        }
        Ok(fold)
    }

    fn session_of(path: &Path, c: &Conversation) -> Option<(String, bool)> {
        // The uuid ends the file name: rollout-YYYY-MM-DDThh-mm-ss-<uuid>.jsonl(.zst)
        let from_name = stem(path).and_then(|s| {
            let s = s.strip_suffix(".jsonl").unwrap_or(&s);
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
        if let Ok(root) = crate::fsread::read_text(
            &project_dir.join(".project_root"),
            crate::fsread::Trust::Found,
            64 * 1024,
        ) {
            let root = root.trim();
            return (!root.is_empty()).then(|| root.to_owned());
        }
        // Before 2026-02 the dir was named by the SHA-256 of the project's path: find the path
        // among the projects Gemini CLI knows (`~/.gemini/projects.json`).
        let hash = project_dir.file_name()?.to_str()?.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let gemini = project_dir.parent()?.parent()?;
        let registry = crate::fsread::read_text(
            &gemini.join("projects.json"),
            crate::fsread::Trust::Found,
            4 * 1024 * 1024,
        )
        .ok()?;
        let v: serde_json::Value = serde_json::from_str(&registry).ok()?;
        v.get("projects")?
            .as_object()?
            .keys()
            .find(|p| sha256_hex(p.as_bytes()) == hash)
            .cloned()
    }

    fn is_whole_file(path: &Path) -> bool {
        has_extension(path, "json")
    }

    fn fold_whole_file(bytes: &[u8], prices: &crate::prices::Prices) -> Result<Self::Fold, String> {
        super::gemini::fold_legacy_json(bytes, prices)
    }
}

/// Qwen Code chats: `projects/<sanitized cwd>/chats/<sessionId>.jsonl`; sub-agents under
/// `projects/<project>/subagents/**` count toward the session named inside them.
pub struct Qwen;

impl Format for Qwen {
    type Fold = super::qwen::QwenFold;
    const KIND: SourceKind = SourceKind::Qwen;

    fn watch_dirs(root: &Path) -> Vec<PathBuf> {
        vec![root.join("projects")]
    }

    fn is_store_file(path: &Path) -> bool {
        has_extension(path, "jsonl")
            && after(path, "projects").is_some_and(|rel| {
                (rel.len() == 3 && rel[1] == "chats") || (rel.len() >= 3 && rel[1] == "subagents")
            })
    }

    fn session_of(path: &Path, c: &Conversation) -> Option<(String, bool)> {
        let rel = after(path, "projects")?;
        if rel.get(1).is_some_and(|d| d == "subagents") {
            return Some((c.session_id.clone()?, false));
        }
        Some((c.session_id.clone().or_else(|| stem(path))?, true))
    }

    fn resume_command(session: &str, cwd: Option<&str>) -> Option<String> {
        resume(cwd, &["qwen", "--resume", session])
    }
}

/// Factory Droid sessions: `<sessions dir>/<workspace>/<uuid>.jsonl` (the transcript) and its
/// sibling `<uuid>.settings.json` (the session's token totals, folded whole).
pub struct Droid;

impl Droid {
    fn is_settings(path: &Path) -> bool {
        path.file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(".settings.json"))
    }
}

impl Format for Droid {
    type Fold = super::droid::DroidFold;
    const KIND: SourceKind = SourceKind::Droid;

    fn watch_dirs(root: &Path) -> Vec<PathBuf> {
        vec![root.to_owned()]
    }

    fn is_store_file(path: &Path) -> bool {
        (has_extension(path, "jsonl") || Self::is_settings(path))
            && path
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .is_some_and(|n| n == "sessions")
    }

    fn is_whole_file(path: &Path) -> bool {
        Self::is_settings(path)
    }

    /// A settings file is a few hundred bytes.
    const MAX_WHOLE_FILE: u64 = 1024 * 1024;

    fn fold_whole_file(bytes: &[u8], prices: &crate::prices::Prices) -> Result<Self::Fold, String> {
        super::droid::DroidFold::from_settings(bytes, prices)
    }

    fn session_of(path: &Path, _c: &Conversation) -> Option<(String, bool)> {
        let name = path.file_name()?.to_string_lossy().into_owned();
        match name.strip_suffix(".settings.json") {
            Some(session) => Some((session.to_owned(), false)),
            None => Some((stem(path)?, true)),
        }
    }

    fn resume_command(session: &str, cwd: Option<&str>) -> Option<String> {
        resume(cwd, &["droid", "--resume", session])
    }
}

/// GitHub Copilot CLI session event logs.
pub struct Copilot;

impl Format for Copilot {
    type Fold = super::copilot::CopilotFold;
    const KIND: SourceKind = SourceKind::Copilot;

    fn watch_dirs(root: &Path) -> Vec<PathBuf> {
        vec![root.join("session-state")]
    }

    fn is_store_file(path: &Path) -> bool {
        after(path, "session-state").is_some_and(|rel| match rel.len() {
            1 => has_extension(path, "jsonl"),
            2 => rel[1] == "events.jsonl",
            _ => false,
        })
    }

    fn session_of(path: &Path, c: &Conversation) -> Option<(String, bool)> {
        let rel = after(path, "session-state")?;
        let from_path = match rel.len() {
            1 => stem(path)?,
            _ => rel[0].clone(),
        };
        Some((c.session_id.clone().unwrap_or(from_path), true))
    }

    fn resume_command(session: &str, cwd: Option<&str>) -> Option<String> {
        resume(cwd, &["copilot", "--resume", session])
    }
}

/// Kimi's wire logs: kimi-cli (`~/.kimi`) and Kimi Code (`~/.kimi-code`).
pub struct Kimi;

impl Format for Kimi {
    type Fold = super::kimi::KimiFold;
    const KIND: SourceKind = SourceKind::Kimi;

    fn watch_dirs(root: &Path) -> Vec<PathBuf> {
        vec![root.join("sessions")]
    }

    fn is_store_file(path: &Path) -> bool {
        path.file_name().is_some_and(|n| n == "wire.jsonl")
            && after(path, "sessions")
                .is_some_and(|rel| rel.len() == 3 || (rel.len() == 5 && rel[2] == "agents"))
    }

    fn session_of(path: &Path, _c: &Conversation) -> Option<(String, bool)> {
        let rel = after(path, "sessions")?;
        match rel.len() {
            3 => Some((rel[1].clone(), true)),
            5 => Some((rel[1].clone(), rel[3] == "main")),
            _ => None,
        }
    }

    fn resume_command(session: &str, cwd: Option<&str>) -> Option<String> {
        resume(cwd, &["kimi", "--session", session])
    }

    fn project_of(path: &Path) -> Option<String> {
        // kimi-cli: sessions/<md5 of the work dir>/<sessionId>/wire.jsonl, the work dirs listed
        // in kimi.json beside sessions/. (Kimi Code's log names its work dir itself.)
        let rel = after(path, "sessions")?;
        if rel.len() != 3 {
            return None;
        }
        let share = path
            .ancestors()
            .find(|a| a.ends_with("sessions"))?
            .parent()?;
        let meta = crate::fsread::read_text(
            &share.join("kimi.json"),
            crate::fsread::Trust::Found,
            4 * 1024 * 1024,
        )
        .ok()?;
        let v: serde_json::Value = serde_json::from_str(&meta).ok()?;
        if let Some(dir) = v
            .pointer(&format!("/session_to_workdir/{}", rel[1]))
            .and_then(serde_json::Value::as_str)
        {
            return Some(dir.to_owned());
        }
        let hash = rel[0].to_ascii_lowercase();
        v.get("work_dirs")?
            .as_array()?
            .iter()
            .filter_map(|w| w.get("path").and_then(serde_json::Value::as_str))
            .find(|p| md5_hex(p.as_bytes()) == hash)
            .map(str::to_owned)
    }
}

/// Lower-case hex MD5, as kimi-cli names its session dirs.
fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_names_as_kimi_cli_does() {
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn copilot_and_kimi_files_map_to_their_sessions() {
        let none = Conversation::default();
        let ev = Path::new("/h/.copilot/session-state/7cf44517/events.jsonl");
        let flat = Path::new("/h/.copilot/session-state/7cf44517.jsonl");
        for p in [ev, flat] {
            assert!(Copilot::is_store_file(p));
            assert_eq!(
                Copilot::session_of(p, &none),
                Some(("7cf44517".into(), true))
            );
        }
        assert!(!Copilot::is_store_file(Path::new(
            "/h/.copilot/session-state/7cf44517/plan.md"
        )));
        let cli = Path::new("/h/.kimi/sessions/0a1b/s1/wire.jsonl");
        let main = Path::new("/h/.kimi-code/sessions/wd_app_0a1b/s2/agents/main/wire.jsonl");
        let sub = Path::new("/h/.kimi-code/sessions/wd_app_0a1b/s2/agents/agent-1/wire.jsonl");
        assert!([cli, main, sub].iter().all(|p| Kimi::is_store_file(p)));
        assert_eq!(Kimi::session_of(cli, &none), Some(("s1".into(), true)));
        assert_eq!(Kimi::session_of(main, &none), Some(("s2".into(), true)));
        assert_eq!(Kimi::session_of(sub, &none), Some(("s2".into(), false)));
        assert!(!Kimi::is_store_file(Path::new(
            "/h/.kimi/sessions/0a1b/s1/context.jsonl"
        )));
    }

    #[test]
    fn sha256_names_as_gemini_cli_does() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn compressed_rollouts_are_codex_files_of_the_same_conversation() {
        let uuid = "0199a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b";
        let plain = PathBuf::from(format!(
            "/h/.codex/sessions/2026/11/29/rollout-2026-11-29T10-00-00-{uuid}.jsonl"
        ));
        let packed = plain.with_extension("jsonl.zst");
        for p in [&plain, &packed] {
            assert!(Codex::is_store_file(p), "{}", p.display());
            assert_eq!(
                Codex::session_of(p, &Conversation::default()),
                Some((uuid.to_owned(), true))
            );
        }
        assert!(Codex::is_whole_file(&packed) && !Codex::is_whole_file(&plain));
        assert!(!Codex::is_store_file(Path::new(
            "/h/.codex/sessions/notes.zst"
        )));
    }
}
