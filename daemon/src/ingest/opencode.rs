//! OpenCode sessions, read from its SQLite database (`opencode.db`, or `opencode-<channel>.db`,
//! in `$XDG_DATA_HOME/opencode`, else `~/.local/share/opencode`): tables `session` (title,
//! directory, `parent_id` for sub-agents), `message` and `part`, each row's `data` a JSON
//! document. A session's sub-agent sessions add their tokens and cost to it and are not shown
//! on their own. Releases before 1.2 kept the same documents as files
//! ([`super::opencode_storage`]); both are folded by [`fold_session`] under the rules below.
//!
//! | latest message of the session | status | status_detail |
//! |---|---|---|
//! | a user message with no answer yet | working | |
//! | an assistant message still streaming (no `time.completed`) | working | |
//! | … with a tool part `pending` and no row written for 5 s | blocked | waiting for approval: TOOL (inferred: OpenCode keeps permission prompts in memory) |
//! | an assistant message completed with `finish: "tool-calls"` | working | (the next step follows) |
//! | an assistant message completed otherwise | success | |
//! | an assistant message with `error` `MessageAbortedError` | canceled | interrupted |
//! | an assistant message with another `error` | failed | its message (or its name) |
//! | an open turn with no row written for 30 minutes | failed | no activity for 30 minutes; the agent may have been closed |
//!
//! Tokens, as ccusage counts them: each assistant message with `tokens`, `modelID` and
//! `providerID` once: input `tokens.input`, output `tokens.output` + `tokens.reasoning` (billed
//! as output, as for every other CLI), cache reads and writes `tokens.cache.read`/`write`
//! (`tokens.total` as input when the parts are all zero). Cost: the message's own `cost` when it is above zero (OpenCode prices each
//! response), else the built-in price of its model. Title: the session's, unless it is still
//! OpenCode's placeholder ("New session - …"), then the first prompt.

use super::convo::{
    ABANDONED, ABANDONED_AFTER_MS, BLOCKED_AFTER_MS, Conversation, CostSum, cut_title,
};
use super::databases::{Database, Mark, SessionFacts, SessionView};
use crate::model::Millis;
use crate::prices::Prices;
use crate::sources::SourceKind;
use agentd_wire::{Status, Usage};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The sub-agent sessions under a session, itself included, as a CTE `tree(id)`.
const TREE: &str = "WITH RECURSIVE tree(id) AS (SELECT ?1 UNION ALL \
     SELECT s.id FROM session s JOIN tree t ON s.parent_id = t.id)";

/// Where the latest message leaves the session.
#[derive(Debug, Clone, PartialEq)]
enum Last {
    /// A prompt with no answer yet.
    Asked,
    /// An answer being written; the tool it waits on when one is `pending`.
    Streaming(Option<String>),
    /// An answer complete; `true` when it asked for tools (the next step follows).
    Answered(bool),
    Ended(Status, Option<String>),
}

/// One OpenCode session, read from the database.
#[derive(Debug, Clone)]
pub struct OpenCodeSession {
    facts: SessionFacts,
    last: Last,
}

impl SessionView for OpenCodeSession {
    fn conversation(&self, now: Millis) -> Conversation {
        let quiet = self.facts.quiet(now);
        let (status, detail) = match &self.last {
            Last::Ended(s, d) => (*s, d.clone()),
            Last::Answered(false) => (Status::Success, None),
            _ if quiet >= ABANDONED_AFTER_MS => (Status::Failed, Some(ABANDONED.to_owned())),
            Last::Streaming(Some(tool)) if quiet >= BLOCKED_AFTER_MS => (
                Status::Blocked,
                Some(format!("waiting for approval: {tool}")),
            ),
            _ => (Status::Working, None),
        };
        self.facts.conversation(status, detail)
    }
}

fn text_of(part: &Value) -> Option<&str> {
    (part.get("type").and_then(Value::as_str) == Some("text"))
        .then(|| part.get("text").and_then(Value::as_str))
        .flatten()
        .filter(|t| !t.trim().is_empty())
}

/// What one message's JSON says of its usage: `None` when ccusage would not count it.
fn message_usage(m: &Value) -> Option<(Usage, &str)> {
    let t = m.get("tokens")?;
    let model = m.get("modelID").and_then(Value::as_str)?;
    m.get("providerID").and_then(Value::as_str)?;
    let n = |p: &str| t.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let mut u = Usage {
        input_tokens: n("/input"),
        // Reasoning is billed as output (and priced so by ccusage, which shows it apart).
        output_tokens: n("/output") + n("/reasoning"),
        cache_read_tokens: n("/cache/read"),
        cache_write_tokens: n("/cache/write"),
    };
    if u == Usage::default() {
        u.input_tokens = n("/total");
    }
    Some((u, model))
}

