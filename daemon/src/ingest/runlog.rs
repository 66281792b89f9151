//! The CLI run log format (CONTRACT.md section 6): a pure parser and a fold.
//!
//! [`parse_line`] turns one line into a [`Record`] or says why it is malformed; [`RunFold`]
//! accumulates records into the run's state, and [`RunFold::item`] renders that state as an
//! agent item. No I/O and no clock: the same lines always give the same item, which is what
//! makes re-reading after a crash harmless.
//!
//! Status rules, in order:
//! - an `end` record decides: its `status`, else `success` for exit code 0 or none, else `failed`;
//!   `status_detail` is its `error`, else `exit code N` for a failure;
//! - before that, the last `status` record (`working` or `blocked`, with its `detail`);
//! - a run with only a `start` is `working`.
//!
//! Records after `end` only add usage. `usage` records add up (each is an increment).

use crate::model::{Item, Kind, Millis, Open, Source, Status, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `status_detail` of a run whose writer exited without an `end` record.
pub const EXITED_WITHOUT_END: &str = "exited without an end record";

/// The id scheme of CLI runs: item ids are `cli:<file stem>`.
pub const ID_SCHEME: &str = crate::sources::SourceKind::Runs.id_scheme();

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Start(Start),
    Output {
        ts: Millis,
    },
    Status {
        ts: Millis,
        /// `None`: the record only updates the detail.
        status: Option<Status>,
        detail: Option<String>,
    },
    Usage {
        ts: Millis,
        model: Option<String>,
        usage: Usage,
        cost_usd: Option<f64>,
    },
    End {
        ts: Millis,
        status: Status,
        exit_code: Option<i64>,
        error: Option<String>,
    },
    /// A type this version does not know: ignored, but its timestamp still counts as activity.
    Unknown {
        ts: Millis,
    },
}

/// The `start` record's fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Start {
    pub ts: Millis,
    pub title: Option<String>,
    pub harness: Option<String>,
    pub source: Option<String>,
    pub creator: Option<String>,
    pub cwd: Option<String>,
    pub pid: Option<u32>,
    pub command: Vec<String>,
}

/// Why a line was skipped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("missing or invalid \"type\"")]
    NoType,
    #[error("missing or invalid \"ts\" (RFC 3339 text or epoch milliseconds, years 1970 to 9999)")]
    NoTimestamp,
    #[error("\"{0}\" must be a number from 0 to 1e9")]
    BadMoney(String),
    #[error("a status record's status must be working or blocked, not {0:?}")]
    BadStatus(String),
    #[error("an end record's status must be success, failed or canceled, not {0:?}")]
    BadEndStatus(String),
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// The latest timestamp accepted (see [`crate::model::LATEST_MS`]).
const MAX_TS: i64 = crate::model::LATEST_MS;

/// Largest cost or credit amount a single record may carry; beyond it the value is not money
/// but garbage, and sums of it would overflow.
const MAX_MONEY: f64 = 1e9;

/// `ts` is RFC 3339 text, or a number of epoch milliseconds (values below 10^11 are taken as
/// seconds, which is what `date +%s` gives). Years before 1970 or after 9999 are refused.
fn timestamp(ts: Option<&Value>) -> Option<Millis> {
    let ms = match ts? {
        Value::String(s) => agentd_wire::parse_rfc3339_ms(s)?,
        Value::Number(n) => {
            let f = n.as_f64()?;
            if !f.is_finite() || f < 0.0 {
                return None;
            }
            if f < 1e11 {
                (f * 1000.0) as i64
            } else {
                f.min(i64::MAX as f64) as i64
            }
        }
        _ => return None,
    };
    (0..=MAX_TS).contains(&ms).then_some(Millis(ms))
}

/// A money amount: finite, not negative, not absurd.
fn money(v: &Value, key: &str) -> Result<Option<f64>, LineError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => match x.as_f64() {
            Some(c) if c.is_finite() && (0.0..=MAX_MONEY).contains(&c) => Ok(Some(c)),
            _ => Err(LineError::BadMoney(key.to_owned())),
        },
    }
}

