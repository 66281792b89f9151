//! The one task that writes the database.
//!
//! Every ingestor (run logs now; conversation stores, cloud sync and hooks later) sends
//! [`WriteOp`]s down one bounded channel. A dedicated thread takes the first op, drains whatever
//! else is already queued, applies it all in one write transaction (items, indexes, counts,
//! cursors and error counters together) and commits once: under load many lines share one
//! fsync, and a crash at any point leaves each file's cursor consistent with its items.
//!
//! Partition counts and per-day totals change by deltas gathered over the whole transaction and
//! written once per key at its end, so a batch of a thousand items touches each counter once.
//!
//! After each commit it publishes what changed: every changed item on the change bus (a
//! `broadcast` that `/v1/events` subscribes to) and, when they moved, the summary counts (also
//! republished at local midnight, when "today" starts over).
//! The bounded channel is the back-pressure: a backfill cannot run ahead of the disk.

use super::{
    COUNTS, CURSORS, INDEX, ITEMS, META, ORIGINS, SCHEMA_VERSION, Store, StoreError, TOTALS,
    TRUSTED_CURSORS_SINCE, decode_item, index_key, partitions, totals_keys,
};
use crate::model::{Item, Millis, MineRule, derive_on_write, tz_fingerprint};
use crate::summary::{DayTotals, Summaries};
use redb::{ReadableDatabase, ReadableTable, Table};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How many queued ops one transaction may absorb. Bounds the latency of the changes that wait
/// for it while still amortising the fsync.
const MAX_OPS_PER_TXN: usize = 512;

/// How many item updates one transaction may absorb. A write transaction holds its dirty pages
/// in memory until it commits; this keeps a backfill's transactions (and the daemon's memory)
/// small.
const MAX_UPDATES_PER_TXN: usize = 4096;

/// Capacity of the writer's channel, in ops. A full channel blocks the sender (back-pressure).
pub const CHANNEL_CAPACITY: usize = 64;

/// Capacity of the change bus. A subscriber that falls this far behind is told it lagged and
/// resynchronises from the summary; it does not hold the writer back.
pub const CHANGE_BUS_CAPACITY: usize = 4096;

/// One item as an ingestor sees it: the full current state, not a patch.
#[derive(Debug, Clone)]
pub struct ItemUpdate {
    pub item: Item,
    pub mine: MineRule,
    /// The file the item was read from, for `/v1/agents/{id}/log`.
    pub origin: Option<String>,
}

/// Everything one ingestor learned in one step, committed atomically.
#[derive(Debug, Default)]
pub struct IngestBatch {
    /// The source's name in `/v1/health` (`runs`, …).
    pub source: &'static str,
    pub updates: Vec<ItemUpdate>,
    /// Resume state per file (or per cloud cursor), committed with the items it produced.
    pub cursors: Vec<(String, Vec<u8>)>,
    /// Lines or files skipped since the previous batch.
    pub errors: u64,
    pub last_error: Option<String>,
    /// When the oldest change read into this batch as it happened was written (its file's
    /// modification time): the writer measures append-to-visible latency from it. `None` for
    /// scans and backfills.
    pub appended_at: Option<std::time::SystemTime>,
    /// Sent by a scan that has more batches to send: the writer does not count the pause
    /// before the next one as idleness (see [`SCAN_PAUSE`]). A scan's last batch is unmarked.
    pub scan_continues: bool,
    /// Read by a scan of what was already there (a backfill, the scan at start, a rescan), not
    /// a change as it happened: commits of such batches alone, the scan's last one included,
    /// are made durable less often (see [`DURABLE_WHILE_SCANNING`]).
    pub scanned: bool,
}

/// The writer's closed set of messages.
#[derive(Debug)]
pub enum WriteOp {
    Ingest(IngestBatch),
    /// Answered once everything sent before it is committed (tests, shutdown, `POST /v1/sync`).
    Barrier(SyncSender<()>),
    /// Commit what is queued, then stop.
    Shutdown,
}

/// Persisted per-source error counters (`meta` key `health:<source>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceErrors {
    pub errors: u64,
    pub last_error: Option<String>,
}

/// What the writer publishes for readers.
#[derive(Clone)]
pub struct Published {
    pub changes: broadcast::Sender<Arc<Item>>,
    pub summary: watch::Receiver<Summaries>,
    pub errors: Arc<RwLock<HashMap<String, SourceErrors>>>,
    /// The last failed commit, shown in `/v1/health` until a commit succeeds.
    pub store_error: Arc<RwLock<Option<String>>>,
    /// Bumped when the store is writable again after batches were dropped (a full disk, an I/O
    /// error): ingestors then rescan from their committed cursors, so nothing is lost.
    pub resync: Arc<AtomicU64>,
}

impl Published {
    /// The persisted error counts per source, as of now.
    pub fn errors_now(&self) -> HashMap<String, SourceErrors> {
        self.errors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The sending side, held by every ingestor.
#[derive(Clone)]
pub struct WriterHandle {
    tx: SyncSender<WriteOp>,
    /// Ops sent and not yet taken by the writer (`agentd_writer_queue`).
    queued: Arc<AtomicU64>,
}

/// The writer has stopped; the daemon is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the database writer has stopped")]
pub struct WriterClosed;

impl WriterHandle {
    /// Sends an op, waiting while the channel is full.
    pub fn send(&self, op: WriteOp) -> Result<(), WriterClosed> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(op).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            WriterClosed
        })
    }

    /// Blocks until everything sent before this call is committed.
    pub fn barrier(&self) -> Result<(), WriterClosed> {
        self.barrier_later()?.recv().map_err(|_| WriterClosed)
    }

    /// A barrier not waited for: the receiver gets `()` once everything sent before this call
    /// is committed (and is disconnected if the writer stops first).
    pub fn barrier_later(&self) -> Result<std::sync::mpsc::Receiver<()>, WriterClosed> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(WriteOp::Barrier(tx))?;
        Ok(rx)
    }
}

/// Creates the tables on first start, records the schema version and rebuilds the indexes when
/// the schema, the user or the time zone differ from what they were built with.
pub(super) fn prepare(store: &Store, found_version: Option<u32>) -> Result<(), StoreError> {
    let tz_now = tz_fingerprint(&store.ctx.tz);
    let me = store
        .meta("me")?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    let tz = store
        .meta("tz")?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    let rebuild = found_version.is_some_and(|v| v < super::REBUILD_BELOW)
        || me.as_deref().is_some_and(|m| m != store.ctx.me)
        || tz.as_deref().is_some_and(|t| t != tz_now);
    let add_mine_tallies = !rebuild && found_version.is_some_and(|v| v < SCHEMA_VERSION);

    let mut tx = store.db()?.begin_write()?;
    tx.set_quick_repair(true);
    if rebuild {
        tracing::info!(
            from_version = ?found_version, old_user = ?me, old_tz = ?tz,
            "schema, user or time zone changed: rebuilding indexes"
        );
        tx.delete_table(INDEX)?;
        tx.delete_table(COUNTS)?;
        tx.delete_table(TOTALS)?;
    }
    for table in [ITEMS, CURSORS] {
        tx.open_table(table)?;
    }
    if found_version.is_some_and(|v| v < TRUSTED_CURSORS_SINCE) {
        // Read every file again from the start (see SCHEMA_VERSION); the cloud's cursor is a
        // time, not a file position, and stays.
        let mut cursors = tx.open_table(CURSORS)?;
        let dropped = cursors
            .extract_if(|key, _| !key.starts_with("cloud:"))?
            .count();
        tracing::info!("dropped {dropped} file cursors of an older schema: files are read again");
    }
    tx.open_table(INDEX)?;
    tx.open_table(COUNTS)?;
    tx.open_table(TOTALS)?;
    tx.open_table(ORIGINS)?;
    tx.open_table(META)?;
    tx.commit()?;

    if rebuild {
        rebuild_indexes(store)?;
    } else if add_mine_tallies {
        count_mine_combinations(store)?;
        drop_scheme_entries(store)?;
    }
    // Recorded last: a crash in the middle of a rebuild leaves the old values, so the next
    // start rebuilds again from scratch.
    let mut tx = store.db()?.begin_write()?;
    {
        let mut meta = tx.open_table(META)?;
        meta.insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
        meta.insert("me", store.ctx.me.as_bytes())?;
        meta.insert("tz", tz_now.as_bytes())?;
    }
    tx.set_quick_repair(true);
    tx.commit()?;
    Ok(())
}

