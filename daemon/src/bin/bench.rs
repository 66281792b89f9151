//! `agentd-bench`: the core benchmark. Run it with
//!
//! ```text
//! cargo build --release --workspace && target/release/agentd-bench [--items 100000,1000000]
//! ```
//!
//! For each item count it writes that many run logs (the contract's format) into a fresh runs
//! dir, starts the release `agentd` on it and measures, through the real ingest path and the
//! real socket:
//! - backfill: time until every file is an item (and the database size);
//! - p50/p99 of `GET /v1/agents?status=…&limit=50` and `GET /v1/summary` (a new connection per
//!   request, as `agentctl` makes);
//! - daemon RSS after the queries (VmRSS, and the peak VmHWM);
//! - cold start to socket ready (restart, median of several), then RSS after the restart scan;
//! - the whole-process time of `agentctl prompt` next to a hello-world Rust binary.
//!
//! Generated files are kept under the bench dir and reused when the count matches, so a second
//! run skips generation.

#[path = "bench/cloud.rs"]
mod cloud;
#[path = "bench/formats.rs"]
mod formats;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/stores.rs"]
mod stores;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Args {
    items: Vec<usize>,
    requests: usize,
    dir: PathBuf,
    /// Also measure `agentctl run`: overhead on 100 MB of output, start-to-visible latency.
    cli_runs: bool,
    /// Also measure the conversation stores: backfill, cost today, line-to-event latency.
    stores: bool,
    /// Also measure every store format on its own and all together, against ccusage's costs.
    formats: bool,
    /// A `ccusage` binary to compare the stores backfill with.
    ccusage: Option<PathBuf>,
    /// Also measure the cloud sync against a local server.
    cloud: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        items: vec![100_000, 1_000_000],
        requests: 2000,
        dir: std::env::temp_dir().join("agentd-bench"),
        cli_runs: false,
        stores: false,
        formats: false,
        ccusage: None,
        cloud: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--items" => {
                a.items = value()
                    .split(',')
                    .map(|n| n.trim().parse().unwrap_or_else(|_| usage("bad --items")))
                    .collect()
            }
            "--requests" => {
                a.requests = value().parse().unwrap_or_else(|_| usage("bad --requests"))
            }
            "--dir" => a.dir = PathBuf::from(value()),
            "--cli-runs" => a.cli_runs = true,
            "--stores" => a.stores = true,
            "--formats" => a.formats = true,
            "--cloud" => a.cloud = true,
            "--ccusage" => a.ccusage = Some(PathBuf::from(value())),
            "--no-items" => a.items.clear(),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    a
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("agentd-bench: {msg}");
    }
    eprintln!(
        "usage: agentd-bench [--items N[,N…] | --no-items] [--requests R] [--dir DIR] [--cli-runs]\n\
         \x20                   [--stores] [--formats] [--ccusage PATH] [--cloud]\n\
         \x20      agentd-bench report [--ccusage PATH] [--out FILE] [--large] [--quick]"
    );
    std::process::exit(2)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    agentd_wire::format_rfc3339_ms(ms)
}

