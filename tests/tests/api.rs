//! The API over the real socket: filters, tabs, pagination, summary, errors, events and logs,
//! with items loaded through the real ingest path (run-log files in the runs dir).

use agentd_tests::{Daemon, ago, ids, read_until, rec};
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;

/// A start record `secs` ago with extra fields.
fn start(secs: i64, extra: Value) -> String {
    let mut v = json!({"type": "start", "ts": ago(secs)});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    rec(v)
}

/// Loads the standard fixture and waits until all five items are in.
fn fixture(d: &Daemon) {
    d.write_run(
        "a1",
        &[
            start(600, json!({"title": "Fix the flaky LOGIN test", "harness": "claude-code", "cwd": "/src/app"})),
            rec(json!({"type": "usage", "ts": ago(600), "model": "claude-sonnet-4-5", "input_tokens": 100, "cost_usd": 0.25})),
        ],
    );
    d.write_run(
        "a2",
        &[
            start(
                300,
                json!({"title": "triage inbox", "source": "slack", "harness": "codex"}),
            ),
            rec(json!({"type": "end", "ts": ago(250), "status": "success", "exit_code": 0})),
        ],
    );
    d.write_run(
        "b1",
        &[
            start(200, json!({"title": "nightly deps", "source": "scheduled", "creator": "bob", "harness": "gemini"})),
            rec(json!({"type": "usage", "ts": ago(190), "cost_usd": 1.5})),
            rec(json!({"type": "end", "ts": ago(150), "exit_code": 2})),
        ],
    );
    d.write_run(
        "b2",
        &[
            start(100, json!({"title": "migrate db", "creator": "bob", "harness": "claude-code"})),
            rec(json!({"type": "status", "ts": ago(90), "status": "blocked", "detail": "waiting for approval: Bash"})),
        ],
    );
    d.write_run(
        "old",
        &[
            rec(json!({"type": "start", "ts": "2026-01-15T10:00:00Z", "title": "january"})),
            rec(json!({"type": "end", "ts": "2026-01-15T10:05:00.250Z", "status": "canceled"})),
        ],
    );
    d.wait_for("/v1/agents?tab=all", "the fixture", |v| {
        v["items"].as_array().unwrap().len() == 5
    });
}

/// One table row: a query and the ids it must return, in order.
fn check(d: &Daemon, query: &str, expected: &[&str]) {
    let page = d.get(&format!("/v1/agents?{query}"));
    assert_eq!(ids(&page), expected, "query {query:?}");
}

#[test]
fn filters_and_tabs() {
    let d = Daemon::start("filters");
    fixture(&d);
    check(&d, "", &["cli:a2", "cli:a1", "cli:old"]);
    check(&d, "tab=personal", &["cli:a2", "cli:a1", "cli:old"]);
    check(
        &d,
        "tab=all",
        &["cli:b2", "cli:b1", "cli:a2", "cli:a1", "cli:old"],
    );
    check(&d, "tab=all&status=working,blocked", &["cli:b2", "cli:a1"]);
    check(
        &d,
        "tab=all&status=failed&status=canceled",
        &["cli:b1", "cli:old"],
    );
    check(&d, "status=working", &["cli:a1"]);
    check(&d, "tab=all&source=slack,scheduled", &["cli:b1", "cli:a2"]);
    check(&d, "tab=all&source=api", &[]);
    check(&d, "tab=all&creator=bob", &["cli:b2", "cli:b1"]);
    check(
        &d,
        "tab=all&creator=bob&creator=alice&status=success,failed",
        &["cli:b1", "cli:a2"],
    );
    check(&d, "tab=all&harness=codex,gemini", &["cli:b1", "cli:a2"]);
    check(&d, "creator=bob", &[]);
    check(&d, "tab=all&harness=claude-code", &["cli:b2", "cli:a1"]);
    check(&d, "tab=all&day=2026-01-15", &["cli:old"]);
    check(&d, "tab=all&q=login", &["cli:a1"]);
    check(&d, "tab=all&q=%2Fsrc%2Fapp", &["cli:a1"]);
    check(&d, "tab=all&creator=alice&status=success", &["cli:a2"]);
    check(
        &d,
        &format!("tab=all&since={}", ago(250)),
        &["cli:b2", "cli:b1"],
    );
    check(
        &d,
        &format!("tab=all&until={}", ago(250)),
        &["cli:a2", "cli:a1", "cli:old"],
    );
    check(
        &d,
        "tab=all&since=2026-01-15T10:00:00Z&until=2026-01-15T10:00:00.001Z",
        &["cli:old"],
    );

    // Today's items, computed from the same clock the fixture used.
    let today = &ago(0)[..10];
    let expected: Vec<&str> = [
        ("cli:b2", 100),
        ("cli:b1", 200),
        ("cli:a2", 300),
        ("cli:a1", 600),
    ]
    .into_iter()
    .filter(|(_, s)| &ago(*s)[..10] == today)
    .map(|(id, _)| id)
    .collect();
    check(&d, "tab=all&day=today", &expected);

    let b2 = d.get("/v1/agents/cli:b2");
    assert_eq!(b2["status"], "blocked");
    assert_eq!(b2["status_detail"], "waiting for approval: Bash");
    assert_eq!(b2["mine"], false);
    assert_eq!(b2["kind"], "run");
    assert!(
        b2["duration_ms"].as_u64().unwrap() >= 100_000,
        "a working run reports time so far: {b2}"
    );
    let old = d.get("/v1/agents/cli:old");
    assert_eq!(old["duration_ms"], 300_250);
    assert_eq!(old["finished_at"], "2026-01-15T10:05:00.250Z");
    assert_eq!(old["created_at"], "2026-01-15T10:00:00.000Z");
    assert_eq!(old["creator"], "alice");
    assert_eq!(old["mine"], true);
    let b1 = d.get("/v1/agents/cli:b1");
    assert_eq!(
        (b1["status"].as_str(), b1["status_detail"].as_str()),
        (Some("failed"), Some("exit code 2"))
    );
    assert_eq!(d.get("/v1/agents/cli:a1")["usage"]["input_tokens"], 100);

    // A unique prefix, with or without the scheme.
    assert_eq!(ids(&d.get("/v1/agents?id_prefix=ol")), ["cli:old"]);
    assert_eq!(
        ids(&d.get("/v1/agents?id_prefix=cli:b&limit=5")),
        ["cli:b1", "cli:b2"]
    );
}

