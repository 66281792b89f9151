//! Property tests (fuzzing on the stable toolchain) of every parser agentd runs on data it did
//! not write: the run-log parser and fold, each conversation store's fold, the query-parameter
//! parser and the hook payload decoders; and the one change agentd carries in serde_json (its
//! skipping of strings, `vendor/serde_json/PATCH.md`) against serde_json's own reader.
//!
//! For every store fold two properties hold over generated sessions, made of realistic records
//! with random counts, ids and texts, mixed with garbage, truncated and oversized records:
//! - **never panics**: a line is applied or refused with a reason, whatever its bytes, and the
//!   format's transcript renderer takes it too;
//! - **a restart changes nothing**: folding a prefix, saving the fold as a cursor does
//!   (postcard), loading it and folding the rest gives the same conversation as folding
//!   everything at once, at any split point.
//!
//! `cargo test` runs each target for `AGENTD_FUZZ_CASES` cases (64 by default); `scripts/fuzz`
//! runs them for a fixed time and prints the cases run per target. A failure prints the
//! minimised input; it becomes a regression test beside the parser's unit tests.

use agentd::ingest::convo::ConversationFold;
use agentd::model::Millis;
use agentd::prices::Prices;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

fn cases() -> u32 {
    std::env::var("AGENTD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Runs `test` over `strategy` and prints how many cases ran (for `scripts/fuzz`).
fn run<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
    eprintln!(
        "fuzz {name}: {} cases in {:.2}s",
        cases(),
        started.elapsed().as_secs_f64()
    );
}

/// A timestamp within a day of 2026-11-30.
fn ts() -> impl Strategy<Value = String> {
    (0i64..86_400_000).prop_map(|ms| agentd_wire::format_rfc3339_ms(1_796_000_000_000 + ms))
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,40}",
        "\\PC{0,20}",
        Just(String::new()),
        (1usize..5).prop_map(|n| "x".repeat(n * 70_000)),
    ]
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![Just("a".to_owned()), Just("b".to_owned()), "[a-f0-9]{8}"]
}

/// A line as it may reach a parser: a record, a record cut short, or bytes.
fn line_from(records: BoxedStrategy<Value>) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        8 => records.clone().prop_map(|v| v.to_string().into_bytes()),
        1 => (records, 0usize..200).prop_map(|(v, cut)| {
            let s = v.to_string().into_bytes();
            s[..s.len().saturating_sub(cut + 1)].to_vec()
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
    ]
    .boxed()
}

fn claude() -> BoxedStrategy<Value> {
    let usage = (0u64..50_000, 0u64..5_000, 0u64..100_000, 0u64..10_000);
    prop_oneof![
        (ts(), text()).prop_map(|(t, p)| json!({"type": "user", "timestamp": t, "sessionId": "s",
            "cwd": "/src/app", "uuid": "u", "message": {"role": "user", "content": p}})),
        (ts(), id(), usage, prop::option::of(prop_oneof![Just("end_turn"), Just("tool_use")]), any::<bool>())
            .prop_map(|(t, mid, (i, o, r, w), stop, tool)| {
                let content = if tool {
                    json!([{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}])
                } else {
                    json!([{"type": "text", "text": "done"}])
                };
                json!({"type": "assistant", "timestamp": t, "sessionId": "s", "requestId": format!("r{mid}"),
                    "message": {"id": mid, "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                        "content": content, "stop_reason": stop,
                        "usage": {"input_tokens": i, "output_tokens": o,
                            "cache_read_input_tokens": r, "cache_creation_input_tokens": w}}})
            }),
        (ts(), text()).prop_map(|(t, r)| json!({"type": "user", "timestamp": t, "sessionId": "s",
            "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": r}]}})),
        text().prop_map(|s| json!({"type": "summary", "summary": s, "leafUuid": "u"})),
        text().prop_map(|s| json!({"type": "custom-title", "customTitle": s, "sessionId": "s"})),
    ]
    .boxed()
}

