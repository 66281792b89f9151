//! The embedded database: one redb file holding items, their indexes, per-partition counts,
//! ingest cursors and metadata.
//!
//! Layout (schema version [`SCHEMA_VERSION`]):
//!
//! | table     | key                                   | value                               |
//! |-----------|---------------------------------------|-------------------------------------|
//! | `items`   | item id                               | the item as contract JSON           |
//! | `index`   | partition `\0` recency `id`           | nothing                             |
//! | `counts`  | partition                             | number of items in it               |
//! | `cursors` | `<source>:<file path>`                | the ingestor's resume state (JSON)  |
//! | `origins` | item id                               | the file the item was read from     |
//! | `totals`  | `all:<day>`, `me:<day>`               | that day's totals ([`DayTotals`](crate::summary::DayTotals)) |
//! | `meta`    | `schema_version`, `me`, `tz`, `health:<source>` | small values              |
//!
//! A *partition* is one filterable value (`s:working`, `o:cli`, `c:alice`, `d:2026-11-28`, …;
//! see [`partitions`]). Inside a partition keys sort newest `updated_at` first, so a filtered,
//! paginated list is a prefix range scan and a cursor is a position in it. Counts let the query
//! planner start from the smallest partition; with the day totals they make the summary a few
//! point lookups, at start-up as after every commit.
//!
//! Only the writer ([`writer`]) opens write transactions; readers use MVCC snapshots and never
//! wait on it.

pub mod query;
pub mod writer;

use crate::model::{Item, local_day};
use crate::model::{Source, Status};
use jiff::tz::TimeZone;
use redb::{ReadableDatabase, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub(crate) const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("items");
pub(crate) const INDEX: TableDefinition<&[u8], ()> = TableDefinition::new("index");
pub(crate) const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("counts");
pub(crate) const CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("cursors");
pub(crate) const ORIGINS: TableDefinition<&str, &str> = TableDefinition::new("origins");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const TOTALS: TableDefinition<&str, &[u8]> = TableDefinition::new("totals");

/// Bumped whenever the layout above changes; [`Store::open`] migrates older files forward.
///
/// - 2: items gained `status_source` (written with tag 2; tag-1 items are read as the frozen
///   `ItemV1`, and the rebuild rewrites them); file cursors gained the bytes-before-offset hash and the modification time, and
///   version 1 could save an offset inside a line longer than one read (counting lines after
///   it twice): version-1 file cursors are dropped, so every file is read again whole and its
///   item replaced by a fresh fold.
/// - 3: `counts` gained the fleet tallies (see [`tallies`]); the indexes are rebuilt once.
/// - 4: the tallies gained `y:` (the user's own items by status, source and harness), which
///   the list planner reads, and the id-scheme partitions (`i:`) are counted only, without
///   index entries: a version-3 file gains the one and drops the other's entries.
pub const SCHEMA_VERSION: u32 = 4;

/// Files older than this have their indexes, counts and totals rebuilt from the items; a
/// version-3 file only gains the `y:` tallies.
pub(crate) const REBUILD_BELOW: u32 = 3;

/// The first schema whose file cursors can be trusted (see [`SCHEMA_VERSION`]).
pub(crate) const TRUSTED_CURSORS_SINCE: u32 = 2;

/// redb's page cache. The default (1 GiB) would let a scan of a large database grow the daemon
/// far past its memory budget; hot data (recent index pages, counts) fits comfortably in this.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// redb's page cache on a first start (no database yet), until the writer first settles (see
/// [`Store::settle`]): that start's scans are the user's backfill. A backfill's transactions dirty index pages all
/// over the file, and redb keeps its buffer of dirty pages under half its cache: with
/// [`CACHE_BYTES`], half of them went to the file during the transaction and were read back
/// (10,000 conversations: 94 MB written for a 71 MB file, 52 MB with this; each write also a
/// system call, and a page more for the file system to sync). The cache never holds more than
/// the file, and it is given back once the writer is idle, as the resident memory at rest
/// must not grow with the user's history.
const CATCH_UP_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// How long [`Store::settle`] holds readers back while a reader that took the database just
/// before lets go of it (a request takes well under this); past it, it is tried again later.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// How long a reader waits for [`Store::settle`] to swap the handle before it is told to retry:
/// the wait above plus opening the file again (a millisecond or two for a small database,
/// about 300 ms for a million items).
const SETTLE_READER_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Why the store could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Db(#[from] redb::Error),
    #[error(
        "the disk holding the database {path} is full ({reason}); free some space and start agentd again"
    )]
    DiskFull { path: PathBuf, reason: String },
    #[error("the database {path} is in use by another process")]
    Locked { path: PathBuf },
    #[error(
        "the database {path} cannot be opened: {reason}. agentd will not start empty over it; move it aside (agentd rebuilds local items from the stores it watches) or restore a backup"
    )]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "the database {path} has schema version {found}, newer than this agentd understands ({SCHEMA_VERSION}); upgrade agentd"
    )]
    TooNew { path: PathBuf, found: u32 },
    #[error("a stored record could not be decoded: {0}")]
    Decode(String),
    #[error("the database is being reopened after a write error; try again")]
    Reopening,
    #[error("the database file is being compacted (a second or so); try again")]
    Compacting,
}

