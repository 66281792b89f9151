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
            i["blocked_ms"] = Value::Null; // and so does a current wait
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
    // Files are read in the order their events arrive, not the order they were written: wait
    // for all of them rather than assuming the last one read is the last one written.
    d.wait_for("/v1/agents?tab=all&limit=1000", "all 20 runs", |v| {
        v["items"].as_array().unwrap().len() == 20
    });
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
    // Rewritten in place again, longer this time (same inode, O_TRUNC).
    d.write_run(
        "t",
        &[
            rec(json!({"type": "start", "ts": ago(4), "title": "second, rewritten longer"})),
            usage_line(40).trim().to_owned(),
        ],
    );
    let t = d.wait_item("cli:t", |v| v["title"] == "second, rewritten longer");
    assert_eq!(t["usage"]["input_tokens"], 40);
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

    // New lines in alice's run keep it alice's: the creator was recorded when it was first read.
    d.append_run(
        "by-alice",
        format!(
            "{}\n",
            rec(json!({"type": "status", "ts": ago(1), "status": "blocked"}))
        )
        .as_bytes(),
    );
    let a = d.wait_item("cli:by-alice", |v| v["status"] == "blocked");
    assert_eq!(
        (a["creator"].as_str(), a["mine"].as_bool()),
        (Some("alice"), Some(false))
    );
}

#[test]
fn files_of_other_users_are_not_ingested() {
    let d = Daemon::start("foreign");
    // Made outside the runs dir, given to nobody, then moved in (root can chown; CI runs as root).
    let path = d.dir.0.join("theirs.jsonl");
    std::fs::write(
        &path,
        format!(
            "{}\n",
            rec(json!({"type": "start", "ts": ago(3), "title": "not mine"}))
        ),
    )
    .unwrap();
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: chown on a path we own, with a valid C string.
    let rc = unsafe { libc::chown(c.as_ptr(), 65534, 65534) };
    if rc != 0 {
        eprintln!(
            "skipped: cannot chown here ({})",
            std::io::Error::last_os_error()
        );
        return;
    }
    std::fs::rename(&path, d.runs.join("theirs.jsonl")).unwrap();
    d.write_run("mine", &[rec(json!({"type": "start", "ts": ago(1)}))]);
    d.wait_item("cli:mine", |_| true);
    let h = d.wait_for("/v1/health", "the refusal", |v| {
        v["sources"][0]["errors"].as_u64() >= Some(1)
    });
    assert!(
        h["sources"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("owned by uid 65534"),
        "{h}"
    );
    assert_eq!(d.req("GET", "/v1/agents/cli:theirs", b"").status, 404);
}

/// Runs the daemon with a config file of its own.
fn with_config(name: &str, config: &str) -> (agentd_tests::Scratch, agentd_tests::Options) {
    let scratch = agentd_tests::Scratch::new(name);
    let cfg = scratch.0.join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut opts = agentd_tests::Options::default();
    opts.env
        .push(("AGENTD_CONFIG".into(), cfg.display().to_string()));
    (scratch, opts)
}

#[test]
fn a_full_disk_pauses_ingestion_and_loses_nothing() {
    // A free-space floor no disk meets: to agentd, the disk is full.
    let (_cfg, opts) = with_config("fulldisk-cfg", "min_free_mb = 1000000000000\n");
    let mut d = Daemon::start_with("fulldisk", opts);
    for i in 0..5 {
        d.write_run(
            &format!("f{i}"),
            &[rec(
                json!({"type": "start", "ts": ago(5), "title": format!("run {i}")}),
            )],
        );
    }
    let h = d.wait_for("/v1/health", "the full-disk error", |v| {
        v["store_error"].is_string()
    });
    let msg = h["store_error"].as_str().unwrap();
    assert!(
        msg.contains("nearly full") && msg.contains("agentd.redb"),
        "{msg}"
    );
    // Still serving.
    assert_eq!(d.get("/v1/summary")["working"], 0);
    assert_eq!(ids(&d.get("/v1/agents?tab=all")), Vec::<String>::new());

    // Room again (here: the normal floor after a restart): everything written meanwhile arrives.
    d.stop();
    d.opts.env.retain(|(k, _)| k != "AGENTD_CONFIG");
    d.spawn();
    d.wait_for("/v1/summary", "the five runs", |v| v["working"] == 5);
    assert_eq!(d.get("/v1/health")["store_error"], Value::Null);
}

/// `cmd` with a file-size limit: writes past `limit` bytes fail with `EFBIG`, which is what a
/// full disk looks like to the writer. (SIGXFSZ is ignored so that the write fails instead of
/// the process dying; the hard limit stays open so the test can lift the limit later.)
fn file_size_limited(mut cmd: std::process::Command, limit: u64) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            Ok(())
        });
    }
    cmd
}