/// Parses one line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<Record, LineError> {
    // Output records are nearly all of a busy run's log, and only their time matters here:
    // read just `type` and `ts`, skipping the data without building it.
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
        ts: Option<Value>,
    }
    // `agentctl run` writes output records with exactly this prefix: their time is read
    // straight from the bytes, without scanning the (possibly large) data at all.
    const OUTPUT_PREFIX: &[u8] = br#"{"type":"output","ts":""#;
    if let Some(rest) = line.strip_prefix(OUTPUT_PREFIX)
        && line.ends_with(b"}")
        && let Some(end) = rest.iter().position(|&b| b == b'"')
        && let Some(ts) = std::str::from_utf8(&rest[..end])
            .ok()
            .and_then(agentd_wire::parse_rfc3339_ms)
        && (0..=MAX_TS).contains(&ts)
    {
        return Ok(Record::Output { ts: Millis(ts) });
    }
    if let Ok(peek) = serde_json::from_slice::<Peek<'_>>(line)
        && peek.kind.as_deref() == Some("output")
    {
        let ts = timestamp(peek.ts.as_ref()).ok_or(LineError::NoTimestamp)?;
        return Ok(Record::Output { ts });
    }
    let v: Value =
        super::lenient::from_json_bytes(line).map_err(|e| LineError::NotJson(e.to_string()))?;
    if !v.is_object() {
        return Err(LineError::NotJson(
            "a JSON value that is not an object".into(),
        ));
    }
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or(LineError::NoType)?;
    let ts = timestamp(v.get("ts")).ok_or(LineError::NoTimestamp)?;
    Ok(match kind {
        "start" => Record::Start(Start {
            ts,
            title: text(&v, "title"),
            harness: text(&v, "harness"),
            source: text(&v, "source"),
            creator: text(&v, "creator"),
            cwd: text(&v, "cwd"),
            pid: v
                .get("pid")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok()),
            command: v
                .get("command")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }),
        "output" => Record::Output { ts },
        "status" => {
            let status = match text(&v, "status").as_deref() {
                None => None, // only the detail changes
                Some("working") => Some(Status::Working),
                Some("blocked") => Some(Status::Blocked),
                Some(other) => return Err(LineError::BadStatus(other.to_owned())),
            };
            Record::Status {
                ts,
                status,
                detail: text(&v, "detail"),
            }
        }
        "usage" => Record::Usage {
            ts,
            model: text(&v, "model"),
            usage: Usage {
                input_tokens: count(&v, "input_tokens"),
                output_tokens: count(&v, "output_tokens"),
                cache_read_tokens: count(&v, "cache_read_tokens"),
                cache_write_tokens: count(&v, "cache_write_tokens"),
            },
            cost_usd: money(&v, "cost_usd")?,
        },
        "end" => {
            let exit_code = v.get("exit_code").and_then(Value::as_i64);
            let status = match text(&v, "status").as_deref() {
                Some("success") => Status::Success,
                Some("failed") => Status::Failed,
                Some("canceled") => Status::Canceled,
                Some(other) => return Err(LineError::BadEndStatus(other.to_owned())),
                None if exit_code.unwrap_or(0) == 0 => Status::Success,
                None => Status::Failed,
            };
            Record::End {
                ts,
                status,
                exit_code,
                error: text(&v, "error"),
            }
        }
        _ => Record::Unknown { ts },
    })
}

/// The state of one run, built from its records. Stored with the file's cursor so that tailing
/// resumes without re-reading the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunFold {
    pub start: Option<Start>,
    pub first_ts: Option<Millis>,
    pub last_ts: Option<Millis>,
    pub status: Option<(Status, Option<String>)>,
    pub end: Option<(Millis, Status, Option<i64>, Option<String>)>,
    pub model: Option<String>,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub output_records: u64,
}

impl RunFold {
    /// Folds one record in.
    pub fn apply(&mut self, record: Record) {
        let ts = match &record {
            Record::Start(s) => s.ts,
            Record::Output { ts }
            | Record::Status { ts, .. }
            | Record::Usage { ts, .. }
            | Record::End { ts, .. }
            | Record::Unknown { ts } => *ts,
        };
        self.first_ts = Some(self.first_ts.map_or(ts, |f| f.min(ts)));
        self.last_ts = Some(self.last_ts.map_or(ts, |l| l.max(ts)));
        let ended = self.end.is_some();
        match record {
            Record::Start(s) => {
                if self.start.is_none() {
                    self.start = Some(s);
                }
            }
            Record::Output { .. } => self.output_records += 1,
            Record::Status { status, detail, .. } if !ended => {
                let status = status
                    .or(self.status.as_ref().map(|s| s.0))
                    .unwrap_or(Status::Working);
                self.status = Some((status, detail));
            }
            Record::Status { .. } => {}
            Record::Usage {
                model,
                usage,
                cost_usd,
                ..
            } => {
                if model.is_some() {
                    self.model = model;
                }
                self.usage.add(&usage);
                if let Some(c) = cost_usd {
                    self.cost_usd = Some(self.cost_usd.unwrap_or(0.0) + c);
                }
            }
            Record::End {
                ts,
                status,
                exit_code,
                error,
            } if !ended => {
                self.end = Some((ts, status, exit_code, error));
            }
            Record::End { .. } => {}
            Record::Unknown { .. } => {}
        }
    }

