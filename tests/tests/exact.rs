//! Counts that never drift: long lines, appends and restarts never change a total, a
//! conversation is always the sum of all its files, and `scan_done` means "queryable".
//!
//! Every test here compares against what the files say (or against a fresh ingest of the same
//! files by a second daemon), never against a number the daemon produced earlier.

use agentd_tests::{Daemon, Options, ago, append, rec, source_in};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;

/// Line lengths around the read size (64 KiB) and the output record size of `agentctl run`
/// (256 KiB), and one over a megabyte.
const LONG: [usize; 5] = [65_535, 65_537, 300_000, 262_145, 1_100_000];

fn line(v: Value) -> String {
    format!("{}\n", rec(v))
}

fn output(chars: usize) -> String {
    line(json!({"type": "output", "ts": ago(1), "stream": "stdout", "data": "x".repeat(chars)}))
}

/// The total of `errors` over every source in `/v1/health`, with the last messages.
fn health_errors(d: &Daemon) -> (u64, Vec<Value>) {
    let h = d.get("/v1/health");
    let sources = h["sources"].as_array().unwrap();
    (
        sources.iter().map(|s| s["errors"].as_u64().unwrap()).sum(),
        sources.iter().map(|s| s["last_error"].clone()).collect(),
    )
}

fn restart(d: &mut Daemon) {
    assert_eq!(d.stop().code(), Some(0), "{}", d.log_text());
    d.spawn();
    d.wait_scanned();
}

#[test]
fn regression_a_run_log_line_longer_than_a_read_is_counted_once_across_appends_and_restarts() {
    let mut d = Daemon::start("exact-long-run");
    let log = d.runs.join("long.jsonl");
    append(
        &log,
        &line(json!({"type": "start", "ts": ago(10), "title": "long"})),
    );
    // Half of a long line first: the daemon sees it being written.
    let long = output(300_000);
    append(&log, &long[..100_000]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    append(&log, &long[100_000..]);
    append(
        &log,
        &line(json!({"type": "usage", "ts": ago(1), "input_tokens": 100, "cost_usd": 1.0})),
    );
    let want = |v: &Value| v["usage"]["input_tokens"] == 100 && v["cost_usd"] == 1.0;
    d.wait_item("cli:long", want);
    for round in 0..3 {
        append(&log, &output(10 + round));
        std::thread::sleep(std::time::Duration::from_millis(200));
        restart(&mut d);
        let v = d.get("/v1/agents/cli:long");
        assert!(want(&v), "round {round}: {v}");
        assert_eq!(
            health_errors(&d).0,
            0,
            "round {round}: {:?}",
            health_errors(&d)
        );
    }
    // The log route gives the whole output, long line included, once.
    let text = d.req("GET", "/v1/agents/cli:long/log", b"").text();
    assert_eq!(text.len(), 300_000 + 10 + 11 + 12);
}

#[test]
fn regression_agentctl_run_output_records_are_counted_once_across_restarts() {
    let mut d = Daemon::start("exact-agentctl-run");
    // A stand-in for `claude -p … --output-format stream-json`: a megabyte of output in one
    // burst (several 256 KiB records), then the result line with the run's usage.
    let bin = d.dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let claude = bin.join("claude");
    std::fs::write(
        &claude,
        "#!/bin/sh\nhead -c 1100000 /dev/zero | tr '\\0' x\necho\n\
         echo '{\"type\":\"result\",\"total_cost_usd\":1.5,\"usage\":{\"input_tokens\":100,\"output_tokens\":7}}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&claude, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = d.agentctl(&["run", "--", claude.to_str().unwrap(), "-p", "big"]);
    assert!(out.status.success(), "{out:?}");
    let id = d.wait_for("/v1/agents?tab=all", "the run", |p| {
        p["items"][0]["status"] == "success"
    })["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let want = |v: &Value| {
        v["usage"]["input_tokens"] == 100
            && v["usage"]["output_tokens"] == 7
            && v["cost_usd"] == 1.5
    };
    assert!(want(&d.wait_item(&id, want)));
    for round in 0..2 {
        restart(&mut d);
        let v = d.get(&format!("/v1/agents/{id}"));
        assert!(want(&v), "round {round}: {v}");
        assert_eq!(
            health_errors(&d).0,
            0,
            "round {round}: {:?}",
            health_errors(&d)
        );
    }
}

const FILLERS: usize = 300;

fn claude_line(session: &str, msg: &str, output_tokens: u64, text: &str) -> String {
    let prompt = json!({"type": "user", "timestamp": ago(60), "sessionId": session,
        "cwd": "/src/app", "isSidechain": false, "uuid": format!("u-{msg}"),
        "message": {"role": "user", "content": format!("task {msg}")}});
    let answer = json!({"type": "assistant", "timestamp": ago(59), "sessionId": session,
        "cwd": "/src/app", "requestId": format!("req_{msg}"), "isSidechain": false,
        "message": {"id": msg, "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": text}],
            "usage": {"input_tokens": 100, "output_tokens": output_tokens}}});
    format!("{prompt}\n{answer}\n")
}

