//! Codex and Gemini CLI hooks through the real `agentctl hook` command: exact "blocked" from the
//! agents' own permission signals, Codex's auto-reviewed requests never flashing blocked, the
//! transcript taking over after a newer line, and `--install` writing each agent's own settings.

use agentd_tests::{Daemon, ago, append_lines, run_hook};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const CODEX: &str = "0199a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b";

/// A Codex rollout with an open turn whose tool call has no output yet.
fn codex_turn(d: &Daemon) -> std::path::PathBuf {
    let file = d
        .home
        .join(".codex/sessions/2026/11/30")
        .join(format!("rollout-2026-11-30T10-00-00-{CODEX}.jsonl"));
    let line =
        |kind: &str, payload: Value| json!({"timestamp": ago(0), "type": kind, "payload": payload});
    append_lines(
        &file,
        &[
            line(
                "session_meta",
                json!({"id": CODEX, "timestamp": ago(3), "cwd": "/src/api", "originator": "codex_cli_rs"}),
            ),
            line(
                "turn_context",
                json!({"turn_id": "t1", "cwd": "/src/api", "approval_policy": "on-request", "model": "gpt-5-codex"}),
            ),
            line(
                "event_msg",
                json!({"type": "task_started", "turn_id": "t1"}),
            ),
            line(
                "event_msg",
                json!({"type": "user_message", "message": "clean the build"}),
            ),
            line(
                "response_item",
                json!({"type": "function_call", "name": "exec_command", "call_id": "c1",
                "arguments": "{\"cmd\":\"rm -rf build\"}"}),
            ),
        ],
    );
    file
}

fn codex_hook(d: &Daemon, event: &str, extra: Value) {
    let mut p = json!({"session_id": CODEX, "hook_event_name": event, "cwd": "/src/api",
        "turn_id": "t1", "model": "gpt-5-codex"});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    let out = run_hook(d, &d.socket, "codex", &p);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}

fn status(d: &Daemon, id: &str) -> (String, Value) {
    let v = d.get(&format!("/v1/agents/{id}"));
    (
        v["status"].as_str().unwrap().to_owned(),
        v["status_detail"].clone(),
    )
}

