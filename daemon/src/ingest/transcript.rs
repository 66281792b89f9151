//! A conversation's transcript as readable text, for `GET /v1/agents/{id}/log` (`agentctl logs`):
//! what was asked, what the agent answered, and the tools it used, one line of context each.
//! Read on demand from the store's own file, a line at a time (so a transcript of any size is
//! streamed, and followed while the agent works); nothing of it is kept in the database.

use serde_json::Value;

/// Longer lines are skipped (a tool result of megabytes says nothing in a log).
const MAX_LINE: usize = 4 * 1024 * 1024;

fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| {
                    p.get("type")
                        .and_then(Value::as_str)
                        .is_none_or(|t| t == "text" || t == "input_text" || t == "output_text")
                })
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

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

fn claude_line(v: &Value, out: &mut String) {
    if v.get("isSidechain").and_then(Value::as_bool) == Some(true)
        || v.get("isMeta").and_then(Value::as_bool) == Some(true)
    {
        return;
    }
    let message = v.get("message").unwrap_or(&Value::Null);
    match v.get("type").and_then(Value::as_str) {
        Some("user") => {
            let content = message.get("content").unwrap_or(&Value::Null);
            let is_result = content.as_array().is_some_and(|a| {
                a.iter()
                    .any(|p| p.get("type").and_then(Value::as_str) == Some("tool_result"))
            });
            if !is_result && let Some(t) = text_of(content) {
                say(out, "you", &t);
            }
        }
        Some("assistant") => {
            for p in message
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => say(
                        out,
                        "claude",
                        p.get("text").and_then(Value::as_str).unwrap_or(""),
                    ),
                    Some("tool_use") => out.push_str(&format!(
                        "  → {}\n",
                        p.get("name").and_then(Value::as_str).unwrap_or("tool")
                    )),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn qwen_line(v: &Value, out: &mut String) {
    let parts = v
        .pointer("/message/parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    match v.get("type").and_then(Value::as_str) {
        Some("user") => say(out, "you", &texts.join("\n")),
        Some("assistant") => {
            say(out, "qwen", &texts.join("\n"));
            for p in parts {
                if let Some(name) = p.pointer("/functionCall/name").and_then(Value::as_str) {
                    out.push_str(&format!("  → {name}\n"));
                }
            }
        }
        _ => {}
    }
}

fn droid_line(v: &Value, out: &mut String) {
    if v.get("type").and_then(Value::as_str) != Some("message") {
        return;
    }
    let m = v.get("message").unwrap_or(&Value::Null);
    let content = m.get("content").unwrap_or(&Value::Null);
    match m.get("role").and_then(Value::as_str) {
        Some("user") => {
            if let Some(t) = text_of(content) {
                say(out, "you", &t);
            }
        }
        Some("assistant") => {
            if let Some(t) = text_of(content) {
                say(out, "droid", &t);
            }
            for p in content.as_array().into_iter().flatten() {
                if p.get("type").and_then(Value::as_str) == Some("tool_use") {
                    out.push_str(&format!(
                        "  → {}\n",
                        p.get("name").and_then(Value::as_str).unwrap_or("tool")
                    ));
                }
            }
        }
        _ => {}
    }
}

fn copilot_line(v: &Value, out: &mut String) {
    let d = v.get("data").unwrap_or(&Value::Null);
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("");
    match v.get("type").and_then(Value::as_str).unwrap_or("") {
        "user.message" => say(out, "you", s("content")),
        "assistant.message" => {
            say(out, "copilot", s("content"));
            for r in d
                .get("toolRequests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = r.get("name").and_then(Value::as_str).unwrap_or("tool");
                out.push_str(&format!("  → {name}\n"));
            }
        }
        "permission.requested" => out.push_str("  (asks for approval)\n"),
        "abort" => out.push_str("  (interrupted)\n"),
        "session.error" => say(out, "error", s("message")),
        _ => {}
    }
}

fn kimi_line(v: &Value, out: &mut String) {
    // kimi-cli wraps each record in `message`; Kimi Code writes it at the top level.
    if let Some(m) = v.get("message").filter(|m| m.get("type").is_some()) {
        let p = m.get("payload").unwrap_or(&Value::Null);
        match m.get("type").and_then(Value::as_str).unwrap_or("") {
            "TurnBegin" => {
                if let Some(t) = p.get("user_input").and_then(text_of) {
                    say(out, "you", &t);
                }
            }
            "ContentPart" if p.get("type").and_then(Value::as_str) == Some("text") => say(
                out,
                "kimi",
                p.get("text").and_then(Value::as_str).unwrap_or(""),
            ),
            "ToolCall" => {
                let name = p
                    .pointer("/function/name")
                    .or_else(|| p.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("tool");
                out.push_str(&format!("  → {name}\n"));
            }
            "ApprovalRequest" => out.push_str("  (asks for approval)\n"),
            "StepInterrupted" => out.push_str("  (interrupted)\n"),
            _ => {}
        }
        return;
    }
    match v.get("type").and_then(Value::as_str).unwrap_or("") {
        "turn.prompt" => {
            if let Some(t) = v.get("input").and_then(text_of) {
                say(out, "you", &t);
            }
        }
        "context.append_message"
            if v.pointer("/message/role").and_then(Value::as_str) == Some("assistant") =>
        {
            let m = &v["message"];
            if let Some(t) = m.get("content").and_then(text_of) {
                say(out, "kimi", &t);
            }
            for c in m
                .get("toolCalls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = c
                    .pointer("/function/name")
                    .or_else(|| c.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("tool");
                out.push_str(&format!("  → {name}\n"));
            }
        }
        "interaction.request" => out.push_str("  (asks for approval)\n"),
        "turn.cancel" => out.push_str("  (interrupted)\n"),
        _ => {}
    }
}

fn codex_line(v: &Value, out: &mut String) {
    let p = v.get("payload").unwrap_or(&Value::Null);
    let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
    match (v.get("type").and_then(Value::as_str), s("type")) {
        (Some("event_msg"), "user_message") => say(out, "you", s("message")),
        (Some("event_msg"), "agent_message") => say(out, "codex", s("message")),
        (Some("response_item"), "function_call" | "custom_tool_call") => {
            out.push_str(&format!("  → {}\n", s("name")))
        }
        (Some("event_msg"), "turn_aborted") => out.push_str("  (interrupted)\n"),
        _ => {}
    }
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
    Gemini(Vec<(String, String)>),
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
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return out;
        };
        match self {
            Transcript::Claude => claude_line(&v, &mut out),
            Transcript::Codex => codex_line(&v, &mut out),
            Transcript::Qwen => qwen_line(&v, &mut out),
            Transcript::Droid => droid_line(&v, &mut out),
            Transcript::Copilot => copilot_line(&v, &mut out),
            Transcript::Kimi => kimi_line(&v, &mut out),
            Transcript::Gemini(messages) => {
                if let Some(list) = v.pointer("/$set/messages").and_then(Value::as_array) {
                    // A checkpoint: the message list is replaced whole (as the fold does).
                    *messages = list
                        .iter()
                        .filter_map(|m| {
                            let id = m.get("id").and_then(Value::as_str)?;
                            let mut text = String::new();
                            gemini_message(m, &mut text);
                            Some((id.to_owned(), text))
                        })
                        .collect();
                } else if let Some(target) = v.get("$rewindTo").and_then(Value::as_str) {
                    if let Some(i) = messages.iter().position(|(id, _)| id == target) {
                        messages.truncate(i);
                    }
                } else if let Some(id) = v.get("id").and_then(Value::as_str) {
                    let mut text = String::new();
                    gemini_message(&v, &mut text);
                    match messages.iter_mut().find(|(i, _)| i == id) {
                        Some(slot) => slot.1 = text,
                        None => messages.push((id.to_owned(), text)),
                    }
                }
            }
        }
        out
    }

    /// What was held back until the end of the file.
    pub fn finish(self) -> String {
        match self {
            Transcript::Gemini(messages) => messages.into_iter().map(|(_, t)| t).collect(),
            _ => String::new(),
        }
    }
}

/// Renders a legacy Gemini CLI chat (one JSON document, rewritten whole).
pub fn render_gemini_json(bytes: &[u8]) -> String {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let mut out = String::new();
    for m in v
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        gemini_message(m, &mut out);
    }
    out
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

fn gemini_message(m: &Value, out: &mut String) {
    let content = m
        .get("displayContent")
        .filter(|c| !c.is_null())
        .or_else(|| m.get("content"))
        .unwrap_or(&Value::Null);
    match m.get("type").and_then(Value::as_str) {
        Some("user") => {
            if let Some(t) = text_of(content) {
                say(out, "you", &t);
            }
        }
        Some("gemini") => {
            if let Some(t) = text_of(content) {
                say(out, "gemini", &t);
            }
            for c in m
                .get("toolCalls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "  → {}\n",
                    c.get("name").and_then(Value::as_str).unwrap_or("tool")
                ));
            }
        }
        Some("error") => {
            if let Some(t) = text_of(content) {
                say(out, "error", &t);
            }
        }
        Some("info") => {
            if let Some(t) = text_of(content) {
                say(out, "info", &t);
            }
        }
        _ => {}
    }
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
    }
}
