//! `agentctl service install|uninstall|status`: agentd as a login service.
//!
//! On Linux with systemd it writes `agentd.service` (`Type=notify`) and `agentd.socket` (socket
//! activation) to the user's systemd directory and enables both with `systemctl --user`; on
//! macOS it writes a LaunchAgent and loads it with `launchctl bootstrap`. The files are the
//! ones in the repository's `systemd/` and `launchd/` folders, with the path of the agentd
//! binary that sits beside this agentctl (else the one on `PATH`) filled in.

use std::path::{Path, PathBuf};
use std::process::Command;

const SERVICE: &str = include_str!("../../systemd/agentd.service");
const SOCKET: &str = include_str!("../../systemd/agentd.socket");
const PLIST: &str = include_str!("../../launchd/dev.agentd.agentd.plist");
const PLIST_NAME: &str = "dev.agentd.agentd.plist";

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Install,
    Uninstall,
    Status,
}

/// The service manager found on this machine.
enum Manager {
    /// systemd user units in this directory.
    Systemd(PathBuf),
    /// launchd agents in this directory.
    Launchd(PathBuf),
}

/// A failure with its message; the exit code is 1.
pub type Outcome = Result<(), String>;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = env("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn manager() -> Result<Manager, String> {
    let home = env("HOME").map(PathBuf::from).ok_or("HOME is not set")?;
    if cfg!(target_os = "macos") && on_path("launchctl").is_some() {
        return Ok(Manager::Launchd(home.join("Library/LaunchAgents")));
    }
    if on_path("systemctl").is_some() {
        let config = env("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"));
        return Ok(Manager::Systemd(config.join("systemd/user")));
    }
    Err(
        "neither systemd (systemctl --user) nor launchd (launchctl) is available here; \
         start agentd from your session's startup instead (for example in ~/.profile: \
         `agentd >/dev/null 2>&1 &`)"
            .into(),
    )
}

/// The agentd binary to run: beside this agentctl, else on `PATH`.
fn agentd_binary() -> Result<PathBuf, String> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("agentd")))
        .filter(|p| p.is_file());
    beside
        .or_else(|| on_path("agentd"))
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .ok_or_else(|| "cannot find the agentd binary beside agentctl or on PATH".into())
}

/// The files to write: (path, contents).
fn files(m: &Manager, agentd: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let bin = agentd.display().to_string();
    if bin
        .chars()
        .any(|c| c.is_whitespace() || c == '%' || c == '"')
    {
        return Err(format!(
            "the agentd path {bin} has spaces or special characters a unit file cannot hold; \
             install agentd somewhere plainer (e.g. ~/.local/bin)"
        ));
    }
    Ok(match m {
        Manager::Systemd(dir) => vec![
            (
                dir.join("agentd.service"),
                SERVICE.replace("@AGENTD@", &bin),
            ),
            (dir.join("agentd.socket"), SOCKET.to_owned()),
        ],
        Manager::Launchd(dir) => {
            let home = env("HOME").unwrap_or_default();
            vec![(
                dir.join(PLIST_NAME),
                PLIST.replace("@AGENTD@", &bin).replace("@HOME@", &home),
            )]
        }
    })
}

/// The commands that enable (or disable) the service.
fn commands(m: &Manager, action: Action) -> Vec<Vec<String>> {
    let v = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    match (m, action) {
        // `restart`, not `start`: installing again switches a running agentd to this binary.
        (Manager::Systemd(_), Action::Install) => vec![
            v(&["systemctl", "--user", "daemon-reload"]),
            v(&["systemctl", "--user", "enable", "--now", "agentd.socket"]),
            v(&["systemctl", "--user", "enable", "agentd.service"]),
            v(&["systemctl", "--user", "restart", "agentd.service"]),
        ],
        (Manager::Systemd(_), Action::Uninstall) => vec![
            v(&["systemctl", "--user", "disable", "--now", "agentd.service"]),
            v(&["systemctl", "--user", "disable", "--now", "agentd.socket"]),
        ],
        (Manager::Launchd(dir), Action::Install) => {
            // SAFETY: getuid has no preconditions.
            let uid = unsafe { libc::getuid() };
            // An agent loaded before is booted out first (its failure when none is is ignored),
            // so that installing again loads this binary.
            vec![
                v(&[
                    "launchctl",
                    "bootout",
                    &format!("gui/{uid}/dev.agentd.agentd"),
                ]),
                v(&[
                    "launchctl",
                    "bootstrap",
                    &format!("gui/{uid}"),
                    &dir.join(PLIST_NAME).display().to_string(),
                ]),
            ]
        }
        (Manager::Launchd(_), Action::Uninstall) => {
            // SAFETY: getuid has no preconditions.
            let uid = unsafe { libc::getuid() };
            vec![v(&[
                "launchctl",
                "bootout",
                &format!("gui/{uid}/dev.agentd.agentd"),
            ])]
        }
        (_, Action::Status) => Vec::new(),
    }
}

