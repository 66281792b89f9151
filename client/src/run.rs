//! `agentctl run -- CMD…`: runs a command as a recorded CLI run.
//!
//! The command gets the terminal's stdin; its stdout and stderr pass through unchanged and are
//! also appended, as `output` records, to `<runs dir>/<run id>.jsonl` (CONTRACT.md section 6),
//! between a `start` and an `end` record. The daemon need not be running: it reads the log when
//! it starts. If the log cannot be written the command still runs, with a warning.
//!
//! Usage: when the command prints the machine-readable stream of a known agent CLI on stdout
//! (Claude Code `--output-format stream-json` or `json`, Codex `exec --json`), its token counts,
//! model and cost are recorded as `usage` records too, so the run shows what it cost.
//!
//! Signals: a SIGINT/SIGTERM/SIGHUP sent to agentctl (by `kill`, a service manager, agentd's
//! stop) is passed on to the command; a Ctrl-C from the terminal already reaches the whole
//! foreground group, so it is not sent twice (programs such as Claude Code treat a second Ctrl-C
//! as "quit now"). A run stopped by such a signal is `canceled` ("stopped from agentd" when the
//! signal was queued by agentd with an `agentd_wire::stop` value). agentctl's own pid is the
//! run's `pid`, so if agentctl itself is killed the daemon marks the run failed ("exited without
//! an end record").
//!
//! Process groups: without a controlling terminal (scripts under cron or CI, services) the
//! command leads a process group of its own, recorded as the start record's `pgid`, and signals
//! go to the whole group, so that a stop reaches every process the agent started. With a
//! terminal the command stays in the shell's job, where it can use the terminal and job control
//! works; a stop then reaches the command itself, and a forced one its descendants.

use serde_json::{Value, json};
use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

mod tee;

/// What to run and how to label it.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub title: Option<String>,
    pub harness: Option<String>,
    pub command: Vec<String>,
}

/// The pid of the running command, for the signal handler (0: none yet).
static CHILD: AtomicI32 = AtomicI32::new(0);
/// The command leads a process group of its own (see [`own_group`]): signals go to the group.
static CHILD_GROUP: AtomicBool = AtomicBool::new(false);
/// The last forwarded signal (0: none): the run was stopped on purpose.
static STOPPED_BY: AtomicI32 = AtomicI32::new(0);
/// The stop came from agentd (`POST /v1/agents/{id}/cancel`, see `agentd_wire::stop`).
static FROM_AGENTD: AtomicBool = AtomicBool::new(false);

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t with SA_SIGINFO; reading its value union is
    // valid for SI_QUEUE; kill(2) is async-signal-safe.
    unsafe {
        STOPPED_BY.store(sig, Ordering::SeqCst);
        let code = (*info).si_code;
        if code == libc::SI_QUEUE {
            let value = (*info).si_value().sival_ptr as usize;
            if value == agentd_wire::stop::NOTE {
                FROM_AGENTD.store(true, Ordering::SeqCst);
                return; // agentd signalled the command's group itself
            }
            if value == agentd_wire::stop::FORWARD {
                FROM_AGENTD.store(true, Ordering::SeqCst);
            }
        }
        let from_terminal = code == libc::SI_KERNEL;
        let child = CHILD.load(Ordering::SeqCst);
        if child > 0 {
            if CHILD_GROUP.load(Ordering::SeqCst) {
                // Not in our group: a terminal's Ctrl-C did not reach it either.
                libc::kill(-child, sig);
            } else if !from_terminal {
                libc::kill(child, sig);
            }
        }
    }
}

/// Whether the command gets a process group of its own, so that stopping the run (from agentd,
/// or a signal to agentctl) reaches every process it started. Only without a controlling
/// terminal (scripts under cron or CI, services): with one, the command must stay in the
/// terminal's foreground group (the shell's job), where it may read or configure the terminal
/// (a password prompt, even with stdin redirected) and where Ctrl-C and job control reach it.
fn own_group() -> bool {
    // SAFETY: open/close on a constant path; O_NOCTTY so that opening never acquires one.
    unsafe {
        let fd = libc::open(
            c"/dev/tty".as_ptr(),
            libc::O_RDONLY | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            libc::close(fd);
            return false;
        }
    }
    true
}

fn install_forwarding() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a valid handler and SA_SIGINFO; no other state.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn now() -> String {
    agentd_wire::format_rfc3339_ms(agentd_wire::Millis::now().0)
}

