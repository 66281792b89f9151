//! `agentctl` without a daemon, run as a real process: it says where it looked and how to start
//! agentd (exit 3), the prompt stays silent (exit 0), usage errors exit 2. (Also makes
//! `cargo test` build the binary that the black-box suite in `tests/` drives.)

use std::process::Command;

fn agentctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agentctl"))
        .args(args)
        .env_clear()
        .env("AGENTD_SOCKET", "/nonexistent/agentd/agentd.sock")
        .output()
        .unwrap()
}

#[test]
fn daemon_down_names_the_socket_and_exits_3() {
    for cmd in [&["ls"][..], &["summary"], &["show", "x"], &["logs", "x"]] {
        let out = agentctl(cmd);
        assert_eq!(out.status.code(), Some(3), "{cmd:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("/nonexistent/agentd/agentd.sock") && err.contains("agentd"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn prompt_is_silent_when_the_daemon_is_down() {
    for args in [
        &["prompt"][..],
        &["prompt", "--format", "{active}"],
        &["prompt", "--bogus"],
    ] {
        let out = agentctl(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{args:?}: {out:?}"
        );
    }
}

#[test]
fn prompt_gives_up_on_a_daemon_that_never_answers() {
    let dir = std::env::temp_dir().join(format!("agentctl-mute-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("mute.sock");
    let _ = std::fs::remove_file(&sock);
    // Bound and listening (connects succeed into the backlog), never accepting or answering.
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_agentctl"))
        .args(["prompt"])
        .env_clear()
        .env("AGENTD_SOCKET", &sock)
        .output()
        .unwrap();
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    // The budget is 10 ms; process start-up is extra. Far below a second either way.
    assert!(
        took < std::time::Duration::from_millis(500),
        "prompt took {took:?}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(agentctl(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(agentctl(&["ls", "-n", "0"]).status.code(), Some(2));
    assert_eq!(agentctl(&["show"]).status.code(), Some(2));
}
