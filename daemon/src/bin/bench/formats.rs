//! `agentd-bench --formats`: every conversation store format agentd reads, one corpus each.
//!
//! For each of the ten formats (OpenCode's twice: its database, and the JSON tree of its releases
//! before 1.2) it generates the same number of finished sessions (seeded,
//! the same bytes every run) in that tool's own layout under a home of its own, starts a fresh
//! agentd over it and reports the backfill time and throughput (MB of the tool's files, or of
//! its database, per second), and the total cost agentd shows next to `ccusage <tool> session
//! --offline --json` on the same home (when given `--ccusage PATH` and ccusage reads that
//! tool). A last run follows all the homes at once (the mixed corpus).

use super::stores::{claude_session, codex_session, filler, uuid};
use super::{Lcg, health, now_ms, request, rfc3339, start_with_env};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Sessions per format.
const SESSIONS: usize = 300;

/// One format: its harness name, ccusage's name for it (when ccusage reads it), the config key
/// of its roots and the root under a home.
struct Format {
    /// The row's name, and its home's.
    name: &'static str,
    harness: &'static str,
    ccusage: Option<&'static str>,
    root: &'static str,
    generate: fn(&Path, &mut Lcg, i64) -> u64,
}

const FORMATS: &[Format] = &[
    Format {
        name: "claude-code",
        harness: "claude-code",
        ccusage: Some("claude"),
        root: ".claude",
        generate: gen_claude,
    },
    Format {
        name: "codex",
        harness: "codex",
        ccusage: Some("codex"),
        root: ".codex",
        generate: gen_codex,
    },
    Format {
        name: "gemini",
        harness: "gemini",
        ccusage: Some("gemini"),
        root: ".gemini",
        generate: gen_gemini,
    },
    Format {
        name: "qwen",
        harness: "qwen",
        ccusage: Some("qwen"),
        root: ".qwen",
        generate: gen_qwen,
    },
    Format {
        name: "droid",
        harness: "droid",
        ccusage: Some("droid"),
        root: ".factory/sessions",
        generate: gen_droid,
    },
    Format {
        name: "copilot",
        harness: "copilot",
        // ccusage reads only Copilot CLI's opt-in OpenTelemetry files, not its sessions.
        ccusage: None,
        root: ".copilot",
        generate: gen_copilot,
    },
    Format {
        name: "kimi",
        harness: "kimi",
        ccusage: Some("kimi"),
        root: ".kimi",
        generate: gen_kimi,
    },
    Format {
        name: "opencode",
        harness: "opencode",
        ccusage: Some("opencode"),
        root: ".local/share/opencode",
        generate: gen_opencode,
    },
    Format {
        name: "opencode-json",
        harness: "opencode",
        ccusage: Some("opencode"),
        root: ".local/share/opencode",
        generate: gen_opencode_tree,
    },
    Format {
        name: "goose",
        harness: "goose",
        ccusage: Some("goose"),
        root: ".local/share/goose",
        generate: gen_goose,
    },
];

fn write(path: &Path, text: &str) -> u64 {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    text.len() as u64
}

