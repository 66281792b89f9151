//! A conversation's transcript as readable text, for `GET /v1/agents/{id}/log` (`agentctl logs`):
//! what was asked, what the agent answered, and the tools it used, one line of context each.
//! Read on demand from the store's own file, a line at a time (so a transcript of any size is
//! streamed, and followed while the agent works); nothing of it is kept in the database.
//!
//! Each format renders its own lines, in its module, from the same decoding its fold uses
//! (`claude::render`, `gemini::Transcript`, …), so what the log shows and what the item counts
//! never read a line two ways; this module holds what they share and picks the renderer.

/// Longer lines are skipped (a tool result of megabytes says nothing in a log).
const MAX_LINE: usize = 4 * 1024 * 1024;

/// One turn of the conversation: `[who] text`, later lines of the text indented.
pub(crate) fn say(out: &mut String, who: &str, text: &str) {
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    out.push_str(&format!("[{who}] "));
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push_str("  ");
        }
        out.push_str(line);
        out.push('\n');
    }
}

/// A tool the agent used.
pub(crate) fn tool(out: &mut String, name: Option<&str>) {
    out.push_str(&format!("  → {}\n", name.unwrap_or("tool")));
}

/// A transcript being rendered line by line, as its file is read (or followed).
pub enum Transcript {
    Claude,
    Codex,
    Qwen,
    Droid,
    Copilot,
    Kimi,
    /// Gemini CLI re-appends a message when it changes and rewinds by id: the last version of
    /// each message counts, so its text is only known once the file has been read.
    Gemini(super::gemini::Transcript),
}

impl Transcript {
    /// Whether text comes out as lines go in (so that the log can be followed).
    pub fn streams(&self) -> bool {
        !matches!(self, Transcript::Gemini(_))
    }

    /// Renders one line of the file, returning what can be shown now.
    pub fn line(&mut self, line: &[u8]) -> String {
        let mut out = String::new();
        if line.len() > MAX_LINE {
            return out;
        }
        match self {
            Transcript::Claude => super::claude::render(line, &mut out),
            Transcript::Codex => super::codex::render(line, &mut out),
            Transcript::Qwen => super::qwen::render(line, &mut out),
            Transcript::Droid => super::droid::render(line, &mut out),
            Transcript::Copilot => super::copilot::render(line, &mut out),
            Transcript::Kimi => super::kimi::render(line, &mut out),
            Transcript::Gemini(t) => t.line(line),
        }
        out
    }

    /// What was held back until the end of the file.
    pub fn finish(self) -> String {
        match self {
            Transcript::Gemini(t) => t.finish(),
            _ => String::new(),
        }
    }
}

/// Renders a legacy Gemini CLI chat (one JSON document, rewritten whole).
pub fn render_gemini_json(bytes: &[u8]) -> String {
    super::gemini::render_legacy_json(bytes)
}

