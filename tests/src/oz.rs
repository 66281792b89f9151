//! A fake of Warp's Oz Agent API for black-box tests: a real HTTP server on loopback speaking
//! the documented routes (`GET /agent/runs` with `updated_after`, `sort_order`, `limit` and
//! cursors; `GET /agent/runs/{id}/conversation`; `POST /agent/runs/{id}/cancel` with its
//! documented answers: 400 for a finished run, 409 while `PENDING`, 422 for local and GitHub
//! Actions runs), with faults to inject.

use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Something the next `/agent/runs` request gets instead of its answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This HTTP status with an empty JSON body.
    Status(u16),
    /// 429 with `Retry-After: N`.
    RetryAfter(u64),
    /// The answer, after a delay.
    Slow(Duration),
    /// The start of the answer, then the connection closes.
    Truncated,
    /// The connection closes without an answer.
    Close,
}

#[derive(Default)]
pub struct OzState {
    pub key: String,
    pub runs: Vec<Value>,
    pub faults: VecDeque<Fault>,
    pub conversations: HashMap<String, Value>,
    /// Statuses the next cancel requests get instead of their answer.
    pub cancel_faults: VecDeque<u16>,
    /// Every request line received (`GET /agent/runs?…`).
    pub requests: Vec<String>,
}

pub struct FakeOz {
    pub url: String,
    pub state: Arc<Mutex<OzState>>,
}

impl FakeOz {
    pub fn start(key: &str) -> FakeOz {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(OzState {
            key: key.to_owned(),
            ..OzState::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve(conn, &shared));
            }
        });
        FakeOz { url, state }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, OzState> {
        self.state.lock().unwrap()
    }

    /// Requests to `/agent/runs` so far.
    pub fn list_requests(&self) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.contains("/agent/runs?"))
            .count()
    }
}

/// The API key the tests' fake accepts.
pub const KEY: &str = "oz-test-key";

/// A daemon syncing from `oz` with `key`, with `u-me` as the user's cloud uid and one-second
/// polling.
pub fn cloud_daemon(name: &str, oz: &FakeOz, key: &str) -> crate::Daemon {
    let opts = crate::Options {
        env: vec![
            ("WARP_API_KEY".into(), key.into()),
            ("AGENTD_CLOUD_URL".into(), oz.url.clone()),
        ],
        ..crate::Options::default()
    };
    let mut d = crate::Daemon::prepare(name, opts);
    // In the daemon's own scratch dir, so it goes when the test's scratch does.
    let config = d.dir.0.join("cloud.toml");
    std::fs::write(
        &config,
        "[cloud]\nme = \"u-me\"\npoll_active_secs = 1\npoll_idle_secs = 1\nhorizon_days = 3650\n",
    )
    .unwrap();
    d.opts
        .env
        .push(("AGENTD_CONFIG".into(), config.display().to_string()));
    d.spawn();
    d
}

/// A run as the API describes it.
pub fn run(id: &str, state: &str, source: &str, creator_uid: &str, updated_at: &str) -> Value {
    json!({
        "run_id": id, "task_id": id, "title": format!("run {id}"), "prompt": "do the thing",
        "state": state, "created_at": "2026-11-28T08:00:00Z", "updated_at": updated_at,
        "started_at": "2026-11-28T08:00:10Z", "source": source,
        "creator": {"type": "user", "uid": creator_uid, "display_name": format!("User {creator_uid}"),
            "email": format!("{creator_uid}@example.com")},
        "scope": {"type": if creator_uid == "u-me" { "User" } else { "Team" }, "uid": "team-1"},
        "session_link": format!("https://app.warp.dev/session/{id}"),
        "request_usage": {"inference_cost": 1.25, "compute_cost": 0.5},
    })
}

fn serve(conn: TcpStream, shared: &Mutex<OzState>) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut auth = String::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("authorization")
            {
                auth = v.trim().to_owned();
            }
        }
        let method = line.split_whitespace().next().unwrap_or("GET").to_owned();
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let (status, body, extra, fault) = answer(&method, &target, &auth, shared);
        match fault {
            Some(Fault::Close) => return,
            Some(Fault::Slow(d)) => std::thread::sleep(d),
            _ => {}
        }
        let text = body.to_string();
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
            text.len()
        );
        if matches!(fault, Some(Fault::Truncated)) {
            let _ = out.write_all(head.as_bytes());
            let _ = out.write_all(&text.as_bytes()[..text.len() / 2]);
            return;
        }
        // One write: two small ones would meet Nagle's algorithm and a delayed ACK.
        if out.write_all(format!("{head}{text}").as_bytes()).is_err() {
            return;
        }
    }
}

