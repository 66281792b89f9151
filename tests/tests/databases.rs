//! Conversation stores kept in SQLite databases (OpenCode, Goose) under a running daemon: the
//! databases written as the tools write them (WAL mode, rows inserted and updated in place while
//! agentd reads), the items seen changing over the socket, the tool never locked out, restarts
//! compared with a fresh ingest of the final database, and files that are not databases.

use agentd_tests::{Daemon, Options, WAIT, now_ms, source_in};
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// OpenCode's tables (drizzle schema: the columns and indexes of its `session`, `message` and
/// `part` tables), in WAL mode as OpenCode opens its database.
fn opencode_db(path: &Path) -> Connection {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE `project` (`id` text PRIMARY KEY, `worktree` text NOT NULL,
           `time_created` integer NOT NULL, `time_updated` integer NOT NULL);
         CREATE TABLE `session` (`id` text PRIMARY KEY, `project_id` text NOT NULL, `parent_id` text,
           `slug` text NOT NULL, `directory` text NOT NULL, `title` text NOT NULL, `version` text NOT NULL,
           `share_url` text, `time_created` integer NOT NULL, `time_updated` integer NOT NULL,
           `time_compacting` integer, `time_archived` integer);
         CREATE INDEX `session_project_idx` ON `session` (`project_id`);
         CREATE INDEX `session_parent_idx` ON `session` (`parent_id`);
         CREATE TABLE `message` (`id` text PRIMARY KEY, `session_id` text NOT NULL,
           `time_created` integer NOT NULL, `time_updated` integer NOT NULL, `data` text NOT NULL);
         CREATE INDEX `message_session_time_created_id_idx` ON `message` (`session_id`,`time_created`,`id`);
         CREATE TABLE `part` (`id` text PRIMARY KEY, `message_id` text NOT NULL, `session_id` text NOT NULL,
           `time_created` integer NOT NULL, `time_updated` integer NOT NULL, `data` text NOT NULL);
         CREATE INDEX `part_session_idx` ON `part` (`session_id`);
         CREATE INDEX `part_message_id_id_idx` ON `part` (`message_id`,`id`);",
    )
    .unwrap();
    conn
}

fn oc_session(c: &Connection, id: &str, parent: Option<&str>, title: &str) {
    let t = now_ms();
    c.execute(
        "INSERT INTO session (id, project_id, parent_id, slug, directory, title, version, \
         time_created, time_updated) VALUES (?1, 'global', ?2, 'slug', '/src/shop', ?3, '1.2.10', ?4, ?4)",
        params![id, parent, title, t],
    )
    .unwrap();
}

/// Inserts or rewrites a message (OpenCode updates an assistant message in place as it streams
/// and completes), touching its session as OpenCode does.
fn oc_message(c: &Connection, id: &str, session: &str, created: i64, data: Value) {
    let t = now_ms();
    c.execute(
        "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT(id) DO UPDATE SET time_updated = ?4, data = ?5",
        params![id, session, created, t, data.to_string()],
    )
    .unwrap();
    c.execute(
        "UPDATE session SET time_updated = ?2 WHERE id = ?1",
        params![session, t],
    )
    .unwrap();
}

fn oc_part(c: &Connection, id: &str, message: &str, session: &str, data: Value) {
    let t = now_ms();
    c.execute(
        "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?4, ?5) \
         ON CONFLICT(id) DO UPDATE SET time_updated = ?4, data = ?5",
        params![id, message, session, t, data.to_string()],
    )
    .unwrap();
}

fn oc_answer(created: i64, completed: bool, input: u64, cost: f64) -> Value {
    let mut time = json!({"created": created});
    if completed {
        time["completed"] = json!(created + 900);
    }
    json!({"role": "assistant", "parentID": "msg_u1", "modelID": "claude-sonnet-4-5",
        "providerID": "anthropic", "mode": "build", "agent": "build",
        "path": {"cwd": "/src/shop", "root": "/src/shop"}, "cost": cost, "time": time,
        "tokens": {"input": input, "output": 120, "reasoning": 30, "cache": {"read": 4000, "write": 200}},
        "finish": if completed { "stop" } else { "" }})
}

