//! Conversation stores under a running daemon: files written in the real formats of the agent
//! CLIs, appended to line by line, and the items seen changing over the socket.

use agentd_tests::{Daemon, Options, ago, append_lines, read_until, source_in, subscribe};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const SESSION: &str = "5f2e0c1a-7b7e-4c1e-9d2a-0c9f1e2d3b4a";

fn claude_dir(d: &Daemon) -> PathBuf {
    d.home.join(".claude/projects/-src-app")
}

fn prompt(text: &str, at: i64) -> Value {
    json!({"type": "user", "timestamp": ago(at), "sessionId": SESSION, "cwd": "/src/app",
        "isSidechain": false, "permissionMode": "default", "uuid": "u1",
        "message": {"role": "user", "content": text}})
}

fn assistant(id: &str, content: Value, output: u64, stop: Option<&str>, sidechain: bool) -> Value {
    json!({"type": "assistant", "timestamp": ago(0), "sessionId": SESSION, "cwd": "/src/app",
        "requestId": format!("req_{id}"), "isSidechain": sidechain,
        "message": {"id": id, "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929", "content": content, "stop_reason": stop,
            "usage": {"input_tokens": 100, "output_tokens": output,
                "cache_read_input_tokens": 10000, "cache_creation_input_tokens": 2000}}})
}

fn item_id() -> String {
    format!("claude-code:{SESSION}")
}

#[test]
fn a_claude_code_conversation_moves_through_its_statuses_live() {
    let d = Daemon::start("claude-live");
    let mut events = subscribe(&d);
    let mut seen = String::new();
    let file = claude_dir(&d).join(format!("{SESSION}.jsonl"));
    append_lines(&file, &[prompt("fix the flaky login test", 1)]);
    read_until(
        &mut events,
        &mut seen,
        &format!("event: agent\ndata: {{\"id\":\"{}\"", item_id()),
    );
    let v = d.wait_item(&item_id(), |v| v["status"] == "working");
    assert_eq!(v["title"], "fix the flaky login test");
    assert_eq!(v["kind"], "interactive");
    assert_eq!(v["source"], "interactive");
    assert_eq!(v["harness"], "claude-code");
    assert_eq!(v["project"], "/src/app");
    assert_eq!(v["mine"], true);
    assert_eq!(
        v["open"]["command"],
        format!("cd /src/app && claude --resume {SESSION}")
    );

    // The agent asks to run a command and nothing follows: after a few quiet seconds the clock
    // alone (no new line) makes it blocked.
    append_lines(
        &file,
        &[assistant(
            "msg_1",
            json!([{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "make test"}}]),
            40,
            None,
            false,
        )],
    );
    let v = d.wait_item(&item_id(), |v| v["status"] == "blocked");
    assert_eq!(v["status_detail"], "waiting for permission: Bash");
    // The move the clock made reached the event stream too.
    read_until(&mut events, &mut seen, "\"status\":\"blocked\"");
    let summary = d.get("/v1/summary");
    assert_eq!(summary["blocked"], 1, "{summary}");

    // Approved, run, answered.
    append_lines(
        &file,
        &[
            json!({"type": "user", "timestamp": ago(0), "sessionId": SESSION, "isSidechain": false,
                "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}}),
            assistant(
                "msg_2",
                json!([{"type": "text", "text": "Fixed."}]),
                10,
                None,
                false,
            ),
            assistant(
                "msg_2",
                json!([{"type": "text", "text": "Fixed."}]),
                25,
                Some("end_turn"),
                false,
            ),
        ],
    );
    let v = d.wait_item(&item_id(), |v| v["status"] == "success");
    // Two responses, the second counted once with its largest snapshot.
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 200, "output_tokens": 65, "cache_read_tokens": 20000, "cache_write_tokens": 4000})
    );
    // sonnet-4-5: 200*3 + 65*15 + 20000*0.3 + 4000*3.75 = 22575 micro-dollars
    assert_eq!(v["cost_usd"], 0.022575);
    assert_eq!(v["model"], "claude-sonnet-4-5-20250929");

    // Its log is the conversation, readable.
    let out = d.agentctl(&["logs", &item_id()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[you] fix the flaky login test\n  → Bash\n[claude] Fixed.\n[claude] Fixed.\n"
    );
}

#[test]
fn sub_agent_tokens_add_to_their_session_and_restarts_count_nothing_twice() {
    let mut d = Daemon::start("claude-sub");
    let main = claude_dir(&d).join(format!("{SESSION}.jsonl"));
    let sub = claude_dir(&d)
        .join(SESSION)
        .join("subagents/agent-a1.jsonl");
    append_lines(
        &main,
        &[
            prompt("review the PR", 5),
            assistant(
                "msg_1",
                json!([{"type": "text", "text": "done"}]),
                10,
                Some("end_turn"),
                false,
            ),
        ],
    );
    append_lines(
        &sub,
        &[assistant(
            "msg_s1",
            json!([{"type": "text", "text": "sub"}]),
            30,
            None,
            true,
        )],
    );
    let v = d.wait_item(&item_id(), |v| v["usage"]["output_tokens"] == 40);
    assert_eq!(
        v["status"], "success",
        "sub-agent lines do not decide status"
    );
    let before = d.get(&format!("/v1/agents/{}", item_id()));

    assert_eq!(d.stop().code(), Some(0));
    d.spawn();
    d.wait_for("/v1/health", "the scan", |h| {
        source_in(h, "claude-code").is_some_and(|s| s["files"] == 2)
    });
    let claude = source_in(&d.get("/v1/health"), "claude-code").unwrap();
    assert_eq!(
        (
            &claude["items"],
            &claude["scan_total"],
            &claude["scan_done"]
        ),
        (&json!(1), &json!(2), &json!(true)),
        "{claude}"
    );
    assert_eq!(d.get(&format!("/v1/agents/{}", item_id())), before);

    append_lines(
        &sub,
        &[assistant(
            "msg_s2",
            json!([{"type": "text", "text": "more"}]),
            5,
            None,
            true,
        )],
    );
    let v = d.wait_item(&item_id(), |v| v["usage"]["output_tokens"] == 45);
    assert_eq!(v["usage"]["input_tokens"], 300);
    let page = d.get("/v1/agents?tab=all");
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
}

