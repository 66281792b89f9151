//! `agentctl wait`: blocks until agents reach a state, for scripts and agents that run agents.
//!
//! It follows `/v1/events` (no polling) and decides on every change, after first checking the
//! current state: a condition that already holds at start returns at once. When agentd goes
//! away it reconnects and checks again, until the timeout.
//!
//! What is waited for: the given ids, or else the agents matching the filters (`--source`,
//! `--harness`, `--status`) that are active when the wait starts or appear (or become active)
//! while it runs — the history of finished agents is not waited for; an agent that matched once
//! stays followed when its status moves on. No ids and no filters: every such agent. `--any`
//! (the default) returns when one of them meets the condition, `--all` when all of them do.

use crate::events::{Event, Subscription};
use crate::{Client, ClientError, query};
use agentd_wire::{Item, Status};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The state waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Until {
    /// Waiting on you.
    Blocked,
    /// Done: success, failed or canceled.
    Finished,
    /// Working or blocked.
    Active,
    /// Needs you or is done: blocked or finished.
    Any,
}

impl Until {
    pub fn holds(self, s: Status) -> bool {
        match self {
            Until::Blocked => s == Status::Blocked,
            Until::Finished => !s.is_active(),
            Until::Active => s.is_active(),
            Until::Any => s == Status::Blocked || !s.is_active(),
        }
    }
}

/// Which agents, by the API's filters (comma lists).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub source: Option<String>,
    pub harness: Option<String>,
    pub status: Option<String>,
}

impl Filters {
    fn matches(&self, item: &Item) -> bool {
        let has = |list: &Option<String>, v: Option<&str>| {
            list.as_deref().is_none_or(|l| {
                v.is_some_and(|v| l.split(',').any(|x| x.trim().eq_ignore_ascii_case(v)))
            })
        };
        has(&self.source, Some(item.source.as_str()))
            && has(&self.harness, item.harness.as_deref())
            && has(&self.status, Some(item.status.as_str()))
    }
}

/// What to wait for.
#[derive(Debug, Clone)]
pub struct WaitSpec {
    /// Full ids (already resolved); empty: use the filters.
    pub ids: Vec<String>,
    pub filters: Filters,
    pub until: Until,
    /// All of them, rather than any one.
    pub all: bool,
    pub timeout: Option<Duration>,
}

/// How a wait ended.
#[derive(Debug)]
pub enum Outcome {
    /// The condition holds; these are the agents that meet it.
    Met(Vec<Item>),
    TimedOut,
}

/// The agents followed and the rule deciding when the wait is over (pure: no I/O).
#[derive(Debug, Default)]
pub struct Tracker {
    followed: BTreeMap<String, Item>,
}

impl Tracker {
    /// Takes an item in: a followed one is updated; a new one is followed if it is wanted (by
    /// id; or, by the filters, if it is active: finished history is not waited for).
    pub fn observe(&mut self, spec: &WaitSpec, item: Item) {
        let wanted = if spec.ids.is_empty() {
            self.followed.contains_key(&item.id)
                || (spec.filters.matches(&item) && item.status.is_active())
        } else {
            spec.ids.contains(&item.id)
        };
        if wanted {
            self.followed.insert(item.id.clone(), item);
        }
    }

    /// The agents that meet the condition, if the wait is over.
    pub fn verdict(&self, spec: &WaitSpec) -> Option<Vec<Item>> {
        let meeting: Vec<Item> = self
            .followed
            .values()
            .filter(|i| spec.until.holds(i.status))
            .cloned()
            .collect();
        let over = if spec.all {
            let expected = if spec.ids.is_empty() {
                self.followed.len()
            } else {
                spec.ids.len()
            };
            expected > 0 && meeting.len() == expected
        } else {
            !meeting.is_empty()
        };
        over.then_some(meeting)
    }
}

/// Reads the current state of what is waited for.
fn load(client: &Client, spec: &WaitSpec, tracker: &mut Tracker) -> Result<(), ClientError> {
    if spec.ids.is_empty() {
        let page = client.agents(&query(&[
            ("tab", "all".into()),
            ("source", spec.filters.source.clone().unwrap_or_default()),
            ("harness", spec.filters.harness.clone().unwrap_or_default()),
            ("status", spec.filters.status.clone().unwrap_or_default()),
            ("limit", "1000".into()),
        ]))?;
        for item in page.items {
            tracker.observe(spec, item);
        }
        // Followed agents that no longer match the filters are read one by one.
        let others: Vec<String> = tracker.followed.keys().cloned().collect();
        for id in others {
            if let Ok(item) =
                client.get_json::<Item>(&format!("/v1/agents/{}", crate::encode_segment(&id)))
            {
                tracker.observe(spec, item);
            }
        }
    } else {
        for id in &spec.ids {
            let item =
                client.get_json::<Item>(&format!("/v1/agents/{}", crate::encode_segment(id)))?;
            tracker.observe(spec, item);
        }
    }
    Ok(())
}