/// A run id: 12 hex digits from the clock and pid, so that short ids (`cli:3f9a1c2b`) differ
/// between runs started the same day.
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in nanos
        .to_le_bytes()
        .iter()
        .chain(std::process::id().to_le_bytes().iter())
    {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

fn program_name(cmd: &[String]) -> String {
    let prog = cmd.first().map(String::as_str).unwrap_or("");
    prog.rsplit('/').next().unwrap_or(prog).to_owned()
}

/// The harness of known agent CLIs, else the program name.
pub fn default_harness(cmd: &[String]) -> String {
    match program_name(cmd).as_str() {
        "claude" => "claude-code".into(),
        other => other.into(),
    }
}

/// The prompt argument of known agent CLIs (`claude -p PROMPT`, `codex exec PROMPT`,
/// `gemini -p PROMPT`), else the command line; cut to 200 characters.
pub fn default_title(cmd: &[String]) -> String {
    let args = &cmd[1.min(cmd.len())..];
    let flag_value = |flags: &[&str]| {
        args.windows(2)
            .find(|w| flags.contains(&w[0].as_str()) && !w[1].starts_with('-'))
            .map(|w| w[1].clone())
    };
    let first_positional = |skip: usize| {
        args.iter()
            .skip(skip)
            .find(|a| !a.starts_with('-'))
            .cloned()
    };
    let prompt = match program_name(cmd).as_str() {
        "claude" => flag_value(&["-p", "--print"]).or_else(|| first_positional(0)),
        "codex" if args.first().is_some_and(|a| a == "exec" || a == "e") => first_positional(1),
        "gemini" => flag_value(&["-p", "--prompt", "-i", "--prompt-interactive"]),
        _ => None,
    };
    let title = prompt.unwrap_or_else(|| cmd.join(" "));
    let title = title.trim();
    if title.chars().count() > 200 {
        format!("{}…", title.chars().take(199).collect::<String>())
    } else {
        title.to_owned()
    }
}

/// The run log, shared by the two output pumps; `None` when it could not be created.
struct Log {
    file: Option<Mutex<File>>,
    path: PathBuf,
}

impl Log {
    fn create(runs_dir: &Path, id: &str) -> Log {
        let path = runs_dir.join(format!("{id}.jsonl"));
        let opened = std::fs::DirBuilder::new()
            .recursive(true)
            .create(runs_dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .append(true)
                    .create_new(true)
                    .open(&path)
            });
        match opened {
            Ok(f) => Log {
                file: Some(Mutex::new(f)),
                path,
            },
            Err(e) => {
                eprintln!(
                    "agentctl: warning: this run is not recorded (cannot write {}: {e})",
                    path.display()
                );
                Log { file: None, path }
            }
        }
    }

    /// Appends one record as one line in one write, so lines from the two pumps never mix.
    fn record(&self, v: Value) {
        let mut line = v.to_string();
        line.push('\n');
        self.write_line(line.as_bytes());
    }

    fn is_recording(&self) -> bool {
        self.file.is_some()
    }

    fn write_line(&self, line: &[u8]) {
        let Some(file) = &self.file else { return };
        if let Ok(mut f) = file.lock() {
            let _ = f.write_all(line);
        }
    }
}

/// Reads usage out of the JSON lines that agent CLIs print in their machine-readable modes.
///
/// Only lines that begin with `{` are looked at. Plain output costs one `memchr` pass per read
/// for `{`, which plain text rarely contains, so a chatty command is not slowed down.
#[derive(Debug)]
pub struct UsageScanner {
    model: Option<String>,
    /// The `{` line being collected across reads, up to [`MAX_SCANNED_LINE`] bytes.
    line: Vec<u8>,
    /// Inside a `{` line that has not ended yet.
    collecting: bool,
    /// That line grew past the limit: not a usage line; drop it.
    oversized: bool,
    /// The previous read ended with a newline (or nothing was read yet).
    at_line_start: bool,
}

impl Default for UsageScanner {
    fn default() -> Self {
        UsageScanner {
            model: None,
            line: Vec::new(),
            collecting: false,
            oversized: false,
            at_line_start: true,
        }
    }
}

/// Usage lines are small; longer lines are passed over unparsed.
const MAX_SCANNED_LINE: usize = 1 << 20;

impl UsageScanner {
    fn push(&mut self, part: &[u8]) {
        if self.line.len() + part.len() > MAX_SCANNED_LINE {
            self.oversized = true;
            self.line.clear();
        } else if !self.oversized {
            self.line.extend_from_slice(part);
        }
    }

    fn end_line(&mut self) -> Option<Value> {
        let usage = if self.oversized {
            None
        } else {
            self.line_usage()
        };
        self.line.clear();
        self.collecting = false;
        self.oversized = false;
        usage
    }

