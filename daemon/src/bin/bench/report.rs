//! `agentd-bench report [--ccusage PATH] [--out FILE] [--large] [--quick] [--rounds N]
//! [--backfill-only]`:
//! the whole benchmark in one run, written as a Markdown report (and an SVG chart beside it).
//!
//! - backfill of seeded conversation corpora (Claude Code 70 %, Codex 30 %, all today) of
//!   2,000 and 10,000 conversations (and 50,000 with `--large`): agentd from start to every
//!   item queryable, against `ccusage claude daily` + `ccusage codex daily` on the same files,
//!   and against the fold limit (every line decoded and folded on one core, in memory, nothing
//!   read from disk or stored: the least work a backfill can do; divided by the cores, the
//!   shortest a backfill could take), wall time, CPU time and peak RSS side by side, their
//!   ratios, when agentd's history copies
//!   (made after the backfill) were all made and its CPU time by then, its RSS settled after
//!   them, a restart over what it ingested (to every source scanned, and its RSS then), and
//!   today's cost from both. The backfill and ccusage run in turn `--rounds` times (3 by
//!   default): the report gives the medians and the range of the paired ratios, since a shared
//!   machine's speed changes from one minute to the next;
//! - "cost today" again: agentd's `/v1/summary` against a ccusage rerun;
//! - a line appended → its item's update on `/v1/events`;
//! - agentd's CPU while idle for 60 s (10 s with `--quick`);
//! - 100,000 run logs (and 1,000,000 with `--large`), warm in the page cache: backfill (`--rounds`
//!   times for 100,000, each from an empty database), database
//!   size per item, list latency (one filter, and two that match nothing) and summary latency,
//!   restart (and the RSS after it), cold start, `agentctl prompt` against a hello-world binary;
//! - every store format on its own and all of them at once, costs against ccusage.
//!
//! The corpora are kept under `--dir` (default `$TMPDIR/agentd-bench`) and reused the same day.

use super::stores::{self, ccusage_run};
use super::{generate, health, measure, start, start_with_home};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Options {
    ccusage: Option<PathBuf>,
    out: PathBuf,
    dir: PathBuf,
    large: bool,
    quick: bool,
    /// Only the backfill rows, printed; no report written.
    backfill_only: bool,
    /// Backfills (each beside a ccusage run) per corpus size: medians are reported.
    rounds: usize,
}

fn options(args: Vec<String>) -> Options {
    let mut o = Options {
        ccusage: None,
        out: PathBuf::from("bench/REPORT.md"),
        dir: std::env::temp_dir().join("agentd-bench"),
        large: false,
        quick: false,
        backfill_only: false,
        rounds: 3,
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ccusage" => o.ccusage = it.next().map(PathBuf::from),
            "--out" => o.out = it.next().map(PathBuf::from).unwrap_or(o.out),
            "--dir" => o.dir = it.next().map(PathBuf::from).unwrap_or(o.dir),
            "--large" => o.large = true,
            "--quick" => o.quick = true,
            "--backfill-only" => o.backfill_only = true,
            "--rounds" => match it.next().and_then(|n| n.parse().ok()) {
                Some(n) if n >= 1 => o.rounds = n,
                _ => {
                    eprintln!("agentd-bench report: --rounds takes a number of at least 1");
                    std::process::exit(2);
                }
            },
            other => {
                eprintln!(
                    "agentd-bench report: unknown argument {other}\n\
                     usage: agentd-bench report [--ccusage PATH] [--out FILE] [--dir DIR] [--large] [--quick] [--rounds N] [--backfill-only]"
                );
                std::process::exit(2);
            }
        }
    }
    o
}

/// One corpus size: agentd's and ccusage's figures.
struct Scale {
    sessions: usize,
    mb: f64,
    /// agentd's backfill, start to every item queryable: the medians over the rounds.
    wall: f64,
    cpu: f64,
    /// Each round's agentd wall and CPU over ccusage's (paired: run one after the other): the
    /// lowest and the highest, and the median.
    wall_ratios: Option<Range>,
    cpu_ratios: Option<Range>,
    rounds: usize,
    peak_mb: f64,
    settled_mb: f64,
    /// When the history copies of every file were made (they wait for the backfill), and
    /// agentd's CPU time by then.
    copied: f64,
    cpu_with_copies: f64,
    cost: f64,
    /// A restart over the ingested corpus, to every source scanned (seconds), and the RSS then.
    restart: f64,
    restart_mb: f64,
    /// Every line of the corpus decoded and folded on one core, in memory (seconds).
    fold_limit: f64,
    /// wall, cpu (medians over the rounds), peak MB (the largest run), cost
    ccusage: Option<(f64, f64, f64, f64)>,
}