/// Renders the whole transcript at `path` for the item scheme `scheme`.
#[cfg(test)]
fn render(scheme: &str, path: &std::path::Path) -> std::io::Result<String> {
    use crate::ingest::tail::{FileCursor, Opened};
    let mut cursor = FileCursor::default();
    let opened = Opened::open(path, &mut cursor)?;
    let kind = crate::sources::SourceKind::from_name(scheme).expect("a source");
    if kind.is_whole_document(path) {
        return Ok(render_gemini_json(&opened.read_whole(1 << 20)?));
    }
    let mut t = kind.transcript().expect("a conversation source");
    let mut out = String::new();
    opened.read_lines(&mut cursor, usize::MAX, &mut |line| {
        out.push_str(&t.line(line))
    })?;
    out.push_str(&t.finish());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(scheme: &str, name: &str, lines: &[&str], want: &str) {
        let dir = std::env::temp_dir().join(format!("agentd-transcript-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, lines.join("\n")).unwrap();
        let got = render(scheme, &path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(got, want, "{scheme}");
    }

    #[test]
    fn transcripts_render_prompts_answers_and_tools() {
        check(
            "claude-code",
            "c.jsonl",
            &[
                r#"{"type":"user","message":{"role":"user","content":"fix the test"}}"#,
                r#"{"type":"user","isMeta":true,"message":{"role":"user","content":"<caveat>"}}"#,
                r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Looking."},{"type":"tool_use","name":"Bash","input":{}}]}}"#,
                r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t","content":"ok"}]}}"#,
                "not json",
                r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Fixed.\nAll green."}]}}"#,
            ],
            "[you] fix the test\n[claude] Looking.\n  → Bash\n[claude] Fixed.\n  All green.\n",
        );
        check(
            "copilot",
            "events.jsonl",
            &[
                r#"{"type":"session.start","data":{"sessionId":"s"},"id":"1","timestamp":"t"}"#,
                r#"{"type":"user.message","data":{"content":"why is the pool exhausted"},"id":"2","timestamp":"t"}"#,
                r#"{"type":"assistant.message","data":{"content":"Checking.","toolRequests":[{"toolCallId":"c","name":"bash"}]},"id":"3","timestamp":"t"}"#,
                r#"{"type":"permission.requested","data":{"requestId":"r","permissionRequest":{"kind":"shell"}},"id":"4","timestamp":"t"}"#,
                r#"{"type":"abort","data":{"reason":"user_initiated"},"id":"5","timestamp":"t"}"#,
            ],
            "[you] why is the pool exhausted\n[copilot] Checking.\n  → bash\n  (asks for approval)\n  (interrupted)\n",
        );
        check(
            "kimi",
            "wire.jsonl",
            &[
                r#"{"type":"metadata","protocol_version":"1.10"}"#,
                r#"{"timestamp":1.0,"message":{"type":"TurnBegin","payload":{"user_input":"list files"}}}"#,
                r#"{"timestamp":1.1,"message":{"type":"ContentPart","payload":{"type":"text","text":"Sure."}}}"#,
                r#"{"timestamp":1.2,"message":{"type":"ToolCall","payload":{"type":"function","id":"t","function":{"name":"Shell","arguments":"{}"}}}}"#,
                r#"{"type":"turn.prompt","input":[{"type":"text","text":"hi"}],"origin":{"kind":"user"},"time":1}"#,
                r#"{"type":"context.append_message","message":{"role":"assistant","content":[{"type":"text","text":"hello"}],"toolCalls":[]},"time":2}"#,
            ],
            "[you] list files\n[kimi] Sure.\n  → Shell\n[you] hi\n[kimi] hello\n",
        );
        check(
            "codex",
            "r.jsonl",
            &[
                r#"{"timestamp":"t","type":"event_msg","payload":{"type":"user_message","message":"add a flag"}}"#,
                r#"{"timestamp":"t","type":"response_item","payload":{"type":"function_call","name":"exec_command","arguments":"{}","call_id":"c"}}"#,
                r#"{"timestamp":"t","type":"event_msg","payload":{"type":"agent_message","message":"Done."}}"#,
            ],
            "[you] add a flag\n  → exec_command\n[codex] Done.\n",
        );
        check(
            "gemini",
            "s.jsonl",
            &[
                r#"{"sessionId":"s","startTime":"t"}"#,
                r#"{"id":"u1","type":"user","content":[{"text":"why slow?"}]}"#,
                r#"{"id":"g1","type":"gemini","content":"draft"}"#,
                r#"{"id":"g1","type":"gemini","content":"Cold cache.","toolCalls":[{"name":"read_file","status":"success"}]}"#,
                r#"{"id":"u2","type":"user","content":[{"text":"more"}]}"#,
                r#"{"$rewindTo":"u2"}"#,
            ],
            "[you] why slow?\n[gemini] Cold cache.\n  → read_file\n",
        );
        // Regression: a `$set` checkpoint replaces the message list (the transcript kept the
        // messages the checkpoint had dropped).
        check(
            "gemini",
            "c.jsonl",
            &[
                r#"{"sessionId":"s","startTime":"t"}"#,
                r#"{"id":"u1","type":"user","content":[{"text":"old question"}]}"#,
                r#"{"id":"g1","type":"gemini","content":"old answer"}"#,
                r#"{"$set":{"messages":[{"id":"u9","type":"user","content":[{"text":"compressed"}]}]}}"#,
                r#"{"id":"g9","type":"gemini","content":"after the checkpoint"}"#,
            ],
            "[you] compressed\n[gemini] after the checkpoint\n",
        );
        // Regression: the renderer read lines its own way and drifted from the fold: a
        // metadata line with `messages` replaces the list as the fold reads it (only `$set`
        // did), a thought is not an answer, and `displayContent` counts when it has text.
        check(
            "gemini",
            "m.jsonl",
            &[
                r#"{"id":"u0","type":"user","content":[{"text":"dropped"}]}"#,
                r#"{"sessionId":"s","messages":[{"id":"u1","type":"user","content":[{"text":"@a.txt kept\n--- a.txt ---\nfile body"}],"displayContent":[{"text":"@a.txt kept"}]}]}"#,
                r#"{"id":"g1","type":"gemini","content":[{"text":"plan it","thought":true},{"text":"Answer."}],"toolCalls":[{"status":"success"}]}"#,
            ],
            "[you] @a.txt kept\n[gemini] Answer.\n  → tool\n",
        );
        check(
            "claude-code",
            "s.jsonl",
            &[
                r#"{"type":"assistant","isSidechain":true,"message":{"content":[{"type":"text","text":"sub-agent"}]}}"#,
                r#"{"type":"assistant","message":{"content":"a plain answer"}}"#,
                r#"{"type":"user","message":{"content":[{"type":"text","text":"one"},{"type":"text","text":"two"}]}}"#,
            ],
            "[claude] a plain answer\n[you] one\n  two\n",
        );
    }
}
