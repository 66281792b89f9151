//! `agentd-bench --stores`: the conversation stores.
//!
//! Generates a corpus of finished conversations written today (70% Claude Code transcripts,
//! 30% Codex rollouts, about 170 MB, same bytes every run), then measures: backfill throughput
//! and peak RSS of a fresh agentd over it; the cost of today from `/v1/summary` against
//! `ccusage` on the same files (when given `--ccusage PATH`), with both programs' times; and the
//! latency from a line appended to a transcript to its item's update on `/v1/events`.

use super::{Lcg, now_ms, percentiles, request, rfc3339, start_with_home};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub(super) const SESSIONS: usize = 2000;
const CLAUDE_SHARE: usize = 70; // percent

/// Filler for tool results and reasoning, so files have realistic sizes.
pub(super) fn filler(rng: &mut Lcg, len: usize) -> String {
    const WORDS: &[&str] = &[
        "fn",
        "let",
        "test",
        "error",
        "src/main.rs",
        "ok",
        "cargo",
        "build",
        "passed",
        "line",
        "warning:",
        "unused",
        "import",
        "the",
        "result",
        "returns",
        "value",
        "self",
    ];
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        s.push_str(WORDS[(rng.next() % WORDS.len() as u64) as usize]);
        s.push(if rng.next().is_multiple_of(9) {
            '\n'
        } else {
            ' '
        });
    }
    s
}

pub(super) fn uuid(rng: &mut Lcg) -> String {
    let h = |rng: &mut Lcg, n: usize| -> String {
        (0..n)
            .map(|_| char::from_digit((rng.next() % 16) as u32, 16).unwrap_or('0'))
            .collect()
    };
    format!(
        "{}-{}-4{}-8{}-{}",
        h(rng, 8),
        h(rng, 4),
        h(rng, 3),
        h(rng, 3),
        h(rng, 12)
    )
}

/// One Claude Code transcript of `turns` turns starting at `t0` (ms); returns its bytes.
pub(super) fn claude_session(rng: &mut Lcg, sid: &str, t0: i64, turns: usize) -> String {
    let models = [
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5-20250929",
        "claude-opus-4-5-20251101",
        "claude-haiku-4-5-20251001",
    ];
    let model = models[(rng.next() % models.len() as u64) as usize];
    let mut out = String::new();
    let mut t = t0;
    let mut line = |v: Value| {
        out.push_str(&v.to_string());
        out.push('\n');
    };
    let base = |kind: &str, t: i64| {
        json!({"type": kind, "timestamp": rfc3339(t), "sessionId": sid, "cwd": "/home/dev/src/app",
            "version": "2.1.39", "gitBranch": "main", "userType": "external", "isSidechain": false,
            "uuid": format!("{sid}-{t}"), "parentUuid": null})
    };
    for turn in 0..turns {
        let mut u = base("user", t);
        u["message"] =
            json!({"role": "user", "content": format!("step {turn}: {}", filler(rng, 120))});
        u["permissionMode"] = json!("default");
        line(u);
        for call in 0..3 {
            t += 2000;
            let id = format!("msg_{sid}_{turn}_{call}");
            let input = 100 + rng.next() % 400;
            let read = 20_000 + rng.next() % 60_000;
            let write = rng.next() % 3000;
            let tool = format!("toolu_{turn}_{call}");
            // One response as two lines (text, then tool_use) with a growing usage snapshot.
            for (part, output, content) in [
                (0, 8, json!([{"type": "text", "text": filler(rng, 200)}])),
                (
                    1,
                    40 + rng.next() % 400,
                    json!([{"type": "tool_use", "id": tool, "name": "Bash", "input": {"command": "cargo test"}}]),
                ),
            ] {
                let mut a = base("assistant", t + part);
                a["requestId"] = json!(format!("req_{id}"));
                a["message"] = json!({"id": id, "type": "message", "role": "assistant", "model": model,
                    "content": content, "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": input, "output_tokens": output,
                        "cache_read_input_tokens": read, "cache_creation_input_tokens": write,
                        "service_tier": "standard"}});
                line(a);
            }
            let mut p = base("progress", t + 1500);
            p["data"] = json!({"type": "bash_progress", "elapsedTimeSeconds": 1});
            p["toolUseID"] = json!(tool);
            line(p);
            let mut r = base("user", t + 1800);
            r["message"] = json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool,
                "content": filler(rng, 3800), "is_error": false}]});
            line(r);
        }
        t += 2000;
        let id = format!("msg_{sid}_{turn}_end");
        let mut a = base("assistant", t);
        a["requestId"] = json!(format!("req_{id}"));
        a["message"] = json!({"id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": filler(rng, 400)}], "stop_reason": "end_turn",
            "stop_sequence": null, "usage": {"input_tokens": 50, "output_tokens": 300 + rng.next() % 900,
                "cache_read_input_tokens": 40_000, "cache_creation_input_tokens": 500}});
        line(a);
        t += 30_000;
    }
    out
}