#[test]
fn codex_permission_requests_block_once_they_stand_and_auto_reviews_never_flash() {
    let d = Daemon::start("hooks-codex");
    let file = codex_turn(&d);
    let id = format!("codex:{CODEX}");
    d.wait_item(&id, |v| v["status"] == "working");

    // Auto-reviewed: the request is settled (the tool runs) within a few hundred ms.
    codex_hook(
        &d,
        "PermissionRequest",
        json!({"tool_name": "Bash", "tool_input": {"command": "ls"}}),
    );
    std::thread::sleep(Duration::from_millis(300));
    codex_hook(&d, "PostToolUse", json!({"tool_name": "Bash"}));
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let (s, _) = status(&d, &id);
        assert_ne!(s, "blocked", "an auto-reviewed request flashed blocked");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A request that stands: blocked, with the tool, about a second later. (A fresh rollout
    // line first, so that the transcript's own 5 s quiet-time guess cannot answer instead.)
    append_lines(
        &file,
        &[
            json!({"timestamp": ago(0), "type": "event_msg", "payload": {"type": "token_count", "info": null}}),
        ],
    );
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    codex_hook(
        &d,
        "PermissionRequest",
        json!({"tool_name": "Bash", "tool_input": {"command": "rm -rf build"}}),
    );
    let v = d.wait_item(&id, |v| v["status"] == "blocked");
    assert_eq!(v["status_detail"], "waiting for approval: Bash");
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // Approved: the transcript moves on and decides again.
    let line = json!({"timestamp": ago(0), "type": "response_item",
        "payload": {"type": "function_call_output", "call_id": "c1", "output": "done"}});
    append_lines(&file, &[line]);
    d.wait_item(&id, |v| v["status"] == "working");
    // Interrupted by the user.
    codex_hook(&d, "Interrupt", json!({}));
    let v = d.wait_item(&id, |v| v["status"] == "canceled");
    assert_eq!(v["status_detail"], "interrupted by the user");
}

#[test]
fn gemini_tool_permission_blocks_at_once_and_after_agent_finishes_the_turn() {
    let d = Daemon::start("hooks-gemini");
    let project = d.home.join(".gemini/tmp/webapp");
    std::fs::create_dir_all(project.join("chats")).unwrap();
    std::fs::write(project.join(".project_root"), "/src/webapp\n").unwrap();
    let sid = "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f";
    append_lines(
        &project.join("chats/session-2026-11-30T10-00-9c1d2e3f.jsonl"),
        &[
            json!({"sessionId": sid, "projectHash": "webapp", "startTime": ago(5), "lastUpdated": ago(5), "kind": "main"}),
            json!({"id": "u1", "timestamp": ago(4), "type": "user", "content": [{"text": "deploy it"}]}),
        ],
    );
    let id = format!("gemini:{sid}");
    d.wait_item(&id, |v| v["status"] == "working");
    let hook = |event: &str, extra: Value| {
        let mut p = json!({"session_id": sid, "hook_event_name": event, "cwd": "/src/webapp",
            "timestamp": ago(0), "transcript_path": ""});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        let out = run_hook(&d, &d.socket, "gemini", &p);
        assert_eq!(out.status.code(), Some(0));
    };
    let asked = Instant::now();
    hook(
        "Notification",
        json!({"notification_type": "ToolPermission", "message": "Tool Shell requires execution",
            "details": {"type": "exec", "title": "Shell", "command": "make deploy"}}),
    );
    let v = d.wait_item(&id, |v| v["status"] == "blocked");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(v["status_detail"], "Tool Shell requires execution");
    hook("AfterTool", json!({"tool_name": "run_shell_command"}));
    d.wait_item(&id, |v| v["status"] == "working");
    hook(
        "AfterAgent",
        json!({"prompt": "deploy it", "prompt_response": "Deployed."}),
    );
    d.wait_item(&id, |v| v["status"] == "success");
    // An unknown agent's hook is refused by the API; the command still exits 0.
    assert_eq!(d.req("POST", "/v1/hooks/cursor", b"{}").status, 404);
}

#[test]
fn install_writes_each_agents_own_hook_settings() {
    let d = Daemon::start("hooks-install");
    let run = |args: &[&str]| {
        let out = d.agentctl(args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Dry run: shows, writes nothing.
    let shown = run(&["hook", "codex", "--install", "--dry-run"]);
    assert!(shown.contains("PermissionRequest"), "{shown}");
    assert!(!d.home.join(".codex/hooks.json").exists());
    let said = run(&["hook", "codex", "--install"]);
    assert!(
        said.contains("/hooks"),
        "Codex's trust step is explained: {said}"
    );
    let codex: Value =
        serde_json::from_str(&std::fs::read_to_string(d.home.join(".codex/hooks.json")).unwrap())
            .unwrap();
    for event in [
        "PermissionRequest",
        "UserPromptSubmit",
        "PreToolUse",
        "PostToolUse",
        "Stop",
        "SessionEnd",
    ] {
        let h = &codex["hooks"][event][0]["hooks"][0];
        assert!(
            h["command"].as_str().unwrap().ends_with("hook codex"),
            "{event}: {h}"
        );
        assert_eq!(h["timeout"], 5, "seconds");
    }
    // Gemini CLI: its settings kept, timeouts in milliseconds; a second install adds nothing.
    let settings = d.home.join(".gemini/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, r#"{"theme": "GitHub"}"#).unwrap();
    run(&["hook", "gemini", "--install"]);
    let gemini: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert_eq!(gemini["theme"], "GitHub");
    let h = &gemini["hooks"]["Notification"][0]["hooks"][0];
    assert!(
        h["command"].as_str().unwrap().ends_with("hook gemini"),
        "{h}"
    );
    assert_eq!(h["timeout"], 5000, "milliseconds");
    let again = run(&["hook", "gemini", "--install"]);
    assert!(again.contains("already has"), "{again}");
    assert_eq!(d.agentctl(&["hook", "cursor"]).status.code(), Some(2));
}

#[test]
fn copilot_cli_hooks_install_into_their_own_file_and_block_at_once() {
    let d = Daemon::start("hooks-copilot");
    let out = d.agentctl(&["hook", "copilot", "--install"]);
    assert!(out.status.success(), "{out:?}");
    let file = d.home.join(".copilot/hooks/agentd.json");
    let hooks: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(hooks["version"], 1);
    for event in [
        "notification",
        "UserPromptSubmit",
        "PostToolUse",
        "Stop",
        "SessionEnd",
    ] {
        let h = &hooks["hooks"][event][0];
        assert_eq!(h["type"], "command", "{event}: {h}");
        assert!(
            h["bash"].as_str().unwrap().ends_with("hook copilot"),
            "{event}: {h}"
        );
        assert_eq!(h["timeoutSec"], 5);
    }
    let again = d.agentctl(&["hook", "copilot", "--install"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already has"));

    let sid = "0c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f";
    append_lines(
        &d.home
            .join(".copilot/session-state")
            .join(sid)
            .join("events.jsonl"),
        &[
            json!({"type": "session.start", "data": {"sessionId": sid, "context": {"cwd": "/src/api"}},
                "id": "1", "timestamp": ago(3), "parentId": null}),
            json!({"type": "user.message", "data": {"content": "run the migrations"},
                "id": "2", "timestamp": ago(2), "parentId": null}),
        ],
    );
    let id = format!("copilot:{sid}");
    d.wait_item(&id, |v| v["status"] == "working");
    // The notification hook's payload is camelCase (`sessionId`).
    let asked = Instant::now();
    let out = run_hook(
        &d,
        &d.socket,
        "copilot",
        &json!({"sessionId": sid, "timestamp": 1784000000000u64, "cwd": "/src/api",
            "hook_event_name": "Notification", "title": "Permission needed",
            "message": "Copilot wants to run: make migrate", "notification_type": "permission_prompt"}),
    );
    assert_eq!(out.status.code(), Some(0));
    let v = d.wait_item(&id, |v| v["status"] == "blocked");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(v["status_detail"], "Copilot wants to run: make migrate");
    assert_eq!(v["status_source"], "hook");
    let out = run_hook(
        &d,
        &d.socket,
        "copilot",
        &json!({"session_id": sid, "hook_event_name": "Stop", "timestamp": ago(0),
            "cwd": "/src/api", "transcript_path": "", "stop_reason": "end_turn"}),
    );
    assert_eq!(out.status.code(), Some(0));
    d.wait_item(&id, |v| v["status"] == "success");
    // Kimi has no hooks agentd reads: the route says which agents have.
    let r = d.req("POST", "/v1/hooks/kimi", b"{}");
    assert_eq!(r.status, 404);
    assert!(
        String::from_utf8_lossy(&r.body).contains("copilot"),
        "{r:?}"
    );
}
