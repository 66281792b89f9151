//! The database file gives back its free space: the writer compacts it once it is idle (after
//! a burst of writes, and once after start). Nothing changes for a reader but a moment of
//! `503 unavailable`: every item, count and total is the same before and after, and after a
//! restart.

use agentd_tests::{Daemon, Options, ago, rec};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const RUNS: usize = 3_000;

fn db_size(d: &Daemon) -> u64 {
    std::fs::metadata(d.state.join("agentd.redb")).map_or(0, |m| m.len())
}

/// What a reader sees of the whole store: the summary, and every item by status.
fn snapshot(d: &Daemon) -> Value {
    let mut out = json!({ "summary": d.get_waiting("/v1/summary") });
    for status in ["working", "blocked", "success", "failed", "canceled"] {
        let page = d.get_waiting(&format!("/v1/agents?tab=all&status={status}&limit=1000"));
        out[status] = page["items"].clone();
    }
    // Time moves these on between two reads; nothing else may change.
    for status in ["working", "blocked"] {
        for item in out[status].as_array_mut().unwrap() {
            item["duration_ms"] = Value::Null;
            item["blocked_ms"] = Value::Null;
        }
    }
    out["summary"]["waiting_since"] = Value::Null;
    out
}

fn wait_scanned(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = d.get_waiting("/v1/health");
        if h["items"] == RUNS
            && h["sources"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["scan_done"] == true)
        {
            return;
        }
        assert!(Instant::now() < deadline, "the scan did not finish: {h:#}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_database_left_with_free_pages_is_compacted_and_reads_the_same() {
    let mut d = Daemon::prepare("compaction", Options::default());
    std::fs::create_dir_all(&d.runs).unwrap();
    let statuses = ["success", "failed", "canceled"];
    for i in 0..RUNS {
        let mut lines = vec![rec(json!({
            "type": "start", "ts": ago(90_000 - i as i64),
            "title": format!("nightly job {i}: regenerate the fixtures and compare them"),
            "cwd": format!("/home/someone/src/project-{}", i % 50),
        }))];
        if i % 100 != 0 {
            lines.push(rec(json!({
                "type": "usage", "ts": ago(80_000 - i as i64),
                "input_tokens": 1000 + i, "output_tokens": 10, "cost_usd": 0.01,
            })));
            lines.push(rec(json!({
                "type": "end", "ts": ago(70_000 - i as i64), "status": statuses[i % 3],
            })));
        }
        d.write_run(&format!("run-{i:05}"), &lines);
    }
    // A database with 40 MB of filler written before the items: dropped while the daemon is
    // down, it leaves a hole in the file, as a backfill's freed pages do.
    let db = d.state.join("agentd.redb");
    std::fs::create_dir_all(&d.state).unwrap();
    const FILLER: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("filler");
    {
        let redb = redb::Database::create(&db).unwrap();
        let tx = redb.begin_write().unwrap();
        {
            let mut t = tx.open_table(FILLER).unwrap();
            for k in 0..10_000u64 {
                t.insert(k, vec![7u8; 4000].as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    d.spawn();
    wait_scanned(&d);
    let snapshot_first = snapshot(&d);
    assert_eq!(d.stop().code(), Some(0));
    {
        // Something at the end of the file too (another program's table, say), so that the
        // hole is not simply cut off the end.
        const TAIL: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("tail");
        let redb = redb::Database::open(&db).unwrap();
        let tx = redb.begin_write().unwrap();
        {
            let mut t = tx.open_table(TAIL).unwrap();
            for k in 0..500u64 {
                t.insert(k, vec![9u8; 4000].as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
        let tx = redb.begin_write().unwrap();
        tx.delete_table(FILLER).unwrap();
        tx.commit().unwrap();
    }
    let peak = db_size(&d);
    assert!(peak > 40 << 20, "{peak}");
    d.spawn();
    wait_scanned(&d);
    let before = snapshot(&d);
    assert_eq!(before, snapshot_first, "a restart changed what readers see");
    // Read all the while: an answer is the data or a short `unavailable`, nothing else.
    let (mut ok, mut unavailable) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !d.log_text().contains("compacted the database") {
        assert!(
            Instant::now() < deadline,
            "the file was not compacted: {} of {peak} bytes\n{}",
            db_size(&d),
            d.log_text()
        );
        let r = d.req("GET", "/v1/agents?tab=all&status=failed&limit=50", b"");
        match r.status {
            200 => ok += 1,
            503 => {
                assert_eq!(r.json()["error"]["code"], "unavailable", "{}", r.text());
                unavailable += 1;
            }
            other => panic!("a read during compaction answered {other}: {}", r.text()),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let after_size = db_size(&d);
    assert!(
        d.log_text().contains("compacted the database"),
        "{}",
        d.log_text()
    );
    eprintln!(
        "{peak} -> {after_size} bytes; {ok} reads answered, {unavailable} unavailable meanwhile"
    );
    assert_eq!(snapshot(&d), before, "compaction changed what readers see");
    assert_eq!(d.get("/v1/health")["items"], RUNS);

    // It still takes writes, and opens after a restart with the same content.
    d.append_run(
        "run-00000",
        format!(
            "{}\n",
            rec(json!({"type": "end", "ts": ago(0), "status": "success"}))
        )
        .as_bytes(),
    );
    d.wait_item("cli:run-00000", |v| v["status"] == "success");
    let settled = snapshot(&d);
    assert_eq!(d.stop().code(), Some(0));
    d.spawn();
    d.wait_scanned();
    assert_eq!(snapshot(&d), settled, "a restart changed what readers see");
    // A write may grow the file by a region again; it must not come back to its old size.
    assert!(
        db_size(&d) < peak / 4,
        "the file grew back: {} bytes, {after_size} after compaction",
        db_size(&d)
    );
}
