//! Crashes at random moments lose and double-count nothing: while a writer appends to run logs
//! and conversations (long lines, sub-agents, new files), agentd is SIGKILLed and restarted again
//! and again; at the end every item must equal what a second daemon makes of the final files
//! from scratch, and the database must open every time. The same for crashes in the middle of a
//! conversation backfill.
//!
//! `AGENTD_CRASH_ROUNDS` sets the number of crashes (10 by default, as in CI; the long suite is
//! `AGENTD_CRASH_ROUNDS=100 cargo test --release -p agentd-tests --test crash`), and
//! `AGENTD_CRASH_SEED` replays a run (the seed is printed).

use agentd_tests::{Daemon, Options, ago, codex_session_meta, codex_token_count, rec};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A small deterministic generator (xorshift), so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn append(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    // Written in pieces, as a real writer may: a line can be half there when agentd reads.
    let bytes = text.as_bytes();
    let cut = bytes.len() / 2;
    f.write_all(&bytes[..cut]).unwrap();
    f.flush().unwrap();
    f.write_all(&bytes[cut..]).unwrap();
}

/// Lengths around the read size, the run-output record size, and a megabyte.
const LENGTHS: [usize; 6] = [10, 2_000, 65_535, 65_537, 262_145, 1_048_600];

/// Appends one random record to one random file of the corpus.
fn write_one(rng: &mut Rng, runs: &Path, home: &Path, n: u64) {
    let len = LENGTHS[rng.below(LENGTHS.len() as u64) as usize];
    match rng.below(3) {
        0 => {
            let run = runs.join(format!("r{}.jsonl", rng.below(6)));
            let mut text = String::new();
            if !run.exists() {
                text.push_str(&format!(
                    "{}\n",
                    rec(json!({"type": "start", "ts": ago(100), "title": format!("run {n}")}))
                ));
            }
            text.push_str(&format!(
                "{}\n{}\n",
                rec(json!({"type": "output", "ts": ago(1), "stream": "stdout", "data": "o".repeat(len)})),
                rec(json!({"type": "usage", "ts": ago(1), "input_tokens": 7, "cost_usd": 0.125}))
            ));
            append(&run, &text);
        }
        kind => {
            let session = format!("{:08x}-aaaa-4bbb-8ccc-dddddddddddd", rng.below(4));
            let dir = home.join(".claude/projects/-src-app");
            let (path, sidechain) = if kind == 1 {
                (dir.join(format!("{session}.jsonl")), false)
            } else {
                (
                    dir.join(&session)
                        .join(format!("subagents/agent-{}.jsonl", rng.below(2))),
                    true,
                )
            };
            let line = json!({"type": "assistant", "timestamp": ago(50), "sessionId": session,
                "cwd": "/src/app", "requestId": format!("req_{n}"), "isSidechain": sidechain,
                "message": {"id": format!("msg_{n}"), "type": "message", "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929", "stop_reason": "end_turn",
                    "content": [{"type": "text", "text": "t".repeat(len)}],
                    "usage": {"input_tokens": 11, "output_tokens": 3}}});
            append(&path, &format!("{line}\n"));
        }
    }
}

/// Every item, without what moves with the clock.
fn snapshot(d: &Daemon) -> Vec<Value> {
    let page = d.get("/v1/agents?tab=all&limit=1000");
    let mut items = page["items"].as_array().unwrap().clone();
    items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    for i in &mut items {
        i["duration_ms"] = Value::Null;
        // Time spent waiting is history the files do not hold: a fresh ingest cannot know it.
        i["blocked_ms"] = Value::Null;
        i["blocked_since"] = Value::Null;
    }
    items
}

/// Waits until two snapshots a second apart agree (everything written has been read).
fn settled(d: &Daemon) -> Vec<Value> {
    let mut last = snapshot(d);
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(1000));
        let now = snapshot(d);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("agentd never settled");
}

/// Starts `fresh` (a daemon over the same files, with an empty state dir) and compares every
/// item it ingests with `after_crashes`.
fn same_as_a_fresh_ingest(after_crashes: &[Value], fresh: &mut Daemon, seed: u64) {
    fresh.spawn();
    fresh.wait_scanned();
    let from_scratch = settled(fresh);
    assert_eq!(
        after_crashes.len(),
        from_scratch.len(),
        "seed {seed}: item counts differ"
    );
    for (a, b) in after_crashes.iter().zip(&from_scratch) {
        assert_eq!(a, b, "seed {seed}: an item differs after the crashes");
    }
}