/// Every item of `harness`, without what moves with the clock.
fn snapshot(d: &Daemon, harness: &str) -> Vec<Value> {
    let page = d.get(&format!("/v1/agents?tab=all&harness={harness}&limit=1000"));
    let mut items = page["items"].as_array().unwrap().clone();
    items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    for i in &mut items {
        if i["status"] == "working" || i["status"] == "blocked" {
            i["duration_ms"] = Value::Null;
        }
        // Time spent waiting is history the database does not hold: a fresh ingest cannot
        // know it.
        i["blocked_ms"] = Value::Null;
        i["blocked_since"] = Value::Null;
    }
    items
}

/// A second daemon over the same home (the databases are only read), compared with `d`'s items.
fn fresh_ingest_equals(d: &mut Daemon, name: &str, harness: &str) {
    let before = snapshot(d, harness);
    assert_eq!(d.stop().code(), Some(0));
    let mut fresh = Daemon::prepare(name, Options::default());
    fresh.home = d.home.clone();
    fresh.spawn();
    fresh.wait_scanned();
    assert_eq!(snapshot(&fresh, harness), before);
    assert_eq!(fresh.stop().code(), Some(0));
    d.spawn();
    d.wait_scanned();
}

/// Once `ses_sub`'s answer (500 input tokens) is written: session `id` has its tokens, the
/// sub-agent is no item of its own, and the log begins with the prompt and the streamed answer.
fn counts_its_sub_agent_and_logs(d: &Daemon, id: &str) -> String {
    d.wait_item(id, |v| v["usage"]["input_tokens"] == 2000);
    assert_eq!(d.req("GET", "/v1/agents/opencode:ses_sub", b"").status, 404);
    let log = d.agentctl(&["logs", id]);
    let log = String::from_utf8_lossy(&log.stdout).into_owned();
    assert!(
        log.starts_with("[you] Add a discount field to the cart\n[opencode] word word"),
        "{log}"
    );
    log
}

#[test]
fn an_opencode_session_is_followed_in_its_database_without_locking_opencode_out() {
    let mut d = Daemon::prepare("db-opencode", Options::default());
    let db = d.home.join(".local/share/opencode/opencode.db");
    let c = opencode_db(&db);
    d.spawn();
    d.wait_scanned();
    oc_session(&c, "ses_1", None, "New session - 2026-11-30T09:00:00.000Z");
    let t = now_ms();
    oc_message(
        &c,
        "msg_u1",
        "ses_1",
        t,
        json!({"role": "user", "time": {"created": t}, "agent": "build",
            "model": {"providerID": "anthropic", "modelID": "claude-sonnet-4-5"}}),
    );
    oc_part(
        &c,
        "prt_u1",
        "msg_u1",
        "ses_1",
        json!({"type": "text", "text": "Add a discount field to the cart"}),
    );
    let id = "opencode:ses_1";
    let v = d.wait_item(id, |v| v["status"] == "working");
    assert_eq!(v["title"], "Add a discount field to the cart");
    assert_eq!(v["project"], "/src/shop");
    assert_eq!(v["harness"], "opencode");
    assert_eq!(
        v["open"]["command"],
        "cd /src/shop && opencode --session ses_1"
    );

    // OpenCode streams its answer, rewriting the message and its text part many times a
    // second, each write in its own transaction with no wait for a lock: agentd reading the
    // database at the same time must never make one of them fail.
    oc_message(
        &c,
        "msg_a1",
        "ses_1",
        t + 1,
        oc_answer(t + 1, false, 0, 0.0),
    );
    let writer = std::thread::spawn({
        let db = db.clone();
        move || {
            let w = Connection::open(&db).unwrap();
            w.busy_timeout(Duration::ZERO).unwrap();
            let mut failed = 0;
            for n in 0..300 {
                let text = "word ".repeat(n + 1);
                let r = w.execute(
                    "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) \
                     VALUES ('prt_a1', 'msg_a1', 'ses_1', ?1, ?1, ?2) \
                     ON CONFLICT(id) DO UPDATE SET time_updated = ?1, data = ?2",
                    params![now_ms(), json!({"type": "text", "text": text}).to_string()],
                );
                failed += usize::from(r.is_err());
                std::thread::sleep(Duration::from_millis(5));
            }
            failed
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    d.wait_item(id, |v| v["status"] == "working");
    assert_eq!(
        writer.join().unwrap(),
        0,
        "a write failed while agentd read"
    );

    oc_message(
        &c,
        "msg_a1",
        "ses_1",
        t + 1,
        oc_answer(t + 1, true, 1500, 0.0375),
    );
    let v = d.wait_item(id, |v| v["status"] == "success");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 1500, "output_tokens": 150, "cache_read_tokens": 4000, "cache_write_tokens": 200}),
        "reasoning is output"
    );
    assert_eq!(v["cost_usd"], 0.0375, "OpenCode's own cost");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["status_source"], "transcript");
    // A sub-agent session adds its tokens to its parent and is not an item of its own.
    oc_session(
        &c,
        "ses_sub",
        Some("ses_1"),
        "Explore the cart (@explore subagent)",
    );
    oc_message(
        &c,
        "msg_s1",
        "ses_sub",
        t + 2,
        oc_answer(t + 2, true, 500, 0.01),
    );
    counts_its_sub_agent_and_logs(&d, id);

    // Written while agentd is down: a new session, and the first one asked again.
    assert_eq!(d.stop().code(), Some(0));
    oc_session(&c, "ses_2", None, "Fix the checkout total");
    let t2 = now_ms();
    oc_message(
        &c,
        "msg_u2",
        "ses_2",
        t2,
        json!({"role": "user", "time": {"created": t2}}),
    );
    oc_message(
        &c,
        "msg_a2",
        "ses_2",
        t2 + 1,
        oc_answer(t2 + 1, true, 700, 0.0),
    );
    d.spawn();
    d.wait_item("opencode:ses_2", |v| v["status"] == "success");
    let v = d.get("/v1/agents/opencode:ses_2");
    assert_eq!(v["title"], "Fix the checkout total");
    assert!(
        v["cost_usd"].as_f64().is_some_and(|c| c > 0.0),
        "priced from the table when OpenCode's cost is zero: {v}"
    );
    fresh_ingest_equals(&mut d, "db-opencode-fresh", "opencode");
    let h = d.get("/v1/health");
    assert_eq!(source_in(&h, "opencode").unwrap()["errors"], 0, "{h}");
}

