//! Running as a login service: systemd socket activation and readiness, the unit files and the
//! LaunchAgent, and `agentctl service`.

use agentd_tests::{Daemon, Options, Scratch, bin};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

#[test]
fn agentd_serves_a_socket_passed_by_systemd_and_says_ready() {
    let mut d = Daemon::prepare("activation", Options::default());
    // What systemd does for agentd.socket: make the directory and the listening socket.
    let dir = d.socket.parent().unwrap().to_owned();
    std::fs::create_dir_all(&dir).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&d.socket).unwrap();
    let notify_path = d.home.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let plain = d.command();
    // LISTEN_PID must be agentd's own pid: a shell sets it to its pid, then execs agentd.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
        .arg(plain.get_program())
        .args(plain.get_args())
        .env_clear();
    for (k, v) in plain.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.env("LISTEN_FDS", "1")
        .env("NOTIFY_SOCKET", &notify_path);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    // SAFETY: dup2 and fcntl are async-signal-safe; they put the listening socket at fd 3 in
    // the child, open across exec (dup2 onto itself would leave close-on-exec set).
    unsafe {
        cmd.pre_exec(move || {
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if ok < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    d.spawn_command(cmd);

    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("a READY=1 notification");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("READY=1\nMAINPID="), "{msg:?}");
    assert!(
        d.log_text()
            .contains("using the socket passed by the service manager")
    );
    assert_eq!(d.get("/v1/health")["status"], "ok");

    assert_eq!(d.stop().code(), Some(0));
    let n = notify.recv(&mut buf).expect("a STOPPING=1 notification");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(
        d.socket.exists(),
        "the manager's socket file is left in place"
    );
}

/// `agentctl service …` with `PATH` holding only a fake `systemctl` that logs its arguments.
fn service(home: &Path, fake_bin: &Path, args: &[&str]) -> Output {
    Command::new(bin("agentctl"))
        .arg("service")
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", fake_bin)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn service_install_writes_verified_units_and_enables_them() {
    let scratch = Scratch::new("service");
    let home = scratch.0.join("home");
    let fake = scratch.0.join("bin");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&fake).unwrap();
    let log = scratch.0.join("systemctl.log");
    let systemctl = fake.join("systemctl");
    std::fs::write(
        &systemctl,
        format!("#!/bin/sh\necho \"$*\" >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &systemctl,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let units = home.join(".config/systemd/user");
    let agentd = std::fs::canonicalize(bin("agentd")).unwrap();

    let dry = service(&home, &fake, &["install", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let out = text(&dry);
    assert!(out.contains(&format!(
        "# would write {}",
        units.join("agentd.service").display()
    )));
    assert!(
        out.contains(&format!("ExecStart={}", agentd.display())),
        "{out}"
    );
    assert!(out.contains("# would run: systemctl --user enable --now agentd.socket"));
    assert!(!units.exists(), "a dry run writes nothing");
    assert!(!log.exists(), "a dry run runs nothing");

    let inst = service(&home, &fake, &["install"]);
    assert_eq!(inst.status.code(), Some(0), "{}", text(&inst));
    let service_unit = std::fs::read_to_string(units.join("agentd.service")).unwrap();
    assert!(service_unit.contains("Type=notify") && service_unit.contains("Restart=on-failure"));
    let socket_unit = std::fs::read_to_string(units.join("agentd.socket")).unwrap();
    assert!(socket_unit.contains("ListenStream=%t/agentd/agentd.sock"));
    assert!(socket_unit.contains("SocketMode=0600") && socket_unit.contains("DirectoryMode=0700"));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls,
        "--user daemon-reload\n--user enable --now agentd.socket\n--user enable agentd.service\n--user restart agentd.service\n"
    );

    // The units as written pass systemd's own checker.
    match Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("agentd.service"))
        .arg(units.join("agentd.socket"))
        .output()
    {
        Ok(v) => assert!(v.status.success(), "systemd-analyze verify:\n{}", text(&v)),
        Err(_) if std::env::var_os("AGENTD_REQUIRE_SYSTEMD_ANALYZE").is_none() => {
            eprintln!("systemd-analyze is not installed here; unit verification skipped");
        }
        Err(e) => panic!("systemd-analyze is required here: {e}"),
    }

    let st = service(&home, &fake, &["status"]);
    let out = text(&st);
    assert!(out.contains("installed as a systemd user service"), "{out}");
    assert!(out.contains(&format!("runs {}", agentd.display())), "{out}");
    // A unit left pointing at a binary that moved is noticed.
    std::fs::write(
        units.join("agentd.service"),
        service_unit.replace(&agentd.display().to_string(), "/opt/old/agentd"),
    )
    .unwrap();
    let out = text(&service(&home, &fake, &["status"]));
    assert!(out.contains("does not exist any more"), "{out}");

    let un = service(&home, &fake, &["uninstall"]);
    assert_eq!(un.status.code(), Some(0), "{}", text(&un));
    assert!(!units.join("agentd.service").exists() && !units.join("agentd.socket").exists());
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("--user disable --now agentd.service")
    );
}

#[test]
fn service_install_says_so_where_there_is_no_service_manager() {
    let scratch = Scratch::new("no-manager");
    let empty = scratch.0.join("bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = service(&scratch.0, &empty, &["install"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("neither systemd"), "{}", text(&out));
}

#[test]
fn the_launch_agent_is_a_valid_plist() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../launchd/dev.agentd.agentd.plist"
    );
    let script = "import plistlib,sys\n\
                  p=plistlib.loads(open(sys.argv[1],'rb').read().replace(b'@AGENTD@',b'/usr/local/bin/agentd').replace(b'@HOME@',b'/Users/me'))\n\
                  assert p['Label']=='dev.agentd.agentd'\n\
                  assert p['ProgramArguments']==['/usr/local/bin/agentd']\n\
                  assert p['RunAtLoad'] is True and p['KeepAlive']=={'SuccessfulExit':False}\n\
                  assert p['StandardErrorPath']=='/Users/me/Library/Logs/agentd/agentd.log'\n\
                  assert 'PATH' in p['EnvironmentVariables']\n\
                  print('ok')";
    match Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
    {
        Ok(o) => assert_eq!(text(&o).trim(), "ok", "{}", text(&o)),
        Err(_) => eprintln!("python3 is not installed here; plist check skipped"),
    }
}
