//! `GET /metrics`: agentd as a Prometheus target (and the figures an OpenTelemetry exporter
//! would push). Encoded with `prometheus-client` in the OpenMetrics text format, or, for a
//! client that does not ask for OpenMetrics (`promtool`, `curl`), in Prometheus' text format
//! 0.0.4 (see [`to_prometheus_text`]).
//!
//! Two kinds of figures:
//! - **What agentd knows of the agents**, read at scrape time from the tallies the writer keeps
//!   in the database beside its partition counts (see [`crate::store::tallies`]): agents now by
//!   status, source and harness; finishes, tokens, cost, credits and time spent blocked. They
//!   survive restarts, so they never reset; every label value is bounded (a harness outside the
//!   known agent CLIs is `other`), so 10,000 agents make as many series as 10.
//! - **What this process does**: requests by route and code and their latency, commits and their
//!   latency, append-to-visible latency, lines and bytes read and errors per source, cloud
//!   requests and failures, database size, and the standard `process_` figures.

use crate::ingest::SourceStats;
use crate::store::Store;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Labels: a few bounded `(name, value)` pairs.
type Labels = Vec<(&'static str, String)>;

/// The figures this process records as it runs (the rest are read at scrape time).
#[derive(Debug, Clone)]
pub struct Metrics {
    /// This machine's name in the fleet (config `host`, `AGENTD_HOST`, else the hostname).
    pub host: String,
    http_requests: Family<Labels, Counter>,
    http_seconds: Family<Labels, Histogram>,
    /// Commit latency of the writer.
    pub commit_seconds: Histogram,
    /// From a line's append (its file's modification time) to its item being committed, for
    /// changes read as they happen (not scans).
    pub visible_seconds: Histogram,
    /// Write operations sent to the writer and not handled yet.
    pub writer_queue: Arc<AtomicU64>,
}

impl Metrics {
    pub fn new(host: String) -> Metrics {
        Metrics {
            host,
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 4.0, 10))
            }),
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            visible_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            writer_queue: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records one answered request: its route (the matched pattern, never the raw path: ids
    /// would make a series each), its status code and how long it took.
    pub fn request(&self, route: &str, code: u16, took: Duration) {
        let route = route.to_owned();
        self.http_requests
            .get_or_create(&vec![("route", route.clone()), ("code", code.to_string())])
            .inc();
        self.http_seconds
            .get_or_create(&vec![("route", route)])
            .observe(took.as_secs_f64());
    }
}

/// What a scrape reads besides [`Metrics`].
pub struct Scrape<'a> {
    pub metrics: &'a Metrics,
    pub store: &'a Store,
    pub sources: &'a [Arc<SourceStats>],
    /// Persisted error counts per source name.
    pub errors: &'a std::collections::HashMap<String, crate::store::writer::SourceErrors>,
    pub db_path: &'a std::path::Path,
    /// The OpenTelemetry exporter's counts, when it runs.
    pub otel: Option<&'a crate::otel::OtelStats>,
}

