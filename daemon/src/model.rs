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

/// Fills the fields that depend on the time of reading: a working run reports time so far, and
/// a blocked item's time blocked includes the current wait.
pub fn derive_on_read(item: &mut Item, now: Millis) {
    if item.kind == Kind::Run && item.status.is_active() {
        item.duration_ms = Some(now.0.saturating_sub(item.created_at.0).max(0) as u64);
    }
    if let (Status::Blocked, Some(since)) = (item.status, item.blocked_since) {
        item.blocked_ms = item
            .blocked_ms
            .saturating_add(now.0.saturating_sub(since.0).max(0) as u64);
    }
}

/// Carries the time blocked from the stored item `old` into its update `new` (sources know
/// nothing of it): a wait that goes on keeps its start, one that ends adds to the total, one
/// that begins starts `now`. Set here and nowhere else (`derive_on_read` adds the current wait).
pub fn carry_blocked(old: Option<&Item>, new: &mut Item, now: Millis) {
    let (mut total, since) = old.map_or((0, None), |o| (o.blocked_ms, o.blocked_since));
    new.blocked_since = match (since, new.status == Status::Blocked) {
        (Some(s), true) => Some(s),
        (Some(s), false) => {
            total = total.saturating_add(now.0.saturating_sub(s.0).max(0) as u64);
            None
        }
        (None, true) => Some(now),
        (None, false) => None,
    };
    new.blocked_ms = total;
}

/// The local calendar date (`YYYY-MM-DD`) of an instant in the given time zone.
pub fn local_day(ms: Millis, tz: &TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(ms.0) {
        Ok(ts) => ts.to_zoned_datetime(tz.clone()).date().to_string(),
        Err(_) if (0..=LATEST_MS).contains(&ms.0) => {
            let (y, m, d) = civil_from_days((ms.0 + far_offset_ms(tz)).div_euclid(DAY_MS));
            // East of UTC the last hours fall on a local 10000-01-01, a day no date can name:
            // they count on the last one, as `date_bounds("9999-12-31")` has them.
            if y > 9999 {
                return "9999-12-31".to_owned();
            }
            format!("{y:04}-{m:02}-{d:02}")
        }
        Err(_) => "0000-00-00".to_owned(),
    }
}

const DAY_MS: i64 = 86_400_000;

/// jiff's instants stop a day short of the end of year 9999 (so that any offset stays in
/// range), while agentd accepts times up to [`LATEST_MS`]: in that last day, the zone's offset
/// at jiff's last instant applies.
fn far_offset_ms(tz: &TimeZone) -> i64 {
    i64::from(tz.to_offset(jiff::Timestamp::MAX).seconds()) * 1000
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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

/// The latest time agentd accepts anywhere (timestamps in files, `day=`, `until=`):
/// 9999-12-31T23:59:59.999Z, the last one RFC 3339's four-digit year can spell. A later one
/// could not be written back out.
pub const LATEST_MS: i64 = 253_402_300_799_999;

/// The instant a local date begins, epoch ms.
fn local_midnight(d: jiff::civil::Date, tz: &TimeZone) -> i64 {
    match d.to_zoned_datetime(tz.clone()) {
        Ok(z) => z.timestamp().as_millisecond(),
        // Past jiff's last instant (see `far_offset_ms`).
        Err(_) => {
            days_from_civil(
                i64::from(d.year()),
                i64::from(d.month()),
                i64::from(d.day()),
            ) * DAY_MS
                - far_offset_ms(tz)
        }
    }
}

/// Epoch-ms bounds `[start, end)` of a local calendar date given as `YYYY-MM-DD`, for every
/// date on which an accepted time can fall (1970 to 9999).
pub fn date_bounds(date: &str, tz: &TimeZone) -> Option<(i64, i64)> {
    let d: jiff::civil::Date = date.parse().ok()?;
    if d.to_string() != date {
        return None; // reject lenient spellings so that the error names the parameter
    }
    let start = local_midnight(d, tz);
    // The last day there is has no tomorrow: it ends where accepted time ends.
    let end = match d.tomorrow() {
        Ok(next) => local_midnight(next, tz),
        Err(_) => LATEST_MS + 1,
    };
    Some((start, end.min(LATEST_MS + 1)))
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
            status_source: None,
            blocked_ms: 0,
            blocked_since: None,
        }
    }

    #[test]
    fn time_blocked_is_carried_across_updates() {
        let item = |status: Status| -> Item {
            let mut i: Item = serde_json::from_value(serde_json::json!({
                "id": "cli:a", "kind": "run", "source": "cli", "status": "working", "mine": true,
                "created_at": "2026-11-28T09:00:00.000Z", "updated_at": "2026-11-28T09:00:00.000Z",
                "usage": {}, "open": {}
            }))
            .unwrap();
            i.status = status;
            i
        };
        let mut a = item(Status::Working);
        carry_blocked(None, &mut a, Millis(1_000));
        assert_eq!((a.blocked_ms, a.blocked_since), (0, None));
        let mut b = item(Status::Blocked);
        carry_blocked(Some(&a), &mut b, Millis(2_000));
        assert_eq!((b.blocked_ms, b.blocked_since), (0, Some(Millis(2_000))));
        // Still blocked (a re-render, a restart): the wait keeps its start.
        let mut c = item(Status::Blocked);
        carry_blocked(Some(&b), &mut c, Millis(9_000));
        assert_eq!((c.blocked_ms, c.blocked_since), (0, Some(Millis(2_000))));
        let mut read = c.clone();
        derive_on_read(&mut read, Millis(5_000));
        assert_eq!(read.blocked_ms, 3_000, "the current wait counts on read");
        let mut d = item(Status::Working);
        carry_blocked(Some(&c), &mut d, Millis(12_000));
        assert_eq!((d.blocked_ms, d.blocked_since), (10_000, None));
        let mut e = item(Status::Blocked);
        carry_blocked(Some(&d), &mut e, Millis(20_000));
        let mut f = item(Status::Success);
        carry_blocked(Some(&e), &mut f, Millis(21_500));
        assert_eq!((f.blocked_ms, f.blocked_since), (11_500, None));
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
        // The last day there is (regression: refused, though run times reach it).
        let (s, e) = date_bounds("9999-12-31", &tz).unwrap();
        assert_eq!(e, LATEST_MS + 1);
        assert_eq!(s, LATEST_MS + 1 - 86_400_000 + 5 * 3_600_000);
        assert_eq!(local_day(Millis(LATEST_MS), &tz), "9999-12-31");
        assert_eq!(local_day(Millis(s), &tz), "9999-12-31");
        assert_eq!(local_day(Millis(s - 1), &tz), "9999-12-30");
        assert_eq!(date_bounds("9999-12-30", &tz).unwrap().1, s);
        let east = TimeZone::fixed(jiff::tz::offset(5));
        assert_eq!(local_day(Millis(LATEST_MS), &east), "9999-12-31");
        let (s, e) = date_bounds("9999-12-31", &east).unwrap();
        assert!((s..e).contains(&LATEST_MS));
        for days in [-1, 0, 59, 60, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(date_bounds("2026-1-5", &tz), None);
    }
}