/// Adds the `y:` tallies to a version-3 file: one pass over the user's own items (their
/// partition of the index), one transaction.
fn count_mine_combinations(store: &Store) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let mut deltas: HashMap<String, i64> = HashMap::new();
    let mut n = 0u64;
    {
        let rx = store.db()?.begin_read()?;
        let index = rx.open_table(INDEX)?;
        let items = rx.open_table(ITEMS)?;
        let mine = super::Partition::Mine.key();
        let (start, end) = (format!("{mine}\0"), format!("{mine}\x01"));
        for entry in index.range::<&[u8]>(start.as_bytes()..end.as_bytes())? {
            let (key, _) = entry?;
            let id = std::str::from_utf8(&key.value()[start.len() + 8..]).unwrap_or_default();
            if let Some(v) = items.get(id)? {
                let item = decode_item(v.value())?;
                for (k, v) in super::tallies(&item) {
                    if k.starts_with(super::MINE_COMBINATIONS) {
                        *deltas.entry(k).or_default() += v;
                    }
                }
                n += 1;
            }
        }
    }
    let mut tx = store.db()?.begin_write()?;
    tx.set_quick_repair(true);
    {
        let mut counts = tx.open_table(COUNTS)?;
        // From nothing: a crash before the version is recorded makes the next start count again.
        counts.retain(|k, _| !k.starts_with(super::MINE_COMBINATIONS))?;
        for (k, v) in deltas {
            counts.insert(k.as_str(), v.max(0) as u64)?;
        }
    }
    tx.commit()?;
    tracing::info!(
        "counted the user's own {n} items by status, source and harness in {:?}",
        started.elapsed()
    );
    Ok(())
}

/// Drops a version-3 file's index entries of the id-scheme partitions (`i:`), now counted only
/// (their counts stay), a chunk of entries per transaction.
fn drop_scheme_entries(store: &Store) -> Result<(), StoreError> {
    let (start, end) = (b"i:".as_slice(), b"i;".as_slice());
    let mut dropped = 0usize;
    loop {
        let mut tx = store.db()?.begin_write()?;
        tx.set_quick_repair(true);
        let n = {
            let mut index = tx.open_table(INDEX)?;
            let keys: Vec<Vec<u8>> = index
                .range::<&[u8]>(start..end)?
                .take(REBUILD_CHUNK * 8)
                .map(|e| e.map(|(k, _)| k.value().to_vec()))
                .collect::<Result<_, _>>()?;
            for k in &keys {
                index.remove(k.as_slice())?;
            }
            keys.len()
        };
        tx.commit()?;
        dropped += n;
        if n == 0 {
            break;
        }
    }
    tracing::info!("dropped {dropped} index entries of id schemes, now counted only");
    Ok(())
}

/// Items re-derived and re-indexed per transaction during a rebuild: bounded memory, and
/// progress that survives a crash only as far as it should (see `prepare`).
const REBUILD_CHUNK: usize = 4096;

/// Re-derives every item (its `mine` may have changed) and rebuilds the (emptied) indexes,
/// counts and day totals, a chunk at a time.
fn rebuild_indexes(store: &Store) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let mut after: Option<String> = None;
    let mut done = 0usize;
    loop {
        let chunk: Vec<(String, Item)> = {
            let rx = store.db()?.begin_read()?;
            let items = rx.open_table(ITEMS)?;
            let range = match &after {
                Some(last) => items.range::<&str>((
                    std::ops::Bound::Excluded(last.as_str()),
                    std::ops::Bound::Unbounded,
                ))?,
                None => items.range::<&str>(..)?,
            };
            let mut chunk = Vec::with_capacity(REBUILD_CHUNK);
            for entry in range.take(REBUILD_CHUNK) {
                let (k, v) = entry?;
                chunk.push((k.value().to_owned(), decode_item(v.value())?));
            }
            chunk
        };
        let Some((last, _)) = chunk.last() else { break };
        after = Some(last.clone());
        done += chunk.len();
        let mut tx = store.db()?.begin_write()?;
        tx.set_quick_repair(true);
        {
            let mut items = tx.open_table(ITEMS)?;
            let mut index = tx.open_table(INDEX)?;
            let mut counts = tx.open_table(COUNTS)?;
            let mut totals = tx.open_table(TOTALS)?;
            let mut deltas = Deltas::default();
            for (id, mut item) in chunk {
                if crate::sources::SourceKind::of_id(&id) != Some(crate::sources::SourceKind::Cloud)
                {
                    derive_on_write(&mut item, &store.ctx.me, MineRule::Creator);
                }
                items.insert(id.as_str(), super::encode_item(&item).as_slice())?;
                deltas.index(&item, &store.ctx.tz, 1);
                if !item.status.is_active() {
                    deltas.finished(&item);
                }
            }
            deltas.flush(&mut index, &mut counts, &mut totals)?;
        }
        tx.commit()?;
    }
    tracing::info!(
        "rebuilt the indexes of {done} items in {:?}",
        started.elapsed()
    );
    Ok(())
}

/// Counter changes gathered over one transaction, written once per key at its end.
///
/// Its maps hash with hashbrown's default hasher (foldhash), not SipHash: every item looks up
/// a dozen partition and tally names, and SipHash was a twentieth of a run-log backfill's
/// writer. Nothing here is keyed by what a client sends.
#[derive(Default)]
struct Deltas {
    counts: hashbrown::HashMap<String, i64>,
    totals: hashbrown::HashMap<String, DayTotals>,
    index: IndexDeltas,
}

/// Index entries added (+1) or removed (-1) in one transaction, netted and written in key
/// order at the end: a backfill's entries land all over the index, and writing them sorted
/// visits each page once instead of evicting and re-reading pages between items.
///
/// Kept as a flat list sorted once at the end, not a sorted map of whole keys: a key is a
/// partition name, the item's recency and its id, and a map compared those bytes at every
/// level of every insertion (plus an allocation per key) — a tenth of a large run-log
/// backfill's writer. Here an entry is a partition number, the recency and an id number;
/// partitions are ranked by name once, and ids compared only on equal recency.
#[derive(Default)]
struct IndexDeltas {
    /// Partition name → its number in `names`.
    numbers: hashbrown::HashMap<String, u32>,
    names: Vec<String>,
    /// The id of each item indexed (an item's entries share one).
    ids: Vec<String>,
    entries: Vec<IndexDelta>,
}

/// One index entry added or removed.
struct IndexDelta {
    partition: u32,
    recency: [u8; 8],
    id: u32,
    sign: i8,
}

impl IndexDeltas {
    /// Records `sign` for the entries of `id` (updated at `updated_ms`) in `partitions`.
    fn add<'p>(
        &mut self,
        partitions: impl Iterator<Item = &'p String>,
        updated_ms: i64,
        id: &str,
        sign: i8,
    ) {
        let id_number = self.ids.len() as u32;
        self.ids.push(id.to_owned());
        let recency = super::recency(updated_ms);
        for p in partitions {
            let partition = match self.numbers.get(p.as_str()) {
                Some(&n) => n,
                None => {
                    let n = self.names.len() as u32;
                    self.names.push(p.clone());
                    self.numbers.insert(p.clone(), n);
                    n
                }
            };
            self.entries.push(IndexDelta {
                partition,
                recency,
                id: id_number,
                sign,
            });
        }
    }

    /// Writes the net change of every key, in key order.
    fn flush(self, index: &mut Table<&[u8], ()>) -> Result<(), StoreError> {
        let IndexDeltas {
            names,
            ids,
            mut entries,
            ..
        } = self;
        // A key starts with its partition's name and a 0 byte (never in a name), so ordering
        // by name rank, then recency bytes, then id bytes is the keys' byte order.
        let mut by_name: Vec<u32> = (0..names.len() as u32).collect();
        by_name.sort_unstable_by(|a, b| names[*a as usize].cmp(&names[*b as usize]));
        let mut rank = vec![0u32; names.len()];
        for (r, n) in by_name.iter().enumerate() {
            rank[*n as usize] = r as u32;
        }
        let id = |e: &IndexDelta| ids[e.id as usize].as_str();
        // The recency bytes compare as the big-endian number they are (one comparison, not a
        // call to compare bytes); ids only when partition and recency are the same.
        let order = |e: &IndexDelta| (rank[e.partition as usize], u64::from_be_bytes(e.recency));
        entries.sort_unstable_by(|a, b| order(a).cmp(&order(b)).then_with(|| id(a).cmp(id(b))));
        let mut key = Vec::new();
        let mut rest = entries.as_slice();
        while let Some(first) = rest.first() {
            let same = rest
                .iter()
                .take_while(|e| {
                    e.partition == first.partition
                        && e.recency == first.recency
                        && (e.id == first.id || id(e) == id(first))
                })
                .count();
            let net: i32 = rest[..same].iter().map(|e| i32::from(e.sign)).sum();
            rest = &rest[same..];
            key.clear();
            key.extend_from_slice(names[first.partition as usize].as_bytes());
            key.push(0);
            key.extend_from_slice(&first.recency);
            key.extend_from_slice(id(first).as_bytes());
            debug_assert_eq!(
                key,
                index_key(
                    &names[first.partition as usize],
                    super::recency_ms(first.recency),
                    id(first)
                )
            );
            match net.signum() {
                1 => {
                    index.insert(key.as_slice(), ())?;
                }
                -1 => {
                    index.remove(key.as_slice())?;
                }
                _ => {} // added and removed in the same transaction
            }
        }
        Ok(())
    }
}

