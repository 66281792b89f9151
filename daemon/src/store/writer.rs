//! The one task that writes the database.
//!
//! Every ingestor (run logs now; conversation stores, cloud sync and hooks later) sends
//! [`WriteOp`]s down one bounded channel. A dedicated thread takes the first op, drains whatever
//! else is already queued, applies it all in one write transaction (items, indexes, counts,
//! cursors and error counters together) and commits once: under load many lines share one
//! fsync, and a crash at any point leaves each file's cursor consistent with its items.
//!
//! After each commit it publishes what changed: every changed item on the change bus (a
//! `broadcast` that `/v1/events` subscribes to) and, when they moved, the summary counts.
//! The bounded channel is the back-pressure: a backfill cannot run ahead of the disk.

use super::{
    COUNTS, CURSORS, INDEX, ITEMS, META, ORIGINS, SCHEMA_VERSION, Store, StoreError, decode_item,
    index_key, partitions, recency_ms,
};
use crate::model::{Item, MineRule, derive_on_write, tz_fingerprint};
use crate::summary::{Summaries, Tallies};
use redb::{ReadableDatabase, ReadableTable, Table};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use tokio::sync::{broadcast, watch};

/// How many queued ops one transaction may absorb. Bounds the size of a transaction (and the
/// latency of the changes that wait for it) while still amortising the fsync.
const MAX_OPS_PER_TXN: usize = 512;

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
}

/// The sending side, held by every ingestor.
#[derive(Clone)]
pub struct WriterHandle {
    tx: SyncSender<WriteOp>,
}

/// The writer has stopped; the daemon is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the database writer has stopped")]
pub struct WriterClosed;

impl WriterHandle {
    /// Sends an op, waiting while the channel is full.
    pub fn send(&self, op: WriteOp) -> Result<(), WriterClosed> {
        self.tx.send(op).map_err(|_| WriterClosed)
    }

    /// Sends an op without waiting; gives it back when the channel is full.
    pub fn try_send(&self, op: WriteOp) -> Result<(), Option<WriteOp>> {
        match self.tx.try_send(op) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(op)) => Err(Some(op)),
            Err(TrySendError::Disconnected(_)) => Err(None),
        }
    }

    /// Blocks until everything sent before this call is committed.
    pub fn barrier(&self) -> Result<(), WriterClosed> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(WriteOp::Barrier(tx))?;
        rx.recv().map_err(|_| WriterClosed)
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
    let rebuild = found_version.is_some_and(|v| v < SCHEMA_VERSION)
        || me.as_deref().is_some_and(|m| m != store.ctx.me)
        || tz.as_deref().is_some_and(|t| t != tz_now);

    let mut tx = store.db.begin_write()?;
    tx.set_quick_repair(true);
    if rebuild {
        tracing::info!(
            from_version = ?found_version, old_user = ?me, old_tz = ?tz,
            "schema, user or time zone changed: rebuilding indexes"
        );
        tx.delete_table(INDEX)?;
        tx.delete_table(COUNTS)?;
    }
    {
        let mut items = tx.open_table(ITEMS)?;
        let mut index = tx.open_table(INDEX)?;
        let mut counts = tx.open_table(COUNTS)?;
        tx.open_table(CURSORS)?;
        tx.open_table(ORIGINS)?;
        let mut meta = tx.open_table(META)?;
        if rebuild {
            let mut all = Vec::new();
            for entry in items.iter()? {
                let (k, v) = entry?;
                all.push((k.value().to_owned(), decode_item(v.value())?));
            }
            for (id, mut item) in all {
                if super::id_scheme(&id) != "cloud" {
                    derive_on_write(&mut item, &store.ctx.me, MineRule::Creator);
                }
                let bytes =
                    serde_json::to_vec(&item).map_err(|e| StoreError::Decode(e.to_string()))?;
                items.insert(id.as_str(), bytes.as_slice())?;
                add_to_indexes(&item, &store.ctx.tz, &mut index, &mut counts)?;
            }
        }
        meta.insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())?;
        meta.insert("me", store.ctx.me.as_bytes())?;
        meta.insert("tz", tz_now.as_bytes())?;
    }
    tx.commit()?;
    Ok(())
}

