//! Listing items: filters, the query plan and cursors.
//!
//! A list is answered by choosing the smallest union of partitions that every result must lie
//! in (by their stored counts), merging those partitions' index ranges newest-first, and checking
//! each candidate against the whole filter until the page is full. A cursor is the index position
//! of the last candidate looked at, so the next page resumes exactly there.
//!
//! A filter of the tab, statuses, sources and harnesses alone matches a number of items the
//! tallies know exactly (every item counted by status, source and harness, and the user's own
//! apart): a first page stops as soon as it holds them all, and a filter that matches nothing
//! is answered without looking at a candidate. (Two filters each matching many items, such as
//! `status=working&source=slack`, would otherwise check the smaller side whole against the
//! other.)

use super::{INDEX, ITEMS, Partition, Store, StoreError, decode_item, recency_ms};
use crate::model::{Item, Source, Status, local_day};
use redb::ReadableDatabase;
use std::ops::Bound;

/// Most candidates one request may examine. A filter that matches rarely (a `q=` over a huge
/// history) answers with what it found so far and a cursor to continue, rather than holding a
/// worker for seconds.
pub const SCAN_BUDGET: usize = 50_000;

/// A validated list filter (contract section 4, `GET /v1/agents`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// `tab=personal` (the default) keeps only the user's own items.
    pub personal: bool,
    pub sources: Vec<Source>,
    pub statuses: Vec<Status>,
    /// Any of these creators (a repeated or comma-separated parameter).
    pub creators: Vec<String>,
    /// Any of these harnesses.
    pub harnesses: Vec<String>,
    /// Created on this local date (`YYYY-MM-DD`), with its epoch-ms bounds.
    pub day: Option<(String, i64, i64)>,
    /// Last updated on this local date (`updated_day`), with its epoch-ms bounds: what
    /// `/v1/summary`'s "today" counts, so that a count and its list agree.
    pub updated_day: Option<(String, i64, i64)>,
    /// `created_at >= since`.
    pub since: Option<i64>,
    /// `created_at < until`.
    pub until: Option<i64>,
    /// Lower-cased text to find in the title or project.
    pub q: Option<String>,
    pub limit: usize,
    /// Resume after this index position (recency bytes + id).
    pub cursor: Option<Vec<u8>>,
}

impl Filter {
    /// Whether an item passes every condition.
    pub fn matches(&self, item: &Item) -> bool {
        (!self.personal || item.mine)
            && (self.sources.is_empty() || self.sources.contains(&item.source))
            && (self.statuses.is_empty() || self.statuses.contains(&item.status))
            && (self.creators.is_empty()
                || item
                    .creator
                    .as_ref()
                    .is_some_and(|c| self.creators.contains(c)))
            && (self.harnesses.is_empty()
                || item
                    .harness
                    .as_ref()
                    .is_some_and(|h| self.harnesses.contains(h)))
            && self
                .day
                .as_ref()
                .is_none_or(|(_, s, e)| (*s..*e).contains(&item.created_at.0))
            && self
                .updated_day
                .as_ref()
                .is_none_or(|(_, s, e)| (*s..*e).contains(&item.updated_at.0))
            && self.since.is_none_or(|s| item.created_at.0 >= s)
            && self.until.is_none_or(|u| item.created_at.0 < u)
            && self.q.as_ref().is_none_or(|q| {
                let hit =
                    |v: &Option<String>| v.as_ref().is_some_and(|t| t.to_lowercase().contains(q));
                hit(&item.title) || hit(&item.project)
            })
    }