impl Deltas {
    /// Adds (`sign = 1`) or removes (`sign = -1`) an item's index entries, and records its
    /// effect on partition counts and day totals.
    fn index(&mut self, item: &Item, tz: &jiff::tz::TimeZone, sign: i64) {
        let partitions = partitions(item, tz);
        self.index
            .add(partitions.iter(), item.updated_at.0, &item.id, sign as i8);
        for p in partitions {
            *self.counts.entry(p).or_default() += sign;
        }
        for p in super::counted_partitions(item) {
            *self.counts.entry(p).or_default() += sign;
        }
        for (key, v) in super::tallies(item) {
            *self.counts.entry(key).or_default() += sign * v;
        }
        for key in totals_keys(item, tz) {
            self.totals.entry(key).or_default().apply(item, sign);
        }
    }

    /// Counts an item reaching a final status (`f:` tally: finishes so far, never taken back).
    fn finished(&mut self, item: &Item) {
        let h = crate::sources::harness_label(item.harness.as_deref());
        *self
            .counts
            .entry(format!("f:{}|{h}", item.status.as_str()))
            .or_default() += 1;
    }

    fn flush(
        self,
        index: &mut Table<&[u8], ()>,
        counts: &mut Table<&str, u64>,
        totals: &mut Table<&str, &[u8]>,
    ) -> Result<(), StoreError> {
        self.index.flush(index)?;
        for (p, delta) in self.counts {
            if delta == 0 {
                continue;
            }
            let current = counts.get(p.as_str())?.map(|v| v.value()).unwrap_or(0);
            let next = (current as i64 + delta).max(0) as u64;
            if next == 0 {
                counts.remove(p.as_str())?;
            } else {
                counts.insert(p.as_str(), next)?;
            }
        }
        for (key, delta) in self.totals {
            if delta.is_zero() {
                continue;
            }
            let mut t = totals
                .get(key.as_str())?
                .map(|v| DayTotals::decode(v.value()))
                .unwrap_or_default();
            t.merge(&delta);
            if t.is_zero() {
                totals.remove(key.as_str())?;
            } else {
                totals.insert(key.as_str(), t.encode().as_slice())?;
            }
        }
        Ok(())
    }
}

/// Starts the writer thread. Returns the handle for ingestors, what it publishes for readers,
/// and the thread to join on shutdown.
pub fn spawn(
    store: Store,
    min_free_bytes: u64,
    metrics: crate::metrics::Metrics,
) -> Result<(WriterHandle, Published, std::thread::JoinHandle<()>), StoreError> {
    let waits = store.waits()?;
    let (summary_tx, summary_rx) = watch::channel(store.summaries(Millis::now(), &waits)?);
    let (changes, _) = broadcast::channel(CHANGE_BUS_CAPACITY);
    let mut errors = HashMap::new();
    {
        let rx = store.db()?.begin_read()?;
        let meta = rx.open_table(META)?;
        for entry in meta.range("health:".."health;")? {
            let (k, v) = entry?;
            if let Ok(e) = serde_json::from_slice::<SourceErrors>(v.value()) {
                errors.insert(k.value()["health:".len()..].to_owned(), e);
            }
        }
    }
    let published = Published {
        changes: changes.clone(),
        summary: summary_rx,
        errors: Arc::new(RwLock::new(errors)),
        store_error: Arc::new(RwLock::new(None)),
        resync: Arc::new(AtomicU64::new(0)),
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_CAPACITY);
    let queued = metrics.writer_queue.clone();
    let state = WriterState {
        metrics,
        store,
        waits,
        summary: summary_tx,
        published: published.clone(),
        min_free_bytes,
        degraded: false,
        last_durable: std::time::Instant::now(),
        unsynced: false,
        unsynced_live: false,
        // Checked once at start too: a database left bloated by a backfill that was stopped
        // before its compaction is compacted then.
        written_since_compaction: COMPACT_AFTER,
        compaction_attempts: 0,
        last_write: std::time::Instant::now(),
        trim_pending: false,
        last_trim: std::time::Instant::now(),
        scans_under_way: HashMap::new(),
    };
    let thread = std::thread::Builder::new()
        .name("agentd-writer".into())
        .spawn(crate::supervised("database writer", move || state.run(rx)))
        .map_err(|e| StoreError::Decode(format!("cannot start the writer thread: {e}")))?;
    Ok((WriterHandle { tx, queued }, published, thread))
}

/// A transaction at least this large is a burst (a backfill); freed memory is then handed back
/// to the system so that the daemon's resident size falls back to its steady state instead of
/// staying at the burst's peak: when the queue is empty after it, at most every
/// [`TRIM_EVERY`], and once the writer has been quiet for [`TRIM_WHEN_QUIET`].
const TRIM_AFTER_UPDATES: usize = 256;
/// Trims during a burst at most this often: a backfill's transactions come a few milliseconds
/// apart, and trimming after each (a walk of the whole heap, then faulting the pages back in)
/// cost a backfill a twentieth of its CPU time; never trimming during it let a 50,000
/// conversation backfill peak at twice its settled size.
const TRIM_EVERY: Duration = Duration::from_millis(500);
/// How long the writer waits after a burst before the last trim.
const TRIM_WHEN_QUIET: Duration = Duration::from_millis(300);

/// Hands freed heap memory back to the system (glibc keeps it otherwise).
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The ops one transaction takes: the first, then whatever is already queued, up to
/// [`MAX_OPS_PER_TXN`] ops or [`MAX_UPDATES_PER_TXN`] updates, and never past a barrier. A barrier
/// is answered once the transaction it ends is committed, so whoever waits on it (a scan, before
/// it sends its next batch) waits for what it sent before the barrier only: taking the batch
/// queued behind it into the same transaction made a run-log backfill's reading and writing
/// take turns instead of overlapping. A barrier that comes first ends a group of its own, of
/// nothing to commit, and is answered at once.
fn take_group(first: WriteOp, rx: &Receiver<WriteOp>) -> Group {
    let mut group = Group {
        updates: op_updates(&first),
        ops: vec![first],
        drained: false,
    };
    while !matches!(group.ops.last(), Some(WriteOp::Barrier(_)))
        && group.ops.len() < MAX_OPS_PER_TXN
        && group.updates < MAX_UPDATES_PER_TXN
    {
        match rx.try_recv() {
            Ok(op) => {
                group.updates += op_updates(&op);
                group.ops.push(op);
            }
            Err(_) => {
                group.drained = true;
                break;
            }
        }
    }
    group
}

/// What [`take_group`] took for one transaction.
struct Group {
    ops: Vec<WriteOp>,
    /// Item updates and cursors in them.
    updates: usize,
    /// The queue was found empty (the burst is over, for now).
    drained: bool,
}

fn op_updates(op: &WriteOp) -> usize {
    match op {
        WriteOp::Ingest(b) => b.updates.len() + b.cursors.len(),
        _ => 0,
    }
}