fn error_of(m: &Value) -> Option<(Status, Option<String>)> {
    let e = m.get("error").filter(|e| !e.is_null())?;
    let name = e.get("name").and_then(Value::as_str).unwrap_or("error");
    if name == "MessageAbortedError" {
        return Some((Status::Canceled, Some("interrupted".into())));
    }
    let msg = e
        .pointer("/data/message")
        .or_else(|| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| cut_title(m.lines().next().unwrap_or(m)))
        .unwrap_or_else(|| name.to_owned());
    Some((Status::Failed, Some(msg)))
}

/// What a session says of itself before its messages (its row, or its file in the JSON tree).
#[derive(Debug, Clone)]
pub(crate) struct SessionHead {
    pub title: Option<String>,
    pub cwd: Option<String>,
    /// Epoch ms.
    pub created: i64,
}

/// One message of a session or of one of its sub-agent sessions.
#[derive(Debug, Clone)]
pub(crate) struct MessageRecord {
    pub id: String,
    /// The session it belongs to (the top session, or a sub-agent's).
    pub session: String,
    /// When it was last written (epoch ms).
    pub updated: i64,
    /// Its JSON document (`Null` when it could not be read: counted as nothing).
    pub data: Value,
}

/// Folds a top session's messages (its own and its sub-agents', in creation order, then by id)
/// into the session, wherever they are kept: `part_active` says when the session's own parts
/// were last written, `parts` reads one message's parts (ordered by id) when the status or the
/// title needs them (the first prompt, the latest answer). `None` for a session with no
/// message yet.
pub(crate) fn fold_session<E>(
    head: SessionHead,
    top: &str,
    messages: impl IntoIterator<Item = Result<MessageRecord, E>>,
    part_active: impl FnOnce() -> Result<Option<i64>, E>,
    mut parts: impl FnMut(&str) -> Result<Vec<Value>, E>,
    prices: &Prices,
) -> Result<Option<OpenCodeSession>, E> {
    let mut usage = Usage::default();
    let mut cost = CostSum::default();
    let mut model = None;
    let mut last: Option<(String, Value)> = None;
    let mut first_user: Option<String> = None;
    let mut active = head.created;
    for m in messages {
        let MessageRecord {
            id: mid,
            session: sid,
            updated,
            data: m,
        } = m?;
        if let Some((u, m_model)) = message_usage(&m) {
            usage.add(&u);
            match m.get("cost").and_then(Value::as_f64).filter(|c| *c > 0.0) {
                Some(c) => {
                    cost.micros += c * 1e6;
                    cost.any = true;
                }
                None => cost.add(prices, m_model, &u, 1.0),
            }
        }
        if sid != top || m.is_null() {
            continue; // a sub-agent's message: its tokens only
        }
        active = active.max(updated);
        if let Some(mm) = m
            .get("modelID")
            .or_else(|| m.pointer("/model/modelID"))
            .and_then(Value::as_str)
        {
            model = Some(mm.to_owned());
        }
        if first_user.is_none() && m.get("role").and_then(Value::as_str) == Some("user") {
            first_user = Some(mid.clone());
        }
        last = Some((mid, m));
    }
    let Some((last_id, last_msg)) = last else {
        return Ok(None); // a session with no message yet says nothing
    };
    active = active.max(part_active()?.unwrap_or(0));
    let state = if last_msg.get("role").and_then(Value::as_str) == Some("user") {
        Last::Asked
    } else if let Some((s, d)) = error_of(&last_msg) {
        Last::Ended(s, d)
    } else if last_msg
        .pointer("/time/completed")
        .is_some_and(|c| !c.is_null())
    {
        Last::Answered(last_msg.get("finish").and_then(Value::as_str) == Some("tool-calls"))
    } else {
        let pending = parts(&last_id)?.into_iter().find_map(|p| {
            (p.get("type").and_then(Value::as_str) == Some("tool")
                && p.pointer("/state/status").and_then(Value::as_str) == Some("pending"))
            .then(|| {
                p.get("tool")
                    .and_then(Value::as_str)
                    .unwrap_or("a tool")
                    .to_owned()
            })
        });
        Last::Streaming(pending)
    };
    let SessionHead {
        title,
        cwd,
        created,
    } = head;
    let placeholder = title
        .as_deref()
        .is_none_or(|t| t.trim().is_empty() || t.starts_with("New session - "));
    let title = if placeholder {
        match &first_user {
            Some(mid) => parts(mid)?
                .iter()
                .find_map(text_of)
                .map(cut_title)
                .or(title),
            None => title,
        }
    } else {
        title.map(|t| cut_title(&t))
    };
    Ok(Some(OpenCodeSession {
        facts: SessionFacts {
            title,
            cwd: cwd.filter(|c| !c.is_empty()),
            model,
            created: Millis(created),
            active: Millis(active),
            usage,
            cost,
        },
        last: state,
    }))
}