macro_rules! impl_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.into()) }
        }
    )*};
}
impl_from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError
);

/// Context the indexes depend on; when it changes between runs, the indexes are rebuilt.
#[derive(Debug, Clone)]
pub struct IndexContext {
    /// The configured user ("me").
    pub me: String,
    /// The local time zone, for day partitions and "today".
    pub tz: TimeZone,
}

/// A cheap, cloneable handle on the database, shared by readers and the writer.
///
/// The database sits in a swappable slot: redb fails every later operation after one I/O error
/// (a full disk, say), so the writer closes and reopens it ([`Store::reopen`]) and readers pick
/// up the new handle on their next request.
#[derive(Clone)]
pub struct Store {
    slot: Arc<RwLock<Option<Arc<redb::Database>>>>,
    /// Set while [`Store::compact`] holds the database, so readers are told why they wait.
    compacting: Arc<std::sync::atomic::AtomicBool>,
    /// The handle in the slot was opened with the steady cache ([`CACHE_BYTES`]), not the
    /// catch-up one.
    settled: Arc<std::sync::atomic::AtomicBool>,
    /// Set while [`Store::settle`] swaps the handle: readers wait for the new one.
    settling: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) ctx: Arc<IndexContext>,
    path: Arc<PathBuf>,
}

/// Raised for as long as it lives.
struct Flag<'a>(&'a std::sync::atomic::AtomicBool);

impl Flag<'_> {
    fn raise(flag: &std::sync::atomic::AtomicBool) -> Flag<'_> {
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        Flag(flag)
    }
}

impl Drop for Flag<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Creates the database file `0600` (whatever the umask) and narrows an existing one to that:
/// it holds what the user's agents did, their prompts' titles and their costs.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

fn open_db(path: &Path, cache_bytes: usize) -> Result<redb::Database, StoreError> {
    make_private(path).map_err(|io| {
        if is_disk_full(&io) {
            StoreError::DiskFull {
                path: path.to_owned(),
                reason: io.to_string(),
            }
        } else {
            StoreError::Unreadable {
                path: path.to_owned(),
                reason: io.to_string(),
            }
        }
    })?;
    redb::Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: path.to_owned(),
            },
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) if is_disk_full(&io) => {
                StoreError::DiskFull {
                    path: path.to_owned(),
                    reason: io.to_string(),
                }
            }
            other => StoreError::Unreadable {
                path: path.to_owned(),
                reason: other.to_string(),
            },
        })
}

/// `ENOSPC`, `EDQUOT` or `EFBIG`: the data is fine, there is just no room for more.
fn is_disk_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    matches!(e.kind(), StorageFull | QuotaExceeded | FileTooLarge)
        || matches!(
            e.raw_os_error(),
            Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG)
        )
}