fn bump(counts: &mut Table<&str, u64>, partition: &str, delta: i64) -> Result<(), StoreError> {
    let current = counts.get(partition)?.map(|v| v.value()).unwrap_or(0);
    let next = (current as i64 + delta).max(0) as u64;
    if next == 0 {
        counts.remove(partition)?;
    } else {
        counts.insert(partition, next)?;
    }
    Ok(())
}

fn add_to_indexes(
    item: &Item,
    tz: &jiff::tz::TimeZone,
    index: &mut Table<&[u8], ()>,
    counts: &mut Table<&str, u64>,
) -> Result<(), StoreError> {
    for p in partitions(item, tz) {
        index.insert(index_key(&p, item.updated_at.0, &item.id).as_slice(), ())?;
        bump(counts, &p, 1)?;
    }
    Ok(())
}

fn remove_from_indexes(
    item: &Item,
    tz: &jiff::tz::TimeZone,
    index: &mut Table<&[u8], ()>,
    counts: &mut Table<&str, u64>,
) -> Result<(), StoreError> {
    for p in partitions(item, tz) {
        index.remove(index_key(&p, item.updated_at.0, &item.id).as_slice())?;
        bump(counts, &p, -1)?;
    }
    Ok(())
}

/// Recomputes the tallies from the store: active counts from partition counts, today's totals
/// from the head of the recency index (items updated since local midnight).
fn recount(store: &Store) -> Result<Tallies, StoreError> {
    let (today, tomorrow) = crate::model::day_bounds(crate::model::Millis::now(), &store.ctx.tz);
    let mut t = Tallies::new(today, tomorrow);
    t.set_active(
        (store.count("ms:working")?, store.count("ms:blocked")?),
        (store.count("s:working")?, store.count("s:blocked")?),
    );
    let rx = store.db.begin_read()?;
    let index = rx.open_table(INDEX)?;
    let items = rx.open_table(ITEMS)?;
    let start = index_key("a", i64::MAX, "");
    let end = b"a\x01".as_slice();
    for entry in index.range(start.as_slice()..end)? {
        let (k, _) = entry?;
        let key = k.value();
        let mut rec = [0u8; 8];
        rec.copy_from_slice(&key[2..10]);
        if !t.is_today(recency_ms(rec)) {
            break;
        }
        let id = std::str::from_utf8(&key[10..]).unwrap_or_default();
        if let Some(v) = items.get(id)? {
            t.apply_today(&decode_item(v.value())?, 1);
        }
    }
    Ok(t)
}

