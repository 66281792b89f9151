//! The black-box test harness: starts the real `agentd` in a scratch dir per test (its own
//! HOME, state dir, socket and a loopback port picked by the kernel), writes real run-log files
//! into its runs dir, and talks to it over the real Unix socket and TCP, or through the real
//! `agentctl` binary.
//!
//! The binaries are the ones cargo built for this workspace. `CARGO_BIN_EXE_*` only reaches
//! tests of the package that owns a binary, and this suite needs both, so they are found next
//! to the test executable (`target/<profile>/`); `daemon/tests` and `client/tests` make
//! `cargo test --workspace` build them before anything runs.

pub mod oz;

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits for the daemon to reflect a change before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// Appends `bytes` to `path` as an agent does, creating the file and its parents.
pub fn append(path: &Path, bytes: &(impl AsRef<[u8]> + ?Sized)) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes.as_ref())
        .unwrap();
}

/// Appends one JSON record per line to `path`, as the agents' transcripts are written.
pub fn append_lines(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    append(path, text.as_bytes());
}

/// Path of a workspace binary.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the suite with `cargo test --workspace`, which builds agentd and agentctl",
        path.display()
    );
    path
}

/// A fresh scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Makes `/tmp/agentd-t<pid>-<n>-<name>` (short enough for a socket path inside it).
    pub fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("agentd-t{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A parsed HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..nl]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 || raw.len() < nl + 2 + size {
            return out;
        }
        out.extend_from_slice(&raw[nl + 2..nl + 2 + size]);
        raw = &raw[(nl + 4 + size).min(raw.len())..];
    }
}

/// Sends one request on a fresh connection and reads the whole answer.
pub fn exchange(
    mut s: impl Read + Write,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).expect("write request");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    parse(&raw)
}

/// Parses a raw HTTP/1.1 answer.
pub fn parse(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
    Resp {
        status,
        headers,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_vec()
        },
    }
}

/// How to start a daemon.
#[derive(Clone)]
pub struct Options {
    pub user: String,
    /// `--http`; `None` starts it with `off`.
    pub http: Option<String>,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            user: "alice".into(),
            http: Some("127.0.0.1:0".into()),
            env: vec![],
            args: vec![],
        }
    }
}