/// OpenCode's database.
pub struct OpenCode;

impl OpenCode {
    /// The session a row's session belongs to: its top parent.
    fn root_of(conn: &Connection, id: &str) -> rusqlite::Result<Option<String>> {
        conn.query_row(
            "WITH RECURSIVE up(id, parent) AS (SELECT id, parent_id FROM session WHERE id = ?1 \
             UNION ALL SELECT s.id, s.parent_id FROM session s JOIN up ON s.id = up.parent) \
             SELECT id FROM up WHERE parent IS NULL LIMIT 1",
            [id],
            |r| r.get(0),
        )
        .optional()
    }

    /// Session ids of the rows of `table` past `rowid`, and its largest rowid.
    fn touched(
        conn: &Connection,
        table: &str,
        rowid: i64,
        out: &mut BTreeSet<String>,
    ) -> rusqlite::Result<i64> {
        let max: i64 = conn.query_row(
            &format!("SELECT coalesce(max(rowid), 0) FROM {table}"),
            [],
            |r| r.get(0),
        )?;
        if max > rowid {
            let mut stmt = conn.prepare(&format!(
                "SELECT DISTINCT session_id FROM {table} WHERE rowid > ?1 AND rowid <= ?2"
            ))?;
            for id in stmt.query_map(params![rowid, max], |r| r.get::<_, String>(0))? {
                out.insert(id?);
            }
        }
        Ok(max)
    }
}

impl Database for OpenCode {
    type Session = OpenCodeSession;
    type Tree = super::opencode_storage::Storage;
    const KIND: SourceKind = SourceKind::OpenCode;

    fn watch_dirs(root: &Path) -> Vec<PathBuf> {
        vec![root.to_owned()]
    }

    fn is_database(path: &Path) -> bool {
        path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n == "opencode.db" || (n.starts_with("opencode-") && n.ends_with(".db"))
        })
    }

    fn changed(
        conn: &Connection,
        mark: &Mark,
        recent: i64,
    ) -> rusqlite::Result<(BTreeSet<String>, Mark)> {
        // One read transaction: what is read and the new mark agree.
        let tx = conn.unchecked_transaction()?;
        let rowid = |i: usize| mark.rowids.get(i).copied().unwrap_or(0);
        let mut touched = BTreeSet::new();
        let message = Self::touched(&tx, "message", rowid(0), &mut touched)?;
        let part = Self::touched(&tx, "part", rowid(1), &mut touched)?;
        let updated: i64 = tx.query_row(
            "SELECT coalesce(max(time_updated), 0) FROM session",
            [],
            |r| r.get(0),
        )?;
        {
            let mut stmt =
                tx.prepare("SELECT id FROM session WHERE time_updated > ?1 OR time_updated >= ?2")?;
            for id in stmt.query_map(params![mark.updated, recent], |r| r.get::<_, String>(0))? {
                touched.insert(id?);
            }
        }
        let mut roots = BTreeSet::new();
        for id in touched {
            if let Some(root) = Self::root_of(&tx, &id)? {
                roots.insert(root);
            }
        }
        tx.finish()?;
        Ok((
            roots,
            Mark {
                rowids: vec![message, part],
                updated: updated.max(mark.updated),
            },
        ))
    }

    fn session(
        conn: &Connection,
        id: &str,
        prices: &Prices,
    ) -> rusqlite::Result<Option<OpenCodeSession>> {
        let tx = conn.unchecked_transaction()?;
        let Some((head, parent)) = tx
            .query_row(
                "SELECT title, directory, time_created, parent_id FROM session WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        SessionHead {
                            title: r.get(0)?,
                            cwd: r.get(1)?,
                            created: r.get(2)?,
                        },
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()?
        else {
            return Ok(None);
        };
        if parent.is_some() {
            return Ok(None); // a sub-agent: counted in its parent
        }
        let session = {
            let mut stmt = tx.prepare(&format!(
                "{TREE} SELECT m.id, m.session_id, m.time_updated, m.data FROM message m \
                 WHERE m.session_id IN (SELECT id FROM tree) ORDER BY m.time_created, m.id"
            ))?;
            let rows = stmt.query_map([id], |r| {
                Ok(MessageRecord {
                    id: r.get(0)?,
                    session: r.get(1)?,
                    updated: r.get(2)?,
                    // A row of another shape counts as nothing.
                    data: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or(Value::Null),
                })
            })?;
            let part_active = || {
                tx.query_row(
                    "SELECT max(time_updated) FROM part WHERE session_id = ?1",
                    [id],
                    |r| r.get(0),
                )
            };
            let parts = |mid: &str| -> rusqlite::Result<Vec<Value>> {
                let mut stmt =
                    tx.prepare("SELECT data FROM part WHERE message_id = ?1 ORDER BY id")?;
                let rows = stmt.query_map([mid], |r| r.get::<_, String>(0))?;
                let mut out = Vec::new();
                for r in rows {
                    if let Ok(v) = serde_json::from_str(&r?) {
                        out.push(v);
                    }
                }
                Ok(out)
            };
            fold_session(head, id, rows, part_active, parts, prices)?
        };
        tx.finish()?;
        Ok(session)
    }

    fn resume_command(session: &str, cwd: Option<&str>) -> Option<String> {
        super::formats::resume(cwd, &["opencode", "--session", session])
    }

    fn has_session(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
        conn.query_row("SELECT 1 FROM session WHERE id = ?1", [id], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
    }
}

