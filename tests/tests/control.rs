//! Acting on agents through the real binaries: stopping runs (and everything they started),
//! refusing what must not be signalled, cloud cancels against the fake Oz API, Claude Code
//! conversations, and `agentctl wait`.

use agentd_tests::oz::{FakeOz, KEY, cloud_daemon, run};
use agentd_tests::{Daemon, ago, now_ms, rec};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Starts `agentctl run -- CMD…` against `d`, without a controlling terminal (as under cron or
/// CI, so that the command gets a process group of its own), and returns it with its run's id,
/// once working.
fn start_run(d: &Daemon, title: &str, cmd: &[&str]) -> (Child, String) {
    let mut command = d.agentctl_command();
    command
        .args(["run", "--title", title, "--"])
        .args(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid in the child before exec; async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    let page = d.wait_for(&format!("/v1/agents?tab=all&q={title}"), "the run", |p| {
        p["items"][0]["status"] == "working"
    });
    (child, page["items"][0]["id"].as_str().unwrap().to_owned())
}

/// The run's `pgid`, from its start record.
fn pgid_of(d: &Daemon, id: &str) -> u32 {
    let stem = id.strip_prefix("cli:").unwrap();
    let text = std::fs::read_to_string(d.runs.join(format!("{stem}.jsonl"))).unwrap();
    let start: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    start["pgid"].as_u64().expect("a pgid in the start record") as u32
}

/// Live (non-zombie) processes in group `pgid`.
fn group(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .collect();
            rest[0] != "Z" && rest[2] == pgid.to_string()
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s[s.rfind(')').unwrap() + 1..].trim_start().starts_with('Z'))
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "still running after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cancel(d: &Daemon, id: &str, query: &str) -> agentd_tests::Resp {
    d.req("POST", &format!("/v1/agents/{id}/cancel{query}"), b"")
}

#[test]
fn a_run_stopped_through_the_api_is_canceled_with_its_whole_process_group() {
    let d = Daemon::start("stop-api");
    // The background sleep ignores SIGINT (a non-interactive shell's background job): only
    // the SIGTERM that follows 5 s later, sent to the group, ends it.
    let (mut child, id) = start_run(&d, "sleeper", &["sh", "-c", "sleep 60 & sleep 60; wait"]);
    let pgid = pgid_of(&d, &id);
    assert!(group(pgid).len() >= 2, "{:?}", group(pgid));
    let started = Instant::now();
    let r = cancel(&d, &id, "");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json(), json!({"cancel": "requested"}));
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(!status.success());
    let v = d.wait_item(&id, |v| v["status"] == "canceled");
    assert_eq!(v["status_detail"], "stopped from agentd");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !group(pgid).is_empty() {
        assert!(Instant::now() < deadline, "left: {:?}", group(pgid));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // Once finished, a second request is refused as such.
    let r = cancel(&d, &id, "");
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"]["code"], "already_finished");
}

#[test]
fn agentctl_stop_interrupts_at_once_and_force_kills_what_ignores_signals() {
    let d = Daemon::start("stop-cli");
    let (mut child, id) = start_run(&d, "plain", &["sleep", "60"]);
    let out = d.agentctl(&["stop", &id]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    // SIGINT ends a sleep at once: well within the 5 s before SIGTERM.
    let status = wait_exit(&mut child, Duration::from_secs(3));
    assert_eq!(status.code(), Some(130));
    d.wait_item(&id, |v| v["status"] == "canceled");

    let (mut child, id) = start_run(
        &d,
        "stubborn",
        &["sh", "-c", "trap '' INT TERM; sleep 60 & wait"],
    );
    let pgid = pgid_of(&d, &id);
    let started = Instant::now();
    let out = d.agentctl(&["stop", "--force", &id]);
    assert!(out.status.success(), "{out:?}");
    wait_exit(&mut child, Duration::from_secs(3));
    assert!(started.elapsed() < Duration::from_secs(3));
    let v = d.wait_item(&id, |v| v["status"] == "canceled");
    assert_eq!(v["status_detail"], "stopped from agentd");
    assert!(group(pgid).is_empty(), "{:?}", group(pgid));
    // Unknown ids exit 4; a finished run is refused with its reason, exit 1.
    assert_eq!(d.agentctl(&["stop", "cli:nosuch"]).status.code(), Some(4));
    let out = d.agentctl(&["stop", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already finished"));
}

#[test]
fn a_reused_pid_and_another_users_process_are_never_signalled() {
    let d = Daemon::start("stop-refused");
    // The run log names a pid that now belongs to a process started long after the run.
    let mut stranger = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    d.write_run(
        "old",
        &[rec(
            json!({"type": "start", "ts": ago(120), "title": "old", "pid": stranger.id()}),
        )],
    );
    // Its writer is known to be gone (the pid's process is too young to have written it): the
    // run is failed, and a stop is refused without signalling anything. (The same start-time
    // check guards the signals themselves; `control`'s unit tests cover it directly.)
    d.wait_item("cli:old", |v| v["status"] == "failed");
    let r = cancel(&d, "cli:old", "?force=true");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "already_finished");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the stranger was signalled"
    );
    let _ = stranger.kill();

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut other = std::process::Command::new("sleep");
        other.arg("60");
        // SAFETY: setgid/setuid in the child before exec; async-signal-safe.
        unsafe {
            other.pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut other = other.spawn().unwrap();
        d.write_run(
            "theirs",
            &[rec(
                json!({"type": "start", "ts": ago(0), "title": "theirs", "pid": other.id()}),
            )],
        );
        d.wait_item("cli:theirs", |v| v["status"] == "working");
        let r = cancel(&d, "cli:theirs", "?force=true");
        assert_eq!(r.status, 409, "{}", r.text());
        assert!(r.text().contains("another user"), "{}", r.text());
        assert!(alive(other.id()));
        let _ = other.kill();
        let _ = other.wait();
    } else {
        eprintln!("not root: the other-user case is skipped");
    }
    // A run log without a pid cannot be stopped from here; neither can a Codex conversation.
    d.write_run(
        "nopid",
        &[rec(
            json!({"type": "start", "ts": ago(0), "title": "nopid"}),
        )],
    );
    d.wait_item("cli:nopid", |_| true);
    let r = cancel(&d, "cli:nopid", "");
    assert_eq!(r.status, 409);
    assert!(r.text().contains("names no process"), "{}", r.text());
    assert_eq!(cancel(&d, "cli:nosuch", "").status, 404);
    assert_eq!(cancel(&d, "cli:nopid", "?force=maybe").status, 400);
}

/// This process's start time, epoch ms, from /proc (as Claude Code's registry records it).
fn started_ms(pid: u32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    let ticks: i64 = rest[19].parse().unwrap();
    let btime: i64 = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as i64;
    btime * 1000 + ticks * 1000 / hz
}

#[test]
fn a_claude_code_conversation_is_interrupted_only_when_confirmed() {
    let d = Daemon::start("stop-claude");
    let session = "5f2e0c1a-7b7e-4c1e-9d2a-0c9f1e2d3b4a";
    let transcript = d
        .home
        .join(".claude/projects/-src-app")
        .join(format!("{session}.jsonl"));
    std::fs::create_dir_all(transcript.parent().unwrap()).unwrap();
    let prompt = json!({"type": "user", "timestamp": ago(1), "sessionId": session,
        "cwd": "/src/app", "isSidechain": false, "uuid": "u1",
        "message": {"role": "user", "content": "refactor the parser"}});
    std::fs::write(&transcript, format!("{prompt}\n")).unwrap();
    let id = format!("claude-code:{session}");
    d.wait_item(&id, |v| v["status"] == "working");
    // No live process known: refused, naming the resume command.
    let r = cancel(&d, &id, "?force=true");
    assert_eq!(r.status, 409);
    assert!(r.text().contains("claude --resume"), "{}", r.text());

    // A stand-in for the CLI, registered as Claude Code registers itself.
    let mut cli = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let sessions = d.home.join(".claude/sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    std::fs::write(
        sessions.join(format!("{}.json", cli.id())),
        json!({"pid": cli.id(), "sessionId": session, "cwd": "/src/app",
            "startedAt": started_ms(cli.id()), "kind": "interactive", "status": "busy",
            "statusUpdatedAt": now_ms()})
        .to_string(),
    )
    .unwrap();
    let r = cancel(&d, &id, "");
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"]["code"], "not_cancelable");
    assert!(r.text().contains("confirm"), "{}", r.text());
    assert!(cli.try_wait().unwrap().is_none());
    let out = d.agentctl(&["stop", "--force", &id]);
    assert!(out.status.success(), "{out:?}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        wait_exit(&mut cli, Duration::from_secs(3)).signal(),
        Some(libc::SIGINT)
    );
}

#[test]
fn cloud_runs_are_canceled_through_oz_with_each_of_its_answers_mapped() {
    let oz = FakeOz::start(KEY);
    {
        let mut st = oz.lock();
        let now = agentd_tests::format_ms(now_ms());
        st.runs = vec![
            run("r-live", "INPROGRESS", "SLACK", "u-me", &now),
            run("r-done", "INPROGRESS", "API", "u-me", &now),
            run("r-pending", "INPROGRESS", "API", "u-me", &now),
            run("r-gha", "INPROGRESS", "GITHUB_ACTION", "u-me", &now),
            run("r-down", "INPROGRESS", "API", "u-me", &now),
        ];
    }
    let d = cloud_daemon("stop-cloud", &oz, KEY);
    for r in ["r-live", "r-done", "r-pending", "r-gha", "r-down"] {
        d.wait_item(&format!("cloud:{r}"), |v| v["status"] == "working");
    }
    assert_eq!(
        d.get("/v1/agents/cloud:r-live")["status_source"],
        "cloud_api"
    );
    // Accepted: the row turns canceled right after (the cancel syncs).
    let r = cancel(&d, "cloud:r-live", "");
    assert_eq!(r.status, 202, "{}", r.text());
    d.wait_item("cloud:r-live", |v| v["status"] == "canceled");
    assert!(
        oz.lock()
            .requests
            .iter()
            .any(|r| r == "POST /agent/runs/r-live/cancel")
    );
    // Finished on Oz's side (not yet synced here): 400 → already_finished.
    {
        let mut st = oz.lock();
        let done = st
            .runs
            .iter_mut()
            .find(|r| r["run_id"] == "r-done")
            .unwrap();
        done["state"] = json!("SUCCEEDED");
    }
    let r = cancel(&d, "cloud:r-done", "");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "already_finished");
    // PENDING: 409 from Oz, retried until it is accepted.
    {
        let mut st = oz.lock();
        let p = st
            .runs
            .iter_mut()
            .find(|r| r["run_id"] == "r-pending")
            .unwrap();
        p["state"] = json!("PENDING");
    }
    let flip = {
        let state = oz.state.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1200));
            let mut st = state.lock().unwrap();
            let p = st
                .runs
                .iter_mut()
                .find(|r| r["run_id"] == "r-pending")
                .unwrap();
            p["state"] = json!("INPROGRESS");
        })
    };
    let r = cancel(&d, "cloud:r-pending", "");
    flip.join().unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let tries = oz
        .lock()
        .requests
        .iter()
        .filter(|r| *r == "POST /agent/runs/r-pending/cancel")
        .count();
    assert!(tries >= 2, "{tries}");
    // GitHub Actions: 422 → not_cancelable with Oz's reason.
    let r = cancel(&d, "cloud:r-gha", "");
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"]["code"], "not_cancelable");
    assert!(r.text().contains("GitHub Action"), "{}", r.text());
    // A failing API: 502 upstream; nothing changes.
    oz.lock().cancel_faults.push_back(503);
    let r = cancel(&d, "cloud:r-down", "");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream");
    assert_eq!(d.get("/v1/agents/cloud:r-down")["status"], "working");
}

