//! Timestamps on the wire: RFC 3339 UTC with milliseconds (`2026-11-28T09:14:03.120Z`).
//!
//! Held as milliseconds since the Unix epoch so that the daemon can index and compare them
//! cheaply; formatted and parsed here by hand because the format is tiny and fixed, which keeps
//! this crate free of a date library for clients that only need the types.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Milliseconds since the Unix epoch, UTC. Serialised as RFC 3339 with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub i64);

impl Millis {
    /// The current wall-clock time.
    pub fn now() -> Millis {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_rfc3339_ms(self.0))
    }
}

/// Human-readable formats (JSON) get RFC 3339 text; compact binary formats (the daemon's
/// storage) get the integer.
impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&format_rfc3339_ms(self.0))
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            return i64::deserialize(d).map(Millis);
        }
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_rfc3339_ms(&s)
            .map(Millis)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 timestamp: {s:?}")))
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Parses an RFC 3339 timestamp (`Z` or a numeric offset, any fraction) to epoch milliseconds.
/// Returns `None` for anything else, including out-of-range fields.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // Digits only, no sign (every line of a transcript has a timestamp: parsed by hand).
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() {
            return None;
        }
        part.iter().try_fold(0i64, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = start..i.min(start + 3);
        frac_ms = num(digits.clone())? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 60 + om;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if d > month_days {
        return None; // 2026-02-31 and friends
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset_min * 60;
    Some(secs * 1000 + frac_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        let got = parse_rfc3339_ms(input).map(format_rfc3339_ms);
        assert_eq!(got.as_deref(), expected, "input {input:?}");
    }

    #[test]
    fn parses_and_formats() {
        check("2026-11-28T09:14:03.120Z", Some("2026-11-28T09:14:03.120Z"));
        check("2026-11-28T09:14:03Z", Some("2026-11-28T09:14:03.000Z"));
        check(
            "2026-11-28T09:14:03.1234567Z",
            Some("2026-11-28T09:14:03.123Z"),
        );
        check(
            "2026-11-28T10:14:03.5+01:00",
            Some("2026-11-28T09:14:03.500Z"),
        );
        check(
            "2026-11-28T00:00:00-05:30",
            Some("2026-11-28T05:30:00.000Z"),
        );
        check("1969-12-31T23:59:59.999Z", Some("1969-12-31T23:59:59.999Z"));
        check("2024-02-29T12:00:00Z", Some("2024-02-29T12:00:00.000Z"));
        check("2026-02-29T12:00:00Z", None);
        check("2026-13-01T00:00:00Z", None);
        check("2026-11-28", None);
        check("2026-11-28T09:14:03", None);
        check("2026-11-28T09:14:03.Z", None);
        check("2026-11-28T09:14:03Zjunk", None);
        check("yesterday", None);
        check("", None);
        check("2000-02-29T00:00:00Z", Some("2000-02-29T00:00:00.000Z"));
        check("2100-02-29T00:00:00Z", None);
        check("2026-04-31T00:00:00Z", None);
        check("2026-04-30T23:59:60Z", Some("2026-04-30T23:59:59.000Z"));
        check("2026-00-10T00:00:00Z", None);
        check("2026-11-00T00:00:00Z", None);
        check("+026-11-28T09:14:03Z", None);
        check("2026-1a-28T09:14:03Z", None);
        check("2026-11-28T09:14:03.4x5Z", None);
        check("2026-11-28T09:14:03.05Z", Some("2026-11-28T09:14:03.050Z"));
        check("2026-11-28T09:14:03+0a:00", None);
        check("2026-11-28T09:14:03+24:00", None);
    }

    #[test]
    fn epoch_is_zero() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