fn sub_agent_line(session: &str, msg: &str, input_tokens: u64) -> String {
    let v = json!({"type": "assistant", "timestamp": ago(58), "sessionId": session,
        "cwd": "/src/app", "requestId": format!("req_{msg}"), "isSidechain": true,
        "agentId": "a1",
        "message": {"id": msg, "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "sub-agent work"}],
            "usage": {"input_tokens": input_tokens, "output_tokens": 0}}});
    format!("{v}\n")
}

#[test]
fn regression_sub_agent_tokens_survive_a_restart_whatever_order_the_scan_reads_them_in() {
    let mut d = Daemon::start("exact-subagents-order");
    let project = d.home.join(".claude/projects/-src-app");
    // The main file sorts first, the (older layout) sub-agent file last, and more than one
    // scan batch of other conversations lies between them.
    let main_id = "00000000-0000-4000-8000-000000000000";
    let main = project.join(format!("{main_id}.jsonl"));
    append(&main, &claude_line(main_id, "m1", 0, "done"));
    for i in 0..FILLERS {
        let s = format!("{:08x}-0000-4000-8000-000000000000", 0x1000_0000 + i);
        append(
            &project.join(format!("{s}.jsonl")),
            &claude_line(&s, &format!("f{i}"), 1, "ok"),
        );
    }
    append(
        &project.join("agent-zz.jsonl"),
        &sub_agent_line(main_id, "s1", 1000),
    );
    let id = format!("claude-code:{main_id}");
    d.wait_item(&id, |v| v["usage"]["input_tokens"] == 1100);
    d.wait_for("/v1/agents?tab=all&limit=1000", "every conversation", |p| {
        p["items"].as_array().unwrap().len() == FILLERS + 1
    });
    assert_eq!(d.stop().code(), Some(0));
    // The main file changes while agentd is down.
    append(&main, &claude_line(main_id, "m2", 0, "more"));
    d.spawn();
    d.wait_scanned();
    let v = d.get(&format!("/v1/agents/{id}"));
    assert_eq!(v["usage"]["input_tokens"], 1200, "{v}");
    assert_eq!(health_errors(&d).0, 0);
}

#[test]
fn regression_a_sub_agent_file_read_before_its_main_file_still_counts_after_a_restart() {
    let mut d = Daemon::start("exact-subagent-first");
    let project = d.home.join(".claude/projects/-src-app");
    // The (older layout) sub-agent file sorts first, the main file last, and more than one
    // scan batch of other conversations lies between them.
    let main_id = "ffffffff-0000-4000-8000-000000000000";
    append(
        &project.join(format!("{main_id}.jsonl")),
        &claude_line(main_id, "m1", 0, "done"),
    );
    let sub = project.join("agent-aa.jsonl");
    append(&sub, &sub_agent_line(main_id, "s1", 1000));
    for i in 0..FILLERS {
        let s = format!(
            "{:08x}-0000-4000-8000-000000000000",
            0xb000_0000u32 + i as u32
        );
        append(
            &project.join(format!("{s}.jsonl")),
            &claude_line(&s, &format!("f{i}"), 1, "ok"),
        );
    }
    let id = format!("claude-code:{main_id}");
    d.wait_item(&id, |v| v["usage"]["input_tokens"] == 1100);
    assert_eq!(d.stop().code(), Some(0));
    // Only the sub-agent file changes while agentd is down.
    append(&sub, &sub_agent_line(main_id, "s2", 500));
    d.spawn();
    d.wait_scanned();
    let v = d.get(&format!("/v1/agents/{id}"));
    assert_eq!(v["usage"]["input_tokens"], 1600, "{v}");
    assert_eq!(health_errors(&d).0, 0);
}

#[test]
fn regression_scan_done_means_the_scanned_items_are_listed() {
    let mut d = Daemon::prepare("exact-scan-done", Options::default());
    std::fs::create_dir_all(&d.runs).unwrap();
    for i in 0..400 {
        d.write_run(
            &format!("r{i:03}"),
            &[rec(
                json!({"type": "start", "ts": ago(100), "title": format!("run {i}")}),
            )],
        );
    }
    d.spawn();
    let h = d.wait_scanned();
    let runs = source_in(&h, "runs").unwrap();
    assert_eq!(runs["files"], 400, "{runs}");
    let page = d.get("/v1/agents?tab=all&limit=1000");
    assert_eq!(page["items"].as_array().unwrap().len(), 400);
}

