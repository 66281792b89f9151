//! Security and process hygiene: permissions, the TCP guard, single instance, stale sockets,
//! signals, slow or flooding clients and a corrupt database.

use agentd_tests::{Daemon, Options, Scratch, bin};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn socket_token_and_dirs_are_private() {
    let d = Daemon::start("perms");
    assert_eq!(mode(&d.socket), 0o600);
    assert_eq!(mode(d.socket.parent().unwrap()), 0o700);
    assert_eq!(mode(&d.state), 0o700);
    assert_eq!(mode(&d.state.join("token")), 0o600);
    assert_eq!(d.token().len(), 64);
}

#[test]
fn a_too_open_socket_dir_is_tightened() {
    let mut d = Daemon::start_with(
        "opendir",
        Options {
            http: None,
            ..Options::default()
        },
    );
    d.stop();
    let dir = d.socket.parent().unwrap().to_owned();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    d.spawn();
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn a_socket_in_a_directory_of_the_users_choice_leaves_its_mode_alone() {
    let mut d = Daemon::start_with(
        "userdir",
        Options {
            http: None,
            ..Options::default()
        },
    );
    d.stop();
    let chosen = d.dir.0.join("shared-place");
    std::fs::create_dir(&chosen).unwrap();
    std::fs::set_permissions(&chosen, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.socket = chosen.join("agentd.sock");
    d.spawn();
    assert_eq!(mode(&chosen), 0o755, "not agentd's directory: not chmod-ed");
    assert_eq!(mode(&d.socket), 0o600);
}

#[test]
fn tcp_needs_token_and_loopback_host() {
    let d = Daemon::start("tcp");
    let token = d.token();
    let bearer = format!("Bearer {token}");

    let r = d.tcp("GET", "/v1/summary", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "unauthorized");
    assert_eq!(
        d.tcp("GET", "/v1/summary", &[("Authorization", "Bearer wrong")])
            .status,
        401
    );

    let r = d.tcp("GET", "/v1/summary", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["working"], 0);
    assert!(r.header("access-control-allow-origin").is_none());

    for host in ["127.0.0.1", "localhost:7431", "[::1]:9"] {
        let r = d.tcp(
            "GET",
            "/v1/health",
            &[("Authorization", &bearer), ("Host", host)],
        );
        assert_eq!(r.status, 200, "Host {host}");
    }
    for host in ["evil.example", "attacker.com:7431", "127.0.0.1.nip.io"] {
        let r = d.tcp(
            "GET",
            "/v1/summary",
            &[("Authorization", &bearer), ("Host", host)],
        );
        assert_eq!(r.status, 403, "Host {host}");
        assert_eq!(r.json()["error"]["code"], "forbidden");
    }
    let r = d.tcp(
        "GET",
        "/v1/summary",
        &[
            ("Authorization", &bearer),
            ("Origin", "https://evil.example"),
        ],
    );
    assert_eq!(r.status, 403);

    // The web page's login: the token in the URL sets an HttpOnly, SameSite=Strict cookie.
    let r = d.tcp("GET", &format!("/?token={token}"), &[]);
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").expect("cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(r.text().contains("<title>agentd</title>"));
    // The page may not be framed by another site.
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        r.header("content-security-policy"),
        Some("frame-ancestors 'none'")
    );
    // Without the token, a browser asking for the page is told how to open it.
    let signed_out = d.tcp("GET", "/", &[]);
    assert_eq!(signed_out.status, 401);
    assert!(
        signed_out.text().contains("agentctl web"),
        "{}",
        signed_out.text()
    );
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(d.tcp("GET", "/v1/agents", &[("Cookie", pair)]).status, 200);
    assert_eq!(d.tcp("GET", "/?token=wrong", &[]).status, 401);
    assert_eq!(
        d.tcp("GET", &format!("/v1/summary?token={token}"), &[])
            .status,
        401,
        "only / logs in"
    );
    assert_eq!(
        d.tcp("GET", "/v1/agents", &[("Cookie", "agentd_token=wrong")])
            .status,
        401
    );

    // The socket needs no token.
    assert_eq!(d.req("GET", "/v1/summary", b"").status, 200);
}

#[test]
fn a_second_daemon_on_the_same_state_dir_exits_1_naming_the_pid() {
    let d = Daemon::start("twice");
    let out = d.command().output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", d.pid())), "{err}");
    assert!(err.contains("already running"), "{err}");
    // The first one is unharmed.
    assert_eq!(d.get("/v1/health")["pid"], d.pid());
}

#[test]
fn a_second_daemon_on_the_same_socket_exits_1() {
    let d = Daemon::start("samesock");
    let other = Scratch::new("samesock2");
    let out = std::process::Command::new(bin("agentd"))
        .args([
            "--state-dir",
            other.0.join("state").to_str().unwrap(),
            "--http",
            "off",
        ])
        .arg("--socket")
        .arg(&d.socket)
        .env("HOME", &other.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use") && err.contains(&format!("pid {}", d.pid())),
        "{err}"
    );
    assert_eq!(d.get("/v1/health")["pid"], d.pid());
}

#[test]
fn a_stale_socket_from_a_crash_is_replaced() {
    let mut d = Daemon::start("stale");
    d.kill();
    assert!(d.socket.exists(), "SIGKILL leaves the socket file behind");
    // Nothing listens on it: a connect is refused.
    assert_eq!(
        UnixStream::connect(&d.socket).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    d.spawn();
    assert_eq!(d.get("/v1/health")["status"], "ok");

    // A leftover socket file bound by some other, dead process is replaced too.
    d.stop();
    let l = UnixListener::bind(&d.socket).unwrap();
    drop(l);
    d.spawn();
    assert_eq!(d.get("/v1/health")["status"], "ok");
}

#[test]
fn sigterm_and_sigint_stop_cleanly_and_remove_the_socket() {
    let mut d = Daemon::start("signals");
    let status = d.stop();
    assert_eq!(status.code(), Some(0), "{}", d.log_text());
    assert!(!d.socket.exists());
    // The pid file is emptied, not removed (removing a locked file races with a starting daemon).
    assert_eq!(
        std::fs::read_to_string(d.state.join("agentd.pid")).unwrap(),
        ""
    );

    d.spawn();
    let child = d.child.take().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!d.socket.exists());
}

#[test]
fn silent_and_flooding_clients_do_not_stop_others() {
    let d = Daemon::start("slow");
    // A client that connects and never sends.
    let mut idle = UnixStream::connect(&d.socket).unwrap();
    // A client that sends endless headers.
    let mut flood = UnixStream::connect(&d.socket).unwrap();
    flood
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let line = format!("X-Junk: {}\r\n", "j".repeat(1000));
    let mut flood_cut = false;
    for _ in 0..2000 {
        if flood.write_all(line.as_bytes()).is_err() {
            flood_cut = true;
            break;
        }
    }
    // Others are served meanwhile.
    assert_eq!(d.get("/v1/summary")["working"], 0);
    // The flood got an error answer or a closed connection, never a success.
    let mut answer = Vec::new();
    flood
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = flood.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        flood_cut || answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    // The idle client is disconnected after the header timeout.
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = idle.read(&mut buf).unwrap_or(0);
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "idle connection kept open"
    );
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(d.get("/v1/health")["status"], "ok");
}

#[test]
fn a_corrupt_database_is_refused_not_replaced() {
    let mut d = Daemon::start("corrupt");
    d.stop();
    let db = d.state.join("agentd.redb");
    let garbage: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&db, &garbage).unwrap();
    let out = d.command().output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&db.display().to_string()) && err.contains("move it aside"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "the file is left as it was"
    );
}

#[test]
fn relative_socket_and_state_paths_work() {
    let scratch = Scratch::new("relative");
    let mut child = std::process::Command::new(bin("agentd"))
        .args([
            "--state-dir",
            "st",
            "--socket",
            "agentd.sock",
            "--http",
            "off",
        ])
        .current_dir(&scratch.0)
        .env("HOME", &scratch.0)
        .env("AGENTD_CONFIG", "/dev/null")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sock = scratch.0.join("agentd.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = agentd_tests::exchange(
        UnixStream::connect(&sock).unwrap(),
        "GET",
        "/v1/health",
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(scratch.0.join("st").join("agentd.redb").exists());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(!sock.exists());
}
