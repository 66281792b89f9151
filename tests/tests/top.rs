//! `agentctl top` in a real terminal: tmux runs it against a real agentd; the test types with
//! `send-keys` and reads the screen with `capture-pane`.
//!
//! tmux is installed by `.ci/run` (which sets `AGENTD_REQUIRE_TMUX=1`, so a missing tmux fails
//! there); elsewhere these tests are skipped with a note when tmux is absent.

use agentd_tests::{Daemon, ago, bin, rec};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn have_tmux() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("AGENTD_REQUIRE_TMUX").is_none(),
            "tmux is required (AGENTD_REQUIRE_TMUX is set) but not installed"
        );
        eprintln!("tmux is not installed: skipped");
    }
    ok
}

/// A tmux server of its own running `agentctl top` in one pane.
struct Tmux {
    server: String,
}

impl Tmux {
    fn start(d: &Daemon, name: &str, size: (u16, u16), lang: &str, extra: &str) -> Tmux {
        let server = format!("agentd-top-{}-{name}", std::process::id());
        let script = format!(
            "echo BEFORE-TOP; env -i HOME={home} PATH={path} AGENTD_SOCKET={sock} LANG={lang} TERM=screen-256color TZ=UTC {extra} {ctl} top; echo TOP-EXIT=$?; sleep 600",
            home = d.home.display(),
            path = std::env::var("PATH").unwrap_or_default(),
            sock = d.socket.display(),
            ctl = bin("agentctl").display(),
        );
        let status = Command::new("tmux")
            .args(["-L", &server, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", &size.0.to_string(), "-y", &size.1.to_string()])
            .args(["-s", "top", "sh", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success());
        Tmux { server }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.server, "capture-pane", "-p", "-t", "top"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types keys (tmux key names: `Enter`, `Tab`, `Escape`, or text), each on its own so that
    /// an Escape is not read as the start of an Alt-key.
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let status = Command::new("tmux")
                .args(["-L", &self.server, "send-keys", "-t", "top", k])
                .status()
                .unwrap();
            assert!(status.success());
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// The pid of `agentctl top`: the child of the pane's shell.
    fn top_pid(&self) -> u32 {
        let out = Command::new("tmux")
            .args([
                "-L",
                &self.server,
                "display",
                "-p",
                "-t",
                "top",
                "#{pane_pid}",
            ])
            .output()
            .unwrap();
        let shell: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    let rest: Vec<&str> =
                        s[s.rfind(')').unwrap() + 1..].split_whitespace().collect();
                    rest.get(1) == Some(&shell.to_string().as_str())
                        && std::fs::read(format!("/proc/{pid}/cmdline"))
                            .is_ok_and(|c| c.ends_with(b"top\0"))
                })
            })
            .expect("agentctl top's pid")
    }

    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .status();
    }
}

/// Runs of several kinds, statuses and creators.
fn fixtures(d: &Daemon) {
    d.write_run(
        "mine1",
        &[
            rec(json!({"type": "start", "ts": ago(600), "title": "fix the flaky login test", "harness": "claude-code"})),
            rec(json!({"type": "output", "ts": ago(590), "stream": "stdout", "data": "running the login suite\n"})),
            rec(json!({"type": "usage", "ts": ago(580), "input_tokens": 100, "cost_usd": 0.42})),
        ],
    );
    d.write_run(
        "bob1",
        &[
            rec(json!({"type": "start", "ts": ago(300), "title": "migrate the database", "creator": "bob", "harness": "codex"})),
            rec(json!({"type": "status", "ts": ago(200), "status": "blocked", "detail": "waiting for approval: Bash"})),
        ],
    );
    d.write_run(
        "night",
        &[
            rec(json!({"type": "start", "ts": ago(4000), "title": "nightly dependency bump", "source": "scheduled"})),
            rec(json!({"type": "end", "ts": ago(3800), "status": "failed", "error": "tests failed"})),
        ],
    );
    for id in ["cli:mine1", "cli:bob1", "cli:night"] {
        d.wait_item(id, |_| true);
    }
}