fn goose_db(path: &Path) -> Connection {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '',
           description TEXT NOT NULL DEFAULT '', user_set_name BOOLEAN DEFAULT FALSE,
           session_type TEXT NOT NULL DEFAULT 'user', working_dir TEXT NOT NULL,
           created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
           extension_data TEXT DEFAULT '{}', total_tokens INTEGER, input_tokens INTEGER,
           output_tokens INTEGER, accumulated_total_tokens INTEGER, accumulated_input_tokens INTEGER,
           accumulated_output_tokens INTEGER, schedule_id TEXT, recipe_json TEXT,
           user_recipe_values_json TEXT, provider_name TEXT, model_config_json TEXT,
           goose_mode TEXT DEFAULT 'auto', thread_id TEXT);
         CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT,
           session_id TEXT NOT NULL REFERENCES sessions(id), role TEXT NOT NULL,
           content_json TEXT NOT NULL, created_timestamp INTEGER NOT NULL,
           timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP, tokens INTEGER, metadata_json TEXT);
         CREATE INDEX idx_messages_session ON messages(session_id);",
    )
    .unwrap();
    conn
}

fn goose_message(c: &Connection, session: &str, role: &str, content: Value) {
    c.execute(
        "INSERT INTO messages (message_id, session_id, role, content_json, created_timestamp) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            format!("msg-{}", now_ms()),
            session,
            role,
            content.to_string(),
            now_ms() / 1000
        ],
    )
    .unwrap();
    c.execute(
        "UPDATE sessions SET updated_at = CURRENT_TIMESTAMP WHERE id = ?1",
        [session],
    )
    .unwrap();
}

