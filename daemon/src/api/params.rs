//! Query-string parsing for the API: every parameter is validated here, and a bad one becomes a
//! `400` naming it. Repeating a parameter means the same as a comma list.

use super::error::ApiError;
use crate::model::{Millis, Source, Status, date_bounds, day_bounds};
use crate::store::query::Filter;
use jiff::tz::TimeZone;
use std::str::FromStr;

/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = 1000;
/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;

/// The raw pairs of a query string, with the names the route accepts checked.
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `query`; a name not in `allowed` is a `400`.
    pub fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(ApiError::bad_request(
                k,
                format!("unknown parameter (accepted: {})", allowed.join(", ")),
            ));
        }
        Ok(Params { pairs })
    }

    /// The last value of a single-valued parameter.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a list parameter, across repeats and commas, empty items dropped.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// A list of enum values.
    pub fn enums<T: FromStr<Err = agentd_wire::UnknownValue> + PartialEq>(
        &self,
        name: &str,
    ) -> Result<Vec<T>, ApiError> {
        let mut out = Vec::new();
        for v in self.list(name) {
            let parsed = v
                .parse::<T>()
                .map_err(|e| ApiError::bad_request(name, e.to_string()))?;
            if !out.contains(&parsed) {
                out.push(parsed);
            }
        }
        Ok(out)
    }

    /// `tab=personal|all`; personal by default.
    pub fn personal(&self) -> Result<bool, ApiError> {
        match self.one("tab") {
            None | Some("personal") => Ok(true),
            Some("all") => Ok(false),
            Some(other) => Err(ApiError::bad_request(
                "tab",
                format!("unknown value {other:?} (expected personal or all)"),
            )),
        }
    }

    /// A boolean flag (`true`/`false`/`1`/`0`).
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.one(name) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(other) => Err(ApiError::bad_request(
                name,
                format!("expected true or false, got {other:?}"),
            )),
        }
    }
}

/// The parameters `GET /v1/agents` accepts.
pub const AGENT_PARAMS: &[&str] = &[
    "tab",
    "source",
    "status",
    "creator",
    "harness",
    "day",
    "updated_day",
    "since",
    "until",
    "q",
    "limit",
    "cursor",
    "id_prefix",
];

/// Builds the list filter from `GET /v1/agents` parameters.
pub fn filter(p: &Params, tz: &TimeZone) -> Result<Filter, ApiError> {
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        p.one(name)
            .map(|v| {
                agentd_wire::parse_rfc3339_ms(v).ok_or_else(|| {
                    ApiError::bad_request(
                        name,
                        format!("{v:?} is not an RFC 3339 time such as 2026-11-28T09:00:00Z"),
                    )
                })
            })
            .transpose()
    };
    let limit = match p.one("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "limit",
                    format!("{v:?} is not a number from 1 to {MAX_LIMIT}"),
                ));
            }
        },
    };
    let day_param = |name: &str| -> Result<Option<(String, i64, i64)>, ApiError> {
        let Some(v) = p.one(name) else {
            return Ok(None);
        };
        let date = match v {
            "today" => crate::model::local_day(Millis::now(), tz),
            "yesterday" => crate::model::local_day(Millis(day_bounds(Millis::now(), tz).0 - 1), tz),
            d => d.to_owned(),
        };
        let (start, end) = date_bounds(&date, tz).ok_or_else(|| {
            ApiError::bad_request(
                name,
                format!("{v:?} is not a date such as 2026-11-28 (or today, yesterday)"),
            )
        })?;
        Ok(Some((date, start, end)))
    };
    let day = day_param("day")?;
    let updated_day = day_param("updated_day")?;
    let cursor =
        match p.one("cursor") {
            None | Some("") => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                ApiError::bad_request("cursor", "not a cursor returned by this API")
            })?),
        };
    let text = |name: &str| p.one(name).filter(|v| !v.is_empty()).map(str::to_owned);
    Ok(Filter {
        personal: p.personal()?,
        sources: p.enums::<Source>("source")?,
        statuses: p.enums::<Status>("status")?,
        creators: p.list("creator").into_iter().map(str::to_owned).collect(),
        harnesses: p.list("harness").into_iter().map(str::to_owned).collect(),
        day,
        updated_day,
        since: time("since")?,
        until: time("until")?,
        q: text("q").map(|q| q.to_lowercase()),
        limit,
        cursor,
    })
}

/// Cursors are the index position in lower-case hex: 8 bytes of recency, then the id. Any such
/// position is valid (a page starts after it).
pub fn encode_cursor(pos: &[u8]) -> String {
    pos.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(s: &str) -> Option<Vec<u8>> {
    if s.len() < 18 || !s.len().is_multiple_of(2) || s.len() > 4096 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    // A position in the index: compared as bytes, whatever they are.
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<Filter, ApiError> {
        let p = Params::parse(Some(q), AGENT_PARAMS)?;
        filter(&p, &TimeZone::UTC)
    }

    fn rejects(q: &str, param: &str) {
        match parse(q) {
            Err(e) => assert!(
                e.message.contains(&format!("`{param}`")),
                "{q}: {}",
                e.message
            ),
            Ok(f) => panic!("{q} was accepted: {f:?}"),
        }
    }

    #[test]
    fn accepted() {
        let f = parse("").unwrap();
        assert!(f.personal);
        assert_eq!(f.limit, DEFAULT_LIMIT);
        let f = parse("tab=all&status=failed&status=canceled,failed&source=cli,slack&limit=1000&q=Login&day=2026-11-28").unwrap();
        assert!(!f.personal);
        assert_eq!(f.statuses, vec![Status::Failed, Status::Canceled]);
        assert_eq!(f.sources, vec![Source::Cli, Source::Slack]);
        assert_eq!(f.limit, 1000);
        assert_eq!(f.q.as_deref(), Some("login"));
        assert_eq!(f.day.as_ref().map(|d| d.0.as_str()), Some("2026-11-28"));
        let pos = [1u8, 2, 3, 4, 5, 6, 7, 8, b'c', b'l', b'i', b':', b'x'];
        let f = parse(&format!("cursor={}", encode_cursor(&pos))).unwrap();
        assert_eq!(f.cursor.as_deref(), Some(&pos[..]));
    }

    #[test]
    fn rejected_with_the_parameter_named() {
        rejects("status=done", "status");
        rejects("source=email", "source");
        rejects("tab=mine", "tab");
        rejects("limit=0", "limit");
        rejects("limit=1001", "limit");
        rejects("limit=ten", "limit");
        rejects("day=2026-13-01", "day");
        rejects("day=28/11/2026", "day");
        rejects("updated_day=tomorrow", "updated_day");
        rejects("since=yesterday", "since");
        rejects("until=2026-11-28", "until");
        rejects("cursor=zz", "cursor");
        rejects("cursor=0102", "cursor");
        rejects("stauts=failed", "stauts");
    }
}