/// A running `agentd` in a scratch dir.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: Scratch,
    pub home: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub runs: PathBuf,
    pub opts: Options,
    /// The TCP address it bound, when HTTP is on.
    pub http: Option<String>,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts a daemon with default options and waits until it answers.
    pub fn start(name: &str) -> Daemon {
        Daemon::start_with(name, Options::default())
    }

    pub fn start_with(name: &str, opts: Options) -> Daemon {
        let mut d = Daemon::prepare(name, opts);
        d.spawn();
        d
    }

    /// A daemon's scratch layout, not started yet (see [`Daemon::spawn_command`]).
    pub fn prepare(name: &str, opts: Options) -> Daemon {
        let dir = Scratch::new(name);
        let home = dir.0.join("home");
        let state = dir.0.join("state");
        // Laid out like the default ($XDG_RUNTIME_DIR/agentd/agentd.sock).
        let socket = dir.0.join("run").join("agentd").join("agentd.sock");
        std::fs::create_dir_all(&home).unwrap();
        let d = Daemon {
            child: None,
            runs: state.join("runs"),
            log: dir.0.join("agentd.log"),
            dir,
            home,
            state,
            socket,
            opts,
            http: None,
        };
        let cfg = d.home.join("no-config.toml");
        if !cfg.exists() {
            std::fs::write(&cfg, "").unwrap();
        }
        d
    }

    /// The command that starts this daemon (not yet spawned).
    pub fn command(&self) -> Command {
        let mut c = Command::new(bin("agentd"));
        c.arg("--state-dir")
            .arg(&self.state)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--http")
            .arg(self.opts.http.as_deref().unwrap_or("off"))
            .args(&self.opts.args)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AGENTD_USER", &self.opts.user)
            .env("AGENTD_CONFIG", self.home.join("no-config.toml"))
            .env("TZ", "UTC")
            .env("AGENTD_LOG", "debug");
        for (k, v) in &self.opts.env {
            c.env(k, v);
        }
        c
    }

    /// (Re)starts the process and waits for the socket to answer.
    pub fn spawn(&mut self) {
        // AGENTD_CONFIG points at a file that does not exist unless a test writes it: an
        // explicit config path must exist, so write an empty one.
        let cfg = self.home.join("no-config.toml");
        if !cfg.exists() {
            std::fs::write(&cfg, "").unwrap();
        }
        let cmd = self.command();
        self.spawn_command(cmd);
    }

    /// Starts `cmd` (a [`Daemon::command`], perhaps adjusted) and waits for the socket to answer.
    pub fn spawn_command(&mut self, mut cmd: Command) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn agentd");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("agentd exited early with {status}:\n{}", self.log_text());
            }
            if let Ok(s) = UnixStream::connect(&self.socket) {
                // Bounded: a socket that accepts but never answers must not hang the test.
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let r = exchange(s, "GET", "/v1/health", &[], b"");
                if r.status == 200 {
                    self.http = r.json()["http"]["addr"].as_str().map(str::to_owned);
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "agentd did not become ready:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("agentd did not stop on SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `GET path` as JSON, waiting out the moments the database is compacted (`503
    /// unavailable`, for up to 60 s); any other answer but `200` fails the test.
    pub fn get_waiting(&self, path: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.req("GET", path, b"");
            match r.status {
                200 => return r.json(),
                503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                other => panic!("GET {path} answered {other}: {}", r.text()),
            }
        }
    }

    /// A request over the Unix socket.
    pub fn req(&self, method: &str, path: &str, body: &[u8]) -> Resp {
        let s = UnixStream::connect(&self.socket).expect("connect socket");
        s.set_read_timeout(Some(WAIT)).unwrap();
        exchange(s, method, path, &[], body)
    }

    /// GET over the socket, expecting JSON.
    pub fn get(&self, path: &str) -> Value {
        let r = self.req("GET", path, b"");
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }

    /// A request over TCP with the given headers.
    pub fn tcp(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let addr = self.http.as_deref().expect("HTTP listener on");
        let s = std::net::TcpStream::connect(addr).expect("connect tcp");
        s.set_read_timeout(Some(WAIT)).unwrap();
        exchange(s, method, path, headers, b"")
    }

    /// The TCP token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.state.join("token"))
            .expect("token file")
            .trim()
            .to_owned()
    }

    /// Writes a whole run log `<runs>/<name>.jsonl`.
    pub fn write_run(&self, name: &str, lines: &[String]) {
        std::fs::create_dir_all(&self.runs).unwrap();
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(self.runs.join(format!("{name}.jsonl")), text).unwrap();
    }

    /// Appends raw bytes to a run log.
    pub fn append_run(&self, name: &str, bytes: &[u8]) {
        append(&self.runs.join(format!("{name}.jsonl")), bytes);
    }

    /// Waits until every source has done its initial scan, and returns `/v1/health`.
    pub fn wait_scanned(&self) -> Value {
        self.wait_for("/v1/health", "every initial scan", |h| {
            h["sources"]
                .as_array()
                .is_some_and(|s| s.iter().all(|s| s["scan_done"] == true))
        })
    }

    /// Polls `GET path` until `ok` holds for its JSON, and returns that JSON.
    pub fn wait_for(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = self.req("GET", path, b"");
            if r.status == 200 {
                let v = r.json();
                if ok(&v) {
                    return v;
                }
                if Instant::now() > deadline {
                    panic!(
                        "timed out waiting for {what}; last {path}: {v:#}\nlog:\n{}",
                        self.log_text()
                    );
                }
            } else if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; last {path}: {} {}",
                    r.status,
                    r.text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the item exists and `ok` holds for it.
    pub fn wait_item(&self, id: &str, ok: impl Fn(&Value) -> bool) -> Value {
        self.wait_item_within(id, WAIT, ok)
    }

    /// [`Daemon::wait_item`] for longer than [`WAIT`]: for a change that only time makes (an
    /// answer that becomes a success after 10 quiet seconds, say), waited for on top of that time.
    pub fn wait_item_within(
        &self,
        id: &str,
        within: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let r = self.req("GET", &format!("/v1/agents/{id}"), b"");
            if r.status == 200 && ok(&r.json()) {
                return r.json();
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {id}: {} {}\nlog:\n{}",
                    r.status,
                    r.text(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The real `agentctl` with a clean environment pointing at this daemon (no arguments yet;
    /// stdin is /dev/null).
    pub fn agentctl_command(&self) -> Command {
        let mut c = Command::new(bin("agentctl"));
        c.env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AGENTD_SOCKET", &self.socket)
            .env("AGENTD_STATE_DIR", &self.state)
            .env("TZ", "UTC")
            .stdin(Stdio::null());
        c
    }

    /// Runs the real `agentctl` against this daemon.
    pub fn agentctl(&self, args: &[&str]) -> Output {
        agentctl_with(&self.socket, &self.home, &self.state, args)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `agentctl hook AGENT` as the agent CLI would: `payload` on stdin, agentd at `socket`.
pub fn run_hook(d: &Daemon, socket: &Path, agent: &str, payload: &Value) -> Output {
    let mut child = Command::new(bin("agentctl"))
        .args(["hook", agent])
        .env_clear()
        .env("HOME", &d.home)
        .env("AGENTD_SOCKET", socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.to_string().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Where agentd keeps its copy of transcript `file` (`<state>/history/<sha256 of the path>.zst`).
pub fn history_copy(d: &Daemon, file: &Path) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "printf %s \"$1\" | sha256sum", "sh"])
        .arg(file)
        .output()
        .unwrap();
    let hash = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    d.state.join("history").join(format!("{hash}.zst"))
}

/// Runs `agentctl` with a clean environment pointing at `socket`.
pub fn agentctl_with(socket: &Path, home: &Path, state: &Path, args: &[&str]) -> Output {
    Command::new(bin("agentctl"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AGENTD_SOCKET", socket)
        .env("AGENTD_STATE_DIR", state)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .expect("run agentctl")
}

/// An RFC 3339 timestamp `secs` seconds before now.
pub fn ago(secs: i64) -> String {
    format_ms(now_ms() - secs * 1000)
}

/// The wall clock, epoch ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Formats epoch ms as RFC 3339 UTC with milliseconds.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

/// A Codex rollout's `session_meta` payload of session `id` in `/src/api`, as Codex CLI 0.104
/// writes it.
pub fn codex_session_meta(id: &str, at: &str) -> Value {
    serde_json::json!({"id": id, "timestamp": at, "cwd": "/src/api",
        "originator": "codex_cli_rs", "cli_version": "0.104.0", "source": "cli"})
}

/// A Codex `token_count` event payload: `total` input tokens so far and a tenth as output.
pub fn codex_token_count(total: u64) -> Value {
    serde_json::json!({"type": "token_count", "info": {"total_token_usage": {
        "input_tokens": total, "cached_input_tokens": 0, "output_tokens": total / 10,
        "reasoning_output_tokens": 0, "total_tokens": total + total / 10},
        "last_token_usage": null, "model_context_window": 272000}})
}

/// One run-log record as a JSON line.
pub fn rec(v: Value) -> String {
    v.to_string()
}

/// The ids of a `/v1/agents` answer, in order.
pub fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Reads `stream` into `buf` until `buf` contains `want` (panics after [`WAIT`]).
pub fn read_until(stream: &mut UnixStream, buf: &mut String, want: &str) {
    let deadline = Instant::now() + WAIT;
    let mut chunk = [0u8; 4096];
    while !buf.contains(want) {
        assert!(
            Instant::now() < deadline,
            "no {want:?} in the stream:\n{buf}"
        );
        match stream.read(&mut chunk) {
            Ok(0) => panic!("stream ended before {want:?}:\n{buf}"),
            Ok(n) => buf.push_str(&String::from_utf8_lossy(&chunk[..n])),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the stream: {e}"),
        }
    }
}

/// Subscribes to `/v1/events` on the daemon's socket (all tabs).
pub fn subscribe(d: &Daemon) -> UnixStream {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(b"GET /v1/events?tab=all HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    s
}

/// The entry of source `name` in a `/v1/health` answer.
pub fn source_in(health: &Value, name: &str) -> Option<Value> {
    health["sources"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}