impl Store {
    /// Opens or creates the database, checks its schema version and rebuilds indexes when the
    /// schema, the user or the time zone changed since the last run.
    pub fn open(path: &Path, ctx: IndexContext) -> Result<Store, StoreError> {
        // A first start (no database yet) is the backfill; a later one reads mostly cursors,
        // for which the steady cache does, and should not peak higher than it used to.
        let first_start = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        let cache = if first_start {
            CATCH_UP_CACHE_BYTES
        } else {
            CACHE_BYTES
        };
        let db = open_db(path, cache)?;
        let unreadable = |e: redb::Error| match e {
            redb::Error::Io(io) if is_disk_full(&io) => StoreError::DiskFull {
                path: path.to_owned(),
                reason: io.to_string(),
            },
            other => StoreError::Unreadable {
                path: path.to_owned(),
                reason: other.to_string(),
            },
        };
        let store = Store {
            slot: Arc::new(RwLock::new(Some(Arc::new(db)))),
            compacting: Arc::default(),
            settled: Arc::new(std::sync::atomic::AtomicBool::new(!first_start)),
            settling: Arc::default(),
            ctx: Arc::new(ctx),
            path: Arc::new(path.to_owned()),
        };
        let found = store.meta_u32("schema_version").map_err(|e| match e {
            StoreError::Db(e) => unreadable(e),
            other => other,
        })?;
        if let Some(found) = found
            && found > SCHEMA_VERSION
        {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found,
            });
        }
        writer::prepare(&store, found).map_err(|e| match e {
            StoreError::Db(e) => unreadable(e),
            other => other,
        })?;
        Ok(store)
    }

    /// The context the indexes were built with.
    pub fn context(&self) -> &IndexContext {
        &self.ctx
    }

    /// The current database handle. While [`Store::settle`] swaps it (milliseconds), a reader
    /// waits for the new one, up to [`SETTLE_READER_WAIT`], rather than being told to retry.
    pub(crate) fn db(&self) -> Result<Arc<redb::Database>, StoreError> {
        let settling = || self.settling.load(std::sync::atomic::Ordering::Relaxed);
        match self.db_now() {
            Err(StoreError::Reopening) if settling() => {}
            other => return other,
        }
        let deadline = std::time::Instant::now() + SETTLE_READER_WAIT;
        loop {
            std::thread::sleep(std::time::Duration::from_millis(1));
            match self.db_now() {
                Err(StoreError::Reopening)
                    if settling() && std::time::Instant::now() < deadline => {}
                other => return other,
            }
        }
    }

    /// The current database handle, or why there is none at this moment.
    fn db_now(&self) -> Result<Arc<redb::Database>, StoreError> {
        // `try_read`: while the writer reopens the file, readers answer an error at once
        // instead of holding a runtime thread (and with it the accept loop).
        match self.slot.try_read() {
            Ok(slot) => slot.clone().ok_or(StoreError::Reopening),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                p.into_inner().clone().ok_or(StoreError::Reopening)
            }
            Err(std::sync::TryLockError::WouldBlock) => Err(StoreError::Reopening),
        }
        .map_err(|e| {
            if self.compacting.load(std::sync::atomic::Ordering::Relaxed) {
                StoreError::Compacting
            } else {
                e
            }
        })
    }

    /// The database for a reader on a thread of its own (an ingestor, the cloud sync), which
    /// waits out a compaction (about a second per 100 MB) instead of failing: a cursor that
    /// could not be read would leave its file unread until it changes again.
    pub(crate) fn db_patient(&self) -> Result<Arc<redb::Database>, StoreError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        loop {
            match self.db() {
                Err(StoreError::Compacting) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                other => return other,
            }
        }
    }

    /// Bytes of the database file in no page in use (pages freed by earlier commits): what
    /// [`Store::compact`] can give back. Walks the trees' metadata (~90 ms per 300 MB).
    pub(crate) fn free_bytes_in_file(&self) -> Result<u64, StoreError> {
        let tx = self.db()?.begin_write()?;
        let stats = tx.stats()?;
        tx.abort()?;
        let len = std::fs::metadata(&*self.path).map_or(0, |m| m.len());
        Ok(len.saturating_sub(stats.allocated_pages() * stats.page_size() as u64))
    }

    /// Moves the database's pages to the front of its file and truncates it, giving back the
    /// space a burst of writes left free (a backfill's non-durable commits cannot reuse the
    /// pages they free, so the file ends up two or three times its content). redb needs the
    /// database to itself for this: readers are answered [`StoreError::Compacting`] meanwhile
    /// (about 0.6 s per 100 MB). Returns whether the file shrank; `false` also when a reader
    /// held on and it was left for later. Also settles the cache (see [`Store::settle`]).
    pub(crate) fn compact(&self) -> Result<bool, StoreError> {
        let _flag = Flag::raise(&self.compacting);
        let mut slot = self.slot.write().unwrap_or_else(|p| p.into_inner());
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(250);
        let Some(mut db) = Self::take_alone(&mut slot, deadline)? else {
            return Ok(false);
        };
        let before = std::fs::metadata(&*self.path).map(|m| m.len()).unwrap_or(0);
        // A read transaction begun just before the slot was taken may still be open (it does
        // not hold the handle); no new one can begin, so it ends in a moment.
        let mut result = db.compact();
        while matches!(result, Err(redb::CompactionError::TransactionInProgress))
            && std::time::Instant::now() < deadline + std::time::Duration::from_millis(250)
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
            result = db.compact();
        }
        *slot = Some(Arc::new(self.settled_handle(db)?));
        drop(slot);
        match result {
            Ok(_) => {
                let after = std::fs::metadata(&*self.path).map(|m| m.len()).unwrap_or(0);
                Ok(after < before)
            }
            // A read transaction still open (an iterator held by a slow client): later.
            Err(
                redb::CompactionError::TransactionInProgress
                | redb::CompactionError::EphemeralSavepointExists,
            ) => Ok(false),
            Err(e) => Err(StoreError::Db(e.into())),
        }
    }

    /// Gives back the catch-up cache ([`CATCH_UP_CACHE_BYTES`]) by opening the database again
    /// with the steady one, once the writer is idle after the start's scans (a compaction does
    /// it too). It needs the database to itself for a moment, so it is not even tried while a
    /// reader holds it (a scan reads cursors all along); readers that come meanwhile wait for
    /// the new handle (see [`Store::db`]), and one that holds on past [`SETTLE_WAIT`] puts it
    /// off. Returns whether it did; `false` when already settled or when a reader held on (it
    /// is tried again later).
    pub(crate) fn settle(&self) -> Result<bool, StoreError> {
        if self.settled() {
            return Ok(false);
        }
        let in_use = |slot: &Option<Arc<redb::Database>>| {
            slot.as_ref().is_none_or(|db| Arc::strong_count(db) > 1)
        };
        if in_use(&self.slot.read().unwrap_or_else(|p| p.into_inner())) {
            return Ok(false);
        }
        let _flag = Flag::raise(&self.settling);
        let mut slot = self.slot.write().unwrap_or_else(|p| p.into_inner());
        let deadline = std::time::Instant::now() + SETTLE_WAIT;
        let Some(db) = Self::take_alone(&mut slot, deadline)? else {
            return Ok(false);
        };
        *slot = Some(Arc::new(self.settled_handle(db)?));
        Ok(true)
    }

    /// Whether the catch-up cache was given back (see [`Store::settle`]).
    pub(crate) fn settled(&self) -> bool {
        self.settled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes the database out of `slot` for an operation that needs it alone. In-flight readers
    /// hold a clone for a moment; one that still holds on at `deadline` is not waited for: the
    /// handle is put back and `None` returned.
    fn take_alone(
        slot: &mut Option<Arc<redb::Database>>,
        deadline: std::time::Instant,
    ) -> Result<Option<redb::Database>, StoreError> {
        let Some(mut shared) = slot.take() else {
            return Err(StoreError::Reopening);
        };
        loop {
            match Arc::try_unwrap(shared) {
                Ok(db) => return Ok(Some(db)),
                Err(still) if std::time::Instant::now() < deadline => {
                    shared = still;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(still) => {
                    *slot = Some(still);
                    return Ok(None);
                }
            }
        }
    }

    /// `db`, or the database opened again with the steady cache if `db` has the catch-up one.
    /// If it cannot be opened again the slot stays empty: readers are told the database is
    /// being reopened, and the writer's recovery opens it (see [`Store::reopen`]).
    fn settled_handle(&self, db: redb::Database) -> Result<redb::Database, StoreError> {
        if self.settled() {
            return Ok(db);
        }
        drop(db);
        let db = open_db(&self.path, CACHE_BYTES)?;
        self.settled
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the database and opens it again, after an I/O error has made redb refuse every
    /// operation. Waits (briefly) for in-flight readers to let go of the old handle, since the
    /// file lock must be released before the file is opened again.
    pub(crate) fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.slot.write().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            match Self::take_alone(&mut slot, deadline)? {
                Some(old) => drop(old),
                None => return Err(StoreError::Reopening),
            }
        }
        *slot = Some(Arc::new(open_db(&self.path, CACHE_BYTES)?));
        self.settled
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn meta_u32(&self, key: &str) -> Result<Option<u32>, StoreError> {
        Ok(self
            .meta(key)?
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()))
    }

    /// A metadata value, if the meta table and the key exist.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rx = self.db()?.begin_read()?;
        let t = match rx.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// One item by id, as stored (call `model::derive_on_read` before answering with it).
    pub fn get(&self, id: &str) -> Result<Option<Item>, StoreError> {
        let rx = self.db()?.begin_read()?;
        let t = rx.open_table(ITEMS)?;
        match t.get(id)? {
            Some(v) => decode_item(v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The file an item was read from, if it came from a file.
    pub fn origin(&self, id: &str) -> Result<Option<PathBuf>, StoreError> {
        self.origin_in(self.db()?, id)
    }

    /// [`Store::origin`] for a thread that may wait out a compaction (see
    /// [`Store::db_patient`]).
    pub fn origin_patient(&self, id: &str) -> Result<Option<PathBuf>, StoreError> {
        self.origin_in(self.db_patient()?, id)
    }

    fn origin_in(&self, db: Arc<redb::Database>, id: &str) -> Result<Option<PathBuf>, StoreError> {
        let rx = db.begin_read()?;
        let t = rx.open_table(ORIGINS)?;
        Ok(t.get(id)?.map(|v| PathBuf::from(v.value())))
    }

    /// An ingestor's stored cursor (waiting out a compaction: see [`Store::db_patient`]).
    pub fn cursor(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rx = self.db_patient()?.begin_read()?;
        let t = rx.open_table(CURSORS)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// How many cursors have keys starting with `prefix`, counting up to `limit`.
    pub fn count_cursors(&self, prefix: &str, limit: usize) -> Result<usize, StoreError> {
        let rx = self.db_patient()?.begin_read()?;
        let t = rx.open_table(CURSORS)?;
        let mut n = 0;
        for entry in t.range::<&str>(prefix..)? {
            if n >= limit || !entry?.0.value().starts_with(prefix) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// The number of items in a partition (see [`partitions`]).
    pub fn count(&self, partition: &Partition) -> Result<u64, StoreError> {
        let rx = self.db()?.begin_read()?;
        let t = rx.open_table(COUNTS)?;
        Ok(t.get(partition.key().as_str())?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// Every fleet tally (see [`tallies`]) as committed: a few hundred keys at most.
    pub fn tallies(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rx = self.db()?.begin_read()?;
        let t = rx.open_table(COUNTS)?;
        let mut out = Vec::new();
        for prefix in TALLY_PREFIXES {
            // `x:` up to `x;`, the next character: every key of the prefix.
            let end = format!("{};", &prefix[..1]);
            let start: &str = prefix;
            for entry in t.range::<&str>(start..end.as_str())? {
                let (k, v) = entry?;
                out.push((k.value().to_owned(), v.value()));
            }
        }
        Ok(out)
    }

    /// Both tabs' summaries as committed: active counts from partition sizes, today's totals
    /// from today's bucket (a few point lookups), the oldest waits from `waits`.
    pub fn summaries(
        &self,
        now: crate::model::Millis,
        waits: &crate::summary::Waits,
    ) -> Result<crate::summary::Summaries, StoreError> {
        use crate::summary::{DayTotals, summary};
        let rx = self.db()?.begin_read()?;
        let counts = rx.open_table(COUNTS)?;
        let totals = rx.open_table(TOTALS)?;
        let count = |p: &str| -> Result<u64, StoreError> {
            Ok(counts.get(p)?.map(|v| v.value()).unwrap_or(0))
        };
        let day = local_day(now, &self.ctx.tz);
        let bucket = |tab: &str| -> Result<DayTotals, StoreError> {
            Ok(totals
                .get(format!("{tab}:{day}").as_str())?
                .map(|v| DayTotals::decode(v.value()))
                .unwrap_or_default())
        };
        let (mine_since, all_since) = waits.oldest();
        Ok(crate::summary::Summaries {
            personal: summary(
                count(&Partition::MineStatus(Status::Working).key())?,
                count(&Partition::MineStatus(Status::Blocked).key())?,
                &bucket("me")?,
                mine_since,
            ),
            all: summary(
                count(&Partition::Status(Status::Working).key())?,
                count(&Partition::Status(Status::Blocked).key())?,
                &bucket("all")?,
                all_since,
            ),
        })
    }

    /// Every current wait, read from the blocked items (see [`crate::summary::Waits`]).
    pub fn waits(&self) -> Result<crate::summary::Waits, StoreError> {
        let rx = self.db()?.begin_read()?;
        let index = rx.open_table(INDEX)?;
        let items = rx.open_table(ITEMS)?;
        let key = Partition::Status(Status::Blocked).key();
        let mut start = key.as_bytes().to_vec();
        start.push(0);
        let mut end = key.as_bytes().to_vec();
        end.push(1);
        let mut waits = crate::summary::Waits::default();
        for entry in index.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            let (k, _) = entry?;
            let id = String::from_utf8_lossy(&k.value()[start.len() + 8..]).into_owned();
            if let Some(v) = items.get(id.as_str())? {
                waits.moved(None, crate::summary::Waits::of(&decode_item(v.value())?));
            }
        }
        Ok(waits)
    }

    /// The ids in one partition that start with `id_prefix`, newest first.
    pub fn partition_ids(
        &self,
        partition: &Partition,
        id_prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rx = self.db_patient()?.begin_read()?;
        let index = rx.open_table(INDEX)?;
        let key = partition.key();
        let mut start = key.as_bytes().to_vec();
        start.push(0);
        let mut end = key.as_bytes().to_vec();
        end.push(1);
        let mut out = Vec::new();
        for entry in index.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            let (k, _) = entry?;
            let id = String::from_utf8_lossy(&k.value()[start.len() + 8..]).into_owned();
            if id.starts_with(id_prefix) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Items whose id starts with `prefix`, at most `limit`, in id order.
    pub fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Item>, StoreError> {
        let rx = self.db()?.begin_read()?;
        let t = rx.open_table(ITEMS)?;
        let mut out = Vec::new();
        for entry in t.range(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push(decode_item(v.value())?);
        }
        Ok(out)
    }
}

/// The first byte of every stored record: which encoding follows. Records are compact postcard
/// (field names are not stored: an item takes a third of its JSON size), and the tag leaves
/// room for a later encoding to be read beside this one during a migration.
const FORMAT_POSTCARD: u8 = 1;

/// Encodes a record for storage.
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_POSTCARD];
    // Serialising plain data structs into a Vec cannot fail.
    out.extend(postcard::to_allocvec(value).unwrap_or_default());
    out
}

/// Decodes a stored record. Trailing bytes are allowed, so that a reader may decode a prefix of
/// a larger record (the cursor of a file state, say) without the rest.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_POSTCARD, rest)) => postcard::take_from_bytes(rest)
            .map(|(v, _)| v)
            .map_err(|e| StoreError::Decode(e.to_string())),
        Some((tag, _)) => Err(StoreError::Decode(format!("unknown record format {tag}"))),
        None => Err(StoreError::Decode("empty record".into())),
    }
}

/// The tag of an item record with `status_source` (schema 2). Tag 1 items are [`ItemV1`].
const FORMAT_ITEM_V2: u8 = 2;

/// Encodes an item for storage (tag 2).
pub(crate) fn encode_item(item: &Item) -> Vec<u8> {
    let mut out = vec![FORMAT_ITEM_V2];
    out.extend(postcard::to_allocvec(item).unwrap_or_default());
    out
}

/// Decodes a stored item of either layout.
pub(crate) fn decode_item(bytes: &[u8]) -> Result<Item, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_ITEM_V2, rest)) => postcard::take_from_bytes(rest)
            .map(|(v, _)| v)
            .map_err(|e| StoreError::Decode(e.to_string())),
        _ => decode::<ItemV1>(bytes).map(Item::from),
    }
}