#[test]
fn garbage_and_huge_lines_are_counted_and_the_rest_is_read() {
    let d = Daemon::start("claude-garbage");
    let file = claude_dir(&d).join(format!("{SESSION}.jsonl"));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut bytes = b"{not json\n\x00\x01\x02binary\n".to_vec();
    bytes.extend(vec![b'x'; 17 * 1024 * 1024]);
    bytes.push(b'\n');
    bytes.extend(format!("{}\n", prompt("still read", 1)).as_bytes());
    std::fs::write(&file, bytes).unwrap();
    let v = d.wait_item(&item_id(), |v| v["title"] == "still read");
    assert_eq!(v["status"], "working");
    let h = d.wait_for("/v1/health", "errors counted", |h| {
        source_in(h, "claude-code").is_some_and(|s| s["errors"] == 3)
    });
    let src = source_in(&h, "claude-code").unwrap();
    assert!(
        src["last_error"]
            .as_str()
            .unwrap()
            .contains("longer than 16 MiB"),
        "{src}"
    );
}

#[test]
fn a_store_created_after_start_and_claude_config_dir_are_followed() {
    let dir = tempdir_name("claude-cfg");
    let d = Daemon::start_with(
        "claude-later",
        Options {
            env: vec![(
                "CLAUDE_CONFIG_DIR".into(),
                format!("{},{}", dir.display(), "/nonexistent/claude"),
            )],
            ..Options::default()
        },
    );
    // Nothing there yet; then the CLI creates its dirs and writes.
    let file = dir
        .join("projects/-src-app")
        .join(format!("{SESSION}.jsonl"));
    append_lines(&file, &[prompt("created later", 1)]);
    let v = d.wait_item(&item_id(), |v| v["title"] == "created later");
    assert_eq!(v["status"], "working");
    // The default location is not read when the variable is set.
    let default = claude_dir(&d).join("0000.jsonl");
    append_lines(&default, &[prompt("not followed", 1)]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(d.req("GET", "/v1/agents/claude-code:0000", b"").status, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir_name(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("agentd-t{}-{name}", std::process::id()))
}

#[test]
fn a_codex_rollout_becomes_an_item_with_tokens_and_cost() {
    let d = Daemon::start("codex-live");
    let uuid = "0199a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b";
    let file = d
        .home
        .join(".codex/sessions/2026/11/29")
        .join(format!("rollout-2026-11-29T10-00-00-{uuid}.jsonl"));
    let line =
        |kind: &str, payload: Value| json!({"timestamp": ago(0), "type": kind, "payload": payload});
    append_lines(
        &file,
        &[
            line(
                "session_meta",
                json!({"id": uuid, "timestamp": ago(3), "cwd": "/src/api",
                "originator": "codex_cli_rs", "cli_version": "0.104.0", "source": "cli"}),
            ),
            line(
                "turn_context",
                json!({"turn_id": "t1", "cwd": "/src/api", "approval_policy": "on-request",
                "model": "gpt-5-codex"}),
            ),
            line(
                "event_msg",
                json!({"type": "task_started", "turn_id": "t1"}),
            ),
            line(
                "event_msg",
                json!({"type": "user_message", "message": "add rate limiting to the API"}),
            ),
        ],
    );
    let id = format!("codex:{uuid}");
    let v = d.wait_item(&id, |v| v["status"] == "working");
    assert_eq!(v["title"], "add rate limiting to the API");
    assert_eq!(v["project"], "/src/api");
    assert_eq!(v["harness"], "codex");
    let total = |input: u64, cached: u64, output: u64| {
        json!({"type": "token_count", "info": {"total_token_usage": {"input_tokens": input,
            "cached_input_tokens": cached, "output_tokens": output, "reasoning_output_tokens": 0,
            "total_tokens": input + output}, "last_token_usage": null, "model_context_window": 272000}})
    };
    append_lines(
        &file,
        &[
            line("event_msg", total(10_000, 8_000, 500)),
            line("event_msg", total(10_000, 8_000, 500)), // re-emitted: not counted again
            line(
                "response_item",
                json!({"type": "message", "role": "assistant", "phase": "final_answer",
                "content": [{"type": "output_text", "text": "Done."}]}),
            ),
            line(
                "event_msg",
                json!({"type": "agent_message", "message": "Done."}),
            ),
            line(
                "event_msg",
                json!({"type": "task_complete", "turn_id": "t1", "last_agent_message": "Done."}),
            ),
        ],
    );
    let v = d.wait_item(&id, |v| v["status"] == "success");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 2000, "output_tokens": 500, "cache_read_tokens": 8000, "cache_write_tokens": 0})
    );
    // gpt-5-codex: 2000*1.25 + 8000*0.125 + 500*10 = 8500 micro-dollars
    assert_eq!(v["cost_usd"], 0.0085);
    assert_eq!(v["model"], "gpt-5-codex");
    assert_eq!(
        v["open"]["command"],
        format!("cd /src/api && codex resume {uuid}")
    );

    // Codex archives it: the conversation lives on under archived_sessions, not deleted.
    let archived = d
        .home
        .join(".codex/archived_sessions")
        .join(file.file_name().unwrap());
    std::fs::create_dir_all(archived.parent().unwrap()).unwrap();
    std::fs::rename(&file, &archived).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let v = d.get(&format!("/v1/agents/{id}"));
    assert_eq!(v["status_detail"], Value::Null, "{v}");
    assert_eq!(v["usage"]["cache_read_tokens"], 8000, "counted once");
    let file = archived;

    // The agent's cleanup deletes the file: the conversation stays, marked as such, and its
    // log is read from agentd's own copy.
    let log_before = d.agentctl(&["logs", &id]).stdout;
    assert!(String::from_utf8_lossy(&log_before).contains("add rate limiting"));
    // (Codex's cleanup comes days later; the copier, at the lowest priority, may take a moment
    // on a loaded machine to copy the file under its new name.)
    let copy = agentd_tests::history_copy(&d, &file);
    let deadline = std::time::Instant::now() + agentd_tests::WAIT;
    while !copy.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(copy.exists(), "no copy of {} was made", file.display());
    std::fs::remove_file(&file).unwrap();
    let v = d.wait_item(&id, |v| {
        v["status_detail"] == "transcript deleted by Codex; agentd kept a copy"
    });
    assert_eq!(v["status"], "success");
    assert_eq!(v["cost_usd"], 0.0085);
    assert_eq!(d.agentctl(&["logs", &id]).stdout, log_before);
}