/// Starts the writer thread. Returns the handle for ingestors, what it publishes for readers,
/// and the thread to join on shutdown.
pub fn spawn(
    store: Store,
) -> Result<(WriterHandle, Published, std::thread::JoinHandle<()>), StoreError> {
    let tallies = recount(&store)?;
    let (summary_tx, summary_rx) = watch::channel(tallies.summaries());
    let (changes, _) = broadcast::channel(CHANGE_BUS_CAPACITY);
    let mut errors = HashMap::new();
    {
        let rx = store.db.begin_read()?;
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
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_CAPACITY);
    let state = WriterState {
        store,
        tallies,
        summary: summary_tx,
        published: published.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("agentd-writer".into())
        .spawn(move || state.run(rx))
        .map_err(|e| StoreError::Decode(format!("cannot start the writer thread: {e}")))?;
    Ok((WriterHandle { tx }, published, thread))
}

struct WriterState {
    store: Store,
    tallies: Tallies,
    summary: watch::Sender<Summaries>,
    published: Published,
}

impl WriterState {
    fn run(mut self, rx: Receiver<WriteOp>) {
        loop {
            let Ok(first) = rx.recv() else { return };
            let mut ops = vec![first];
            while ops.len() < MAX_OPS_PER_TXN {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            if crate::model::Millis::now().0 >= self.tallies.tomorrow_start {
                match recount(&self.store) {
                    Ok(t) => self.tallies = t,
                    Err(e) => tracing::error!("recounting today's summary failed: {e}"),
                }
            }
            let mut barriers = Vec::new();
            let mut batches = Vec::new();
            let mut shutdown = false;
            for op in ops {
                match op {
                    WriteOp::Ingest(b) => batches.push(b),
                    WriteOp::Barrier(done) => barriers.push(done),
                    WriteOp::Shutdown => shutdown = true,
                }
            }
            if !batches.is_empty() {
                self.commit(batches);
            }
            for done in barriers {
                let _ = done.send(());
            }
            if shutdown {
                return;
            }
        }
    }

    fn commit(&mut self, batches: Vec<IngestBatch>) {
        let before = self.tallies.clone();
        let mut health_delta: HashMap<&'static str, SourceErrors> = HashMap::new();
        match self.apply(batches, &mut health_delta) {
            Ok(changed) => {
                *self
                    .published
                    .store_error
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = None;
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
                for item in changed {
                    let _ = self.published.changes.send(item);
                }
                let next = self.tallies.summaries();
                self.summary.send_if_modified(|cur| {
                    let moved = *cur != next;
                    *cur = next;
                    moved
                });
            }
            Err(e) => {
                self.tallies = before;
                let msg =
                    format!("database write failed, will retry when the files change again: {e}");
                tracing::error!("{msg}");
                *self
                    .published
                    .store_error
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = Some(msg);
            }
        }
    }

    fn apply(
        &mut self,
        batches: Vec<IngestBatch>,
        health: &mut HashMap<&'static str, SourceErrors>,
    ) -> Result<Vec<Arc<Item>>, StoreError> {
        let ctx = self.store.ctx.clone();
        let mut changed = Vec::new();
        let mut tx = self.store.db.begin_write()?;
        tx.set_quick_repair(true);
        {
            let mut items = tx.open_table(ITEMS)?;
            let mut index = tx.open_table(INDEX)?;
            let mut counts = tx.open_table(COUNTS)?;
            let mut cursors = tx.open_table(CURSORS)?;
            let mut origins = tx.open_table(ORIGINS)?;
            let mut meta = tx.open_table(META)?;
            for batch in batches {
                for update in batch.updates {
                    let mut item = update.item;
                    derive_on_write(&mut item, &ctx.me, update.mine);
                    let bytes =
                        serde_json::to_vec(&item).map_err(|e| StoreError::Decode(e.to_string()))?;
                    if let Some(origin) = &update.origin {
                        origins.insert(item.id.as_str(), origin.as_str())?;
                    }
                    let old = items.get(item.id.as_str())?.map(|v| v.value().to_vec());
                    if old.as_deref() == Some(bytes.as_slice()) {
                        continue;
                    }
                    if let Some(old) = old {
                        let old = decode_item(&old)?;
                        remove_from_indexes(&old, &ctx.tz, &mut index, &mut counts)?;
                        self.tallies.apply(&old, -1);
                    }
                    items.insert(item.id.as_str(), bytes.as_slice())?;
                    add_to_indexes(&item, &ctx.tz, &mut index, &mut counts)?;
                    self.tallies.apply(&item, 1);
                    changed.push(Arc::new(item));
                }
                for (key, value) in &batch.cursors {
                    cursors.insert(key.as_str(), value.as_slice())?;
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
                        last_error: batch.last_error.or(entry.last_error),
                    };
                    let key = format!("health:{}", batch.source);
                    let bytes = serde_json::to_vec(&next).unwrap_or_default();
                    meta.insert(key.as_str(), bytes.as_slice())?;
                    health.insert(batch.source, next);
                }
            }
        }
        tx.commit()?;
        Ok(changed)
    }
}
