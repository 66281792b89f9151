//! The counts a shell prompt asks for.
//!
//! They are read from the store in a handful of point lookups, never a scan: active counts are
//! the sizes of the `s:working`/`s:blocked` partitions (and their Personal twins), and today's
//! totals are a per-day bucket ([`DayTotals`]) that the writer adjusts in the same transaction
//! as each item. After every commit (and at local midnight) the writer publishes a fresh
//! [`Summaries`] snapshot on a `watch` channel, so `/v1/summary` answers from memory. The
//! oldest current wait comes from [`Waits`], which the writer keeps as it commits.

use crate::model::{Item, Status};
use agentd_wire::{Summary, Today};

/// Both tabs' summaries, published together.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summaries {
    /// The Personal tab: the user's own items.
    pub personal: Summary,
    /// The All tab.
    pub all: Summary,
}

impl Summaries {
    /// The summary of one tab.
    pub fn tab(&self, personal: bool) -> Summary {
        if personal { self.personal } else { self.all }
    }
}

/// When each blocked item's current wait began, per tab, ordered: the oldest wait at once. The
/// writer reads it from the blocked items once at start and then keeps it as it commits
/// (reading every blocked item after each commit cost as much as the commit itself with
/// thousands blocked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waits {
    all: std::collections::BTreeSet<(i64, String)>,
    mine: std::collections::BTreeSet<(i64, String)>,
}

/// One item's current wait: when it began, the item, whether it is the user's own.
pub type Wait = (i64, String, bool);

impl Waits {
    /// The current wait of `item`, if it is blocked and its wait's start is known.
    pub fn of(item: &Item) -> Option<Wait> {
        let since = item
            .blocked_since
            .filter(|_| item.status == Status::Blocked)?;
        Some((since.0, item.id.clone(), item.mine))
    }

    /// An item's wait went from `old` to `new` (either may be none).
    pub fn moved(&mut self, old: Option<Wait>, new: Option<Wait>) {
        if let Some((since, id, mine)) = old {
            let key = (since, id);
            if mine {
                self.mine.remove(&key);
            }
            self.all.remove(&key);
        }
        if let Some((since, id, mine)) = new {
            if mine {
                self.mine.insert((since, id.clone()));
            }
            self.all.insert((since, id));
        }
    }

    /// The oldest current wait of the user's own items, and of all.
    pub fn oldest(&self) -> (Option<crate::model::Millis>, Option<crate::model::Millis>) {
        let first = |set: &std::collections::BTreeSet<(i64, String)>| {
            set.first().map(|(since, _)| crate::model::Millis(*since))
        };
        (first(&self.mine), first(&self.all))
    }
}

/// Money is summed in millionths so that adding and removing an item's contribution is exact.
const MICRO: f64 = 1_000_000.0;

/// Totals of the items whose last update falls on one local day, for one tab.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayTotals {
    pub success: i64,
    pub failed: i64,
    pub canceled: i64,
    pub credits_micro: i64,
    pub cost_micro: i64,
    /// Time those items spent blocked, ms (as stored: a current wait counts once it ends).
    pub blocked_ms: i64,
}

impl DayTotals {
    /// Adds (`sign = 1`) or removes (`sign = -1`) one item's contribution.
    pub fn apply(&mut self, item: &Item, sign: i64) {
        match item.status {
            Status::Success => self.success = self.success.saturating_add(sign),
            Status::Failed => self.failed = self.failed.saturating_add(sign),
            Status::Canceled => self.canceled = self.canceled.saturating_add(sign),
            Status::Working | Status::Blocked => {}
        }
        // `as` saturates for out-of-range floats; the sums saturate too, so no input can
        // overflow them (sources also refuse absurd amounts).
        let micro = |v: Option<f64>| (v.unwrap_or(0.0).max(0.0) * MICRO).round() as i64;
        self.credits_micro = self
            .credits_micro
            .saturating_add(sign.saturating_mul(micro(item.credits)));
        self.cost_micro = self
            .cost_micro
            .saturating_add(sign.saturating_mul(micro(item.cost_usd)));
        self.blocked_ms = self
            .blocked_ms
            .saturating_add(sign.saturating_mul(item.blocked_ms.min(i64::MAX as u64) as i64));
    }

    /// Adds another delta.
    pub fn merge(&mut self, other: &DayTotals) {
        self.success = self.success.saturating_add(other.success);
        self.failed = self.failed.saturating_add(other.failed);
        self.canceled = self.canceled.saturating_add(other.canceled);
        self.credits_micro = self.credits_micro.saturating_add(other.credits_micro);
        self.cost_micro = self.cost_micro.saturating_add(other.cost_micro);
        self.blocked_ms = self.blocked_ms.saturating_add(other.blocked_ms);
    }

    /// Whether every field is zero.
    pub fn is_zero(&self) -> bool {
        *self == DayTotals::default()
    }

    /// The stored form: six little-endian i64s (schema 1 stored the first five).
    pub fn encode(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        for (i, v) in [
            self.success,
            self.failed,
            self.canceled,
            self.credits_micro,
            self.cost_micro,
            self.blocked_ms,
        ]
        .iter()
        .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Reads the stored form; anything malformed reads as zero.
    pub fn decode(bytes: &[u8]) -> DayTotals {
        if bytes.len() != 40 && bytes.len() != 48 {
            return DayTotals::default();
        }
        let f = |i: usize| {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, i64::from_le_bytes)
        };
        DayTotals {
            success: f(0),
            failed: f(1),
            canceled: f(2),
            credits_micro: f(3),
            cost_micro: f(4),
            blocked_ms: f(5),
        }
    }

    /// The contract's `today` object.
    pub fn today(&self) -> Today {
        let n = |v: i64| v.max(0) as u64;
        Today {
            success: n(self.success),
            failed: n(self.failed),
            canceled: n(self.canceled),
            credits: self.credits_micro.max(0) as f64 / MICRO,
            cost_usd: self.cost_micro.max(0) as f64 / MICRO,
            blocked_ms: n(self.blocked_ms),
        }
    }
}

/// A tab's summary from its active counts, today's totals and the oldest current wait.
pub fn summary(
    working: u64,
    blocked: u64,
    today: &DayTotals,
    waiting_since: Option<crate::model::Millis>,
) -> Summary {
    Summary {
        working,
        blocked,
        active: working + blocked,
        today: today.today(),
        waiting_since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contributions_cancel_exactly_and_round_trip() {
        let mut item: Item = serde_json::from_value(serde_json::json!({
            "id": "cli:x", "kind": "run", "source": "cli", "status": "failed", "status_detail": null,
            "harness": null, "title": null, "creator": null, "mine": true, "project": null, "model": null,
            "created_at": "2026-11-28T09:00:00Z", "updated_at": "2026-11-28T09:00:00Z", "finished_at": null,
            "duration_ms": null, "credits": 0.1, "cost_usd": 0.2
        }))
        .unwrap();
        let mut t = DayTotals::default();
        for _ in 0..1000 {
            t.apply(&item, 1);
        }
        assert_eq!(t.today().cost_usd, 200.0);
        assert_eq!(t.today().credits, 100.0);
        assert_eq!(DayTotals::decode(&t.encode()), t);
        for _ in 0..1000 {
            t.apply(&item, -1);
        }
        assert!(t.is_zero());
        item.status = Status::Working;
        t.apply(&item, 1);
        assert_eq!((t.failed, t.cost_micro), (0, 200_000));
    }
}