    /// How many items the filter matches, when the tallies say it exactly: a first page of a
    /// filter of the tab, statuses, sources and harnesses agentd names alone (a harness of free
    /// text is tallied as `other`, with every other such). `None` otherwise.
    fn exact_count(
        &self,
        counts: &redb::ReadOnlyTable<&'static str, u64>,
    ) -> Result<Option<u64>, StoreError> {
        let free_text = |h: &String| {
            let label = crate::sources::harness_label(Some(h));
            label != h || label == "other"
        };
        if self.cursor.is_some()
            || !self.creators.is_empty()
            || self.day.is_some()
            || self.updated_day.is_some()
            || self.since.is_some()
            || self.until.is_some()
            || self.q.is_some()
            || self.harnesses.iter().any(free_text)
            || (self.statuses.is_empty() && self.sources.is_empty() && self.harnesses.is_empty())
        {
            return Ok(None);
        }
        let prefix = if self.personal {
            super::MINE_COMBINATIONS
        } else {
            super::ALL_COMBINATIONS
        };
        let end = format!("{};", &prefix[..1]);
        let mut total = 0u64;
        for entry in counts.range::<&str>(prefix..end.as_str())? {
            let (key, n) = entry?;
            let key = key.value();
            let mut parts = key[prefix.len()..].split('|');
            let (Some(status), Some(source), Some(harness)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if (self.statuses.is_empty() || self.statuses.iter().any(|s| s.as_str() == status))
                && (self.sources.is_empty() || self.sources.iter().any(|s| s.as_str() == source))
                && (self.harnesses.is_empty() || self.harnesses.iter().any(|h| h == harness))
            {
                total += n.value();
            }
        }
        Ok(Some(total))
    }

    /// The candidate partition unions; every matching item is in each of them.
    fn plans(&self, store: &Store) -> Vec<Vec<String>> {
        let tz = &store.ctx.tz;
        let keys = |ps: Vec<Partition>| ps.iter().map(Partition::key).collect::<Vec<_>>();
        let mut plans = vec![keys(vec![if self.personal {
            Partition::Mine
        } else {
            Partition::All
        }])];
        if !self.statuses.is_empty() {
            plans.push(keys(
                self.statuses
                    .iter()
                    .map(|s| {
                        if self.personal {
                            Partition::MineStatus(*s)
                        } else {
                            Partition::Status(*s)
                        }
                    })
                    .collect(),
            ));
        }
        if !self.sources.is_empty() {
            plans.push(keys(
                self.sources.iter().map(|s| Partition::Source(*s)).collect(),
            ));
        }
        if !self.creators.is_empty() {
            plans.push(keys(
                self.creators
                    .iter()
                    .map(|c| Partition::Creator(c))
                    .collect(),
            ));
        }
        if !self.harnesses.is_empty() {
            plans.push(keys(
                self.harnesses
                    .iter()
                    .map(|h| Partition::Harness(h))
                    .collect(),
            ));
        }
        if let Some((_, start, _)) = &self.day {
            // Day partitions use the store's zone, the same one the bounds were computed in.
            let day = local_day(crate::model::Millis(*start), tz);
            plans.push(keys(vec![Partition::Day(&day)]));
        }
        plans
    }
}

/// A page of results and where the next one starts.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Item>,
    pub next_cursor: Option<Vec<u8>>,
}

/// One partition's range, advanced in step with the others.
struct Head<'a> {
    range: redb::Range<'a, &'static [u8], ()>,
    prefix_len: usize,
    current: Option<Vec<u8>>,
}

impl Head<'_> {
    fn advance(&mut self) -> Result<(), StoreError> {
        self.current = match self.range.next() {
            Some(entry) => Some(entry?.0.value()[self.prefix_len..].to_vec()),
            None => None,
        };
        Ok(())
    }
}