/// `agentctl logs` of an OpenCode session: its prompts, answers and tools, read from `db` (or
/// from its file, for a session of the JSON tree).
pub fn render_log(db: &Path, session: &str) -> Result<String, String> {
    if db.extension().is_some_and(|e| e == "json") {
        return super::opencode_storage::Storage::render_log(db, session);
    }
    let conn = super::databases::open_read_only(db)?;
    let read = || -> rusqlite::Result<String> {
        let tx = conn.unchecked_transaction()?;
        let mut out = String::new();
        let mut stmt = tx.prepare(
            "SELECT m.data, p.data FROM message m LEFT JOIN part p ON p.message_id = m.id \
             WHERE m.session_id = ?1 ORDER BY m.time_created, m.id, p.id",
        )?;
        let rows = stmt.query_map([session], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?;
        for row in rows {
            let (m, p) = row?;
            let (Ok(m), Some(Ok(p))) = (
                serde_json::from_str::<Value>(&m),
                p.map(|p| serde_json::from_str::<Value>(&p)),
            ) else {
                continue;
            };
            render_part(&mut out, &m, &p);
        }
        drop(stmt);
        tx.finish()?;
        Ok(out)
    };
    read().map_err(|e| format!("cannot read {}: {e}", db.display()))
}

/// One part of message `m` in a log: a prompt or an answer (not OpenCode's synthetic text),
/// or the tool it called.
pub(crate) fn render_part(out: &mut String, m: &Value, p: &Value) {
    let who = match m.get("role").and_then(Value::as_str) {
        Some("user") => "you",
        _ => "opencode",
    };
    match p.get("type").and_then(Value::as_str) {
        Some("text") if p.get("synthetic").and_then(Value::as_bool) != Some(true) => {
            if let Some(t) = text_of(p) {
                super::transcript::say(out, who, t);
            }
        }
        Some("tool") => out.push_str(&format!(
            "  → {}\n",
            p.get("tool").and_then(Value::as_str).unwrap_or("tool")
        )),
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A database in OpenCode's schema (the tables and indexes agentd reads), in memory.
    pub(crate) fn schema(conn: &Connection) {
        conn.execute_batch(
            "CREATE TABLE session (id text PRIMARY KEY, project_id text NOT NULL, parent_id text,
               slug text NOT NULL, directory text NOT NULL, title text NOT NULL, version text NOT NULL,
               time_created integer NOT NULL, time_updated integer NOT NULL, time_archived integer);
             CREATE INDEX session_parent_idx ON session (parent_id);
             CREATE TABLE message (id text PRIMARY KEY, session_id text NOT NULL,
               time_created integer NOT NULL, time_updated integer NOT NULL, data text NOT NULL);
             CREATE INDEX message_session_time_created_id_idx ON message (session_id, time_created, id);
             CREATE TABLE part (id text PRIMARY KEY, message_id text NOT NULL, session_id text NOT NULL,
               time_created integer NOT NULL, time_updated integer NOT NULL, data text NOT NULL);
             CREATE INDEX part_session_idx ON part (session_id);
             CREATE INDEX part_message_id_id_idx ON part (message_id, id);",
        )
        .unwrap();
    }

    fn session(conn: &Connection, id: &str, parent: Option<&str>, title: &str, t: i64) {
        conn.execute(
            "INSERT INTO session VALUES (?1, 'p', ?2, 's', '/src/app', ?3, '1.2.0', ?4, ?4, NULL)",
            params![id, parent, title, t],
        )
        .unwrap();
    }

    fn message(conn: &Connection, id: &str, sid: &str, t: i64, data: Value) {
        conn.execute(
            "INSERT OR REPLACE INTO message VALUES (?1, ?2, ?3, ?3, ?4)",
            params![id, sid, t, data.to_string()],
        )
        .unwrap();
    }

    fn part(conn: &Connection, id: &str, mid: &str, sid: &str, t: i64, data: Value) {
        conn.execute(
            "INSERT OR REPLACE INTO part VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![id, mid, sid, t, data.to_string()],
        )
        .unwrap();
    }

    fn assistant(t: i64, completed: bool, finish: &str, input: u64, cost: f64) -> Value {
        serde_json::json!({"role": "assistant", "parentID": "u1", "modelID": "claude-sonnet-4-5",
            "providerID": "anthropic", "mode": "build", "cost": cost,
            "time": if completed { serde_json::json!({"created": t, "completed": t + 500}) } else { serde_json::json!({"created": t}) },
            "tokens": {"input": input, "output": 20, "reasoning": 5, "cache": {"read": 100, "write": 10}},
            "finish": finish})
    }

    fn at(s: &OpenCodeSession, after_ms: i64) -> (Status, Option<String>) {
        let c = s.conversation(Millis(s.facts.active.0 + after_ms));
        (c.status, c.status_detail)
    }

    fn read(conn: &Connection, id: &str) -> OpenCodeSession {
        OpenCode::session(conn, id, &Prices::builtin())
            .unwrap()
            .expect("a session")
    }

    #[test]
    fn statuses_tokens_and_titles_follow_the_table() {
        let conn = Connection::open_in_memory().unwrap();
        schema(&conn);
        let t = 1_784_000_000_000;
        session(
            &conn,
            "ses_1",
            None,
            "New session - 2026-07-14T03:33:20.000Z",
            t,
        );
        assert!(
            OpenCode::session(&conn, "ses_1", &Prices::builtin())
                .unwrap()
                .is_none(),
            "no message yet"
        );
        message(
            &conn,
            "msg_u1",
            "ses_1",
            t + 1,
            serde_json::json!({"role": "user", "time": {"created": t + 1},
            "model": {"providerID": "anthropic", "modelID": "claude-sonnet-4-5"}}),
        );
        part(
            &conn,
            "prt_u1",
            "msg_u1",
            "ses_1",
            t + 1,
            serde_json::json!({"type": "text", "text": "Fix the login test"}),
        );
        let s = read(&conn, "ses_1");
        assert_eq!(at(&s, 0).0, Status::Working);
        assert_eq!(
            s.facts.title.as_deref(),
            Some("Fix the login test"),
            "the placeholder title is replaced"
        );
        assert_eq!(at(&s, ABANDONED_AFTER_MS).0, Status::Failed);
        // Streaming, a tool pending: blocked after 5 quiet seconds (inferred).
        message(
            &conn,
            "msg_a1",
            "ses_1",
            t + 2,
            assistant(t + 2, false, "", 1000, 0.0),
        );
        part(
            &conn,
            "prt_a1",
            "msg_a1",
            "ses_1",
            t + 3,
            serde_json::json!({"type": "tool", "tool": "bash",
            "callID": "c1", "state": {"status": "pending", "input": {}}}),
        );
        let s = read(&conn, "ses_1");
        assert_eq!(at(&s, 1000).0, Status::Working);
        assert_eq!(
            at(&s, 5000),
            (Status::Blocked, Some("waiting for approval: bash".into()))
        );
        part(
            &conn,
            "prt_a1",
            "msg_a1",
            "ses_1",
            t + 4,
            serde_json::json!({"type": "tool", "tool": "bash",
            "callID": "c1", "state": {"status": "running", "input": {}}}),
        );
        assert_eq!(
            at(&read(&conn, "ses_1"), 5000).0,
            Status::Working,
            "a running tool works"
        );
        message(
            &conn,
            "msg_a1",
            "ses_1",
            t + 2,
            assistant(t + 2, true, "tool-calls", 1000, 0.0),
        );
        assert_eq!(
            at(&read(&conn, "ses_1"), 60_000).0,
            Status::Working,
            "the next step follows"
        );
        message(
            &conn,
            "msg_a2",
            "ses_1",
            t + 5,
            assistant(t + 5, true, "stop", 2000, 0.25),
        );
        let s = read(&conn, "ses_1");
        assert_eq!(at(&s, 0), (Status::Success, None));
        // Tokens: each message once; a stored cost is used, a zero one priced from the table.
        let c = s.conversation(Millis(t));
        assert_eq!(
            (
                c.usage.input_tokens,
                c.usage.output_tokens,
                c.usage.cache_read_tokens,
                c.usage.cache_write_tokens
            ),
            (3000, 50, 200, 20)
        );
        let priced = Prices::builtin()
            .cost(
                "claude-sonnet-4-5",
                &Usage {
                    input_tokens: 1000,
                    // 20 output and 5 reasoning tokens.
                    output_tokens: 25,
                    cache_read_tokens: 100,
                    cache_write_tokens: 10,
                },
            )
            .unwrap();
        assert_eq!(c.cost_usd, Some(((0.25 + priced) * 1e6).round() / 1e6));
        assert_eq!(c.model.as_deref(), Some("claude-sonnet-4-5"));
        // A sub-agent's tokens add to its parent, which alone is an item.
        session(&conn, "ses_child", Some("ses_1"), "Explore", t + 6);
        message(
            &conn,
            "msg_c1",
            "ses_child",
            t + 7,
            assistant(t + 7, true, "stop", 500, 0.0),
        );
        assert_eq!(read(&conn, "ses_1").facts.usage.input_tokens, 3500);
        assert!(
            OpenCode::session(&conn, "ses_child", &Prices::builtin())
                .unwrap()
                .is_none()
        );
        // Errors.
        let mut aborted = assistant(t + 8, true, "stop", 0, 0.0);
        aborted["error"] =
            serde_json::json!({"name": "MessageAbortedError", "data": {"message": "aborted"}});
        message(&conn, "msg_a3", "ses_1", t + 8, aborted);
        assert_eq!(
            at(&read(&conn, "ses_1"), 0),
            (Status::Canceled, Some("interrupted".into()))
        );
        let mut failed = assistant(t + 9, false, "", 0, 0.0);
        failed["error"] = serde_json::json!({"name": "APIError", "data": {"message": "Overloaded\nretry", "statusCode": 529}});
        message(&conn, "msg_a4", "ses_1", t + 9, failed);
        assert_eq!(
            at(&read(&conn, "ses_1"), 0),
            (Status::Failed, Some("Overloaded".into()))
        );
    }

    #[test]
    fn changes_are_found_by_row_and_mapped_to_their_top_session() {
        let conn = Connection::open_in_memory().unwrap();
        schema(&conn);
        let t = 1_784_000_000_000;
        session(&conn, "ses_1", None, "Build", t);
        session(&conn, "ses_2", Some("ses_1"), "Sub", t);
        message(
            &conn,
            "msg_1",
            "ses_2",
            t,
            assistant(t, true, "stop", 10, 0.0),
        );
        let (ids, mark) = OpenCode::changed(&conn, &Mark::default(), i64::MAX).unwrap();
        assert_eq!(ids, BTreeSet::from(["ses_1".to_owned()]));
        let (ids, same) = OpenCode::changed(&conn, &mark, i64::MAX).unwrap();
        assert!(ids.is_empty(), "{ids:?}");
        assert_eq!(same, mark);
        part(
            &conn,
            "prt_1",
            "msg_1",
            "ses_2",
            t + 1,
            serde_json::json!({"type": "text", "text": "x"}),
        );
        let (ids, _) = OpenCode::changed(&conn, &mark, i64::MAX).unwrap();
        assert_eq!(ids, BTreeSet::from(["ses_1".to_owned()]));
        // Recently updated sessions are asked for too.
        let (ids, _) = OpenCode::changed(&conn, &mark, t).unwrap();
        assert_eq!(ids, BTreeSet::from(["ses_1".to_owned()]));
    }
}