fn lines(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

/// Session start times: spread over today, all finished at least 15 minutes ago.
fn start_of(rng: &mut Lcg, now: i64) -> i64 {
    let day_start = now - now.rem_euclid(86_400_000);
    let window_start = (now - 6 * 3_600_000).max(day_start + 60_000);
    let window = (now - 15 * 60_000 - window_start).max(60_000);
    window_start + (rng.next() as i64 % window).max(0)
}

fn turns(rng: &mut Lcg) -> usize {
    4 + (rng.next() % 8) as usize
}

fn tokens(rng: &mut Lcg, range: u64) -> u64 {
    100 + rng.next() % range
}

fn gen_claude(home: &Path, rng: &mut Lcg, now: i64) -> u64 {
    let mut bytes = 0;
    for i in 0..SESSIONS {
        let (t0, n, id) = (start_of(rng, now), turns(rng), uuid(rng));
        let text = claude_session(rng, &id, t0, n);
        let path = home.join(format!(".claude/projects/-src-app{}/{id}.jsonl", i % 20));
        bytes += write(&path, &text);
    }
    bytes
}

fn gen_codex(home: &Path, rng: &mut Lcg, now: i64) -> u64 {
    let mut bytes = 0;
    for _ in 0..SESSIONS {
        let (t0, n, id) = (start_of(rng, now), turns(rng), uuid(rng));
        let day = &rfc3339(t0)[..10];
        let path = home
            .join(".codex/sessions")
            .join(day.replace('-', "/"))
            .join(format!("rollout-{day}T10-00-00-{id}.jsonl"));
        bytes += write(&path, &codex_session(rng, &id, t0, n));
    }
    bytes
}

fn gen_gemini(home: &Path, rng: &mut Lcg, now: i64) -> u64 {
    let mut bytes = 0;
    for i in 0..SESSIONS {
        let (t0, n, id) = (start_of(rng, now), turns(rng), uuid(rng));
        let project = home.join(format!(".gemini/tmp/app{}", i % 20));
        bytes += write(
            &project.join(".project_root"),
            &format!("/src/app{}\n", i % 20),
        );
        let mut v = vec![
            json!({"sessionId": id, "projectHash": format!("app{}", i % 20),
            "startTime": rfc3339(t0), "lastUpdated": rfc3339(t0 + n as i64 * 4000), "kind": "main"}),
        ];
        for k in 0..n {
            let t = t0 + k as i64 * 4000;
            v.push(
                json!({"id": format!("u{k}"), "timestamp": rfc3339(t), "type": "user",
                "content": [{"text": filler(rng, 300)}]}),
            );
            let (input, cached) = (tokens(rng, 20_000), tokens(rng, 5_000));
            v.push(
                json!({"id": format!("g{k}"), "timestamp": rfc3339(t + 2000), "type": "gemini",
                "content": filler(rng, 2500), "model": "gemini-2.5-pro",
                "tokens": {"input": input + cached, "output": tokens(rng, 2000), "cached": cached,
                    "thoughts": tokens(rng, 500), "tool": 0, "total": 0}}),
            );
        }
        let path = project.join(format!(
            "chats/session-{}-{}.jsonl",
            &rfc3339(t0)[..16].replace(':', "-"),
            &id[..8]
        ));
        bytes += write(&path, &lines(&v));
    }
    bytes
}

fn gen_qwen(home: &Path, rng: &mut Lcg, now: i64) -> u64 {
    let mut bytes = 0;
    for i in 0..SESSIONS {
        let (t0, n, id) = (start_of(rng, now), turns(rng), uuid(rng));
        let cwd = format!("/src/app{}", i % 20);
        let mut v = Vec::new();
        for k in 0..n {
            let t = t0 + k as i64 * 4000;
            v.push(json!({"uuid": format!("u{k}"), "sessionId": id, "timestamp": rfc3339(t),
                "type": "user", "cwd": cwd, "message": {"role": "user", "parts": [{"text": filler(rng, 300)}]}}));
            let (prompt, cached) = (tokens(rng, 20_000), tokens(rng, 5_000));
            v.push(json!({"uuid": format!("a{k}"), "sessionId": id, "timestamp": rfc3339(t + 2000),
                "type": "assistant", "cwd": cwd, "model": "qwen3-coder-plus",
                "message": {"role": "model", "parts": [{"text": filler(rng, 2500)}]},
                "usageMetadata": {"promptTokenCount": prompt + cached, "candidatesTokenCount": tokens(rng, 2000),
                    "cachedContentTokenCount": cached, "thoughtsTokenCount": 0}}));
            v.push(json!({"uuid": format!("r{k}"), "sessionId": id, "timestamp": rfc3339(t + 2500),
                "type": "system", "subtype": "turn_result", "systemPayload": {"state": "completed"}}));
        }
        let path = home.join(format!(
            ".qwen/projects/-src-app{}/chats/{id}.jsonl",
            i % 20
        ));
        bytes += write(&path, &lines(&v));
    }
    bytes
}

fn gen_droid(home: &Path, rng: &mut Lcg, now: i64) -> u64 {
    let mut bytes = 0;
    for i in 0..SESSIONS {
        let (t0, n, id) = (start_of(rng, now), turns(rng), uuid(rng));
        let dir = home.join(format!(".factory/sessions/-src-app{}", i % 20));
        let mut v = vec![
            json!({"type": "session_start", "id": id, "title": filler(rng, 40),
            "owner": "dev", "cwd": format!("/src/app{}", i % 20)}),
        ];
        for k in 0..n {
            let t = t0 + k as i64 * 4000;
            v.push(json!({"type": "message", "timestamp": rfc3339(t),
                "message": {"role": "user", "content": filler(rng, 300)}}));
            v.push(json!({"type": "message", "timestamp": rfc3339(t + 2000),
                "message": {"role": "assistant", "content": filler(rng, 2500), "model": "claude-sonnet-4-5-20250929"}}));
        }
        bytes += write(&dir.join(format!("{id}.jsonl")), &lines(&v));
        let settings = json!({"model": "claude-sonnet-4-5-20250929", "tokenUsage": {
            "inputTokens": tokens(rng, 100_000), "outputTokens": tokens(rng, 20_000),
            "cacheCreationTokens": tokens(rng, 10_000), "cacheReadTokens": tokens(rng, 150_000),
            "thinkingTokens": tokens(rng, 2_000)}});
        bytes += write(
            &dir.join(format!("{id}.settings.json")),
            &settings.to_string(),
        );
    }
    bytes
}

fn gen_copilot(home: &Path, rng: &mut Lcg, now: i64) -> u64 {
    let mut bytes = 0;
    for i in 0..SESSIONS {
        let (t0, n, id) = (start_of(rng, now), turns(rng), uuid(rng));
        let ev = |kind: &str, t: i64, data: Value| json!({"type": kind, "data": data, "id": format!("{kind}-{t}"), "timestamp": rfc3339(t), "parentId": null});
        let mut v = vec![ev(
            "session.start",
            t0,
            json!({"sessionId": id, "copilotVersion": "1.0.82",
            "context": {"cwd": format!("/src/app{}", i % 20)}}),
        )];
        let (mut input, mut output, mut read) = (0, 0, 0);
        for k in 0..n {
            let t = t0 + k as i64 * 4000;
            v.push(ev("user.message", t, json!({"content": filler(rng, 300)})));
            v.push(ev(
                "assistant.turn_start",
                t + 1,
                json!({"turnId": k.to_string()}),
            ));
            let out = tokens(rng, 2000);
            v.push(ev("assistant.message", t + 2000, json!({"messageId": format!("m{k}"),
                "model": "claude-sonnet-4.5", "content": filler(rng, 2500), "toolRequests": [], "outputTokens": out})));
            v.push(ev(
                "assistant.turn_end",
                t + 2001,
                json!({"turnId": k.to_string()}),
            ));
            input += tokens(rng, 20_000);
            read += tokens(rng, 30_000);
            output += out;
        }
        v.push(ev(
            "session.shutdown",
            t0 + n as i64 * 4000,
            json!({"shutdownType": "routine",
            "totalNanoAiu": (input + output) * 1000, "modelMetrics": {"claude-sonnet-4.5": {
                "requests": {"count": n, "cost": 1}, "usage": {"inputTokens": input + read,
                    "outputTokens": output, "cacheReadTokens": read, "cacheWriteTokens": 0}}}}),
        ));
        let path = home.join(format!(".copilot/session-state/{id}/events.jsonl"));
        bytes += write(&path, &lines(&v));
    }
    bytes
}

fn gen_kimi(home: &Path, rng: &mut Lcg, now: i64) -> u64 {
    let mut bytes = 0;
    for i in 0..SESSIONS {
        let (t0, n, id) = (start_of(rng, now), turns(rng), uuid(rng));
        let mut v = vec![json!({"type": "metadata", "protocol_version": "1.10"})];
        for k in 0..n {
            let t = (t0 + k as i64 * 4000) as f64 / 1000.0;
            v.push(json!({"timestamp": t, "message": {"type": "TurnBegin", "payload": {"user_input": filler(rng, 300)}}}));
            v.push(json!({"timestamp": t + 0.5, "message": {"type": "ContentPart", "payload": {"type": "text", "text": filler(rng, 2500)}}}));
            v.push(json!({"timestamp": t + 1.0, "message": {"type": "StatusUpdate", "payload": {"context_usage": 0.2,
                "token_usage": {"input_other": tokens(rng, 20_000), "output": tokens(rng, 2000),
                    "input_cache_read": tokens(rng, 30_000), "input_cache_creation": 0}, "message_id": format!("m{k}")}}}));
            v.push(json!({"timestamp": t + 1.5, "message": {"type": "TurnEnd", "payload": {}}}));
        }
        let path = home.join(format!(".kimi/sessions/{:032x}/{id}/wire.jsonl", i % 20));
        bytes += write(&path, &lines(&v));
    }
    bytes
}

fn gen_opencode(home: &Path, rng: &mut Lcg, now: i64) -> u64 {
    let path = home.join(".local/share/opencode/opencode.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.execute_batch(
        "CREATE TABLE session (id text PRIMARY KEY, project_id text NOT NULL, parent_id text,
           slug text NOT NULL, directory text NOT NULL, title text NOT NULL, version text NOT NULL,
           time_created integer NOT NULL, time_updated integer NOT NULL);
         CREATE INDEX session_parent_idx ON session (parent_id);
         CREATE TABLE message (id text PRIMARY KEY, session_id text NOT NULL,
           time_created integer NOT NULL, time_updated integer NOT NULL, data text NOT NULL);
         CREATE INDEX message_session_time_created_id_idx ON message (session_id, time_created, id);
         CREATE TABLE part (id text PRIMARY KEY, message_id text NOT NULL, session_id text NOT NULL,
           time_created integer NOT NULL, time_updated integer NOT NULL, data text NOT NULL);
         CREATE INDEX part_session_idx ON part (session_id);
         CREATE INDEX part_message_id_id_idx ON part (message_id, id);
         BEGIN;",
    )
    .unwrap();
    for i in 0..SESSIONS {
        let (t0, n) = (start_of(rng, now), turns(rng));
        let sid = format!("ses_{i:05}");
        c.execute(
            "INSERT INTO session VALUES (?1, 'global', NULL, 's', ?2, ?3, '1.2.10', ?4, ?5)",
            rusqlite::params![
                sid,
                format!("/src/app{}", i % 20),
                filler(rng, 40),
                t0,
                t0 + n as i64 * 4000
            ],
        )
        .unwrap();
        for k in 0..n {
            let t = t0 + k as i64 * 4000;
            let (u, a) = (format!("msg_{i:05}_{k:02}u"), format!("msg_{i:05}_{k:02}a"));
            let user = json!({"role": "user", "time": {"created": t}, "agent": "build",
                "model": {"providerID": "anthropic", "modelID": "claude-sonnet-4-5"}});
            let answer = json!({"role": "assistant", "parentID": u, "modelID": "claude-sonnet-4-5",
                "providerID": "anthropic", "mode": "build", "cost": 0, "finish": "stop",
                "time": {"created": t + 1, "completed": t + 2000},
                "tokens": {"input": tokens(rng, 20_000), "output": tokens(rng, 2000), "reasoning": tokens(rng, 300),
                    "cache": {"read": tokens(rng, 30_000), "write": tokens(rng, 3000)}}});
            for (id, data, text_len) in [(&u, user, 300), (&a, answer, 2500)] {
                c.execute(
                    "INSERT INTO message VALUES (?1, ?2, ?3, ?3, ?4)",
                    rusqlite::params![id, sid, t, data.to_string()],
                )
                .unwrap();
                c.execute(
                    "INSERT INTO part VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                    rusqlite::params![
                        format!("prt_{id}"),
                        id,
                        sid,
                        t,
                        json!({"type": "text", "text": filler(rng, text_len)}).to_string()
                    ],
                )
                .unwrap();
            }
        }
    }
    c.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
}