/// The exposition, OpenMetrics text (`openmetrics`) or Prometheus text 0.0.4.
pub fn render(s: &Scrape<'_>, openmetrics: bool) -> Result<String, String> {
    let mut r = Registry::with_prefix("agentd");
    let info = Info::new(vec![
        ("version", env!("CARGO_PKG_VERSION").to_owned()),
        ("host", s.metrics.host.clone()),
    ]);
    r.register("build", "agentd's version and this machine's name", info);

    // What agentd knows of the agents, from the committed tallies.
    let agents = Family::<Labels, Gauge>::default();
    let finished = Family::<Labels, Counter>::default();
    let tokens = Family::<Labels, Counter>::default();
    let cost = Family::<Labels, Counter<f64, AtomicU64>>::default();
    let credits = Family::<Labels, Counter<f64, AtomicU64>>::default();
    let blocked = Family::<Labels, Counter<f64, AtomicU64>>::default();
    let tallies = s.store.tallies().map_err(|e| e.to_string())?;
    for (key, value) in tallies {
        let (kind, rest) = key.split_at(2);
        let parts: Vec<String> = rest.split('|').map(str::to_owned).collect();
        let label = |names: &[&'static str]| -> Option<Labels> {
            (parts.len() == names.len())
                .then(|| names.iter().copied().zip(parts.iter().cloned()).collect())
        };
        match kind {
            "x:" => {
                if let Some(l) = label(&["status", "source", "harness"]) {
                    agents.get_or_create(&l).set(value as i64);
                }
            }
            "f:" => {
                if let Some(l) = label(&["status", "harness"]) {
                    finished.get_or_create(&l).inc_by(value);
                }
            }
            "t:" => {
                if let Some(l) = label(&["harness", "kind"]) {
                    tokens.get_or_create(&l).inc_by(value);
                }
            }
            "u:" | "k:" | "w:" => {
                let (family, scale) = match kind {
                    "u:" => (&cost, 1e6),
                    "k:" => (&credits, 1e6),
                    _ => (&blocked, 1e3),
                };
                if let Some(l) = label(&["harness"]) {
                    family.get_or_create(&l).inc_by(value as f64 / scale);
                }
            }
            _ => {}
        }
    }
    r.register(
        "agents",
        "Agents agentd knows of now, by status, source and harness",
        agents,
    );
    r.register(
        "agents_finished",
        "Times an agent reached a final status (a conversation counts each finished turn)",
        finished,
    );
    r.register(
        "tokens",
        "Tokens used by the agents agentd knows of, by kind (input, output, cache_read, cache_write)",
        tokens,
    );
    r.register_with_unit(
        "cost",
        "Estimated cost of the agents agentd knows of",
        Unit::Other("usd".into()),
        cost,
    );
    r.register(
        "credits",
        "Credits reported for the agents agentd knows of (cloud runs, Copilot CLI)",
        credits,
    );
    r.register_with_unit(
        "blocked",
        "Time agents spent waiting on a person, finished waits",
        Unit::Seconds,
        blocked,
    );

    // Ingestion per source.
    let lines = Family::<Labels, Counter>::default();
    let bytes = Family::<Labels, Counter>::default();
    let errors = Family::<Labels, Counter>::default();
    let files = Family::<Labels, Gauge>::default();
    let cloud_requests = Counter::<u64>::default();
    let cloud_failures = Counter::<u64>::default();
    for src in s.sources {
        let l = vec![("source", src.name.to_owned())];
        lines
            .get_or_create(&l)
            .inc_by(src.lines.load(Ordering::Relaxed));
        bytes
            .get_or_create(&l)
            .inc_by(src.bytes.load(Ordering::Relaxed));
        files.get_or_create(&l).set(src.files() as i64);
        errors
            .get_or_create(&l)
            .inc_by(s.errors.get(src.name).map_or(0, |e| e.errors));
        if src.kind == crate::sources::SourceKind::Cloud {
            cloud_requests.inc_by(src.requests.load(Ordering::Relaxed));
            cloud_failures.inc_by(src.failures.load(Ordering::Relaxed));
        }
    }
    r.register("ingest_lines", "Lines read, per source", lines);
    r.register_with_unit("ingest", "Data read, per source", Unit::Bytes, bytes);
    r.register(
        "ingest_errors",
        "Lines, files or requests that could not be read, per source",
        errors,
    );
    r.register(
        "ingest_files",
        "Files (or databases) followed, per source",
        files,
    );
    r.register(
        "cloud_requests",
        "Requests made to the cloud API",
        cloud_requests,
    );
    r.register(
        "cloud_failures",
        "Requests to the cloud API that failed",
        cloud_failures,
    );

    // This process.
    let m = s.metrics;
    r.register(
        "http_requests",
        "API requests answered, by route and status code",
        m.http_requests.clone(),
    );
    r.register_with_unit(
        "http_request_duration",
        "Time to answer an API request, by route",
        Unit::Seconds,
        m.http_seconds.clone(),
    );
    r.register_with_unit(
        "commit_duration",
        "Time the writer takes to commit a group of changes",
        Unit::Seconds,
        m.commit_seconds.clone(),
    );
    r.register_with_unit(
        "append_to_visible",
        "From a line appended to an agent's file to its item committed and visible",
        Unit::Seconds,
        m.visible_seconds.clone(),
    );
    let queue = Gauge::<i64>::default();
    queue.set(m.writer_queue.load(Ordering::Relaxed) as i64);
    r.register("writer_queue", "Changes waiting for the writer", queue);
    let size = Gauge::<i64>::default();
    size.set(std::fs::metadata(s.db_path).map_or(0, |m| m.len() as i64));
    r.register_with_unit("database_size", "Size of agentd.redb", Unit::Bytes, size);

    if let Some(o) = s.otel {
        let exported = Counter::<u64>::default();
        exported.inc_by(o.exported.load(Ordering::Relaxed));
        r.register(
            "otel_exported",
            "Log records the OpenTelemetry collector took",
            exported,
        );
        let dropped = Counter::<u64>::default();
        dropped.inc_by(o.dropped.load(Ordering::Relaxed));
        r.register(
            "otel_dropped",
            "Log records dropped on the way to the OpenTelemetry collector (queue full, or the collector down)",
            dropped,
        );
    }

    let mut process = Registry::with_prefix("process");
    if let Some(p) = ProcessStats::read() {
        let g = |v: f64| {
            let g = Gauge::<f64, AtomicU64>::default();
            g.set(v);
            g
        };
        let cpu = Counter::<f64, AtomicU64>::default();
        cpu.inc_by(p.cpu_seconds);
        process.register_with_unit("cpu", "User and system CPU time", Unit::Seconds, cpu);
        process.register_with_unit(
            "resident_memory",
            "Resident memory size",
            Unit::Bytes,
            g(p.resident_bytes),
        );
        process.register_with_unit(
            "virtual_memory",
            "Virtual memory size",
            Unit::Bytes,
            g(p.virtual_bytes),
        );
        process.register("open_fds", "Open file descriptors", g(p.open_fds));
        if let Some(max) = p.max_fds {
            process.register("max_fds", "Maximum open file descriptors", g(max));
        }
        process.register_with_unit(
            "start_time",
            "Start time since the Unix epoch",
            Unit::Seconds,
            g(p.start_time_seconds),
        );
    }

    let mut out = String::new();
    encode_registry(&mut out, &r).map_err(|e| e.to_string())?;
    encode_registry(&mut out, &process).map_err(|e| e.to_string())?;
    encode_eof(&mut out).map_err(|e| e.to_string())?;
    Ok(if openmetrics {
        out
    } else {
        to_prometheus_text(&out)
    })
}