    /// Whether any record has been folded in.
    pub fn is_empty(&self) -> bool {
        self.first_ts.is_none()
    }

    /// The pid of the process that wrote the run, while it has not ended.
    pub fn live_pid(&self) -> Option<u32> {
        if self.end.is_some() {
            None
        } else {
            self.start.as_ref()?.pid
        }
    }

    /// Renders the run as an item. `run_id` is the file stem; `fallback_ts` (the file's
    /// modification time) dates a file that has no valid record yet; `writer_gone` says that
    /// the process named by `start.pid` has exited (see `liveness`), which fails a run that has
    /// no `end` record.
    pub fn item(&self, run_id: &str, fallback_ts: Millis, writer_gone: bool) -> Item {
        let start = self.start.clone().unwrap_or_default();
        let created = if self.start.is_some() {
            start.ts
        } else {
            self.first_ts.unwrap_or(fallback_ts)
        };
        let updated = self.last_ts.unwrap_or(fallback_ts).max(created);
        let (status, detail, finished) = match &self.end {
            Some((ts, status, code, error)) => {
                let detail = error.clone().or_else(|| match (status, code) {
                    (Status::Failed, Some(c)) => Some(format!("exit code {c}")),
                    _ => None,
                });
                (*status, detail, Some(*ts))
            }
            None if writer_gone && self.live_pid().is_some() => (
                Status::Failed,
                Some(EXITED_WITHOUT_END.to_owned()),
                Some(updated),
            ),
            None => match &self.status {
                Some((s, d)) => (*s, d.clone(), None),
                None => (Status::Working, None, None),
            },
        };
        let title = start
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| (!start.command.is_empty()).then(|| start.command.join(" ")))
            .unwrap_or_else(|| run_id.to_owned());
        let harness = start.harness.clone().or_else(|| {
            let prog = start.command.first()?;
            Some(prog.rsplit('/').next().unwrap_or(prog).to_owned())
        });
        let source = match start.source.as_deref() {
            None => Source::Cli,
            Some(s) => s.parse().unwrap_or(Source::Other),
        };
        let id = format!("{ID_SCHEME}:{run_id}");
        let command = format!("agentctl logs {}", shell_quote(&id));
        Item {
            open: Open {
                url: None,
                command: Some(command),
            },
            id,
            kind: Kind::Run,
            source,
            status,
            status_detail: detail,
            harness,
            title: Some(title),
            creator: start.creator.clone(),
            mine: false,
            project: start.cwd.clone(),
            model: self.model.clone(),
            created_at: created,
            updated_at: updated,
            finished_at: finished,
            duration_ms: finished.map(|f| f.0.saturating_sub(created.0).max(0) as u64),
            credits: None,
            cost_usd: self.cost_usd,
            usage: self.usage,
            status_source: Some(agentd_wire::StatusSource::RunLog),
            blocked_ms: 0,
            blocked_since: None,
        }
    }
}