fn codex() -> BoxedStrategy<Value> {
    prop_oneof![
        ts().prop_map(|t| json!({"timestamp": t, "type": "session_meta", "payload": {"id": "019c8bfe-ec25-79e0-97d7-bda6a9c575ff", "cwd": "/src/shop"}})),
        (ts(), text()).prop_map(|(t, m)| json!({"timestamp": t, "type": "event_msg", "payload": {"type": "user_message", "message": m}})),
        (ts(), 0u64..100_000, 0u64..10_000, 0u64..50_000).prop_map(|(t, i, o, c)| json!({"timestamp": t, "type": "event_msg",
            "payload": {"type": "token_count", "info": {"total_token_usage": {"input_tokens": i, "cached_input_tokens": c.min(i),
                "output_tokens": o, "reasoning_output_tokens": 0, "total_tokens": i + o},
                "last_token_usage": {"input_tokens": i, "cached_input_tokens": c.min(i), "output_tokens": o}}}})),
        ts().prop_map(|t| json!({"timestamp": t, "type": "turn_context", "payload": {"cwd": "/src/shop", "approval_policy": "on-request", "model": "gpt-5-codex"}})),
        ts().prop_map(|t| json!({"timestamp": t, "type": "response_item", "payload": {"type": "function_call", "name": "exec_command", "arguments": "{}", "call_id": "c1"}})),
        ts().prop_map(|t| json!({"timestamp": t, "type": "response_item", "payload": {"type": "function_call_output", "call_id": "c1", "output": "ok"}})),
        (ts(), text()).prop_map(|(t, m)| json!({"timestamp": t, "type": "event_msg", "payload": {"type": "task_complete", "last_agent_message": m}})),
        ts().prop_map(|t| json!({"timestamp": t, "type": "event_msg", "payload": {"type": "turn_aborted", "reason": "interrupted"}})),
    ]
    .boxed()
}

fn gemini() -> BoxedStrategy<Value> {
    prop_oneof![
        ts().prop_map(|t| json!({"sessionId": "s", "projectHash": "h", "startTime": t, "lastUpdated": t, "kind": "main"})),
        (id(), ts(), text()).prop_map(|(i, t, p)| json!({"id": i, "timestamp": t, "type": "user", "content": [{"text": p}]})),
        (id(), ts(), 0u64..50_000, 0u64..5_000, 0u64..20_000, any::<bool>()).prop_map(|(i, t, inp, out, cached, tool)| {
            let mut m = json!({"id": i, "timestamp": t, "type": "gemini", "content": "ok", "model": "gemini-2.5-pro",
                "tokens": {"input": inp + cached, "output": out, "cached": cached, "thoughts": 3, "tool": 0, "total": 0}});
            if tool {
                m["toolCalls"] = json!([{"id": "c", "name": "read_file", "status": "success"}]);
            }
            m
        }),
        id().prop_map(|i| json!({"$rewindTo": i})),
        ts().prop_map(|t| json!({"$set": {"lastUpdated": t, "summary": "s"}})),
        (id(), ts()).prop_map(|(i, t)| json!({"id": i, "timestamp": t, "type": "error", "content": "quota"})),
    ]
    .boxed()
}

fn qwen() -> BoxedStrategy<Value> {
    prop_oneof![
        (id(), ts(), text()).prop_map(|(u, t, p)| json!({"uuid": u, "sessionId": "s", "timestamp": t, "type": "user",
            "cwd": "/src", "message": {"role": "user", "parts": [{"text": p}]}})),
        (id(), ts(), 0u64..50_000, 0u64..5_000, 0u64..20_000).prop_map(|(u, t, p, c, k)| json!({"uuid": u, "sessionId": "s",
            "timestamp": t, "type": "assistant", "model": "qwen3-coder-plus", "message": {"role": "model", "parts": [{"text": "ok"}]},
            "usageMetadata": {"promptTokenCount": p + k, "candidatesTokenCount": c, "cachedContentTokenCount": k}})),
        (ts(), prop_oneof![Just("completed"), Just("cancelled"), Just("error")]).prop_map(|(t, s)| json!({"uuid": "r",
            "sessionId": "s", "timestamp": t, "type": "system", "subtype": "turn_result", "systemPayload": {"state": s}})),
    ]
    .boxed()
}

