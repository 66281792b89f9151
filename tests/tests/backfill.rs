//! A runs dir larger than one scan batch: the scan sends its files to the writer in several
//! transactions, all but the last marked as a scan that continues, with the writer committing
//! one while the scan reads the next. Every file lands once, a restart after appends changes
//! nothing it should not, and the result equals a fresh ingest of the final files.

use agentd_tests::{Daemon, Options, ago, rec};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// More than two scan batches (32,768 files each): the scan waits for the writer to commit a
/// batch before it sends the one after the next.
const RUNS: usize = 70_000;

/// Runs still working when the daemon first scans them; they end while it is down.
const ENDED_WHILE_DOWN: usize = 300;

fn wait_scanned(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let h = d.get_waiting("/v1/health");
        let done = h["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["scan_done"] == true);
        if done && h["items"] == RUNS {
            return;
        }
        assert!(Instant::now() < deadline, "the scan did not finish: {h:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a reader sees: the summary, and every item (paged through in list order) by its id.
fn snapshot(d: &Daemon) -> Value {
    let mut items = serde_json::Map::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/agents?tab=all&limit=1000&cursor={c}"),
            None => "/v1/agents?tab=all&limit=1000".to_owned(),
        };
        let page = d.get_waiting(&path);
        for item in page["items"].as_array().unwrap() {
            let mut item = item.clone();
            // Time moves these on between two reads; nothing else may change.
            item["duration_ms"] = Value::Null;
            item["blocked_ms"] = Value::Null;
            let id = item["id"].as_str().unwrap().to_owned();
            assert!(
                items.insert(id.clone(), item).is_none(),
                "{id} listed twice"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut summary = d.get_waiting("/v1/summary");
    summary["waiting_since"] = Value::Null;
    json!({ "summary": summary, "items": items })
}

/// How many items have each status.
fn by_status(snapshot: &Value) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for item in snapshot["items"].as_object().unwrap().values() {
        *out.entry(item["status"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    out
}

/// The name of the `i`th run log: scattered like `agentctl run`'s hashed names, so that the
/// name order the scan reads in is not the order of the runs' times.
fn name(i: usize) -> String {
    // An odd multiplier is a bijection on u64: every name is distinct.
    format!("{:016x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4B_5A7D))
}

#[test]
fn a_runs_backfill_larger_than_one_scan_batch_is_exact_after_appends_and_a_restart() {
    let mut d = Daemon::prepare("backfill-batches", Options::default());
    let statuses = ["success", "failed", "canceled"];
    for i in 0..RUNS {
        let mut lines = vec![rec(json!({
            "type": "start", "ts": ago(200_000 - i as i64),
            "title": format!("job {i}"), "cwd": format!("/src/p{}", i % 40),
        }))];
        lines.push(rec(json!({
            "type": "usage", "ts": ago(190_000 - i as i64),
            "input_tokens": 100 + i, "output_tokens": 10, "cost_usd": 0.001,
        })));
        if i >= ENDED_WHILE_DOWN {
            lines.push(rec(json!({
                "type": "end", "ts": ago(180_000 - i as i64), "status": statuses[i % 3],
            })));
        }
        d.write_run(&name(i), &lines);
    }
    d.spawn();
    wait_scanned(&d);
    let before = snapshot(&d);
    assert_eq!(before["items"].as_object().unwrap().len(), RUNS);
    let counts = by_status(&before);
    assert_eq!(counts["working"], ENDED_WHILE_DOWN, "{counts:?}");
    assert_eq!(d.stop().code(), Some(0));

    // While it is down, the working runs end.
    for i in 0..ENDED_WHILE_DOWN {
        let line = rec(json!({"type": "end", "ts": ago(10), "status": "success"}));
        agentd_tests::append(
            &d.runs.join(format!("{}.jsonl", name(i))),
            &format!("{line}\n"),
        );
    }
    d.spawn();
    wait_scanned(&d);
    let restarted = snapshot(&d);
    let mut expected = counts.clone();
    expected.remove("working");
    *expected.get_mut("success").unwrap() += ENDED_WHILE_DOWN;
    assert_eq!(
        by_status(&restarted),
        expected,
        "after the runs ended while it was down"
    );
    for i in ENDED_WHILE_DOWN..RUNS {
        let id = format!("cli:{}", name(i));
        assert_eq!(
            restarted["items"][&id], before["items"][&id],
            "a run that did not change did"
        );
    }
    assert_eq!(d.stop().code(), Some(0));

    // A fresh ingest of the final files reads the same.
    std::fs::remove_file(d.state.join("agentd.redb")).unwrap();
    d.spawn();
    wait_scanned(&d);
    assert!(
        snapshot(&d) == restarted,
        "a fresh ingest differs from the restarted one"
    );
    assert_eq!(d.stop().code(), Some(0));
}
