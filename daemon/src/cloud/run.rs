//! Warp's Oz Agent API, the pure part: a `RunItem` becomes an item, and a run's conversation
//! becomes readable text (CONTRACT.md section 7).
//!
//! | `state` | status |
//! |---|---|
//! | `QUEUED` `PENDING` `CLAIMED` `INPROGRESS` `IN_PROGRESS` | working |
//! | `BLOCKED` | blocked (detail: `status_message.message`) |
//! | `CANCELLED` | canceled |
//! | `SUCCEEDED` | success |
//! | `FAILED` `ERROR`, anything else | failed (detail: the message, else the error code, else "unknown state X") |
//!
//! `source`: `CLI` cli, `API` api, `SLACK` slack, `LINEAR` linear, `SCHEDULED_AGENT` scheduled,
//! `GITHUB_ACTION` github_actions, `WEB_APP` web, `LOCAL`/`CLOUD_MODE` interactive, else other.
//! `credits` is the sum of the `request_usage` costs present; `duration_ms` is `run_time` (an
//! ISO 8601 duration), else `started_at` → `updated_at` for finished runs (time so far is added
//! on read while working).

use agentd_wire::{Item, Kind, Millis, Open, Source, Status, Usage};
use serde::Deserialize;
use serde_json::Value;

/// The fields of a `RunItem` that are used; everything else is ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct RunItem {
    pub run_id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub run_time: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub creator: Option<Creator>,
    #[serde(default)]
    pub session_link: Option<String>,
    #[serde(default)]
    pub status_message: Option<StatusMessage>,
    #[serde(default)]
    pub request_usage: Option<RequestUsage>,
    #[serde(default)]
    pub agent_config: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Creator {
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StatusMessage {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RequestUsage {
    #[serde(default)]
    pub inference_cost: Option<f64>,
    #[serde(default)]
    pub compute_cost: Option<f64>,
    #[serde(default)]
    pub platform_cost: Option<f64>,
}

/// Who "me" is among cloud creators (config `cloud.me`, and the user's e-mail).
#[derive(Debug, Clone, Default)]
pub struct Me {
    pub uid: Option<String>,
    pub email: Option<String>,
}

impl Me {
    pub fn is(&self, c: Option<&Creator>) -> bool {
        let Some(c) = c else { return false };
        let same = |a: &Option<String>, b: &Option<String>, fold: bool| match (a, b) {
            (Some(a), Some(b)) if fold => a.eq_ignore_ascii_case(b),
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        same(&self.uid, &c.uid, false) || same(&self.email, &c.email, true)
    }
}

fn status_of(state: &str) -> Status {
    match state {
        "QUEUED" | "PENDING" | "CLAIMED" | "INPROGRESS" | "IN_PROGRESS" => Status::Working,
        "BLOCKED" => Status::Blocked,
        "CANCELLED" => Status::Canceled,
        "SUCCEEDED" => Status::Success,
        _ => Status::Failed,
    }
}

fn source_of(source: Option<&str>) -> Source {
    match source {
        Some("CLI") => Source::Cli,
        Some("API") => Source::Api,
        Some("SLACK") => Source::Slack,
        Some("LINEAR") => Source::Linear,
        Some("SCHEDULED_AGENT") => Source::Scheduled,
        Some("GITHUB_ACTION") => Source::GithubActions,
        Some("WEB_APP") => Source::Web,
        Some("LOCAL" | "CLOUD_MODE") => Source::Interactive,
        _ => Source::Other,
    }
}

/// An ISO 8601 duration (`PT1H2M3.5S`, `P1DT2H`) in milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let rest = text.trim().strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut ms = 0f64;
    let mut read = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut number = String::new();
        for ch in part.chars() {
            if ch.is_ascii_digit() || ch == '.' || ch == ',' {
                number.push(if ch == ',' { '.' } else { ch });
                continue;
            }
            let factor = units.iter().find(|(u, _)| *u == ch)?.1;
            ms += number.parse::<f64>().ok()? * factor;
            number.clear();
        }
        number.is_empty().then_some(())
    };
    read(days, &[('W', 604_800_000.0), ('D', 86_400_000.0)])?;
    read(time, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1_000.0)])?;
    (ms.is_finite() && ms >= 0.0).then(|| ms.round() as u64)
}

