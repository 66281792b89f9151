//! The agent item's derived fields, computed in exactly one place.
//!
//! Ingestors produce what their source says; the writer calls [`derive_on_write`] before storing,
//! and every reader calls [`derive_on_read`] before answering. Nothing else sets `mine`,
//! `duration_ms` of a finished run, or a working run's time so far.

pub use agentd_wire::{Item, Kind, Millis, Open, Source, Status, Usage};
use jiff::tz::TimeZone;

/// How an update decides whether the item is the user's own (the Personal tab).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MineRule {
    /// Local sources: the item is mine when its creator is the configured user. A local item
    /// without a creator was made on this machine by this user, so it gets the user's name.
    Creator,
    /// The source decided (cloud runs match on uid or e-mail, which the item does not carry).
    Fixed(bool),
}

/// Fills the fields derived from others before an item is stored.
pub fn derive_on_write(item: &mut Item, me: &str, rule: MineRule) {
    item.mine = match rule {
        MineRule::Creator => {
            if item.creator.is_none() {
                item.creator = Some(me.to_owned());
            }
            item.creator.as_deref() == Some(me)
        }
        MineRule::Fixed(mine) => mine,
    };
    match item.kind {
        Kind::Interactive => item.duration_ms = None,
        Kind::Run => {
            if item.status.is_active() {
                item.finished_at = None;
                item.duration_ms = None; // time so far is added on read
            } else if item.duration_ms.is_none() {
                let end = item.finished_at.unwrap_or(item.updated_at);
                item.duration_ms = Some(end.0.saturating_sub(item.created_at.0).max(0) as u64);
            }
        }
    }
}

/// Fills the fields that depend on the time of reading: a working run reports time so far.
pub fn derive_on_read(item: &mut Item, now: Millis) {
    if item.kind == Kind::Run && item.status.is_active() {
        item.duration_ms = Some(now.0.saturating_sub(item.created_at.0).max(0) as u64);
    }
}

/// The local calendar date (`YYYY-MM-DD`) of an instant in the given time zone.
pub fn local_day(ms: Millis, tz: &TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(ms.0) {
        Ok(ts) => ts.to_zoned_datetime(tz.clone()).date().to_string(),
        Err(_) => "0000-00-00".to_owned(),
    }
}

/// The start of the local day containing `now`, and the start of the next one, in epoch ms.
pub fn day_bounds(now: Millis, tz: &TimeZone) -> (i64, i64) {
    let fallback = (
        now.0 - now.0.rem_euclid(86_400_000),
        now.0 - now.0.rem_euclid(86_400_000) + 86_400_000,
    );
    let Ok(ts) = jiff::Timestamp::from_millisecond(now.0) else {
        return fallback;
    };
    let date = ts.to_zoned_datetime(tz.clone()).date();
    let start = date
        .to_zoned_datetime(tz.clone())
        .map(|z| z.timestamp().as_millisecond());
    let next = date
        .tomorrow()
        .and_then(|d| d.to_zoned_datetime(tz.clone()))
        .map(|z| z.timestamp().as_millisecond());
    match (start, next) {
        (Ok(s), Ok(n)) => (s, n),
        _ => fallback,
    }
}

/// Epoch-ms bounds `[start, end)` of a local calendar date given as `YYYY-MM-DD`.
pub fn date_bounds(date: &str, tz: &TimeZone) -> Option<(i64, i64)> {
    let d: jiff::civil::Date = date.parse().ok()?;
    if d.to_string() != date {
        return None; // reject lenient spellings so that the error names the parameter
    }
    let start = d
        .to_zoned_datetime(tz.clone())
        .ok()?
        .timestamp()
        .as_millisecond();
    let end = d
        .tomorrow()
        .ok()?
        .to_zoned_datetime(tz.clone())
        .ok()?
        .timestamp()
        .as_millisecond();
    Some((start, end))
}

/// A stable name for a time zone, stored so that day indexes can be rebuilt when it changes.
/// A zone without an IANA name (a POSIX `TZ` string) is named by its offsets in January and
/// July, which identify its rules without changing at each daylight-saving switch.
pub fn tz_fingerprint(tz: &TimeZone) -> String {
    match tz.iana_name() {
        Some(name) => name.to_owned(),
        None => {
            let at = |ms: i64| {
                jiff::Timestamp::from_millisecond(ms)
                    .map(|t| tz.to_offset(t).seconds())
                    .unwrap_or(0)
            };
            // 2025-01-15 and 2025-07-15, UTC.
            format!("offsets{}/{}", at(1_736_899_200_000), at(1_752_537_600_000))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: Status) -> Item {
        Item {
            id: "cli:x".into(),
            kind: Kind::Run,
            source: Source::Cli,
            status,
            status_detail: None,
            harness: None,
            title: None,
            creator: None,
            mine: false,
            project: None,
            model: None,
            created_at: Millis(1_000),
            updated_at: Millis(5_000),
            finished_at: if status.is_active() {
                None
            } else {
                Some(Millis(4_000))
            },
            duration_ms: None,
            credits: None,
            cost_usd: None,
            usage: Usage::default(),
            open: Open::default(),
        }
    }

    #[test]
    fn derived_fields() {
        let mut it = run(Status::Success);
        derive_on_write(&mut it, "alice", MineRule::Creator);
        assert_eq!(
            (it.creator.as_deref(), it.mine, it.duration_ms),
            (Some("alice"), true, Some(3_000))
        );

        let mut it = run(Status::Working);
        it.creator = Some("bob".into());
        derive_on_write(&mut it, "alice", MineRule::Creator);
        assert_eq!((it.mine, it.duration_ms), (false, None));
        derive_on_read(&mut it, Millis(61_000));
        assert_eq!(it.duration_ms, Some(60_000));

        let mut it = run(Status::Failed);
        derive_on_write(&mut it, "alice", MineRule::Fixed(false));
        assert!(!it.mine);
    }

    #[test]
    fn days_in_a_zone() {
        let tz = TimeZone::fixed(jiff::tz::offset(-5));
        // 2026-11-28T03:00Z is still the 27th five hours west of UTC.
        let ms = Millis(agentd_wire::parse_rfc3339_ms("2026-11-28T03:00:00Z").unwrap());
        assert_eq!(local_day(ms, &tz), "2026-11-27");
        let (s, e) = date_bounds("2026-11-27", &tz).unwrap();
        assert_eq!(
            agentd_wire::format_rfc3339_ms(s),
            "2026-11-27T05:00:00.000Z"
        );
        assert_eq!(e - s, 86_400_000);
        assert_eq!(day_bounds(ms, &tz), (s, e));
        assert_eq!(date_bounds("2026-11-31", &tz), None);
        assert_eq!(date_bounds("2026-1-5", &tz), None);
    }
}