#[test]
fn summary_counts_per_tab() {
    let d = Daemon::start("summary");
    fixture(&d);
    let today = &ago(0)[..10];
    let is_today = |s: i64| &ago(s)[..10] == today;
    let personal = d.get("/v1/summary");
    assert_eq!(
        (
            personal["working"].as_u64(),
            personal["blocked"].as_u64(),
            personal["active"].as_u64()
        ),
        (Some(1), Some(0), Some(1))
    );
    assert_eq!(personal["today"]["success"], u64::from(is_today(250)));
    assert_eq!(
        personal["today"]["canceled"], 0,
        "January's cancel is not today's"
    );
    let all = d.get("/v1/summary?tab=all");
    assert_eq!(
        (
            all["working"].as_u64(),
            all["blocked"].as_u64(),
            all["active"].as_u64()
        ),
        (Some(1), Some(1), Some(2))
    );
    assert_eq!(all["today"]["failed"], u64::from(is_today(150)));
    if is_today(600) {
        assert_eq!(personal["today"]["cost_usd"], 0.25);
        assert_eq!(all["today"]["cost_usd"], 1.75);
    }

    // Finishing the working run moves the counts at once.
    d.append_run(
        "a1",
        format!(
            "{}\n",
            rec(json!({"type": "end", "ts": ago(0), "status": "success"}))
        )
        .as_bytes(),
    );
    let s = d.wait_for("/v1/summary", "a1 to finish", |v| v["working"] == 0);
    assert_eq!(s["today"]["success"], 1 + u64::from(is_today(250)));
    assert_eq!(d.get("/v1/summary?tab=all")["active"], 1);
}

#[test]
fn todays_counts_and_their_lists_agree() {
    let d = Daemon::start("summary-lists");
    // Created two days ago, failed just now: a failure of today, though not created today.
    d.write_run(
        "old",
        &[
            rec(json!({"type": "start", "ts": ago(2 * 86_400), "title": "old"})),
            rec(json!({"type": "end", "ts": ago(0), "status": "failed"})),
        ],
    );
    // Created and finished two days ago: not today's.
    d.write_run(
        "older",
        &[
            rec(json!({"type": "start", "ts": ago(2 * 86_400), "title": "older"})),
            rec(json!({"type": "end", "ts": ago(2 * 86_400 - 60), "status": "failed"})),
        ],
    );
    d.write_run(
        "fresh",
        &[
            rec(json!({"type": "start", "ts": ago(10), "title": "fresh"})),
            rec(json!({"type": "end", "ts": ago(5), "status": "success"})),
        ],
    );
    for id in ["cli:old", "cli:older", "cli:fresh"] {
        d.wait_item(id, |v| !v["status"].as_str().unwrap().is_empty());
    }
    let s = d.get("/v1/summary?tab=all");
    for (status, n) in [("failed", "failed"), ("success", "success")] {
        let page = d.get(&format!(
            "/v1/agents?tab=all&status={status}&updated_day=today"
        ));
        assert_eq!(
            page["items"].as_array().unwrap().len() as u64,
            s["today"][n].as_u64().unwrap(),
            "{status}: {page}"
        );
    }
    assert_eq!(
        ids(&d.get("/v1/agents?tab=all&status=failed&updated_day=today")),
        ["cli:old"]
    );
    // By creation day, the same failure is not today's: the two filters differ.
    assert!(ids(&d.get("/v1/agents?tab=all&status=failed&day=today")).is_empty());
}