fn ts(text: &str) -> Option<Millis> {
    agentd_wire::parse_rfc3339_ms(text).map(Millis)
}

fn cut(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("").trim();
    if line.chars().count() > 200 {
        format!("{}…", line.chars().take(199).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// The item of a run; `Err` names what makes the run unusable.
pub fn item_of(run: &RunItem) -> Result<Item, String> {
    // The id ends up in item ids, URLs and a shell command (`agentctl logs cloud:<id>`): only
    // plain ids are taken.
    if run.run_id.is_empty()
        || run.run_id.len() > 128
        || !run
            .run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!("a run with an unusable id {:?}", run.run_id));
    }
    let created = ts(&run.created_at).ok_or_else(|| {
        format!(
            "run {}: created_at {:?} is not a time",
            run.run_id, run.created_at
        )
    })?;
    let updated = ts(&run.updated_at).unwrap_or(created).max(created);
    let state = run.state.as_deref().unwrap_or("");
    let status = status_of(state);
    let message = run.status_message.as_ref();
    let detail = match status {
        Status::Blocked | Status::Failed | Status::Canceled => message
            .and_then(|m| m.message.as_deref().map(cut))
            .filter(|m| !m.is_empty())
            .or_else(|| message.and_then(|m| m.error_code.clone()))
            .or_else(|| {
                (!matches!(state, "FAILED" | "ERROR" | "BLOCKED" | "CANCELLED"))
                    .then(|| format!("unknown state {state:?}"))
            }),
        _ => None,
    };
    let started = run.started_at.as_deref().and_then(ts).unwrap_or(created);
    let finished = (!status.is_active()).then_some(updated);
    let duration_ms = run
        .run_time
        .as_deref()
        .and_then(parse_duration_ms)
        .or_else(|| finished.map(|f| f.0.saturating_sub(started.0).max(0) as u64));
    let credits = run.request_usage.as_ref().and_then(|u| {
        let parts = [u.inference_cost, u.compute_cost, u.platform_cost];
        parts
            .iter()
            .any(Option::is_some)
            .then(|| parts.iter().flatten().sum::<f64>())
    });
    let title = run
        .title
        .as_deref()
        .map(cut)
        .filter(|t| !t.is_empty())
        .or_else(|| run.prompt.as_deref().map(cut).filter(|t| !t.is_empty()));
    let model = run
        .agent_config
        .as_ref()
        .and_then(|c| c.get("model_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Item {
        id: format!("cloud:{}", run.run_id),
        kind: Kind::Run,
        source: source_of(run.source.as_deref()),
        status,
        status_detail: detail,
        harness: Some("oz".to_owned()),
        title,
        creator: run.creator.as_ref().and_then(|c| {
            c.display_name
                .clone()
                .or_else(|| c.email.clone())
                .or_else(|| c.uid.clone())
        }),
        mine: false,
        project: None,
        model,
        created_at: created,
        updated_at: updated,
        finished_at: finished,
        duration_ms: if status.is_active() {
            None
        } else {
            duration_ms
        },
        credits,
        cost_usd: None,
        usage: Usage::default(),
        open: Open {
            // Handed to a browser opener: only web links.
            url: run
                .session_link
                .clone()
                .filter(|l| l.starts_with("https://") || l.starts_with("http://")),
            command: Some(format!("agentctl logs cloud:{}", run.run_id)),
        },
        status_source: Some(agentd_wire::StatusSource::CloudApi),
        blocked_ms: 0,
        blocked_since: None,
    })
}

/// Renders `/agent/runs/{id}/conversation` as text: each message with its role and time,
/// actions and their results, nested (delegated) steps indented.
pub fn render_conversation(v: &Value) -> String {
    let mut out = String::new();
    if let Some(steps) = v.get("steps").and_then(Value::as_array) {
        for step in steps {
            render_step(step, 0, &mut out);
        }
    }
    if out.is_empty() {
        out.push_str("(no messages yet)\n");
    }
    out
}

fn render_step(step: &Value, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    if let Some(d) = s(step, "description").or_else(|| s(step, "summary")) {
        out.push_str(&format!("{pad}## {}\n", d.trim()));
    }
    for m in step
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = s(m, "role").unwrap_or_else(|| "message".into());
        let at = s(m, "timestamp").unwrap_or_default();
        out.push_str(&format!("{pad}[{role}] {at}\n"));
        for block in m
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    for line in s(block, "text").unwrap_or_default().lines() {
                        out.push_str(&format!("{pad}  {line}\n"));
                    }
                }
                Some("action") => {
                    let name = s(block, "name").unwrap_or_else(|| "action".into());
                    let input = block
                        .get("input")
                        .map(|i| match i {
                            Value::String(t) => t.clone(),
                            other => other.to_string(),
                        })
                        .unwrap_or_default();
                    out.push_str(&format!("{pad}  → {name} {}\n", cut(&input)));
                }
                Some("action_result") => {
                    let name = s(block, "name").unwrap_or_else(|| "result".into());
                    let state = s(block, "state").unwrap_or_default();
                    out.push_str(&format!("{pad}  ← {name} {state}\n"));
                    let output = match block.get("output") {
                        Some(Value::String(t)) => t.clone(),
                        Some(Value::Null) | None => String::new(),
                        Some(other) => other.to_string(),
                    };
                    for line in output.lines().take(20) {
                        out.push_str(&format!("{pad}    {line}\n"));
                    }
                }
                _ => {}
            }
        }
    }
    for child in step
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        render_step(child, depth + 1, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value) -> RunItem {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> Value {
        json!({"run_id": "r1", "title": "Fix login", "prompt": "fix it", "state": "SUCCEEDED",
            "created_at": "2026-11-28T09:00:00Z", "updated_at": "2026-11-28T09:05:00Z",
            "started_at": "2026-11-28T09:00:30Z", "source": "SLACK",
            "creator": {"type": "user", "uid": "u-alice", "display_name": "Alice", "email": "alice@example.com"},
            "session_link": "https://app.warp.dev/session/abc",
            "request_usage": {"inference_cost": 1.5, "compute_cost": 0.25}})
    }

    fn with(patch: Value) -> RunItem {
        let mut v = base();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        run(v)
    }

    #[test]
    fn states_sources_and_details() {
        for (patch, status, source, detail) in [
            (json!({}), Status::Success, Source::Slack, None),
            (
                json!({"state": "INPROGRESS", "source": "CLI"}),
                Status::Working,
                Source::Cli,
                None,
            ),
            (
                json!({"state": "IN_PROGRESS", "source": "API"}),
                Status::Working,
                Source::Api,
                None,
            ),
            (
                json!({"state": "QUEUED", "source": "LINEAR"}),
                Status::Working,
                Source::Linear,
                None,
            ),
            (
                json!({"state": "BLOCKED", "source": "SCHEDULED_AGENT", "status_message": {"message": "Approve the deploy?"}}),
                Status::Blocked,
                Source::Scheduled,
                Some("Approve the deploy?"),
            ),
            (
                json!({"state": "CANCELLED", "source": "GITHUB_ACTION"}),
                Status::Canceled,
                Source::GithubActions,
                None,
            ),
            (
                json!({"state": "ERROR", "source": "WEB_APP", "status_message": {"error_code": "insufficient_credits"}}),
                Status::Failed,
                Source::Web,
                Some("insufficient_credits"),
            ),
            (
                json!({"state": "FAILED", "source": "LOCAL"}),
                Status::Failed,
                Source::Interactive,
                None,
            ),
            (
                json!({"state": "EXPLODED", "source": "JIRA"}),
                Status::Failed,
                Source::Other,
                Some("unknown state \"EXPLODED\""),
            ),
        ] {
            let item = item_of(&with(patch.clone())).unwrap();
            assert_eq!(
                (item.status, item.source, item.status_detail.as_deref()),
                (status, source, detail),
                "{patch}"
            );
        }
    }

    #[test]
    fn credits_duration_and_fields() {
        let item = item_of(&with(json!({}))).unwrap();
        assert_eq!(item.id, "cloud:r1");
        assert_eq!(item.kind, Kind::Run);
        assert_eq!(item.credits, Some(1.75));
        assert_eq!(item.creator.as_deref(), Some("Alice"));
        assert_eq!(item.title.as_deref(), Some("Fix login"));
        assert_eq!(
            item.open.url.as_deref(),
            Some("https://app.warp.dev/session/abc")
        );
        // No run_time: started_at → updated_at.
        assert_eq!(item.duration_ms, Some(270_000));
        let item = item_of(&with(json!({"run_time": "PT1M30.5S"}))).unwrap();
        assert_eq!(item.duration_ms, Some(90_500));
        let item = item_of(&with(json!({"state": "INPROGRESS", "run_time": "PT5S"}))).unwrap();
        assert_eq!(
            (item.duration_ms, item.finished_at),
            (None, None),
            "added on read"
        );
        let item = item_of(&with(json!({"request_usage": null, "title": ""}))).unwrap();
        assert_eq!(item.credits, None);
        assert_eq!(
            item.title.as_deref(),
            Some("fix it"),
            "the prompt when there is no title"
        );
        assert!(item_of(&with(json!({"created_at": "yesterday"}))).is_err());
        assert!(item_of(&with(json!({"run_id": "x;$(rm -rf ~)"}))).is_err());
        let item = item_of(&with(json!({"session_link": "file:///etc/passwd"}))).unwrap();
        assert_eq!(item.open.url, None);
    }

    #[test]
    fn iso_durations() {
        for (text, ms) in [
            ("PT0S", Some(0)),
            ("PT1H2M3S", Some(3_723_000)),
            ("P1DT1S", Some(86_401_000)),
            ("PT0.25S", Some(250)),
            ("P1W", Some(604_800_000)),
            ("1h", None),
            ("PT5X", None),
            ("", None),
        ] {
            assert_eq!(parse_duration_ms(text), ms, "{text}");
        }
    }

    #[test]
    fn personal_matches_uid_or_email() {
        let me = Me {
            uid: Some("u-alice".into()),
            email: Some("ALICE@example.com".into()),
        };
        let c = |uid: &str, email: &str| Creator {
            uid: Some(uid.into()),
            display_name: None,
            email: Some(email.into()),
        };
        assert!(me.is(Some(&c("u-alice", "x@y"))));
        assert!(me.is(Some(&c("other", "alice@example.com"))));
        assert!(!me.is(Some(&c("u-bob", "bob@example.com"))));
        assert!(!me.is(None));
    }

    #[test]
    fn conversations_render_with_nested_steps() {
        let v = json!({"conversation_id": "c1", "steps": [
            {"id": "s1", "description": "Fix the login test", "messages": [
                {"role": "user", "timestamp": "2026-11-28T09:00:00Z", "content": [{"type": "text", "text": "fix it"}]},
                {"role": "assistant", "timestamp": "2026-11-28T09:00:05Z", "content": [
                    {"type": "text", "text": "Running the tests."},
                    {"type": "action", "id": "a1", "category": "shell", "name": "run_command", "input": {"command": "cargo test"}},
                    {"type": "action_result", "action_id": "a1", "name": "run_command", "state": "success", "output": "ok\n2 passed"}
                ]}
            ], "steps": [
                {"id": "s2", "summary": "Sub-agent: check CI", "messages": [
                    {"role": "assistant", "timestamp": "2026-11-28T09:01:00Z", "content": [{"type": "text", "text": "CI green"}]}
                ]}
            ]}
        ]});
        let text = render_conversation(&v);
        for part in [
            "## Fix the login test",
            "[user] 2026-11-28T09:00:00Z\n  fix it",
            "→ run_command {\"command\":\"cargo test\"}",
            "← run_command success\n    ok\n    2 passed",
            "  ## Sub-agent: check CI",
            "    CI green",
        ] {
            assert!(text.contains(part), "{part:?} missing from:\n{text}");
        }
        assert_eq!(render_conversation(&json!({})), "(no messages yet)\n");
    }
}