/// Figures of several rounds: lowest, median, highest.
#[derive(Clone, Copy)]
struct Range {
    low: f64,
    median: f64,
    high: f64,
}

impl Range {
    fn of(mut values: Vec<f64>) -> Option<Range> {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => values[n / 2],
            _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        };
        Some(Range {
            low: values[0],
            median,
            high: values[n - 1],
        })
    }

    /// `0.45 (0.41–0.52)`, or just the figure when every round gave it.
    fn show(&self) -> String {
        if self.high - self.low < 0.005 {
            format!("{:.2}", self.median)
        } else {
            format!("{:.2} ({:.2}–{:.2})", self.median, self.low, self.high)
        }
    }
}

/// The least work a backfill of `home` can do: every line of every conversation file decoded
/// and folded by agentd's own folds on one core, the files already in memory, nothing stored.
/// The best of three rounds, in seconds.
fn fold_limit(home: &Path) -> f64 {
    use agentd::ingest::convo::ConversationFold;
    fn fold_all<F: ConversationFold>(files: &[Vec<u8>], prices: &agentd::prices::Prices) -> usize {
        let mut lines = 0;
        for bytes in files {
            let mut fold = F::default();
            let mut start = 0;
            // Lines found as agentd finds them (memchr), not byte by byte.
            for end in memchr::memchr_iter(b'\n', bytes).chain([bytes.len()]) {
                let line = &bytes[start..end];
                start = end + 1;
                if !line.is_empty() {
                    let _ = fold.apply(line, prices);
                    lines += 1;
                }
            }
            std::hint::black_box(&fold);
        }
        lines
    }
    fn read_all(dir: &Path, out: &mut Vec<Vec<u8>>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                read_all(&p, out);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                out.push(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    let (mut claude, mut codex) = (Vec::new(), Vec::new());
    read_all(&home.join(".claude/projects"), &mut claude);
    read_all(&home.join(".codex/sessions"), &mut codex);
    let prices = agentd::prices::Prices::builtin();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            fold_all::<agentd::ingest::claude::ClaudeFold>(&claude, &prices);
            fold_all::<agentd::ingest::codex::CodexFold>(&codex, &prices);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn backfill_scale(dir: &Path, sessions: usize, ccusage: Option<&Path>, rounds: usize) -> Scale {
    let dir = dir.join(format!("scale-{sessions}"));
    let home = dir.join("home");
    let (bytes, _) = stores::generate(&home, sessions);
    super::formats::warm(&home);
    let _ = std::fs::remove_dir_all(dir.join("state"));
    let (d, _) = start_with_home(&dir, &home);
    let started = Instant::now();
    let wall = super::formats::backfill(&d.socket, sessions, started).as_secs_f64();
    let cpu = d.cpu_seconds();
    // The copies are made once the backfill is done, at the lowest priority; the memory
    // settles after them.
    wait_for_copies(&dir, &home, started);
    let copied = started.elapsed().as_secs_f64();
    let cpu_with_copies = d.cpu_seconds();
    let (_, hwm) = d.rss_kib();
    std::thread::sleep(Duration::from_secs(2));
    let (settled, _) = d.rss_kib();
    let cost = stores::today_cost(&d.socket);
    d.stop();
    // A restart over what was ingested: every file's cursor is checked, none is read again.
    let (d, _) = start_with_home(&dir, &home);
    let restart_started = Instant::now();
    let restart = super::formats::backfill(&d.socket, sessions, restart_started).as_secs_f64();
    let (restart_rss, _) = d.rss_kib();
    d.stop();
    let fold_limit = fold_limit(&home);
    // ccusage once: wall, CPU, the larger peak RSS of its two runs, cost.
    let theirs_once = |bin: &Path| {
        let args = |agent| [agent, "daily", "--json", "--offline", "-z", "UTC"];
        let a = ccusage_run(bin, &home, &args("claude"))?;
        let b = ccusage_run(bin, &home, &args("codex"))?;
        Some((
            (a.wall + b.wall).as_secs_f64(),
            a.cpu_seconds + b.cpu_seconds,
            a.rss_kib.max(b.rss_kib) as f64 / 1024.0,
            a.cost + b.cost,
        ))
    };
    // Each round: agentd's backfill from an empty state, then ccusage on the same files; the
    // first round's backfill is the one above.
    let mut pairs = vec![((wall, cpu), ccusage.and_then(theirs_once))];
    for _ in 1..rounds {
        let _ = std::fs::remove_dir_all(dir.join("state"));
        let (d, _) = start_with_home(&dir, &home);
        let started = Instant::now();
        let wall = super::formats::backfill(&d.socket, sessions, started).as_secs_f64();
        let cpu = d.cpu_seconds();
        d.stop();
        pairs.push(((wall, cpu), ccusage.and_then(theirs_once)));
    }
    let median = |v: Vec<f64>| Range::of(v).map_or(0.0, |r| r.median);
    let theirs: Vec<_> = pairs.iter().filter_map(|(_, t)| *t).collect();
    let ratios = |of: fn(&(f64, f64, f64, f64)) -> f64, ours: fn(&(f64, f64)) -> f64| {
        Range::of(
            pairs
                .iter()
                .filter_map(|(o, t)| t.as_ref().map(|t| ours(o) / of(t)))
                .collect(),
        )
    };
    let s = Scale {
        sessions,
        mb: bytes as f64 / 1e6,
        wall: median(pairs.iter().map(|(o, _)| o.0).collect()),
        cpu: median(pairs.iter().map(|(o, _)| o.1).collect()),
        wall_ratios: ratios(|t| t.0, |o| o.0),
        cpu_ratios: ratios(|t| t.1, |o| o.1),
        rounds: pairs.len(),
        peak_mb: hwm as f64 / 1024.0,
        settled_mb: settled as f64 / 1024.0,
        copied,
        cpu_with_copies,
        cost,
        restart,
        restart_mb: restart_rss as f64 / 1024.0,
        fold_limit,
        ccusage: (!theirs.is_empty()).then(|| {
            (
                median(theirs.iter().map(|t| t.0).collect()),
                median(theirs.iter().map(|t| t.1).collect()),
                theirs.iter().map(|t| t.2).fold(0.0, f64::max),
                theirs[0].3,
            )
        }),
    };
    println!(
        "  {sessions} conversations: agentd {:.2}s (cpu {:.2}s, peak {:.0} MB, settled {:.0} MB; \
         fold limit {:.2}s on one core; restart {:.2}s, {:.0} MB){}",
        s.wall,
        s.cpu,
        s.peak_mb,
        s.settled_mb,
        s.fold_limit,
        s.restart,
        s.restart_mb,
        s.ccusage.map_or(String::new(), |(w, c, r, _)| format!(
            "; ccusage {w:.2}s (cpu {c:.2}s, peak {r:.0} MB); ratios over {} rounds: wall {}, cpu {}",
            s.rounds,
            s.wall_ratios.map_or("–".into(), |r| r.show()),
            s.cpu_ratios.map_or("–".into(), |r| r.show()),
        ))
    );
    s
}

/// Waits until agentd (state dir `dir/state`) has made the history copy of every conversation
/// file under `home`.
fn wait_for_copies(dir: &Path, home: &Path, started: Instant) {
    let files = files_under(&home.join(".claude")) + files_under(&home.join(".codex"));
    let copies = dir.join("state").join("history");
    while files_under(&copies) < files {
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "the history copies were not made within an hour"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The regular files under `dir` with something in them (an empty file has no copy), at any
/// depth.
fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => files_under(&e.path()),
                Ok(m) if m.is_file() && m.len() > 0 => 1,
                _ => 0,
            })
            .sum()
    })
}