#[test]
fn pagination_with_cursors_visits_every_item_once_in_order() {
    let d = Daemon::start("pages");
    for i in 0..120 {
        d.write_run(
            &format!("run{i:03}"),
            &[start(10_000 - i * 7, json!({"title": format!("run {i}")}))],
        );
    }
    d.wait_for("/v1/summary", "120 working runs", |v| v["working"] == 120);
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = d.get(&format!(
            "/v1/agents?limit=50&status=working&cursor={cursor}"
        ));
        pages += 1;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..120).rev().map(|i| format!("cli:run{i:03}")).collect();
    assert_eq!(seen, expected, "newest first, each once");

    // Across a union of partitions (two statuses) the pages interleave them in order.
    for i in (0..120).step_by(3) {
        let status =
            rec(json!({"type": "status", "ts": ago(10_000 - i * 7 - 1), "status": "blocked"}));
        d.append_run(&format!("run{i:03}"), format!("{status}\n").as_bytes());
    }
    d.wait_for("/v1/summary", "40 blocked", |v| v["blocked"] == 40);
    let mut union = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = d.get(&format!(
            "/v1/agents?limit=7&status=blocked,working&cursor={cursor}"
        ));
        union.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        union, expected,
        "newest first across both statuses, each once"
    );
    // The cursor of the last full page answers an empty page, not an error.
    let page = d.get("/v1/agents?limit=120");
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(ids(&page).len(), 120);
}

#[test]
fn bad_parameters_are_named_in_json_errors() {
    let d = Daemon::start("badparams");
    for (path, param) in [
        ("/v1/agents?status=done", "status"),
        ("/v1/agents?source=email", "source"),
        ("/v1/agents?tab=mine", "tab"),
        ("/v1/agents?limit=0", "limit"),
        ("/v1/agents?limit=1001", "limit"),
        ("/v1/agents?day=2026-02-30", "day"),
        ("/v1/agents?day=28.11.2026", "day"),
        ("/v1/agents?since=last-week", "since"),
        ("/v1/agents?cursor=not-a-cursor", "cursor"),
        ("/v1/agents?colour=red", "colour"),
        ("/v1/summary?tab=everyone", "tab"),
        ("/v1/events?tab=everyone", "tab"),
    ] {
        let r = d.req("GET", path, b"");
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["code"], "bad_request", "{path}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{param}`")),
            "{path}: {v}"
        );
    }
    for (method, path, status, code) in [
        ("GET", "/v1/agents/cli:nope", 404, "not_found"),
        ("GET", "/v1/agents/cli:nope/log", 404, "not_found"),
        ("GET", "/v2/anything", 404, "not_found"),
        ("POST", "/v1/agents", 405, "method_not_allowed"),
        ("DELETE", "/v1/summary", 405, "method_not_allowed"),
    ] {
        let r = d.req(method, path, b"");
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], code, "{method} {path}");
    }
    // Still serving.
    assert_eq!(d.get("/v1/health")["status"], "ok");
}

#[test]
fn health_reports_sources_and_errors() {
    let d = Daemon::start("health");
    d.write_run(
        "good",
        &[
            start(5, json!({"title": "ok"})),
            "{not json".into(),
            rec(json!({"type": "output"})),
        ],
    );
    let h = d.wait_for("/v1/health", "two skipped lines", |v| {
        v["sources"][0]["errors"] == 2
    });
    assert_eq!(h["status"], "ok");
    assert_eq!(h["pid"], d.pid());
    assert_eq!(h["items"], 1);
    assert_eq!(h["http"]["addr"].as_str(), d.http.as_deref());
    let runs = &h["sources"][0];
    assert_eq!(runs["name"], "runs");
    assert_eq!(runs["files"], 1);
    assert_eq!(runs["items"], 1);
    assert_eq!(
        runs["roots"][0].as_str().unwrap(),
        d.runs.display().to_string()
    );
    assert!(
        runs["last_error"].as_str().unwrap().contains("good.jsonl"),
        "{runs}"
    );
}

