//! Hostile files and clients: what is put where a transcript or run log belongs (a FIFO, a
//! device, links planted by another user), floods of idle connections, and edge values. Each
//! gets a clear refusal, and the daemon keeps serving and still stops on SIGTERM.

use agentd_tests::{Daemon, Options, exchange, rec, source_in};
use serde_json::{Value, json};
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

const SESSION: &str = "5f2e0c1a-7b7e-4c1e-9d2a-0c9f1e2d3b4a";

fn transcript(d: &Daemon) -> std::path::PathBuf {
    d.home
        .join(".claude/projects/-src-app")
        .join(format!("{SESSION}.jsonl"))
}

/// A finished Claude Code conversation, waited for.
fn conversation(d: &Daemon) -> String {
    let path = transcript(d);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let prompt = json!({"type": "user", "timestamp": agentd_tests::ago(5), "sessionId": SESSION,
        "cwd": "/src/app", "isSidechain": false, "uuid": "u1",
        "message": {"role": "user", "content": "fix it"}});
    std::fs::write(&path, format!("{prompt}\n")).unwrap();
    let id = format!("claude-code:{SESSION}");
    d.wait_item(&id, |_| true);
    id
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// `GET path` on the socket with a deadline: a request that hangs fails the test.
fn get_within(d: &Daemon, path: &str, limit: Duration) -> agentd_tests::Resp {
    let s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let r = exchange(s, "GET", path, &[], b"");
    assert!(
        started.elapsed() < limit,
        "{path} took {:?}",
        started.elapsed()
    );
    r
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn regression_a_fifo_in_place_of_a_transcript_neither_hangs_the_log_route_nor_shutdown() {
    let mut d = Daemon::start("hostile-fifo");
    let id = conversation(&d);
    let path = transcript(&d);
    std::fs::remove_file(&path).unwrap();
    mkfifo(&path);
    for _ in 0..20 {
        let r = get_within(&d, &format!("/v1/agents/{id}/log"), Duration::from_secs(5));
        assert_eq!(r.status, 404, "{}", r.text());
        assert!(
            r.text().contains("a FIFO, not a regular file"),
            "{}",
            r.text()
        );
    }
    assert_eq!(d.get("/v1/health")["status"], "ok");
    let started = Instant::now();
    assert_eq!(d.stop().code(), Some(0), "{}", d.log_text());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn regression_a_transcript_replaced_by_a_link_to_dev_zero_is_refused_without_reading_it() {
    let d = Daemon::start("hostile-zero");
    let id = conversation(&d);
    let path = transcript(&d);
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    let r = get_within(&d, &format!("/v1/agents/{id}/log"), Duration::from_secs(5));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("a device"), "{}", r.text());
    // The ingestor met the same link (its change event): counted, not read.
    let h = d.wait_for("/v1/health", "the refusal counted", |h| {
        source_in(h, "claude-code").is_some_and(|s| s["errors"].as_u64() > Some(0))
    });
    let claude = source_in(&h, "claude-code").unwrap();
    assert!(
        claude["last_error"].as_str().unwrap().contains("a device"),
        "{claude}"
    );
    assert!(rss_kib(d.pid()) < 200 * 1024, "{} KiB", rss_kib(d.pid()));
}

#[test]
fn a_fifo_and_a_huge_registry_file_in_a_store_are_counted_not_read() {
    let d = Daemon::start("hostile-store");
    let sessions = d.home.join(".claude/sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    mkfifo(&sessions.join("4242.json"));
    std::fs::write(sessions.join("4343.json"), vec![b' '; 2 << 20]).unwrap();
    let h = d.wait_for("/v1/health", "both refusals", |h| {
        source_in(h, "claude-code").is_some_and(|s| s["errors"].as_u64() >= Some(2))
    });
    let claude = source_in(&h, "claude-code").unwrap();
    assert!(
        claude["last_error"].as_str().unwrap().contains("not read"),
        "{claude}"
    );
    // Still ingesting.
    conversation(&d);
}

/// Makes `dir` belong to another user (a shared runs dir, mode 1777); needs root.
fn give_away(dir: &Path) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot make a dir owned by another user; skipped");
        return false;
    }
    std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    true
}

#[test]
fn links_planted_in_a_run_dir_owned_by_another_user_are_not_followed() {
    let mut d = Daemon::prepare("hostile-links", Options::default());
    let shared = d.dir.0.join("shared-runs");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(
        d.home.join("no-config.toml"),
        format!("[sources.runs]\ndirs = [{:?}]\n", shared.to_str().unwrap()),
    )
    .unwrap();
    // A private run log of this user, in its own runs dir.
    std::fs::create_dir_all(&d.runs).unwrap();
    d.write_run(
        "private",
        &[rec(
            json!({"type": "start", "ts": agentd_tests::ago(5), "title": "secret"}),
        )],
    );
    if !give_away(&shared) {
        return;
    }
    let private = d.runs.join("private.jsonl");
    std::os::unix::fs::symlink(&private, shared.join("planted.jsonl")).unwrap();
    std::fs::hard_link(&private, shared.join("hardlinked.jsonl")).unwrap();
    std::fs::write(
        shared.join("ours.jsonl"),
        format!(
            "{}\n",
            rec(json!({"type": "start", "ts": agentd_tests::ago(5), "title": "ok"}))
        ),
    )
    .unwrap();
    // In this user's own dir a link to this user's file is followed.
    std::os::unix::fs::symlink(&private, d.runs.join("alias.jsonl")).unwrap();
    d.spawn();
    d.wait_for("/v1/health", "the scan", |h| {
        source_in(h, "runs").is_some_and(|s| s["scan_done"] == true)
    });
    let page = d.get("/v1/agents?tab=all");
    let mut ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["cli:alias", "cli:ours", "cli:private"]);
    let runs = source_in(&d.get("/v1/health"), "runs").unwrap();
    assert_eq!(runs["errors"], 2, "{runs}");
    let log = d.log_text();
    assert!(
        log.contains("a symlink in a directory owned by another user"),
        "{log}"
    );
    assert!(
        log.contains("a hard-linked file in a directory owned by another user"),
        "{log}"
    );
}

