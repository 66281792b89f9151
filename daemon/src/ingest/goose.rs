//! Goose sessions, read from its SQLite database (`sessions/sessions.db` under
//! `$GOOSE_PATH_ROOT/data`, else `~/.local/share/goose`): table `sessions` (name, working dir,
//! the session's token totals and model) and `messages` (`role`, `content_json`: text, tool
//! requests and tool responses). Goose writes no turn-end or approval record, so status is
//! inferred from the last message and the time since.
//!
//! | last message | status | status_detail |
//! |---|---|---|
//! | your prompt, or a tool's response | working | |
//! | the agent asking for a tool, no row written for 5 s | blocked | waiting for approval: TOOL (inferred: Goose keeps approvals in memory; a long-running tool looks the same) |
//! | the agent asking for a tool, less than 5 s ago | working | |
//! | the agent's answer in text, no row written for 10 s | success | (inferred) |
//! | an open turn with no row written for 30 minutes | failed | no activity for 30 minutes; the agent may have been closed |
//!
//! Tokens, as ccusage reads them: the session's `accumulated_*` totals (those of its last run
//! when there are none); Goose keeps no cache counts, and what `total` has beyond input and
//! output (reasoning) is counted as output. Cost: the built-in price of the session's model
//! (`model_config_json.model_name`). Title: the session's name, else its description, else the
//! first prompt. Hidden sessions are not shown.

use super::convo::{
    ABANDONED, ABANDONED_AFTER_MS, BLOCKED_AFTER_MS, Conversation, CostSum, QUIET_DONE_MS,
    cut_title,
};
use super::databases::{Database, Mark, SessionFacts, SessionView, has_column};
use crate::model::Millis;
use crate::prices::Prices;
use crate::sources::SourceKind;
use agentd_wire::{Status, Usage};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A `sessions` timestamp (SQLite's `CURRENT_TIMESTAMP` text, or ISO 8601) in epoch ms.
const MS: &str = "CAST(strftime('%s', {}) AS INTEGER) * 1000";

fn ms(column: &str) -> String {
    MS.replace("{}", column)
}

/// Where the last message leaves the session.
#[derive(Debug, Clone, PartialEq)]
enum Last {
    Working,
    ToolAsked(String),
    Answered,
}

/// One Goose session, read from the database.
#[derive(Debug, Clone)]
pub struct GooseSession {
    facts: SessionFacts,
    last: Last,
}

impl SessionView for GooseSession {
    fn conversation(&self, now: Millis) -> Conversation {
        let quiet = self.facts.quiet(now);
        let (status, detail) = match &self.last {
            Last::Answered if quiet >= QUIET_DONE_MS => (Status::Success, None),
            _ if quiet >= ABANDONED_AFTER_MS => (Status::Failed, Some(ABANDONED.to_owned())),
            Last::ToolAsked(tool) if quiet >= BLOCKED_AFTER_MS => (
                Status::Blocked,
                Some(format!("waiting for approval: {tool}")),
            ),
            _ => (Status::Working, None),
        };
        self.facts.conversation(status, detail)
    }
}

/// The text of a message's content, if it has any.
fn text_of(content: &Value) -> Option<String> {
    let texts: Vec<&str> = content
        .as_array()?
        .iter()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .filter(|t| !t.trim().is_empty())
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n"))
}

/// The tool a message asks for, if it does.
fn tool_of(content: &Value) -> Option<String> {
    content
        .as_array()?
        .iter()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("toolRequest"))
        .map(|c| {
            c.pointer("/toolCall/value/name")
                .and_then(Value::as_str)
                .unwrap_or("a tool")
                .to_owned()
        })
        .next_back()
}

/// Goose's database.
pub struct Goose;

impl Database for Goose {
    type Session = GooseSession;
    type Tree = super::databases::NoTree<GooseSession>;
    const KIND: SourceKind = SourceKind::Goose;

    fn watch_dirs(root: &Path) -> Vec<PathBuf> {
        vec![root.join("sessions")]
    }

    fn is_database(path: &Path) -> bool {
        path.file_name().is_some_and(|n| n == "sessions.db")
    }

