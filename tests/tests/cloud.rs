//! Cloud runs: the daemon syncs from a fake Oz Agent API (a real HTTP server in the test) and
//! survives its faults without losing or duplicating anything.

use agentd_tests::oz::{FakeOz, Fault, KEY, cloud_daemon, run};
use agentd_tests::{Daemon, source_in};
use serde_json::{Value, json};
use std::time::Duration;

fn count(d: &Daemon, tab: &str) -> usize {
    d.get(&format!("/v1/agents?tab={tab}&limit=1000"))["items"]
        .as_array()
        .unwrap()
        .len()
}

fn ts(i: usize) -> String {
    format!("2026-11-28T09:{:02}:{:02}Z", (i / 60) % 60, i % 60)
}

fn cloud_health(d: &Daemon) -> Value {
    source_in(&d.get("/v1/health"), "cloud").expect("a cloud source in health")
}

#[test]
fn runs_sync_page_by_page_into_both_tabs_and_follow_changes() {
    let oz = FakeOz::start(KEY);
    {
        let mut st = oz.lock();
        let sources = [
            "SLACK",
            "API",
            "CLI",
            "LINEAR",
            "SCHEDULED_AGENT",
            "GITHUB_ACTION",
            "WEB_APP",
        ];
        for i in 0..250 {
            let creator = if i % 5 == 0 { "u-me" } else { "u-teammate" };
            st.runs.push(run(
                &format!("r{i:03}"),
                "SUCCEEDED",
                sources[i % 7],
                creator,
                &ts(i),
            ));
        }
        st.runs[10]["state"] = json!("BLOCKED");
        st.runs[10]["status_message"] = json!({"message": "Approve the migration?"});
        st.runs[11]["state"] = json!("INPROGRESS");
        st.runs[12]["run_time"] = json!("PT2M5S");
    }
    let d = cloud_daemon("cloud-sync", &oz, KEY);
    d.wait_for("/v1/health", "the first sync", |h| h["items"] == 250);
    assert_eq!(count(&d, "all"), 250);
    assert_eq!(count(&d, "personal"), 50, "only runs created by u-me");
    assert!(oz.list_requests() >= 3, "250 runs in pages of 100");

    let blocked = d.get("/v1/agents/cloud:r010");
    assert_eq!(
        (
            &blocked["status"],
            &blocked["status_detail"],
            &blocked["source"],
            &blocked["kind"]
        ),
        (
            &json!("blocked"),
            &json!("Approve the migration?"),
            &json!("linear"),
            &json!("run")
        )
    );
    assert_eq!(blocked["credits"], 1.75);
    assert_eq!(blocked["creator"], "User u-me");
    assert_eq!(blocked["mine"], true);
    assert_eq!(blocked["open"]["url"], "https://app.warp.dev/session/r010");
    assert_eq!(d.get("/v1/agents/cloud:r012")["duration_ms"], 125_000);
    // No run_time: started_at (08:00:10) to updated_at (09:00:13).
    assert_eq!(d.get("/v1/agents/cloud:r013")["duration_ms"], 3_603_000);
    assert_eq!(d.get("/v1/summary?tab=all")["blocked"], 1);

    // The working run finishes, the blocked one is approved: the next poll (fast while runs are
    // active) brings both, and nothing is duplicated.
    {
        let mut st = oz.lock();
        st.runs[10]["state"] = json!("INPROGRESS");
        st.runs[10]["updated_at"] = json!("2026-11-28T11:00:00Z");
        st.runs[11]["state"] = json!("FAILED");
        st.runs[11]["status_message"] =
            json!({"message": "tests failed", "error_code": "user_error"});
        st.runs[11]["updated_at"] = json!("2026-11-28T11:00:01Z");
    }
    d.wait_item("cloud:r011", |v| v["status"] == "failed");
    let r010 = d.wait_item("cloud:r010", |v| v["status"] == "working");
    assert_eq!(r010["status_detail"], Value::Null);
    assert_eq!(
        d.get("/v1/agents/cloud:r011")["status_detail"],
        "tests failed"
    );
    assert_eq!(count(&d, "all"), 250);

    // Nothing changed: a sync is one request and writes nothing.
    let before = oz.list_requests();
    let r = d.req("POST", "/v1/sync", b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"synced": 0}));
    assert_eq!(oz.list_requests() - before, 1);
}

