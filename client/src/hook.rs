//! `agentctl hook claude-code|codex|gemini|qwen|droid|copilot`: the command an agent CLI runs as a hook. It
//! forwards the hook's JSON payload (stdin) to agentd's `/v1/hooks/<agent>` and always exits 0,
//! silently and within half a second: a hook must never slow the agent down or make it fail.
//!
//! `--install` adds this command to the agent's own hook settings for the events that carry
//! status (after showing what changes); `--dry-run` only shows it. All three take the same
//! shape, `{"hooks": {EVENT: [{"matcher": "", "hooks": [{"type": "command", …}]}]}}`:
//!
//! | agent | file | timeout unit |
//! |---|---|---|
//! | Claude Code | `settings.json` under `CLAUDE_CONFIG_DIR` (first entry), else `~/.claude` | seconds |
//! | Codex | `hooks.json` under `CODEX_HOME`, else `~/.codex` (Codex asks you to trust new hooks in `/hooks`) | seconds |
//! | Gemini CLI | `settings.json` under `GEMINI_CLI_HOME/.gemini`, else `~/.gemini` | milliseconds |
//! | Qwen Code | `~/.qwen/settings.json` (Claude Code's events) | milliseconds |
//! | Factory Droid | `settings.json` under `FACTORY_DIR`, else `~/.factory` (Claude Code's events) | seconds |
//!
//! GitHub Copilot CLI keeps hook files of its own shape, `{"version": 1, "hooks": {EVENT:
//! [{"type": "command", "bash": …, "timeoutSec": …}]}}`; agentd's are a file of their own,
//! `hooks/agentd.json` under `COPILOT_HOME`, else `~/.copilot` (seconds).

use serde_json::{Value, json};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// The whole exchange with agentd must fit in this.
const BUDGET: Duration = Duration::from_millis(500);
/// Hook payloads are small; more than this is not read.
const MAX_PAYLOAD: u64 = 1 << 20;
/// An agent CLI with hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    ClaudeCode,
    Codex,
    Gemini,
    Qwen,
    Droid,
    Copilot,
}

impl Agent {
    /// `claude-code`, `codex` or `gemini`.
    pub fn parse(name: &str) -> Option<Agent> {
        match name {
            "claude-code" => Some(Agent::ClaudeCode),
            "codex" => Some(Agent::Codex),
            "gemini" => Some(Agent::Gemini),
            "qwen" => Some(Agent::Qwen),
            "droid" => Some(Agent::Droid),
            "copilot" => Some(Agent::Copilot),
            _ => None,
        }
    }

    /// The word in the command and in the route (`/v1/hooks/<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-code",
            Agent::Codex => "codex",
            Agent::Gemini => "gemini",
            Agent::Qwen => "qwen",
            Agent::Droid => "droid",
            Agent::Copilot => "copilot",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "Claude Code",
            Agent::Codex => "Codex",
            Agent::Gemini => "Gemini CLI",
            Agent::Qwen => "Qwen Code",
            Agent::Droid => "Factory Droid",
            Agent::Copilot => "GitHub Copilot CLI",
        }
    }

    /// The hook events that say what a conversation is doing.
    pub fn events(self) -> &'static [&'static str] {
        match self {
            Agent::ClaudeCode | Agent::Qwen | Agent::Droid => &[
                "Notification",
                "UserPromptSubmit",
                "PreToolUse",
                "PostToolUse",
                "Stop",
                "StopFailure",
                "SessionEnd",
            ],
            Agent::Codex => &[
                "PermissionRequest",
                "UserPromptSubmit",
                "PreToolUse",
                "PostToolUse",
                "Stop",
                "SessionEnd",
            ],
            // `notification` has no PascalCase form; the others are named in PascalCase so that
            // their payloads carry `hook_event_name` and `session_id`.
            Agent::Copilot => &[
                "notification",
                "UserPromptSubmit",
                "PreToolUse",
                "PostToolUse",
                "Stop",
                "ErrorOccurred",
                "SessionEnd",
            ],
            Agent::Gemini => &[
                "Notification",
                "BeforeAgent",
                "AfterAgent",
                "BeforeTool",
                "AfterTool",
                "SessionEnd",
            ],
        }
    }

    /// The hook's timeout, in the unit the agent reads (5 s: the command itself gives up after
    /// half a second).
    fn timeout(self) -> u64 {
        match self {
            // Gemini CLI and Qwen Code read milliseconds.
            Agent::Gemini | Agent::Qwen => 5000,
            _ => 5,
        }
    }

    /// The file the agent reads its hooks from.
    pub fn settings_path(self) -> Option<PathBuf> {
        let home = || std::env::var_os("HOME").map(PathBuf::from);
        let env_dir = |k: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from)
        };
        Some(match self {
            Agent::ClaudeCode => settings_path()?,
            Agent::Codex => env_dir("CODEX_HOME")
                .or_else(|| home().map(|h| h.join(".codex")))?
                .join("hooks.json"),
            Agent::Gemini => env_dir("GEMINI_CLI_HOME")
                .or_else(home)?
                .join(".gemini/settings.json"),
            Agent::Qwen => home()?.join(".qwen/settings.json"),
            Agent::Droid => env_dir("FACTORY_DIR")
                .or_else(|| home().map(|h| h.join(".factory")))?
                .join("settings.json"),
            Agent::Copilot => env_dir("COPILOT_HOME")
                .or_else(|| home().map(|h| h.join(".copilot")))?
                .join("hooks/agentd.json"),
        })
    }

    /// What to tell the user once the hooks are written.
    fn after_install(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "Claude Code picks them up in new sessions",
            Agent::Codex => {
                "Codex asks you to trust new hooks: open /hooks in Codex and trust the agentd ones"
            }
            Agent::Gemini => "Gemini CLI picks them up in new sessions",
            Agent::Qwen => "Qwen Code picks them up in new sessions",
            Agent::Droid => "Droid picks them up in new sessions",
            Agent::Copilot => "Copilot CLI picks them up in new sessions",
        }
    }
}