#[test]
fn a_goose_session_is_followed_in_its_database() {
    let mut d = Daemon::prepare("db-goose", Options::default());
    let c = goose_db(&d.home.join(".local/share/goose/sessions/sessions.db"));
    d.spawn();
    d.wait_scanned();
    c.execute(
        "INSERT INTO sessions (id, name, working_dir, provider_name, model_config_json) \
         VALUES ('20261130_1', 'migrate the billing tables', '/src/billing', 'anthropic', \
         '{\"model_name\":\"claude-sonnet-4-5\",\"context_limit\":200000}')",
        [],
    )
    .unwrap();
    goose_message(
        &c,
        "20261130_1",
        "user",
        json!([{"type": "text", "text": "migrate the billing tables"}]),
    );
    let id = "goose:20261130_1";
    let v = d.wait_item(id, |v| v["status"] == "working");
    assert_eq!(v["title"], "migrate the billing tables");
    assert_eq!(v["project"], "/src/billing");
    assert_eq!(
        v["open"]["command"],
        "cd /src/billing && goose session --resume --session-id 20261130_1"
    );
    goose_message(
        &c,
        "20261130_1",
        "assistant",
        json!([{"type": "toolRequest", "id": "t1", "toolCall": {"status": "success",
            "value": {"name": "developer__shell", "arguments": {"command": "make migrate"}}}}]),
    );
    // Nothing more is written: after a few quiet seconds the clock alone makes it blocked.
    let v = d.wait_item(id, |v| v["status"] == "blocked");
    assert_eq!(v["status_detail"], "waiting for approval: developer__shell");
    assert_eq!(v["status_source"], "inferred");
    goose_message(
        &c,
        "20261130_1",
        "user",
        json!([{"type": "toolResponse", "id": "t1", "toolResult": {"status": "success", "value": []}}]),
    );
    d.wait_item(id, |v| v["status"] == "working");
    goose_message(
        &c,
        "20261130_1",
        "assistant",
        json!([{"type": "text", "text": "Migrated: 3 tables."}]),
    );
    c.execute(
        "UPDATE sessions SET accumulated_input_tokens = 12000, accumulated_output_tokens = 800, \
         accumulated_total_tokens = 12900, updated_at = CURRENT_TIMESTAMP WHERE id = '20261130_1'",
        [],
    )
    .unwrap();
    // Success comes after 10 quiet seconds: waited for on top of those.
    let v = d.wait_item_within(id, Duration::from_secs(10) + WAIT, |v| {
        v["status"] == "success"
    });
    assert_eq!(v["usage"]["input_tokens"], 12000);
    assert_eq!(
        v["usage"]["output_tokens"], 900,
        "reasoning counted as output"
    );
    assert!(v["cost_usd"].as_f64().is_some_and(|c| c > 0.0), "{v}");
    let log = d.agentctl(&["logs", id]);
    assert_eq!(
        String::from_utf8_lossy(&log.stdout),
        "[you] migrate the billing tables\n  → developer__shell\n[goose] Migrated: 3 tables.\n"
    );
    fresh_ingest_equals(&mut d, "db-goose-fresh", "goose");
}

#[test]
fn files_that_are_not_databases_are_reported_and_nothing_else_stops() {
    let mut d = Daemon::prepare("db-hostile", Options::default());
    let oc_dir = d.home.join(".local/share/opencode");
    std::fs::create_dir_all(&oc_dir).unwrap();
    // A FIFO where OpenCode's database belongs, and garbage where Goose's does.
    let fifo = oc_dir.join("opencode.db");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let goose: PathBuf = d.home.join(".local/share/goose/sessions/sessions.db");
    std::fs::create_dir_all(goose.parent().unwrap()).unwrap();
    std::fs::write(&goose, b"this is not a SQLite database, it is a note").unwrap();
    d.spawn();
    d.wait_scanned();
    let h = d.wait_for("/v1/health", "both errors", |h| {
        source_in(h, "opencode").is_some_and(|s| s["errors"] == 1)
            && source_in(h, "goose").is_some_and(|s| s["errors"] == 1)
    });
    let oc = source_in(&h, "opencode").unwrap();
    assert!(
        oc["last_error"]
            .as_str()
            .unwrap()
            .contains("not a regular file"),
        "{oc}"
    );
    let g = source_in(&h, "goose").unwrap();
    assert!(
        g["last_error"].as_str().unwrap().contains("sessions.db"),
        "{g}"
    );
    // The daemon serves on, and the real database, once it is there, is read.
    assert_eq!(d.req("GET", "/v1/agents?tab=all", b"").status, 200);
    std::fs::remove_file(&goose).unwrap();
    let c = goose_db(&goose);
    c.execute(
        "INSERT INTO sessions (id, name, working_dir) VALUES ('20261130_9', 'after', '/src/x')",
        [],
    )
    .unwrap();
    goose_message(
        &c,
        "20261130_9",
        "user",
        json!([{"type": "text", "text": "hello"}]),
    );
    d.wait_item("goose:20261130_9", |v| v["title"] == "after");
    assert_eq!(
        d.stop().code(),
        Some(0),
        "stops with a FIFO in a watched dir"
    );
}

/// OpenCode's storage tree before its database (releases before 1.2): one JSON file per
/// session, message and part, each rewritten in place as OpenCode updates it.
struct OcTree {
    dir: PathBuf,
}