#[test]
fn a_cloud_runs_log_is_its_conversation() {
    let oz = FakeOz::start(KEY);
    {
        let mut st = oz.lock();
        st.runs
            .push(run("conv1", "SUCCEEDED", "API", "u-me", &ts(1)));
        st.conversations.insert(
            "conv1".into(),
            json!({"conversation_id": "c", "steps": [{"id": "s1", "description": "Fix CI",
                "messages": [{"role": "assistant", "timestamp": "2026-11-28T09:00:05Z",
                    "content": [{"type": "text", "text": "All green now."}]}]}]}),
        );
    }
    let d = cloud_daemon("cloud-log", &oz, KEY);
    d.wait_item("cloud:conv1", |v| v["status"] == "success");
    let log = d.req("GET", "/v1/agents/cloud:conv1/log", b"");
    assert_eq!(log.status, 200);
    assert!(
        log.text().contains("## Fix CI") && log.text().contains("All green now."),
        "{}",
        log.text()
    );
    // Finished: served from the cache afterwards, even if the API goes away.
    oz.lock().key = "rotated".into();
    assert!(
        d.req("GET", "/v1/agents/cloud:conv1/log", b"")
            .text()
            .contains("All green now.")
    );
    let out = d.agentctl(&["logs", "cloud:conv1"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn faults_are_retried_and_nothing_is_lost_or_duplicated() {
    let oz = FakeOz::start(KEY);
    {
        let mut st = oz.lock();
        for i in 0..230 {
            st.runs
                .push(run(&format!("f{i:03}"), "SUCCEEDED", "API", "u-me", &ts(i)));
        }
        // The first sync meets a 500, then a 429, then the server drops the connection on the
        // second page, then answers half a page, then a slow answer: each is retried.
        st.faults.extend([
            Fault::Status(500),
            Fault::RetryAfter(1),
            Fault::Slow(Duration::from_millis(300)),
            Fault::Close,
            Fault::Truncated,
        ]);
    }
    let d = cloud_daemon("cloud-faults", &oz, KEY);
    d.wait_for("/v1/health", "all runs despite faults", |h| {
        h["items"] == 230
    });
    assert_eq!(count(&d, "all"), 230);
    let h = cloud_health(&d);
    assert!(h["errors"].as_u64() >= Some(3), "{h}");
    assert!(oz.lock().faults.is_empty());
}

#[test]
fn a_refused_key_stops_the_sync_and_says_why() {
    let oz = FakeOz::start(KEY);
    oz.lock()
        .runs
        .push(run("k1", "SUCCEEDED", "API", "u-me", &ts(1)));
    let d = cloud_daemon("cloud-401", &oz, "wrong-key");
    let h = d.wait_for("/v1/health", "the refusal", |h| {
        source_in(h, "cloud").is_some_and(|s| s["errors"] == 1)
    });
    let cloud = source_in(&h, "cloud").unwrap();
    let msg = cloud["last_error"].as_str().unwrap();
    assert!(msg.contains("refused the key (HTTP 401)"), "{msg}");
    assert!(!msg.contains("wrong-key"), "the key is never shown: {msg}");
    assert_eq!(h["items"], 0);
    // Not hammered with the same key: one refused request, then quiet.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(oz.list_requests(), 1);
    let r = d.req("POST", "/v1/sync", b"");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "upstream");
    let out = d.agentctl(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the key"), "{err}");
    // The daemon keeps serving everything else.
    assert_eq!(d.req("GET", "/v1/summary", b"").status, 200);
    assert!(
        !d.log_text().contains("wrong-key"),
        "the key never reaches the log"
    );
}

#[test]
fn malformed_runs_are_skipped_and_counted_and_the_rest_land() {
    let oz = FakeOz::start(KEY);
    {
        let mut st = oz.lock();
        st.runs
            .push(run("good1", "SUCCEEDED", "API", "u-me", &ts(1)));
        st.runs.push(json!({"run_id": "bad1", "updated_at": ts(2)}));
        let mut bad_time = run("bad2", "SUCCEEDED", "API", "u-me", &ts(3));
        bad_time["created_at"] = json!("not a time");
        st.runs.push(bad_time);
        st.runs
            .push(run("good2", "CANCELLED", "SLACK", "u-other", &ts(4)));
    }
    let d = cloud_daemon("cloud-malformed", &oz, KEY);
    d.wait_for("/v1/health", "both good runs", |h| h["items"] == 2);
    assert_eq!(d.get("/v1/agents/cloud:good2")["status"], "canceled");
    let h = cloud_health(&d);
    assert_eq!(h["errors"], 2, "{h}");
}