struct WriterState {
    /// Commit and append-to-visible latencies, the queue depth.
    metrics: crate::metrics::Metrics,
    store: Store,
    /// Every current wait, as committed (the summary's oldest wait).
    waits: crate::summary::Waits,
    summary: watch::Sender<Summaries>,
    published: Published,
    /// Below this much free space on the database's file system, batches are not written.
    min_free_bytes: u64,
    /// Batches were dropped (full disk or write error) and the store has not recovered yet.
    degraded: bool,
    /// When the last durable commit happened.
    last_durable: std::time::Instant,
    /// Commits since then are not synced yet.
    unsynced: bool,
    /// One of them held a batch other than a scan's with more to send: they are made durable
    /// within [`DURABLE_EVERY`], not [`DURABLE_WHILE_SCANNING`].
    unsynced_live: bool,
    /// Item updates committed since the file was last compacted (see [`COMPACT_AFTER`]).
    written_since_compaction: usize,
    /// Compactions given up because a reader held the database (retried a few times).
    compaction_attempts: u8,
    /// When batches were last committed (idleness, for compaction and trimming).
    last_write: std::time::Instant,
    /// A burst was committed and its freed memory is not handed back yet (see
    /// [`TRIM_WHEN_QUIET`]).
    trim_pending: bool,
    /// When freed memory was last handed back (see [`TRIM_EVERY`]).
    last_trim: std::time::Instant,
    /// Sources whose last batch said their scan continues, with when it was committed: no
    /// compaction while one is under way (see [`SCAN_PAUSE`]).
    scans_under_way: HashMap<&'static str, std::time::Instant>,
}

/// After this many item updates (a backfill, a burst of runs) the database file is compacted
/// once the writer has been idle for [`COMPACT_WHEN_IDLE`]: the non-durable commits of a burst
/// cannot reuse the pages they free, so the file grows to two or three times its content, and
/// compaction gives that back (a 100,000-run backfill: 285 MB → 100 MB, in 0.6 s).
const COMPACT_AFTER: usize = 5_000;

/// How long the writer must have had nothing to do before it compacts: readers are answered
/// "unavailable" while it does, so not in the middle of a burst.
const COMPACT_WHEN_IDLE: Duration = Duration::from_secs(1);

/// A scan that said it has more to send (see [`IngestBatch::scan_continues`]) holds compaction
/// back until its last batch comes, or until it has sent nothing for this long (it stopped).
/// Reading a batch of files can take longer than [`COMPACT_WHEN_IDLE`]; compacting a growing
/// database in that pause held the scan back for as long as the compaction took, before every
/// batch (a million-log backfill: 20 s each at 1.7 GB, and it never finished).
const SCAN_PAUSE: Duration = Duration::from_secs(30);

/// The file is compacted when at least 1/this of it is free. A backfill in a few large
/// transactions leaves less free space than one in many: 100,000 run logs in four left 31 % of
/// the file free (1.39 KB per item against 0.94 KB compacted), which a third did not reach.
const COMPACT_FREE_FRACTION: u64 = 4;

/// Files smaller than this are not worth compacting.
const COMPACT_ABOVE_BYTES: u64 = 16 << 20;

/// Below this much free space a failed write is reported as a full disk.
const FULL_BELOW: u64 = 1 << 20;

/// How often a degraded writer checks whether it can write again.
const RECOVERY_PROBE: Duration = Duration::from_secs(1);

/// Commits are made durable (fsync) at most this often; the ones in between are not synced.
/// Everything written comes from files whose cursors commit with it, so a crash loses at most
/// this much progress, which is re-read from the files on the next start. A busy run log then
/// costs a handful of fsyncs a second instead of one per burst.
const DURABLE_EVERY: Duration = Duration::from_millis(250);

/// Commits that hold only batches read by a scan (see [`IngestBatch::scanned`]) are made
/// durable at most this often. A backfill's batches are re-read from their files after a crash
/// like any others; syncing them four times a second wrote every page a backfill dirtied again
/// and again (50,000 conversations: 610 MB written, 315 MB with this), for progress the next
/// start would redo in a few seconds. The scan's last batch waits too: syncing it at once put
/// the sync of the whole backfill (tens of MB on a 10,000-conversation one) between its last
/// items and their being listed.
const DURABLE_WHILE_SCANNING: Duration = Duration::from_secs(5);

/// Free bytes for unprivileged users on the file system holding `path`.
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct we pass; the path is a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
    }
}

/// Whether an error means redb has latched an I/O failure and must be reopened.
fn is_io_failure(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Db(redb::Error::Io(_) | redb::Error::PreviousIo)
    )
}