/// One Codex rollout of `turns` turns; returns its bytes.
pub(super) fn codex_session(rng: &mut Lcg, id: &str, t0: i64, turns: usize) -> String {
    let model = if rng.next().is_multiple_of(2) {
        "gpt-5-codex"
    } else {
        "gpt-5"
    };
    let mut out = String::new();
    let mut t = t0;
    let mut line = |t: i64, kind: &str, payload: Value| {
        out.push_str(
            &json!({"timestamp": rfc3339(t), "type": kind, "payload": payload}).to_string(),
        );
        out.push('\n');
    };
    line(
        t,
        "session_meta",
        json!({"id": id, "timestamp": rfc3339(t), "cwd": "/home/dev/src/api", "originator": "codex_cli_rs",
            "cli_version": "0.104.0", "source": "cli", "model_provider": "openai",
            "base_instructions": {"text": filler(rng, 3000)}}),
    );
    let (mut input, mut cached, mut output) = (0u64, 0u64, 0u64);
    for turn in 0..turns {
        let tid = format!("{id}-t{turn}");
        line(
            t,
            "turn_context",
            json!({"turn_id": tid, "cwd": "/home/dev/src/api",
            "approval_policy": "on-request", "sandbox_policy": {"type": "workspace-write"}, "model": model}),
        );
        line(
            t,
            "event_msg",
            json!({"type": "task_started", "turn_id": tid, "model_context_window": 272000}),
        );
        line(
            t,
            "event_msg",
            json!({"type": "user_message", "message": format!("task {turn}: {}", filler(rng, 100))}),
        );
        line(
            t,
            "response_item",
            json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": filler(rng, 100)}]}),
        );
        for call in 0..3 {
            t += 3000;
            line(
                t,
                "response_item",
                json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": filler(rng, 300)}]}),
            );
            let cid = format!("call_{turn}_{call}");
            line(
                t,
                "response_item",
                json!({"type": "function_call", "name": "exec_command",
                "arguments": "{\"cmd\":\"cargo test\"}", "call_id": cid}),
            );
            line(
                t + 1000,
                "response_item",
                json!({"type": "function_call_output", "call_id": cid,
                "output": filler(rng, 3800)}),
            );
            let step_in = 8000 + rng.next() % 8000;
            let step_cached = step_in * 3 / 4;
            let step_out = 100 + rng.next() % 700;
            input += step_in;
            cached += step_cached;
            output += step_out;
            let info = json!({"total_token_usage": {"input_tokens": input, "cached_input_tokens": cached,
                    "output_tokens": output, "reasoning_output_tokens": step_out / 2, "total_tokens": input + output},
                "last_token_usage": {"input_tokens": step_in, "cached_input_tokens": step_cached,
                    "output_tokens": step_out, "reasoning_output_tokens": step_out / 2, "total_tokens": step_in + step_out},
                "model_context_window": 272000});
            let tc = json!({"type": "token_count", "info": info, "rate_limits": {"primary": {"used_percent": 10.0}}});
            line(t + 1100, "event_msg", tc.clone());
            line(t + 1200, "event_msg", tc); // Codex re-emits the same totals
        }
        t += 2000;
        let answer = filler(rng, 300);
        line(
            t,
            "response_item",
            json!({"type": "message", "role": "assistant", "phase": "final_answer",
            "content": [{"type": "output_text", "text": answer}]}),
        );
        line(
            t,
            "event_msg",
            json!({"type": "agent_message", "message": answer}),
        );
        line(
            t,
            "event_msg",
            json!({"type": "task_complete", "turn_id": tid, "last_agent_message": answer}),
        );
        t += 30_000;
    }
    out
}

/// Sets a transcript's modification time to its last line's timestamp, as if written as it
/// happened: the time a real store's file has, which the daemon's scan order follows.
pub(super) fn written_at(path: &Path, text: &str) {
    let last = text.lines().next_back().unwrap_or_default();
    let at = serde_json::from_str::<Value>(last).ok().and_then(|v| {
        v["timestamp"]
            .as_str()
            .and_then(agentd_wire::parse_rfc3339_ms)
    });
    if let Some(ms) = at {
        let when = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(when).unwrap();
    }
}

