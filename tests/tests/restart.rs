//! Durability of ingest: items survive restarts and crashes unchanged, nothing is read twice,
//! files changed while the daemon was down are picked up, and bad files are skipped, counted
//! and survived.

use agentd_tests::{Daemon, ago, ids, rec};
use serde_json::{Value, json};

fn all_items(d: &Daemon) -> Vec<Value> {
    let page = d.get("/v1/agents?tab=all&limit=1000");
    let mut items = page["items"].as_array().unwrap().clone();
    for i in &mut items {
        if i["status"] == "working" || i["status"] == "blocked" {
            i["duration_ms"] = Value::Null; // time so far moves with the clock
        }
    }
    items
}

fn usage_line(tokens: u64) -> String {
    format!(
        "{}\n",
        rec(
            json!({"type": "usage", "ts": ago(0), "input_tokens": tokens, "output_tokens": 1, "cost_usd": 0.5})
        )
    )
}

#[test]
fn items_survive_a_restart_unchanged_and_are_never_duplicated() {
    let mut d = Daemon::start("restart");
    for i in 0..20 {
        d.write_run(
            &format!("r{i}"),
            &[rec(
                json!({"type": "start", "ts": ago(100 - i), "title": format!("run {i}")}),
            )],
        );
    }
    d.append_run("r3", usage_line(10).as_bytes());
    d.append_run(
        "r4",
        format!(
            "{}\n",
            rec(json!({"type": "end", "ts": ago(0), "status": "success"}))
        )
        .as_bytes(),
    );
    d.wait_item("cli:r3", |v| v["usage"]["input_tokens"] == 10);
    d.wait_item("cli:r4", |v| v["status"] == "success");
    let before = all_items(&d);
    assert_eq!(before.len(), 20);

    assert_eq!(d.stop().code(), Some(0));
    d.spawn();
    // Give the start-up scan time to run, then compare.
    d.wait_for("/v1/health", "the scan", |v| v["sources"][0]["files"] == 20);
    assert_eq!(all_items(&d), before);

    // Appending after the restart continues from the cursor: usage adds once.
    d.append_run("r3", usage_line(5).as_bytes());
    let r3 = d.wait_item("cli:r3", |v| v["usage"]["input_tokens"] == 15);
    assert_eq!(r3["cost_usd"], 1.0);
    assert_eq!(all_items(&d).len(), 20);
}

#[test]
fn a_crash_loses_nothing_committed_and_replays_to_the_same_item() {
    let mut d = Daemon::start("crash");
    d.write_run(
        "c",
        &[rec(
            json!({"type": "start", "ts": ago(10), "title": "crashy"}),
        )],
    );
    for _ in 0..50 {
        d.append_run("c", usage_line(1).as_bytes());
    }
    d.wait_item("cli:c", |v| v["usage"]["input_tokens"] == 50);
    d.kill();
    // Written while the daemon is down.
    for _ in 0..25 {
        d.append_run("c", usage_line(1).as_bytes());
    }
    d.write_run(
        "new",
        &[rec(
            json!({"type": "start", "ts": ago(1), "title": "while down"}),
        )],
    );
    d.spawn();
    let c = d.wait_item("cli:c", |v| v["usage"]["input_tokens"] == 75);
    assert_eq!(c["usage"]["output_tokens"], 75);
    d.wait_item("cli:new", |v| v["title"] == "while down");
}

#[test]
fn a_half_written_line_waits_for_its_newline() {
    let d = Daemon::start("halfline");
    d.write_run("h", &[rec(json!({"type": "start", "ts": ago(5)}))]);
    d.wait_item("cli:h", |v| v["status"] == "working");
    let end =
        rec(json!({"type": "end", "ts": ago(0), "status": "canceled", "error": "stopped by user"}));
    let (a, b) = end.split_at(end.len() / 2);
    d.append_run("h", a.as_bytes());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(d.get("/v1/agents/cli:h")["status"], "working");
    assert_eq!(
        d.get("/v1/health")["sources"][0]["errors"],
        0,
        "half a line is not an error"
    );
    d.append_run("h", format!("{b}\n").as_bytes());
    let h = d.wait_item("cli:h", |v| v["status"] == "canceled");
    assert_eq!(h["status_detail"], "stopped by user");
}

