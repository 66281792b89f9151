//! A flood: 200 clients on the socket and TCP and 50 event subscribers while 100 run logs are
//! appended to. No request fails, every subscriber ends with every item's final state (or was
//! told to resync), and the daemon's memory stays bounded.

use agentd_tests::{Daemon, ago, exchange, read_until, rec};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RUNS: usize = 100;
const APPENDS: usize = 20;
const SUBSCRIBERS: usize = 50;
const CLIENTS: usize = 200;

/// What one subscriber last heard of each item: (status, input tokens).
type Seen = Arc<Mutex<HashMap<String, (String, u64)>>>;

fn subscribe(d: &Daemon, seen: Seen, resynced: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"GET /v1/events?tab=all HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = String::new();
    read_until(&mut s, &mut buf, "event: summary");
    let mut pending = String::new();
    let mut chunk = [0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let n = match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => continue, // the read timeout: look at `stop` again
        };
        pending.push_str(&String::from_utf8_lossy(&chunk[..n]));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            if event.contains("event: resync") {
                resynced.store(true, Ordering::Relaxed);
            }
            // Chunked transfer framing may sit between lines: take the data line itself.
            if let Some(data) = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .filter(|_| event.contains("event: agent"))
                && let Ok(v) = serde_json::from_str::<Value>(data)
            {
                seen.lock().unwrap().insert(
                    v["id"].as_str().unwrap_or("").to_owned(),
                    (
                        v["status"].as_str().unwrap_or("").to_owned(),
                        v["usage"]["input_tokens"].as_u64().unwrap_or(0),
                    ),
                );
            }
        }
    }
}

#[test]
fn a_flood_of_clients_and_subscribers_while_files_change_loses_nothing() {
    let d = Arc::new(Daemon::start("flood"));
    let stop = Arc::new(AtomicBool::new(false));
    let mut subs = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let seen: Seen = Arc::default();
        let resynced = Arc::new(AtomicBool::new(false));
        let (d2, seen2, r2, stop2) = (d.clone(), seen.clone(), resynced.clone(), stop.clone());
        let h = std::thread::spawn(move || subscribe(&d2, seen2, r2, stop2));
        subs.push((seen, resynced, h));
    }
    // Clients: half on the socket, half on TCP with the token; every answer must be a 200.
    let failures = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let writing = Arc::new(AtomicBool::new(true));
    let token = d.token();
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let (d, failures, requests, writing, token) = (
            d.clone(),
            failures.clone(),
            requests.clone(),
            writing.clone(),
            token.clone(),
        );
        clients.push(std::thread::spawn(move || {
            let paths = ["/v1/agents?tab=all&limit=50", "/v1/summary?tab=all"];
            let mut i = 0;
            while writing.load(Ordering::Relaxed) {
                let path = paths[i % 2];
                i += 1;
                let status = if n % 2 == 0 {
                    d.req("GET", path, b"").status
                } else {
                    let addr = d.http.clone().unwrap();
                    let s = std::net::TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    exchange(
                        s,
                        "GET",
                        path,
                        &[("Authorization", &format!("Bearer {token}"))],
                        b"",
                    )
                    .status
                };
                requests.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
    }
    // The files: 100 runs, each appended to 20 times, then ended.
    for r in 0..RUNS {
        d.write_run(
            &format!("f{r}"),
            &[rec(
                json!({"type": "start", "ts": ago(60), "title": format!("flood {r}")}),
            )],
        );
    }
    for _ in 0..APPENDS {
        for r in 0..RUNS {
            d.append_run(
                &format!("f{r}"),
                format!(
                    "{}\n",
                    rec(json!({"type": "usage", "ts": ago(0), "input_tokens": 3}))
                )
                .as_bytes(),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for r in 0..RUNS {
        d.append_run(
            &format!("f{r}"),
            format!(
                "{}\n",
                rec(json!({"type": "end", "ts": ago(0), "status": "success"}))
            )
            .as_bytes(),
        );
    }
    let finished = d.wait_for("/v1/agents?tab=all&limit=1000", "every run to end", |p| {
        let items = p["items"].as_array().unwrap();
        items.len() == RUNS
            && items.iter().all(|i| {
                i["status"] == "success" && i["usage"]["input_tokens"] == 3 * APPENDS as u64
            })
    });
    writing.store(false, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "failed requests");
    assert!(
        requests.load(Ordering::Relaxed) > CLIENTS as u64,
        "the clients ran"
    );
    // Every subscriber heard every item's final state, or was told to reload.
    let want: HashMap<String, (String, u64)> = finished["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                ("success".to_owned(), 3 * APPENDS as u64),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    for (seen, resynced, _) in &subs {
        while *seen.lock().unwrap() != want
            && !resynced.load(Ordering::Relaxed)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            *seen.lock().unwrap() == want || resynced.load(Ordering::Relaxed),
            "a subscriber missed a final state"
        );
    }
    let resyncs = subs
        .iter()
        .filter(|(_, r, _)| r.load(Ordering::Relaxed))
        .count();
    eprintln!(
        "{} requests, {resyncs} of {SUBSCRIBERS} subscribers told to resync",
        requests.load(Ordering::Relaxed)
    );
    // A resync is for a subscriber that fell behind, not the rule.
    assert!(resyncs < SUBSCRIBERS / 2, "{resyncs} resyncs");
    stop.store(true, Ordering::Relaxed);
    for (_, _, h) in subs {
        h.join().unwrap();
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(rss_kib < 300 * 1024, "RSS {rss_kib} KiB");
}