#[test]
fn regression_a_transcript_rewritten_in_place_while_down_is_read_again() {
    let mut d = Daemon::start("exact-rewrite");
    let session = "11111111-2222-4333-8444-555555555555";
    let path = d
        .home
        .join(".claude/projects/-src-app")
        .join(format!("{session}.jsonl"));
    append(&path, &claude_line(session, "a1", 5, "first answer"));
    let id = format!("claude-code:{session}");
    d.wait_item(&id, |v| v["usage"]["output_tokens"] == 5);
    assert_eq!(d.stop().code(), Some(0));
    // Rewritten in place (same inode, same first bytes, longer): the old answer's usage is
    // replaced, not added to.
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    let mut text = claude_line(session, "a1", 5, "first answer");
    text = text.replace("\"output_tokens\":5", "\"output_tokens\":7");
    text.push_str(&claude_line(session, "a2", 11, "second"));
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap()),
        ino
    );
    d.spawn();
    d.wait_scanned();
    let v = d.get(&format!("/v1/agents/{id}"));
    assert_eq!(v["usage"]["output_tokens"], 18, "{v}");
    assert_eq!(v["usage"]["input_tokens"], 200, "{v}");
}

/// A mixed corpus: run logs and Claude Code and Codex conversations, with lines around every
/// buffer size, sub-agents, and appends both while agentd runs and while it is down.
struct Corpus {
    runs: PathBuf,
    home: PathBuf,
}

const CODEX_ID: &str = "0199a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b";

impl Corpus {
    fn claude(&self, session: &str) -> PathBuf {
        self.home
            .join(".claude/projects/-src-app")
            .join(format!("{session}.jsonl"))
    }

    fn claude_sub(&self, session: &str, agent: &str) -> PathBuf {
        self.home
            .join(".claude/projects/-src-app")
            .join(session)
            .join(format!("subagents/agent-{agent}.jsonl"))
    }

    fn codex(&self) -> PathBuf {
        self.home
            .join(".codex/sessions/2026/11/29")
            .join(format!("rollout-2026-11-29T10-00-00-{CODEX_ID}.jsonl"))
    }

    /// Writes part `n` (0, 1, 2) of the corpus.
    fn write(&self, n: usize) {
        for (i, len) in LONG.iter().enumerate() {
            let log = self.runs.join(format!("long{i}.jsonl"));
            if n == 0 {
                append(
                    &log,
                    &line(json!({"type": "start", "ts": ago(100), "title": format!("long {i}")})),
                );
            }
            append(&log, &output(*len + n));
            append(
                &log,
                &line(
                    json!({"type": "usage", "ts": ago(1), "input_tokens": 10 * (i + 1), "cost_usd": 0.25}),
                ),
            );
            if n == 2 {
                append(
                    &log,
                    &line(json!({"type": "end", "ts": ago(0), "exit_code": 0})),
                );
            }
            let session = format!("{:08x}-aaaa-4bbb-8ccc-dddddddddddd", i);
            let tool = "y".repeat(*len);
            let result = json!({"type": "user", "timestamp": ago(50), "sessionId": session,
                "cwd": "/src/app", "isSidechain": false, "uuid": format!("r{n}"),
                "message": {"role": "user", "content": [{"type": "tool_result",
                    "tool_use_id": "t", "content": tool}]}});
            append(&self.claude(&session), &format!("{result}\n"));
            append(
                &self.claude(&session),
                &claude_line(&session, &format!("m{i}-{n}"), 3, "answer"),
            );
            append(
                &self.claude_sub(&session, "a1"),
                &sub_agent_line(&session, &format!("s{i}-{n}"), 40),
            );
        }
        let codex = |kind: &str, payload: Value| {
            format!(
                "{}\n",
                json!({"timestamp": ago(30), "type": kind, "payload": payload})
            )
        };
        let c = self.codex();
        if n == 0 {
            append(
                &c,
                &codex(
                    "session_meta",
                    json!({"id": CODEX_ID, "timestamp": ago(40), "cwd": "/src/api",
                    "originator": "codex_cli_rs", "cli_version": "0.104.0", "source": "cli"}),
                ),
            );
        }
        append(
            &c,
            &codex(
                "turn_context",
                json!({"turn_id": format!("t{n}"), "cwd": "/src/api",
                "approval_policy": "on-request", "model": "gpt-5-codex"}),
            ),
        );
        append(
            &c,
            &codex(
                "event_msg",
                json!({"type": "task_started", "turn_id": format!("t{n}")}),
            ),
        );
        append(
            &c,
            &codex(
                "event_msg",
                json!({"type": "user_message", "message": "z".repeat(LONG[n])}),
            ),
        );
        let total = 1000 * (n as u64 + 1);
        append(
            &c,
            &codex(
                "event_msg",
                json!({"type": "token_count", "info": {"total_token_usage": {
                "input_tokens": total, "cached_input_tokens": 0, "output_tokens": total / 10,
                "reasoning_output_tokens": 0, "total_tokens": total + total / 10},
                "last_token_usage": null, "model_context_window": 272000}}),
            ),
        );
        append(
            &c,
            &codex(
                "event_msg",
                json!({"type": "agent_message", "message": "done"}),
            ),
        );
        append(
            &c,
            &codex(
                "event_msg",
                json!({"type": "task_complete", "turn_id": format!("t{n}"),
                "last_agent_message": "done"}),
            ),
        );
    }
}