/// The history copies in a daemon's state dir.
fn copies(d: &Daemon) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(d.state.join("history"))
        .map(|e| e.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn transcript_copies_are_bounded_oldest_first_and_deleted_when_turned_off() {
    let mut d = Daemon::prepare("history-cap", Options::default());
    // A 1 MB bound, and conversations of about 420 KB each once compressed: random text
    // compresses poorly, as real tool output often does.
    std::fs::write(d.home.join("no-config.toml"), "[history]\nmax_mb = 1\n").unwrap();
    d.spawn();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| -> String {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect()
    };
    let sessions: Vec<String> = (0..4)
        .map(|i| format!("{i:08x}-1111-4222-8333-444444444444"))
        .collect();
    for s in &sessions {
        let file = claude_dir(&d).join(format!("{s}.jsonl"));
        let p = json!({"type": "user", "timestamp": ago(5), "sessionId": s, "cwd": "/src/app",
            "isSidechain": false, "uuid": "u1", "message": {"role": "user", "content": noise(700_000)}});
        append_lines(&file, &[p]);
        d.wait_item(&format!("claude-code:{s}"), |_| true);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // The copier catches up; the oldest copies go first to stay under the bound.
    let deadline = std::time::Instant::now() + agentd_tests::WAIT;
    loop {
        let total: u64 = copies(&d)
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        let newest =
            agentd_tests::history_copy(&d, &claude_dir(&d).join(format!("{}.jsonl", sessions[3])));
        if total <= 1 << 20 && newest.exists() && copies(&d).len() < sessions.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "total {total}, {:?}",
            copies(&d)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let oldest =
        agentd_tests::history_copy(&d, &claude_dir(&d).join(format!("{}.jsonl", sessions[0])));
    assert!(!oldest.exists(), "the oldest copy goes first");
    // Turned off: the copies are deleted at the next start.
    assert_eq!(d.stop().code(), Some(0));
    std::fs::write(d.home.join("no-config.toml"), "[history]\nkeep = false\n").unwrap();
    d.spawn();
    assert!(!d.state.join("history").exists());
}

/// Regression: the copier used to be told of files through a queue of 4,096 notices and drop
/// what did not fit, so a first scan of more conversations than that left files without a
/// copy until they changed again (and an agent's cleanup could then delete the only one).
#[test]
fn every_conversation_present_at_start_gets_its_history_copy_however_many_there_are() {
    const N: usize = 6_000;
    let mut d = Daemon::prepare("history-many", Options::default());
    let dir = claude_dir(&d);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..N {
        let s = format!("{i:08x}-5555-4666-8777-888888888888");
        let p = json!({"type": "user", "timestamp": ago(600), "sessionId": s, "cwd": "/src/app",
            "isSidechain": false, "uuid": "u1", "message": {"role": "user", "content": format!("task {i}")}});
        std::fs::write(dir.join(format!("{s}.jsonl")), format!("{p}\n")).unwrap();
    }
    d.spawn();
    d.wait_scanned();
    // The copier runs at the lowest priority: give it its time, then every file has a copy.
    let deadline = std::time::Instant::now() + 6 * agentd_tests::WAIT;
    while copies(&d).len() < N && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(copies(&d).len(), N, "files without a history copy");
    let last = dir.join(format!("{:08x}-5555-4666-8777-888888888888.jsonl", N - 1));
    let copy = std::fs::read(agentd_tests::history_copy(&d, &last)).unwrap();
    assert_eq!(
        zstd::decode_all(copy.as_slice()).unwrap(),
        std::fs::read(&last).unwrap()
    );
}

#[test]
fn a_gemini_chat_becomes_an_item_with_its_project() {
    let d = Daemon::start("gemini-live");
    let project = d.home.join(".gemini/tmp/webapp");
    std::fs::create_dir_all(project.join("chats")).unwrap();
    std::fs::write(project.join(".project_root"), "/src/webapp\n").unwrap();
    let sid = "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f";
    let file = project.join("chats/session-2026-11-29T10-00-9c1d2e3f.jsonl");
    append_lines(
        &file,
        &[
            json!({"sessionId": sid, "projectHash": "webapp", "startTime": ago(5), "lastUpdated": ago(5), "kind": "main"}),
            json!({"id": "u1", "timestamp": ago(4), "type": "user", "content": [{"text": "why is the build slow?"}]}),
        ],
    );
    let id = format!("gemini:{sid}");
    let v = d.wait_item(&id, |v| v["status"] == "working");
    assert_eq!(v["title"], "why is the build slow?");
    assert_eq!(v["project"], "/src/webapp");
    append_lines(
        &file,
        &[
            json!({"id": "g1", "timestamp": ago(0), "type": "gemini", "content": "The cache is cold.",
            "tokens": {"input": 12000, "output": 300, "cached": 10000, "thoughts": 100, "tool": 0, "total": 12400},
            "model": "gemini-2.5-pro"}),
        ],
    );
    let v = d.wait_item(&id, |v| v["status"] == "success");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 2000, "output_tokens": 400, "cache_read_tokens": 10000, "cache_write_tokens": 0})
    );
    // gemini-2.5-pro: 2000*1.25 + 400*10 + 10000*0.125 = 7750 micro-dollars
    assert_eq!(v["cost_usd"], 0.00775);
    assert_eq!(v["model"], "gemini-2.5-pro");
}

#[test]
fn claude_codes_live_registry_decides_status_while_its_process_runs() {
    let d = Daemon::start("claude-registry");
    let file = claude_dir(&d).join(format!("{SESSION}.jsonl"));
    append_lines(
        &file,
        &[
            prompt("deploy the app", 3),
            assistant(
                "msg_1",
                json!([{"type": "text", "text": "Deployed."}]),
                10,
                Some("end_turn"),
                false,
            ),
        ],
    );
    d.wait_item(&item_id(), |v| v["status"] == "success");
    // The running CLI (this test process stands in for it) says it waits for a permission
    // answer: blocked at once, without any quiet time.
    let sessions = d.home.join(".claude/sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    let me = std::process::id();
    let registry = |pid: u32, status: &str| {
        json!({"pid": pid, "sessionId": SESSION, "cwd": "/src/app", "startedAt": agentd_tests::now_ms() - 1000,
            "version": "2.1.261", "kind": "interactive", "entrypoint": "cli", "status": status,
            "waitingFor": "permission prompt", "statusUpdatedAt": agentd_tests::now_ms()})
        .to_string()
    };
    let reg = sessions.join(format!("{me}.json"));
    std::fs::write(&reg, registry(me, "waiting")).unwrap();
    let v = d.wait_item(&item_id(), |v| v["status"] == "blocked");
    assert_eq!(v["status_detail"], "waiting for permission");
    assert_eq!(v["status_source"], "registry");
    std::fs::write(&reg, registry(me, "busy")).unwrap();
    d.wait_item(&item_id(), |v| v["status"] == "working");
    // Rewritten in place at the same length ("busy" → "idle"): still noticed.
    let before = std::fs::metadata(&reg).unwrap().len();
    std::fs::write(&reg, registry(me, "idle")).unwrap();
    assert_eq!(std::fs::metadata(&reg).unwrap().len(), before);
    d.wait_item(&item_id(), |v| v["status"] == "success");
    std::fs::write(&reg, registry(me, "busy")).unwrap();
    d.wait_item(&item_id(), |v| v["status"] == "working");
    // The CLI exits and removes its file: the transcript decides again.
    std::fs::remove_file(&reg).unwrap();
    d.wait_item(&item_id(), |v| v["status"] == "success");
    // A registry left behind by a process that is gone is ignored.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(
        sessions.join(format!("{dead}.json")),
        registry(dead, "waiting"),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        d.get(&format!("/v1/agents/{}", item_id()))["status"],
        "success"
    );
}