    fn changed(
        conn: &Connection,
        mark: &Mark,
        recent: i64,
    ) -> rusqlite::Result<(BTreeSet<String>, Mark)> {
        let tx = conn.unchecked_transaction()?;
        let rowid = mark.rowids.first().copied().unwrap_or(0);
        let max: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM messages", [], |r| {
            r.get(0)
        })?;
        let mut ids = BTreeSet::new();
        {
            let mut stmt =
                tx.prepare("SELECT DISTINCT session_id FROM messages WHERE id > ?1 AND id <= ?2")?;
            for id in stmt.query_map(params![rowid, max], |r| r.get::<_, String>(0))? {
                ids.insert(id?);
            }
            let updated = ms("updated_at");
            let mut stmt = tx.prepare(&format!(
                "SELECT id FROM sessions WHERE {updated} > ?1 OR {updated} >= ?2"
            ))?;
            for id in stmt.query_map(params![mark.updated, recent], |r| r.get::<_, String>(0))? {
                ids.insert(id?);
            }
        }
        let updated: i64 = tx.query_row(
            &format!(
                "SELECT coalesce(max({}), 0) FROM sessions",
                ms("updated_at")
            ),
            [],
            |r| r.get(0),
        )?;
        tx.finish()?;
        Ok((
            ids,
            Mark {
                rowids: vec![max],
                updated: updated.max(mark.updated),
            },
        ))
    }

    fn session(
        conn: &Connection,
        id: &str,
        prices: &Prices,
    ) -> rusqlite::Result<Option<GooseSession>> {
        let tx = conn.unchecked_transaction()?;
        // Older schemas have no token columns, or no session type.
        let col = |c: &str, or: &str| -> rusqlite::Result<String> {
            Ok(if has_column(&tx, "sessions", c)? {
                c.to_owned()
            } else {
                or.to_owned()
            })
        };
        let sql = format!(
            "SELECT name, description, working_dir, {created}, {updated}, {kind}, \
             {acc_in}, {acc_out}, {acc_total}, {inp}, {out}, {total}, {model} \
             FROM sessions WHERE id = ?1",
            created = ms("created_at"),
            updated = ms("updated_at"),
            kind = col("session_type", "'user'")?,
            acc_in = col("accumulated_input_tokens", "NULL")?,
            acc_out = col("accumulated_output_tokens", "NULL")?,
            acc_total = col("accumulated_total_tokens", "NULL")?,
            inp = col("input_tokens", "NULL")?,
            out = col("output_tokens", "NULL")?,
            total = col("total_tokens", "NULL")?,
            model = col("model_config_json", "NULL")?,
        );
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            [Option<i64>; 6],
            Option<String>,
        );
        let row: Option<Row> = tx
            .query_row(&sql, [id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    [
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                        r.get(11)?,
                    ],
                    r.get(12)?,
                ))
            })
            .optional()?;
        let Some((name, description, cwd, created, updated, kind, tokens, model_json)) = row else {
            return Ok(None);
        };
        if kind.as_deref() == Some("hidden") {
            return Ok(None);
        }
        let last: Option<(String, String, i64)> = tx
            .query_row(
                "SELECT role, content_json, created_timestamp FROM messages \
                 WHERE session_id = ?1 ORDER BY id DESC LIMIT 1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((role, content, last_at)) = last else {
            return Ok(None); // no message yet: nothing to show
        };
        let content: Value = serde_json::from_str(&content).unwrap_or(Value::Null);
        let state = match (role.as_str(), tool_of(&content)) {
            ("assistant", Some(tool)) => Last::ToolAsked(tool),
            ("assistant", None) => Last::Answered,
            _ => Last::Working,
        };
        let first_prompt = {
            let mut stmt = tx.prepare(
                "SELECT content_json FROM messages WHERE session_id = ?1 AND role = 'user' \
                 ORDER BY id LIMIT 8",
            )?;
            let rows = stmt.query_map([id], |r| r.get::<_, String>(0))?;
            let mut found = None;
            for r in rows {
                if let Some(t) = serde_json::from_str::<Value>(&r?)
                    .ok()
                    .as_ref()
                    .and_then(text_of)
                {
                    found = Some(t);
                    break;
                }
            }
            found
        };
        tx.finish()?;
        let [acc_in, acc_out, acc_total, inp, out, total] = tokens;
        let (input, output, total) = if acc_in.is_some() || acc_out.is_some() {
            (acc_in, acc_out, acc_total)
        } else {
            (inp, out, total)
        };
        let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        let (input, output, total) = (n(input), n(output), n(total));
        let usage = Usage {
            input_tokens: input,
            output_tokens: output + total.saturating_sub(input + output),
            cache_read_tokens: 0,
            cache_write_tokens: 0,
        };
        let model = model_json
            .and_then(|j| serde_json::from_str::<Value>(&j).ok())
            .and_then(|v| {
                v.get("model_name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        let mut cost = CostSum::default();
        if let Some(m) = &model {
            cost.add(prices, m, &usage, 1.0);
        }
        let title = [name, description]
            .into_iter()
            .flatten()
            .find(|t| !t.trim().is_empty())
            .or(first_prompt)
            .map(|t| cut_title(&t));
        let created = Millis(created.unwrap_or(last_at * 1000));
        let active = Millis((last_at * 1000).max(updated.unwrap_or(0)));
        Ok(Some(GooseSession {
            facts: SessionFacts {
                title,
                cwd: cwd.filter(|c| !c.is_empty()),
                model,
                created,
                active,
                usage,
                cost,
            },
            last: state,
        }))
    }

    fn resume_command(session: &str, cwd: Option<&str>) -> Option<String> {
        super::formats::resume(
            cwd,
            &["goose", "session", "--resume", "--session-id", session],
        )
    }
}

/// `agentctl logs` of a Goose session: its prompts, answers and tools, read from `db`.
pub fn render_log(db: &Path, session: &str) -> Result<String, String> {
    let conn = super::databases::open_read_only(db)?;
    let read = || -> rusqlite::Result<String> {
        let mut out = String::new();
        let mut stmt = conn
            .prepare("SELECT role, content_json FROM messages WHERE session_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map([session], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (role, content) = row?;
            let Ok(content) = serde_json::from_str::<Value>(&content) else {
                continue;
            };
            let who = if role == "user" { "you" } else { "goose" };
            if let Some(t) = text_of(&content) {
                super::transcript::say(&mut out, who, &t);
            }
            for c in content.as_array().into_iter().flatten() {
                if c.get("type").and_then(Value::as_str) == Some("toolRequest") {
                    out.push_str(&format!(
                        "  → {}\n",
                        c.pointer("/toolCall/value/name")
                            .and_then(Value::as_str)
                            .unwrap_or("tool")
                    ));
                }
            }
        }
        Ok(out)
    };
    read().map_err(|e| format!("cannot read {}: {e}", db.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goose's schema (version 10's tables, the columns agentd reads), in memory.
    fn schema(conn: &Connection) {
        conn.execute_batch(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '',
               description TEXT NOT NULL DEFAULT '', user_set_name BOOLEAN DEFAULT FALSE,
               session_type TEXT NOT NULL DEFAULT 'user', working_dir TEXT NOT NULL,
               created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
               extension_data TEXT DEFAULT '{}', total_tokens INTEGER, input_tokens INTEGER,
               output_tokens INTEGER, accumulated_total_tokens INTEGER, accumulated_input_tokens INTEGER,
               accumulated_output_tokens INTEGER, schedule_id TEXT, recipe_json TEXT,
               user_recipe_values_json TEXT, provider_name TEXT, model_config_json TEXT);
             CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT,
               session_id TEXT NOT NULL REFERENCES sessions(id), role TEXT NOT NULL,
               content_json TEXT NOT NULL, created_timestamp INTEGER NOT NULL,
               timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP, tokens INTEGER, metadata_json TEXT);
             CREATE INDEX idx_messages_session ON messages(session_id);",
        )
        .unwrap();
    }

    fn msg(conn: &Connection, sid: &str, role: &str, at: i64, content: Value) {
        conn.execute(
            "INSERT INTO messages (message_id, session_id, role, content_json, created_timestamp) \
             VALUES ('m', ?1, ?2, ?3, ?4)",
            params![sid, role, content.to_string(), at],
        )
        .unwrap();
    }

    #[test]
    fn statuses_and_tokens_follow_the_table() {
        let conn = Connection::open_in_memory().unwrap();
        schema(&conn);
        conn.execute(
            "INSERT INTO sessions (id, name, description, working_dir, created_at, updated_at, \
             total_tokens, input_tokens, output_tokens, accumulated_total_tokens, \
             accumulated_input_tokens, accumulated_output_tokens, provider_name, model_config_json) \
             VALUES ('20260724_1', '', 'demo session', '/workspace/demo', '2026-07-24 11:00:00', \
             '2026-07-24 11:00:02', 50, 30, 10, 1300, 1000, 200, 'anthropic', \
             '{\"model_name\":\"claude-sonnet-4-5\"}')",
            [],
        )
        .unwrap();
        let read = |c: &Connection| Goose::session(c, "20260724_1", &Prices::builtin()).unwrap();
        assert!(read(&conn).is_none(), "no message yet");
        let t = 1_784_890_801; // 2026-07-24 11:00:01
        msg(
            &conn,
            "20260724_1",
            "user",
            t,
            serde_json::json!([{"type": "text", "text": "inspect the sqlite fixture"}]),
        );
        let s = read(&conn).unwrap();
        let at = |s: &GooseSession, ms: i64| s.conversation(Millis(s.facts.active.0 + ms)).status;
        assert_eq!(at(&s, 0), Status::Working);
        assert_eq!(s.facts.title.as_deref(), Some("demo session"));
        msg(
            &conn,
            "20260724_1",
            "assistant",
            t + 1,
            serde_json::json!([{"type": "toolRequest", "id": "t1",
            "toolCall": {"status": "success", "value": {"name": "developer__shell", "arguments": {"command": "ls"}}}}]),
        );
        let s = read(&conn).unwrap();
        assert_eq!(at(&s, 1000), Status::Working);
        let c = s.conversation(Millis(s.facts.active.0 + 5000));
        assert_eq!(
            (c.status, c.status_detail.as_deref()),
            (
                Status::Blocked,
                Some("waiting for approval: developer__shell")
            )
        );
        msg(
            &conn,
            "20260724_1",
            "user",
            t + 2,
            serde_json::json!([{"type": "toolResponse", "id": "t1", "toolResult": {"status": "success", "value": []}}]),
        );
        assert_eq!(at(&read(&conn).unwrap(), 60_000), Status::Working);
        msg(
            &conn,
            "20260724_1",
            "assistant",
            t + 3,
            serde_json::json!([{"type": "text", "text": "the sqlite rows are readable"}]),
        );
        let s = read(&conn).unwrap();
        assert_eq!(at(&s, 1000), Status::Working);
        assert_eq!(at(&s, 10_000), Status::Success);
        assert_eq!(
            at(&read(&conn).unwrap(), ABANDONED_AFTER_MS - 1),
            Status::Success
        );
        let c = s.conversation(Millis(0));
        assert_eq!(
            (c.usage.input_tokens, c.usage.output_tokens),
            (1000, 300),
            "accumulated; reasoning as output"
        );
        let want = Prices::builtin()
            .cost(
                "claude-sonnet-4-5",
                &Usage {
                    input_tokens: 1000,
                    output_tokens: 300,
                    ..Usage::default()
                },
            )
            .unwrap();
        assert_eq!(c.cost_usd, Some((want * 1e6).round() / 1e6));
        assert_eq!(c.cwd.as_deref(), Some("/workspace/demo"));
        assert_eq!(c.created_at, Some(Millis(1_784_890_800_000)));
        // Changes: by message row and by session update.
        let (ids, mark) = Goose::changed(&conn, &Mark::default(), i64::MAX).unwrap();
        assert_eq!(ids, BTreeSet::from(["20260724_1".to_owned()]));
        let (ids, same) = Goose::changed(&conn, &mark, i64::MAX).unwrap();
        assert!(ids.is_empty());
        assert_eq!(same, mark);
        conn.execute("UPDATE sessions SET updated_at = '2026-07-24 11:05:00'", [])
            .unwrap();
        let (ids, _) = Goose::changed(&conn, &mark, i64::MAX).unwrap();
        assert_eq!(ids.len(), 1);
        // An older schema without token columns still reads.
        let old = Connection::open_in_memory().unwrap();
        old.execute_batch(
            "create table sessions (id text primary key, name text not null default '',
               description text not null default '', user_set_name boolean default false,
               session_type text not null default 'user', working_dir text not null,
               created_at timestamp default current_timestamp, updated_at timestamp default current_timestamp);
             create table messages (id integer primary key autoincrement, message_id text,
               session_id text not null references sessions(id), role text not null,
               content_json text not null, created_timestamp integer not null,
               timestamp timestamp default current_timestamp);
             insert into sessions values ('20250724_2', 'demo', 'sqlite fixture', 0, 'user', '/workspace/demo', '2026-07-24T11:00:00Z', '2026-07-24T11:00:02Z');
             insert into messages values (1, 'msg-u1', '20250724_2', 'user', '[{\"type\":\"text\",\"text\":\"inspect the sqlite fixture\"}]', 1784282401, '2026-07-24T11:00:01Z');
             insert into messages values (2, 'msg-a1', '20250724_2', 'assistant', '[{\"type\":\"text\",\"text\":\"the sqlite rows are readable\"}]', 1784282402, '2026-07-24T11:00:02Z');",
        )
        .unwrap();
        let s = Goose::session(&old, "20250724_2", &Prices::builtin())
            .unwrap()
            .unwrap();
        let c = s.conversation(Millis(s.facts.active.0 + 60_000));
        assert_eq!(
            (c.status, c.title.as_deref(), c.usage),
            (Status::Success, Some("demo"), Usage::default())
        );
        assert_eq!(
            render_log_of(&old, "20250724_2"),
            "[you] inspect the sqlite fixture\n[goose] the sqlite rows are readable\n"
        );
    }

    fn render_log_of(conn: &Connection, id: &str) -> String {
        let dir = std::env::temp_dir().join(format!("agentd-goose-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sessions.db");
        let _ = std::fs::remove_file(&path);
        conn.execute("VACUUM INTO ?1", [path.to_str().unwrap()])
            .unwrap();
        let out = render_log(&path, id).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        out
    }
}