/// Every item, without what moves with the clock.
fn snapshot(d: &Daemon) -> Vec<Value> {
    let page = d.get("/v1/agents?tab=all&limit=1000");
    let mut items = page["items"].as_array().unwrap().clone();
    items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    for i in &mut items {
        if i["status"] == "working" || i["status"] == "blocked" {
            i["duration_ms"] = Value::Null;
        }
        // Time spent waiting is history the files do not hold: a fresh ingest cannot know it.
        if i["status"] == "blocked" {
            i["blocked_ms"] = Value::Null;
            i["blocked_since"] = Value::Null;
        }
    }
    items
}

#[test]
fn restarts_and_appends_give_exactly_what_a_fresh_ingest_of_the_final_files_gives() {
    let mut d = Daemon::start("exact-corpus");
    let corpus = Corpus {
        runs: d.runs.clone(),
        home: d.home.clone(),
    };
    corpus.write(0);
    let expect_items = LONG.len() * 2 + 1;
    d.wait_for("/v1/agents?tab=all&limit=1000", "the corpus", |p| {
        p["items"].as_array().unwrap().len() == expect_items
    });
    // Part 1 is written while agentd is down, part 2 while it runs, then one more restart.
    assert_eq!(d.stop().code(), Some(0));
    corpus.write(1);
    d.spawn();
    d.wait_scanned();
    corpus.write(2);
    d.wait_item("cli:long4", |v| v["status"] == "success");
    std::thread::sleep(std::time::Duration::from_millis(500));
    restart(&mut d);
    let after_restarts = snapshot(&d);
    assert_eq!(after_restarts.len(), expect_items);

    // A second daemon reads the final files from scratch.
    let mut fresh = Daemon::prepare("exact-corpus-fresh", Options::default());
    fresh.home = d.home.clone();
    std::fs::create_dir_all(&fresh.runs).unwrap();
    for e in std::fs::read_dir(&d.runs).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), fresh.runs.join(e.file_name())).unwrap();
    }
    assert_eq!(d.stop().code(), Some(0));
    fresh.spawn();
    fresh.wait_scanned();
    let from_scratch = snapshot(&fresh);
    assert_eq!(after_restarts, from_scratch);

    // And what the files say: per run 3 usage records; per conversation 3 answers plus 3
    // sub-agent responses; Codex's last running total.
    for (i, _) in LONG.iter().enumerate() {
        let run = from_scratch
            .iter()
            .find(|v| v["id"] == format!("cli:long{i}"))
            .unwrap();
        assert_eq!(run["usage"]["input_tokens"], 30 * (i + 1), "{run}");
        assert_eq!(run["cost_usd"], 0.75, "{run}");
        assert_eq!(run["status"], "success", "{run}");
        let convo = from_scratch
            .iter()
            .find(|v| v["id"] == format!("claude-code:{i:08x}-aaaa-4bbb-8ccc-dddddddddddd"))
            .unwrap();
        assert_eq!(convo["usage"]["input_tokens"], 3 * 100 + 3 * 40, "{convo}");
        assert_eq!(convo["usage"]["output_tokens"], 9, "{convo}");
        assert_eq!(convo["status"], "success", "{convo}");
    }
    let codex = from_scratch
        .iter()
        .find(|v| v["id"] == format!("codex:{CODEX_ID}"))
        .unwrap();
    assert_eq!(codex["usage"]["input_tokens"], 3000, "{codex}");
    assert_eq!(codex["status"], "success", "{codex}");
    // Lines over a megabyte are within the 16 MiB line cap: nothing is skipped or counted bad.
    assert_eq!(health_errors(&fresh).0, 0, "{:?}", health_errors(&fresh));
    d.spawn();
    d.wait_scanned();
    assert_eq!(health_errors(&d).0, 0, "{:?}", health_errors(&d));
}