fn run_command(words: &[String]) -> Outcome {
    let status = Command::new(&words[0])
        .args(&words[1..])
        .status()
        .map_err(|e| format!("cannot run {}: {e}", words[0]))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", words.join(" ")))
    }
}

/// Performs `action`; with `dry_run`, prints what it would write and run instead.
pub fn service(action: Action, dry_run: bool) -> Outcome {
    let m = manager()?;
    match action {
        Action::Install => {
            let agentd = agentd_binary()?;
            let files = files(&m, &agentd)?;
            for (path, text) in &files {
                if dry_run {
                    println!("# would write {}\n{text}", path.display());
                    continue;
                }
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                std::fs::write(path, text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                println!("wrote {}", path.display());
            }
            if let Manager::Launchd(_) = &m
                && !dry_run
                && let Some(home) = env("HOME")
            {
                let _ = std::fs::create_dir_all(Path::new(&home).join("Library/Logs/agentd"));
            }
            for cmd in commands(&m, Action::Install) {
                if dry_run {
                    println!("# would run: {}", cmd.join(" "));
                } else if cmd.get(1).map(String::as_str) == Some("bootout") {
                    let _ = Command::new(&cmd[0])
                        .args(&cmd[1..])
                        .stderr(std::process::Stdio::null())
                        .status();
                } else {
                    run_command(&cmd)?;
                }
            }
            if !dry_run {
                println!("agentd ({}) starts at login from now on", agentd.display());
            }
            Ok(())
        }
        Action::Uninstall => {
            for cmd in commands(&m, Action::Uninstall) {
                if dry_run {
                    println!("# would run: {}", cmd.join(" "));
                } else if let Err(e) = run_command(&cmd) {
                    eprintln!("agentctl: {e} (continuing)");
                }
            }
            let paths: Vec<PathBuf> = match &m {
                Manager::Systemd(dir) => {
                    vec![dir.join("agentd.service"), dir.join("agentd.socket")]
                }
                Manager::Launchd(dir) => vec![dir.join(PLIST_NAME)],
            };
            for p in paths.iter().filter(|p| p.exists()) {
                if dry_run {
                    println!("# would remove {}", p.display());
                } else {
                    std::fs::remove_file(p)
                        .map_err(|e| format!("cannot remove {}: {e}", p.display()))?;
                    println!("removed {}", p.display());
                }
            }
            if let (Manager::Systemd(_), false) = (&m, dry_run) {
                let _ = run_command(&["systemctl", "--user", "daemon-reload"].map(String::from));
            }
            Ok(())
        }
        Action::Status => status(&m),
    }
}

fn status(m: &Manager) -> Outcome {
    let (file, kind) = match m {
        Manager::Systemd(dir) => (dir.join("agentd.service"), "systemd user service"),
        Manager::Launchd(dir) => (dir.join(PLIST_NAME), "launchd agent"),
    };
    let Ok(text) = std::fs::read_to_string(&file) else {
        println!("not installed ({kind}); `agentctl service install` sets it up");
        return Ok(());
    };
    println!("installed as a {kind}: {}", file.display());
    let configured = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))
        .map(str::trim)
        .map(str::to_owned)
        .or_else(|| {
            // The plist: the first <string> after ProgramArguments.
            let at = text.find("<key>ProgramArguments</key>")?;
            let rest = &text[at..];
            let start = rest.find("<string>")? + "<string>".len();
            let end = rest[start..].find("</string>")?;
            Some(rest[start..start + end].to_owned())
        });
    if let Some(path) = configured {
        println!("runs {path}");
        if !Path::new(&path).is_file() {
            println!(
                "warning: that binary does not exist any more; run `agentctl service install` again"
            );
        } else if let Ok(current) = agentd_binary()
            && std::fs::canonicalize(&path).ok() != Some(current.clone())
        {
            println!(
                "note: this agentctl's agentd is {}; `agentctl service install` switches to it",
                current.display()
            );
        }
    }
    if let Manager::Systemd(_) = m {
        let active = Command::new("systemctl")
            .args(["--user", "is-active", "agentd.service"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        println!("state: {active}");
    }
    Ok(())
}