impl WriterState {
    fn run(mut self, rx: Receiver<WriteOp>) {
        loop {
            let (_, tomorrow) = crate::model::day_bounds(Millis::now(), &self.store.ctx.tz);
            let until_midnight =
                Duration::from_millis((tomorrow - Millis::now().0).max(0) as u64 + 50);
            let mut wait = if self.degraded {
                until_midnight.min(RECOVERY_PROBE)
            } else {
                until_midnight
            };
            if self.unsynced {
                wait = wait.min(
                    self.durable_every(false)
                        .saturating_sub(self.last_durable.elapsed()),
                );
            }
            if self.trim_pending {
                let quiet_for = self.last_write.elapsed();
                if quiet_for >= TRIM_WHEN_QUIET {
                    release_free_memory();
                    self.last_trim = std::time::Instant::now();
                    self.trim_pending = false;
                } else {
                    wait = wait.min(TRIM_WHEN_QUIET - quiet_for);
                }
            }
            self.scans_under_way
                .retain(|_, at| at.elapsed() < SCAN_PAUSE);
            if self.written_since_compaction >= COMPACT_AFTER && !self.degraded {
                // Barriers and empty wake-ups do not count as activity: only commits do.
                let quiet_for = self.last_write.elapsed();
                if let Some(scan) = self.scans_under_way.values().min() {
                    wait = wait.min(SCAN_PAUSE.saturating_sub(scan.elapsed()));
                } else if quiet_for >= COMPACT_WHEN_IDLE {
                    self.compact();
                } else {
                    wait = wait.min(COMPACT_WHEN_IDLE - quiet_for);
                }
            }
            if !self.store.settled() && !self.degraded && self.scans_under_way.is_empty() {
                let quiet_for = self.last_write.elapsed();
                if quiet_for < COMPACT_WHEN_IDLE {
                    wait = wait.min(COMPACT_WHEN_IDLE - quiet_for);
                } else {
                    match self.store.settle() {
                        Ok(true) => release_free_memory(),
                        // A reader held on: at the next idle moment.
                        Ok(false) => wait = wait.min(COMPACT_WHEN_IDLE),
                        Err(e) => self.lost_handle("giving back the catch-up cache", e),
                    }
                }
            }
            let first = match rx.recv_timeout(wait) {
                Ok(op) => op,
                Err(RecvTimeoutError::Timeout) => {
                    if self.degraded {
                        self.probe();
                    }
                    if self.unsynced && self.last_durable.elapsed() >= self.durable_every(false) {
                        self.sync();
                    }
                    self.publish_summary(); // at midnight today's totals start over
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.sync();
                    return;
                }
            };
            let Group {
                ops,
                updates,
                drained,
            } = take_group(first, &rx);
            let mut barriers = Vec::new();
            let mut batches = Vec::new();
            let mut shutdown = false;
            let taken = ops.len() as u64;
            let _ =
                self.metrics
                    .writer_queue
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                        Some(q.saturating_sub(taken))
                    });
            for op in ops {
                match op {
                    WriteOp::Ingest(b) => batches.push(b),
                    WriteOp::Barrier(done) => barriers.push(done),
                    WriteOp::Shutdown => shutdown = true,
                }
            }
            if !batches.is_empty() {
                self.written_since_compaction +=
                    batches.iter().map(|b| b.updates.len()).sum::<usize>();
                for b in &batches {
                    if b.scan_continues {
                        self.scans_under_way
                            .insert(b.source, std::time::Instant::now());
                    } else {
                        self.scans_under_way.remove(b.source);
                    }
                }
                self.commit(batches);
                self.last_write = std::time::Instant::now();
                if Millis::now().0 >= tomorrow {
                    self.publish_summary(); // midnight passed while busy
                }
                if updates >= TRIM_AFTER_UPDATES {
                    if drained && self.last_trim.elapsed() >= TRIM_EVERY {
                        release_free_memory();
                        self.last_trim = std::time::Instant::now();
                    } else {
                        self.trim_pending = true;
                    }
                }
            }
            for done in barriers {
                let _ = done.send(());
            }
            if shutdown {
                self.sync();
                return;
            }
        }
    }

    /// How soon after the last durable commit the ones since, and one about to be made
    /// (`live`: it holds a batch other than a scan's with more to send), must be made durable.
    /// A scan's commit that follows unsynced live ones is made durable on their schedule: a
    /// busy writer is never idle long enough to sync them otherwise.
    fn durable_every(&self, live: bool) -> Duration {
        if live || self.unsynced_live {
            DURABLE_EVERY
        } else {
            DURABLE_WHILE_SCANNING
        }
    }

    /// Makes every commit so far durable (an empty commit with fsync persists the ones before).
    fn sync(&mut self) {
        if !self.unsynced {
            return;
        }
        let attempt = || -> Result<(), StoreError> {
            let mut tx = self.store.db()?.begin_write()?;
            tx.set_quick_repair(true);
            tx.commit()?;
            Ok(())
        };
        match attempt() {
            Ok(()) => {
                self.unsynced = false;
                self.unsynced_live = false;
                self.last_durable = std::time::Instant::now();
            }
            Err(e) => tracing::warn!("syncing the database failed, will retry: {e}"),
        }
    }

    /// Gives the file's free space back after a burst (see [`COMPACT_AFTER`]) when at least a
    /// quarter of the file is free (see [`COMPACT_FREE_FRACTION`]).
    fn compact(&mut self) {
        self.sync();
        let size = || std::fs::metadata(self.store.path()).map_or(0, |m| m.len());
        let before = size();
        let free = match self.store.free_bytes_in_file() {
            _ if before < COMPACT_ABOVE_BYTES => 0,
            Ok(free) => free,
            Err(e) => {
                tracing::warn!("measuring the free space in the database failed: {e}");
                0
            }
        };
        if free < before / COMPACT_FREE_FRACTION {
            tracing::debug!(
                "not compacting the database: {} of {} MB free",
                free >> 20,
                before >> 20
            );
            self.written_since_compaction = 0;
            return;
        }
        let started = std::time::Instant::now();
        match self.store.compact() {
            Ok(true) => {
                release_free_memory();
                self.written_since_compaction = 0;
                self.compaction_attempts = 0;
                tracing::info!(
                    "compacted the database: {} MB -> {} MB in {:?}",
                    before >> 20,
                    size() >> 20,
                    started.elapsed()
                );
            }
            Ok(false) => {
                // A reader held on: again at the next idle moment, a few times at most.
                self.compaction_attempts += 1;
                if self.compaction_attempts >= 5 {
                    self.compaction_attempts = 0;
                    self.written_since_compaction = 0;
                }
            }
            Err(e) => {
                self.written_since_compaction = 0;
                self.lost_handle("compacting the database", e);
            }
        }
    }

    /// After compacting or settling failed. Both close the database and open it again; if the
    /// opening is what failed, the store has no handle left, and nothing would open it again
    /// until a write failed: the writer reports the error and is degraded, and its probe
    /// reopens the file (every [`RECOVERY_PROBE`]) and has the sources rescan.
    fn lost_handle(&mut self, what: &str, e: StoreError) {
        if self.store.db().is_ok() {
            tracing::warn!("{what} failed: {e}");
        } else {
            self.fail(format!(
                "{what} failed and the database could not be opened again ({e}); retrying every {RECOVERY_PROBE:?}"
            ));
        }
    }

    fn publish_summary(&self) {
        match self.store.summaries(Millis::now(), &self.waits) {
            Ok(next) => {
                self.summary.send_if_modified(|cur| {
                    let moved = *cur != next;
                    *cur = next;
                    moved
                });
            }
            Err(e) => tracing::error!("reading the summary counts failed: {e}"),
        }
    }

    /// Refuses to write while the disk is nearly full, so that redb never meets `ENOSPC`
    /// mid-commit; says why.
    fn disk_too_full(&self) -> Option<String> {
        let dir = self.store.path().parent()?;
        let free = free_bytes(dir)?;
        (free < self.min_free_bytes).then(|| {
            format!(
                "the disk holding {} is nearly full ({} MiB free, agentd keeps {} MiB): ingestion is paused and resumes by itself when space is freed",
                self.store.path().display(),
                free >> 20,
                self.min_free_bytes >> 20
            )
        })
    }

    /// Records a dropped write: the error is shown in `/v1/health` and logged once. When the
    /// disk is (nearly) out of space the message says so, whatever error redb reported (after a
    /// first `ENOSPC` it only says "Previous I/O error").
    fn fail(&mut self, mut msg: String) {
        if let Some(free) = self
            .store
            .path()
            .parent()
            .and_then(free_bytes)
            .filter(|f| *f < FULL_BELOW)
            && !msg.contains("nearly full")
        {
            msg = format!(
                "{msg}; the disk holding {} is full ({} KiB free): free some space, ingestion resumes by itself",
                self.store.path().display(),
                free >> 10
            );
        }
        let mut slot = self
            .published
            .store_error
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if slot.as_deref() != Some(msg.as_str()) {
            tracing::error!("{msg}");
        }
        *slot = Some(msg);
        self.degraded = true;
    }

    /// The store takes writes again: clear the error and have ingestors rescan what was dropped.
    fn recovered(&mut self) {
        *self
            .published
            .store_error
            .write()
            .unwrap_or_else(|p| p.into_inner()) = None;
        if self.degraded {
            self.degraded = false;
            tracing::info!(
                "the database takes writes again; rescanning sources for what was missed"
            );
            self.published.resync.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// While degraded: is there room again, and does the database take a (empty) commit?
    fn probe(&mut self) {
        if let Some(msg) = self.disk_too_full() {
            self.fail(msg);
            return;
        }
        let attempt = |store: &Store| -> Result<(), StoreError> {
            let tx = store.db()?.begin_write()?;
            tx.commit()?;
            Ok(())
        };
        let result = match attempt(&self.store) {
            Err(e) if is_io_failure(&e) || matches!(e, StoreError::Reopening) => {
                self.store.reopen().and_then(|()| attempt(&self.store))
            }
            other => other,
        };
        match result {
            Ok(()) => self.recovered(),
            Err(e) => self.fail(format!(
                "the database cannot be written: {e}; retrying every {RECOVERY_PROBE:?}"
            )),
        }
    }

    fn commit(&mut self, batches: Vec<IngestBatch>) {
        if let Some(msg) = self.disk_too_full() {
            self.fail(msg);
            return;
        }
        let mut health_delta: HashMap<&'static str, SourceErrors> = HashMap::new();
        let started = std::time::Instant::now();
        match self.apply(&batches, &mut health_delta) {
            Ok(changed) => {
                self.metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                let now = std::time::SystemTime::now();
                for b in &batches {
                    if let Some(t) = b.appended_at
                        && let Ok(d) = now.duration_since(t)
                    {
                        self.metrics.visible_seconds.observe(d.as_secs_f64());
                    }
                }
                self.recovered();
                self.published_committed(changed, health_delta);
            }
            Err(e) if !is_io_failure(&e) && !matches!(e, StoreError::Reopening) => {
                // Not the disk: something in the data (a record that cannot be decoded, say).
                // Commit the batches one by one so that one bad update cannot hold back the
                // others, and set aside the ones that still fail.
                tracing::warn!("a write transaction failed ({e}); retrying its batches one by one");
                for batch in batches {
                    self.commit_alone(batch);
                }
            }
            Err(e) => {
                self.fail(format!(
                    "a database write failed ({e}); retrying every {RECOVERY_PROBE:?}, nothing is lost"
                ));
                if is_io_failure(&e) {
                    // redb refuses everything after an I/O error until it is reopened.
                    if let Err(e) = self.store.reopen() {
                        tracing::warn!("reopening the database failed, will retry: {e}");
                    }
                }
            }
        }
    }

    /// Commits one batch; if its data cannot be stored, records that as the source's error and
    /// commits its cursors without it, so the ingestor moves on instead of retrying forever.
    fn commit_alone(&mut self, batch: IngestBatch) {
        let mut health_delta = HashMap::new();
        match self.apply(std::slice::from_ref(&batch), &mut health_delta) {
            Ok(changed) => self.published_committed(changed, health_delta),
            Err(e) if is_io_failure(&e) => {
                self.fail(format!("a database write failed ({e}); retrying every {RECOVERY_PROBE:?}, nothing is lost"));
                if let Err(e) = self.store.reopen() {
                    tracing::warn!("reopening the database failed, will retry: {e}");
                }
            }
            Err(e) => {
                let skipped = IngestBatch {
                    source: batch.source,
                    updates: Vec::new(),
                    cursors: batch.cursors,
                    errors: batch.errors + batch.updates.len() as u64,
                    last_error: Some(format!(
                        "{} item(s) could not be stored and were skipped: {e}",
                        batch.updates.len()
                    )),
                    appended_at: None,
                    scan_continues: batch.scan_continues,
                    scanned: batch.scanned,
                };
                tracing::error!("{}", skipped.last_error.as_deref().unwrap_or_default());
                let mut health_delta = HashMap::new();
                match self.apply(std::slice::from_ref(&skipped), &mut health_delta) {
                    Ok(changed) => self.published_committed(changed, health_delta),
                    Err(e) => self.fail(format!(
                        "a database write failed ({e}); retrying every {RECOVERY_PROBE:?}"
                    )),
                }
            }
        }
    }

    /// After a successful commit: publish error counters, changed items and the summary.
    fn published_committed(
        &mut self,
        changed: Vec<Arc<Item>>,
        health_delta: HashMap<&'static str, SourceErrors>,
    ) {
        if !health_delta.is_empty() {
            let mut errs = self
                .published
                .errors
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for (source, delta) in health_delta {
                errs.insert(source.to_owned(), delta);
            }
        }
        if !changed.is_empty() {
            self.publish_summary();
        }
        for item in changed {
            let _ = self.published.changes.send(item);
        }
    }

    fn apply(
        &mut self,
        batches: &[IngestBatch],
        health: &mut HashMap<&'static str, SourceErrors>,
    ) -> Result<Vec<Arc<Item>>, StoreError> {
        let ctx = self.store.ctx.clone();
        let mut changed = Vec::new();
        // How the items' waits move, applied once the transaction is committed.
        let mut wait_moves = Vec::new();
        let mut tx = self.store.db()?.begin_write()?;
        tx.set_quick_repair(true);
        let scan_only = batches.iter().all(|b| b.scanned);
        let durable = self.last_durable.elapsed() >= self.durable_every(!scan_only);
        if !durable {
            tx.set_durability(redb::Durability::None)?;
        }
        {
            let mut items = tx.open_table(ITEMS)?;
            let mut index = tx.open_table(INDEX)?;
            let mut counts = tx.open_table(COUNTS)?;
            let mut totals = tx.open_table(TOTALS)?;
            let mut cursors = tx.open_table(CURSORS)?;
            let mut deltas = Deltas::default();
            let mut origins = tx.open_table(ORIGINS)?;
            let mut meta = tx.open_table(META)?;
            // Writes are gathered and made in key order per table at the end (the last write
            // of a key wins, as if made in turn); an item updated twice in this transaction
            // finds its first update as the old state.
            let mut new_items: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
            let mut new_origins: BTreeMap<&str, &str> = BTreeMap::new();
            let mut new_cursors: BTreeMap<&str, &[u8]> = BTreeMap::new();
            for batch in batches {
                for update in &batch.updates {
                    let mut item = update.item.clone();
                    derive_on_write(&mut item, &ctx.me, update.mine);
                    if let Some(origin) = &update.origin {
                        new_origins.insert(update.item.id.as_str(), origin.as_str());
                    }
                    let old = match new_items.get(update.item.id.as_str()) {
                        Some(pending) => Some(pending.clone()),
                        None => items.get(item.id.as_str())?.map(|v| v.value().to_vec()),
                    };
                    let old_item = old.as_deref().map(decode_item).transpose()?;
                    crate::model::carry_blocked(old_item.as_ref(), &mut item, Millis::now());
                    let bytes = super::encode_item(&item);
                    if old.as_deref() == Some(bytes.as_slice()) {
                        continue;
                    }
                    if let Some(old) = &old_item {
                        deltas.index(old, &ctx.tz, -1);
                    }
                    if !item.status.is_active()
                        && old_item.as_ref().is_none_or(|o| o.status.is_active())
                    {
                        deltas.finished(&item);
                    }
                    deltas.index(&item, &ctx.tz, 1);
                    let (was, now) = (
                        old_item.as_ref().and_then(crate::summary::Waits::of),
                        crate::summary::Waits::of(&item),
                    );
                    if was != now {
                        wait_moves.push((was, now));
                    }
                    new_items.insert(update.item.id.as_str(), bytes);
                    changed.push(Arc::new(item));
                }
                for (key, value) in &batch.cursors {
                    new_cursors.insert(key.as_str(), value.as_slice());
                }
                if batch.errors > 0 || batch.last_error.is_some() {
                    let entry = match health.get(batch.source) {
                        Some(e) => e.clone(),
                        None => self
                            .published
                            .errors
                            .read()
                            .unwrap_or_else(|p| p.into_inner())
                            .get(batch.source)
                            .cloned()
                            .unwrap_or_default(),
                    };
                    let next = SourceErrors {
                        errors: entry.errors + batch.errors,
                        last_error: batch.last_error.clone().or(entry.last_error),
                    };
                    let key = format!("health:{}", batch.source);
                    let bytes = serde_json::to_vec(&next).unwrap_or_default();
                    meta.insert(key.as_str(), bytes.as_slice())?;
                    health.insert(batch.source, next);
                }
            }
            for (id, bytes) in new_items {
                items.insert(id, bytes.as_slice())?;
            }
            for (id, origin) in new_origins {
                origins.insert(id, origin)?;
            }
            for (key, value) in new_cursors {
                cursors.insert(key, value)?;
            }
            deltas.flush(&mut index, &mut counts, &mut totals)?;
        }
        tx.commit()?;
        for (was, now) in wait_moves {
            self.waits.moved(was, now);
        }
        if durable {
            self.last_durable = std::time::Instant::now();
            self.unsynced = false;
            self.unsynced_live = false;
        } else {
            self.unsynced = true;
            self.unsynced_live |= !scan_only;
        }
        Ok(changed)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ingest::runlog;

    /// A store of user `me` in UTC, in a fresh scratch dir named after `name`, and its writer.
    pub(crate) struct Scratch {
        pub dir: std::path::PathBuf,
        pub store: Store,
        pub writer: WriterHandle,
        pub published: Published,
        pub thread: std::thread::JoinHandle<()>,
    }

    pub(crate) fn scratch_store(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("agentd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("agentd.redb"), scratch_context()).unwrap();
        let (writer, published, thread) = spawn(
            store.clone(),
            0,
            crate::metrics::Metrics::new("test".into()),
        )
        .unwrap();
        Scratch {
            dir,
            store,
            writer,
            published,
            thread,
        }
    }

    fn scratch_context() -> super::super::IndexContext {
        super::super::IndexContext {
            me: "me".into(),
            tz: jiff::tz::TimeZone::UTC,
        }
    }

    /// Sends `items` to the writer as the runs source does (`mine` by creator) and waits for
    /// the commit.
    pub(crate) fn ingest(writer: &WriterHandle, items: impl IntoIterator<Item = Item>) {
        let updates = items
            .into_iter()
            .map(|item| ItemUpdate {
                item,
                mine: MineRule::Creator,
                origin: None,
            })
            .collect();
        writer
            .send(WriteOp::Ingest(IngestBatch {
                source: "runs",
                updates,
                ..Default::default()
            }))
            .unwrap();
        writer.barrier().unwrap();
    }

    /// A started run, `r<i>`, created and updated `i` seconds into a minute of 2026-11-30.
    pub(crate) fn run_item(i: usize) -> Item {
        let mut fold = runlog::RunFold::default();
        let start = format!(
            r#"{{"v":1,"type":"start","ts":"2026-11-30T10:{:02}:{:02}.000Z","title":"run {i}","cwd":"/src/p{}"}}"#,
            i / 60 % 60,
            i % 60,
            i % 7
        );
        fold.apply(runlog::parse_line(start.as_bytes()).unwrap());
        fold.item(&format!("r{i:05}"), Millis(0), false)
    }

    /// What each transaction takes from a queue, as `b` (a batch of one update) and `|` (a
    /// barrier), one string per transaction.
    fn groups(queue: &str) -> Vec<String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.len());
        let mut answers = Vec::new();
        for op in queue.chars() {
            tx.send(match op {
                'b' => WriteOp::Ingest(IngestBatch {
                    updates: vec![ItemUpdate {
                        item: run_item(1),
                        mine: MineRule::Creator,
                        origin: None,
                    }],
                    ..Default::default()
                }),
                '|' => {
                    let (done, answer) = std::sync::mpsc::sync_channel(1);
                    answers.push(answer);
                    WriteOp::Barrier(done)
                }
                other => panic!("unknown op {other}"),
            })
            .unwrap();
        }
        let mut out = Vec::new();
        while let Ok(first) = rx.try_recv() {
            let group = take_group(first, &rx);
            out.push(
                group
                    .ops
                    .iter()
                    .map(|op| match op {
                        WriteOp::Ingest(_) => 'b',
                        WriteOp::Barrier(_) => '|',
                        WriteOp::Shutdown => 's',
                    })
                    .collect(),
            );
        }
        out
    }

    #[test]
    fn a_barrier_ends_its_transaction_so_batches_after_it_do_not_delay_its_answer() {
        // The run-log scan's pattern: a batch, the barrier it waits on before sending the
        // batch after next, and the next batch, already queued.
        assert_eq!(groups("b|b"), ["b|", "b"]);
        // The barrier sent after a batch the writer had already taken comes first: it is
        // answered without waiting for the batch behind it.
        assert_eq!(groups("|b"), ["|", "b"]);
        assert_eq!(groups("bbb|bb||b"), ["bbb|", "bb|", "|", "b"]);
        assert_eq!(groups("bbb"), ["bbb"]);
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("agentd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const HOLEY_ITEMS: usize = COMPACT_AFTER + 500;

    /// A running writer over a database of [`HOLEY_ITEMS`] run items (sent in batches marked
    /// `scan_continues` as given) with a 40 MB hole in the middle of its file.
    struct Holey {
        dir: std::path::PathBuf,
        path: std::path::PathBuf,
        store: Store,
        writer: WriterHandle,
        thread: std::thread::JoinHandle<()>,
        /// The file's size with the hole.
        size: u64,
    }

    fn holey_store(name: &str, scan_continues: bool) -> Holey {
        let dir = scratch(name);
        let path = dir.join("agentd.redb");
        let ctx = super::super::IndexContext {
            me: "me".into(),
            tz: jiff::tz::TimeZone::UTC,
        };
        let store = Store::open(&path, ctx).unwrap();
        // 40 MB in a table of its own, then the items after it, then the table dropped: the
        // file keeps a 40 MB hole in its middle.
        const FILLER: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("filler");
        {
            let tx = store.db().unwrap().begin_write().unwrap();
            {
                let mut t = tx.open_table(FILLER).unwrap();
                for k in 0..10_000u64 {
                    t.insert(k, vec![7u8; 4000].as_slice()).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let (writer, _published, thread) = spawn(
            store.clone(),
            0,
            crate::metrics::Metrics::new("test".into()),
        )
        .unwrap();
        for chunk in (0..HOLEY_ITEMS).collect::<Vec<_>>().chunks(500) {
            let batch = IngestBatch {
                source: "runs",
                updates: chunk
                    .iter()
                    .map(|&i| ItemUpdate {
                        item: run_item(i),
                        mine: MineRule::Creator,
                        origin: Some(format!("/runs/r{i:05}.jsonl")),
                    })
                    .collect(),
                scan_continues,
                scanned: true,
                ..Default::default()
            };
            writer.send(WriteOp::Ingest(batch)).unwrap();
        }
        writer.barrier().unwrap();
        {
            let tx = store.db().unwrap().begin_write().unwrap();
            tx.delete_table(FILLER).unwrap();
            tx.commit().unwrap();
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size > 40 << 20, "{size}");
        Holey {
            dir,
            path,
            store,
            writer,
            thread,
            size,
        }
    }

    /// A regression test for a database that stayed at its backfill's size (2–3× its content)
    /// forever: free pages in the middle of the file are given back once the writer is idle,
    /// readers meanwhile are told `Compacting`, and every item reads the same afterwards.
    #[test]
    fn free_pages_are_given_back_when_the_writer_is_idle() {
        const ITEMS: usize = HOLEY_ITEMS;
        let Holey {
            dir,
            path,
            store,
            writer,
            thread,
            size: holey,
        } = holey_store("compact", false);
        let before: Vec<Item> = (0..ITEMS)
            .map(|i| store.get(&format!("cli:r{i:05}")).unwrap().unwrap())
            .collect();
        let size = || std::fs::metadata(&path).unwrap().len();

        // An ingestor reading cursors meanwhile waits instead of failing (a cursor that could
        // not be read would leave its file unread).
        let ingestor = {
            let store = store.clone();
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let until = done.clone();
            let thread = std::thread::spawn(move || {
                let mut reads = 0u64;
                while !until.load(Ordering::Relaxed) {
                    store
                        .cursor("runs:/runs/r00042.jsonl")
                        .expect("a cursor read failed");
                    reads += 1;
                }
                reads
            });
            (done, thread)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut told_compacting = 0;
        while size() > holey / 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "not compacted: {}",
                size()
            );
            match store.get("cli:r00042") {
                Ok(Some(item)) => assert_eq!(item, before[42]),
                Err(StoreError::Compacting) => told_compacting += 1,
                other => panic!("a read during compaction gave {other:?}"),
            }
        }
        // The file shrinks as compaction goes; it is over when readers are let in again.
        while let Err(StoreError::Compacting) = store.get("cli:r00042") {
            assert!(std::time::Instant::now() < deadline, "still compacting");
            std::thread::sleep(Duration::from_millis(5));
        }
        ingestor.0.store(true, Ordering::Relaxed);
        assert!(ingestor.1.join().expect("the ingestor's reads never fail") > 0);
        let after: Vec<Item> = (0..ITEMS)
            .map(|i| store.get(&format!("cli:r{i:05}")).unwrap().unwrap())
            .collect();
        assert_eq!(after, before);
        assert!(size() < 16 << 20, "{} bytes left", size());
        eprintln!(
            "{holey} -> {} bytes; {told_compacting} reads told to wait",
            size()
        );
        // It takes writes afterwards.
        let mut changed = run_item(1);
        changed.title = Some("renamed".into());
        writer
            .send(WriteOp::Ingest(IngestBatch {
                source: "runs",
                updates: vec![ItemUpdate {
                    item: changed,
                    mine: MineRule::Creator,
                    origin: None,
                }],
                ..Default::default()
            }))
            .unwrap();
        writer.barrier().unwrap();
        assert_eq!(
            store.get("cli:r00001").unwrap().unwrap().title.as_deref(),
            Some("renamed")
        );
        writer.send(WriteOp::Shutdown).unwrap();
        thread.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The catch-up cache is given back once the writer is idle after the start's scans, also
    /// when the file is too small to be worth compacting: the database is opened again with the
    /// steady cache, and reads and writes go on.
    #[test]
    fn the_catch_up_cache_is_given_back_once_the_writer_is_idle() {
        let dir = scratch("settle");
        let ctx = super::super::IndexContext {
            me: "me".into(),
            tz: jiff::tz::TimeZone::UTC,
        };
        let store = Store::open(&dir.join("agentd.redb"), ctx).unwrap();
        assert!(!store.settled());
        let (writer, _published, thread) = spawn(
            store.clone(),
            0,
            crate::metrics::Metrics::new("test".into()),
        )
        .unwrap();
        let update = |i: usize, title: &str| {
            let mut item = run_item(i);
            item.title = Some(title.into());
            ItemUpdate {
                item,
                mine: MineRule::Creator,
                origin: None,
            }
        };
        writer
            .send(WriteOp::Ingest(IngestBatch {
                source: "runs",
                updates: (0..300).map(|i| update(i, "first")).collect(),
                scanned: true,
                ..Default::default()
            }))
            .unwrap();
        writer.barrier().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !store.settled() {
            assert!(std::time::Instant::now() < deadline, "never settled");
            std::thread::sleep(Duration::from_millis(10));
        }
        let title = |id: &str| loop {
            match store.get(id) {
                Err(StoreError::Compacting) => std::thread::sleep(Duration::from_millis(5)),
                other => break other.unwrap().unwrap().title,
            }
        };
        assert_eq!(title("cli:r00299").as_deref(), Some("first"));
        writer
            .send(WriteOp::Ingest(IngestBatch {
                source: "runs",
                updates: vec![update(7, "second")],
                ..Default::default()
            }))
            .unwrap();
        writer.barrier().unwrap();
        assert_eq!(title("cli:r00007").as_deref(), Some("second"));
        writer.send(WriteOp::Shutdown).unwrap();
        thread.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// If the database cannot be opened again when the catch-up cache is given back, the
    /// error is reported and the writer probes until it can: it does not go on without a
    /// handle, every read failing, until some write happens to fail.
    #[test]
    fn a_failed_reopening_when_settling_is_reported_and_retried() {
        let dir = scratch("settle-fails");
        let path = dir.join("agentd.redb");
        let ctx = super::super::IndexContext {
            me: "me".into(),
            tz: jiff::tz::TimeZone::UTC,
        };
        let store = Store::open(&path, ctx).unwrap();
        let (writer, published, thread) = spawn(
            store.clone(),
            0,
            crate::metrics::Metrics::new("test".into()),
        )
        .unwrap();
        // The open handle keeps writing to the file moved away; a dir takes its name.
        let moved = dir.join("moved.redb");
        std::fs::rename(&path, &moved).unwrap();
        std::fs::create_dir(&path).unwrap();
        writer
            .send(WriteOp::Ingest(IngestBatch {
                source: "runs",
                updates: vec![ItemUpdate {
                    item: run_item(1),
                    mine: MineRule::Creator,
                    origin: None,
                }],
                scanned: true,
                ..Default::default()
            }))
            .unwrap();
        writer.barrier().unwrap();
        let error = || published.store_error.read().unwrap().clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while error().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the failure was not reported"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            error().unwrap().contains("could not be opened again"),
            "{:?}",
            error()
        );
        std::fs::remove_dir(&path).unwrap();
        std::fs::rename(&moved, &path).unwrap();
        while error().is_some() || store.get("cli:r00001").is_err() {
            assert!(std::time::Instant::now() < deadline, "never recovered");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(store.get("cli:r00001").unwrap().is_some());
        writer.send(WriteOp::Shutdown).unwrap();
        thread.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A regression test for a million-log backfill that never finished: reading a scan's next
    /// batch took longer than the writer's idle wait, so it compacted the growing database
    /// before every batch and the scan waited for each compaction. A pause in a scan that said
    /// it continues is not idleness; its last batch (or a long silence) lets compaction go.
    #[test]
    fn a_scan_under_way_holds_compaction_back_until_its_last_batch() {
        let h = holey_store("scan-pause", true);
        let holey = h.size;
        let size = || std::fs::metadata(&h.path).unwrap().len();
        std::thread::sleep(COMPACT_WHEN_IDLE * 3);
        assert_eq!(size(), holey, "compacted while the scan was under way");
        assert!(h.store.get("cli:r00042").unwrap().is_some());
        // Another source's batch does not end the runs scan.
        h.writer
            .send(WriteOp::Ingest(IngestBatch {
                source: "claude",
                ..Default::default()
            }))
            .unwrap();
        h.writer.barrier().unwrap();
        std::thread::sleep(COMPACT_WHEN_IDLE * 2);
        assert_eq!(size(), holey, "compacted while the scan was under way");
        // Its last batch, unmarked.
        h.writer
            .send(WriteOp::Ingest(IngestBatch {
                source: "runs",
                ..Default::default()
            }))
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while size() > holey / 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "not compacted after the scan's last batch: {}",
                size()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        h.writer.send(WriteOp::Shutdown).unwrap();
        h.thread.join().unwrap();
        let _ = std::fs::remove_dir_all(&h.dir);
    }

    /// The tallies of the user's own items by status, source and harness.
    fn mine_tallies(store: &Store) -> Vec<(String, u64)> {
        let rx = store.db().unwrap().begin_read().unwrap();
        let counts = rx.open_table(COUNTS).unwrap();
        counts
            .range::<&str>("y:".."y;")
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value().to_owned(), v.value())
            })
            .collect()
    }

    #[test]
    fn a_version_3_file_gains_the_tallies_of_the_users_own_items_and_drops_the_id_schemes_entries()
    {
        let Scratch {
            dir,
            store,
            writer,
            thread,
            ..
        } = scratch_store("v3");
        let path = dir.join("agentd.redb");
        ingest(
            &writer,
            (0..300).map(|i| {
                let mut item = run_item(i);
                item.creator = Some(if i % 4 == 0 { "bob" } else { "me" }.into());
                item.status = crate::model::Status::ALL[i % 5];
                item
            }),
        );
        writer.send(WriteOp::Shutdown).unwrap();
        thread.join().unwrap();
        let tallied = mine_tallies(&store);
        assert_eq!(
            tallied.iter().map(|(_, n)| n).sum::<u64>(),
            225,
            "{tallied:?}"
        );
        // As a version-3 file was: without them.
        {
            let tx = store.db().unwrap().begin_write().unwrap();
            {
                let mut counts = tx.open_table(COUNTS).unwrap();
                counts.retain(|k, _| !k.starts_with("y:")).unwrap();
                let mut index = tx.open_table(INDEX).unwrap();
                for i in 0..300 {
                    let key = index_key("i:cli", 1_000 + i, &format!("cli:r{i:05}"));
                    index.insert(key.as_slice(), ()).unwrap();
                }
                let mut meta = tx.open_table(META).unwrap();
                meta.insert("schema_version", b"3".as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        assert!(mine_tallies(&store).is_empty());
        drop(store);
        let store = Store::open(&path, scratch_context()).unwrap();
        assert_eq!(mine_tallies(&store), tallied);
        let rx = store.db().unwrap().begin_read().unwrap();
        let index = rx.open_table(INDEX).unwrap();
        assert_eq!(
            index
                .range::<&[u8]>(b"i:".as_slice()..b"i;".as_slice())
                .unwrap()
                .count(),
            0,
            "the id schemes' entries are dropped"
        );
        drop((index, rx));
        assert_eq!(
            store
                .count(&super::super::Partition::Scheme("cli"))
                .unwrap(),
            300,
            "and their counts kept"
        );
        assert_eq!(
            store.meta_u32("schema_version").unwrap(),
            Some(SCHEMA_VERSION)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A regression test for a summary that read every blocked item after each commit: the
    /// waits the writer keeps as it commits give the same summary as reading them all.
    #[test]
    fn the_waits_kept_while_committing_equal_the_blocked_items_read_whole() {
        let Scratch {
            dir,
            store,
            writer,
            published,
            thread,
        } = scratch_store("waits");
        let item = |i: usize, status: crate::model::Status| {
            let mut item = run_item(i);
            item.creator = Some(if i.is_multiple_of(3) { "bob" } else { "me" }.into());
            item.status = status;
            item
        };
        use crate::model::Status::{Blocked, Success, Working};
        let rounds: [&[(usize, crate::model::Status)]; 4] = [
            &[(0, Blocked), (1, Blocked), (2, Working), (3, Blocked)],
            &[(4, Blocked), (5, Blocked), (1, Working)],
            // Blocked again: a new wait, not the old one.
            &[(1, Blocked), (0, Success), (3, Blocked)],
            &[(4, Success), (5, Success), (1, Success), (3, Success)],
        ];
        for round in rounds {
            std::thread::sleep(std::time::Duration::from_millis(5));
            ingest(&writer, round.iter().map(|&(i, s)| item(i, s)));
            let read_whole = store
                .summaries(Millis::now(), &store.waits().unwrap())
                .unwrap();
            let kept = *published.summary.borrow();
            assert_eq!(kept, read_whole, "{round:?}");
        }
        assert_eq!(published.summary.borrow().all.waiting_since, None);
        writer.send(WriteOp::Shutdown).unwrap();
        thread.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