/// Whether the index position is present in at least one partition of every union.
fn in_every_union(
    index: &redb::ReadOnlyTable<&'static [u8], ()>,
    unions: &[Vec<String>],
    pos: &[u8],
) -> Result<bool, StoreError> {
    let mut key = Vec::with_capacity(64);
    for union in unions {
        let mut found = false;
        for p in union {
            key.clear();
            key.extend_from_slice(p.as_bytes());
            key.push(0);
            key.extend_from_slice(pos);
            if index.get(key.as_slice())?.is_some() {
                found = true;
                break;
            }
        }
        if !found {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Store {
    /// Lists items matching the filter, newest `updated_at` first.
    pub fn list(&self, filter: &Filter) -> Result<Page, StoreError> {
        // One snapshot for planning and scanning.
        let rx = self.db()?.begin_read()?;
        let counts = rx.open_table(super::COUNTS)?;
        let expected = filter.exact_count(&counts)?;
        if expected == Some(0) {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let mut plans = filter.plans(self);
        let mut best: Option<(u64, usize)> = None;
        for (i, plan) in plans.iter().enumerate() {
            let mut cost = 0u64;
            for p in plan {
                cost = cost.saturating_add(counts.get(p.as_str())?.map(|v| v.value()).unwrap_or(0));
            }
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, i));
            }
        }
        let plan = plans.remove(best.map_or(0, |(_, i)| i));
        // The other unions are checked per candidate against the index, which is ordered like
        // the candidates (so the lookups walk nearby pages), before the item itself is read.
        let checks: Vec<Vec<String>> = plans
            .into_iter()
            .filter(|p| p.as_slice() != [Partition::All.key()])
            .collect();

        let index = rx.open_table(INDEX)?;
        let items = rx.open_table(ITEMS)?;
        let mut bounds = Vec::with_capacity(plan.len());
        for p in &plan {
            let mut start = p.as_bytes().to_vec();
            start.push(0);
            let prefix_len = start.len();
            let mut end = p.as_bytes().to_vec();
            end.push(1);
            let lower = match &filter.cursor {
                Some(c) => {
                    let mut s = start.clone();
                    s.extend_from_slice(c);
                    Bound::Excluded(s)
                }
                None => Bound::Included(start),
            };
            bounds.push((lower, end, prefix_len));
        }
        let mut heads = Vec::with_capacity(bounds.len());
        for (lower, end, prefix_len) in &bounds {
            let lower = match lower {
                Bound::Included(v) => Bound::Included(v.as_slice()),
                Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
                Bound::Unbounded => Bound::Unbounded,
            };
            let range = index.range::<&[u8]>((lower, Bound::Excluded(end.as_slice())))?;
            let mut head = Head {
                range,
                prefix_len: *prefix_len,
                current: None,
            };
            head.advance()?;
            heads.push(head);
        }

        let mut out = Vec::with_capacity(filter.limit.min(1000));
        let mut scanned = 0usize;
        let mut last_pos: Option<Vec<u8>> = None;
        loop {
            // The smallest position across heads is the newest remaining candidate.
            let Some(i) = heads
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.current.as_ref().map(|c| (i, c)))
                .min_by(|a, b| a.1.cmp(b.1))
                .map(|(i, _)| i)
            else {
                return Ok(Page {
                    items: out,
                    next_cursor: None,
                });
            };
            if expected == Some(out.len() as u64) {
                // Every match is in the page: no further candidate can be one.
                return Ok(Page {
                    items: out,
                    next_cursor: None,
                });
            }
            let pos = heads[i].current.take().unwrap_or_default();
            heads[i].advance()?;
            if out.len() == filter.limit {
                // A further candidate exists: the page ends at the last one returned.
                return Ok(Page {
                    items: out,
                    next_cursor: last_pos,
                });
            }
            if scanned >= SCAN_BUDGET {
                return Ok(Page {
                    items: out,
                    next_cursor: last_pos,
                });
            }
            let mut rec = [0u8; 8];
            rec.copy_from_slice(&pos[..8]);
            let updated_ms = recency_ms(rec);
            if filter.since.is_some_and(|since| updated_ms < since)
                || filter
                    .updated_day
                    .as_ref()
                    .is_some_and(|(_, start, _)| updated_ms < *start)
            {
                // Newest updated first, and updated_at >= created_at: nothing from here on was
                // created since `since`, or updated on `updated_day`.
                return Ok(Page {
                    items: out,
                    next_cursor: None,
                });
            }
            scanned += 1;
            if !in_every_union(&index, &checks, &pos)? {
                last_pos = Some(pos);
                continue;
            }
            let id = std::str::from_utf8(&pos[8..]).unwrap_or_default();
            if let Some(v) = items.get(id)? {
                let item = decode_item(v.value())?;
                // Skip a stale index entry (never expected; cheap to guard).
                if item.updated_at.0 == updated_ms && filter.matches(&item) {
                    out.push(item);
                }
            }
            last_pos = Some(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Millis;
    use crate::store::writer::tests::{Scratch, ingest, run_item, scratch_store};

    /// A store holding `n` run items spread over every status and source, some the user's,
    /// with a known harness, a free-text one or none.
    fn store_with(n: usize, name: &str) -> (Store, Vec<Item>) {
        let Scratch { store, writer, .. } = scratch_store(&format!("query-{name}"));
        let harnesses = [Some("claude-code"), Some("codex"), Some("my-script"), None];
        ingest(
            &writer,
            (0..n).map(|i| {
                let mut item = run_item(i);
                item.id = format!("cli:q{i:05}");
                item.status = Status::ALL[(i * 7 + i / 13) % Status::ALL.len()];
                item.source = Source::ALL[(i * 5 + i / 7) % Source::ALL.len()];
                item.harness = harnesses[(i / 3) % 4].map(str::to_owned);
                item.creator = Some(if i % 3 == 0 { "bob" } else { "me" }.to_owned());
                let t = 1_780_000_000_000 + (i as i64 % 97) * 1000;
                (item.created_at, item.updated_at) = (Millis(t - 5000), Millis(t));
                item
            }),
        );
        let mut all: Vec<Item> = (0..n)
            .map(|i| store.get(&format!("cli:q{i:05}")).unwrap().unwrap())
            .collect();
        // The index order: newest update first, then by id.
        all.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        (store, all)
    }

    /// Every page of `filter`, and what a scan of every item says it must return.
    fn check(store: &Store, all: &[Item], filter: &Filter) {
        let expected: Vec<&str> = all
            .iter()
            .filter(|i| filter.matches(i))
            .map(|i| i.id.as_str())
            .collect();
        let mut got = Vec::new();
        let mut page_filter = filter.clone();
        let mut pages = 0;
        loop {
            let page = store.list(&page_filter).unwrap();
            pages += 1;
            got.extend(page.items.iter().map(|i| i.id.clone()));
            match page.next_cursor {
                Some(c) => page_filter.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(got, expected, "{filter:?}");
        let rx = store.db().unwrap().begin_read().unwrap();
        let counts = rx.open_table(super::super::COUNTS).unwrap();
        let exact = filter.exact_count(&counts).unwrap();
        if let Some(n) = exact {
            assert_eq!(n, expected.len() as u64, "{filter:?}");
        }
        if exact.is_some() && expected.len() <= filter.limit {
            // A first page holding every match says there is no next one.
            assert_eq!(pages, 1, "{filter:?}");
        }
    }

    #[test]
    fn lists_agree_with_a_scan_of_every_item_and_end_when_the_tallies_say_all_are_found() {
        let (store, all) = store_with(600, "agree");
        let subsets = |n: usize, k: usize| -> Vec<Vec<usize>> {
            (0..1usize << n)
                .filter(|m| m.count_ones() as usize <= k)
                .map(|m| (0..n).filter(|b| m & (1 << b) != 0).collect())
                .collect()
        };
        let harness_names = ["claude-code", "codex", "my-script", "gemini"];
        let mut checked = 0;
        for personal in [false, true] {
            for statuses in subsets(Status::ALL.len(), 2) {
                for sources in subsets(Source::ALL.len(), 2) {
                    for harnesses in [vec![], vec![0], vec![1, 3], vec![2]] {
                        let limit = [1000, 7, 1][checked % 3];
                        let filter = Filter {
                            personal,
                            statuses: statuses.iter().map(|&i| Status::ALL[i]).collect(),
                            sources: sources.iter().map(|&i| Source::ALL[i]).collect(),
                            harnesses: harnesses
                                .iter()
                                .map(|&i| harness_names[i].to_owned())
                                .collect(),
                            limit,
                            ..Default::default()
                        };
                        check(&store, &all, &filter);
                        checked += 1;
                    }
                }
            }
        }
        // A filter the tallies cannot answer is still answered by the scan.
        check(
            &store,
            &all,
            &Filter {
                statuses: vec![Status::Failed],
                creators: vec!["bob".into()],
                limit: 5,
                ..Default::default()
            },
        );
        assert!(checked > 1000, "{checked}");
    }
}
