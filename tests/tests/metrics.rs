//! `/metrics` as a real Prometheus sees it: a Prometheus server (Debian's `prometheus`
//! package) started by the test scrapes a real agentd over TCP with the token from its token
//! file, every second; PromQL through Prometheus' HTTP API must give the counts and sums the
//! fixture run logs hold, and follow a status change within a few scrapes. `promtool check
//! metrics` lints the exposition, every query of the Grafana dashboard must parse and run, and
//! 10,000 agents must make no more series than 10.
//!
//! Prometheus is installed by `.ci/run` (which sets `AGENTD_REQUIRE_PROMETHEUS=1`, so a missing
//! one fails there); elsewhere the Prometheus test is skipped with a note when it is absent.

use agentd_tests::{Daemon, Options, ago, append_lines};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the Prometheus binaries are (`.ci/run` installs Debian's package).
fn tool(name: &str) -> PathBuf {
    PathBuf::from("/usr/bin").join(name)
}

fn have_prometheus() -> bool {
    let ok = tool("prometheus").exists() && tool("promtool").exists();
    if !ok {
        assert!(
            std::env::var_os("AGENTD_REQUIRE_PROMETHEUS").is_none(),
            "Prometheus is required (AGENTD_REQUIRE_PROMETHEUS is set) but not installed"
        );
        eprintln!("prometheus is not installed (apt-get install prometheus): skipped");
    }
    ok
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server scraping `target` every second, stopped on drop.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, target: &str, token_file: &Path) -> Prometheus {
        let port = free_port();
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: agentd\n    authorization:\n      type: Bearer\n      \
                 credentials_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
                token_file.display()
            ),
        )
        .unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(p.port, "/-/ready").0 != 200 {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// An instant query; `Err` carries Prometheus' error.
    fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let (code, body) = get(
            self.port,
            &format!("/api/v1/query?query={}", urlencode(promql)),
        );
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if code != 200 || v["status"] != "success" {
            return Err(format!("{code} {}", v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The single value of `promql`, waiting (up to 30 s, a scrape a second) for `ok`.
    fn wait_value(&self, promql: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        loop {
            if let Ok(r) = self.query(promql)
                && let Some(v) = r
                    .first()
                    .and_then(|s| s["value"][1].as_str())
                    .and_then(|v| v.parse::<f64>().ok())
            {
                if ok(v) {
                    return v;
                }
                last = Some(v);
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: last value {last:?}, never what was expected"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP GET on loopback: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let (code, buf) = get_with(port, path, "127.0.0.1", &[]);
    let body = buf.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Chunked answers: good enough to join the chunks' data for JSON.
    let body = if buf
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_owned()
    };
    (code, body)
}

fn start(a: &str) -> Value {
    json!({"type": "start", "ts": a, "title": "fixture", "harness": "claude-code", "source": "cli",
        "pid": std::process::id()})
}

fn usage(input: u64, cost: f64) -> Value {
    json!({"type": "usage", "ts": ago(1), "model": "claude-sonnet-4-5", "input_tokens": input,
        "output_tokens": 10, "cost_usd": cost})
}

fn end(status: &str) -> Value {
    json!({"type": "end", "ts": ago(0), "status": status, "exit_code": 0})
}

#[test]
fn a_real_prometheus_scrapes_agent_counts_tokens_and_cost_and_sees_a_change() {
    if !have_prometheus() {
        return;
    }
    let d = Daemon::start_with(
        "metrics-prometheus",
        Options {
            http: Some("127.0.0.1:0".into()),
            env: vec![("AGENTD_HOST".into(), "devbox-1".into())],
            ..Options::default()
        },
    );
    // Two working runs (their writer, this test, is alive), one blocked, three finished.
    append_lines(
        &d.runs.join("w1.jsonl"),
        &[start(&ago(5)), usage(100, 0.25)],
    );
    append_lines(&d.runs.join("w2.jsonl"), &[start(&ago(5)), usage(200, 0.5)]);
    append_lines(
        &d.runs.join("b1.jsonl"),
        &[
            start(&ago(5)),
            json!({"type": "status", "ts": ago(1), "status": "blocked", "detail": "approve the migration"}),
        ],
    );
    append_lines(
        &d.runs.join("s1.jsonl"),
        &[start(&ago(9)), usage(1000, 1.0), end("success")],
    );
    append_lines(
        &d.runs.join("s2.jsonl"),
        &[start(&ago(9)), usage(2000, 2.0), end("success")],
    );
    append_lines(
        &d.runs.join("f1.jsonl"),
        &[start(&ago(9)), usage(4000, 4.0), end("failed")],
    );
    d.wait_for("/v1/agents?tab=all", "six runs", |p| {
        p["items"].as_array().is_some_and(|i| i.len() == 6)
    });
    let addr = d.get("/v1/health")["http"]["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = Prometheus::start(
        &d.state.parent().unwrap().join("prometheus"),
        &addr,
        &d.state.join("token"),
    );

    // The target is up: the token from the file was accepted.
    p.wait_value("up{job=\"agentd\"}", |v| v == 1.0);
    let sum = |q: &str| format!("sum({q})");
    assert_eq!(
        p.wait_value(&sum("agentd_agents{status=\"working\"}"), |v| v == 2.0),
        2.0
    );
    assert_eq!(
        p.wait_value(&sum("agentd_agents{status=\"blocked\"}"), |v| v == 1.0),
        1.0
    );
    p.wait_value(&sum("agentd_agents_finished_total"), |v| v == 3.0);
    p.wait_value(
        &sum("agentd_agents_finished_total{status=\"failed\"}"),
        |v| v == 1.0,
    );
    p.wait_value(&sum("agentd_tokens_total{kind=\"input\"}"), |v| v == 7300.0);
    p.wait_value(
        &sum("agentd_cost_usd_total{harness=\"claude-code\"}"),
        |v| (v - 7.75).abs() < 1e-9,
    );
    let info = p.query("agentd_build_info").unwrap();
    assert_eq!(info[0]["metric"]["host"], "devbox-1", "{info:?}");
    // Counts by host through the info metric, as the dashboard does.
    p.wait_value(
        "sum by (host) (agentd_agents{status=\"working\"} * on (instance, job) group_left (host) agentd_build_info)",
        |v| v == 2.0,
    );
    p.wait_value("process_resident_memory_bytes", |v| v > 1e6);

    // A status change shows within a few scrapes.
    append_lines(&d.runs.join("w1.jsonl"), &[end("success")]);
    let changed = Instant::now();
    p.wait_value(&sum("agentd_agents{status=\"working\"}"), |v| v == 1.0);
    p.wait_value(
        &sum("agentd_agents_finished_total{status=\"success\"}"),
        |v| v == 3.0,
    );
    assert!(
        changed.elapsed() < Duration::from_secs(10),
        "{:?}",
        changed.elapsed()
    );
    // API requests were counted by route, never by raw path.
    let routes = p.query("agentd_http_requests_total").unwrap();
    assert!(
        routes.iter().any(|s| s["metric"]["route"] == "/metrics"),
        "{routes:?}"
    );
    assert!(
        routes
            .iter()
            .all(|s| !s["metric"]["route"].as_str().unwrap().contains("cli:")),
        "{routes:?}"
    );

    // promtool lints what a scraper that does not ask for OpenMetrics gets.
    let text = d.req("GET", "/metrics", b"");
    assert_eq!(text.status, 200);
    let mut lint = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin.take().unwrap().write_all(&text.body).unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every query of the dashboard parses and runs in this Prometheus.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../integrations/grafana/agentd.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut n = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            p.query(expr)
                .unwrap_or_else(|e| panic!("dashboard query {expr:?}: {e}"));
            n += 1;
        }
    }
    assert!(n >= 10, "{n} queries");
}

/// The number of samples (series) in an exposition.
fn series(text: &[u8]) -> usize {
    String::from_utf8_lossy(text)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count()
}

#[test]
fn ten_thousand_agents_make_no_more_series_than_ten() {
    let d = Daemon::start("metrics-cardinality");
    let write = |range: std::ops::Range<usize>| {
        for i in range {
            // Titles, ids and free-text harnesses differ on every run.
            let mut s = start(&ago(5));
            s["harness"] = json!(format!("my-script-{i}"));
            s["title"] = json!(format!("task {i}"));
            let lines = [
                s,
                usage(10, 0.01),
                end(if i % 2 == 0 { "success" } else { "failed" }),
            ];
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(d.runs.join(format!("r{i:05}.jsonl")), text).unwrap();
        }
    };
    write(0..10);
    d.wait_for("/v1/health", "10 runs", |h| h["items"] == 10);
    // Requests made so far count as series too: make the same ones before each count.
    let _ = d.req("GET", "/metrics", b"");
    let ten = series(&d.req("GET", "/metrics", b"").body);
    write(10..10_000);
    d.wait_for("/v1/health", "10,000 runs", |h| h["items"] == 10_000);
    let _ = d.req("GET", "/metrics", b"");
    let many = d.req("GET", "/metrics", b"");
    let text = String::from_utf8_lossy(&many.body);
    assert_eq!(series(&many.body), ten, "{text}");
    assert!(
        text.contains("agentd_agents{status=\"failed\",source=\"cli\",harness=\"other\"} 5000"),
        "{text}"
    );
}

/// A plain HTTP GET as `host` with more headers: (status, the whole answer).
fn get_with(port: u16, path: &str, host: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}Connection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf)
}

#[test]
fn a_separate_metrics_listener_serves_metrics_only_with_its_own_token() {
    let port = free_port();
    let scratch = agentd_tests::Scratch::new("metrics-listener-cfg");
    let cfg = scratch.0.join("config.toml");
    std::fs::write(&cfg, format!("metrics = \"127.0.0.1:{port}\"\n")).unwrap();
    let d = Daemon::start_with(
        "metrics-listener",
        Options {
            http: Some("127.0.0.1:0".into()),
            env: vec![("AGENTD_CONFIG".into(), cfg.display().to_string())],
            ..Options::default()
        },
    );
    let token = std::fs::read_to_string(d.state.join("metrics-token"))
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(token, d.token(), "a secret of its own");
    let bearer = format!("Bearer {token}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, body) = loop {
        let r = get_with(
            port,
            "/metrics",
            "scraper.example",
            &[("Authorization", &bearer)],
        );
        if r.0 != 0 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("agentd_build_info"), "{body}");
    // Any Host (a scraper elsewhere), but never without the token, nor with the API's.
    assert_eq!(get_with(port, "/metrics", "scraper.example", &[]).0, 401);
    let api = format!("Bearer {}", d.token());
    assert_eq!(
        get_with(
            port,
            "/metrics",
            "scraper.example",
            &[("Authorization", &api)]
        )
        .0,
        401
    );
    // And nothing but the metrics.
    assert_eq!(
        get_with(
            port,
            "/v1/agents?tab=all",
            "scraper.example",
            &[("Authorization", &bearer)]
        )
        .0,
        404
    );
}