/// The same shape of sessions as [`gen_opencode`], in the JSON tree OpenCode kept before its
/// database: a file per session, message and part.
fn gen_opencode_tree(home: &Path, rng: &mut Lcg, now: i64) -> u64 {
    let storage = home.join(".local/share/opencode/storage");
    let mut bytes = 0;
    for i in 0..SESSIONS {
        let (t0, n) = (start_of(rng, now), turns(rng));
        // Ids of their own: the mixed run follows both OpenCode homes.
        let sid = format!("ses_json{i:05}");
        let session = json!({"id": sid, "version": "0.15.31", "projectID": "global",
            "directory": format!("/src/app{}", i % 20), "title": filler(rng, 40),
            "time": {"created": t0, "updated": t0 + n as i64 * 4000}});
        bytes += write(
            &storage.join(format!("session/global/{sid}.json")),
            &session.to_string(),
        );
        for k in 0..n {
            let t = t0 + k as i64 * 4000;
            let (u, a) = (format!("msg_{i:05}_{k:02}u"), format!("msg_{i:05}_{k:02}a"));
            let user = json!({"id": u, "sessionID": sid, "role": "user", "time": {"created": t},
                "agent": "build", "model": {"providerID": "anthropic", "modelID": "claude-sonnet-4-5"}});
            let answer = json!({"id": a, "sessionID": sid, "role": "assistant", "parentID": u,
                "modelID": "claude-sonnet-4-5", "providerID": "anthropic", "mode": "build", "cost": 0,
                "finish": "stop", "time": {"created": t + 1, "completed": t + 2000},
                "tokens": {"input": tokens(rng, 20_000), "output": tokens(rng, 2000), "reasoning": tokens(rng, 300),
                    "cache": {"read": tokens(rng, 30_000), "write": tokens(rng, 3000)}}});
            for (id, data, text_len) in [(&u, user, 300), (&a, answer, 2500)] {
                bytes += write(
                    &storage.join(format!("message/{sid}/{id}.json")),
                    &data.to_string(),
                );
                let part = json!({"id": format!("prt_{id}"), "messageID": id, "sessionID": sid,
                    "type": "text", "text": filler(rng, text_len)});
                bytes += write(
                    &storage.join(format!("part/{id}/prt_{id}.json")),
                    &part.to_string(),
                );
            }
        }
    }
    bytes
}