fn copilot() -> BoxedStrategy<Value> {
    let ev = |kind: &'static str, data: Value, t: String| json!({"type": kind, "data": data, "id": "e", "timestamp": t, "parentId": null});
    prop_oneof![
        ts().prop_map(move |t| ev("session.start", json!({"sessionId": "s", "context": {"cwd": "/src"}}), t)),
        (ts(), text()).prop_map(move |(t, c)| ev("user.message", json!({"content": c}), t)),
        (ts(), 0u64..5000, any::<bool>()).prop_map(move |(t, o, tools)| ev("assistant.message",
            json!({"model": "claude-sonnet-4.5", "content": "x", "outputTokens": o,
                "toolRequests": if tools { json!([{"name": "bash"}]) } else { json!([]) }}), t)),
        (ts(), id()).prop_map(move |(t, r)| ev("permission.requested", json!({"requestId": r, "permissionRequest": {"kind": "shell"}}), t)),
        (ts(), id()).prop_map(move |(t, r)| ev("permission.completed", json!({"requestId": r}), t)),
        ts().prop_map(move |t| ev("assistant.turn_end", json!({}), t)),
        (ts(), 0u64..100_000, 0u64..5_000, 0u64..50_000).prop_map(move |(t, i, o, r)| ev("session.shutdown",
            json!({"shutdownType": "routine", "totalNanoAiu": i * 1000, "modelMetrics": {"claude-sonnet-4.5":
                {"usage": {"inputTokens": i + r, "outputTokens": o, "cacheReadTokens": r, "cacheWriteTokens": 0}}}}), t)),
        ts().prop_map(move |t| ev("abort", json!({"reason": "user_initiated"}), t)),
    ]
    .boxed()
}

fn kimi() -> BoxedStrategy<Value> {
    let t = || 1_796_000_000.0f64..1_796_086_400.0;
    prop_oneof![
        (t(), text()).prop_map(|(t, p)| json!({"timestamp": t, "message": {"type": "TurnBegin", "payload": {"user_input": p}}})),
        (t(), 0u64..20_000, 0u64..2_000, 0u64..50_000, id()).prop_map(|(t, i, o, r, m)| json!({"timestamp": t,
            "message": {"type": "StatusUpdate", "payload": {"token_usage": {"input_other": i, "output": o,
                "input_cache_read": r, "input_cache_creation": 0}, "message_id": m}}})),
        (t(), id()).prop_map(|(t, i)| json!({"timestamp": t, "message": {"type": "ApprovalRequest", "payload": {"id": i, "action": "run"}}})),
        (t(), id()).prop_map(|(t, i)| json!({"timestamp": t, "message": {"type": "ApprovalResponse", "payload": {"request_id": i, "response": "approve"}}})),
        t().prop_map(|t| json!({"timestamp": t, "message": {"type": "TurnEnd", "payload": {}}})),
        (1_796_000_000_000i64..1_796_086_400_000, 0u64..20_000).prop_map(|(t, i)| json!({"type": "usage.record",
            "model": "kimi-k2.6", "usage": {"inputOther": i, "output": 3, "inputCacheRead": 0, "inputCacheCreation": 0}, "time": t})),
        (1_796_000_000_000i64..1_796_086_400_000, prop_oneof![Just("completed"), Just("cancelled"), Just("failed")])
            .prop_map(|(t, r)| json!({"type": "turn.ended", "reason": r, "time": t})),
    ]
    .boxed()
}

fn droid() -> BoxedStrategy<Value> {
    prop_oneof![
        text().prop_map(|s| json!({"type": "session_start", "id": "s", "title": s, "cwd": "/src"})),
        (ts(), text(), prop_oneof![Just("user"), Just("assistant")])
            .prop_map(|(t, c, r)| json!({"type": "message", "timestamp": t, "message": {"role": r, "content": c}})),
    ]
    .boxed()
}

/// A session: lines, and where a restart cuts it.
fn session(records: BoxedStrategy<Value>) -> impl Strategy<Value = (Vec<Vec<u8>>, usize)> {
    proptest::collection::vec(line_from(records), 0..30).prop_flat_map(|lines| {
        let n = lines.len();
        (Just(lines), 0..=n)
    })
}