/// An item as schema 1 stored it (tag 1), frozen: postcard stores no field names, so an old
/// record can only be read with its own layout. The schema-2 rebuild rewrites every item as
/// tag 2.
#[derive(serde::Deserialize)]
struct ItemV1 {
    id: String,
    kind: agentd_wire::Kind,
    source: Source,
    status: Status,
    status_detail: Option<String>,
    harness: Option<String>,
    title: Option<String>,
    creator: Option<String>,
    mine: bool,
    project: Option<String>,
    model: Option<String>,
    created_at: crate::model::Millis,
    updated_at: crate::model::Millis,
    finished_at: Option<crate::model::Millis>,
    duration_ms: Option<u64>,
    credits: Option<f64>,
    cost_usd: Option<f64>,
    usage: agentd_wire::Usage,
    open: agentd_wire::Open,
}

impl From<ItemV1> for Item {
    fn from(v: ItemV1) -> Item {
        Item {
            id: v.id,
            kind: v.kind,
            source: v.source,
            status: v.status,
            status_detail: v.status_detail,
            harness: v.harness,
            title: v.title,
            creator: v.creator,
            mine: v.mine,
            project: v.project,
            model: v.model,
            created_at: v.created_at,
            updated_at: v.updated_at,
            finished_at: v.finished_at,
            duration_ms: v.duration_ms,
            credits: v.credits,
            cost_usd: v.cost_usd,
            usage: v.usage,
            open: v.open,
            status_source: None,
            blocked_ms: 0,
            blocked_since: None,
        }
    }
}