#[test]
fn top_shows_filters_follows_inspects_stops_and_restores_the_screen() {
    if !have_tmux() {
        return;
    }
    let d = Daemon::start("top-main");
    fixtures(&d);
    let t = Tmux::start(&d, "main", (100, 24), "C.UTF-8", "");
    // Personal tab: my runs and the summary.
    let s = t.wait("the list", |s| s.contains("fix the flaky login test"));
    assert!(s.contains("[Personal]"), "{s}");
    assert!(s.contains("nightly dependency bump"), "{s}");
    assert!(
        !s.contains("migrate the database"),
        "bob's run is not mine:\n{s}"
    );
    assert!(s.contains("⚙ 1 working"), "{s}");
    assert!(s.contains("$0.42"), "{s}");
    // All tab: bob's blocked run, with its detail.
    t.keys(&["Tab"]);
    let s = t.wait("the All tab", |s| s.contains("migrate the database"));
    assert!(s.contains("[All]"), "{s}");
    assert!(s.contains("🟨 blocked"), "{s}");
    assert!(s.contains("(waiting for"), "{s}");
    // A filter: status menu, failed only.
    t.keys(&["s", "Down", "Down", "Space", "Enter"]);
    let s = t.wait("the failed filter", |s| s.contains("status=failed"));
    assert!(s.contains("nightly dependency bump"), "{s}");
    assert!(!s.contains("migrate the database"), "{s}");
    t.keys(&["x"]);
    t.wait("filters cleared", |s| s.contains("migrate the database"));
    // A live change, without a key.
    d.append_run(
        "bob1",
        format!(
            "{}\n",
            rec(json!({"type": "end", "ts": ago(0), "status": "success"}))
        )
        .as_bytes(),
    );
    t.wait("bob's run to finish on screen", |s| {
        s.lines()
            .any(|l| l.contains("migrate the database") && l.contains("success"))
    });
    // Enter inspects: fields and a log line.
    t.keys(&["/"]);
    for c in "login".chars() {
        t.keys(&[&c.to_string()]);
    }
    t.keys(&["Enter"]);
    t.wait("the search", |s| s.contains("q=\"login\""));
    t.keys(&["Enter"]);
    let s = t.wait("the log line", |s| s.contains("running the login suite"));
    assert!(s.contains("cli:mine1"), "{s}");
    t.keys(&["Escape"]);
    t.wait("the list again", |s| s.contains("STATUS"));
    t.keys(&["x"]);

    // k + y stops a real run.
    let mut run = d
        .agentctl_command()
        .args(["run", "--title", "long sleeper", "--", "sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    t.wait("the new run, live", |s| s.contains("long sleeper"));
    t.keys(&["Home"]);
    let s = t.screen();
    let first_row = s.lines().nth(3).unwrap_or("").to_owned();
    assert!(first_row.contains("long sleeper"), "{s}");
    t.keys(&["k"]);
    t.wait("the confirmation", |s| s.contains("? y/n"));
    t.keys(&["y"]);
    t.wait("the run canceled", |s| {
        s.lines()
            .any(|l| l.contains("long sleeper") && l.contains("canceled"))
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while run.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the run is still going");
        std::thread::sleep(Duration::from_millis(50));
    }
    // q leaves and restores the screen as it was.
    t.keys(&["q"]);
    let s = t.wait("the shell screen", |s| s.contains("TOP-EXIT=0"));
    assert!(s.contains("BEFORE-TOP"), "{s}");
    assert!(!s.contains("STATUS"), "{s}");
}

#[test]
fn top_fits_40_columns_and_80x24_without_utf8_or_colour_and_survives_a_restart() {
    if !have_tmux() {
        return;
    }
    let mut d = Daemon::start("top-small");
    fixtures(&d);
    let t = Tmux::start(&d, "narrow", (40, 12), "C", "NO_COLOR=1");
    let s = t.wait("the list", |s| s.contains("fix the flaky"));
    for line in s.lines() {
        assert!(
            unicode_width::UnicodeWidthStr::width(line) <= 40,
            "a line wider than the screen: {line:?}"
        );
    }
    assert!(s.contains("STATUS") && s.contains("TITLE"), "{s}");
    assert!(s.contains("* 1 working"), "ASCII icons:\n{s}");
    assert!(!s.contains('⚙'), "{s}");
    let t80 = Tmux::start(&d, "eighty", (80, 24), "C.UTF-8", "");
    let s = t80.wait("the list", |s| s.contains("fix the flaky"));
    for head in ["STATUS", "SOURCE", "TITLE", "COST"] {
        assert!(s.contains(head), "{head} at 80 columns:\n{s}");
    }
    // agentd goes away: top says so; it comes back: top reconnects by itself.
    assert_eq!(d.stop().code(), Some(0));
    t80.wait("the offline notice", |s| s.contains("not reachable"));
    d.spawn();
    d.write_run(
        "later",
        &[rec(
            json!({"type": "start", "ts": ago(0), "title": "after the restart"}),
        )],
    );
    t80.wait("the reconnect", |s| {
        s.contains("after the restart") && !s.contains("not reachable")
    });
    // SIGTERM (a closed terminal, a logout) leaves cleanly: the screen is restored.
    // SAFETY: signalling the test's own child process tree.
    unsafe { libc::kill(t80.top_pid() as i32, libc::SIGTERM) };
    let s = t80.wait("the shell screen", |s| s.contains("TOP-EXIT=0"));
    assert!(s.contains("BEFORE-TOP") && !s.contains("STATUS"), "{s}");
}