/// OpenMetrics text turned into Prometheus' text format 0.0.4, for clients that do not ask for
/// OpenMetrics: no `# EOF` or `# UNIT` lines, counters declared under their `_total` sample
/// name, info metrics as gauges named `_info`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                k => (name.to_owned(), k),
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// This process's figures, read from `/proc/self` (Linux; elsewhere there are none).
pub(crate) struct ProcessStats {
    pub(crate) cpu_seconds: f64,
    pub(crate) resident_bytes: f64,
    virtual_bytes: f64,
    open_fds: f64,
    max_fds: Option<f64>,
    start_time_seconds: f64,
}

impl ProcessStats {
    #[cfg(target_os = "linux")]
    pub(crate) fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse().ok())
            });
        Some(ProcessStats {
            cpu_seconds: (field(14)? + field(15)?) / ticks,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)? * page,
            open_fds,
            max_fds,
            start_time_seconds: boot + field(22)? / ticks,
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn read() -> Option<ProcessStats> {
        None
    }
}

/// This machine's name: `gethostname`, else `localhost`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the result is NUL-terminated or cut.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_owned();
    if ok && !name.is_empty() {
        name
    } else {
        "localhost".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_becomes_prometheus_text() {
        let om = "# HELP agentd_build agentd's version.\n# TYPE agentd_build info\nagentd_build_info{version=\"0.1.0\"} 1\n\
                  # HELP agentd_tokens Tokens.\n# TYPE agentd_tokens counter\nagentd_tokens_total{kind=\"input\"} 3\n\
                  # HELP agentd_blocked_seconds Time.\n# TYPE agentd_blocked_seconds counter\n# UNIT agentd_blocked_seconds seconds\nagentd_blocked_seconds_total 1.5\n\
                  # HELP agentd_agents Agents.\n# TYPE agentd_agents gauge\nagentd_agents{status=\"working\"} 2\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP agentd_build_info agentd's version.\n# TYPE agentd_build_info gauge\nagentd_build_info{version=\"0.1.0\"} 1\n\
             # HELP agentd_tokens_total Tokens.\n# TYPE agentd_tokens_total counter\nagentd_tokens_total{kind=\"input\"} 3\n\
             # HELP agentd_blocked_seconds_total Time.\n# TYPE agentd_blocked_seconds_total counter\nagentd_blocked_seconds_total 1.5\n\
             # HELP agentd_agents Agents.\n# TYPE agentd_agents gauge\nagentd_agents{status=\"working\"} 2\n"
        );
    }
}
