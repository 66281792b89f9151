//! `agentctl run` with real processes: recorded runs that succeed, fail, are canceled, lose
//! their wrapper, start with the daemon down, or cannot start at all.

use agentd_tests::{Daemon, ids};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// `agentctl run …` as the test's daemon's user would type it.
fn run_cmd(d: &Daemon, args: &[&str]) -> Command {
    let mut c = d.agentctl_command();
    c.arg("run").args(args);
    c
}

/// The one run in the list (waits for it).
fn only_run(d: &Daemon) -> serde_json::Value {
    let page = d.wait_for("/v1/agents?tab=all", "a run", |v| {
        v["items"].as_array().is_some_and(|a| a.len() == 1)
    });
    page["items"][0].clone()
}

#[test]
fn a_run_that_succeeds_passes_output_through_and_is_recorded() {
    let d = Daemon::start("run-ok");
    let out = run_cmd(
        &d,
        &[
            "--title",
            "greet",
            "--",
            "sh",
            "-c",
            "echo hello; echo oops >&2; printf 'no newline'",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nno newline");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("oops\n") && err.contains("recording run cli:"),
        "{err}"
    );
    let item = only_run(&d);
    let id = item["id"].as_str().unwrap().to_owned();
    let item = d.wait_item(&id, |v| v["status"] == "success");
    assert_eq!(
        (
            item["title"].as_str(),
            item["harness"].as_str(),
            item["source"].as_str()
        ),
        (Some("greet"), Some("sh"), Some("cli"))
    );
    assert_eq!(item["kind"], "run");
    assert!(item["duration_ms"].is_u64());
    let log = d.req("GET", &format!("/v1/agents/{id}/log"), b"").text();
    for part in ["hello\n", "oops\n", "no newline"] {
        assert!(log.contains(part), "{part:?} missing from {log:?}");
    }
}

#[test]
fn a_failing_command_keeps_its_exit_code() {
    let d = Daemon::start("run-fail");
    let out = run_cmd(&d, &["--", "sh", "-c", "exit 3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let id = only_run(&d)["id"].as_str().unwrap().to_owned();
    let item = d.wait_item(&id, |v| v["status"] == "failed");
    assert_eq!(item["status_detail"], "exit code 3");
    assert_eq!(item["title"], "sh -c exit 3");
}

#[test]
fn a_command_that_cannot_start_exits_127_and_is_recorded_as_failed() {
    let d = Daemon::start("run-missing");
    let out = run_cmd(&d, &["--", "no-such-agent-cli", "-p", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run no-such-agent-cli"));
    let id = only_run(&d)["id"].as_str().unwrap().to_owned();
    let item = d.wait_item(&id, |v| v["status"] == "failed");
    assert!(
        item["status_detail"]
            .as_str()
            .unwrap()
            .contains("cannot start"),
        "{item}"
    );
    // A usage error is not a run.
    let out = run_cmd(&d, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sigterm_to_the_wrapper_cancels_the_run() {
    let d = Daemon::start("run-cancel");
    let mut child = run_cmd(&d, &["--", "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let id = only_run(&d)["id"].as_str().unwrap().to_owned();
    d.wait_item(&id, |v| v["status"] == "working");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    let item = d.wait_item(&id, |v| v["status"] == "canceled");
    assert!(
        item["status_detail"].as_str().unwrap().contains("signal"),
        "{item}"
    );
}

#[test]
fn a_killed_wrapper_leaves_a_failed_run() {
    let d = Daemon::start("run-killed");
    let mut cmd = run_cmd(&d, &["--", "sleep", "30"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    // Its own process group, so that the test can also clean up the orphaned `sleep`.
    // SAFETY: setpgid between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id() as i32;
    let id = only_run(&d)["id"].as_str().unwrap().to_owned();
    d.wait_item(&id, |v| v["status"] == "working");
    child.kill().unwrap(); // SIGKILL: no end record
    child.wait().unwrap();
    let item = d.wait_item(&id, |v| v["status"] == "failed");
    assert_eq!(item["status_detail"], "exited without an end record");
    // SAFETY: killing the test's own process group.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

#[test]
fn runs_recorded_while_the_daemon_is_down_appear_when_it_starts() {
    let mut d = Daemon::start("run-offline");
    d.stop();
    let out = run_cmd(&d, &["--", "sh", "-c", "echo offline"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    d.spawn();
    let id = only_run(&d)["id"].as_str().unwrap().to_owned();
    d.wait_item(&id, |v| v["status"] == "success");
    assert_eq!(ids(&d.get("/v1/agents")), [id]);
}

#[test]
fn an_unwritable_runs_dir_still_runs_the_command() {
    let d = Daemon::start("run-unwritable");
    let blocker = d.dir.0.join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let out = run_cmd(&d, &["--", "sh", "-c", "echo still ran; exit 4"])
        .env("AGENTD_STATE_DIR", &blocker)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still ran\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not recorded"));
}

#[test]
fn a_large_output_is_recorded_byte_for_byte_in_few_records_and_in_order() {
    let d = Daemon::start("run-large");
    let script = "echo first; sleep 0.2; echo second >&2; sleep 0.2; echo third; \
                  seq 1 300000 | sed 's/$/ \u{e9}\u{2713}/'";
    let out = run_cmd(&d, &["--", "sh", "-c", script]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let numbers: String = (1..=300_000)
        .map(|i| format!("{i} \u{e9}\u{2713}\n"))
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("first\nthird\n{numbers}")
    );
    let id = only_run(&d)["id"].as_str().unwrap().to_owned();
    d.wait_item(&id, |v| v["status"] == "success");
    let log = d.req("GET", &format!("/v1/agents/{id}/log"), b"").text();
    assert!(
        log == format!("first\nsecond\nthird\n{numbers}"),
        "the log differs from the output ({} bytes against {})",
        log.len(),
        numbers.len() + 19
    );
    // 3.6 MB of lines is written in batches, not a record a line.
    let file = d.state.join("runs").join(format!("{}.jsonl", &id[4..]));
    let records = std::fs::read_to_string(file).unwrap().lines().count();
    assert!(records < 100, "{records} records");
}

#[test]
fn logs_follow_a_live_run_to_its_end() {
    let d = Daemon::start("run-follow");
    let mut child = run_cmd(&d, &["--", "sh", "-c", "echo first; sleep 1; echo second"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let id = only_run(&d)["id"].as_str().unwrap().to_owned();
    let out = d.agentctl(&["logs", "-f", &id]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\nsecond\n");
    assert!(child.wait().unwrap().success());
    assert_eq!(d.get(&format!("/v1/agents/{id}"))["status"], "success");
}

#[test]
fn a_claude_stream_json_transcript_records_usage_and_cost() {
    let d = Daemon::start("run-usage");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/claude-stream-json.jsonl"
    );
    let out = run_cmd(
        &d,
        &[
            "--harness",
            "claude-code",
            "--title",
            "fix tests",
            "--",
            "cat",
            fixture,
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        out.stdout,
        std::fs::read(fixture).unwrap(),
        "output passes through unchanged"
    );
    let id = only_run(&d)["id"].as_str().unwrap().to_owned();
    let item = d.wait_item(&id, |v| v["status"] == "success" && v["cost_usd"].is_f64());
    assert_eq!(item["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(item["cost_usd"], 0.0421);
    assert_eq!(item["usage"]["input_tokens"], 12);
    assert_eq!(item["usage"]["output_tokens"], 340);
    assert_eq!(item["usage"]["cache_read_tokens"], 9100);
    assert_eq!(item["usage"]["cache_write_tokens"], 2200);
    assert_eq!(item["harness"], "claude-code");
}