/// Waits. An unreachable daemon at the start is an error; later it is waited for.
pub fn wait(client: &Client, spec: &WaitSpec) -> Result<Outcome, ClientError> {
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    let mut tracker = Tracker::default();
    load(client, spec, &mut tracker)?;
    if let Some(met) = tracker.verdict(spec) {
        return Ok(Outcome::Met(met));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let _sub = Subscription::start(client.clone(), "all", tx);
    loop {
        let ev = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Outcome::TimedOut);
                }
                match rx.recv_timeout(left) {
                    Ok(ev) => ev,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        return Ok(Outcome::TimedOut);
                    }
                    Err(e) => return Err(ClientError::Protocol(e.to_string())),
                }
            }
            None => rx
                .recv()
                .map_err(|e| ClientError::Protocol(e.to_string()))?,
        };
        match ev {
            Event::Agent(item) => tracker.observe(spec, *item),
            // Whatever happened while away (or unsent) is read again.
            Event::Connected | Event::Resync => {
                if let Err(e) = load(client, spec, &mut tracker) {
                    if matches!(e, ClientError::Api { status: 404, .. }) {
                        return Err(e);
                    }
                    continue;
                }
            }
            Event::Refused(why) => {
                return Err(ClientError::Protocol(format!(
                    "agentd refused the event stream: {why}"
                )));
            }
            Event::Summary(_) | Event::Disconnected(_) => continue,
        }
        if let Some(met) = tracker.verdict(spec) {
            return Ok(Outcome::Met(met));
        }
    }
}

/// Parses `90`, `90s`, `500ms`, `5m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 5m or 2h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?} is not a duration such as 30s, 5m or 2h")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, status: Status, source: agentd_wire::Source) -> Item {
        let mut v: Item = serde_json::from_value(serde_json::json!({
            "id": id, "kind": "run", "source": "cli", "status": "working", "mine": false,
            "created_at": "2026-11-28T09:00:00.000Z", "updated_at": "2026-11-28T09:00:00.000Z",
            "usage": {}, "open": {}
        }))
        .unwrap();
        v.status = status;
        v.source = source;
        v
    }

    fn spec(ids: &[&str], until: Until, all: bool) -> WaitSpec {
        WaitSpec {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            filters: Filters::default(),
            until,
            all,
            timeout: None,
        }
    }

    /// Feeds items in order; the index after which the wait is over, if it is.
    fn check(spec: &WaitSpec, feed: &[Item], over_after: Option<usize>) {
        let mut t = Tracker::default();
        let mut when = None;
        for (n, i) in feed.iter().enumerate() {
            t.observe(spec, i.clone());
            if when.is_none() && t.verdict(spec).is_some() {
                when = Some(n);
            }
        }
        assert_eq!(when, over_after, "{spec:?}");
    }

    #[test]
    fn conditions_any_and_all() {
        use Status::*;
        use agentd_wire::Source::Cli;
        let (a, b) = ("cli:a", "cli:b");
        let feed = [
            item(a, Working, Cli),
            item(b, Working, Cli),
            item(a, Blocked, Cli),
            item(b, Success, Cli),
            item(a, Failed, Cli),
        ];
        check(&spec(&[a, b], Until::Blocked, false), &feed, Some(2));
        check(&spec(&[a, b], Until::Finished, false), &feed, Some(3));
        check(&spec(&[a, b], Until::Finished, true), &feed, Some(4));
        check(&spec(&[a, b], Until::Any, true), &feed, Some(3));
        check(&spec(&[a, b], Until::Active, false), &feed, Some(0));
        check(&spec(&["cli:c"], Until::Active, false), &feed, None);
        // Filters: an agent that matched once stays followed as its status moves on.
        let mut s = spec(&[], Until::Finished, false);
        s.filters.status = Some("working".into());
        check(&s, &feed, Some(3));
        s.filters.source = Some("slack".into());
        check(&s, &feed, None);
        // Finished history is not waited for: only agents that are (or become) active.
        let s = spec(&[], Until::Finished, false);
        check(&s, &[item("cli:old", Success, Cli)], None);
        check(
            &s,
            &[
                item("cli:old", Success, Cli),
                item("cli:new", Working, Cli),
                item("cli:new", Failed, Cli),
            ],
            Some(2),
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