    /// Feeds output bytes; returns the `usage` records found in the lines they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Value> {
        let mut found = Vec::new();
        let mut pos = 0;
        if self.collecting {
            match memchr::memchr(b'\n', bytes) {
                Some(i) => {
                    self.push(&bytes[..i]);
                    found.extend(self.end_line());
                    pos = i + 1;
                    self.at_line_start = true;
                }
                None => {
                    self.push(bytes);
                    return found;
                }
            }
        }
        while let Some(off) = memchr::memchr(b'{', &bytes[pos..]) {
            let i = pos + off;
            let starts_line = if i == 0 {
                self.at_line_start
            } else {
                bytes[i - 1] == b'\n'
            };
            if !starts_line {
                pos = i + 1;
                continue;
            }
            match memchr::memchr(b'\n', &bytes[i..]) {
                Some(len) => {
                    self.push(&bytes[i..i + len]);
                    found.extend(self.end_line());
                    pos = i + len + 1;
                }
                None => {
                    self.collecting = true;
                    self.push(&bytes[i..]);
                    return found;
                }
            }
        }
        if let Some(&last) = bytes.last() {
            self.at_line_start = last == b'\n';
        }
        found
    }

    /// The last line, if the output did not end with a newline.
    pub fn finish(&mut self) -> Vec<Value> {
        if self.collecting {
            self.end_line().into_iter().collect()
        } else {
            Vec::new()
        }
    }

    fn line_usage(&mut self) -> Option<Value> {
        let trimmed = self.line.trim_ascii();
        if trimmed.first() != Some(&b'{') {
            return None;
        }
        let v: Value = serde_json::from_slice(trimmed).ok()?;
        let n = |u: &Value, k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        match v.get("type")?.as_str()? {
            // Claude Code: `system/init` names the model; `result` carries the run's totals.
            "system" if v.get("subtype").and_then(Value::as_str) == Some("init") => {
                self.model = v.get("model").and_then(Value::as_str).map(str::to_owned);
                None
            }
            "result" => {
                let u = v.get("usage")?;
                Some(json!({
                    "type": "usage", "ts": now(), "model": self.model,
                    "input_tokens": n(u, "input_tokens"), "output_tokens": n(u, "output_tokens"),
                    "cache_read_tokens": n(u, "cache_read_input_tokens"),
                    "cache_write_tokens": n(u, "cache_creation_input_tokens"),
                    "cost_usd": v.get("total_cost_usd").and_then(Value::as_f64),
                }))
            }
            // Codex `exec --json`: one `turn.completed` per turn; its input count includes the
            // cached part, which is reported separately here.
            "turn.completed" => {
                let u = v.get("usage")?;
                let cached = n(u, "cached_input_tokens");
                Some(json!({
                    "type": "usage", "ts": now(), "model": self.model,
                    "input_tokens": n(u, "input_tokens").saturating_sub(cached),
                    "output_tokens": n(u, "output_tokens"), "cache_read_tokens": cached,
                }))
            }
            "thread.started" | "session.created" => {
                if let Some(m) = v.get("model").and_then(Value::as_str) {
                    self.model = Some(m.to_owned());
                }
                None
            }
            _ => None,
        }
    }
}