/// Quotes a word for a POSIX shell, since `open.command` is run with `sh -c` and run ids come
/// from file names anyone with access to a runs dir can choose.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_.:/@%+=,".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The `data` of an `output` line, for the log endpoint; `None` for any other line.
pub fn output_data(line: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(line).ok()?;
    if v.get("type")?.as_str()? != "output" {
        return None;
    }
    Some(v.get("data")?.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-11-28T09:00:00.000Z";

    fn ms(s: &str) -> Millis {
        Millis(agentd_wire::parse_rfc3339_ms(s).unwrap())
    }

    /// Folds the lines (skipping malformed ones, as the daemon does) and renders the item.
    fn fold(lines: &[&str]) -> (Item, usize) {
        let mut f = RunFold::default();
        let mut bad = 0;
        for l in lines {
            match parse_line(l.as_bytes()) {
                Ok(r) => f.apply(r),
                Err(_) => bad += 1,
            }
        }
        (f.item("r1", ms(T0), false), bad)
    }

    /// One table row: lines in, the fields that matter out.
    fn check(
        lines: &[&str],
        status: Status,
        detail: Option<&str>,
        duration: Option<u64>,
        bad: usize,
    ) {
        let (item, skipped) = fold(lines);
        assert_eq!(
            (
                item.status,
                item.status_detail.as_deref(),
                item.duration_ms,
                skipped
            ),
            (status, detail, duration, bad),
            "lines: {lines:#?}"
        );
    }

    const START: &str = r#"{"type":"start","ts":"2026-11-28T09:00:00.000Z","title":"fix tests","harness":"claude-code","cwd":"/src/app","pid":4242,"command":["claude","-p","fix tests"]}"#;

    #[test]
    fn status_table() {
        check(&[START], Status::Working, None, None, 0);
        check(
            &[
                START,
                r#"{"type":"status","ts":"2026-11-28T09:00:05Z","status":"blocked","detail":"waiting for approval: Bash"}"#,
            ],
            Status::Blocked,
            Some("waiting for approval: Bash"),
            None,
            0,
        );
        check(
            &[
                START,
                r#"{"type":"end","ts":"2026-11-28T09:01:00Z","status":"success","exit_code":0}"#,
            ],
            Status::Success,
            None,
            Some(60_000),
            0,
        );
        check(
            &[
                START,
                r#"{"type":"end","ts":"2026-11-28T09:00:30Z","exit_code":3}"#,
            ],
            Status::Failed,
            Some("exit code 3"),
            Some(30_000),
            0,
        );
        check(
            &[
                START,
                r#"{"type":"end","ts":"2026-11-28T09:00:02Z","status":"canceled","exit_code":130,"error":"interrupted"}"#,
            ],
            Status::Canceled,
            Some("interrupted"),
            Some(2_000),
            0,
        );
        // A status after the end does not reopen the run; a second end does not replace the first.
        check(
            &[
                START,
                r#"{"type":"end","ts":"2026-11-28T09:00:10Z","status":"success"}"#,
                r#"{"type":"status","ts":"2026-11-28T09:00:11Z","status":"working"}"#,
                r#"{"type":"end","ts":"2026-11-28T09:00:12Z","status":"failed"}"#,
            ],
            Status::Success,
            None,
            Some(10_000),
            0,
        );
        // A status record without a status only updates the detail.
        check(
            &[
                START,
                r#"{"type":"status","ts":"2026-11-28T09:00:05Z","status":"blocked","detail":"approve Bash"}"#,
                r#"{"type":"status","ts":"2026-11-28T09:00:06Z","detail":"approve Edit"}"#,
            ],
            Status::Blocked,
            Some("approve Edit"),
            None,
            0,
        );
        // Timestamps a four-digit year cannot spell, and absurd money, are malformed.
        check(
            &[
                START,
                r#"{"type":"end","ts":1e18,"status":"failed"}"#,
                r#"{"type":"end","ts":"0000-01-01T00:00:00Z","status":"failed"}"#,
                r#"{"type":"usage","ts":"2026-11-28T09:00:01Z","cost_usd":1e300}"#,
                r#"{"type":"usage","ts":"2026-11-28T09:00:01Z","cost_usd":-1}"#,
            ],
            Status::Working,
            None,
            None,
            4,
        );
        // Malformed lines are skipped and counted; the rest still counts.
        check(
            &[
                START,
                "not json",
                "[1,2]",
                r#"{"ts":"2026-11-28T09:00:01Z"}"#,
                r#"{"type":"output","ts":"yesterday"}"#,
                r#"{"type":"status","ts":"2026-11-28T09:00:01Z","status":"done"}"#,
                r#"{"type":"end","ts":"2026-11-28T09:00:01Z","status":"ok"}"#,
                r#"{"type":"mystery","ts":"2026-11-28T09:00:09Z"}"#,
            ],
            Status::Working,
            None,
            None,
            6,
        );
    }

    #[test]
    fn a_run_whose_writer_is_gone_fails_unless_it_ended() {
        let mut f = RunFold::default();
        f.apply(parse_line(START.as_bytes()).unwrap());
        f.apply(
            parse_line(br#"{"type":"output","ts":"2026-11-28T09:00:07Z","data":"x"}"#).unwrap(),
        );
        let item = f.item("r1", ms(T0), true);
        assert_eq!(
            (item.status, item.status_detail.as_deref()),
            (Status::Failed, Some(EXITED_WITHOUT_END))
        );
        assert_eq!(item.finished_at, Some(ms("2026-11-28T09:00:07Z")));
        assert_eq!(item.duration_ms, Some(7_000));
        assert_eq!(f.item("r1", ms(T0), false).status, Status::Working);
        // An ended run is not affected; a run without a pid cannot be judged.
        f.apply(
            parse_line(br#"{"type":"end","ts":"2026-11-28T09:00:09Z","status":"success"}"#)
                .unwrap(),
        );
        assert_eq!(f.item("r1", ms(T0), true).status, Status::Success);
        let mut g = RunFold::default();
        g.apply(parse_line(br#"{"type":"start","ts":"2026-11-28T09:00:00Z"}"#).unwrap());
        assert_eq!(g.item("r2", ms(T0), true).status, Status::Working);
    }

    #[test]
    fn fields_and_usage() {
        let (item, _) = fold(&[
            START,
            r#"{"type":"usage","ts":"2026-11-28T09:00:03Z","model":"claude-sonnet-4-5","input_tokens":100,"output_tokens":20,"cache_read_tokens":1000,"cost_usd":0.25}"#,
            r#"{"type":"usage","ts":1795856404000,"input_tokens":5,"output_tokens":1,"cache_write_tokens":7,"cost_usd":0.5}"#,
            r#"{"type":"output","ts":1795856405,"stream":"stdout","data":"hi\n"}"#,
        ]);
        assert_eq!(item.id, "cli:r1");
        assert_eq!(item.kind, Kind::Run);
        assert_eq!(item.source, Source::Cli);
        assert_eq!(item.title.as_deref(), Some("fix tests"));
        assert_eq!(item.harness.as_deref(), Some("claude-code"));
        assert_eq!(item.project.as_deref(), Some("/src/app"));
        assert_eq!(item.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(
            item.usage,
            Usage {
                input_tokens: 105,
                output_tokens: 21,
                cache_read_tokens: 1000,
                cache_write_tokens: 7
            }
        );
        assert_eq!(item.cost_usd, Some(0.75));
        assert_eq!(item.created_at, ms(T0));
        assert_eq!(item.updated_at, ms("2026-11-28T09:00:05Z"));
        assert_eq!(item.open.command.as_deref(), Some("agentctl logs cli:r1"));
    }

    #[test]
    fn defaults_without_start() {
        let (item, _) = fold(&[r#"{"type":"output","ts":"2026-11-28T09:00:07Z","data":"x"}"#]);
        assert_eq!(item.title.as_deref(), Some("r1"));
        assert_eq!(item.created_at, ms("2026-11-28T09:00:07Z"));
        assert_eq!(item.harness, None);

        let (item, _) = fold(&[
            r#"{"type":"start","ts":"2026-11-28T09:00:00Z","source":"slack","command":["/usr/bin/codex","exec","go"]}"#,
        ]);
        assert_eq!(item.harness.as_deref(), Some("codex"));
        assert_eq!(item.title.as_deref(), Some("/usr/bin/codex exec go"));
        assert_eq!(item.source, Source::Slack);
        let (item, _) = fold(&[r#"{"type":"start","ts":"2026-11-28T09:00:00Z","source":"pager"}"#]);
        assert_eq!(item.source, Source::Other);
    }

    #[test]
    fn folding_in_pieces_equals_folding_whole() {
        let lines = [
            START,
            r#"{"type":"usage","ts":"2026-11-28T09:00:03Z","input_tokens":100}"#,
            r#"{"type":"status","ts":"2026-11-28T09:00:04Z","status":"blocked"}"#,
            r#"{"type":"end","ts":"2026-11-28T09:00:09Z","status":"success"}"#,
        ];
        let whole = fold(&lines).0;
        for split in 0..lines.len() {
            let mut f = RunFold::default();
            for l in &lines[..split] {
                f.apply(parse_line(l.as_bytes()).unwrap());
            }
            // Persist and restore the state as the daemon does between restarts.
            let mut f: RunFold = crate::store::decode(&crate::store::encode(&f)).unwrap();
            for l in &lines[split..] {
                f.apply(parse_line(l.as_bytes()).unwrap());
            }
            assert_eq!(f.item("r1", ms(T0), false), whole, "split at {split}");
        }
    }

    #[test]
    fn resume_commands_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("cli:run-1.2"), "cli:run-1.2");
        assert_eq!(shell_quote("cli:x;rm -rf ~"), "'cli:x;rm -rf ~'");
        assert_eq!(shell_quote("cli:it's"), "'cli:it'\\''s'");
        let f = RunFold::default();
        let item = f.item("$(touch pwned)", ms(T0), false);
        assert_eq!(
            item.open.command.as_deref(),
            Some("agentctl logs 'cli:$(touch pwned)'")
        );
    }

    #[test]
    fn output_data_only_from_output_lines() {
        assert_eq!(
            output_data(br#"{"type":"output","ts":1,"data":"a\n"}"#).as_deref(),
            Some("a\n")
        );
        assert_eq!(output_data(br#"{"type":"usage","ts":1,"data":"a"}"#), None);
        assert_eq!(output_data(b"garbage"), None);
    }
}