#[test]
fn a_full_disk_at_start_exits_1_saying_so() {
    let mut d = Daemon::start("fullstart");
    d.stop();
    std::fs::remove_file(d.state.join("agentd.redb")).unwrap();
    let out = file_size_limited(d.command(), 1024).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is full") && err.contains("agentd.redb") && err.contains("free some space"),
        "{err}"
    );
}

#[test]
fn a_write_error_reopens_the_database_and_resyncs() {
    let mut d = Daemon::start("ioerror");
    d.write_run("before", &[rec(json!({"type": "start", "ts": ago(9)}))]);
    d.wait_item("cli:before", |_| true);
    d.stop();

    // Restart with a file-size limit just above the database's size: its next growth fails
    // with EFBIG, which is what a full disk looks like to redb.
    let db_len = std::fs::metadata(d.state.join("agentd.redb"))
        .unwrap()
        .len();
    let limit = 2 * db_len + (1 << 20);
    d.spawn_command(file_size_limited(d.command(), limit));

    // Write until a commit fails (the failure is reported until a later commit succeeds).
    let mut written = 0;
    let mut seen = None;
    for _round in 0..20 {
        for _ in 0..100 {
            let title = format!("run {written} {}", "x".repeat(8000));
            d.write_run(
                &format!("w{written:04}"),
                &[rec(json!({"type": "start", "ts": ago(5), "title": title}))],
            );
            written += 1;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while seen.is_none() && std::time::Instant::now() < deadline {
            seen = d.get("/v1/health")["store_error"]
                .as_str()
                .map(str::to_owned);
        }
        if seen.is_some() {
            break;
        }
    }
    let seen = seen.expect("a write beyond the file-size limit fails");
    assert!(
        seen.contains("File too large") && seen.contains("nothing is lost"),
        "{seen}"
    );
    assert!(
        d.req("GET", "/v1/summary", b"").status == 200,
        "the summary is served from memory"
    );

    // The disk has room again: lift the limit of the running daemon.
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit on our own child with a valid struct.
    let rc = unsafe {
        libc::prlimit(
            d.pid() as i32,
            libc::RLIMIT_FSIZE,
            &unlimited,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    d.wait_for("/v1/summary", "every run after the resync", |v| {
        v["working"] == written + 1
    });
    assert_eq!(d.get("/v1/health")["store_error"], Value::Null);
}

#[test]
fn a_run_whose_writer_died_without_an_end_record_fails() {
    let mut d = Daemon::start("liveness");
    // A writer that is still running (this test) and one that is gone (a reaped child).
    let me = std::process::id();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let doomed = child.id();
    d.write_run(
        "alive",
        &[rec(json!({"type": "start", "ts": ago(1), "pid": me}))],
    );
    d.write_run(
        "doomed",
        &[rec(json!({"type": "start", "ts": ago(1), "pid": doomed}))],
    );
    d.wait_item("cli:doomed", |v| v["status"] == "working");
    child.kill().unwrap();
    child.wait().unwrap();
    let v = d.wait_item("cli:doomed", |v| v["status"] == "failed");
    assert_eq!(v["status_detail"], "exited without an end record");
    assert!(
        v["finished_at"].is_string() && v["duration_ms"].is_u64(),
        "{v}"
    );
    assert_eq!(d.get("/v1/agents/cli:alive")["status"], "working");

    // A writer that dies while the daemon is down is noticed at the next start.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    d.write_run(
        "while-down",
        &[rec(
            json!({"type": "start", "ts": ago(1), "pid": child.id()}),
        )],
    );
    d.wait_item("cli:while-down", |v| v["status"] == "working");
    d.stop();
    child.kill().unwrap();
    child.wait().unwrap();
    d.spawn();
    d.wait_item("cli:while-down", |v| v["status"] == "failed");
    // A pid now used by a process that started after the run did is not its writer.
    d.write_run(
        "reused",
        &[rec(
            json!({"type": "start", "ts": "2026-01-01T00:00:00Z", "pid": me}),
        )],
    );
    d.wait_item("cli:reused", |v| v["status"] == "failed");
}