/// Folds `lines` whole, and again with a save and load (as a cursor) at `cut`: the same.
fn restart_changes_nothing<F: ConversationFold + std::fmt::Debug>(
    (lines, cut): (Vec<Vec<u8>>, usize),
) -> Result<(), TestCaseError> {
    let prices = Prices::builtin();
    let mut whole = F::default();
    for l in &lines {
        let _ = whole.apply(l, &prices);
    }
    let mut first = F::default();
    for l in &lines[..cut] {
        let _ = first.apply(l, &prices);
    }
    let saved = agentd::store::encode(&first);
    let mut resumed: F = agentd::store::decode(&saved)
        .map_err(|e| TestCaseError::fail(format!("the saved fold does not load: {e}")))?;
    for l in &lines[cut..] {
        let _ = resumed.apply(l, &prices);
    }
    for now in [0, 1_796_000_000_000, 1_796_100_000_000] {
        prop_assert_eq!(
            whole.conversation(Millis(now)),
            resumed.conversation(Millis(now))
        );
    }
    Ok(())
}

/// [`restart_changes_nothing`], and the format's transcript renderer takes every line (and
/// finishes) without panicking.
fn fold_and_render<F: ConversationFold + std::fmt::Debug>(
    scheme: &'static str,
) -> impl Fn((Vec<Vec<u8>>, usize)) -> Result<(), TestCaseError> {
    move |session| {
        let kind = agentd::sources::SourceKind::from_name(scheme).expect("a source");
        let mut transcript = kind.transcript().expect("a conversation source");
        for line in &session.0 {
            let _ = transcript.line(line);
        }
        let _ = transcript.finish();
        restart_changes_nothing::<F>(session)
    }
}

#[test]
fn fuzz_claude_code_fold() {
    run(
        "claude-code",
        session(claude()),
        fold_and_render::<agentd::ingest::claude::ClaudeFold>("claude-code"),
    );
}

#[test]
fn fuzz_codex_fold() {
    run(
        "codex",
        session(codex()),
        fold_and_render::<agentd::ingest::codex::CodexFold>("codex"),
    );
}

#[test]
fn fuzz_gemini_fold() {
    run(
        "gemini",
        session(gemini()),
        fold_and_render::<agentd::ingest::gemini::GeminiFold>("gemini"),
    );
}

#[test]
fn fuzz_qwen_fold() {
    run(
        "qwen",
        session(qwen()),
        fold_and_render::<agentd::ingest::qwen::QwenFold>("qwen"),
    );
}

#[test]
fn fuzz_copilot_fold() {
    run(
        "copilot",
        session(copilot()),
        fold_and_render::<agentd::ingest::copilot::CopilotFold>("copilot"),
    );
}

#[test]
fn fuzz_kimi_fold() {
    run(
        "kimi",
        session(kimi()),
        fold_and_render::<agentd::ingest::kimi::KimiFold>("kimi"),
    );
}

#[test]
fn fuzz_droid_fold() {
    run(
        "droid",
        session(droid()),
        fold_and_render::<agentd::ingest::droid::DroidFold>("droid"),
    );
}

fn runlog() -> BoxedStrategy<Value> {
    prop_oneof![
        (ts(), text()).prop_map(
            |(t, s)| json!({"type": "start", "ts": t, "title": s, "harness": "codex", "pid": 1})
        ),
        (ts(), text())
            .prop_map(|(t, d)| json!({"type": "output", "ts": t, "stream": "stdout", "data": d})),
        (
            ts(),
            prop_oneof![Just("working"), Just("blocked"), Just("nonsense")]
        )
            .prop_map(|(t, s)| json!({"type": "status", "ts": t, "status": s, "detail": "d"})),
        (ts(), 0u64..100_000, 0.0f64..10.0).prop_map(
            |(t, i, c)| json!({"type": "usage", "ts": t, "input_tokens": i, "cost_usd": c})
        ),
        (
            ts(),
            prop_oneof![
                Just("success"),
                Just("failed"),
                Just("canceled"),
                Just("odd")
            ]
        )
            .prop_map(|(t, s)| json!({"type": "end", "ts": t, "status": s, "exit_code": 0})),
    ]
    .boxed()
}