/// `POST /agent/runs/{id}/cancel`, as the API documents it.
fn cancel(st: &mut OzState, id: &str) -> (u16, Value, String, Option<Fault>) {
    if let Some(code) = st.cancel_faults.pop_front() {
        return (code, json!({"error": "fault"}), String::new(), None);
    }
    let Some(run) = st.runs.iter_mut().find(|r| r["run_id"] == id) else {
        return (404, json!({"error": "run not found"}), String::new(), None);
    };
    let state = run["state"].as_str().unwrap_or("").to_owned();
    let source = run["source"].as_str().unwrap_or("").to_owned();
    let (code, body) = match state.as_str() {
        "SUCCEEDED" | "FAILED" | "ERROR" | "CANCELLED" => {
            (400, json!({"error": format!("run is already {state}")}))
        }
        "PENDING" => (409, json!({"error": "run is pending; try again"})),
        _ if source == "GITHUB_ACTION" || source == "LOCAL" => (
            422,
            json!({"error": "Self-hosted, local, and GitHub Action runs cannot be cancelled"}),
        ),
        _ => {
            run["state"] = json!("CANCELLED");
            run["updated_at"] = json!(crate::format_ms(crate::now_ms()));
            (200, json!({"run_id": id, "state": "CANCELLED"}))
        }
    };
    (code, body, String::new(), None)
}

fn query(target: &str) -> HashMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| {
            form_urlencoded_parse(q)
                .into_iter()
                .collect::<HashMap<_, _>>()
        })
        .unwrap_or_default()
}

fn form_urlencoded_parse(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn answer(
    method: &str,
    target: &str,
    auth: &str,
    shared: &Mutex<OzState>,
) -> (u16, Value, String, Option<Fault>) {
    let mut st = shared.lock().unwrap();
    st.requests.push(format!("{method} {target}"));
    if auth != format!("Bearer {}", st.key) {
        return (401, json!({"error": "unauthorized"}), String::new(), None);
    }
    let path = target.split('?').next().unwrap_or("");
    if let Some(id) = path
        .strip_prefix("/agent/runs/")
        .and_then(|r| r.strip_suffix("/cancel"))
    {
        if method != "POST" {
            return (
                405,
                json!({"error": "method not allowed"}),
                String::new(),
                None,
            );
        }
        return cancel(&mut st, id);
    }
    if let Some(id) = path
        .strip_prefix("/agent/runs/")
        .and_then(|r| r.strip_suffix("/conversation"))
    {
        return match st.conversations.get(id) {
            Some(c) => (200, c.clone(), String::new(), None),
            None => (404, json!({"error": "not found"}), String::new(), None),
        };
    }
    if path != "/agent/runs" {
        return (404, json!({"error": "no such route"}), String::new(), None);
    }
    let fault = st.faults.pop_front();
    match &fault {
        Some(Fault::Status(code)) => {
            return (*code, json!({"error": "fault"}), String::new(), None);
        }
        Some(Fault::RetryAfter(s)) => {
            return (
                429,
                json!({"error": "slow down"}),
                format!("retry-after: {s}\r\n"),
                None,
            );
        }
        _ => {}
    }
    let q = query(target);
    let ms = |v: &Value| {
        agentd_wire::parse_rfc3339_ms(v["updated_at"].as_str().unwrap_or("")).unwrap_or(0)
    };
    let after = q
        .get("updated_after")
        .and_then(|a| agentd_wire::parse_rfc3339_ms(a))
        .unwrap_or(i64::MIN);
    let mut runs: Vec<Value> = st.runs.iter().filter(|r| ms(r) > after).cloned().collect();
    runs.sort_by_key(ms);
    if q.get("sort_order").map(String::as_str) != Some("asc") {
        runs.reverse();
    }
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
    let offset: usize = q
        .get("cursor")
        .and_then(|c| c.strip_prefix("o"))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = runs.iter().skip(offset).take(limit).cloned().collect();
    let more = offset + page.len() < runs.len();
    let body = json!({"runs": page, "page_info": {"has_next_page": more,
        "next_cursor": if more { Some(format!("o{}", offset + limit)) } else { None }}});
    (200, body, String::new(), fault)
}
