//! The real `agentctl` against a real daemon: the table, filters, `--json`, id prefixes, exit
//! codes, the prompt line and the other commands.

use agentd_tests::{Daemon, ago, rec};
use serde_json::{Value, json};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `agentctl ARGS` for a prompt line: the prompt prints nothing when its 10 ms budget runs out
/// (a loaded test machine), so an empty answer is asked again; what is printed must be exact.
fn prompt_line(d: &Daemon, args: &[&str]) -> String {
    for _ in 0..50 {
        let out = stdout(&d.agentctl(args));
        if !out.is_empty() {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    String::new()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn load(d: &Daemon) {
    d.write_run(
        "7f3a9c21-mine",
        &[
            rec(json!({"type": "start", "ts": ago(120), "title": "fix the flaky login test", "harness": "claude-code"})),
            rec(json!({"type": "usage", "ts": ago(110), "cost_usd": 0.4213})),
            rec(json!({"type": "output", "ts": ago(100), "data": "all green\n"})),
        ],
    );
    d.write_run(
        "7f3b0000-bob",
        &[
            rec(json!({"type": "start", "ts": ago(60), "title": "nightly dependency bump", "creator": "bob", "source": "scheduled"})),
            rec(json!({"type": "status", "ts": ago(50), "status": "blocked", "detail": "waiting for approval"})),
        ],
    );
    d.wait_for("/v1/summary?tab=all", "both runs", |v| v["active"] == 2);
}

#[test]
fn ls_shows_a_scannable_table_and_json() {
    let d = Daemon::start("ctl-ls");
    load(&d);
    let out = d.agentctl(&["ls"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("STATUS") && lines[0].contains("TITLE") && lines[0].contains("COST"),
        "{text}"
    );
    for part in [
        "⚙ working",
        "cli",
        "fix the flaky login test",
        "alice",
        "2m ago",
        "$0.42",
        "cli:7f3a9c21",
    ] {
        assert!(
            lines[1].contains(part),
            "{part:?} missing from {:?}",
            lines[1]
        );
    }

    let text = stdout(&d.agentctl(&["ls", "--all"]));
    assert!(
        text.contains("🟨 blocked") && text.contains("scheduled") && text.contains("bob"),
        "{text}"
    );
    assert!(
        text.contains("(waiting for approval)"),
        "a blocked row says why: {text}"
    );

    let text = stdout(&d.agentctl(&["ls", "--all", "--status", "blocked"]));
    assert!(
        text.contains("nightly") && !text.contains("flaky"),
        "{text}"
    );
    let text = stdout(&d.agentctl(&["ls", "--all", "--creator", "alice", "-q", "LOGIN"]));
    assert!(
        text.contains("flaky") && !text.contains("nightly"),
        "{text}"
    );
    let text = stdout(&d.agentctl(&["ls", "--source", "api"]));
    assert!(text.contains("No agents"), "{text}");

    let json_out: Value =
        serde_json::from_slice(&d.agentctl(&["ls", "--all", "--json"]).stdout).unwrap();
    let api = d.get("/v1/agents?tab=all");
    let ids = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&json_out), ids(&api));
    assert_eq!(json_out["items"][1]["cost_usd"], 0.4213);

    // Titles are cut to the terminal width.
    let narrow = std::process::Command::new(agentd_tests::bin("agentctl"))
        .args(["ls", "--all"])
        .env("AGENTD_SOCKET", &d.socket)
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    for line in stdout(&narrow).lines() {
        assert!(unicode_width(line) <= 80, "{line:?} is wider than 80");
    }
    assert!(stdout(&narrow).contains('…'));

    let bad = d.agentctl(&["ls", "--status", "done"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("status") && stderr(&bad).contains("working"),
        "{}",
        stderr(&bad)
    );
}

/// Terminal columns of a line (the icons in this table are 1 or 2 columns wide).
fn unicode_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            if ['🟨', '🔺', '✅', '⬜'].contains(&c) {
                2
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn open_never_lets_a_file_name_reach_the_shell() {
    let d = Daemon::start("ctl-inject");
    let name = "x;touch PWNED";
    d.write_run(name, &[rec(json!({"type": "start", "ts": ago(1)}))]);
    d.wait_item("cli:x;touch%20PWNED", |_| true);
    let out = d.agentctl(&["open", "x;touch", "--print"]);
    assert_eq!(
        stdout(&out),
        "agentctl logs 'cli:x;touch PWNED'\n",
        "{}",
        stderr(&out)
    );
    // Running it (sh -c) in a scratch dir creates nothing there.
    let cwd = agentd_tests::Scratch::new("inject-cwd");
    let _ = std::process::Command::new(agentd_tests::bin("agentctl"))
        .args(["open", "x;touch"])
        .env("AGENTD_SOCKET", &d.socket)
        .env("PATH", agentd_tests::bin("agentctl").parent().unwrap())
        .current_dir(&cwd.0)
        .output()
        .unwrap();
    assert!(!cwd.0.join("PWNED").exists());
}

#[test]
fn show_resolves_prefixes_and_exit_codes() {
    let d = Daemon::start("ctl-show");
    load(&d);
    let out = d.agentctl(&["show", "7f3a"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("cli:7f3a9c21-mine")
            && text.contains("fix the flaky login test")
            && text.contains("claude-code"),
        "{text}"
    );

    let v: Value =
        serde_json::from_slice(&d.agentctl(&["show", "cli:7f3b", "--json"]).stdout).unwrap();
    assert_eq!(v, {
        let mut api = d.get("/v1/agents/cli:7f3b0000-bob");
        api["duration_ms"] = v["duration_ms"].clone(); // a working run's time so far moves
        api["blocked_ms"] = v["blocked_ms"].clone(); // and so does a blocked one's current wait
        api
    });

    let amb = d.agentctl(&["show", "7f3"]);
    assert_eq!(amb.status.code(), Some(1));
    assert!(
        stderr(&amb).contains("cli:7f3a9c21-mine") && stderr(&amb).contains("cli:7f3b0000-bob")
    );
    let missing = d.agentctl(&["show", "nope"]);
    assert_eq!(missing.status.code(), Some(4));
    assert!(stderr(&missing).contains("nope"));
}

#[test]
fn summary_prompt_logs_open_sync_web() {
    let d = Daemon::start("ctl-misc");
    assert_eq!(
        stdout(&d.agentctl(&["prompt"])),
        "",
        "nothing active: empty"
    );
    load(&d);
    assert_eq!(prompt_line(&d, &["prompt"]), "⚙1\n");
    assert_eq!(prompt_line(&d, &["prompt", "--all"]), "⚙1 🟨1\n");
    assert_eq!(
        prompt_line(
            &d,
            &[
                "prompt",
                "--format",
                "{active} active, {blocked} blocked, {cost_today}"
            ]
        ),
        "1 active, 0 blocked, $0.42\n"
    );

    let s: Value =
        serde_json::from_slice(&d.agentctl(&["summary", "--all", "--json"]).stdout).unwrap();
    assert_eq!(s, d.get("/v1/summary?tab=all"));
    let text = stdout(&d.agentctl(&["summary"]));
    assert!(
        text.contains("working  1") && text.contains("blocked  0"),
        "{text}"
    );

    assert_eq!(stdout(&d.agentctl(&["logs", "7f3a"])), "all green\n");
    assert_eq!(
        stdout(&d.agentctl(&["open", "7f3a", "--print"])),
        "agentctl logs cli:7f3a9c21-mine\n"
    );
    assert_eq!(stdout(&d.agentctl(&["sync"])), "synced 0\n");

    // Global flags may come first; the prompt still never fails.
    let sock = d.socket.to_str().unwrap().to_owned();
    let out = d.agentctl(&["--socket", &sock, "prompt"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        prompt_line(&d, &["--socket", &sock, "prompt"]),
        "⚙1\n",
        "{}",
        stderr(&out)
    );

    let url = stdout(&d.agentctl(&["web", "--print"]));
    assert_eq!(
        url.trim(),
        format!("http://{}/?token={}", d.http.as_deref().unwrap(), d.token())
    );
}