/// Forwards stdin to agentd; every failure is swallowed.
pub fn forward(client: &crate::Client, agent: Agent) {
    let mut payload = Vec::new();
    if std::io::stdin()
        .take(MAX_PAYLOAD)
        .read_to_end(&mut payload)
        .is_err()
        || payload.is_empty()
    {
        return;
    }
    let _ = client.clone().with_timeout(Some(BUDGET)).request(
        "POST",
        &format!("/v1/hooks/{}", agent.name()),
        Some(&payload),
    );
}

/// Claude Code's user settings file: under the first `CLAUDE_CONFIG_DIR` entry, else
/// `~/.claude`.
pub fn settings_path() -> Option<PathBuf> {
    let dir = std::env::var("CLAUDE_CONFIG_DIR")
        .ok()
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find(|d| !d.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".claude")))?;
    Some(dir.join("settings.json"))
}

/// `settings` with the hook added for every one of `agent`'s events that lacks it.
pub fn with_hooks(mut settings: Value, command: &str, agent: Agent) -> Result<Value, String> {
    if agent == Agent::Copilot {
        return with_copilot_hooks(settings, command);
    }
    let root = settings
        .as_object_mut()
        .ok_or("the settings file is not a JSON object")?;
    let hooks = root
        .entry("hooks")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("`hooks` in the settings file is not an object")?;
    let ours = format!("hook {}", agent.name());
    for &event in agent.events() {
        let list = hooks
            .entry(event)
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .ok_or_else(|| format!("`hooks.{event}` in the settings file is not a list"))?;
        let present = list.iter().any(|group| {
            group["hooks"].as_array().is_some_and(|hs| {
                hs.iter()
                    .any(|h| h["command"].as_str().is_some_and(|c| c.contains(&ours)))
            })
        });
        if !present {
            list.push(json!({"matcher": "", "hooks": [{"type": "command", "command": command, "timeout": agent.timeout()}]}));
        }
    }
    Ok(settings)
}

/// Copilot CLI's shape: `{"version": 1, "hooks": {EVENT: [{"type": "command", "bash": …}]}}`.
fn with_copilot_hooks(mut settings: Value, command: &str) -> Result<Value, String> {
    let root = settings
        .as_object_mut()
        .ok_or("the hooks file is not a JSON object")?;
    root.entry("version").or_insert(json!(1));
    let hooks = root
        .entry("hooks")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("`hooks` in the hooks file is not an object")?;
    let ours = format!("hook {}", Agent::Copilot.name());
    for &event in Agent::Copilot.events() {
        let list = hooks
            .entry(event)
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .ok_or_else(|| format!("`hooks.{event}` in the hooks file is not a list"))?;
        let present = list
            .iter()
            .any(|h| h["bash"].as_str().is_some_and(|c| c.contains(&ours)));
        if !present {
            list.push(
                json!({"type": "command", "bash": command, "timeoutSec": Agent::Copilot.timeout()}),
            );
        }
    }
    Ok(settings)
}