/// `AGENTD_CRASH_SEED`, or one from the clock (printed by the test, to replay it).
fn seed() -> u64 {
    std::env::var("AGENTD_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

#[test]
fn sigkill_at_random_moments_loses_and_double_counts_nothing() {
    let rounds: u64 = std::env::var("AGENTD_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let seed = seed();
    eprintln!("crash suite: {rounds} rounds, AGENTD_CRASH_SEED={seed}");
    let mut d = Daemon::start("crash-rounds");
    let (runs, home) = (d.runs.clone(), d.home.clone());
    std::fs::create_dir_all(&runs).unwrap();
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (writing, runs, home) = (writing.clone(), runs.clone(), home.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut n = 0;
            while writing.load(Ordering::Relaxed) {
                write_one(&mut rng, &runs, &home, n);
                n += 1;
                std::thread::sleep(Duration::from_millis(5 + rng.below(25)));
            }
            n
        })
    };
    let mut rng = Rng(seed);
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
        d.kill();
        std::thread::sleep(Duration::from_millis(rng.below(100)));
        // The database must open, whatever moment the crash hit.
        d.spawn();
        if round % 3 == 2 {
            d.wait_scanned();
        }
    }
    writing.store(false, Ordering::Relaxed);
    let records = writer.join().unwrap();
    let after_crashes = settled(&d);
    let health = d.get("/v1/health");
    eprintln!("{records} records written, {} items", after_crashes.len());

    // A second daemon reads the final files from scratch.
    let mut fresh = Daemon::prepare("crash-fresh", Options::default());
    fresh.home = home.clone();
    std::fs::create_dir_all(&fresh.runs).unwrap();
    for e in std::fs::read_dir(&runs).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), fresh.runs.join(e.file_name())).unwrap();
    }
    assert_eq!(d.stop().code(), Some(0));
    same_as_a_fresh_ingest(&after_crashes, &mut fresh, seed);
    // Half-written lines at a crash are read once complete, never counted as bad.
    let errors: u64 = health["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["errors"].as_u64().unwrap())
        .sum();
    assert_eq!(errors, 0, "seed {seed}: {health}");
}

/// Writes a corpus a backfill takes several batches and a while over (a scan sends 256 files at
/// a time): `claude` Claude Code conversations (every seventh with a sub-agent file) of a
/// prompt and a 20 KB answer with its usage, and `codex` Codex rollouts.
fn write_backfill_corpus(home: &Path, claude: usize, codex: usize) {
    for i in 0..claude {
        let session = format!("{i:08x}-1111-4222-8333-444444444444");
        let dir = home.join(format!(".claude/projects/-src-app{}", i % 5));
        let line = |kind: &str, sidechain: bool, n: usize| {
            json!({"type": kind, "timestamp": ago(3000 - i as i64), "sessionId": session,
            "cwd": "/src/app", "isSidechain": sidechain, "requestId": format!("req_{i}_{n}"),
            "message": if kind == "user" {
                json!({"role": "user", "content": format!("task {i}")})
            } else {
                json!({"id": format!("msg_{i}_{n}"), "type": "message", "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929", "stop_reason": "end_turn",
                    "content": [{"type": "text", "text": "d".repeat(20_000)}],
                    "usage": {"input_tokens": 10 + i, "output_tokens": 3 + n}})
            }})
            .to_string()
        };
        let main = format!(
            "{}\n{}\n",
            line("user", false, 0),
            line("assistant", false, 1)
        );
        append(&dir.join(format!("{session}.jsonl")), &main);
        if i % 7 == 0 {
            let sub = format!("{}\n", line("assistant", true, 2));
            append(&dir.join(&session).join("subagents/agent-a1.jsonl"), &sub);
        }
    }
    for i in 0..codex {
        let id = format!("{i:08x}-5555-4666-8777-888888888888");
        let path = home
            .join(".codex/sessions/2026/11/29")
            .join(format!("rollout-2026-11-29T10-00-00-{id}.jsonl"));
        let at = ago(3000 - i as i64);
        let record = |kind: &str, payload: Value| {
            json!({"timestamp": at, "type": kind, "payload": payload}).to_string()
        };
        let total = 1000 + i as u64;
        let lines = [
            record("session_meta", codex_session_meta(&id, &at)),
            record(
                "turn_context",
                json!({"turn_id": "t0", "cwd": "/src/api", "approval_policy": "on-request",
                    "model": "gpt-5-codex"}),
            ),
            record(
                "event_msg",
                json!({"type": "user_message", "message": format!("task {i}")}),
            ),
            record("event_msg", codex_token_count(total)),
            record(
                "event_msg",
                json!({"type": "task_complete", "turn_id": "t0", "last_agent_message": "done"}),
            ),
        ];
        append(&path, &format!("{}\n", lines.join("\n")));
    }
}