/// The scaling chart: backfill wall time against conversations, agentd and ccusage.
fn svg(scales: &[Scale]) -> String {
    let (w, h, pad) = (560.0, 300.0, 50.0);
    let max_x = scales.iter().map(|s| s.sessions).max().unwrap_or(1) as f64;
    let max_y = scales
        .iter()
        .flat_map(|s| [Some(s.wall), s.ccusage.map(|c| c.0)])
        .flatten()
        .fold(0.1f64, f64::max)
        * 1.1;
    let x = |v: f64| pad + v / max_x * (w - 2.0 * pad);
    let y = |v: f64| h - pad - v / max_y * (h - 2.0 * pad);
    let line = |pts: Vec<(f64, f64)>, color: &str| {
        let p: Vec<String> = pts
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        let dots: String = pts
            .iter()
            .map(|(a, b)| {
                format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                    x(*a),
                    y(*b)
                )
            })
            .collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>{dots}",
            p.join(" ")
        )
    };
    let ours: Vec<(f64, f64)> = scales.iter().map(|s| (s.sessions as f64, s.wall)).collect();
    let theirs: Vec<(f64, f64)> = scales
        .iter()
        .filter_map(|s| s.ccusage.map(|c| (s.sessions as f64, c.0)))
        .collect();
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\"/>\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"#444\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">conversations</text>\
         <text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">backfill, seconds</text>",
        h - pad,
        w - pad,
        h - pad,
        h - pad,
        w / 2.0,
        h - 12.0,
        h / 2.0,
        h / 2.0
    );
    for s in scales {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x(s.sessions as f64),
            h - pad + 16.0,
            s.sessions
        );
    }
    for k in 0..=4 {
        let v = max_y * k as f64 / 4.0;
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>",
            pad - 6.0,
            y(v) + 4.0
        );
    }
    out.push_str(&line(ours, "#1f77b4"));
    if !theirs.is_empty() {
        out.push_str(&line(theirs, "#d62728"));
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" fill=\"#1f77b4\">agentd</text><text x=\"{}\" y=\"{}\" fill=\"#d62728\">ccusage</text></svg>",
        pad + 10.0,
        pad,
        pad + 70.0,
        pad
    );
    out
}

