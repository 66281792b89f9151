//! The counts a shell prompt asks for, kept current in memory so that `/v1/summary` never scans.
//!
//! The writer owns a [`Tallies`]: it adds each committed item's contribution and subtracts the
//! replaced version's, then publishes a [`Summaries`] snapshot on a `watch` channel that handlers
//! read without locking the database. "Today" restarts at local midnight with a recount.

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

/// Signed running sums for one tab (signed so that a subtraction never underflows mid-update).
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    working: i64,
    blocked: i64,
    success: i64,
    failed: i64,
    canceled: i64,
    credits: f64,
    cost_usd: f64,
}

impl Tally {
    fn summary(&self) -> Summary {
        let n = |v: i64| v.max(0) as u64;
        Summary {
            working: n(self.working),
            blocked: n(self.blocked),
            active: n(self.working) + n(self.blocked),
            today: Today {
                success: n(self.success),
                failed: n(self.failed),
                canceled: n(self.canceled),
                credits: round6(self.credits.max(0.0)),
                cost_usd: round6(self.cost_usd.max(0.0)),
            },
        }
    }
}

/// Rounds away the float noise that incremental sums accumulate.
fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// The writer's running tallies for both tabs.
#[derive(Debug, Clone, Default)]
pub struct Tallies {
    personal: Tally,
    all: Tally,
    /// Start of today (local), epoch ms: items updated at or after it count as today's.
    today_start: i64,
    /// Start of tomorrow: when the writer must recount.
    pub tomorrow_start: i64,
}

impl Tallies {
    /// Empty tallies for the day `[today_start, tomorrow_start)`.
    pub fn new(today_start: i64, tomorrow_start: i64) -> Tallies {
        Tallies {
            today_start,
            tomorrow_start,
            ..Tallies::default()
        }
    }

    /// Sets the active counts (read from the store's partition counts).
    pub fn set_active(&mut self, personal: (u64, u64), all: (u64, u64)) {
        self.personal.working = personal.0 as i64;
        self.personal.blocked = personal.1 as i64;
        self.all.working = all.0 as i64;
        self.all.blocked = all.1 as i64;
    }

    /// Whether an item updated at `updated_ms` counts as today's.
    pub fn is_today(&self, updated_ms: i64) -> bool {
        updated_ms >= self.today_start
    }

    /// Adds (`sign = 1`) or removes (`sign = -1`) an item's contribution to today's totals only.
    pub fn apply_today(&mut self, item: &Item, sign: i64) {
        if !self.is_today(item.updated_at.0) {
            return;
        }
        let f = sign as f64;
        for (tally, applies) in [(&mut self.all, true), (&mut self.personal, item.mine)] {
            if !applies {
                continue;
            }
            match item.status {
                Status::Success => tally.success += sign,
                Status::Failed => tally.failed += sign,
                Status::Canceled => tally.canceled += sign,
                Status::Working | Status::Blocked => {}
            }
            tally.credits += f * item.credits.unwrap_or(0.0);
            tally.cost_usd += f * item.cost_usd.unwrap_or(0.0);
        }
    }

    /// Adds or removes an item's whole contribution: active counts and today's totals.
    pub fn apply(&mut self, item: &Item, sign: i64) {
        for (tally, applies) in [(&mut self.all, true), (&mut self.personal, item.mine)] {
            if !applies {
                continue;
            }
            match item.status {
                Status::Working => tally.working += sign,
                Status::Blocked => tally.blocked += sign,
                _ => {}
            }
        }
        self.apply_today(item, sign);
    }

    /// The snapshot to publish.
    pub fn summaries(&self) -> Summaries {
        Summaries {
            personal: self.personal.summary(),
            all: self.all.summary(),
        }
    }
}