/// A word for a POSIX shell (Claude Code runs hook commands with one).
fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Lines of `after` that are not in `before`, marked `+`: what an install adds.
pub fn added_lines(before: &str, after: &str) -> String {
    let mut old: Vec<&str> = before.lines().collect();
    let mut out = String::new();
    for line in after.lines() {
        if let Some(i) = old.iter().position(|l| *l == line) {
            old.remove(i);
        } else {
            out.push_str("+ ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `--install [--dry-run]`.
pub fn install(agent: Agent, dry_run: bool) -> Result<(), String> {
    let path = agent
        .settings_path()
        .ok_or_else(|| format!("cannot find {}'s settings (HOME is not set)", agent.title()))?;
    let before = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "{}".into(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let settings: Value = serde_json::from_str(&before)
        .map_err(|e| format!("{} is not valid JSON ({e}); fix it first", path.display()))?;
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "agentctl".into());
    let command = format!("{} hook {}", quote(&exe), agent.name());
    let after = serde_json::to_string_pretty(&with_hooks(settings.clone(), &command, agent)?)
        .map_err(|e| e.to_string())?;
    let pretty_before = serde_json::to_string_pretty(&settings).map_err(|e| e.to_string())?;
    let diff = added_lines(&pretty_before, &after);
    if diff.is_empty() {
        println!("{} already has the agentd hooks", path.display());
        return Ok(());
    }
    println!("{}:\n{diff}", path.display());
    if dry_run {
        println!("(dry run: nothing written)");
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // Written beside the real file (a symlinked settings.json stays a symlink) with its
    // permissions, and renamed over it, so that Claude Code never reads half a file.
    let target = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    let tmp = target.with_extension("json.agentd-tmp");
    let mode = std::fs::metadata(&target).ok().map(|m| m.permissions());
    std::fs::write(&tmp, format!("{after}\n"))
        .and_then(|()| match mode {
            Some(m) => std::fs::set_permissions(&tmp, m),
            None => Ok(()),
        })
        .and_then(|()| std::fs::rename(&tmp, &target))
        .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    println!("added the agentd hooks; {}", agent.after_install());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_added_once_and_other_settings_kept() {
        let settings = json!({"model": "opus", "hooks": {"Stop": [{"matcher": "", "hooks": [{"type": "command", "command": "say done"}]}]}});
        let once = with_hooks(
            settings,
            "/bin/agentctl hook claude-code",
            Agent::ClaudeCode,
        )
        .unwrap();
        assert_eq!(once["model"], "opus");
        assert_eq!(
            once["hooks"]["Stop"].as_array().unwrap().len(),
            2,
            "the user's own hook stays"
        );
        for e in Agent::ClaudeCode.events() {
            assert!(
                once["hooks"][e].to_string().contains("hook claude-code"),
                "{e}"
            );
        }
        let twice = with_hooks(
            once.clone(),
            "/bin/agentctl hook claude-code",
            Agent::ClaudeCode,
        )
        .unwrap();
        assert_eq!(once, twice);
        assert!(with_hooks(json!([1]), "x", Agent::ClaudeCode).is_err());
        // Gemini CLI reads milliseconds; a Claude Code hook does not count as a Gemini one.
        let gemini = with_hooks(once, "/bin/agentctl hook gemini", Agent::Gemini).unwrap();
        assert_eq!(
            gemini["hooks"]["AfterAgent"][0]["hooks"][0]["timeout"],
            5000
        );
        assert_eq!(gemini["hooks"]["Notification"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn copilot_hooks_take_copilot_cli_s_own_shape() {
        let once = with_hooks(json!({}), "/bin/agentctl hook copilot", Agent::Copilot).unwrap();
        assert_eq!(once["version"], 1);
        assert_eq!(
            once["hooks"]["notification"][0],
            json!({"type": "command", "bash": "/bin/agentctl hook copilot", "timeoutSec": 5})
        );
        assert_eq!(
            once["hooks"].as_object().unwrap().len(),
            Agent::Copilot.events().len()
        );
        let twice = with_hooks(once.clone(), "/bin/agentctl hook copilot", Agent::Copilot).unwrap();
        assert_eq!(once, twice);
    }
}