/// Runs everything and writes the report.
pub fn main(args: Vec<String>) {
    let o = options(args);
    let started = Instant::now();
    let mut md = String::new();
    let ccusage_version = o.ccusage.as_ref().and_then(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = writeln!(md, "# agentd benchmark report\n");
    let _ = writeln!(
        md,
        "Generated by `agentd-bench report{}{}{}` on {} ({cores} cores), agentd {}{}. Every ratio is paired within this one run; \
         the machine may have been busy, so compare runs, not single figures.\n",
        if o.large { " --large" } else { "" },
        if o.rounds == 3 {
            String::new()
        } else {
            format!(" --rounds {}", o.rounds)
        },
        if o.ccusage.is_some() {
            " --ccusage …"
        } else {
            ""
        },
        &super::rfc3339(super::now_ms())[..10],
        env!("CARGO_PKG_VERSION"),
        ccusage_version
            .as_ref()
            .map_or(String::new(), |v| format!(", {v}"))
    );

    println!("== backfill against ccusage");
    let mut sizes = vec![2_000, 10_000];
    if o.large {
        sizes.push(50_000);
    }
    let scales: Vec<Scale> = sizes
        .iter()
        .map(|n| backfill_scale(&o.dir, *n, o.ccusage.as_deref(), o.rounds))
        .collect();
    if o.backfill_only {
        return;
    }
    let _ = writeln!(
        md,
        "## Backfill: conversation stores (Claude Code 70 % / Codex 30 %)\n"
    );
    let _ = writeln!(
        md,
        "| conversations | MB | agentd wall | ccusage wall | wall ratio | agentd CPU | ccusage CPU | CPU ratio | fold limit: one core / all cores | agentd wall against the limit on all cores | history copies made (agentd CPU by then) | agentd peak RSS | ccusage peak RSS | agentd RSS settled | restart: all scanned (RSS then) | cost today agentd / ccusage |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in &scales {
        let c = s.ccusage;
        let f =
            |v: Option<f64>, unit: &str| v.map_or("–".to_owned(), |v| format!("{v:.2}{unit}"));
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.2} s | {} | {} | {:.2} s | {} | {} | {:.2} s / {:.2} s | {:.2}× | {:.1} s ({:.2} s) | {:.0} MB | {} | {:.0} MB | {:.2} s ({:.0} MB) | ${:.2} / {} |",
            s.sessions,
            s.mb,
            s.wall,
            f(c.map(|c| c.0), " s"),
            s.wall_ratios.map_or("–".to_owned(), |r| r.show()),
            s.cpu,
            f(c.map(|c| c.1), " s"),
            s.cpu_ratios.map_or("–".to_owned(), |r| r.show()),
            s.fold_limit,
            s.fold_limit / cores as f64,
            s.wall / (s.fold_limit / cores as f64),
            s.copied,
            s.cpu_with_copies,
            s.peak_mb,
            c.map_or("–".to_owned(), |c| format!("{:.0} MB", c.2)),
            s.settled_mb,
            s.restart,
            s.restart_mb,
            s.cost,
            c.map_or("–".to_owned(), |c| format!("${:.2}", c.3)),
        );
    }
    let chart = o.out.with_extension("svg");
    if let Some(parent) = chart.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&chart, svg(&scales)).expect("write the chart");
    let _ = writeln!(
        md,
        "\nThe fold limit is the least work a backfill can do: every line of the corpus decoded and \
         folded by agentd's own folds on one core, the files already in memory, nothing stored (the \
         best of three rounds). Divided by the cores it is the shortest a backfill could take if that \
         work were spread perfectly and reading the files, keeping the database and answering cost \
         nothing; the column after it says how far agentd's backfill is from that."
    );
    let _ = writeln!(
        md,
        "\nThe backfill and ccusage ran in turn {} times on each corpus (agentd from an empty state, \
         then ccusage on the same files): their wall and CPU times are the medians, and a ratio is \
         the median of the rounds' paired ratios, the lowest and the highest in brackets. Peak and \
         settled RSS, the history copies and the restart are the first round's.",
        o.rounds
    );
    let _ = writeln!(
        md,
        "\n![backfill time against conversations, agentd and ccusage]({})\n",
        chart.file_name().unwrap().to_string_lossy()
    );

    println!("== cost today, append → event, idle CPU");
    let small = o.dir.join("scale-2000");
    let home = small.join("home");
    let (_, probe) = stores::generate(&home, 2_000);
    let _ = std::fs::remove_dir_all(small.join("state"));
    let (d, _) = start_with_home(&small, &home);
    let up = Instant::now();
    while health(&d.socket).is_none_or(|h| h["items"].as_u64() < Some(2_000)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Everyday figures are those of a daemon at rest, its backfill's copies made.
    wait_for_copies(&small, &home, up);
    let (sum50, sum99) = measure(&d.socket, "/v1/summary?tab=all", 2000);
    let rerun = o.ccusage.as_ref().and_then(|bin| {
        ccusage_run(
            bin,
            &home,
            &["claude", "daily", "--json", "--offline", "-z", "UTC"],
        )
        .map(|r| r.wall)
    });
    let (ev50, ev99) = stores::append_latency(&d.socket, &probe);
    let idle_for = Duration::from_secs(if o.quick { 10 } else { 60 });
    let before = d.cpu_seconds();
    std::thread::sleep(idle_for);
    let idle = (d.cpu_seconds() - before) / idle_for.as_secs_f64() * 100.0;
    d.stop();
    let _ = writeln!(md, "## Everyday figures (2,000 conversations)\n");
    let _ = writeln!(md, "| figure | value |\n|---|---|");
    let _ = writeln!(
        md,
        "| cost today: `GET /v1/summary` p50 / p99 | {sum50:.3} / {sum99:.3} ms{} |",
        rerun.map_or(String::new(), |r| format!(
            " (a `ccusage claude daily` rerun: {:.0} ms, {:.0}× slower)",
            r.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3 / sum50
        ))
    );
    let _ = writeln!(
        md,
        "| a line appended → its `/v1/events` update, p50 / p99 (200 lines) | {ev50:.2} / {ev99:.2} ms |"
    );
    let _ = writeln!(
        md,
        "| CPU while idle over {} s | {idle:.2} % of a core |",
        idle_for.as_secs()
    );

    println!("== run logs");
    let _ = writeln!(md, "\n## Run logs and queries\n");
    let _ = writeln!(
        md,
        "| items | backfill | files/s | database per item: after backfill / at rest | list p50 / p99 | list of two filters that match nothing p50 / p99 | summary p50 / p99 | restart scan (RSS after it) | cold start | `agentctl prompt` / hello world |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut counts = vec![100_000];
    if o.large {
        counts.push(1_000_000);
    }
    for n in counts {
        let dir = o.dir.join(n.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let runs = dir.join("state").join("runs");
        let db = dir.join("state").join("agentd.redb");
        let _ = std::fs::remove_file(&db);
        generate(&runs, n).expect("generate run logs");
        // In the page cache, as the conversation corpora are: the figure is agentd's, not the
        // disk's.
        super::formats::warm(&runs);
        // The backfill `--rounds` times (a million logs once: it takes minutes), each from an
        // empty database: the median and the range, as for the conversations. The daemon of
        // the last round stays up for the queries.
        let rounds = if n > 100_000 { 1 } else { o.rounds };
        let mut backfills = Vec::with_capacity(rounds);
        let d = loop {
            let _ = std::fs::remove_file(&db);
            let (d, _) = start(&dir);
            backfills.push(d.wait_items(n).as_secs_f64());
            if backfills.len() == rounds {
                break d;
            }
            d.stop();
        };
        let size = std::fs::metadata(&db).map_or(0, |m| m.len());
        let (at_rest, _) = super::settled_size(&db, &d.socket);
        let (l50, l99) = measure(&d.socket, "/v1/agents?tab=all&status=failed&limit=50", 2000);
        // No generated Slack run is working or blocked: the smaller side (2 % of the items)
        // is checked whole against the other before the answer is known to be empty.
        let (e50, e99) = measure(
            &d.socket,
            "/v1/agents?tab=all&status=blocked,working&source=slack&limit=50",
            2000,
        );
        let (s50, s99) = measure(&d.socket, "/v1/summary", 2000);
        d.stop();
        let (d, ready) = start(&dir);
        let scan = d.wait_items(n);
        let (restarted, _) = d.rss_kib();
        let prompt = super::bench_prompt(&dir, &d.socket);
        d.stop();
        let took = Range::of(backfills).expect("at least one round");
        let (backfill, rate) = if took.high - took.low < 0.05 {
            (
                format!("{:.1} s", took.median),
                format!("{:.0}", n as f64 / took.median),
            )
        } else {
            (
                format!("{:.1} s ({:.1}–{:.1})", took.median, took.low, took.high),
                format!(
                    "{:.0} ({:.0}–{:.0})",
                    n as f64 / took.median,
                    n as f64 / took.high,
                    n as f64 / took.low
                ),
            )
        };
        let _ = writeln!(
            md,
            "| {n} | {backfill} | {rate} | {:.2} / {:.2} KB | {l50:.3} / {l99:.3} ms | {e50:.3} / {e99:.3} ms | {s50:.3} / {s99:.3} ms | {:.2} s ({:.0} MB) | {:.1} ms | {} |",
            size as f64 / n as f64 / 1024.0,
            at_rest as f64 / n as f64 / 1024.0,
            scan.as_secs_f64(),
            restarted as f64 / 1024.0,
            ready.as_secs_f64() * 1e3,
            prompt.map_or("–".into(), |(p, h, _)| format!(
                "{p:.2} / {h:.2} ms ({:.2}×)",
                p / h
            ))
        );
    }

    if o.rounds > 1 {
        let _ = writeln!(
            md,
            "\nThe 100,000 logs' backfill is the median of {} rounds, each from an empty \
             database (the slowest and the fastest in brackets); a million logs are backfilled \
             once.",
            o.rounds
        );
    }
    let _ = writeln!(
        md,
        "\nThe list of two filters is `status=blocked,working&source=slack`, which no generated \
         run matches: the tallies of items by status, source and harness say so before a \
         candidate is looked at (without them the smaller side, the 2 % working or blocked, \
         would be checked whole against the other)."
    );

    let (rows, mixed) = super::formats::bench(&o.dir.join("formats"), o.ccusage.as_deref());
    let _ = writeln!(md, "\n## Every store format (300 sessions each)\n");
    let _ = writeln!(
        md,
        "| format | MB | backfill s | MB/s | agentd $ | ccusage $ | difference | note |\n|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(md, "| {} |", r.join(" | "));
    }
    let _ = writeln!(md, "\nAll at once: {mixed}.\n");
    let _ = writeln!(
        md,
        "_Total run time {:.0} s._",
        started.elapsed().as_secs_f64()
    );
    if let Some(parent) = o.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&o.out, md).expect("write the report");
    println!("wrote {} and {}", o.out.display(), chart.display());
}