/// Every item of a daemon, without what moves with the clock.
fn items_of(d: &Daemon) -> Vec<Value> {
    let page = d.get("/v1/agents?tab=all&limit=1000");
    let mut items = page["items"].as_array().unwrap().clone();
    items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    items
}

/// Conversations `0..n` of `project`, each a main file and a sub-agent file (round 0), or one
/// more answer in each of every seventh of them (round 1): 110 input tokens after round 0,
/// 230 after round 1. Returns how many conversations the round wrote to.
fn write_conversations(project: &std::path::Path, n: usize, round: usize) -> usize {
    let session = |i: usize| format!("{:08x}-0000-4000-8000-00000000abcd", 0x2000_0000 + i);
    let (step, tag, output, sub_input) = if round == 0 {
        (1, "", 1, 10)
    } else {
        (7, "b", 2, 20)
    };
    for i in (0..n).step_by(step) {
        let s = session(i);
        append(
            &project.join(format!("{s}.jsonl")),
            &claude_line(&s, &format!("m{i}{tag}"), output, "ok"),
        );
        append(
            &project.join(&s).join("subagents").join("agent-a1.jsonl"),
            &sub_agent_line(&s, &format!("s{i}{tag}"), sub_input),
        );
    }
    (0..n).step_by(step).count()
}

/// Waits until `changed` conversations show round 1 of [`write_conversations`], then checks
/// that `d`'s items, after a restart too, are those of a fresh ingest of the same files.
fn changed_conversations_count_as_a_fresh_ingest(d: &mut Daemon, n: usize, changed: usize) {
    d.wait_for(
        "/v1/agents?tab=all&limit=1000",
        "the changed conversations",
        |p| {
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| v["usage"]["input_tokens"] == 230)
                .count()
                == changed
        },
    );
    let live = items_of(d);
    restart(d);
    assert_eq!(items_of(d), live, "a restart changed the items");
    assert_eq!(health_errors(d).0, 0);
    assert_eq!(d.stop().code(), Some(0));
    let mut fresh = Daemon::prepare("exact-resident-fresh", Options::default());
    fresh.home = d.home.clone();
    fresh.spawn();
    fresh.wait_scanned();
    let mut a = live;
    let mut b = items_of(&fresh);
    for v in a.iter_mut().chain(b.iter_mut()) {
        v["duration_ms"] = Value::Null;
    }
    assert_eq!(a.len(), n);
    assert_eq!(a, b);
}

#[test]
fn quiet_conversations_let_go_of_their_folds_and_count_the_same_when_they_change_again() {
    // More conversations than agentd keeps folds of (512), each with a sub-agent file: after a
    // couple of quiet seconds most folds are let go of, and are loaded back from their cursors
    // when their files change.
    let mut d = Daemon::start("exact-resident");
    let project = d.home.join(".claude/projects/-src-app");
    let n = 700;
    write_conversations(&project, n, 0);
    d.wait_for("/v1/agents?tab=all&limit=1000", "every conversation", |p| {
        p["items"].as_array().unwrap().len() == n
            && p["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["usage"]["input_tokens"] == 110)
    });
    // Quiet for a few ticks: folds are let go of.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        d.log_text().contains("folds (quiet)"),
        "no fold was let go of"
    );
    let changed = write_conversations(&project, n, 1);
    changed_conversations_count_as_a_fresh_ingest(&mut d, n, changed);
}

#[test]
fn a_backfill_lets_go_of_folds_as_it_goes_and_counts_the_same_when_they_change_again() {
    // More files than twice the folds agentd keeps (128) already there at start: the scan lets
    // go of folds as their cursors are committed, without waiting for the writer; conversations
    // changed afterwards load their folds back and count what a fresh ingest counts, across a
    // restart too.
    let mut d = Daemon::prepare("exact-backfill-resident", Options::default());
    let project = d.home.join(".claude/projects/-src-app");
    let n = 900;
    write_conversations(&project, n, 0);
    d.spawn();
    d.wait_scanned();
    assert!(
        d.log_text().contains("folds (while scanning)"),
        "the scan held every fold"
    );
    let items = items_of(&d);
    assert_eq!(items.len(), n);
    for v in &items {
        assert_eq!(v["usage"]["input_tokens"], 110, "{v}");
    }
    let changed = write_conversations(&project, n, 1);
    changed_conversations_count_as_a_fresh_ingest(&mut d, n, changed);
}