#[test]
fn wait_returns_when_the_condition_holds_and_survives_a_restart() {
    let mut d = Daemon::start("wait");
    d.write_run(
        "a",
        &[rec(
            json!({"type": "start", "ts": ago(5), "title": "a", "harness": "codex"}),
        )],
    );
    d.write_run(
        "b",
        &[rec(json!({"type": "start", "ts": ago(5), "title": "b"}))],
    );
    d.wait_item("cli:a", |_| true);
    d.wait_item("cli:b", |_| true);
    // Already true at start: at once.
    let out = d.agentctl(&["wait", "cli:a", "--until", "active", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["id"], "cli:a");
    // Timeout: 124.
    let started = Instant::now();
    let out = d.agentctl(&["wait", "cli:a", "--until", "blocked", "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Unknown id: 4.
    assert_eq!(d.agentctl(&["wait", "cli:zzz"]).status.code(), Some(4));

    let spawn_wait = |args: &[&str]| {
        d.agentctl_command()
            .arg("wait")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Blocked, by filter: the first codex agent that turns blocked.
    let blocked = spawn_wait(&[
        "--harness",
        "codex",
        "--until",
        "blocked",
        "--timeout",
        "20s",
    ]);
    // All finished: a and b.
    let all = spawn_wait(&["cli:a", "cli:b", "--all", "--timeout", "30s"]);
    std::thread::sleep(Duration::from_millis(500));
    d.append_run(
        "a",
        format!(
            "{}\n",
            rec(json!({"type": "status", "ts": ago(0), "status": "blocked", "detail": "approve?"}))
        )
        .as_bytes(),
    );
    let out = blocked.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cli:a"),
        "{out:?}"
    );
    // agentd restarts while `wait --all` waits; the runs end while it is down.
    assert_eq!(d.stop().code(), Some(0));
    for r in ["a", "b"] {
        d.append_run(
            r,
            format!(
                "{}\n",
                rec(json!({"type": "end", "ts": ago(0), "status": "success"}))
            )
            .as_bytes(),
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    d.spawn();
    let out = all.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cli:a") && text.contains("cli:b"), "{text}");
    // Unreachable at the start: 3.
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(d.agentctl(&["wait", "cli:a"]).status.code(), Some(3));
}