/// Writes the corpus under `home` (once; reused while its marker matches). Returns its bytes
/// and one Claude transcript to append to.
pub(super) fn generate(home: &Path, sessions: usize) -> (u64, std::path::PathBuf) {
    // Named after the layout: a corpus of an older layout is made again.
    let marker = home.join(".generated-2");
    let probe = home.join(".claude/projects/-home-dev-src-app/live.jsonl");
    if let Ok(text) = std::fs::read_to_string(&marker)
        && let Some((day, bytes)) = text.trim().split_once(' ')
        && day == &rfc3339(now_ms())[..10]
        && home.join(format!(".sessions-{sessions}")).exists()
    {
        return (bytes.parse().unwrap_or(0), probe);
    }
    let _ = std::fs::remove_dir_all(home);
    let started = Instant::now();
    let mut rng = Lcg(42);
    let now = now_ms();
    // Every conversation happened today (local time is UTC here unless TZ says otherwise),
    // and ended at least 10 minutes ago: all are finished.
    let day_start = now - now.rem_euclid(86_400_000);
    let window_start = (now - 6 * 3_600_000).max(day_start + 60_000);
    let window = (now - 15 * 60_000 - window_start).max(60_000);
    let mut bytes = 0u64;
    for i in 0..sessions {
        let t0 = window_start + (rng.next() as i64 % window).max(0);
        let turns = 2 + (rng.next() % 5) as usize;
        let id = uuid(&mut rng);
        let (path, text) = if i * 100 < sessions * CLAUDE_SHARE {
            let proj = format!("-home-dev-src-app{}", i % 40);
            (
                home.join(".claude/projects")
                    .join(proj)
                    .join(format!("{id}.jsonl")),
                claude_session(&mut rng, &id, t0, turns),
            )
        } else {
            let day = &rfc3339(t0)[..10];
            let dir = home.join(".codex/sessions").join(day.replace('-', "/"));
            (
                dir.join(format!("rollout-{day}T10-00-00-{id}.jsonl")),
                codex_session(&mut rng, &id, t0, turns),
            )
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        written_at(&path, &text);
        bytes += text.len() as u64;
    }
    std::fs::create_dir_all(probe.parent().unwrap()).unwrap();
    std::fs::write(&probe, "").unwrap();
    std::fs::write(&marker, format!("{} {bytes}", &rfc3339(now)[..10])).unwrap();
    std::fs::write(home.join(format!(".sessions-{sessions}")), "").unwrap();
    println!(
        "  generated {sessions} conversations ({:.0} MB) in {:.1}s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    (bytes, probe)
}

/// Runs ccusage's daily report for one source; returns (today's cost, wall time, peak RSS KiB).
pub(super) fn ccusage_today(
    bin: &Path,
    home: &Path,
    args: &[&str],
) -> Option<(f64, Duration, u64)> {
    ccusage_run(bin, home, args).map(|r| (r.cost, r.wall, r.rss_kib))
}

/// One ccusage run: today's cost, wall and CPU time, peak RSS.
pub(super) struct CcusageRun {
    pub cost: f64,
    pub wall: Duration,
    pub cpu_seconds: f64,
    pub rss_kib: u64,
}

pub(super) fn ccusage_run(bin: &Path, home: &Path, args: &[&str]) -> Option<CcusageRun> {
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("MAXRSS %M CPU %U %S")
        .arg(bin)
        .args(args)
        .env("HOME", home)
        .env_remove("CLAUDE_CONFIG_DIR")
        .env_remove("CODEX_HOME")
        .env("TZ", "UTC")
        // It reads a `.ccusage/` config from the working directory: start from an empty one.
        .current_dir(home)
        .output()
        .ok()?;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A peer that did not run leaves its columns empty; say why, or the report just lacks them.
    if !out.status.success() {
        let why = stderr
            .lines()
            .find(|l| !l.starts_with("MAXRSS ") && !l.starts_with("Command "));
        eprintln!(
            "  {} {} did not run ({}): {}",
            bin.display(),
            args.join(" "),
            out.status,
            why.unwrap_or("no message")
        );
        return None;
    }
    let line = stderr
        .lines()
        .find(|l| l.starts_with("MAXRSS "))
        .unwrap_or("");
    let w: Vec<&str> = line.split_whitespace().collect();
    let rss = w.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    let cpu = w.get(3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + w.get(4).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let today = &rfc3339(now_ms())[..10];
    let cost = v["daily"]
        .as_array()?
        .iter()
        .filter(|d| d["date"].as_str().is_some_and(|s| s.starts_with(today)))
        .filter_map(|d| d["totalCost"].as_f64().or_else(|| d["costUSD"].as_f64()))
        .sum();
    Some(CcusageRun {
        cost,
        wall: took,
        cpu_seconds: cpu,
        rss_kib: rss,
    })
}

pub(super) fn today_cost(socket: &Path) -> f64 {
    let (_, body) = request(socket, "/v1/summary?tab=all").unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    v["today"]["cost_usd"].as_f64().unwrap_or(0.0)
}

pub fn bench(dir: &Path, ccusage: Option<&Path>) {
    println!("== conversation stores");
    let home = dir.join("home");
    let (bytes, probe) = generate(&home, SESSIONS);
    let _ = std::fs::remove_dir_all(dir.join("state"));
    let (d, _) = start_with_home(dir, &home);
    let took = super::formats::backfill(&d.socket, SESSIONS, Instant::now());
    let (_, hwm) = d.rss_kib();
    println!(
        "  backfill of {SESSIONS} conversations ({:.0} MB): {:.2}s, {:.0} MB/s, peak RSS {:.1} MB",
        bytes as f64 / 1e6,
        took.as_secs_f64(),
        bytes as f64 / 1e6 / took.as_secs_f64(),
        hwm as f64 / 1024.0
    );
    let ours = today_cost(&d.socket);
    let n = 2000;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let _ = request(&d.socket, "/v1/summary?tab=all");
        samples.push(t.elapsed());
    }
    let (p50, p99) = percentiles(samples);
    println!("  cost today ${ours:.2}: GET /v1/summary p50 {p50:.3} ms, p99 {p99:.3} ms");
    if let Some(bin) = ccusage {
        let args = |agent| [agent, "daily", "--json", "--offline", "-z", "UTC"];
        let claude = ccusage_today(bin, &home, &args("claude"));
        let codex = ccusage_today(bin, &home, &args("codex"));
        match (claude, codex) {
            (Some((a, ta, ra)), Some((b, tb, rb))) => {
                let theirs = a + b;
                let scan = ta + tb;
                println!(
                    "  ccusage (claude + codex daily): ${theirs:.2} in {:.2}s (peak RSS {:.1} / {:.1} MB): \
                     difference {:+.3}%; backfill {:.2}x its scan; cost today {:.0}x faster than its rerun",
                    scan.as_secs_f64(),
                    ra as f64 / 1024.0,
                    rb as f64 / 1024.0,
                    (ours / theirs - 1.0) * 100.0,
                    scan.as_secs_f64() / took.as_secs_f64(),
                    scan.as_secs_f64() * 1000.0 / p50
                );
            }
            _ => println!(
                "  ccusage at {} did not answer as expected; skipped",
                bin.display()
            ),
        }
    }
    let (p50, p99) = append_latency(&d.socket, &probe);
    println!("  line appended → /v1/events update (200 lines): p50 {p50:.2} ms, p99 {p99:.2} ms");
    d.stop();
}

/// A line appended to a transcript → its item's update on `/v1/events`: (p50, p99) ms over 200.
pub(super) fn append_latency(socket: &Path, probe: &Path) -> (f64, f64) {
    // Line appended → the item's update on /v1/events.
    let mut s = UnixStream::connect(socket).expect("connect");
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("subscribe");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut events = BufReader::new(s.try_clone().expect("clone"));
    let sid = "live";
    let id = format!("\"id\":\"claude-code:{sid}\"");
    let mut samples = Vec::new();
    for i in 0..200 {
        let line = json!({"type": "user", "timestamp": rfc3339(now_ms()), "sessionId": sid,
            "cwd": "/home/dev/src/app", "isSidechain": false,
            "message": {"role": "user", "content": format!("prompt {i}")}});
        let t = Instant::now();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(probe)
            .expect("probe");
        writeln!(f, "{line}").expect("append");
        drop(f);
        let mut text = String::new();
        loop {
            text.clear();
            match events.read_line(&mut text) {
                Ok(0) | Err(_) => panic!("the event stream ended"),
                Ok(_) if text.starts_with("data:") && text.contains(&id) => break,
                Ok(_) => {}
            }
        }
        samples.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    percentiles(samples)
}
