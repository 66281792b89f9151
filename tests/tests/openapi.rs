//! The OpenAPI document (`docs/openapi.json`) against the implementation: every route the
//! router serves is documented and every documented route is served; a live agentd answers
//! each operation, right and wrong, with a documented status, a body that validates against
//! the documented schema, and an error code from the documented list with its documented
//! status. (`scripts/schemathesis` runs Schemathesis against a live agentd as well.)

use agentd_tests::{Daemon, Options, ago, rec};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

fn doc() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Follows a local `$ref`.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("a local reference");
            resolve(
                doc,
                doc.pointer(pointer).unwrap_or_else(|| panic!("no {r}")),
            )
        }
        None => v,
    }
}

/// Checks `value` against the subset of JSON Schema the document uses; `Err` says where.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "object" => value.is_object(),
            "array" => value.is_array(),
            "null" => value.is_null(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: {value} is not of type {types:?}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {options:?}"));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        return Err(format!("{at}: {n} < {min}"));
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && let Some(s) = value.as_str()
        && agentd_wire::parse_rfc3339_ms(s).is_none()
    {
        return Err(format!("{at}: {s:?} is not a date-time"));
    }
    if let Some(obj) = value.as_object() {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                return Err(format!("{at}: missing {r:?}"));
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in obj {
                match props.get(k) {
                    Some(s) => validate(doc, s, v, &format!("{at}.{k}"))?,
                    None => return Err(format!("{at}: {k:?} is not documented")),
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            validate(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The routes the router declares, from its source (`.route("…", …)`).
fn routes_in_source() -> BTreeSet<String> {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../daemon/src/api/mod.rs"),
    )
    .unwrap();
    src.split(".route(\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

#[test]
fn every_route_is_documented_and_every_documented_route_is_served() {
    let doc = doc();
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(routes_in_source(), documented);
}

/// Checks one answer of `method path` against the document.
fn check(doc: &Value, method: &str, template: &str, status: u16, content_type: &str, body: &[u8]) {
    let op = &doc["paths"][template][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {template} is not documented");
    let resp = op["responses"]
        .get(status.to_string())
        .map(|r| resolve(doc, r))
        .unwrap_or_else(|| panic!("{method} {template}: status {status} is not documented"));
    let media = content_type.split(';').next().unwrap_or("").trim();
    let Some(content) = resp["content"].as_object() else {
        return;
    };
    let schema = &content
        .get(media)
        .unwrap_or_else(|| panic!("{method} {template} {status}: {media:?} is not documented"))["schema"];
    if media == "application/json" {
        let v: Value = serde_json::from_slice(body).unwrap();
        if let Err(e) = validate(doc, schema, &v, "body") {
            panic!("{method} {template} {status}: {e}\n{v}");
        }
        if status >= 400 {
            let code = v["error"]["code"].as_str().unwrap();
            assert_eq!(
                doc["x-error-codes"][code].as_u64(),
                Some(u64::from(status)),
                "{method} {template}: code {code} with status {status}"
            );
        }
    }
}

#[test]
fn every_operation_answers_as_documented_right_and_wrong() {
    let doc = doc();
    let d = Daemon::start_with(
        "openapi",
        Options {
            http: Some("127.0.0.1:0".into()),
            ..Options::default()
        },
    );
    d.write_run(
        "done",
        &[
            rec(
                json!({"type": "start", "ts": ago(9), "title": "finished run", "harness": "codex"}),
            ),
            rec(json!({"type": "usage", "ts": ago(8), "input_tokens": 10, "cost_usd": 0.01})),
            rec(json!({"type": "end", "ts": ago(7), "status": "success"})),
        ],
    );
    d.write_run(
        "live",
        &[rec(
            json!({"type": "start", "ts": ago(5), "title": "live run", "pid": std::process::id()}),
        )],
    );
    d.wait_item("cli:live", |v| v["status"] == "working");
    d.wait_item("cli:done", |v| v["status"] == "success");

    // (method, path, template, body)
    let cases: &[(&str, &str, &str, &[u8])] = &[
        ("GET", "/", "/", b""),
        ("GET", "/v1/health", "/v1/health", b""),
        ("GET", "/v1/agents?tab=all&limit=10", "/v1/agents", b""),
        (
            "GET",
            "/v1/agents?tab=all&status=success,failed&harness=codex&day=today",
            "/v1/agents",
            b"",
        ),
        ("GET", "/v1/agents?limit=0", "/v1/agents", b""),
        ("GET", "/v1/agents?status=sleeping", "/v1/agents", b""),
        ("GET", "/v1/agents?tab=everyone", "/v1/agents", b""),
        ("GET", "/v1/agents?nonsense=1", "/v1/agents", b""),
        ("GET", "/v1/agents?cursor=%%%", "/v1/agents", b""),
        ("GET", "/v1/agents/cli:done", "/v1/agents/{id}", b""),
        ("GET", "/v1/agents/cli:nope", "/v1/agents/{id}", b""),
        ("GET", "/v1/agents/cli:done/log", "/v1/agents/{id}/log", b""),
        ("GET", "/v1/agents/cli:nope/log", "/v1/agents/{id}/log", b""),
        (
            "GET",
            "/v1/agents/cli:done/log?follow=maybe",
            "/v1/agents/{id}/log",
            b"",
        ),
        (
            "POST",
            "/v1/agents/cli:done/cancel",
            "/v1/agents/{id}/cancel",
            b"",
        ),
        (
            "POST",
            "/v1/agents/cli:nope/cancel",
            "/v1/agents/{id}/cancel",
            b"",
        ),
        (
            "POST",
            "/v1/agents/cli:done/cancel?force=sure",
            "/v1/agents/{id}/cancel",
            b"",
        ),
        ("GET", "/v1/summary", "/v1/summary", b""),
        ("GET", "/v1/summary?tab=all", "/v1/summary", b""),
        ("GET", "/v1/summary?tab=x", "/v1/summary", b""),
        ("GET", "/v1/events?tab=x", "/v1/events", b""),
        ("POST", "/v1/sync", "/v1/sync", b""),
        (
            "POST",
            "/v1/hooks/claude-code",
            "/v1/hooks/{agent}",
            br#"{"session_id":"abc","hook_event_name":"Stop"}"#,
        ),
        (
            "POST",
            "/v1/hooks/claude-code",
            "/v1/hooks/{agent}",
            br#"{"session_id":"abc","hook_event_name":"Whatever"}"#,
        ),
        (
            "POST",
            "/v1/hooks/claude-code",
            "/v1/hooks/{agent}",
            b"not json",
        ),
        (
            "POST",
            "/v1/hooks/claude-code",
            "/v1/hooks/{agent}",
            br#"{"hook_event_name":"Stop"}"#,
        ),
        (
            "POST",
            "/v1/hooks/kimi",
            "/v1/hooks/{agent}",
            br#"{"session_id":"abc","hook_event_name":"Stop"}"#,
        ),
        ("GET", "/metrics", "/metrics", b""),
        // The route exists, not with this method.
        ("DELETE", "/v1/agents", "/v1/agents", b""),
        ("GET", "/v1/sync", "/v1/sync", b""),
    ];
    let mut seen = BTreeSet::new();
    for (method, path, template, body) in cases {
        let r = d.req(method, path, body);
        let ct = r.header("content-type").unwrap_or("").to_owned();
        let method_doc = if r.status == 405 {
            // Answered for the route, documented on each of its operations.
            doc["paths"][*template]
                .as_object()
                .unwrap()
                .keys()
                .next()
                .unwrap()
                .to_ascii_uppercase()
        } else {
            method.to_string()
        };
        check(&doc, &method_doc, template, r.status, &ct, &r.body);
        seen.insert((template.to_string(), r.status));
    }
    // The cases reached the interesting answers, not only 200s.
    for want in [
        ("/v1/agents", 400),
        ("/v1/agents/{id}", 404),
        ("/v1/agents/{id}/cancel", 409),
        ("/v1/agents/{id}/cancel", 404),
        ("/v1/hooks/{agent}", 400),
        ("/v1/hooks/{agent}", 404),
        ("/v1/agents", 405),
    ] {
        assert!(
            seen.contains(&(want.0.to_string(), want.1)),
            "{want:?} never answered: {seen:?}"
        );
    }
    // Over TCP: no token, a foreign Host, a foreign Origin; and with the token.
    let token = format!("Bearer {}", d.token());
    for (headers, want) in [
        (vec![], 401),
        (
            vec![("Authorization", token.as_str()), ("Host", "evil.example")],
            403,
        ),
        (
            vec![
                ("Authorization", token.as_str()),
                ("Origin", "http://evil.example"),
            ],
            403,
        ),
        (vec![("Authorization", token.as_str())], 200),
    ] {
        let r = d.tcp("GET", "/v1/summary", &headers);
        assert_eq!(r.status, want, "{headers:?}: {}", r.text());
        check(
            &doc,
            "GET",
            "/v1/summary",
            r.status,
            r.header("content-type").unwrap_or(""),
            &r.body,
        );
    }
    // A path no route matches: the documented error shape.
    let r = d.req("GET", "/v2/anything", b"");
    assert_eq!(r.status, 404);
    let v = r.json();
    validate(&doc, &doc["components"]["schemas"]["Error"], &v, "body").unwrap();
}