/// Maps an `updated_at` to 8 bytes that sort newest first.
pub(crate) fn recency(updated_ms: i64) -> [u8; 8] {
    (!((updated_ms as u64) ^ (1 << 63))).to_be_bytes()
}

/// The inverse of [`recency`].
pub(crate) fn recency_ms(bytes: [u8; 8]) -> i64 {
    ((!u64::from_be_bytes(bytes)) ^ (1 << 63)) as i64
}

/// A partition name may not contain the separator byte.
pub(crate) fn clean(v: &str) -> String {
    v.replace('\0', "\u{fffd}")
}

/// One filterable value: a partition of the index, both listed (newest first) and counted.
/// Its stored key is [`Partition::key`], the one place keys are spelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partition<'a> {
    /// Everything (the All tab).
    All,
    /// The user's own items (the Personal tab).
    Mine,
    Status(Status),
    /// The user's own items in one status.
    MineStatus(Status),
    Source(Source),
    Creator(&'a str),
    Harness(&'a str),
    /// Created on this local date (`YYYY-MM-DD`).
    Day(&'a str),
    /// Items of one id scheme (`cli`, `claude-code`, …): one source's items. Counted only (no
    /// list asks for it: `/v1/health` shows each source's count).
    Scheme(&'a str),
}

impl Partition<'_> {
    /// The stored key: `a`, `m`, `s:<status>`, `ms:<status>`, `o:<source>`, `c:<creator>`,
    /// `h:<harness>`, `d:<day>`, `i:<id scheme>`.
    pub fn key(&self) -> String {
        match self {
            Partition::All => "a".to_owned(),
            Partition::Mine => "m".to_owned(),
            Partition::Status(s) => format!("s:{s}"),
            Partition::MineStatus(s) => format!("ms:{s}"),
            Partition::Source(s) => format!("o:{s}"),
            Partition::Creator(c) => format!("c:{}", clean(c)),
            Partition::Harness(h) => format!("h:{}", clean(h)),
            Partition::Day(d) => format!("d:{d}"),
            Partition::Scheme(i) => format!("i:{i}"),
        }
    }
}

/// Every partition an item is listed in (an index entry each, and a count), as stored keys.
pub fn partitions(item: &Item, tz: &TimeZone) -> Vec<String> {
    let day = local_day(item.created_at, tz);
    let mut p = vec![
        Partition::All,
        Partition::Status(item.status),
        Partition::Source(item.source),
        Partition::Day(&day),
    ];
    if item.mine {
        p.push(Partition::Mine);
        p.push(Partition::MineStatus(item.status));
    }
    if let Some(c) = &item.creator {
        p.push(Partition::Creator(c));
    }
    if let Some(h) = &item.harness {
        p.push(Partition::Harness(h));
    }
    p.iter().map(Partition::key).collect()
}

/// The partitions an item is only counted in (no index entry: nothing lists them).
pub fn counted_partitions(item: &Item) -> [String; 1] {
    [Partition::Scheme(id_scheme(&item.id)).key()]
}

/// The tally of every item by `<status>|<source>|<harness>` (see [`tallies`]).
pub(crate) const ALL_COMBINATIONS: &str = "x:";
/// The same for the user's own items.
pub(crate) const MINE_COMBINATIONS: &str = "y:";

/// The key prefixes of the fleet tallies (see [`tallies`]) that are exported.
pub const TALLY_PREFIXES: [&str; 6] = ["x:", "t:", "u:", "k:", "w:", "f:"];

/// The fleet tallies an item adds to, kept in `counts` beside the partition sizes (count-only:
/// no index entries) so that `/metrics` reads a few hundred keys rather than the items:
/// `x:<status>|<source>|<harness>` (agents now, 1 each; `y:` the same for the user's own items,
/// read by the list planner to know how many items a filter matches, not exported), `t:<harness>|<kind>` (tokens by kind:
/// `input`, `output`, `cache_read`, `cache_write`), `u:<harness>` (cost, micro-USD),
/// `k:<harness>` (credits, micro-credits), `w:<harness>` (milliseconds spent blocked in finished
/// waits). Label values are bounded: the harness is one of
/// [`crate::sources::harness_label`]'s. `f:<status>|<harness>` (finishes so far) is kept by the
/// writer on transitions, not here.
pub fn tallies(item: &Item) -> Vec<(String, i64)> {
    let h = crate::sources::harness_label(item.harness.as_deref());
    let micros = |v: Option<f64>| v.map_or(0, |v| (v * 1e6).round() as i64);
    let u = &item.usage;
    let combination = format!("{}|{}|{h}", item.status.as_str(), item.source.as_str());
    let mut out = Vec::with_capacity(8);
    if item.mine {
        out.push((format!("{MINE_COMBINATIONS}{combination}"), 1));
    }
    out.push((format!("{ALL_COMBINATIONS}{combination}"), 1));
    for (kind, n) in [
        ("input", u.input_tokens),
        ("output", u.output_tokens),
        ("cache_read", u.cache_read_tokens),
        ("cache_write", u.cache_write_tokens),
    ] {
        if n > 0 {
            out.push((format!("t:{h}|{kind}"), n as i64));
        }
    }
    for (key, v) in [
        (format!("u:{h}"), micros(item.cost_usd)),
        (format!("k:{h}"), micros(item.credits)),
        (format!("w:{h}"), item.blocked_ms as i64),
    ] {
        if v > 0 {
            out.push((key, v));
        }
    }
    out
}

/// The day-totals buckets an item counts in: its tab(s) on the local day of its last update.
pub fn totals_keys(item: &Item, tz: &TimeZone) -> Vec<String> {
    let day = local_day(item.updated_at, tz);
    let mut keys = vec![format!("all:{day}")];
    if item.mine {
        keys.push(format!("me:{day}"));
    }
    keys
}

/// The part of an id before the first `:` (`cli`, `claude-code`, `cloud`, …).
pub fn id_scheme(id: &str) -> &str {
    id.split_once(':').map(|(s, _)| s).unwrap_or("")
}

/// The index key of an item in one partition.
pub(crate) fn index_key(partition: &str, updated_ms: i64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(partition.len() + 9 + id.len());
    k.extend_from_slice(partition.as_bytes());
    k.push(0);
    k.extend_from_slice(&recency(updated_ms));
    k.extend_from_slice(id.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_of_both_layouts_decode() {
        let item: Item = serde_json::from_value(serde_json::json!({
            "id": "cli:a", "kind": "run", "source": "cli", "status": "working", "mine": true,
            "created_at": "2026-11-28T09:00:00.000Z", "updated_at": "2026-11-28T09:00:00.000Z",
            "usage": {}, "open": {}, "status_source": "run_log"
        }))
        .unwrap();
        assert_eq!(decode_item(&encode_item(&item)).unwrap(), item);
        // Schema 1 stored the same fields without the last one.
        let old = Item {
            status_source: None,
            ..item
        };
        let mut v1 = encode(&old);
        assert_eq!(v1.pop(), Some(0), "None is one zero byte at the end");
        assert_eq!(decode_item(&v1).unwrap(), old);
    }

    #[test]
    fn recency_sorts_newest_first_and_round_trips() {
        let times = [i64::MIN, -5, 0, 1, 1_795_857_243_120, i64::MAX];
        for w in times.windows(2) {
            assert!(
                recency(w[1]) < recency(w[0]),
                "{} should sort before {}",
                w[1],
                w[0]
            );
        }
        for t in times {
            assert_eq!(recency_ms(recency(t)), t);
        }
        assert!(index_key("s:working", 10, "b") < index_key("s:working", 5, "a"));
        assert!(index_key("s:working", 5, "a") < index_key("s:working", 5, "b"));
    }
}
