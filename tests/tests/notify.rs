//! Desktop notifications, with a fake notifier command that records what it was asked to show.

use agentd_tests::{Daemon, Options, ago, rec};
use serde_json::json;
use std::time::{Duration, Instant};

fn notifications(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn wait_lines(file: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + agentd_tests::WAIT;
    loop {
        let lines = notifications(file);
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon whose notifier is a script that records what it was asked to show in the returned
/// file; `settings` are more `[notify]` lines.
fn with_notifier(name: &str, settings: &str) -> (Daemon, std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("agentd-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("shown.txt");
    let notifier = dir.join("notifier.sh");
    std::fs::write(
        &notifier,
        format!(
            "#!/bin/sh\nprintf '%s|%s\\n' \"$1\" \"$2\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &notifier,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[notify]\nenabled = true\ncommand = [\"{}\"]\n{settings}",
            notifier.display()
        ),
    )
    .unwrap();
    let d = Daemon::start_with(
        name,
        Options {
            env: vec![("AGENTD_CONFIG".into(), config.display().to_string())],
            ..Options::default()
        },
    );
    (d, log, dir)
}

#[test]
fn blocked_and_failed_agents_notify_fresh_changes_only_and_rate_limited() {
    let (d, log, dir) = with_notifier("notify", "min_interval_secs = 2\n");
    let start = |title: &str, at: i64| {
        rec(json!({"type": "start", "ts": ago(at), "title": title, "harness": "claude-code"}))
    };
    // History (a change from 10 minutes ago) is not news.
    d.write_run(
        "old",
        &[
            start("old one", 700),
            rec(json!({"type": "status", "ts": ago(600), "status": "blocked"})),
        ],
    );
    d.wait_item("cli:old", |v| v["status"] == "blocked");
    d.write_run(
        "deploy",
        &[
            start("deploy", 2),
            rec(json!({"type": "status", "ts": ago(0), "status": "blocked", "detail": "approve the migration?"})),
        ],
    );
    let lines = wait_lines(&log, 1);
    assert_eq!(
        lines,
        ["claude-code is waiting for you|deploy: approve the migration?"]
    );
    // Within the interval: held back, then mentioned with the next one.
    d.write_run(
        "second",
        &[
            start("second", 1),
            rec(json!({"type": "end", "ts": ago(0), "status": "failed", "error": "tests failed"})),
        ],
    );
    d.wait_item("cli:second", |v| v["status"] == "failed");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(notifications(&log).len(), 1, "rate-limited");
    std::thread::sleep(Duration::from_millis(2000));
    d.write_run(
        "third",
        &[
            start("third", 1),
            rec(
                json!({"type": "end", "ts": ago(0), "status": "failed", "error": "out of credits"}),
            ),
        ],
    );
    let lines = wait_lines(&log, 2);
    assert_eq!(
        lines[1],
        "claude-code failed|third: out of credits (and 1 more)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_agent_still_blocked_is_reminded_of_until_it_moves_on() {
    let (d, log, dir) = with_notifier(
        "notify-remind",
        "min_interval_secs = 1\nremind_after_secs = 1\n",
    );
    // An old wait (history) is never reminded of.
    d.write_run(
        "old",
        &[
            rec(json!({"type": "start", "ts": ago(700), "title": "old one", "harness": "codex"})),
            rec(json!({"type": "status", "ts": ago(600), "status": "blocked"})),
        ],
    );
    d.wait_item("cli:old", |v| v["status"] == "blocked");
    d.write_run(
        "ask",
        &[
            rec(json!({"type": "start", "ts": ago(2), "title": "migrate", "harness": "codex"})),
            rec(json!({"type": "status", "ts": ago(0), "status": "blocked", "detail": "approve?"})),
        ],
    );
    let lines = wait_lines(&log, 2);
    assert_eq!(
        lines[..2],
        [
            "codex is waiting for you|migrate: approve?".to_owned(),
            "codex is still waiting for you|migrate: approve?".to_owned()
        ]
    );
    // Answered: no more reminders.
    d.append_run(
        "ask",
        format!(
            "{}\n",
            rec(json!({"type": "status", "ts": ago(0), "status": "working"}))
        )
        .as_bytes(),
    );
    d.wait_item("cli:ask", |v| v["status"] == "working");
    let settled = notifications(&log).len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        notifications(&log).len(),
        settled,
        "{:?}",
        notifications(&log)
    );
    assert!(notifications(&log).iter().all(|l| !l.contains("old one")));
    let _ = std::fs::remove_dir_all(&dir);
}