#[test]
fn regression_a_flood_of_idle_tcp_connections_delays_the_owner_but_never_locks_them_out() {
    let d = Daemon::start("hostile-idle-tcp");
    let addr = d.http.clone().unwrap();
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let token = d.token();
    let started = Instant::now();
    let s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = exchange(
        s,
        "GET",
        "/v1/summary",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // The idle ones are closed within about 2 s of connecting.
    for mut c in idle.into_iter().take(5) {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 128];
        let n = c.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    let warnings = d.log_text().matches("too many connections").count();
    assert!(warnings <= 2, "{warnings} warnings");
}

#[test]
fn the_database_file_is_private_whatever_the_umask() {
    let mut d = Daemon::prepare("hostile-umask", Options::default());
    let mut cmd = d.command();
    // SAFETY: umask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    d.spawn_command(cmd);
    let db = d.state.join("agentd.redb");
    assert_eq!(std::fs::metadata(&db).unwrap().mode() & 0o777, 0o600);
    // One left readable by an older version is narrowed.
    assert_eq!(d.stop().code(), Some(0));
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    d.spawn();
    assert_eq!(std::fs::metadata(&db).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn regression_the_last_day_a_run_may_have_can_be_asked_for() {
    let d = Daemon::start("hostile-day");
    d.write_run(
        "far",
        &[rec(
            json!({"type": "start", "ts": "9999-12-31T12:00:00Z", "title": "far future"}),
        )],
    );
    d.wait_item("cli:far", |_| true);
    let page = d.get("/v1/agents?tab=all&day=9999-12-31");
    assert_eq!(page["items"][0]["id"], "cli:far", "{page}");
    let r = d.req("GET", "/v1/agents?day=10000-01-01", b"");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("day"), "{}", r.text());
}

#[test]
fn regression_a_host_with_anything_after_the_port_is_refused() {
    let d = Daemon::start("hostile-host");
    let bearer = format!("Bearer {}", d.token());
    for host in ["localhost:80@evil.com", "127.0.0.1:7431/x", "localhost:1:2"] {
        let r = d.tcp(
            "GET",
            "/v1/summary",
            &[("Authorization", &bearer), ("Host", host)],
        );
        assert_eq!(r.status, 403, "Host {host}");
        let body: Value = r.json();
        assert_eq!(body["error"]["code"], "forbidden");
    }
}