#[test]
fn a_truncated_transcript_is_read_again_from_the_start() {
    let d = Daemon::start("claude-truncate");
    let file = claude_dir(&d).join(format!("{SESSION}.jsonl"));
    append_lines(
        &file,
        &[
            prompt("first version", 5),
            assistant(
                "msg_1",
                json!([{"type": "text", "text": "a"}]),
                500,
                Some("end_turn"),
                false,
            ),
        ],
    );
    d.wait_item(&item_id(), |v| v["usage"]["output_tokens"] == 500);
    // Rewritten shorter (same path): its content now is all there is.
    std::fs::write(
        &file,
        format!(
            "{}\n",
            assistant(
                "msg_9",
                json!([{"type": "text", "text": "b"}]),
                7,
                Some("end_turn"),
                false
            )
        ),
    )
    .unwrap();
    let v = d.wait_item(&item_id(), |v| v["usage"]["output_tokens"] == 7);
    assert_eq!(
        v["usage"]["input_tokens"], 100,
        "counted once, not added to the old"
    );
}

#[test]
fn a_symlink_loop_in_a_store_is_survived() {
    let d = Daemon::start("claude-symlink");
    let projects = d.home.join(".claude/projects");
    std::fs::create_dir_all(projects.join("-src-app")).unwrap();
    std::os::unix::fs::symlink(&projects, projects.join("-src-app/loop")).unwrap();
    std::os::unix::fs::symlink("dangling-target", projects.join("-src-app/dangling.jsonl"))
        .unwrap();
    let file = claude_dir(&d).join(format!("{SESSION}.jsonl"));
    append_lines(&file, &[prompt("still followed", 1)]);
    let v = d.wait_item(&item_id(), |v| v["title"] == "still followed");
    assert_eq!(v["status"], "working");
    // And after a restart, whose scan walks the same tree.
    let mut d = d;
    assert_eq!(d.stop().code(), Some(0));
    d.spawn();
    append_lines(&file, &[prompt("after restart", 0)]);
    d.wait_item(&item_id(), |v| {
        v["updated_at"].as_str() > Some(ago(1).as_str())
    });
    assert_eq!(
        d.get("/v1/agents?tab=all")["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Runs `agentctl hook claude-code` as Claude Code would, with `payload` on stdin.
fn hook(d: &Daemon, socket: &Path, payload: Value) -> std::process::Output {
    agentd_tests::run_hook(d, socket, "claude-code", &payload)
}

#[test]
fn claude_code_hooks_say_exactly_when_a_conversation_waits() {
    let d = Daemon::start("claude-hooks");
    let file = claude_dir(&d).join(format!("{SESSION}.jsonl"));
    append_lines(
        &file,
        &[
            prompt("refactor the parser", 3),
            assistant(
                "msg_1",
                json!([{"type": "tool_use", "id": "toolu_1", "name": "Edit", "input": {}}]),
                10,
                None,
                false,
            ),
        ],
    );
    d.wait_item(&item_id(), |v| v["status"] == "working");
    let payload = |event: &str, extra: Value| {
        let mut p = json!({"session_id": SESSION, "transcript_path": file, "cwd": "/src/app",
            "hook_event_name": event});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    // The permission prompt is on screen: blocked at once, with Claude Code's own words.
    let out = hook(
        &d,
        &d.socket,
        payload(
            "Notification",
            json!({"notification_type": "permission_prompt", "message": "Claude needs your permission to use Edit"}),
        ),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let v = d.wait_item(&item_id(), |v| v["status"] == "blocked");
    assert_eq!(
        v["status_detail"],
        "Claude needs your permission to use Edit"
    );
    // Approved: the transcript moves on and decides again.
    append_lines(
        &file,
        &[
            json!({"type": "user", "timestamp": ago(0), "sessionId": SESSION, "isSidechain": false,
            "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}}),
        ],
    );
    d.wait_item(&item_id(), |v| v["status"] == "working");
    hook(&d, &d.socket, payload("Stop", json!({})));
    d.wait_item(&item_id(), |v| v["status"] == "success");
    hook(
        &d,
        &d.socket,
        payload("StopFailure", json!({"error": "rate_limit"})),
    );
    let v = d.wait_item(&item_id(), |v| v["status"] == "failed");
    assert_eq!(v["status_detail"], "rate_limit");
    // Regression: "your turn" (idle_prompt, a minute after a turn ends) is not "blocked", and
    // leaves a finished turn as it is.
    hook(&d, &d.socket, payload("Stop", json!({})));
    d.wait_item(&item_id(), |v| v["status"] == "success");
    hook(
        &d,
        &d.socket,
        payload(
            "Notification",
            json!({"notification_type": "idle_prompt", "message": "Claude is waiting for your input"}),
        ),
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let v = d.get(&format!("/v1/agents/{}", item_id()));
    assert_eq!(v["status"], "success", "{v}");
    // An open turn (a new prompt) that Claude Code reports idle has ended: success.
    append_lines(&file, &[prompt("and the tests too", 0)]);
    d.wait_item(&item_id(), |v| v["status"] == "working");
    hook(
        &d,
        &d.socket,
        payload("Notification", json!({"notification_type": "idle_prompt"})),
    );
    d.wait_item(&item_id(), |v| v["status"] == "success");

    // Bad payloads are refused by the API, but the hook command still exits 0, silently.
    let r = d.req(
        "POST",
        "/v1/hooks/claude-code",
        b"{\"hook_event_name\":\"Stop\"}",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "bad_request");
    let out = hook(&d, &d.socket, json!({"nonsense": true}));
    assert_eq!(out.status.code(), Some(0));
    // With agentd down, too.
    let out = hook(&d, &d.home.join("nowhere.sock"), payload("Stop", json!({})));
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn the_hook_installs_into_claude_code_settings_once() {
    let d = Daemon::start("claude-hook-install");
    let settings = d.home.join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(
        &settings,
        r#"{"model": "opus", "permissions": {"allow": ["Bash(ls)"]}}"#,
    )
    .unwrap();
    let dry = d.agentctl(&["hook", "claude-code", "--install", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0));
    let shown = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        shown.contains("+ ") && shown.contains("hook claude-code"),
        "{shown}"
    );
    assert!(
        !std::fs::read_to_string(&settings)
            .unwrap()
            .contains("hook claude-code")
    );
    let inst = d.agentctl(&["hook", "claude-code", "--install"]);
    assert_eq!(inst.status.code(), Some(0));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(v["model"], "opus");
    assert_eq!(v["permissions"]["allow"][0], "Bash(ls)");
    for event in [
        "Notification",
        "PreToolUse",
        "Stop",
        "StopFailure",
        "SessionEnd",
    ] {
        let cmd = v["hooks"][event][0]["hooks"][0]["command"]
            .as_str()
            .unwrap();
        assert!(cmd.ends_with("agentctl hook claude-code"), "{event}: {cmd}");
    }
    let again = d.agentctl(&["hook", "claude-code", "--install"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already has"));
}

/// A finished Codex rollout, as lines.
fn codex_rollout(uuid: &str, prompt: &str, input: u64) -> String {
    let line = |kind: &str, payload: Value| json!({"timestamp": ago(60), "type": kind, "payload": payload});
    let lines = [
        line(
            "session_meta",
            json!({"id": uuid, "timestamp": ago(60), "cwd": "/src/old",
            "originator": "codex_cli_rs", "cli_version": "0.104.0", "source": "cli"}),
        ),
        line(
            "turn_context",
            json!({"turn_id": "t1", "cwd": "/src/old", "approval_policy": "on-request", "model": "gpt-5-codex"}),
        ),
        line(
            "event_msg",
            json!({"type": "task_started", "turn_id": "t1"}),
        ),
        line(
            "event_msg",
            json!({"type": "user_message", "message": prompt}),
        ),
        line(
            "event_msg",
            json!({"type": "token_count", "info": {"total_token_usage": {"input_tokens": input,
            "cached_input_tokens": 0, "output_tokens": 10, "reasoning_output_tokens": 0,
            "total_tokens": input + 10}, "last_token_usage": null, "model_context_window": 272000}}),
        ),
        line(
            "event_msg",
            json!({"type": "agent_message", "message": "Done."}),
        ),
        line(
            "event_msg",
            json!({"type": "task_complete", "turn_id": "t1", "last_agent_message": "Done."}),
        ),
    ];
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn compressed_codex_rollouts_are_read_and_a_plain_copy_is_not_counted_twice() {
    let mut d = Daemon::start("codex-zst");
    let archived = d.home.join(".codex/archived_sessions");
    std::fs::create_dir_all(&archived).unwrap();
    // Only compressed.
    let old = "0199a0b1-0000-7e4f-8a9b-0c1d2e3f4a5b";
    let text = codex_rollout(old, "migrate the old schema", 1000);
    std::fs::write(
        archived.join(format!("rollout-2026-10-01T10-00-00-{old}.jsonl.zst")),
        zstd::stream::encode_all(text.as_bytes(), 3).unwrap(),
    )
    .unwrap();
    // Both forms of one rollout (Codex compressing it): one conversation, counted once.
    let both = "0199a0b1-1111-7e4f-8a9b-0c1d2e3f4a5b";
    let text = codex_rollout(both, "bump the deps", 2000);
    let plain = archived.join(format!("rollout-2026-10-02T10-00-00-{both}.jsonl"));
    std::fs::write(&plain, &text).unwrap();
    std::fs::write(
        plain.with_extension("jsonl.zst"),
        zstd::stream::encode_all(text.as_bytes(), 3).unwrap(),
    )
    .unwrap();
    let v = d.wait_item(&format!("codex:{old}"), |v| v["status"] == "success");
    assert_eq!(v["title"], "migrate the old schema");
    assert_eq!(v["usage"]["input_tokens"], 1000);
    assert_eq!(v["project"], "/src/old");
    let v = d.wait_item(&format!("codex:{both}"), |v| v["status"] == "success");
    assert_eq!(v["usage"]["input_tokens"], 2000, "counted once: {v}");
    assert_eq!(
        d.get("/v1/agents?tab=all")["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Its transcript is readable from the compressed file.
    let log = d.agentctl(&["logs", &format!("codex:{old}")]);
    assert_eq!(
        String::from_utf8_lossy(&log.stdout),
        "[you] migrate the old schema\n[codex] Done.\n"
    );
    // Codex removes the plain file once compressed: the same item, from the compressed one.
    std::fs::remove_file(&plain).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let v = d.get(&format!("/v1/agents/codex:{both}"));
    assert_eq!(v["usage"]["input_tokens"], 2000, "{v}");
    assert_eq!(v["status_detail"], Value::Null, "{v}");
    // And a restart changes nothing.
    let before = d.get("/v1/agents?tab=all");
    assert_eq!(d.stop().code(), Some(0));
    d.spawn();
    d.wait_for("/v1/health", "the scan", |h| {
        source_in(h, "codex").is_some_and(|s| s["scan_done"] == true)
    });
    assert_eq!(d.get("/v1/agents?tab=all"), before);
    assert_eq!(
        source_in(&d.get("/v1/health"), "codex").unwrap()["errors"],
        0
    );
}

#[test]
fn a_gemini_chat_in_a_legacy_hash_dir_finds_its_project() {
    let d = Daemon::start("gemini-hash-dir");
    let gemini = d.home.join(".gemini");
    // The dir's name is the SHA-256 of the project's path, computed here as Gemini CLI does.
    let out = std::process::Command::new("sh")
        .args(["-c", "printf %s /src/legacy | sha256sum"])
        .output()
        .unwrap();
    let hash = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum's answer")
        .to_owned();
    assert_eq!(hash.len(), 64);
    std::fs::create_dir_all(gemini.join("tmp").join(&hash).join("chats")).unwrap();
    std::fs::write(
        gemini.join("projects.json"),
        json!({"projects": {"/src/other": "other", "/src/legacy": "legacy"}}).to_string(),
    )
    .unwrap();
    let sid = "7d1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f";
    append_lines(
        &gemini
            .join("tmp")
            .join(&hash)
            .join("chats/session-2026-01-10T10-00-7d1d2e3f.jsonl"),
        &[
            json!({"sessionId": sid, "projectHash": hash, "startTime": ago(5), "lastUpdated": ago(5), "kind": "main"}),
            json!({"id": "u1", "timestamp": ago(4), "type": "user", "content": [{"text": "where is the config?"}]}),
        ],
    );
    let v = d.wait_item(&format!("gemini:{sid}"), |_| true);
    assert_eq!(v["project"], "/src/legacy", "{v}");
    assert_eq!(
        v["open"]["command"],
        format!("cd /src/legacy && gemini --resume {sid}")
    );
}

#[test]
fn status_source_says_where_each_status_came_from() {
    let d = Daemon::start("status-source");
    d.write_run(
        "r1",
        &[agentd_tests::rec(
            json!({"type": "start", "ts": ago(5), "title": "a run"}),
        )],
    );
    assert_eq!(d.wait_item("cli:r1", |_| true)["status_source"], "run_log");
    let file = claude_dir(&d).join(format!("{SESSION}.jsonl"));
    append_lines(
        &file,
        &[
            prompt("clean up", 1),
            assistant(
                "msg_1",
                json!([{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]),
                10,
                None,
                false,
            ),
        ],
    );
    let v = d.wait_item(&item_id(), |v| v["status"] == "working");
    assert_eq!(v["status_source"], "transcript");
    // Quiet for 5 s with a tool call pending: blocked, but only as a guess, and marked so.
    let v = d.wait_item(&item_id(), |v| v["status"] == "blocked");
    assert_eq!(v["status_source"], "inferred", "{v}");
    let ls = d.agentctl(&["ls"]);
    let text = String::from_utf8_lossy(&ls.stdout);
    assert!(text.contains("🟨? blocked"), "{text}");
    let show = d.agentctl(&["show", &item_id()]);
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("inferred"),
        "{show:?}"
    );
    // The agent's hook says exactly: the status comes from it.
    let out = hook(
        &d,
        &d.socket,
        json!({"session_id": SESSION, "hook_event_name": "Notification",
            "notification_type": "permission_prompt", "message": "Claude needs your permission to use Bash"}),
    );
    assert!(out.status.success());
    let v = d.wait_item(&item_id(), |v| v["status_source"] == "hook");
    assert_eq!(v["status"], "blocked");
    assert!(!String::from_utf8_lossy(&d.agentctl(&["ls"]).stdout).contains("🟨?"));
}

#[test]
fn a_qwen_code_chat_becomes_an_item_with_tokens_status_and_its_transcript() {
    let mut d = Daemon::start("qwen-live");
    let sid = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
    let file = d
        .home
        .join(".qwen/projects/-src-registry/chats")
        .join(format!("{sid}.jsonl"));
    append_lines(
        &file,
        &[
            json!({"uuid": "u1", "parentUuid": null, "sessionId": sid, "timestamp": ago(3),
            "type": "user", "cwd": "/src/registry", "version": "0.0.14",
            "message": {"role": "user", "parts": [{"text": "Inspect the sample parser."}]}}),
        ],
    );
    let id = format!("qwen:{sid}");
    let v = d.wait_item(&id, |v| v["status"] == "working");
    assert_eq!(v["title"], "Inspect the sample parser.");
    assert_eq!(v["project"], "/src/registry");
    assert_eq!(v["harness"], "qwen");
    assert_eq!(
        v["open"]["command"],
        format!("cd /src/registry && qwen --resume {sid}")
    );
    append_lines(
        &file,
        &[
            json!({"uuid": "a1", "parentUuid": "u1", "sessionId": sid, "timestamp": ago(2),
                "type": "assistant", "cwd": "/src/registry", "model": "qwen3-coder-plus",
                "message": {"role": "model", "parts": [{"functionCall": {"name": "read_file", "args": {}}}]},
                "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 20,
                    "cachedContentTokenCount": 600, "thoughtsTokenCount": 5}}),
            json!({"uuid": "t1", "sessionId": sid, "timestamp": ago(1), "type": "tool_result",
                "cwd": "/src/registry", "message": {"role": "user",
                    "parts": [{"functionResponse": {"name": "read_file", "response": {}}}]}}),
            json!({"uuid": "a2", "sessionId": sid, "timestamp": ago(1), "type": "assistant",
                "cwd": "/src/registry", "model": "qwen3-coder-plus",
                "message": {"role": "model", "parts": [{"text": "I found the parser fixture."}]},
                "usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": 30,
                    "cachedContentTokenCount": 1000}}),
            json!({"uuid": "r1", "sessionId": sid, "timestamp": ago(0), "type": "system",
                "subtype": "turn_result", "systemPayload": {"state": "completed"}}),
        ],
    );
    let v = d.wait_item(&id, |v| v["status"] == "success");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 600, "output_tokens": 55, "cache_read_tokens": 1600, "cache_write_tokens": 0})
    );
    assert_eq!(v["status_source"], "transcript");
    let log = d.agentctl(&["logs", &id]);
    assert_eq!(
        String::from_utf8_lossy(&log.stdout),
        "[you] Inspect the sample parser.\n  → read_file\n[qwen] I found the parser fixture.\n"
    );
    // Qwen Code's hooks are Claude Code's: a permission prompt blocks at once.
    append_lines(
        &file,
        &[
            json!({"uuid": "u2", "sessionId": sid, "timestamp": ago(0), "type": "user",
            "cwd": "/src/registry", "message": {"role": "user", "parts": [{"text": "now fix it"}]}}),
        ],
    );
    d.wait_item(&id, |v| v["status"] == "working");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = agentd_tests::run_hook(
        &d,
        &d.socket,
        "qwen",
        &json!({"session_id": sid, "hook_event_name": "Notification",
            "notification_type": "permission_prompt", "message": "Qwen Code needs your permission to use Edit"}),
    );
    assert!(out.status.success());
    let v = d.wait_item(&id, |v| v["status"] == "blocked");
    assert_eq!(v["status_source"], "hook");
    // A restart changes nothing.
    let before = d.get(&format!("/v1/agents/{id}"));
    assert_eq!(d.stop().code(), Some(0));
    d.spawn();
    d.wait_for("/v1/health", "the qwen scan", |h| {
        source_in(h, "qwen").is_some_and(|s| s["scan_done"] == true && s["items"] == 1)
    });
    let after = d.get(&format!("/v1/agents/{id}"));
    assert_eq!(after["usage"], before["usage"]);
    assert_eq!(after["title"], before["title"]);
}

#[test]
fn a_factory_droid_session_takes_its_tokens_from_the_settings_file() {
    let d = Daemon::start("droid-live");
    let dir = d.home.join(".factory/sessions/-home-user-webapp");
    let sid = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    append_lines(
        &dir.join(format!("{sid}.jsonl")),
        &[
            json!({"type": "session_start", "id": sid, "title": "Refactor authentication module",
                "owner": "developer", "cwd": "/home/user/webapp"}),
            json!({"type": "message", "timestamp": ago(20), "message": {"role": "user",
                "content": "Refactor the auth module to use JWT"}}),
            json!({"type": "message", "timestamp": ago(15), "message": {"role": "assistant",
                "content": "Done: the auth module issues JWTs now.", "model": "claude-sonnet-4-5-20250929"}}),
        ],
    );
    std::fs::write(
        dir.join(format!("{sid}.settings.json")),
        json!({"model": "custom:[Anthropic] claude-sonnet-4.5-20250929", "providerLock": "anthropic",
            "tokenUsage": {"inputTokens": 1000, "outputTokens": 200, "cacheCreationTokens": 0,
                "cacheReadTokens": 3000, "thinkingTokens": 20}})
        .to_string(),
    )
    .unwrap();
    let id = format!("droid:{sid}");
    let v = d.wait_item(&id, |v| v["usage"]["input_tokens"] == 1000);
    assert_eq!(v["title"], "Refactor authentication module");
    assert_eq!(v["project"], "/home/user/webapp");
    assert_eq!(v["usage"]["output_tokens"], 220);
    assert_eq!(v["status"], "success", "a quiet answer: {v}");
    assert_eq!(v["status_source"], "inferred");
    assert!(v["cost_usd"].as_f64().is_some_and(|c| c > 0.0), "{v}");
    assert_eq!(
        d.get("/v1/agents?tab=all")["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the settings file is part of the session"
    );
    let log = d.agentctl(&["logs", &id]);
    assert_eq!(
        String::from_utf8_lossy(&log.stdout),
        "[you] Refactor the auth module to use JWT\n[droid] Done: the auth module issues JWTs now.\n"
    );
    // The totals grow as Droid rewrites its settings file.
    std::fs::write(
        dir.join(format!("{sid}.settings.json")),
        json!({"model": "claude-sonnet-4-5-20250929",
            "tokenUsage": {"inputTokens": 1500, "outputTokens": 300, "cacheCreationTokens": 0,
                "cacheReadTokens": 3000, "thinkingTokens": 20}})
        .to_string(),
    )
    .unwrap();
    d.wait_item(&id, |v| v["usage"]["input_tokens"] == 1500);
}

fn copilot_event(kind: &str, secs_ago: i64, data: Value) -> Value {
    json!({"type": kind, "data": data, "id": format!("{kind}-{secs_ago}"),
        "timestamp": ago(secs_ago), "parentId": null})
}

#[test]
fn a_copilot_cli_session_is_blocked_exactly_while_a_permission_prompt_stands() {
    let mut d = Daemon::start("copilot-live");
    let sid = "7cf44517-55ca-435c-893a-3fde1973a44e";
    let file = d
        .home
        .join(".copilot/session-state")
        .join(sid)
        .join("events.jsonl");
    append_lines(
        &file,
        &[
            copilot_event(
                "session.start",
                30,
                json!({"sessionId": sid, "version": 1, "producer": "copilot-agent",
                    "copilotVersion": "1.0.82", "context": {"cwd": "/src/gateway"}}),
            ),
            copilot_event(
                "session.model_change",
                29,
                json!({"newModel": "gpt-5-mini"}),
            ),
            copilot_event(
                "user.message",
                28,
                json!({"content": "why is the connection pool exhausted"}),
            ),
            copilot_event("assistant.turn_start", 27, json!({"turnId": "0"})),
            copilot_event(
                "assistant.message",
                1,
                json!({"messageId": "m1", "model": "gpt-5-mini", "content": "Let me look.",
                    "toolRequests": [{"toolCallId": "c1", "name": "bash"}], "outputTokens": 40}),
            ),
            copilot_event(
                "permission.requested",
                0,
                json!({"requestId": "r1", "permissionRequest": {"kind": "shell"}}),
            ),
        ],
    );
    let id = format!("copilot:{sid}");
    let v = d.wait_item(&id, |v| v["status"] == "blocked");
    assert_eq!(v["status_detail"], "waiting for approval: shell");
    assert_eq!(
        v["status_source"], "transcript",
        "written when shown: exact"
    );
    assert_eq!(v["title"], "why is the connection pool exhausted");
    assert_eq!(v["project"], "/src/gateway");
    assert_eq!(v["harness"], "copilot");
    assert_eq!(v["model"], "gpt-5-mini");
    assert_eq!(
        v["usage"]["output_tokens"], 40,
        "live output before any snapshot"
    );
    assert_eq!(
        v["open"]["command"],
        format!("cd /src/gateway && copilot --resume {sid}")
    );
    append_lines(
        &file,
        &[
            copilot_event(
                "permission.completed",
                0,
                json!({"requestId": "r1", "result": {"kind": "approved"}}),
            ),
            copilot_event(
                "assistant.message",
                0,
                json!({"messageId": "m2", "model": "gpt-5-mini",
                    "content": "The poller leaks rows; close them in the scan loop.",
                    "toolRequests": [], "outputTokens": 60}),
            ),
            copilot_event("assistant.turn_end", 0, json!({"turnId": "0"})),
            copilot_event(
                "session.shutdown",
                0,
                json!({"shutdownType": "routine", "totalPremiumRequests": 1,
                    "totalNanoAiu": 6056400000u64, "currentModel": "gpt-5-mini",
                    "modelMetrics": {"gpt-5-mini": {"requests": {"count": 2, "cost": 1},
                        "usage": {"inputTokens": 5000, "outputTokens": 120, "cacheReadTokens": 3000,
                            "cacheWriteTokens": 0, "reasoningTokens": 20}}}}),
            ),
        ],
    );
    let v = d.wait_item(&id, |v| v["status"] == "success");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 2000, "output_tokens": 120, "cache_read_tokens": 3000, "cache_write_tokens": 0})
    );
    assert_eq!(v["credits"], 6.0564);
    assert!(v["cost_usd"].as_f64().is_some_and(|c| c > 0.0), "{v}");
    let log = d.agentctl(&["logs", &id]);
    assert_eq!(
        String::from_utf8_lossy(&log.stdout),
        "[you] why is the connection pool exhausted\n[copilot] Let me look.\n  → bash\n  (asks for approval)\n[copilot] The poller leaks rows; close them in the scan loop.\n"
    );
    // Older builds' flat files are sessions too.
    append_lines(
        &d.home.join(".copilot/session-state/0b1c2d3e.jsonl"),
        &[
            copilot_event("session.start", 5, json!({"context": {"cwd": "/src/old"}})),
            copilot_event("user.message", 5, json!({"content": "hello"})),
        ],
    );
    d.wait_item("copilot:0b1c2d3e", |v| v["title"] == "hello");
    let before = d.get(&format!("/v1/agents/{id}"));
    assert_eq!(d.stop().code(), Some(0));
    d.spawn();
    d.wait_for("/v1/health", "the copilot scan", |h| {
        source_in(h, "copilot").is_some_and(|s| s["scan_done"] == true && s["items"] == 2)
    });
    let after = d.get(&format!("/v1/agents/{id}"));
    for k in ["usage", "credits", "cost_usd", "status", "title"] {
        assert_eq!(after[k], before[k], "{k} after a restart");
    }
}

#[test]
fn kimi_sessions_of_both_generations_are_followed() {
    let mut d = Daemon::start("kimi-live");
    // kimi-cli: ~/.kimi/sessions/<md5 of the work dir>/<session>/wire.jsonl, the work dir in
    // kimi.json.
    let workdir = "/src/kimi-app";
    let hash = "6f2c8d9a1b3e4f5a6b7c8d9e0f1a2b3c"; // not the MD5: found through session_to_workdir
    let old_sid = "a1b2c3d4-0000-4000-8000-000000000001";
    std::fs::create_dir_all(d.home.join(".kimi")).unwrap();
    std::fs::write(
        d.home.join(".kimi/kimi.json"),
        json!({"work_dirs": [{"path": workdir, "last_session_id": old_sid}],
            "thinking": false, "session_to_workdir": {old_sid: workdir}})
        .to_string(),
    )
    .unwrap();
    let t = |secs_ago: i64| {
        (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as f64
            - secs_ago as f64 * 1000.0)
            / 1000.0
    };
    let wire = d
        .home
        .join(".kimi/sessions")
        .join(hash)
        .join(old_sid)
        .join("wire.jsonl");
    append_lines(
        &wire,
        &[
            json!({"type": "metadata", "protocol_version": "1.10"}),
            json!({"timestamp": t(5), "message": {"type": "TurnBegin", "payload": {"user_input": "list the files"}}}),
            json!({"timestamp": t(4), "message": {"type": "StepBegin", "payload": {"n": 1}}}),
            json!({"timestamp": t(3), "message": {"type": "StatusUpdate", "payload": {"context_usage": 0.1,
                "token_usage": {"input_other": 1200, "output": 80, "input_cache_read": 4000,
                    "input_cache_creation": 300}, "message_id": "m1"}}}),
            json!({"timestamp": t(0), "message": {"type": "ApprovalRequest", "payload": {"id": "req_1",
                "tool_call_id": "call_1", "sender": "Shell", "action": "run shell command",
                "description": "ls -la", "display": []}}}),
        ],
    );
    let old_id = format!("kimi:{old_sid}");
    let v = d.wait_item(&old_id, |v| v["status"] == "blocked");
    assert_eq!(
        v["status_detail"],
        "waiting for approval: run shell command"
    );
    assert_eq!(v["project"], workdir);
    assert_eq!(v["title"], "list the files");
    assert_eq!(v["harness"], "kimi");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 1200, "output_tokens": 80, "cache_read_tokens": 4000, "cache_write_tokens": 300})
    );
    assert_eq!(
        v["open"]["command"],
        format!("cd {workdir} && kimi --session {old_sid}")
    );
    append_lines(
        &wire,
        &[
            json!({"timestamp": t(0), "message": {"type": "ApprovalResponse", "payload": {"request_id": "req_1", "response": "approve"}}}),
            json!({"timestamp": t(0), "message": {"type": "TurnEnd", "payload": {}}}),
        ],
    );
    d.wait_item(&old_id, |v| v["status"] == "success");

    // Kimi Code: ~/.kimi-code/sessions/<workDirKey>/<session>/agents/{main,agent-1}/wire.jsonl.
    let new_sid = "b2c3d4e5-0000-4000-8000-000000000002";
    let agents = d
        .home
        .join(".kimi-code/sessions/wd_app_0a1b2c3d4e5f")
        .join(new_sid)
        .join("agents");
    let now_ms = |secs_ago: i64| (t(secs_ago) * 1000.0) as i64;
    append_lines(
        &agents.join("main/wire.jsonl"),
        &[
            json!({"type": "metadata", "protocol_version": "1.5", "created_at": now_ms(9)}),
            json!({"type": "config.update", "agentId": "main", "environmentDisclosure": {"cwd": "/src/next"}, "time": now_ms(9)}),
            json!({"type": "turn.prompt", "agentId": "main", "input": [{"type": "text", "text": "add a test"}], "origin": "user", "time": now_ms(8)}),
            json!({"type": "usage.record", "agentId": "main", "model": "kimi-k2", "usage": {"inputOther": 100, "output": 50, "inputCacheRead": 900, "inputCacheCreation": 0}, "usageScope": "turn", "time": now_ms(7)}),
            json!({"type": "context.append_message", "agentId": "main", "message": {"role": "assistant", "content": [{"type": "text", "text": "Added."}], "toolCalls": []}, "time": now_ms(6)}),
            json!({"type": "turn.ended", "agentId": "main", "turnId": 1, "reason": "completed", "time": now_ms(6)}),
        ],
    );
    append_lines(
        &agents.join("agent-1/wire.jsonl"),
        &[
            json!({"type": "metadata", "protocol_version": "1.5", "created_at": now_ms(7)}),
            json!({"type": "usage.record", "agentId": "agent-1", "model": "kimi-k2", "usage": {"inputOther": 10, "output": 5, "inputCacheRead": 0, "inputCacheCreation": 0}, "usageScope": "turn", "time": now_ms(7)}),
        ],
    );
    let new_id = format!("kimi:{new_sid}");
    let v = d.wait_item(&new_id, |v| {
        v["status"] == "success" && v["usage"]["input_tokens"] == 110
    });
    assert_eq!(v["project"], "/src/next");
    assert_eq!(v["model"], "kimi-k2");
    assert_eq!(
        v["usage"]["output_tokens"], 55,
        "the sub-agent's tokens add: {v}"
    );
    assert_eq!(v["title"], "add a test");
    let log = d.agentctl(&["logs", &new_id]);
    assert_eq!(
        String::from_utf8_lossy(&log.stdout),
        "[you] add a test\n[kimi] Added.\n"
    );
    assert_eq!(
        d.get("/v1/agents?tab=all&harness=kimi")["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let before = d.get("/v1/agents?tab=all&harness=kimi");
    assert_eq!(d.stop().code(), Some(0));
    d.spawn();
    d.wait_for("/v1/health", "the kimi scan", |h| {
        source_in(h, "kimi").is_some_and(|s| s["scan_done"] == true && s["items"] == 2)
    });
    assert_eq!(
        d.get("/v1/agents?tab=all&harness=kimi")["items"],
        before["items"]
    );
}