fn gen_goose(home: &Path, rng: &mut Lcg, now: i64) -> u64 {
    let path = home.join(".local/share/goose/sessions/sessions.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.execute_batch(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '',
           description TEXT NOT NULL DEFAULT '', session_type TEXT NOT NULL DEFAULT 'user',
           working_dir TEXT NOT NULL, created_at TIMESTAMP, updated_at TIMESTAMP,
           total_tokens INTEGER, input_tokens INTEGER, output_tokens INTEGER,
           accumulated_total_tokens INTEGER, accumulated_input_tokens INTEGER,
           accumulated_output_tokens INTEGER, provider_name TEXT, model_config_json TEXT);
         CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT,
           session_id TEXT NOT NULL, role TEXT NOT NULL, content_json TEXT NOT NULL,
           created_timestamp INTEGER NOT NULL, timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
         CREATE INDEX idx_messages_session ON messages(session_id);
         BEGIN;",
    )
    .unwrap();
    let sql_time = |ms: i64| rfc3339(ms)[..19].replace('T', " ");
    for i in 0..SESSIONS {
        let (t0, n) = (start_of(rng, now), turns(rng));
        let sid = format!("20261130_{i}");
        let (input, output) = (tokens(rng, 200_000), tokens(rng, 20_000));
        c.execute(
            "INSERT INTO sessions VALUES (?1, ?2, '', 'user', ?3, ?4, ?5, NULL, NULL, NULL, ?6, ?7, ?8, \
             'anthropic', '{\"model_name\":\"claude-sonnet-4-5\"}')",
            rusqlite::params![sid, filler(rng, 40), format!("/src/app{}", i % 20), sql_time(t0),
                sql_time(t0 + n as i64 * 4000), input + output + tokens(rng, 2000), input, output],
        )
        .unwrap();
        for k in 0..n {
            let t = (t0 + k as i64 * 4000) / 1000;
            for (role, len) in [("user", 300), ("assistant", 2500)] {
                c.execute(
                    "INSERT INTO messages (message_id, session_id, role, content_json, created_timestamp) \
                     VALUES ('m', ?1, ?2, ?3, ?4)",
                    rusqlite::params![sid, role, json!([{"type": "text", "text": filler(rng, len)}]).to_string(), t],
                )
                .unwrap();
            }
        }
    }
    c.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
}