/// Regression: a scan's last batch is synced on the scan's schedule too, not at once, so a
/// backfill is listed before it is on disk. SIGKILL agentd as soon as every item is listed: the
/// next start must read again what was not synced, and count it once.
#[test]
fn sigkill_as_soon_as_a_backfill_is_listed_loses_and_double_counts_nothing() {
    let seed = seed();
    let mut d = Daemon::prepare("crash-after-backfill", Options::default());
    write_backfill_corpus(&d.home, 300, 120);
    d.spawn();
    d.wait_for("/v1/health", "the backfill listed", |h| {
        h["items"].as_u64() == Some(420)
            && h["sources"]
                .as_array()
                .is_some_and(|s| s.iter().all(|s| s["scan_done"] == true))
    });
    d.kill();
    d.spawn();
    d.wait_scanned();
    let after_crash = settled(&d);
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(after_crash.len(), 420, "every conversation is there");
    let mut fresh = Daemon::prepare("crash-after-backfill-fresh", Options::default());
    fresh.home = d.home.clone();
    same_as_a_fresh_ingest(&after_crash, &mut fresh, seed);
}

/// Regression: a scan's batches with more to come are made durable only every few seconds, so
/// a crash during a backfill loses several batches at once. What is lost must be read again,
/// once: SIGKILL agentd at random moments of a conversation backfill, again and again, and the
/// final items must equal a fresh backfill of the same files.
#[test]
fn sigkill_during_a_conversation_backfill_loses_and_double_counts_nothing() {
    let seed = seed();
    eprintln!("backfill crashes: AGENTD_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let mut d = Daemon::prepare("crash-backfill", Options::default());
    // 700 + 290 items: under the 1,000 one list page holds, and several batches per source.
    write_backfill_corpus(&d.home, 700, 290);
    let mut killed_mid_scan = 0;
    for _ in 0..6 {
        d.spawn();
        // Once the scan has taken files in, at a random moment while it goes on.
        loop {
            let health = d.get("/v1/health");
            let sources = health["sources"].as_array().unwrap();
            if sources.iter().all(|s| s["scan_done"] == true) {
                break;
            }
            if sources
                .iter()
                .any(|s| s["scan_done"] == false && s["files"].as_u64() > Some(0))
            {
                std::thread::sleep(Duration::from_millis(rng.below(150)));
                killed_mid_scan += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        d.kill();
    }
    assert!(
        killed_mid_scan >= 3,
        "seed {seed}: only {killed_mid_scan} of 6 crashes hit the backfill"
    );
    d.spawn();
    d.wait_scanned();
    let after_crashes = settled(&d);
    let health = d.get("/v1/health");
    assert_eq!(d.stop().code(), Some(0));

    let mut fresh = Daemon::prepare("crash-backfill-fresh", Options::default());
    fresh.home = d.home.clone();
    assert_eq!(
        after_crashes.len(),
        990,
        "seed {seed}: every conversation is there"
    );
    same_as_a_fresh_ingest(&after_crashes, &mut fresh, seed);
    for source in ["claude-code", "codex"] {
        let s = agentd_tests::source_in(&health, source).unwrap();
        assert_eq!(s["errors"], 0, "seed {seed}: {s}");
    }
    eprintln!("{killed_mid_scan} of 6 crashes hit the backfill");
}