#[test]
fn fuzz_run_log_parser_and_fold() {
    run("runs", session(runlog()), |(lines, cut)| {
        use agentd::ingest::runlog::{RunFold, parse_line};
        let fold = |lines: &[Vec<u8>], mut f: RunFold| {
            for l in lines {
                if let Ok(r) = parse_line(l) {
                    f.apply(r);
                }
            }
            f
        };
        let whole = fold(&lines, RunFold::default());
        let first = fold(&lines[..cut], RunFold::default());
        let loaded: RunFold = agentd::store::decode(&agentd::store::encode(&first))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let resumed = fold(&lines[cut..], loaded);
        prop_assert_eq!(
            whole.item("r", Millis(0), false),
            resumed.item("r", Millis(0), false)
        );
        Ok(())
    });
}

#[test]
fn fuzz_query_parameters() {
    // The parameters the list route takes, as the API defines them.
    let names = agentd::api::params::AGENT_PARAMS;
    let value = prop_oneof![
        "[a-z0-9,:_-]{0,12}",
        "\\PC{0,12}",
        Just("9999-12-31".to_owned()),
        Just("-1".to_owned())
    ];
    let query = proptest::collection::vec((prop::sample::select(names.to_vec()), value), 0..6)
        .prop_map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", v.replace(['&', '#'], "")))
                .collect::<Vec<_>>()
                .join("&")
        });
    let raw = "\\PC{0,60}";
    run("query", (query, raw), |(q, raw)| {
        let tz = jiff::tz::TimeZone::UTC;
        for q in [q.as_str(), raw.as_str()] {
            // Refused with a named parameter, or parsed into a filter: never a panic.
            if let Ok(p) = agentd::api::params::Params::parse(Some(q), names) {
                let _ = agentd::api::params::filter(&p, &tz);
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_hook_payloads() {
    use agentd::sources::SourceKind;
    let event = prop_oneof![
        Just("Notification"),
        Just("PreToolUse"),
        Just("Stop"),
        Just("StopFailure"),
        Just("PermissionRequest"),
        Just("AfterAgent"),
        Just("ErrorOccurred"),
        Just("SessionEnd"),
        Just("Other"),
    ];
    let payload = (
        event,
        text(),
        text(),
        any::<bool>(),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(e, m, k, rec, n)| {
            json!({"session_id": "s-1", "hook_event_name": e, "message": m, "notification_type": k,
                "recoverable": rec, "error": {"message": m}, "n": n})
        });
    let junk = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from)
    ];
    run("hooks", (payload, junk), |(p, junk)| {
        for kind in SourceKind::ALL {
            let _ = agentd::ingest::hooks::decode(kind, &p);
            let _ = agentd::ingest::hooks::decode(kind, &junk);
            let _ = agentd::ingest::hooks::session_of(&junk);
        }
        Ok(())
    });
}

/// A record holding a string that starts with `body` (and ends wherever its bytes say), and a
/// field after it.
fn record_with_string(body: &[u8]) -> Vec<u8> {
    let mut record = br#"{"skipped":""#.to_vec();
    record.extend_from_slice(body);
    record.extend_from_slice(br#"","after":1}"#);
    record
}

/// The patched skipping of a string (`vendor/serde_json/PATCH.md`) against serde_json's
/// byte-at-a-time reader, which it does not touch: `record` skipped (`IgnoredAny`), kept as its
/// literal (`RawValue`) and read as a string is accepted or refused alike (by the kind of
/// error), and read alike.
fn skips_as_the_bytewise_reader(record: &[u8]) -> Result<(), TestCaseError> {
    #[derive(serde::Deserialize, PartialEq, Debug)]
    struct Skipped {
        after: u32,
    }
    #[derive(serde::Deserialize)]
    struct Literal<'a> {
        #[serde(borrow)]
        skipped: &'a serde_json::value::RawValue,
        after: u32,
    }
    #[derive(serde::Deserialize)]
    struct OwnedLiteral {
        skipped: Box<serde_json::value::RawValue>,
        after: u32,
    }
    #[derive(serde::Deserialize, PartialEq, Debug)]
    struct Decoded {
        skipped: String,
        after: u32,
    }
    let kind = |e: serde_json::Error| format!("{:?}", e.classify());
    let shown = String::from_utf8_lossy(record);
    prop_assert_eq!(
        serde_json::from_slice::<Skipped>(record).map_err(kind),
        serde_json::from_reader::<_, Skipped>(record).map_err(kind),
        "skipped: {}",
        shown
    );
    prop_assert_eq!(
        serde_json::from_slice::<Literal>(record)
            .map(|l| (l.skipped.get().to_owned(), l.after))
            .map_err(kind),
        serde_json::from_reader::<_, OwnedLiteral>(record)
            .map(|l| (l.skipped.get().to_owned(), l.after))
            .map_err(kind),
        "literal: {}",
        shown
    );
    prop_assert_eq!(
        serde_json::from_slice::<Decoded>(record).map_err(kind),
        serde_json::from_reader::<_, Decoded>(record).map_err(kind),
        "decoded: {}",
        shown
    );
    Ok(())
}

/// Every kind of byte that ends a plain run (a closing quote, escapes valid, invalid and cut
/// short, runs of backslashes, control characters, the end of the input) and bytes that must
/// not (0x20, 0x7F, UTF-8, `/`), after plain runs of every length across two 32-byte blocks,
/// each last or followed by five endings, skip as the byte-at-a-time reader reads them. (Where the CPU has no
/// AVX2 the published code runs, and this checks that instead.)
#[test]
fn a_skipped_string_ends_and_fails_where_the_bytewise_reader_says() {
    let stops: &[&[u8]] = &[
        b"\"",
        b"\\\\\"",
        b"\\\\\\\"",
        b"\\\\\\\\\"",
        b"\\u12\"",
        b"\\uD83D",
        b"\\",
        b"\\n",
        b"\\\"",
        b"\\u00e9",
        b"\\ud83d\\ude00",
        b"\\q",
        b"\\u12",
        b"\x00",
        b"\x01",
        b"\x01\"",
        b"\n",
        b"\x1f",
        b" ",
        b"\x7f",
        "\u{e9}\u{1f600}".as_bytes(),
        b"/",
        b"",
    ];
    let plain: Vec<u8> = (0..40).map(|i| b'A' + (i % 26) as u8).collect();
    let after_stop = [
        Vec::new(),
        [plain.as_slice(), b"\""].concat(),
        [plain.as_slice(), b"tail\""].concat(),
        plain.clone(),
        [plain.as_slice(), b"x"].concat(),
    ];
    for run in 0..80 {
        for stop in stops {
            for rest in &after_stop {
                let mut body: Vec<u8> = (0..run).map(|i| b'a' + (i % 26) as u8).collect();
                body.extend_from_slice(stop);
                body.extend_from_slice(rest);
                // Whole, and cut off right after the body (the input ends inside the string,
                // or just after it).
                let record = record_with_string(&body);
                let cut = &record[..r#"{"skipped":""#.len() + body.len()];
                for record in [record.as_slice(), cut] {
                    if let Err(e) = skips_as_the_bytewise_reader(record) {
                        panic!("{e}");
                    }
                }
            }
        }
    }
}

/// The same on random strings: plain runs of random lengths (across the 32-byte blocks), each
/// ended by a byte drawn from those that matter: quotes, backslashes (runs of them too), escape
/// letters, control characters, UTF-8 and bytes that are not.
#[test]
fn fuzz_json_string_skip() {
    let stop = prop::sample::select(vec![
        b' ', b'"', b'\\', b'n', b'u', b'0', b'e', b'F', b'/', b'\n', 0x00, 0x01, 0x1f, 0x7f, 0xc3,
        0xa9, 0xff,
    ]);
    let body = proptest::collection::vec((0..80usize, stop), 0..10);
    run("json-skip", body, |pieces| {
        let body: Vec<u8> = pieces
            .iter()
            .flat_map(|(run, stop)| std::iter::repeat_n(b'a', *run).chain([*stop]))
            .collect();
        skips_as_the_bytewise_reader(&record_with_string(&body))
    });
}