#[test]
fn truncated_and_replaced_files_are_read_again() {
    let d = Daemon::start("truncate");
    d.write_run(
        "t",
        &[
            rec(json!({"type": "start", "ts": ago(9), "title": "first"})),
            usage_line(100).trim().to_owned(),
        ],
    );
    d.wait_item("cli:t", |v| v["usage"]["input_tokens"] == 100);
    // Rewritten in place, shorter.
    d.write_run(
        "t",
        &[rec(
            json!({"type": "start", "ts": ago(5), "title": "second"}),
        )],
    );
    let t = d.wait_item("cli:t", |v| v["title"] == "second");
    assert_eq!(
        t["usage"]["input_tokens"], 0,
        "usage of the old content is gone"
    );
    // Replaced by a rename (new inode), longer.
    let tmp = d.runs.join(".t.tmp");
    std::fs::write(
        &tmp,
        format!(
            "{}\n{}{}",
            rec(json!({"type": "start", "ts": ago(3), "title": "third"})),
            usage_line(7),
            usage_line(7)
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, d.runs.join("t.jsonl")).unwrap();
    let t = d.wait_item("cli:t", |v| v["title"] == "third");
    assert_eq!(t["usage"]["input_tokens"], 14);
    assert_eq!(
        ids(&d.get("/v1/agents?tab=all")),
        ["cli:t"],
        "a dot-file temporary is not a run"
    );
}

#[test]
fn garbage_huge_lines_and_unreadable_files_are_skipped_and_counted() {
    let d = Daemon::start("garbage");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(
        format!(
            "{}\n",
            rec(json!({"type": "start", "ts": ago(9), "title": "survivor"}))
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(b"\x00\xff\xfebinary garbage\n");
    bytes.extend_from_slice(b"{\"type\":\"usage\",\"ts\":");
    bytes.extend(std::iter::repeat_n(b'9', 17 * 1024 * 1024)); // a 17 MiB line
    bytes.push(b'\n');
    bytes.extend_from_slice(usage_line(3).as_bytes());
    d.append_run("g", &bytes);
    // A symlink loop and a directory named like a run log.
    std::os::unix::fs::symlink(d.runs.join("loop.jsonl"), d.runs.join("loop.jsonl")).unwrap();
    std::fs::create_dir(d.runs.join("dir.jsonl")).unwrap();
    d.write_run("ok", &[rec(json!({"type": "start", "ts": ago(1)}))]);

    let g = d.wait_item("cli:g", |v| v["usage"]["input_tokens"] == 3);
    assert_eq!(g["title"], "survivor");
    d.wait_item("cli:ok", |_| true);
    let h = d.wait_for("/v1/health", "errors counted", |v| {
        v["sources"][0]["errors"].as_u64() >= Some(4)
    });
    assert_eq!(
        h["sources"][0]["errors"], 4,
        "garbage, huge line, loop, dir: {h:#}"
    );
    assert_eq!(h["status"], "ok");

    let huge = d.get("/v1/health")["sources"][0]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!huge.is_empty());
    // The errors survive a restart (they are committed with the cursors), and nothing is re-read.
    let mut d = d;
    d.stop();
    d.spawn();
    d.wait_for("/v1/health", "the scan", |v| {
        v["sources"][0]["files"].as_u64() >= Some(2)
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let after = d.get("/v1/health")["sources"][0]["errors"]
        .as_u64()
        .unwrap();
    // The loop and the directory fail again on the rescan (2 more); the file lines do not.
    assert_eq!(after, 6, "{}", d.log_text());
    assert_eq!(d.get("/v1/agents/cli:g")["usage"]["input_tokens"], 3);
}

#[test]
fn a_runs_dir_that_appears_later_is_followed() {
    let scratch = agentd_tests::Scratch::new("extra");
    let extra = scratch.0.join("more-runs");
    let mut opts = agentd_tests::Options::default();
    let cfg = scratch.0.join("config.toml");
    std::fs::write(
        &cfg,
        format!("[sources.runs]\ndirs = [\"{}\"]\n", extra.display()),
    )
    .unwrap();
    opts.env
        .push(("AGENTD_CONFIG".into(), cfg.display().to_string()));
    let d = Daemon::start_with("extra", opts);
    let h = d.get("/v1/health");
    assert_eq!(
        h["sources"][0]["roots"][1].as_str().unwrap(),
        extra.display().to_string()
    );
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(
        extra.join("late.jsonl"),
        format!(
            "{}\n",
            rec(json!({"type": "start", "ts": ago(1), "title": "late"}))
        ),
    )
    .unwrap();
    d.wait_item("cli:late", |v| v["title"] == "late");
}

#[test]
fn a_new_user_name_rebuilds_the_personal_tab() {
    let mut d = Daemon::start("newuser");
    d.write_run("by-alice", &[rec(json!({"type": "start", "ts": ago(20)}))]);
    d.write_run(
        "by-bob",
        &[rec(
            json!({"type": "start", "ts": ago(10), "creator": "bob"}),
        )],
    );
    d.wait_for("/v1/summary?tab=all", "both runs", |v| v["working"] == 2);
    assert_eq!(ids(&d.get("/v1/agents")), ["cli:by-alice"]);
    assert_eq!(d.get("/v1/summary")["working"], 1);

    d.stop();
    d.opts.user = "bob".into();
    d.spawn();
    assert_eq!(ids(&d.get("/v1/agents")), ["cli:by-bob"]);
    assert_eq!(
        d.get("/v1/agents/cli:by-alice")["creator"],
        "alice",
        "the recorded creator stays"
    );
    assert_eq!(d.get("/v1/agents/cli:by-bob")["mine"], true);
    assert_eq!(d.get("/v1/summary")["working"], 1);
    assert_eq!(d.get("/v1/summary?tab=all")["working"], 2);
}