/// Reads an event stream until `want` appears in it or the time runs out.
#[test]
fn events_stream_changes_and_summaries() {
    let d = Daemon::start("events");
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(b"GET /v1/events?tab=all HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut buf = String::new();
    read_until(&mut s, &mut buf, "event: summary\ndata: {\"working\":0");
    assert!(buf.contains("text/event-stream"), "{buf}");

    d.write_run(
        "live",
        &[start(1, json!({"title": "streamed", "creator": "bob"}))],
    );
    read_until(&mut s, &mut buf, "event: agent\ndata: {\"id\":\"cli:live\"");
    read_until(&mut s, &mut buf, "event: summary\ndata: {\"working\":1");

    // The Personal tab does not see bob's run, but does see its own summary.
    let mut p = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    p.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    p.write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut pbuf = String::new();
    read_until(&mut p, &mut pbuf, "event: summary\ndata: {\"working\":0");
    d.write_run("mine", &[start(1, json!({"title": "mine"}))]);
    read_until(&mut p, &mut pbuf, "\"id\":\"cli:mine\"");
    assert!(!pbuf.contains("cli:live"), "{pbuf}");
}

#[test]
fn logs_show_output_and_follow_until_the_end() {
    let d = Daemon::start("logs");
    d.write_run(
        "done",
        &[
            start(10, json!({})),
            rec(json!({"type": "output", "ts": ago(9), "stream": "stdout", "data": "hello\n"})),
            rec(json!({"type": "output", "ts": ago(8), "stream": "stderr", "data": "warning: ünïcode\n"})),
            rec(json!({"type": "end", "ts": ago(7), "status": "success"})),
        ],
    );
    d.wait_item("cli:done", |v| v["status"] == "success");
    let r = d.req("GET", "/v1/agents/cli:done/log", b"");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(r.text(), "hello\nwarning: ünïcode\n");

    d.write_run("live", &[start(1, json!({}))]);
    d.wait_item("cli:live", |v| v["status"] == "working");
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(b"GET /v1/agents/cli:live/log?follow=true HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut buf = String::new();
    read_until(&mut s, &mut buf, "200 OK");
    d.append_run(
        "live",
        format!(
            "{}\n",
            rec(json!({"type": "output", "ts": ago(0), "data": "step 1\n"}))
        )
        .as_bytes(),
    );
    read_until(&mut s, &mut buf, "step 1\n");
    d.append_run(
        "live",
        format!(
            "{}\n{}\n",
            rec(json!({"type": "output", "ts": ago(0), "data": "last words\n"})),
            rec(json!({"type": "end", "ts": ago(0), "status": "success"}))
        )
        .as_bytes(),
    );
    read_until(&mut s, &mut buf, "last words\n");
    read_until(&mut s, &mut buf, "\r\n0\r\n\r\n"); // the answer ends with the run
}

#[test]
fn time_waiting_on_you_is_counted_and_survives_a_restart() {
    let mut d = Daemon::start("blocked-ms");
    d.write_run(
        "w",
        &[
            rec(json!({"type": "start", "ts": ago(30), "title": "asks"})),
            rec(json!({"type": "status", "ts": ago(1), "status": "blocked", "detail": "approve?"})),
        ],
    );
    let v = d.wait_item("cli:w", |v| v["status"] == "blocked");
    assert!(v["blocked_since"].is_string(), "{v}");
    let s = d.get("/v1/summary");
    assert_eq!(s["waiting_since"], v["blocked_since"], "{s}");
    std::thread::sleep(Duration::from_millis(700));
    let later = d.get("/v1/agents/cli:w");
    assert!(later["blocked_ms"].as_u64().unwrap() >= 600, "{later}");
    // A restart keeps the wait's start.
    assert_eq!(d.stop().code(), Some(0));
    d.spawn();
    let after = d.wait_item("cli:w", |v| v["status"] == "blocked");
    assert_eq!(after["blocked_since"], v["blocked_since"]);
    // Answered: the wait ends and adds to the total, and to today's.
    d.append_run(
        "w",
        format!(
            "{}\n",
            rec(json!({"type": "status", "ts": ago(0), "status": "working"}))
        )
        .as_bytes(),
    );
    let done = d.wait_item("cli:w", |v| v["status"] == "working");
    let waited = done["blocked_ms"].as_u64().unwrap();
    assert!(waited >= 600, "{done}");
    assert_eq!(done["blocked_since"], Value::Null);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        d.get("/v1/agents/cli:w")["blocked_ms"],
        waited,
        "stopped counting"
    );
    let s = d.wait_for("/v1/summary", "the wait to end", |s| {
        s["waiting_since"].is_null()
    });
    if ago(0)[..10] == done["updated_at"].as_str().unwrap()[..10] {
        assert_eq!(s["today"]["blocked_ms"], waited, "{s}");
    }
    let out = d.agentctl(&["show", "cli:w"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("on you"),
        "{out:?}"
    );
}