/// A tiny deterministic generator (no dependency, same corpus every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// Writes `n` run logs: 1% working and 1% blocked (recent), the rest finished over a year.
fn generate(runs: &Path, n: usize) -> std::io::Result<()> {
    let marker = runs.join(".generated");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(&generated_marker(n)) {
        println!("  reusing {n} generated run logs in {}", runs.display());
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(runs);
    std::fs::create_dir_all(runs)?;
    let started = Instant::now();
    let now = now_ms();
    let mut rng = Lcg(42);
    let sources = ["cli", "api", "slack", "linear", "scheduled"];
    let harnesses = ["claude-code", "codex", "gemini"];
    let mut bytes = 0usize;
    for i in 0..n {
        let kind = i % 100;
        let age = if kind < 2 {
            (rng.next() % 3_600_000) as i64
        } else {
            (rng.next() % (365 * 86_400_000)) as i64
        };
        let start = now - age;
        let creator = if i % 10 < 7 {
            String::new()
        } else {
            format!(",\"creator\":\"user{}\"", i % 5)
        };
        let mut text = format!(
            "{{\"type\":\"start\",\"ts\":\"{}\",\"title\":\"bench run {i}: fix the flaky test in module {}\",\"harness\":\"{}\",\"source\":\"{}\",\"cwd\":\"/src/project{}\"{creator}}}\n",
            rfc3339(start),
            i % 97,
            harnesses[i % 3],
            sources[i % 5],
            i % 13
        );
        text.push_str(&format!(
            "{{\"type\":\"usage\",\"ts\":\"{}\",\"model\":\"claude-sonnet-4-5\",\"input_tokens\":{},\"output_tokens\":{},\"cost_usd\":{:.4}}}\n",
            rfc3339(start + 1000),
            rng.next() % 100_000,
            rng.next() % 10_000,
            (rng.next() % 10_000) as f64 / 10_000.0
        ));
        let last = match kind {
            0 => start + 1000,
            1 => {
                text.push_str(&format!(
                    "{{\"type\":\"status\",\"ts\":\"{}\",\"status\":\"blocked\",\"detail\":\"waiting for approval\"}}\n",
                    rfc3339(start + 2000)
                ));
                start + 2000
            }
            k => {
                let status = if k < 70 {
                    "success"
                } else if k < 90 {
                    "failed"
                } else {
                    "canceled"
                };
                let end = start + 1000 + (rng.next() % 3_600_000) as i64;
                text.push_str(&format!(
                    "{{\"type\":\"end\",\"ts\":\"{}\",\"status\":\"{status}\",\"exit_code\":{}}}\n",
                    rfc3339(end),
                    if status == "success" { 0 } else { 1 }
                ));
                end
            }
        };
        bytes += text.len();
        // Named as `agentctl run` names its logs: 12 hex digits of a hash, in no order of time.
        let path = runs.join(format!("{:012x}.jsonl", run_name_hash(i as u64)));
        std::fs::write(&path, text)?;
        // Written when its last record was, as a run's writer leaves it.
        std::fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(std::time::UNIX_EPOCH + Duration::from_millis(last.max(0) as u64))?;
    }
    std::fs::write(&marker, generated_marker(n))?;
    println!(
        "  generated {n} run logs ({:.1} MB) in {:.1}s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What `.generated` says of a corpus of `n` run logs of this generator (a corpus of an older
/// one is generated again).
fn generated_marker(n: usize) -> String {
    format!("{n} (modified when last written, hashed names)")
}

/// A run log's name for the `i`th generated run: distinct for every `i` below 2^48 (an
/// invertible mix of the low 48 bits), scattered like `agentctl run`'s hashed names.
fn run_name_hash(i: u64) -> u64 {
    const MASK: u64 = (1 << 48) - 1;
    // Odd multipliers and xor-shifts are each invertible modulo 2^48.
    let mut x = i & MASK;
    x = x.wrapping_mul(0x9E37_79B9_7F4B) & MASK;
    x ^= x >> 23;
    x = x.wrapping_mul(0xBF58_476D_1CE5) & MASK;
    x ^ (x >> 29)
}

fn request(socket: &Path, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = UnixStream::connect(socket)?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let status = std::str::from_utf8(raw.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => raw[i + 4..].to_vec(),
        None => Vec::new(),
    };
    Ok((status, body))
}

fn health(socket: &Path) -> Option<serde_json::Value> {
    let (status, body) = request(socket, "/v1/health").ok()?;
    if status != 200 {
        return None;
    }
    serde_json::from_slice(&body).ok()
}

struct Daemon {
    child: Child,
    socket: PathBuf,
}

fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let p = exe.with_file_name(name);
    if !p.exists() {
        usage(&format!(
            "{} is missing; build with `cargo build --release --workspace`",
            p.display()
        ));
    }
    p
}

fn start(dir: &Path) -> (Daemon, Duration) {
    start_with_home(dir, &dir.join("home"))
}

/// Starts agentd with `home` as HOME: the conversation stores it finds are the ones under it
/// (never the bench user's own).
fn start_with_home(dir: &Path, home: &Path) -> (Daemon, Duration) {
    start_with_env(dir, home, &[])
}

/// [`start_with_home`] with more environment variables for agentd.
fn start_with_env(dir: &Path, home: &Path, env: &[(&str, &str)]) -> (Daemon, Duration) {
    let socket = dir.join("agentd.sock");
    std::fs::create_dir_all(home).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agentd.log"))
        .unwrap();
    let config = dir.join("config.toml");
    if !config.exists() {
        std::fs::write(&config, "# agentd-bench: defaults\n").unwrap();
    }
    let started = Instant::now();
    let mut child = Command::new(sibling("agentd"))
        .args(["--http", "off", "--state-dir"])
        .arg(dir.join("state"))
        .arg("--socket")
        .arg(&socket)
        .env("AGENTD_CONFIG", &config)
        .env("AGENTD_USER", "bench")
        .env("AGENTD_LOG", "warn")
        .env("HOME", home)
        .env_remove("CLAUDE_CONFIG_DIR")
        .env_remove("CODEX_HOME")
        .env_remove("GEMINI_CLI_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("QWEN_DATA_DIR")
        .env_remove("QWEN_RUNTIME_DIR")
        .env_remove("DROID_SESSIONS_DIR")
        .env_remove("FACTORY_DIR")
        .env_remove("COPILOT_HOME")
        .env_remove("KIMI_DATA_DIR")
        .env_remove("KIMI_SHARE_DIR")
        .env_remove("KIMI_CODE_HOME")
        .env_remove("OPENCODE_DATA_DIR")
        .env_remove("OPENCODE_DB")
        .env_remove("GOOSE_PATH_ROOT")
        .env_remove("WARP_API_KEY")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn agentd");
    loop {
        if health(&socket).is_some() {
            return (Daemon { child, socket }, started.elapsed());
        }
        let exited = child.try_wait().ok().flatten().is_some();
        assert!(
            !exited && started.elapsed() < Duration::from_secs(60),
            "agentd did not start; see {}/agentd.log",
            dir.display()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

impl Daemon {
    fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }

    fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// User and system CPU time the daemon has used so far.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(11) + ticks(12)) / hz
    }

    /// Waits until the runs source has finished its scan and holds `items` items.
    fn wait_items(&self, items: usize) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(h) = health(&self.socket) {
                let src = &h["sources"][0];
                if h["items"].as_u64() == Some(items as u64) && src["scan_done"] == true {
                    return started.elapsed();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The database file's size once it has stopped changing for [`AT_REST_AFTER`] and the daemon
/// has not answered `503` (it compacts the file once idle after a backfill, and readers are
/// told `unavailable` meanwhile; a large file's size changes only at the end of it), and how
/// long that took; gives up after 120 s.
/// How long the file must stay the same size, with no `503`, to be at rest. Before it compacts,
/// the writer syncs what the backfill's last commits left unsynced (they are listed before
/// they are synced): for a million run logs that took 3 s, with the file unchanged and readers
/// answered.
const AT_REST_AFTER: Duration = Duration::from_secs(10);

fn settled_size(db: &Path, socket: &Path) -> (u64, Duration) {
    let started = Instant::now();
    let size = || std::fs::metadata(db).map(|m| m.len()).unwrap_or(0);
    let (mut last, mut since) = (size(), Instant::now());
    let mut changed_at = Duration::ZERO;
    while since.elapsed() < AT_REST_AFTER && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(50));
        let now = size();
        // A list reads the database (the summary is served from memory).
        let compacting = request(socket, "/v1/agents?tab=all&limit=1").is_ok_and(|(s, _)| s == 503);
        if now != last || compacting {
            (last, since) = (now, Instant::now());
            changed_at = started.elapsed();
        }
    }
    (last, changed_at)
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

fn measure(socket: &Path, path: &str, n: usize) -> (f64, f64) {
    // The writer may be compacting the file a backfill left (readers are answered 503 for that
    // while): measured once it is done.
    let deadline = Instant::now() + Duration::from_secs(300);
    while request(socket, path).map(|(status, _)| status).ok() == Some(503)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (status, _) = request(socket, path).expect("request");
        samples.push(t.elapsed());
        assert_eq!(status, 200, "{path}");
    }
    percentiles(samples)
}

/// How a producer of output is run in the `agentctl run` benchmark.
#[derive(Clone, Copy)]
enum Baseline {
    /// Straight to /dev/null: the cheapest sink there is.
    Direct,
    /// Through a pipe to `cat`, as any tee or pager would take it.
    Piped,
    /// Through `agentctl run`, recorded.
    Wrapped,
}

fn time_process(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
    t.elapsed()
}

/// `agentctl prompt` against a hello-world binary: (prompt ms, hello ms, daemon-down ms),
/// medians of 300 whole-process runs; `None` without rustc.
fn bench_prompt(dir: &Path, socket: &Path) -> Option<(f64, f64, f64)> {
    let hello_src = dir.join("hello.rs");
    let hello = dir.join("hello");
    std::fs::write(&hello_src, "fn main() { println!(\"hello\"); }\n").unwrap();
    let built = Command::new("rustc")
        .args(["-O", "-o"])
        .arg(&hello)
        .arg(&hello_src)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        println!("  prompt: rustc not found, hello-world comparison skipped");
        return None;
    }
    let agentctl = sibling("agentctl");
    let (mut p, mut h, mut down) = (Vec::new(), Vec::new(), Vec::new());
    let missing = dir.join("missing.sock");
    for _ in 0..300 {
        p.push(time_process(
            Command::new(&agentctl)
                .arg("prompt")
                .env("AGENTD_SOCKET", socket),
        ));
        h.push(time_process(&mut Command::new(&hello)));
        down.push(time_process(
            Command::new(&agentctl)
                .arg("prompt")
                .env("AGENTD_SOCKET", &missing),
        ));
    }
    let (pp, _) = percentiles(p);
    let (hp, _) = percentiles(h);
    let (dp, _) = percentiles(down);
    println!(
        "  agentctl prompt (whole process, median of 300): {pp:.2} ms  |  hello-world: {hp:.2} ms  |  ratio {:.2}x  |  daemon down: {dp:.2} ms",
        pp / hp
    );
    Some((pp, hp, dp))
}

/// `agentctl run` against running the command directly, and how soon a run is visible.
fn bench_cli_runs(dir: &Path) {
    println!("== agentctl run");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let (d, _) = start(dir);
    let agentctl = sibling("agentctl");
    let state = dir.join("state");
    // Each wrapped run is timed as the user sees it (the daemon tails its log meanwhile);
    // before the next measurement the daemon has ingested it to the end, so that one run's
    // ingest does not slow the next measurement down.
    let time = |producer: &[&str], how: Baseline| -> Duration {
        match how {
            Baseline::Direct => {
                let mut c = Command::new(producer[0]);
                c.args(&producer[1..]);
                return time_process(&mut c);
            }
            Baseline::Piped => {
                // `producer | cat > /dev/null`: what passing output through any pipe costs.
                let t = Instant::now();
                let mut p = Command::new(producer[0])
                    .args(&producer[1..])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("producer");
                let mut cat = Command::new("cat")
                    .stdin(p.stdout.take().unwrap())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("cat");
                let _ = p.wait();
                let _ = cat.wait();
                return t.elapsed();
            }
            Baseline::Wrapped => {}
        }
        let t = Instant::now();
        let out = Command::new(&agentctl)
            .arg("run")
            .arg("--")
            .args(producer)
            .env("AGENTD_STATE_DIR", &state)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("agentctl run");
        let took = t.elapsed();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Some(id) = err.split_whitespace().find(|w| w.starts_with("cli:")) {
            let done = Instant::now();
            while done.elapsed() < Duration::from_secs(120) {
                let body = request(&d.socket, &format!("/v1/agents/{id}"))
                    .map(|r| r.1)
                    .unwrap_or_default();
                if String::from_utf8_lossy(&body).contains("\"status\":\"success\"") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        took
    };
    // Start of `agentctl run` to the item answering on the socket.
    let mut samples = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let mut child = Command::new(&agentctl)
            .args(["run", "--", "sleep", "0.3"])
            .env("AGENTD_STATE_DIR", &state)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agentctl run");
        let mut err = child.stderr.take().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while err.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let Some(id) = text.split_whitespace().find(|w| w.starts_with("cli:")) else {
            panic!("no run id in {text:?}");
        };
        loop {
            if request(&d.socket, &format!("/v1/agents/{id}")).is_ok_and(|r| r.0 == 200) {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        samples.push(t.elapsed());
        let _ = child.wait();
    }
    let (p50, p99) = percentiles(samples);
    println!(
        "  run start to item visible over the socket (100 runs): p50 {p50:.2} ms, p99 {p99:.2} ms"
    );
    // Commands that print ~100 MB: a pure flood in 4 KiB writes (`seq`, 800 MB/s on its own),
    // and a program that does a little work per line and writes each line as it goes (`-u`), as
    // agent CLIs do: 2.5 million writes.
    let producers: [(&str, &[&str]); 2] = [
        ("seq 1 13500000", &["seq", "1", "13500000"]),
        (
            "python3 -u line printer",
            &[
                "python3",
                "-u",
                "-c",
                "import sys\nw=sys.stdout.write\nfor i in range(2500000): w(f'{i} step: reading files, running tests, {i*7} ok\\n')",
            ],
        ),
    ];
    for (name, producer) in producers {
        let Ok(probe) = Command::new(producer[0]).args(&producer[1..]).output() else {
            println!("  {name}: not available, skipped");
            continue;
        };
        let bytes = probe.stdout.len();
        let (mut direct, mut piped, mut wrapped) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..7 {
            direct.push(time(producer, Baseline::Direct));
            piped.push(time(producer, Baseline::Piped));
            wrapped.push(time(producer, Baseline::Wrapped));
        }
        let (dp, _) = percentiles(direct);
        let (pp, _) = percentiles(piped);
        let (wp, _) = percentiles(wrapped);
        println!(
            "  {name}: {:.0} MB, median of 7: direct > /dev/null {dp:.0} ms, | cat {pp:.0} ms, \
             agentctl run {wp:.0} ms: overhead {:+.1}% against direct, {:+.1}% against | cat",
            bytes as f64 / 1e6,
            (wp / dp - 1.0) * 100.0,
            (wp / pp - 1.0) * 100.0
        );
    }
    d.stop();
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("report") {
        report::main(std::env::args().skip(2).collect());
        return;
    }
    let args = parse_args();
    if args.cloud {
        cloud::bench(&args.dir.join("cloud"));
    }
    if args.stores {
        stores::bench(&args.dir.join("stores"), args.ccusage.as_deref());
    }
    if args.formats {
        let _ = formats::bench(&args.dir.join("formats"), args.ccusage.as_deref());
    }
    if args.cli_runs {
        bench_cli_runs(&args.dir.join("cli-runs"));
    }
    for &n in &args.items {
        println!("== {n} items");
        let dir = args.dir.join(n.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let runs = dir.join("state").join("runs");
        let db = dir.join("state").join("agentd.redb");
        let fresh_db = !db.exists()
            || std::fs::read_to_string(runs.join(".generated")).ok() != Some(generated_marker(n));
        generate(&runs, n).expect("generate run logs");
        if fresh_db {
            let _ = std::fs::remove_file(&db);
        }
        let (d, _) = start(&dir);
        let took = d.wait_items(n);
        let after_backfill = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        // Over a database left by an earlier run too: a start checks whether the file wants
        // compacting once it is idle, and readers are answered 503 while it is compacted.
        let (at_rest, settled) = settled_size(&db, &d.socket);
        if fresh_db {
            println!(
                "  backfill through the runs-dir ingest: {:.1}s ({:.0} files/s), database {:.0} MB, at rest {:.0} MB ({:.2} KB per item, compacted {:.1}s later)",
                took.as_secs_f64(),
                n as f64 / took.as_secs_f64(),
                after_backfill as f64 / 1e6,
                at_rest as f64 / 1e6,
                at_rest as f64 / n as f64 / 1024.0,
                settled.as_secs_f64(),
            );
        }
        for path in [
            "/v1/agents?status=working&limit=50",
            "/v1/agents?tab=all&status=failed&limit=50",
            "/v1/agents?tab=all&status=blocked,working&source=slack&limit=50",
            "/v1/summary",
        ] {
            let (p50, p99) = measure(&d.socket, path, args.requests);
            println!("  GET {path:<62} p50 {p50:.3} ms  p99 {p99:.3} ms");
        }
        let (rss, hwm) = d.rss_kib();
        println!(
            "  daemon RSS after queries: {:.1} MB (peak {:.1} MB)",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
        d.stop();

        let mut starts = Vec::new();
        for i in 0..5 {
            let (d, ready) = start(&dir);
            starts.push(ready);
            let scan = d.wait_items(n);
            if i == 4 {
                let (rss, hwm) = d.rss_kib();
                println!(
                    "  restart scan of {n} unchanged files: {:.2}s; RSS after it {:.1} MB (peak {:.1} MB)",
                    scan.as_secs_f64(),
                    rss as f64 / 1024.0,
                    hwm as f64 / 1024.0
                );
                let _ = bench_prompt(&dir, &d.socket);
            }
            d.stop();
        }
        let (p50, _) = percentiles(starts.clone());
        let max = starts.iter().max().unwrap().as_secs_f64() * 1e3;
        println!("  cold start to socket ready (5 restarts): median {p50:.1} ms, max {max:.1} ms");
    }
}