impl OcTree {
    fn write(&self, rel: String, data: &Value) {
        let path = self.dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, serde_json::to_vec_pretty(data).unwrap()).unwrap();
    }

    fn session(&self, id: &str, parent: Option<&str>, title: &str) {
        let t = now_ms();
        let mut s = json!({"id": id, "version": "0.15.31", "projectID": "4b0ea68d7af9a6031a7ffda7ad66e0cb83315750",
            "directory": "/src/shop", "title": title, "time": {"created": t, "updated": t}});
        if let Some(p) = parent {
            s["parentID"] = json!(p);
        }
        self.write(
            format!("session/4b0ea68d7af9a6031a7ffda7ad66e0cb83315750/{id}.json"),
            &s,
        );
    }

    fn message(&self, id: &str, session: &str, mut data: Value) {
        data["id"] = json!(id);
        data["sessionID"] = json!(session);
        self.write(format!("message/{session}/{id}.json"), &data);
    }

    fn part(&self, id: &str, message: &str, session: &str, mut data: Value) {
        data["id"] = json!(id);
        data["messageID"] = json!(message);
        data["sessionID"] = json!(session);
        self.write(format!("part/{message}/{id}.json"), &data);
    }
}

#[test]
fn an_opencode_session_in_the_json_tree_of_older_releases_is_followed_and_the_database_wins() {
    let mut d = Daemon::prepare("db-opencode-tree", Options::default());
    let data = d.home.join(".local/share/opencode");
    let tree = OcTree {
        dir: data.join("storage"),
    };
    // One session there before start, complete; a second one written while agentd runs.
    let t = now_ms();
    tree.session("ses_old", None, "Rename the cart module");
    tree.message(
        "msg_o1",
        "ses_old",
        json!({"role": "user", "time": {"created": t - 10}}),
    );
    tree.message("msg_o2", "ses_old", oc_answer(t - 9, true, 300, 0.0));
    d.spawn();
    d.wait_scanned();
    let v = d.wait_item("opencode:ses_old", |v| v["status"] == "success");
    assert_eq!(v["title"], "Rename the cart module");
    assert_eq!(v["usage"]["input_tokens"], 300);

    tree.session("ses_1", None, "New session - 2026-11-30T09:00:00.000Z");
    let t = now_ms();
    tree.message(
        "msg_u1",
        "ses_1",
        json!({"role": "user", "time": {"created": t}, "agent": "build",
            "model": {"providerID": "anthropic", "modelID": "claude-sonnet-4-5"}}),
    );
    let id = "opencode:ses_1";
    let v = d.wait_item(id, |v| v["status"] == "working");
    assert_eq!(v["title"], "New session - 2026-11-30T09:00:00.000Z");
    // The prompt's text comes in a part of its own (parts are not watched: a working session's
    // files are looked at every tick).
    tree.part(
        "prt_u1",
        "msg_u1",
        "ses_1",
        json!({"type": "text", "text": "Add a discount field to the cart"}),
    );
    let v = d.wait_item(id, |v| v["title"] == "Add a discount field to the cart");
    assert_eq!(v["project"], "/src/shop");
    assert_eq!(
        v["open"]["command"],
        "cd /src/shop && opencode --session ses_1"
    );
    // The answer streams (its text part rewritten, a tool's output of a mebibyte), then ends.
    tree.message("msg_a1", "ses_1", oc_answer(t + 1, false, 0, 0.0));
    for n in 1..20 {
        tree.part(
            "prt_a1",
            "msg_a1",
            "ses_1",
            json!({"type": "text", "text": "word ".repeat(n)}),
        );
    }
    tree.part(
        "prt_a2",
        "msg_a1",
        "ses_1",
        json!({"type": "tool", "tool": "bash", "callID": "c1",
            "state": {"status": "completed", "input": {"command": "cat big.log"},
                "output": "x".repeat(1 << 20), "time": {"start": t, "end": t + 1}}}),
    );
    tree.message("msg_a1", "ses_1", oc_answer(t + 1, true, 1500, 0.0375));
    let v = d.wait_item(id, |v| v["status"] == "success");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 1500, "output_tokens": 150, "cache_read_tokens": 4000, "cache_write_tokens": 200})
    );
    assert_eq!(v["cost_usd"], 0.0375);
    // A sub-agent's session adds its tokens to its parent's.
    tree.session(
        "ses_sub",
        Some("ses_1"),
        "Explore the cart (@explore subagent)",
    );
    tree.message("msg_s1", "ses_sub", oc_answer(t + 2, true, 500, 0.01));
    let log = counts_its_sub_agent_and_logs(&d, id);
    assert!(log.contains("  → bash\n"), "{log}");

    // Written while agentd is down: a new session, and the sub-agent asked again.
    assert_eq!(d.stop().code(), Some(0));
    tree.session("ses_2", None, "Fix the checkout total");
    let t2 = now_ms();
    tree.message(
        "msg_u2",
        "ses_2",
        json!({"role": "user", "time": {"created": t2}}),
    );
    tree.message("msg_a2", "ses_2", oc_answer(t2 + 1, true, 700, 0.0));
    tree.message("msg_s2", "ses_sub", oc_answer(t2 + 2, true, 100, 0.01));
    d.spawn();
    d.wait_item("opencode:ses_2", |v| v["status"] == "success");
    d.wait_item(id, |v| v["usage"]["input_tokens"] == 2100);
    fresh_ingest_equals(&mut d, "db-opencode-tree-fresh", "opencode");

    // OpenCode 1.2 migrates the tree into its database and leaves the files: the database's
    // sessions win, the tree's others stay.
    let c = opencode_db(&data.join("opencode.db"));
    oc_session(&c, "ses_1", None, "Add a discount field (migrated)");
    oc_message(
        &c,
        "msg_u1",
        "ses_1",
        t,
        json!({"role": "user", "time": {"created": t}}),
    );
    oc_message(
        &c,
        "msg_a1",
        "ses_1",
        t + 1,
        oc_answer(t + 1, true, 9000, 0.5),
    );
    d.wait_item(id, |v| v["usage"]["input_tokens"] == 9000);
    // A restart reads the tree's copy of it again (its files are newer than its commit) and
    // still leaves it to the database.
    tree.message("msg_a1", "ses_1", oc_answer(t + 1, true, 1600, 0.0375));
    assert_eq!(d.stop().code(), Some(0));
    d.spawn();
    let v = d.wait_item(id, |v| v["usage"]["input_tokens"] == 9000);
    assert_eq!(v["title"], "Add a discount field (migrated)");
    assert_eq!(
        d.get("/v1/agents/opencode:ses_2")["usage"]["input_tokens"],
        700
    );
    fresh_ingest_equals(&mut d, "db-opencode-tree-fresh2", "opencode");
    let h = d.get("/v1/health");
    assert_eq!(source_in(&h, "opencode").unwrap()["errors"], 0, "{h}");
}