/// Runs the command, recording it in `runs_dir`; returns the exit code to exit with.
pub fn run(spec: &RunSpec, runs_dir: &Path) -> i32 {
    let id = new_run_id();
    let log = Log::create(runs_dir, &id);
    let title = spec
        .title
        .clone()
        .unwrap_or_else(|| default_title(&spec.command));
    let harness = spec
        .harness
        .clone()
        .unwrap_or_else(|| default_harness(&spec.command));
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let started = now();
    let grouped = own_group();
    install_forwarding();
    let mut command = Command::new(&spec.command[0]);
    command
        .args(&spec.command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if grouped {
        command.process_group(0);
    }
    let spawned = command.spawn();
    // `pid` is who to ask to stop (agentctl, which passes it on and records the end); `pgid`,
    // when the command has a group of its own, is what a forced stop takes down.
    let pgid = spawned.as_ref().ok().filter(|_| grouped).map(|c| c.id());
    log.record(json!({
        "type": "start", "ts": started, "title": title, "harness": harness, "source": "cli",
        "cwd": cwd, "pid": std::process::id(), "pgid": pgid, "command": spec.command,
    }));
    if log.file.is_some() {
        eprintln!("agentctl: recording run cli:{id} ({})", log.path.display());
    }
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            // Like a shell: 127 for a command that is not there, 126 for one that cannot run.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            eprintln!("agentctl: cannot run {}: {e}", spec.command[0]);
            log.record(json!({
                "type": "end", "ts": now(), "status": "failed", "exit_code": code,
                "error": format!("cannot start {}: {e}", spec.command[0]),
            }));
            return code;
        }
    };
    CHILD_GROUP.store(grouped, Ordering::SeqCst);
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    tee::pump(child.stdout.take(), child.stderr.take(), &log);
    let status = child.wait();
    CHILD.store(0, Ordering::SeqCst);
    let stopped = STOPPED_BY.load(Ordering::SeqCst);
    let (code, end) = match status {
        Err(e) => (
            1,
            json!({"status": "failed", "exit_code": null, "error": format!("waiting for the command: {e}")}),
        ),
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            let code = s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0));
            let end = if FROM_AGENTD.load(Ordering::SeqCst) {
                json!({"status": "canceled", "exit_code": code, "error": agentd_wire::stop::DETAIL})
            } else if stopped != 0 {
                json!({"status": "canceled", "exit_code": code, "error": format!("stopped by signal {stopped}")})
            } else if let Some(sig) = s.signal() {
                json!({"status": "failed", "exit_code": code, "error": format!("killed by signal {sig}")})
            } else if code == 0 {
                json!({"status": "success", "exit_code": 0})
            } else {
                json!({"status": "failed", "exit_code": code})
            };
            (code, end)
        }
    };
    let mut record = json!({"type": "end", "ts": now()});
    if let (Some(r), Some(e)) = (record.as_object_mut(), end.as_object()) {
        r.extend(e.clone());
    }
    log.record(record);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn titles_and_harnesses_of_known_agents() {
        for (words, title, harness) in [
            (
                &[
                    "claude",
                    "-p",
                    "fix the tests",
                    "--output-format",
                    "stream-json",
                ][..],
                "fix the tests",
                "claude-code",
            ),
            (
                &["/usr/local/bin/claude", "--print", "hi"],
                "hi",
                "claude-code",
            ),
            (
                &["codex", "exec", "--json", "refactor auth"],
                "refactor auth",
                "codex",
            ),
            (
                &["gemini", "-p", "explain this repo"],
                "explain this repo",
                "gemini",
            ),
            (&["./ci.sh", "--fast"], "./ci.sh --fast", "ci.sh"),
        ] {
            let c = cmd(words);
            assert_eq!(
                (default_title(&c).as_str(), default_harness(&c).as_str()),
                (title, harness),
                "{words:?}"
            );
        }
        let long = cmd(&["echo", &"x".repeat(300)]);
        assert_eq!(default_title(&long).chars().count(), 200);
    }

    #[test]
    fn usage_from_agent_streams() {
        let mut s = UsageScanner::default();
        let claude = concat!(
            r#"{"type":"system","subtype":"init","model":"claude-sonnet-4-5-20250929","session_id":"x"}"#,
            "\n",
            r#"{"type":"assistant","message":{"usage":{"input_tokens":3}}}"#,
            "\n",
            r#"{"type":"result","subtype":"success","total_cost_usd":0.0421,"usage":{"input_tokens":12,"output_tokens":340,"cache_read_input_tokens":9100,"cache_creation_input_tokens":2200}}"#
        );
        let (a, b) = claude.split_at(70); // lines arrive in pieces
        assert!(s.feed(a.as_bytes()).is_empty());
        assert!(
            s.feed(b.as_bytes()).is_empty(),
            "the result line is not complete yet"
        );
        let u = s.finish();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0]["model"], "claude-sonnet-4-5-20250929");
        assert_eq!(
            (
                u[0]["input_tokens"].as_u64(),
                u[0]["output_tokens"].as_u64()
            ),
            (Some(12), Some(340))
        );
        assert_eq!(
            (
                u[0]["cache_read_tokens"].as_u64(),
                u[0]["cache_write_tokens"].as_u64()
            ),
            (Some(9100), Some(2200))
        );
        assert_eq!(u[0]["cost_usd"], 0.0421);

        let mut s = UsageScanner::default();
        let codex = concat!(
            r#"{"type":"thread.started","thread_id":"t"}"#,
            "\n",
            r#"{"type":"turn.completed","usage":{"input_tokens":1000,"cached_input_tokens":800,"output_tokens":50}}"#,
            "\n",
            "plain text line\n",
            r#"{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":5}}"#,
            "\n",
        );
        let u = s.feed(codex.as_bytes());
        assert_eq!(u.len(), 2);
        assert_eq!(
            (
                u[0]["input_tokens"].as_u64(),
                u[0]["cache_read_tokens"].as_u64()
            ),
            (Some(200), Some(800))
        );
        assert_eq!(u[1]["output_tokens"], 5);
        assert!(s.feed(b"{not json}\n").is_empty());
    }

    #[test]
    fn run_ids_are_distinct_hex() {
        let a = new_run_id();
        std::thread::sleep(std::time::Duration::from_millis(1));
        let b = new_run_id();
        assert_ne!(a, b);
        assert!(a.len() == 12 && a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
