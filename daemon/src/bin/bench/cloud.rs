//! `agentd-bench --cloud`: a sync of 10,000 runs (pages of 100) from a local server speaking
//! the Oz Agent API, then the cost of a poll that finds nothing new.

use super::{health, rfc3339, start_with_env};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RUNS: usize = 10_000;

/// Serves `runs` (sorted by `updated_at`) as `GET /agent/runs` pages; counts requests.
fn serve(runs: Arc<Vec<Value>>, requests: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (runs, requests) = (runs.clone(), requests.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut out = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                    }
                    requests.fetch_add(1, Ordering::Relaxed);
                    let target = line.split_whitespace().nth(1).unwrap_or("/");
                    let q: Vec<(String, String)> = target
                        .split_once('?')
                        .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                        .unwrap_or_default();
                    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    let after = get("updated_after")
                        .and_then(|a| agentd_wire::parse_rfc3339_ms(&a))
                        .unwrap_or(i64::MIN);
                    let limit: usize = get("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
                    let offset: usize = get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
                    let newer: Vec<&Value> = runs
                        .iter()
                        .filter(|r| {
                            agentd_wire::parse_rfc3339_ms(r["updated_at"].as_str().unwrap_or(""))
                                .is_some_and(|t| t > after)
                        })
                        .collect();
                    let page: Vec<&Value> =
                        newer.iter().skip(offset).take(limit).copied().collect();
                    let more = offset + page.len() < newer.len();
                    let body = json!({"runs": page, "page_info": {"has_next_page": more,
                        "next_cursor": more.then(|| (offset + limit).to_string())}})
                    .to_string();
                    // One write: a head and a body in two small writes would meet Nagle's
                    // algorithm and the client's delayed ACK (40 ms a response).
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if out.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

pub fn bench(dir: &Path) {
    println!("== cloud sync");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("bench dir");
    let base = super::now_ms() - 20 * 86_400_000;
    let states = [
        "SUCCEEDED",
        "SUCCEEDED",
        "SUCCEEDED",
        "FAILED",
        "CANCELLED",
        "ERROR",
    ];
    let sources = [
        "SLACK",
        "API",
        "CLI",
        "LINEAR",
        "SCHEDULED_AGENT",
        "GITHUB_ACTION",
        "WEB_APP",
    ];
    let runs: Vec<Value> = (0..RUNS)
        .map(|i| {
            let t = base + i as i64 * 60_000;
            json!({"run_id": format!("run-{i:05}"), "task_id": format!("run-{i:05}"),
                "title": format!("nightly task {i}"), "prompt": "update the dependencies and open a PR",
                "state": states[i % states.len()], "created_at": rfc3339(t - 600_000),
                "updated_at": rfc3339(t), "started_at": rfc3339(t - 590_000), "run_time": "PT9M50S",
                "source": sources[i % sources.len()],
                "creator": {"type": "user", "uid": format!("u-{}", i % 7), "display_name": format!("User {}", i % 7),
                    "email": format!("u{}@example.com", i % 7)},
                "scope": {"type": "Team", "uid": "team-1"},
                "session_link": format!("https://app.warp.dev/session/run-{i:05}"),
                "request_usage": {"inference_cost": 0.8, "compute_cost": 0.2}})
        })
        .collect();
    let requests = Arc::new(AtomicU64::new(0));
    let url = serve(Arc::new(runs), requests.clone());
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[cloud]\nme = \"u-0\"\npoll_active_secs = 3600\npoll_idle_secs = 3600\n",
    )
    .expect("config");
    let (d, _) = start_with_env(
        dir,
        &dir.join("home"),
        &[("WARP_API_KEY", "bench-key"), ("AGENTD_CLOUD_URL", &url)],
    );
    let started = Instant::now();
    loop {
        if health(&d.socket).and_then(|h| h["items"].as_u64()) == Some(RUNS as u64) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "sync did not finish"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    let (_, hwm) = d.rss_kib();
    println!(
        "  first sync of {RUNS} runs ({} requests, pages of 100): {:.2}s, {:.0} runs/s, peak RSS {:.1} MB",
        requests.load(Ordering::Relaxed),
        took.as_secs_f64(),
        RUNS as f64 / took.as_secs_f64(),
        hwm as f64 / 1024.0
    );
    // A poll that finds nothing new. (First let the last commit of the sync become durable.)
    std::thread::sleep(Duration::from_secs(1));
    let db = dir.join("state").join("agentd.redb");
    let db_before = std::fs::metadata(&db).and_then(|m| m.modified()).ok();
    let mut samples = Vec::new();
    let before = requests.load(Ordering::Relaxed);
    for _ in 0..20 {
        let t = Instant::now();
        let _ = post_sync(&d.socket);
        samples.push(t.elapsed());
    }
    std::thread::sleep(Duration::from_millis(500)); // any durable commit would land by now
    let per_poll = (requests.load(Ordering::Relaxed) - before) as f64 / 20.0;
    let db_after = std::fs::metadata(&db).and_then(|m| m.modified()).ok();
    let (p50, p99) = super::percentiles(samples);
    println!(
        "  incremental poll with nothing new: {per_poll:.1} request(s) per poll, database {}, POST /v1/sync p50 {p50:.2} ms, p99 {p99:.2} ms",
        if db_before == db_after {
            "not written"
        } else {
            "WRITTEN"
        }
    );
    d.stop();
}

fn post_sync(socket: &Path) -> std::io::Result<()> {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.write_all(b"POST /v1/sync HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(())
}