#[test]
fn a_broken_file_in_the_opencode_tree_is_reported_and_the_rest_of_its_session_is_read() {
    let mut d = Daemon::prepare("db-opencode-tree-hostile", Options::default());
    let tree = OcTree {
        dir: d.home.join(".local/share/opencode/storage"),
    };
    let t = now_ms();
    tree.session("ses_1", None, "Tidy the imports");
    tree.message(
        "msg_u1",
        "ses_1",
        json!({"role": "user", "time": {"created": t}}),
    );
    tree.message("msg_a1", "ses_1", oc_answer(t + 1, true, 400, 0.0));
    // A message cut short, and a FIFO where a message belongs (never opened: it would block).
    std::fs::write(
        tree.dir.join("message/ses_1/msg_a2.json"),
        br#"{"role": "assistant", "tokens": {"inp"#,
    )
    .unwrap();
    let fifo = tree.dir.join("message/ses_1/msg_a3.json");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    d.spawn();
    d.wait_scanned();
    let v = d.wait_item("opencode:ses_1", |v| v["status"] == "success");
    assert_eq!(v["usage"]["input_tokens"], 400);
    let h = d.get("/v1/health");
    let oc = source_in(&h, "opencode").unwrap();
    assert_eq!(oc["errors"], 2, "{oc}");
    let last = oc["last_error"].as_str().unwrap();
    assert!(
        last.contains("msg_a2.json is not JSON")
            || last.contains("msg_a3.json is not a regular file"),
        "{oc}"
    );
    // Fixed, it counts; the FIFO still there is not counted again.
    tree.message("msg_a2", "ses_1", oc_answer(t + 2, true, 50, 0.0));
    d.wait_item("opencode:ses_1", |v| v["usage"]["input_tokens"] == 450);
    let h = d.get("/v1/health");
    assert_eq!(source_in(&h, "opencode").unwrap()["errors"], 2, "{h}");
    assert_eq!(d.stop().code(), Some(0), "stops with a FIFO in the tree");
}