/// Generates a format's home (kept and reused the same day).
fn generate(dir: &Path, f: &Format) -> (PathBuf, u64) {
    let home = dir.join(f.name);
    let marker = home.join(".generated");
    let today = &rfc3339(now_ms())[..10];
    if let Ok(text) = std::fs::read_to_string(&marker)
        && let Some((day, bytes)) = text.trim().split_once(' ')
        && day == today
    {
        return (home, bytes.parse().unwrap_or(0));
    }
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    // Each format its own seed: adding one never changes another's corpus.
    let seed = f
        .name
        .bytes()
        .fold(42u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let bytes = (f.generate)(&home, &mut Lcg(seed), now_ms());
    std::fs::write(&marker, format!("{today} {bytes}")).unwrap();
    (home, bytes)
}

/// Reads every file under `dir` once, so that agentd and ccusage both start from the page cache
/// (a corpus generated on an earlier run may have been evicted by a larger one since).
pub(super) fn warm(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => warm(&p),
            Ok(t) if t.is_file() => {
                let _ = std::fs::read(&p);
            }
            _ => {}
        }
    }
}

/// Waits until every source has scanned and `items` items exist; the time since `started`.
pub(super) fn backfill(socket: &Path, items: usize, started: Instant) -> Duration {
    loop {
        if let Some(h) = health(socket)
            && h["items"].as_u64() >= Some(items as u64)
            && h["sources"]
                .as_array()
                .is_some_and(|s| s.iter().all(|s| s["scan_done"] == true))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "backfill did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The sum of `cost_usd` over a harness's items, and how many items have none.
fn our_cost(socket: &Path, harness: &str) -> (f64, usize) {
    let (_, body) = request(
        socket,
        &format!("/v1/agents?tab=all&harness={harness}&limit=1000"),
    )
    .unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let cost = items.iter().filter_map(|i| i["cost_usd"].as_f64()).sum();
    (
        cost,
        items.iter().filter(|i| i["cost_usd"].is_null()).count(),
    )
}

/// ccusage's total cost of one tool's sessions under `home`, and the part of it that is the
/// cached prompt charged a second time: for Gemini CLI and Qwen Code ccusage takes the prompt
/// count (which includes the cached tokens) as input and prices the cached tokens again as
/// cache reads.
fn their_cost(bin: &Path, home: &Path, agent: &str) -> Option<(f64, f64)> {
    let out = Command::new(bin)
        .args([agent, "session", "--offline", "--json"])
        .env("HOME", home)
        .env("TZ", "UTC")
        .env_remove("CLAUDE_CONFIG_DIR")
        .env_remove("CODEX_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .current_dir(home)
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let sessions = v["sessions"].as_array()?;
    let total = sessions
        .iter()
        .filter_map(|s| s["totalCost"].as_f64().or_else(|| s["costUSD"].as_f64()))
        .sum();
    let twice = if matches!(agent, "gemini" | "qwen") {
        let prices = agentd::prices::Prices::builtin();
        sessions
            .iter()
            .flat_map(|s| s["modelBreakdowns"].as_array().cloned().unwrap_or_default())
            .filter_map(|b| {
                let rate = prices.lookup(b["modelName"].as_str()?)?.base.input;
                Some(b["cacheReadTokens"].as_f64()? * rate / 1e6)
            })
            .sum()
    } else {
        0.0
    };
    Some((total, twice))
}

/// Runs the per-format and mixed backfills; returns the table's rows (format, MB, backfill s,
/// MB/s, agentd $, ccusage $, difference, note) and the mixed corpus's line.
pub fn bench(dir: &Path, ccusage: Option<&Path>) -> (Vec<Vec<String>>, String) {
    println!("== every format ({SESSIONS} finished sessions each)");
    let mut rows = Vec::new();
    println!(
        "  {:<13} {:>8} {:>9} {:>8} {:>12} {:>12} {:>9}  note",
        "format", "MB", "backfill", "MB/s", "agentd $", "ccusage $", "diff"
    );
    let mut homes = Vec::new();
    let mut total_bytes = 0;
    for f in FORMATS {
        let (home, bytes) = generate(&dir.join("homes"), f);
        warm(&home);
        total_bytes += bytes;
        let run = dir.join("run").join(f.name);
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run).unwrap();
        let started = Instant::now();
        let (d, _) = start_with_env(&run, &home, &[("AGENTD_LOG", "warn")]);
        let took = backfill(&d.socket, SESSIONS, started);
        let (ours, unpriced) = our_cost(&d.socket, f.harness);
        d.stop();
        let theirs = match (ccusage, f.ccusage) {
            (Some(bin), Some(agent)) => their_cost(bin, &home, agent),
            _ => None,
        };
        let ours_text = if unpriced == SESSIONS {
            "no price".to_owned()
        } else {
            format!("{ours:.2}")
        };
        let mut note = String::new();
        let (theirs_text, diff) = match theirs {
            Some((t, twice)) if t > 0.0 && unpriced < SESSIONS => {
                if twice > 0.0 {
                    note = format!(
                        "ccusage charges the cached prompt twice (${twice:.2}); without that: {:+.3}%",
                        (ours / (t - twice) - 1.0) * 100.0
                    );
                }
                (
                    format!("{t:.2}"),
                    format!("{:+.3}%", (ours / t - 1.0) * 100.0),
                )
            }
            Some((t, _)) => (format!("{t:.2}"), "-".into()),
            None if f.ccusage.is_none() => ("not read".into(), "-".into()),
            None => ("-".into(), "-".into()),
        };
        println!(
            "  {:<13} {:>8.1} {:>8.2}s {:>8.0} {:>12} {:>12} {:>9}  {note}",
            f.name,
            bytes as f64 / 1e6,
            took.as_secs_f64(),
            bytes as f64 / 1e6 / took.as_secs_f64(),
            ours_text,
            theirs_text,
            diff
        );
        rows.push(vec![
            f.name.to_owned(),
            format!("{:.1}", bytes as f64 / 1e6),
            format!("{:.2}", took.as_secs_f64()),
            format!("{:.0}", bytes as f64 / 1e6 / took.as_secs_f64()),
            ours_text,
            theirs_text,
            diff,
            note,
        ]);
        homes.push((f, home));
    }
    // All at once: each store's roots from a config file.
    let run = dir.join("run").join("mixed");
    let _ = std::fs::remove_dir_all(&run);
    std::fs::create_dir_all(&run).unwrap();
    let key = |h: &str| match h {
        "claude-code" => "claude_code".to_owned(),
        other => other.to_owned(),
    };
    let mut roots: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (f, home) in &homes {
        roots
            .entry(key(f.harness))
            .or_default()
            .push(home.join(f.root).display().to_string());
    }
    let config: String = roots
        .iter()
        .map(|(key, roots)| format!("[sources.{key}]\nroots = {roots:?}\n"))
        .collect();
    std::fs::write(run.join("config.toml"), config).unwrap();
    let empty = run.join("home");
    let started = Instant::now();
    let (d, _) = start_with_env(&run, &empty, &[]);
    let took = backfill(&d.socket, SESSIONS * FORMATS.len(), started);
    let (_, hwm) = d.rss_kib();
    d.stop();
    let mixed = format!(
        "all {} formats, {} sessions, {:.0} MB: backfill {:.2}s, {:.0} MB/s, peak RSS {:.1} MB",
        FORMATS.len(),
        SESSIONS * FORMATS.len(),
        total_bytes as f64 / 1e6,
        took.as_secs_f64(),
        total_bytes as f64 / 1e6 / took.as_secs_f64(),
        hwm as f64 / 1024.0
    );
    println!("  mixed: {mixed}");
    (rows, mixed)
}
