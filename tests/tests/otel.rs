//! OpenTelemetry export against a real OTLP/HTTP receiver in the test, which decodes what it is
//! sent with the official protobuf definitions (`opentelemetry-proto`): one log record per agent
//! state change with its attributes and the resource's, the metrics, and a collector that goes
//! down (ingestion goes on, the lost records are counted) and comes back (export resumes).

use agentd_tests::{Daemon, Options, ago, rec};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Request bodies received, with their paths.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP collector: keeps every request body by path, answers 200.
struct Receiver {
    got: Received,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (g, s) = (g.clone(), s.clone());
                        std::thread::spawn(move || serve(conn, g, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { got, stop, port }
    }

    fn logs(&self) -> Vec<ExportLogsServiceRequest> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == "/v1/logs")
            .map(|(_, b)| ExportLogsServiceRequest::decode(b.as_slice()).expect("OTLP logs"))
            .collect()
    }

    fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == "/v1/metrics")
            .map(|(_, b)| ExportMetricsServiceRequest::decode(b.as_slice()).expect("OTLP metrics"))
            .collect()
    }

    /// Stops answering: the listener and every open connection close.
    fn down(self) -> u16 {
        self.stop.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        self.port
    }
}

fn serve(conn: std::net::TcpStream, got: Received, stop: Arc<AtomicBool>) {
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) if !stop.load(Ordering::Relaxed) => continue,
            Err(_) => return,
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut read = 0;
        while read < len && Instant::now() < deadline {
            match reader.read(&mut body[read..]) {
                Ok(0) => return,
                Ok(n) => read += n,
                Err(_) => {}
            }
        }
        got.lock().unwrap().push((path, body));
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
        );
    }
}

fn text(v: &Option<AnyValue>) -> Option<String> {
    match v.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(&kv.value))
}

/// (item id, status, every attribute) of each log record received.
fn records(r: &Receiver) -> Vec<(String, String, Vec<KeyValue>, Vec<KeyValue>)> {
    let mut out = Vec::new();
    for req in r.logs() {
        for rl in req.resource_logs {
            let res = rl.resource.map(|r| r.attributes).unwrap_or_default();
            for sl in rl.scope_logs {
                for lr in sl.log_records {
                    out.push((
                        attr(&lr.attributes, "agentd.item.id").unwrap_or_default(),
                        attr(&lr.attributes, "agentd.status").unwrap_or_default(),
                        lr.attributes.clone(),
                        res.clone(),
                    ));
                }
            }
        }
    }
    out
}

fn wait(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(d: &Daemon, name: &str, end: bool) {
    let mut lines = vec![
        rec(
            json!({"type": "start", "ts": ago(3), "title": format!("secret prompt {name}"),
            "harness": "claude-code", "pid": std::process::id()}),
        ),
        rec(
            json!({"type": "usage", "ts": ago(2), "model": "claude-sonnet-4-5", "input_tokens": 1200,
            "output_tokens": 80, "cost_usd": 0.25}),
        ),
    ];
    if end {
        lines.push(rec(
            json!({"type": "end", "ts": ago(1), "status": "success"}),
        ));
    }
    d.write_run(name, &lines);
}

#[test]
fn agent_state_changes_and_metrics_reach_an_otlp_collector_that_may_go_down() {
    let r1 = Receiver::start(0);
    let cfg = std::env::temp_dir().join(format!("agentd-otel-{}.toml", std::process::id()));
    std::fs::write(
        &cfg,
        format!(
            "[otel]\nendpoint = \"http://127.0.0.1:{}\"\ninterval_secs = 1\n[otel.headers]\nauthorization = \"Bearer collector-key\"\n",
            r1.port
        ),
    )
    .unwrap();
    let d = Daemon::start_with(
        "otel",
        Options {
            env: vec![
                ("AGENTD_CONFIG".into(), cfg.display().to_string()),
                ("AGENTD_HOST".into(), "devbox-2".into()),
            ],
            ..Options::default()
        },
    );
    run(&d, "r1", false);
    d.wait_item("cli:r1", |v| v["status"] == "working");
    run(&d, "r1", true);
    d.wait_item("cli:r1", |v| v["status"] == "success");
    wait("both state changes of cli:r1", || {
        let got = records(&r1);
        ["working", "success"]
            .iter()
            .all(|s| got.iter().any(|(id, st, _, _)| id == "cli:r1" && st == s))
    });
    let got = records(&r1);
    let (_, _, attrs, resource) = got
        .iter()
        .find(|(id, st, _, _)| id == "cli:r1" && st == "success")
        .unwrap();
    assert_eq!(
        attr(attrs, "agentd.harness").as_deref(),
        Some("claude-code")
    );
    assert_eq!(attr(attrs, "agentd.source").as_deref(), Some("cli"));
    assert_eq!(
        attr(attrs, "gen_ai.usage.input_tokens").as_deref(),
        Some("1200")
    );
    assert_eq!(
        attr(attrs, "gen_ai.request.model").as_deref(),
        Some("claude-sonnet-4-5")
    );
    assert_eq!(attr(attrs, "agentd.cost_usd").as_deref(), Some("0.25"));
    assert_eq!(
        attr(attrs, "agentd.title"),
        None,
        "titles stay home unless asked for"
    );
    assert_eq!(attr(resource, "service.name").as_deref(), Some("agentd"));
    assert_eq!(attr(resource, "host.name").as_deref(), Some("devbox-2"));
    assert_eq!(
        got.iter().filter(|(id, _, _, _)| id == "cli:r1").count(),
        2,
        "one record per state change"
    );
    // Metrics: the agent tallies and the ingest counters, as in /metrics.
    let names = |r: &Receiver| -> Vec<String> {
        r.metrics()
            .iter()
            .flat_map(|m| m.resource_metrics.iter())
            .flat_map(|rm| rm.scope_metrics.iter())
            .flat_map(|sm| sm.metrics.iter().map(|m| m.name.clone()))
            .collect()
    };
    wait("the agents gauge and the ingest counters", || {
        let n = names(&r1);
        [
            "agentd.agents",
            "agentd.tokens",
            "agentd.cost",
            "agentd.ingest.lines",
        ]
        .iter()
        .all(|want| n.iter().any(|m| m == want))
    });

    // The collector goes down: ingestion goes on, and what could not be sent is counted.
    let port = r1.down();
    run(&d, "r2", true);
    d.wait_item("cli:r2", |v| v["status"] == "success");
    wait("dropped records counted", || {
        let m = d.req("GET", "/metrics", b"").text();
        m.lines().any(|l| {
            l.starts_with("agentd_otel_dropped_total")
                && l.split_whitespace()
                    .last()
                    .and_then(|v| v.parse::<f64>().ok())
                    > Some(0.0)
        })
    });

    // It comes back: export resumes once the exporter's back-off (1 s after the first failure,
    // doubling) is over. New agents keep coming meanwhile; one of them reaches it.
    let r2 = Receiver::start(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        let name = format!("r3-{n}");
        run(&d, &name, true);
        let id = format!("cli:{name}");
        let until = Instant::now() + Duration::from_secs(2);
        let mut arrived = false;
        while !arrived && Instant::now() < until {
            arrived = records(&r2)
                .iter()
                .any(|(i, st, _, _)| *i == id && st == "success");
            std::thread::sleep(Duration::from_millis(50));
        }
        if arrived {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no record reached the collector after it came back"
        );
    }
    let _ = std::fs::remove_file(&cfg);
}
